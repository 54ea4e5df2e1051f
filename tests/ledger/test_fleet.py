"""The fleet reports (POST /v1/fleet, ledger/fleet_sql.py) and the back office's fleet page,
on SQLite and PostgreSQL: validation, who may report what, replacement, staleness."""

from __future__ import annotations

import copy
import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger import Books, auth, office_sql, open_books
from ledger.auth import dump_logins, new_login
from ledger.client import LedgerClient
from ledger.db import open_database
from ledger.errors import BatchInvalid, BatchTooLarge, Forbidden
from ledger.fleet_sql import (
    FIRMWARE_CHARS_MAX,
    FLEET_GATEWAY_COLUMNS,
    FLEET_REPORT_BYTES_MAX,
    FLEET_TERMINAL_COLUMNS,
    FLEET_TERMINALS_MAX,
    FleetReportInvalid,
    parse_report,
    read_fleet,
    write_report,
)
from ledger.office import Office
from ledger.schema import table_columns
from ledger.server import LedgerServer, serve
from tests.ledger.test_office import Clock, get, sign_in, text

NOW = 1_800_000_000


def row(terminal: str = "T1", **changed: Any) -> dict[str, Any]:
    return {"terminal": terminal, "merchant": "M1", "state": "online", "heard_at": NOW - 3,
            "status_time": NOW - 4, "journal_depth": 7, "firmware": "tt-1.4.2",
            "heap_free": 51_200, "refused": 1, "config_sent": 3, "config_named": 2} | changed


def report(*rows: dict[str, Any], gateway_id: str = "gw1", **changed: Any) -> dict[str, Any]:
    return {"gateway_id": gateway_id, "pending_records": 4, "config_version": 3,
            "terminals_registered": len(rows), "terminals": list(rows)} | changed


# -- validation (pure) ------------------------------------------------------------------


def test_a_well_formed_report_parses_with_every_row_kept() -> None:
    parsed = parse_report(report(row("T1"), row("T2", state="unknown", heard_at=None,
                                                  firmware=None, journal_depth=None)))
    assert parsed.gateway_id == "gw1" and parsed.pending_records == 4
    assert [r["terminal"] for r in parsed.terminals] == ["T1", "T2"]
    assert parsed.terminals[1]["journal_depth"] is None


def _bad_reports() -> list[tuple[str, Any]]:
    too_many = [row(f"T{n}") for n in range(FLEET_TERMINALS_MAX + 1)]
    missing_key = row()
    del missing_key["refused"]
    return [
        ("not an object", [report(row())]),
        ("unknown key", report(row(), extra=1)),
        ("missing key", {k: v for k, v in report(row()).items() if k != "pending_records"}),
        ("negative count", report(row(), pending_records=-1)),
        ("bool as count", report(row(), config_version=True)),
        ("float as count", report(row(), terminals_registered=1.0)),
        ("count over 64 bits", report(row(), pending_records=2**63)),
        ("empty gateway id", report(row(), gateway_id="")),
        ("long gateway id", report(row(), gateway_id="g" * 65)),
        ("control character in id", report(row(terminal="T\n1"))),
        ("terminals not a list", report(row(), terminals={"T1": row()})),
        ("too many rows", report(*too_many)),
        ("row not an object", report(row(), terminals=["T1"])),
        ("row missing a key", report(missing_key)),
        ("row with an extra key", report(row(note="x"))),
        ("unknown state", report(row(state="asleep"))),
        ("string as count", report(row(journal_depth="7"))),
        ("negative journal depth", report(row(journal_depth=-1))),
        ("firmware too long", report(row(firmware="f" * (FIRMWARE_CHARS_MAX + 1)))),
        ("firmware not text", report(row(firmware=14))),
        ("terminal twice", report(row("T1"), row("T1"))),
    ]


@pytest.mark.parametrize(("case", "document"), _bad_reports(), ids=[c for c, _ in _bad_reports()])
def test_a_malformed_report_is_refused_whole_with_its_reason(case: str, document: Any) -> None:
    with pytest.raises(FleetReportInvalid) as caught:
        parse_report(document)
    assert caught.value.reason == "fleet_report_invalid" and caught.value.http_status == 400


