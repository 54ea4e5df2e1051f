"""`tilltap report <name>`: a named ledger report printed as CSV or JSON.

    tilltap report segments --ledger-url http://ledger:8080 --as-of 2025-11-30 --window-days 90
    tilltap report lapsing --dsn sqlite:///var/lib/tilltap/ledger.db --days 30 --format json

The report is read from a running ledger over HTTP (``--ledger-url``) or computed straight
from its database (``--dsn``); both give the same JSON (docs/ledger.md lists each report's
columns). CSV is a header row and one line per row (null as an empty field, booleans as
true/false); the JSON summary, if any, is in the JSON output only.

Exit status: 0 printed; 2 bad input (unknown report, bad parameter, unusable URL or DSN,
or the ledger refused the request); 1 the ledger could not be reached or read.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sqlite3
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from itertools import islice
from typing import Any, TextIO

from ledger.books import open_books
from ledger.client import connect
from ledger.db import POSTGRES_SCHEMES, SQLITE_MEMORY, Row, Session, sqlite_path
from ledger.errors import ConfigInvalid, LedgerRejected, LedgerUnavailable
from ledger.limits import LOOKUP_CHUNK_IDS
from ledger.reports import REPORT_NAMES, parse_report_query, run_report
from tools.command import UsageError, open_read_only

FORMATS = ("csv", "json")
EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 1
PARAMETERS = ("as_of", "window_days", "days", "min_purchases")
"""Report parameters, named as in GET /v1/reports (the options spell them with dashes)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `tilltap report`."""
    parser.add_argument("name", choices=REPORT_NAMES, help="which report")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--ledger-url", help="a running ledger, https://host:port")
    source.add_argument("--dsn", help="the ledger's database: sqlite:///path.db or postgresql://")
    parser.add_argument("--ledger-token-file", default=None,
                        help="with --ledger-url: a reader login's token (tilltap ledger login)")
    parser.add_argument("--ledger-ca", default=None,
                        help="with --ledger-url: the ledger's CA to pin (tilltap ledger tls)")
    parser.add_argument("--format", choices=FORMATS, default="csv", dest="output_format",
                        help="output format (csv)")
    parser.add_argument("--as-of", help="YYYY-MM-DD, through the end of that UTC day (today)")
    parser.add_argument("--window-days", help="days up to as-of that count (90)")
    parser.add_argument("--days", help="lapsing: days away that make a regular lapsed (30)")
    parser.add_argument(
        "--min-purchases", help="lapsing: purchases in the window that make a regular (3)"
    )


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Fetch the report `args` name, print it (to stdout), and return the exit status."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    parameters = {key: value for key in PARAMETERS if (value := getattr(args, key)) is not None}
    try:
        today = datetime.now(UTC).date()
        parse_report_query(args.name, parameters, today)  # refuse bad input before any I/O
        report = fetch(args.name, parameters, args.ledger_url, args.dsn,
                       getattr(args, "ledger_token_file", None), getattr(args, "ledger_ca", None))
    except (LedgerRejected, ConfigInvalid) as error:
        print(f"tilltap report: {error.detail} ({error.reason})", file=err)
        return EXIT_BAD_INPUT
    except LedgerUnavailable as error:
        print(f"tilltap report: the ledger is unavailable: {error.detail}", file=err)
        return EXIT_UNAVAILABLE
    out.write(render(report, args.output_format))
    return 0


def fetch(
    name: str, parameters: Mapping[str, str], ledger_url: str | None, dsn: str | None,
    token_file: str | None = None, ca_file: str | None = None,
) -> dict[str, Any]:
    """The report's JSON, from the ledger's HTTP API or computed from its database."""
    if ledger_url is not None:
        return connect(ledger_url, token_file, ca_file).report(name, parameters)
    assert dsn is not None, "argparse requires --ledger-url or --dsn"
    if not dsn.startswith(POSTGRES_SCHEMES):
        return _report_from_sqlite(name, parameters, sqlite_path(dsn))
    books = open_books(dsn)
    try:
        return books.report(name, parameters).to_json()
    finally:
        books.close()


def _report_from_sqlite(name: str, parameters: Mapping[str, str], path: str) -> dict[str, Any]:
    """The report computed over a read-only connection, in one read transaction: nothing is
    created or changed (a missing file, or a gateway's database, is refused, not opened)."""
    if path == SQLITE_MEMORY:
        raise ConfigInvalid("dsn_invalid", "an in-memory database holds no books")
    try:
        connection = open_read_only(path, "ledger")
    except UsageError as error:
        raise ConfigInvalid("dsn_invalid", str(error)) from None
    try:
        query = parse_report_query(name, parameters, datetime.now(UTC).date())
        connection.execute("BEGIN")
        try:
            return run_report(_ReadOnlySession(connection), query).to_json()
        finally:
            connection.execute("ROLLBACK")
    except sqlite3.Error as error:
        raise LedgerUnavailable(f"{path}: {error}") from error
    finally:
        connection.close()


class _ReadOnlySession(Session):
    """The books' read interface over a read-only SQLite connection (reports only fetch)."""

    dialect = "sqlite"
    lock_rows = ""
    lock_rows_skip_locked = ""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        rows: list[Row] = self._connection.execute(sql, tuple(params)).fetchall()
        return rows

    def fetch_in(self, sql: str, column: str, ids: Iterable[str]) -> list[Row]:
        rows: list[Row] = []
        remaining = iter(sorted(set(ids)))
        while chunk := list(islice(remaining, LOOKUP_CHUNK_IDS)):
            match = f"{column} IN ({','.join('?' * len(chunk))})"
            rows.extend(self._connection.execute(sql.format(match=match), chunk).fetchall())
        return rows

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        raise AssertionError("a report only reads")

    def bulk_insert(self, table: str, columns: Sequence[str], rows: Iterable[Row]) -> None:
        raise AssertionError("a report only reads")


def render(report: Mapping[str, Any], output_format: str) -> str:
    """The report as the chosen format's text, ending with a newline."""
    if output_format == "json":
        return json.dumps(report, indent=2, sort_keys=True) + "\n"
    assert output_format == "csv", output_format
    return to_csv(report)


def to_csv(report: Mapping[str, Any]) -> str:
    """A header of the report's columns, then one line per row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    columns = report["columns"]
    writer.writerow(columns)
    for row in report["rows"]:
        writer.writerow([_csv_field(row[column]) for column in columns])
    return buffer.getvalue()


def _csv_field(value: Any) -> Any:
    """None as an empty field and booleans as true/false; numbers and text as they are."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value
