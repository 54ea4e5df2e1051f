"""The bench runner: every section in turn, one JSON line per metric, then a table and goals.

    tilltap bench [--quick]        (also `make bench [QUICK=1]`)

Output on stdout, in this order:

1. one JSON object per line and per metric, as each section finishes:
   {"metric": str, "value": number, "baseline": number|null, "ratio": number|null,
    "unit": str, "n": int}
   `ratio` is value / baseline rounded to RATIO_DIGITS; `n` counts what was measured
   (transactions, messages, requests, files);
2. a Markdown table of the same metrics, the goals of the bench issue (met / missed, by how
   much), the notes each section left (where the time goes), the machine and the run time.

Progress goes to stderr. A section that fails is reported as a note and makes the exit
status 1; a goal that is missed does not (the bench measures, it does not judge a build).
Sections are measured one after the other, never two at once: the machine has few cores.
"""

from __future__ import annotations

import datetime
import gc
import importlib
import json
import math
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

RATIO_DIGITS = 3
SIGNIFICANT_DIGITS = 4
METRIC_KEYS = ("metric", "value", "baseline", "ratio", "unit", "n")

# Goals of the bench issue.
INGEST_RATIO_MIN = 0.5  # gateway ingest >= 0.5x raw paho QoS 1
AUTH_P99_FACTOR_MAX = 2.0  # authorization p99 <= 2x raw echo p99 + AUTH_P99_SLACK_MS
AUTH_P99_SLACK_MS = 5.0
SETTLE_RATIO_MIN = 0.3  # posting >= 0.3x a raw bulk insert of the same postings
# "Flat" cost per transaction: the largest size may cost at most this much more per
# transaction than the smallest. Runs on two shared cores vary by about 10-20 % run to run.
GROWTH_RATIO_MAX = 1.3
GROWTH_MARK = "_per_txn@"
CENTRAL_AUTH_P99_MS_MAX = 50.0  # hold p99 at the ledger with 16 gateways while batches post
CENTRAL_AUTH_GATEWAYS = 16
LOOKUP_RATIO_MAX = 2.0  # a card look-up's p50 over HTTP <= 2x one raw SELECT round trip


def size_label(count: int) -> str:
    """10000 -> "10k", 1000000 -> "1m": how sizes appear in metric names."""
    for divisor, suffix in ((1_000_000, "m"), (1_000, "k")):
        if count >= divisor and count % divisor == 0:
            return f"{count // divisor}{suffix}"
    return str(count)


def _significant(value: float) -> float:
    """`value` rounded to SIGNIFICANT_DIGITS significant digits (integers stay integers)."""
    if isinstance(value, int) or value == 0 or not math.isfinite(value):
        return value
    digits = SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(abs(value)))
    rounded = round(value, max(digits, 0))
    return float(int(rounded)) if digits <= 0 else rounded


@dataclass(frozen=True)
class Metric:
    """One measured number, optionally against the raw baseline measured in the same run."""

    metric: str
    value: float
    unit: str
    n: int
    baseline: float | None = None
    ratio: float | None = None

    @classmethod
    def against(cls, metric: str, value: float, baseline: float | None, unit: str,
                n: int) -> Metric:
        """A metric with its baseline; the ratio is value / baseline of the rounded numbers."""
        value = _significant(value)
        if baseline is None:
            return cls(metric, value, unit, n)
        baseline = _significant(baseline)
        ratio = round(value / baseline, RATIO_DIGITS) if baseline else None
        return cls(metric, value, unit, n, baseline, ratio)

    def as_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "value": self.value, "baseline": self.baseline,
                "ratio": self.ratio, "unit": self.unit, "n": self.n}

    @classmethod
    def from_json(cls, entry: dict[str, Any]) -> Metric:
        """Check a metric dict of the bench format (ValueError if it is not) and type it."""
        missing = [key for key in METRIC_KEYS if key not in entry]
        if missing:
            raise ValueError(f"metric {entry.get('metric')!r} lacks {missing}")
        name, value, unit, n = entry["metric"], entry["value"], entry["unit"], entry["n"]
        baseline, ratio = entry["baseline"], entry["ratio"]
        if not isinstance(name, str) or not name or not isinstance(unit, str):
            raise ValueError(f"metric name and unit must be strings: {entry!r}")
        if not _is_number(value) or not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"metric {name}: value must be a number and n an int: {entry!r}")
        for optional in (baseline, ratio):
            if optional is not None and not _is_number(optional):
                raise ValueError(f"metric {name}: baseline/ratio must be numbers or null")
        return cls(name, value, unit, n, baseline, ratio)


def _is_number(value: object) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value))


