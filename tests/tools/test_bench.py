"""The bench prints well-formed metrics and a table, and every measurement runs end to end at a
tiny size over the real parts. Nothing here asserts on a time: the numbers are the bench's to
report, not the tests' to judge."""

from __future__ import annotations

import io
import json
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from ledger.books import open_books
from tools.bench import auth, card_feed, central_auth, gateway, ledger_api, run, settlement
from tools.bench.run import Metric, Section


def _fake_section(quick: bool) -> Section:
    return Section("fake", [
        Metric.against("gateway.ingest_rate", 1200.0, 4000.0, "txn/s", 100),
        Metric.against("auth.round_trip_p99_ms", 3.0, 1.0, "ms", 50),
        Metric.against("fake.cost_per_txn@10k", 10.0, None, "us/txn", 10_000),
        Metric.against("fake.cost_per_txn@100k", 11.0, 10.0, "us/txn", 100_000),
    ], ["the fake takes no time"])


def _firmware_like(quick: bool) -> list[dict[str, Any]]:
    return [{"metric": "firmware.mpy_size", "value": 4096, "baseline": None, "ratio": None,
             "unit": "B", "n": 12}]


def _broken(quick: bool) -> Section:
    raise RuntimeError("the broker caught fire")


def _run(sections: list[tuple[str, Any]]) -> tuple[int, list[str], str]:
    out, progress = io.StringIO(), io.StringIO()
    status = run.main(True, sections=sections, out=out, progress=progress)
    text = out.getvalue()
    json_part, _, table = text.partition("\n\n")
    return status, json_part.splitlines(), table


def assert_well_formed(entry: dict[str, Any]) -> None:
    """One metric of the bench format: exactly these keys, numbers where numbers belong."""
    assert list(entry) == list(run.METRIC_KEYS)
    metric = Metric.from_json(entry)
    assert metric.n >= 1
    if metric.baseline is not None and metric.baseline != 0:
        assert metric.ratio == round(metric.value / metric.baseline, run.RATIO_DIGITS)
    else:
        assert metric.ratio is None


def test_runner_prints_one_json_line_per_metric_then_a_table_goals_and_notes() -> None:
    status, lines, table = _run([("fake", _fake_section), ("firmware", _firmware_like),
                                 ("later", "tools/bench/later.py is not there yet: skipped")])
    assert status == 0
    entries = [json.loads(line) for line in lines]
    assert [e["metric"] for e in entries] == [
        "gateway.ingest_rate", "auth.round_trip_p99_ms", "fake.cost_per_txn@10k",
        "fake.cost_per_txn@100k", "firmware.mpy_size"]
    for entry in entries:
        assert_well_formed(entry)
    assert table.startswith("| metric | value | unit | baseline | ratio | n |")
    assert "| gateway.ingest_rate | 1,200 | txn/s | 4,000 | 0.3 | 100 |" in table
    assert "- **missed**: gateway ingest >= 0.5x raw paho QoS 1" in table
    assert "- **met**: authorization p99 <= 2x raw MQTT echo p99 + 5 ms" in table
    assert "- **met**: fake.cost_per_txn: flat cost per transaction" in table
    assert "- **not measured**: settlement on sqlite" in table
    assert "- fake: the fake takes no time" in table
    assert "- later: tools/bench/later.py is not there yet: skipped" in table
    assert "Machine: " in table and "cores" in table and "Python 3." in table


def test_a_failing_section_is_reported_and_fails_the_run_without_hiding_the_others() -> None:
    status, lines, table = _run([("broken", _broken), ("firmware", _firmware_like)])
    assert status == 1
    assert [json.loads(line)["metric"] for line in lines] == ["firmware.mpy_size"]
    assert "- broken: FAILED: RuntimeError: the broker caught fire" in table


def test_a_missing_optional_module_becomes_a_skip_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run, "SECTION_MODULES", (("not yet", "tools.bench.not_written_yet"),))
    monkeypatch.setattr(run, "OPTIONAL_MODULES",
                        {"tools.bench.not_written_yet": "tools/bench/not_written_yet.py"})
    assert run.default_sections() == [
        ("not yet", "tools/bench/not_written_yet.py is not there yet: skipped")]


def test_metrics_round_to_significant_digits_and_compute_the_ratio_from_what_is_printed() -> None:
    metric = Metric.against("x", 1234.5678, 3000.123, "txn/s", 7)
    assert (metric.value, metric.baseline) == (1235.0, 3000.0)
    assert metric.ratio == round(1235.0 / 3000.0, 3)
    assert Metric.against("y", 0.012345, None, "ms", 1).value == 0.01235


