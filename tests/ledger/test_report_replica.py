"""Named reports read from a read replica of the books (issue 14 item 7; `ledger serve
--report-dsn`, ledger/books.py `Books.report`), against a real PostgreSQL primary and its hot
standby (streaming replication, tests/support/postgres.py `replicated_pair`).

The ledger writes only to the primary; `GET /v1/reports/<name>` reads the standby. Proved by
pausing the standby's replay: a sale posted meanwhile is in the primary's books at once and
in the report only once replay resumes. A standby that stops answering leaves holds and
batches served (reports are 503 ledger_unavailable) and the health check ok (it names where
reports are read and never waits on the standby). A report read there says how far behind
it was (`replica_lag_s`). A SQLite ledger has no replica: `--report-dsn` with one is refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from ledger import open_books
from ledger.client import LedgerClient
from ledger.errors import LedgerUnavailable
from ledger.server import LedgerServer, ServerRefused, main, serve
from tests.ledger.builders import batch, hold_request, issue, purchase
from tests.support.postgres import replicated_pair
from tests.support.stack import wait_until

REPLAY_WAIT_S = 20.0  # the standby replays a commit within this (normally milliseconds)
BOOKS_DB = "books"


def in_database(admin_dsn: str, name: str) -> str:
    parts = urlsplit(admin_dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


def liability(client: LedgerClient) -> int | None:
    """The card value the report says the holders are owed (None: the standby has not
    replayed the books' schema yet)."""
    try:
        report = client.report("liability")
    except LedgerUnavailable:
        return None
    assert 0 <= report["replica_lag_s"] < 3600, report  # read from the standby
    return sum(row["liability_minor"] for row in report["rows"]
               if row["account"] == "card_value")


@pytest.fixture
def replicated() -> Iterator[tuple[str, str, Callable[[], None]]]:
    """The books' database on a primary, the same on its standby, and the standby's stop."""
    with replicated_pair() as (primary, standby, stop):
        with psycopg.connect(primary, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{BOOKS_DB}"')
        books_standby = in_database(standby, BOOKS_DB)

        def replayed() -> bool:
            try:
                psycopg.connect(books_standby, connect_timeout=2).close()
            except psycopg.Error:
                return False
            return True

        assert wait_until(replayed, REPLAY_WAIT_S), "the standby never had the database"
        yield in_database(primary, BOOKS_DB), books_standby, stop


@pytest.fixture
def server(replicated: tuple[str, str, Callable[[], None]]) -> Iterator[LedgerServer]:
    primary, standby, _ = replicated
    open_books(primary).close()  # the schema, replicated before the ledger reads it there
    running = serve(primary, report_dsn=standby)
    yield running
    running.stop()


def test_reports_are_read_from_the_standby(
        server: LedgerServer, replicated: tuple[str, str, Callable[[], None]]) -> None:
    primary, standby, _ = replicated
    client = LedgerClient(server.url, 10)
    now_s = int(time.time())
    assert client.post_batch(batch("b1", issue("T1-1", "C1", 5000, time=now_s)))["posted"] == 1
    assert wait_until(lambda: liability(client) == 5000, REPLAY_WAIT_S)
    assert client.health() == {"status": "ok", "dialect": "postgresql", "reports": "replica"}

    with psycopg.connect(in_database(standby, "postgres"), autocommit=True) as replica:
        replica.execute("SELECT pg_wal_replay_pause()")
        try:
            sale = batch("b2", purchase("T1-2", "C1", 1000, time=now_s + 1))
            assert client.post_batch(sale)["posted"] == 1
            assert client.card("C1")["value_minor"] == 4000  # the primary's books, at once
            time.sleep(0.5)
            assert liability(client) == 5000  # the report: the standby, replay paused
        finally:
            replica.execute("SELECT pg_wal_replay_resume()")
    assert wait_until(lambda: liability(client) == 4000, REPLAY_WAIT_S)


def test_a_standby_that_stops_answering_takes_only_the_reports_down(
        server: LedgerServer, replicated: tuple[str, str, Callable[[], None]]) -> None:
    _, _, stop_standby = replicated
    client = LedgerClient(server.url, 10)
    client.post_batch(batch("b1", issue("T1-1", "C1", 5000, time=int(time.time()))))
    stop_standby()
    with pytest.raises(LedgerUnavailable):
        client.report("liability")
    assert client.health()["status"] == "ok"  # not waiting on the standby
    placed = server.books.place_hold(hold_request("h1", "C1", 1000))
    assert placed.status == "open"  # holds and batches go on, on the primary


def test_a_report_replica_must_be_postgresql(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ServerRefused):
        serve("sqlite:///" + str(tmp_path) + "/ledger.db",
              report_dsn="sqlite:///" + str(tmp_path) + "/copy.db")
    status = main(["--dsn", "sqlite:///" + str(tmp_path) + "/ledger.db", "--report-dsn",
                   "/tmp/copy.db"])
    assert status == 2
    assert "report replica is a PostgreSQL standby" in capsys.readouterr().err