@dataclass
class Section:
    """What one measurement module returns: its metrics and what it learned (notes)."""

    title: str
    metrics: list[Metric] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class GoalResult:
    goal: str
    status: str  # "met", "missed" or "not measured"
    detail: str


# -- goals ------------------------------------------------------------------------------------
def evaluate_goals(metrics: Sequence[Metric]) -> list[GoalResult]:
    """The bench issue's goals, each met, missed (with by how much) or not measured."""
    by_name = {m.metric: m for m in metrics}
    results = [_at_least("gateway ingest >= 0.5x raw paho QoS 1 publish->subscribe",
                         by_name.get("gateway.ingest_rate"), INGEST_RATIO_MIN)]
    results.append(_auth_p99(by_name.get("auth.round_trip_p99_ms")))
    for engine in ("sqlite", "postgresql"):
        raw = "COPY" if engine == "postgresql" else "one-transaction executemany"
        results.append(_at_least(f"settlement on {engine} >= 0.3x raw {raw}",
                                 by_name.get(f"settle.{engine}.post_rate"), SETTLE_RATIO_MIN))
    results.append(_central_auth_p99(
        by_name.get(f"central_auth.hold_p99_ms@{CENTRAL_AUTH_GATEWAYS}gw")))
    results.append(_at_most("ledger API: a gateway's card look-up p50 <= 2x a raw SELECT round"
                            " trip (psycopg)",
                            by_name.get("ledger_api.card_lookup_gateway_p50_ms"),
                            LOOKUP_RATIO_MAX))
    results.extend(_growth(metrics))
    return results


def _central_auth_p99(metric: Metric | None) -> GoalResult:
    goal = (f"central authorization: hold p99 < {CENTRAL_AUTH_P99_MS_MAX:.0f} ms with"
            f" {CENTRAL_AUTH_GATEWAYS} gateways while batches post")
    if metric is None:
        return GoalResult(goal, "not measured", "")
    detail = f"p99 {metric.value:.3g} ms"
    if metric.value < CENTRAL_AUTH_P99_MS_MAX:
        return GoalResult(goal, "met", detail)
    return GoalResult(goal, "missed",
                      f"{detail}, over by {metric.value - CENTRAL_AUTH_P99_MS_MAX:.3g} ms")


def _at_least(goal: str, metric: Metric | None, ratio_min: float) -> GoalResult:
    if metric is None or metric.ratio is None:
        return GoalResult(goal, "not measured", "")
    if metric.ratio >= ratio_min:
        return GoalResult(goal, "met", f"{metric.ratio:.3g}x")
    short = ratio_min - metric.ratio
    return GoalResult(goal, "missed",
                      f"{metric.ratio:.3g}x, short by {short:.3g}x ({short / ratio_min:.0%})")


def _at_most(goal: str, metric: Metric | None, ratio_max: float) -> GoalResult:
    if metric is None or metric.ratio is None:
        return GoalResult(goal, "not measured", "")
    if metric.ratio <= ratio_max:
        return GoalResult(goal, "met", f"{metric.ratio:.3g}x")
    return GoalResult(goal, "missed",
                      f"{metric.ratio:.3g}x, {metric.ratio / ratio_max:.3g} times the limit")


def _auth_p99(metric: Metric | None) -> GoalResult:
    goal = "authorization p99 <= 2x raw MQTT echo p99 + 5 ms"
    if metric is None or metric.baseline is None:
        return GoalResult(goal, "not measured", "")
    limit = AUTH_P99_FACTOR_MAX * metric.baseline + AUTH_P99_SLACK_MS
    detail = f"p99 {metric.value:.3g} ms, limit {limit:.3g} ms"
    if metric.value <= limit:
        return GoalResult(goal, "met", detail)
    return GoalResult(goal, "missed", f"{detail}, over by {metric.value - limit:.3g} ms")


def _growth(metrics: Sequence[Metric]) -> list[GoalResult]:
    """Per series `<name>_per_txn@<size>`: the worst ratio to its smallest size is flat."""
    series: dict[str, list[Metric]] = {}
    for metric in metrics:
        if GROWTH_MARK in metric.metric:
            series.setdefault(metric.metric.split("@", 1)[0], []).append(metric)
    results = []
    for name, points in series.items():
        goal = f"{name}: flat cost per transaction (<= {GROWTH_RATIO_MAX}x smallest size)"
        compared = [p for p in points if p.ratio is not None]
        if not compared:
            results.append(GoalResult(goal, "not measured", ""))
            continue
        worst = max(compared, key=lambda p: p.ratio or 0.0)
        assert worst.ratio is not None
        sizes = ", ".join(f"{p.value:.3g} {p.unit} @{p.n:,}" for p in points)
        status = "met" if worst.ratio <= GROWTH_RATIO_MAX else "missed"
        results.append(GoalResult(goal, status, f"{sizes} (worst {worst.ratio:.3g}x)"))
    return results


