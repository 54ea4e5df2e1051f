"""`tilltap report <name>`: a named ledger report printed as CSV or JSON.

    tilltap report segments --ledger-url http://ledger:8080 --as-of 2025-11-30 --window-days 90
    tilltap report lapsing --ledger-dsn sqlite:///var/lib/tilltap/ledger.db --days 30 --format json

The report is read from a running ledger over HTTP (``--ledger-url``) or computed straight
from its database (``--ledger-dsn``, old name ``--dsn``), read-only; with neither option,
$TILLTAP_LEDGER_URL, else $TILLTAP_LEDGER_DSN. Both give the same JSON (docs/ledger.md
lists each report's columns). CSV is a header row and one line per row (null as an empty
field, booleans as true/false, a list of cards as its ids separated by spaces); the JSON
summary, if any, is in the JSON output only. customer_lapsing shows contact details only
from a ledger URL (the ledger holds the customer key and audits the read); computed from a
database its contact columns are empty.

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

from ledger.client import connect
from ledger.db import POSTGRES_SCHEMES, SQLITE_MEMORY, Row, Session, sqlite_path
from ledger.errors import ConfigInvalid, LedgerRejected, LedgerUnavailable
from ledger.limits import LOOKUP_CHUNK_IDS
from ledger.reports import REPORT_NAMES, parse_report_query, run_report
from tools.command import (
    ENVIRONMENT_VARIABLES,
    UsageError,
    add_environment_option,
    environment_value,
    http_url,
    naming_variable,
    old_spelling,
    open_read_only,
    sqlite_file,
)

FORMATS = ("csv", "json")
EXIT_BAD_INPUT = 2
EXIT_UNAVAILABLE = 1
PARAMETERS = ("as_of", "window_days", "days", "min_purchases", "top_percent", "next_percent",
              "months")
"""Report parameters, named as in GET /v1/reports (the options spell them with dashes)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `tilltap report`."""
    parser.add_argument("name", choices=REPORT_NAMES, help="which report")
    # Not add_environment_option: with neither option given, `source` picks the variable.
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--ledger-url", type=http_url,
                        help="a running ledger, https://host:port [default: "
                             "$TILLTAP_LEDGER_URL]")
    source.add_argument("--ledger-dsn", "--dsn", dest="ledger_dsn",
                        help="the ledger's database, opened read-only: a path, "
                             "sqlite:///abs/path.db or postgresql://... [default: "
                             "$TILLTAP_LEDGER_DSN, if there is no ledger URL]"
                             + old_spelling("--dsn"))
    add_environment_option(parser, "--ledger-token-file", metavar="FILE",
                           help="with a ledger URL: a reader login's token (tilltap ledger "
                                "login)")
    add_environment_option(parser, "--ledger-ca", metavar="FILE",
                           help="with a ledger URL: the ledger's CA to pin (tilltap ledger tls)")
    parser.add_argument("--format", choices=FORMATS, default="csv", dest="output_format",
                        help="output format (csv)")
    parser.add_argument("--as-of", help="YYYY-MM-DD, through the end of that UTC day (today)")
    parser.add_argument("--window-days", help="days up to as-of that count (90)")
    parser.add_argument("--days", help="lapsing: days away that make a regular lapsed (30)")
    parser.add_argument(
        "--min-purchases", help="lapsing: purchases in the window that make a regular (3)"
    )
    parser.add_argument("--top-percent",
                        help="customer_value: customers in the top class, percent (20)")
    parser.add_argument("--next-percent",
                        help="customer_value: customers in the next class, percent (30)")
    parser.add_argument("--months", help="customer_retention: cohorts of the last N months (12)")


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Fetch the report `args` name, print it (to stdout), and return the exit status."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    parameters = {key: value for key in PARAMETERS if (value := getattr(args, key)) is not None}
    try:
        today = datetime.now(UTC).date()
        parse_report_query(args.name, parameters, today)  # refuse bad input before any I/O
        ledger_url, ledger_dsn = source(args)
        report = fetch(args.name, parameters, ledger_url, ledger_dsn,
                       getattr(args, "ledger_token_file", None), getattr(args, "ledger_ca", None))
    except (LedgerRejected, ConfigInvalid) as error:
        print(f"tilltap report: {error.detail} ({error.reason})", file=err)
        return EXIT_BAD_INPUT
    except LedgerUnavailable as error:
        print(f"tilltap report: the ledger is unavailable: {error.detail}", file=err)
        return EXIT_UNAVAILABLE
    out.write(render(report, args.output_format))
    return 0


def source(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """(ledger URL, ledger DSN), one of them None: the option given, else $TILLTAP_LEDGER_URL,
    else $TILLTAP_LEDGER_DSN; UsageError if there is none (a variable's value is checked as
    its option's would be, and the message names the variable)."""
    if args.ledger_url is not None or args.ledger_dsn is not None:
        return args.ledger_url, args.ledger_dsn
    if (url := environment_value("--ledger-url")) is not None:
        try:
            return http_url(url), None
        except argparse.ArgumentTypeError as error:
            raise UsageError(f"{error} (from ${ENVIRONMENT_VARIABLES['--ledger-url']})"
                             ) from None
    if (dsn := environment_value("--ledger-dsn")) is not None:
        with naming_variable("--ledger-dsn", dsn):
            sqlite_file(dsn)  # a scheme that is no database's
        return None, dsn
    raise UsageError("give --ledger-url or --ledger-dsn (or set $TILLTAP_LEDGER_URL or "
                     "$TILLTAP_LEDGER_DSN)")


def fetch(
    name: str, parameters: Mapping[str, str], ledger_url: str | None, dsn: str | None,
    token_file: str | None = None, ca_file: str | None = None,
) -> dict[str, Any]:
    """The report's JSON, from the ledger's HTTP API or computed from its database."""
    if ledger_url is not None:
        return connect(ledger_url, token_file, ca_file).report(name, parameters)
    assert dsn is not None, "source() gives a ledger URL or a DSN"
    if not dsn.startswith(POSTGRES_SCHEMES):
        return _report_from_sqlite(name, parameters, sqlite_path(dsn))
    from ledger.books import open_books  # here: every `tilltap` command imports this module

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
    """None as an empty field, booleans as true/false, a list as its items separated by
    spaces; numbers and text as they are."""
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(str(item) for item in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return value