# -- storage, both engines --------------------------------------------------------------


def test_the_fleet_tables_have_exactly_the_columns_written(dsn: str) -> None:
    open_books(dsn).close()
    database = open_database(dsn)
    try:
        assert table_columns(database, "fleet_gateways") == set(FLEET_GATEWAY_COLUMNS)
        assert table_columns(database, "fleet_terminals") == set(FLEET_TERMINAL_COLUMNS)
    finally:
        database.close()


def test_a_report_replaces_its_gateways_rows_and_leaves_others(books: Books) -> None:
    books.transact(lambda s, now: write_report(s, parse_report(report(row("T1"), row("T2"))),
                                               100))
    books.transact(lambda s, now: write_report(
        s, parse_report(report(row("U1", merchant="M2"), gateway_id="gw2")), 101))
    # gw1 again: T2 left its registry, T1 went offline.
    books.transact(lambda s, now: write_report(
        s, parse_report(report(row("T1", state="offline", journal_depth=0),
                               pending_records=0)), 130))
    fleet = books.read(lambda s, now: read_fleet(s))
    assert [g["gateway_id"] for g in fleet] == ["gw1", "gw2"]
    gw1, gw2 = fleet
    assert (gw1["pending_records"], gw1["reported_at"]) == (0, 130)
    assert gw1["terminals"] == [row("T1", state="offline", journal_depth=0)
                                | {"reported_at": 130}]
    assert [t["terminal"] for t in gw2["terminals"]] == ["U1"]


def test_an_empty_report_clears_the_gateways_terminals(books: Books) -> None:
    books.transact(lambda s, now: write_report(s, parse_report(report(row())), 100))
    books.transact(lambda s, now: write_report(s, parse_report(report()), 110))
    [gateway] = books.read(lambda s, now: read_fleet(s))
    assert gateway["terminals"] == [] and gateway["reported_at"] == 110


def test_a_terminal_is_online_only_while_its_gateways_report_is_fresh(books: Books) -> None:
    rows = (row("T1"), row("T2", state="heartbeat"), row("T3", state="offline"),
            row("T4", state="unknown", heard_at=None))
    books.transact(lambda s, now: write_report(s, parse_report(report(*rows)), NOW))
    fresh_at = NOW + office_sql.FLEET_REPORT_STALE_S
    [fresh] = books.read(lambda s, now: office_sql.fleet(s, fresh_at))
    assert not fresh["stale"]
    assert [t["online"] for t in fresh["terminals"]] == [True, True, False, False]
    [stale] = books.read(lambda s, now: office_sql.fleet(s, fresh_at + 1))
    assert stale["stale"] and not any(t["online"] for t in stale["terminals"])


# -- over HTTP, with logins ---------------------------------------------------------------


class Ledger:
    """A ledger on loopback with a logins file: two gateways and a reader."""

    def __init__(self, dsn: str, workdir: Path) -> None:
        made = {"gw1": new_login("gw1", "gateway", "gw1", ("T1", "T2"), ("M1",)),
                "gw2": new_login("gw2", "gateway", "gw2", ("U*",), ("M2",)),
                "alice": new_login("alice", "reader")}
        self.tokens = {name: token for name, (_, token) in made.items()}
        logins = workdir / "logins.json"
        logins.write_text(dump_logins({name: login for name, (login, _) in made.items()}))
        self.server: LedgerServer = serve(dsn, logins_file=logins)

    def client(self, login: str) -> LedgerClient:
        return LedgerClient(self.server.url, 30, token=self.tokens[login])


@pytest.fixture
def ledger(dsn: str, tmp_path: Path) -> Iterator[Ledger]:
    running = Ledger(dsn, tmp_path)
    yield running
    running.server.stop()


def test_a_gateway_reports_its_own_fleet_and_a_reader_reads_it(ledger: Ledger) -> None:
    answer = ledger.client("gw1").report_fleet(report(row("T1"), row("T2")))
    assert answer == {"status": "reported", "gateway_id": "gw1", "terminals": 2}
    [gateway] = ledger.client("alice").fleet()
    assert gateway["gateway_id"] == "gw1" and gateway["pending_records"] == 4
    assert [t["journal_depth"] for t in gateway["terminals"]] == [7, 7]


