"""`tilltap report`: CSV and JSON from the database or over HTTP, and exit 2 on bad input.

The books hold `tests.ledger.builders.report_history` (rows computed by hand in
tests/ledger/test_ledger_reports.py); reports are taken as of 2025-11-30.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger import open_books
from ledger.server import serve
from tests.ledger.builders import batch, purchase, report_history, topup
from tests.support.postgres import temporary_database
from tools.cli import main

AS_OF = "2025-11-30"
LIABILITY_CSV = """\
program,account,unit,cards,liability_minor
gift,card_value,EUR,4,27100
gift,card_value,SEK,1,10100
loyalty,card_value,EUR,2,15200
loyalty,card_points,PTS,2,33
"""


@pytest.fixture
def dsn(tmp_path: Path) -> str:
    """A SQLite ledger holding the report history."""
    url = f"sqlite://{tmp_path / 'ledger.db'}"
    books = open_books(url)
    books.post_batch(report_history())
    books.close()
    return url


@pytest.fixture
def ledger_url(dsn: str) -> Iterator[str]:
    """A ledger server over the same database."""
    server = serve(dsn)
    yield server.url
    server.stop()


def tilltap(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the command: (exit status, stdout, stderr); argparse's own exits count too."""
    try:
        status = main(list(argv))
    except SystemExit as stop:
        status = stop.code if isinstance(stop.code, int) else 2
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_liability_as_csv_from_the_database(capsys: pytest.CaptureFixture[str], dsn: str) -> None:
    """--dsn computes the report from the database; CSV is a header and one line per row."""
    assert tilltap(capsys, "report", "liability", "--dsn", dsn, "--as-of", AS_OF) == (
        0,
        LIABILITY_CSV,
        "",
    )


def test_csv_writes_booleans_as_words(capsys: pytest.CaptureFixture[str], dsn: str) -> None:
    """Segments' top_fifth flag prints as true/false."""
    status, out, _ = tilltap(
        capsys, "report", "segments", "--dsn", dsn, "--as-of", AS_OF, "--window-days", "30"
    )
    lines = out.splitlines()
    assert status == 0
    assert lines[0] == (
        "currency,card,program,recency_days,frequency,monetary_minor,r_score,f_score,m_score,"
        "rfm_score,top_fifth,revenue_share_bp"
    )
    assert lines[1:3] == [
        "EUR,A,gift,2,3,6000,4,4,5,445,true,4615",
        "EUR,E,loyalty,2,4,4000,4,5,4,454,false,3077",
    ]


def test_csv_writes_null_as_an_empty_field(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A card never issued has no program: its liability row starts with an empty field."""
    url = f"sqlite://{tmp_path / 'other.db'}"
    books = open_books(url)
    books.post_batch(batch("gw1-1", topup("T1-1", "X", 5000), purchase("T1-2", "X", 100, points=8)))
    books.close()
    status, out, _ = tilltap(capsys, "report", "liability", "--dsn", url, "--as-of", AS_OF)
    assert (status, out.splitlines()[1:]) == (0, [",card_value,EUR,1,4900", ",card_points,PTS,1,8"])


def test_json_is_the_ledgers_report_over_http_and_from_the_database(
    capsys: pytest.CaptureFixture[str], dsn: str, ledger_url: str
) -> None:
    """--format json prints the same document whether read over HTTP or from the database."""
    arguments = ["--as-of", AS_OF, "--window-days", "30", "--days", "10", "--min-purchases", "2"]
    status, over_http, _ = tilltap(
        capsys, "report", "lapsing", "--ledger-url", ledger_url, "--format", "json", *arguments
    )
    assert status == 0
    document = json.loads(over_http)
    assert document["rows"] == [
        {
            "currency": "EUR",
            "card": "C",
            "program": "gift",
            "purchases": 2,
            "monetary_minor": 2500,
            "last_purchase": "2025-11-06",
            "days_since_purchase": 24,
        }
    ]
    assert document["parameters"] == {"days": 10, "min_purchases": 2}
    assert tilltap(capsys, "report", "lapsing", "--dsn", dsn, "--format", "json", *arguments) == (
        0,
        over_http,
        "",
    )


@pytest.mark.parametrize("name", ["liability", "breakage", "segments", "lapsing", "terminals"])
def test_every_report_prints_the_same_csv_over_http_and_from_the_database(
    capsys: pytest.CaptureFixture[str], dsn: str, ledger_url: str, name: str
) -> None:
    """Both sources give the same CSV for every report, a header and rows."""
    arguments = ["report", name, "--as-of", AS_OF, "--window-days", "30"]
    if name == "lapsing":
        arguments += ["--days", "2"]
    from_database = tilltap(capsys, *arguments, "--dsn", dsn)
    assert from_database[0] == 0 and from_database[1].count("\n") >= 3
    assert tilltap(capsys, *arguments, "--ledger-url", ledger_url) == from_database


def test_postgres_dsn_prints_the_same_report(capsys: pytest.CaptureFixture[str]) -> None:
    """The report reads a PostgreSQL ledger the same way."""
    with temporary_database() as url:
        books = open_books(url)
        books.post_batch(report_history())
        books.close()
        assert tilltap(capsys, "report", "liability", "--dsn", url, "--as-of", AS_OF) == (
            0,
            LIABILITY_CSV,
            "",
        )


@pytest.mark.parametrize(
    "arguments",
    [
        ["report", "profit", "--dsn", "{dsn}"],
        ["report", "liability"],
        ["report", "liability", "--dsn", "{dsn}", "--ledger-url", "http://127.0.0.1:1"],
        ["report", "liability", "--dsn", "{dsn}", "--format", "xml"],
        ["report", "liability", "--dsn", "{dsn}", "--as-of", "30.11.2025"],
        ["report", "terminals", "--dsn", "{dsn}", "--window-days", "0"],
        ["report", "terminals", "--dsn", "{dsn}", "--window-days", "ten"],
        ["report", "liability", "--dsn", "{dsn}", "--days", "5"],
        ["report", "lapsing", "--dsn", "{dsn}", "--days", "90", "--window-days", "30"],
        ["report", "liability", "--dsn", "mysql://ledger"],
        ["report", "liability", "--dsn", "{dsn}.typo"],
        ["report", "liability", "--ledger-url", "ftp://ledger"],
        ["report", "liability", "--ledger-url", "http://127.0.0.1:1", "--as-of", "yesterday"],
    ],
    ids=[
        "unknown-report",
        "no-source",
        "two-sources",
        "unknown-format",
        "bad-date",
        "zero-window",
        "word-window",
        "parameter-of-another-report",
        "days-beyond-window",
        "unusable-dsn",
        "missing-database",
        "unusable-url",
        "checked-before-connecting",
    ],
)
def test_bad_input_exits_2_and_prints_nothing(
    capsys: pytest.CaptureFixture[str], dsn: str, arguments: list[str]
) -> None:
    """Bad input exits 2 with a message on stderr and nothing on stdout."""
    status, out, err = tilltap(capsys, *(argument.format(dsn=dsn) for argument in arguments))
    assert (status, out) == (2, "")
    assert err


def test_an_unreachable_ledger_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    """A ledger that does not answer is not bad input: exit 1."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    status, out, err = tilltap(
        capsys, "report", "liability", "--ledger-url", f"http://127.0.0.1:{port}"
    )
    assert (status, out) == (1, "")
    assert "unavailable" in err
