"""The gateway's fleet report (gateway/fleet_report.py): the rows it builds from the
terminals' signed status, what it posts to a real ledger server, and that a ledger away or
refusing never stops it while a thread that dies stops the gateway."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.fleet_report import (
    STATE_UNKNOWN,
    FleetReporter,
    FleetView,
    build_report,
    pending_records,
)
from gateway.registry import TerminalRegistry
from gateway.service import Gateway
from gateway.settle import LedgerReach, settle
from gateway.store import GatewayStore
from ledger.auth import dump_logins, new_login
from ledger.client import LedgerClient
from ledger.fleet_sql import FLEET_TERMINALS_MAX, ROW_FIELDS, parse_report
from ledger.server import LedgerServer, serve
from protocol import messages, sealed, topics
from tests.gateway.test_settle import RECORDS, store  # noqa: F401 - the store fixture
from tools.demo import DEMO_PROGRAMS

KEY = bytes(range(32))
WAIT_S = 30.0  # generous: a deadline for an event, never a measured time


def view(**changed: Any) -> FleetView:
    fields: dict[str, Any] = {
        "gateway_id": "gw1", "terminals": {"T2": "M1", "T1": "M1"},
        "presence": {"T1": {"terminal": "T1", "state": "heartbeat", "time": 1_000,
                            "journal_depth": 9, "firmware": "tt-2", "heap_free": 40_000,
                            "refused": 2, "heard_at": 1_002.7}},
        "config_sent": 4, "config_named": {"T1": 3}, "pending_records": 11}
    return FleetView(**(fields | changed))


# -- pure --------------------------------------------------------------------------------


def test_each_registered_terminal_is_a_row_with_what_its_status_said() -> None:
    report = build_report(view())
    assert {k: report[k] for k in ("gateway_id", "pending_records", "config_version",
                                   "terminals_registered")} == {
        "gateway_id": "gw1", "pending_records": 11, "config_version": 4,
        "terminals_registered": 2}
    t1, t2 = report["terminals"]
    assert t1 == {"terminal": "T1", "merchant": "M1", "state": "heartbeat", "heard_at": 1_002,
                  "status_time": 1_000, "journal_depth": 9, "firmware": "tt-2",
                  "heap_free": 40_000, "refused": 2, "config_sent": 4, "config_named": 3}
    # Never heard from since the start: unknown, nothing claimed for it.
    assert t2 == {"terminal": "T2", "merchant": "M1", "state": STATE_UNKNOWN, "heard_at": None,
                  "status_time": None, "journal_depth": None, "firmware": None,
                  "heap_free": None, "refused": None, "config_sent": 4, "config_named": None}
    assert parse_report(report).terminals[0] == t1  # what the ledger takes


def test_a_status_of_a_terminal_no_longer_registered_is_not_reported() -> None:
    report = build_report(view(terminals={"T2": "M1"}))
    assert [row["terminal"] for row in report["terminals"]] == ["T2"]


def test_a_registry_longer_than_a_report_sends_the_first_and_counts_all() -> None:
    many = {f"T{n:05}": "M1" for n in range(FLEET_TERMINALS_MAX + 5)}
    report = build_report(view(terminals=many, presence={}))
    assert len(report["terminals"]) == FLEET_TERMINALS_MAX
    assert report["terminals_registered"] == FLEET_TERMINALS_MAX + 5
    assert report["terminals"][-1]["terminal"] == f"T{FLEET_TERMINALS_MAX - 1:05}"
    assert set(report["terminals"][0]) == set(ROW_FIELDS)


# -- against a real ledger server -------------------------------------------------------


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[tuple[LedgerServer, dict[str, str]]]:
    """A ledger with a logins file: gw1 (terminals T1, T2 of M1) and a reader."""
    made = {"gw1": new_login("gw1", "gateway", "gw1", ("T1", "T2"), ("M1",)),
            "alice": new_login("alice", "reader")}
    logins = tmp_path / "logins.json"
    logins.write_text(dump_logins({name: login for name, (login, _) in made.items()}))
    running = serve(f"sqlite:///{tmp_path / 'ledger.db'}", logins_file=logins)
    yield running, {name: token for name, (_, token) in made.items()}
    running.stop()


def test_records_pending_settlement_are_counted_until_the_ledger_takes_them(
        store: GatewayStore, ledger: tuple[LedgerServer, dict[str, str]]) -> None:  # noqa: F811
    server, tokens = ledger
    assert pending_records(store) == RECORDS
    settle(store, "gw1", LedgerClient(server.url, 30, token=tokens["gw1"]))
    assert pending_records(store) == 0


def _status(state: str, **fields: Any) -> tuple[str, bytes]:
    payload = sealed.seal(KEY, messages.TYPE_STATUS,
                          {"terminal": "T1", "state": state, "time": int(time.time()), **fields})
    return topics.up("M1", "T1", topics.LEAF_STATUS), payload


def _gateway(tmp_path: Path, server: LedgerServer, token: str, **options: Any) -> Gateway:
    registry = TerminalRegistry()
    registry.add("T1", "M1", KEY)
    registry.add("T2", "M1", bytes(32))
    return Gateway("gw1", "127.0.0.1", 1, str(tmp_path / "gw.db"), registry, DEMO_PROGRAMS,
                   ledger_url=server.url, ledger_token=token, block_poll_s=None,
                   fleet_report_s=60.0, **options)


def test_a_terminals_signed_status_reaches_the_ledgers_fleet_then_its_last_will(
        tmp_path: Path, ledger: tuple[LedgerServer, dict[str, str]]) -> None:
    server, tokens = ledger
    reader = LedgerClient(server.url, 30, token=tokens["alice"])
    gateway = _gateway(tmp_path, server, tokens["gw1"])
    try:
        assert gateway.fleet_reporter is not None
        before = int(time.time())
        gateway._on_status(*_status("online", journal_depth=6, firmware="tt-1.4",
                                    heap_free=30_000, refused=0))
        assert gateway.fleet_reporter.report_once()
        [reported] = reader.fleet()
        t1, t2 = reported["terminals"]
        assert (t1["state"], t1["journal_depth"], t1["firmware"]) == ("online", 6, "tt-1.4")
        assert before <= t1["heard_at"] <= int(time.time())
        assert t1["config_sent"] == gateway.fleet.version and t1["config_named"] is None
        assert (t2["terminal"], t2["state"]) == ("T2", STATE_UNKNOWN)
        assert reported["pending_records"] == 0
        gateway._on_status(*_status("offline"))  # the broker's last will for T1
        assert gateway.fleet_reporter.report_once()
        assert reader.fleet()[0]["terminals"][0]["state"] == "offline"
    finally:
        gateway.store.close()


def _ledger_events(caplog: pytest.LogCaptureFixture, event: str) -> int:
    return sum(getattr(record, "event", None) == event for record in caplog.records)


def test_a_ledger_away_is_logged_once_and_asked_again_every_interval(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    views = threading.Semaphore(0)

    def counted() -> FleetView:
        views.release()
        return view()

    stop = threading.Event()
    # Port 1 on loopback: nothing listens, every post is refused at once.
    reporter = FleetReporter(counted, LedgerClient("http://127.0.0.1:1", 5),
                             LedgerReach("http://127.0.0.1:1"), stop, interval_s=0.01)
    runner = threading.Thread(target=reporter.run)
    runner.start()
    for _ in range(3):
        assert views.acquire(timeout=WAIT_S)
    stop.set()
    runner.join(WAIT_S)
    assert not runner.is_alive() and reporter.reported == 0
    assert _ledger_events(caplog, "ledger_unavailable") == 1


def test_a_refused_report_is_logged_once_per_reason_and_asked_again(
        caplog: pytest.LogCaptureFixture,
        ledger: tuple[LedgerServer, dict[str, str]]) -> None:
    server, tokens = ledger
    reporter = FleetReporter(lambda: view(gateway_id="gw9"),  # not the login's gateway
                             LedgerClient(server.url, 30, token=tokens["gw1"]), None,
                             threading.Event())
    assert not reporter.report_once() and not reporter.report_once()
    assert _ledger_events(caplog, "fleet_report_refused") == 1
    reporter.view = view
    assert reporter.report_once() and reporter.reported == 1


def test_a_fleet_report_thread_that_dies_stops_the_gateway(
        tmp_path: Path, ledger: tuple[LedgerServer, dict[str, str]]) -> None:
    server, tokens = ledger
    died: list[str] = []
    gateway = _gateway(tmp_path, server, tokens["gw1"],
                       on_thread_death=lambda name, error: died.append(name))
    try:
        assert gateway.fleet_reporter is not None and gateway._fleet_reporting is not None

        def broken() -> FleetView:
            raise RuntimeError("a bug")

        gateway.fleet_reporter.view = broken
        gateway._fleet_reporting.start()
        gateway._fleet_reporting.join(WAIT_S)
        assert died == ["gateway-fleet-report"]
    finally:
        gateway.store.close()