@pytest.mark.parametrize("broken", [
    {"metric": "x", "value": 1, "baseline": None, "ratio": None, "unit": "B"},  # no n
    {"metric": "x", "value": True, "baseline": None, "ratio": None, "unit": "B", "n": 1},
    {"metric": "x", "value": 1, "baseline": "2", "ratio": None, "unit": "B", "n": 1},
    {"metric": "", "value": 1, "baseline": None, "ratio": None, "unit": "B", "n": 1},
])
def test_a_malformed_metric_dict_is_refused(broken: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Metric.from_json(broken)


def test_goals_say_by_how_much_they_are_missed() -> None:
    goals = {g.goal.split(":")[0]: g for g in run.evaluate_goals([
        Metric.against("gateway.ingest_rate", 400.0, 1000.0, "txn/s", 10),
        Metric.against("auth.round_trip_p99_ms", 50.0, 1.0, "ms", 10),
        Metric.against("settle.sqlite.post_rate", 40.0, 100.0, "txn/s", 10),
        Metric.against("a.cost_per_txn@10k", 1.0, None, "us/txn", 10),
        Metric.against("a.cost_per_txn@1m", 2.0, 1.0, "us/txn", 1000),
    ])}
    ingest = goals["gateway ingest >= 0.5x raw paho QoS 1 publish->subscribe"]
    assert (ingest.status, ingest.detail) == ("missed", "0.4x, short by 0.1x (20%)")
    auth_goal = goals["authorization p99 <= 2x raw MQTT echo p99 + 5 ms"]
    assert auth_goal.status == "missed" and "limit 7 ms, over by 43 ms" in auth_goal.detail
    assert goals["settlement on sqlite >= 0.3x raw one-transaction executemany"].status == "met"
    assert goals["settlement on postgresql >= 0.3x raw COPY"].status == "not measured"
    assert goals["a.cost_per_txn"].status == "missed"
    assert "worst 2x" in goals["a.cost_per_txn"].detail


def test_size_labels_name_the_growth_points() -> None:
    assert [run.size_label(n) for n in (10_000, 100_000, 1_000_000, 1_500)] == [
        "10k", "100k", "1m", "1500"]


# -- the measurements, at tiny sizes, over Mosquitto, SQLite and PostgreSQL ----------------------
@pytest.mark.slow
@pytest.mark.e2e
def test_gateway_ingest_runs_and_returns_well_formed_metrics() -> None:
    section = gateway.measure_sizes((60, 120), raw_messages=60, terminals=3, profile_records=30)
    names = [m.metric for m in section.metrics]
    assert names[:3] == ["gateway.ingest_rate", "gateway.ingest_us_per_txn@60",
                         "gateway.ingest_us_per_txn@120"]
    assert "gateway.stage_verify_us_per_txn" in names
    for metric in section.metrics:
        assert_well_formed(metric.as_json())
    assert any(note.startswith("where the time goes") for note in section.notes)


@pytest.mark.slow
@pytest.mark.e2e
def test_authorization_round_trip_runs_and_returns_well_formed_metrics() -> None:
    section = auth.measure_requests(5, terminals=2)
    assert [m.metric for m in section.metrics] == ["auth.round_trip_p50_ms",
                                                   "auth.round_trip_p99_ms"]
    for metric in section.metrics:
        assert_well_formed(metric.as_json())
        assert metric.n == 5


@pytest.mark.slow
@pytest.mark.e2e
def test_settlement_runs_on_both_engines_and_returns_well_formed_metrics(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(settlement, "BATCH_TXN_MAX", 40)  # 100 transactions: three batches
    section = settlement.measure_sizes((30, 100), breakdown_txns=30)
    names = {m.metric for m in section.metrics}
    assert {"settle.sqlite.post_rate", "settle.sqlite.post_us_per_txn@30",
            "settle.sqlite.post_us_per_txn@100"} <= names
    if settlement.postgres_problem() is None:
        assert "settle.postgresql.post_rate" in names
    for metric in section.metrics:
        assert_well_formed(metric.as_json())
    assert any("posted as 3 batches into the same books" in note for note in section.notes)


def test_the_raw_baseline_inserts_exactly_the_entry_rows_the_ledger_writes(
        tmp_path: Path) -> None:
    document = next(settlement.Workload(250).batches())
    kinds = Counter(t["kind"] for t in document["transactions"])
    assert set(kinds) == {"issue", "purchase", "topup", "refund"}
    books = open_books(f"sqlite:///{tmp_path / 'ledger.db'}")
    try:
        assert books.post_batch(document).posted == 250
    finally:
        books.close()
    with sqlite3.connect(tmp_path / "ledger.db") as connection:
        written = connection.execute(
            "SELECT txn_id, account_kind, owner, unit, amount_minor FROM entries").fetchall()
    assert Counter(written) == Counter(settlement.entry_rows(document))


def test_gateway_workload_chains_each_terminals_records() -> None:
    chain = gateway.build_chain("T0001", bytes(32), 8, 1_763_900_000)
    order = gateway.round_robin({"T0001": chain, "T0002": chain[:2]}, "txn")
    assert [topic.split("/")[3] for topic, _ in order] == [
        "T0001", "T0002", "T0001", "T0002", "T0001", "T0001", "T0001", "T0001", "T0001",
        "T0001"]
    assert len(set(chain)) == 8


@pytest.mark.slow
@pytest.mark.e2e
def test_central_authorization_runs_and_returns_well_formed_metrics() -> None:
    section = central_auth.measure_levels((2,), 0.5)
    if settlement.postgres_problem() is not None:
        assert section.metrics == [] and "skipped" in section.notes[0]
        return
    assert [m.metric for m in section.metrics] == [
        "central_auth.holds_per_s@2gw", "central_auth.hold_p50_ms@2gw",
        "central_auth.hold_p99_ms@2gw", "central_auth.batch_post_rate@2gw"]
    for metric in section.metrics:
        assert_well_formed(metric.as_json())
    assert all(metric.n > 0 for metric in section.metrics)
    goals = {g.goal: g for g in run.evaluate_goals(section.metrics)}
    assert any(g.startswith("central authorization") and r.status == "not measured"
               for g, r in goals.items())


@pytest.mark.slow
@pytest.mark.e2e
def test_card_feed_runs_and_its_readers_see_what_the_chain_posts() -> None:
    section = card_feed.measure_levels(((4, 0.5),), 1.5)
    if settlement.postgres_problem() is not None:
        assert section.metrics == [] and "skipped" in section.notes[0]
        return
    assert [m.metric for m in section.metrics] == [
        "card_feed.reads_per_s@4stores_0.5s", "card_feed.read_p50_ms@4stores_0.5s",
        "card_feed.read_p99_ms@4stores_0.5s", "card_feed.lag_p99_ms@4stores_0.5s"]
    for metric in section.metrics:
        assert_well_formed(metric.as_json())
    reads, _, _, lag = section.metrics
    assert reads.n == 4 * 3 and reads.baseline == 8.0  # every store's every read was answered
    assert lag.n > 0  # the posted purchases reached the readers through the feed
    assert len(section.notes) == 1 and ", 0 batches refused" in section.notes[0]


@pytest.mark.slow
@pytest.mark.e2e
def test_the_ledger_api_section_times_look_ups_against_a_raw_select() -> None:
    section = ledger_api.measure_requests(20)
    if settlement.postgres_problem() is not None:
        assert section.metrics == [] and "skipped" in section.notes[0]
        return
    assert [m.metric for m in section.metrics] == [
        f"ledger_api.{name}_{p}_ms" for name in ("health", "card_lookup_reader",
                                                 "card_lookup_gateway") for p in ("p50", "p99")]
    for metric in section.metrics:
        assert_well_formed(metric.as_json())
        assert metric.n == 20 and metric.value > 0 and metric.baseline and metric.baseline > 0
    goals = {g.goal: g for g in run.evaluate_goals(section.metrics)}
    lookup = [r for g, r in goals.items() if g.startswith("ledger API")]
    assert len(lookup) == 1 and lookup[0].status in ("met", "missed")


def test_the_look_up_goal_is_a_ratio_at_most_two() -> None:
    def goal(value: float) -> run.GoalResult:
        [found] = [g for g in run.evaluate_goals([Metric.against(
            "ledger_api.card_lookup_gateway_p50_ms", value, 0.5, "ms", 10)])
            if g.goal.startswith("ledger API")]
        return found
    assert (goal(1.0).status, goal(1.0).detail) == ("met", "2x")
    assert (goal(5.0).status, goal(5.0).detail) == ("missed", "10x, 5 times the limit")