# -- rendering ------------------------------------------------------------------------------
def _cell(value: float | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, int) or float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"


def render_table(metrics: Sequence[Metric], goals: Sequence[GoalResult],
                 notes: Sequence[str], footer: Sequence[str]) -> str:
    """The human-readable part, as Markdown (it is pasted into the README as it is)."""
    lines = ["| metric | value | unit | baseline | ratio | n |",
             "|---|---:|---|---:|---:|---:|"]
    for m in metrics:
        ratio = "-" if m.ratio is None else f"{m.ratio:.3g}"
        lines.append(f"| {m.metric} | {_cell(m.value)} | {m.unit} | {_cell(m.baseline)} |"
                     f" {ratio} | {m.n:,} |")
    lines += ["", "Goals:"]
    lines += [f"- **{g.status}**: {g.goal}" + (f": {g.detail}" if g.detail else "")
              for g in goals]
    if notes:
        lines += ["", "Notes:"]
        lines += [f"- {note}" for note in notes]
    lines += ["", *footer]
    return "\n".join(lines)


def machine_description() -> str:
    """Cores, CPU model, Python: what a reader needs to compare numbers between machines."""
    model = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass  # not Linux: platform.processor() is the best we have
    return (f"{os.cpu_count()} cores ({model}), Python {platform.python_version()}"
            f" on {platform.system()} {platform.release()}")


# -- the runner -----------------------------------------------------------------------------
SectionRunner = Callable[[bool], "Section | Iterable[dict[str, Any]]"]
SECTION_MODULES = (
    ("gateway ingest", "tools.bench.gateway"),
    ("authorization round trip", "tools.bench.auth"),
    ("settlement", "tools.bench.settlement"),
    ("central authorization", "tools.bench.central_auth"),
    ("card feed", "tools.bench.card_feed"),
    ("ledger API", "tools.bench.ledger_api"),
    ("firmware on MicroPython", "tools.bench.firmware"),
)
OPTIONAL_MODULES = {"tools.bench.firmware": "tools/bench/firmware.py"}


def default_sections() -> list[tuple[str, SectionRunner | str]]:
    """Each section's title and its `measure(quick)`, or why it cannot run."""
    sections: list[tuple[str, SectionRunner | str]] = []
    for title, module_name in SECTION_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name or module_name not in OPTIONAL_MODULES:
                raise
            sections.append((title, f"{OPTIONAL_MODULES[module_name]} is not there yet:"
                                    " skipped"))
            continue
        sections.append((title, module.measure))
    return sections


def _as_section(title: str, returned: Section | Iterable[dict[str, Any]]) -> Section:
    if isinstance(returned, Section):
        return returned
    return Section(title, [Metric.from_json(entry) for entry in returned])


def main(quick: bool, *, sections: Sequence[tuple[str, SectionRunner | str]] | None = None,
         out: TextIO | None = None, progress: TextIO | None = None) -> int:
    """Run every section (or the given ones), print the JSON lines and the table; 0 if all ran."""
    out = out if out is not None else sys.stdout
    progress = progress if progress is not None else sys.stderr
    started = time.monotonic()
    metrics: list[Metric] = []
    notes: list[str] = []
    failed = False
    for title, runner in default_sections() if sections is None else sections:
        if isinstance(runner, str):
            notes.append(f"{title}: {runner}")
            print(f"bench: {title}: {runner}", file=progress, flush=True)
            continue
        print(f"bench: {title} ...", file=progress, flush=True)
        section_started = time.monotonic()
        gc.collect()  # what an earlier section left behind is not this one's cost
        try:
            section = _as_section(title, runner(quick))
        except Exception as error:  # a broken section must not hide the others' numbers
            failed = True
            traceback.print_exc(file=progress)
            notes.append(f"{title}: FAILED: {type(error).__name__}: {error}")
            continue
        for metric in section.metrics:
            print(json.dumps(metric.as_json()), file=out, flush=True)
        metrics += section.metrics
        notes += [f"{section.title}: {note}" for note in section.notes]
        print(f"bench: {title} took {time.monotonic() - section_started:.1f} s", file=progress,
              flush=True)
    elapsed_s = time.monotonic() - started
    footer = [f"Machine: {machine_description()}.",
              f"Run: `tilltap bench{' --quick' if quick else ''}`, {elapsed_s:.0f} s,"
              f" {datetime.date.today().isoformat()}."]
    print("", file=out)
    print(render_table(metrics, evaluate_goals(metrics), notes, footer), file=out, flush=True)
    return 1 if failed else 0