@pytest.mark.parametrize(("login", "document"), [
    ("gw2", report(row("T1"))),  # another gateway's id
    ("gw1", report(row("U1"))),  # a terminal not its own
    ("gw1", report(row("T1", merchant="M2"))),  # a merchant not its own
    ("alice", report(row("T1"))),  # a reader reports nothing
], ids=["other gateway", "other terminal", "other merchant", "reader"])
def test_a_report_beyond_the_logins_own_fleet_is_403_and_changes_nothing(
        ledger: Ledger, login: str, document: dict[str, Any]) -> None:
    ledger.client("gw1").report_fleet(report(row("T2")))
    before = ledger.client("alice").fleet()
    with pytest.raises(Forbidden):
        ledger.client(login).report_fleet(document)
    assert ledger.client("alice").fleet() == before


def test_a_malformed_or_oversized_report_is_refused_and_nothing_is_written(
        ledger: Ledger) -> None:
    bad = report(row("T1", state="asleep"))
    with pytest.raises(BatchInvalid) as caught:
        ledger.client("gw1").report_fleet(bad)
    assert (caught.value.reason, caught.value.http_status) == ("fleet_report_invalid", 400)
    huge = report(row("T1", firmware="f" * FIRMWARE_CHARS_MAX))
    huge["padding"] = "x" * FLEET_REPORT_BYTES_MAX
    with pytest.raises(BatchTooLarge):  # the client does not send it
        ledger.client("gw1").report_fleet(huge)
    # Sent anyway, the server answers 413 from its Content-Length, before reading it.
    connection = http.client.HTTPConnection("127.0.0.1", ledger.server.port, timeout=30)
    connection.putrequest("POST", "/v1/fleet")
    for name, value in (("Authorization", f"Bearer {ledger.tokens['gw1']}"),
                        ("Content-Type", "application/json"),
                        ("Content-Length", str(FLEET_REPORT_BYTES_MAX + 1))):
        connection.putheader(name, value)
    connection.endheaders()
    response = connection.getresponse()
    assert (response.status, json.loads(response.read())["error"]) == (413, "request_too_large")
    connection.close()
    assert ledger.client("alice").fleet() == []


# -- the back office page -----------------------------------------------------------------


def test_the_fleet_page_shows_each_terminal_and_marks_a_silent_gateway_stale(
        dsn: str) -> None:
    clock = Clock()
    books = open_books(dsn, clock)
    try:
        logins = {"carl": auth.new_operator("carl", "clerk", "a long enough secret")}
        office = Office(books, lambda: logins, secure=False, clock=clock)
        hostile = row("T2", firmware="<b>x</b>", state="offline", journal_depth=0)
        document = report(row("T1", journal_depth=12), hostile, terminals_registered=5)
        books.transact(lambda s, now: write_report(s, parse_report(copy.deepcopy(document)),
                                                   now))
        cookie, _ = sign_in(office, "carl")
        page = text(get(office, "/office/fleet", cookie))
        table = page.split("<table id='fleet-gw1'>", 1)[1].split("</table>", 1)[0]
        assert "<td>T1</td><td>M1</td><td>yes</td><td>online</td>" in table
        assert "<td>12</td><td>tt-1.4.2</td><td>3</td><td>2</td><td>1</td>" in table
        assert "<td>T2</td><td>M1</td><td>no</td><td>offline</td>" in table
        assert "&lt;b&gt;x&lt;/b&gt;" in table and "<b>x" not in page
        assert "<span id='fleet-online'>1</span> of 2" in page
        assert "3 more registered, not reported" in page
        assert "fleet-stale-gw1" not in page
        clock.now += office_sql.FLEET_REPORT_STALE_S + 1
        later = text(get(office, "/office/fleet", cookie))
        assert "id='fleet-stale-gw1'>stale</span>" in later
        assert "<span id='fleet-online'>0</span> of 2" in later
    finally:
        books.close()
