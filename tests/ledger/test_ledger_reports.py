"""Named reports over a small hand-built history, with every expected row computed by hand.

The history (`builders.report_history`; EUR unless noted; issues at T0 on 2025-10-01 with
10000 each, purchases pay their whole card_value from the card, gift purchases earn no points):

    card  program  what happens
    A     gift     buys 1000 (11-10), 2000 of a 3000 sale (11-20), 2000 (11-28); 500 (12-01)
    B     gift     buys 4000 (10-15); top-up 1000 + 100 bonus (11-02); buys 500 (11-29)
    C     gift     buys 1500 (11-05) and 1500 (11-06); 500 of the first refunded (11-07)
    D     loyalty  buys 800, 8 points (10-20)
    E     loyalty  buys 1000 + 10 points on 11-15, twice on 11-16, 11-28; 15 points expire 11-25
    F     gift     2000 of value expires (11-26, merchant M2)
    K     gift     SEK: issued 20000 (11-01), buys 9900 (11-30)

Reports are taken as of 2025-11-30 (so A's purchase of 12-01 is after the cutoff).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest

from ledger import BatchInvalid, BatchTooLarge, Books, NotFound, open_books
from ledger.client import LedgerClient
from ledger.reports import parse_report_query
from ledger.server import serve
from tests.ledger.builders import at, batch, issue, purchase, refund, report_history

AS_OF = "2025-11-30"


@pytest.fixture
def books(dsn: str) -> Iterator[Books]:
    """Books holding the history, with the clock on the evening of 2025-11-30."""
    opened = open_books(dsn, clock=lambda: at(AS_OF, hour=23))
    opened.post_batch(report_history())
    yield opened
    opened.close()


def rows(books: Books, name: str, **parameters: str) -> list[dict[str, Any]]:
    """The rows of a report as of AS_OF unless the parameters say otherwise."""
    result: list[dict[str, Any]] = books.report(name, {"as_of": AS_OF, **parameters}).rows
    return result


def table(columns: str, *values: tuple[Any, ...]) -> list[dict[str, Any]]:
    """Expected rows written as a header and tuples."""
    names = columns.split()
    return [dict(zip(names, row, strict=True)) for row in values]


# -- liability and breakage -------------------------------------------------------------------


def test_liability_per_program_account_and_unit_at_the_end_of_the_day(books: Books) -> None:
    """What holders are owed per program: card value per currency and points, as of the date."""
    assert rows(books, "liability") == table(
        "program account unit cards liability_minor",
        ("gift", "card_value", "EUR", 4, 5000 + 6600 + 7500 + 8000),
        ("gift", "card_value", "SEK", 1, 20_000 - 9900),
        ("loyalty", "card_value", "EUR", 2, 9200 + 6000),
        ("loyalty", "card_points", "PTS", 2, 8 + 40 - 15),
    )


def test_liability_as_of_an_earlier_date_ignores_later_transactions(books: Books) -> None:
    """As of 2025-10-31 only October counts: no SEK card yet, and only D has points."""
    assert rows(books, "liability", as_of="2025-10-31") == table(
        "program account unit cards liability_minor",
        ("gift", "card_value", "EUR", 4, 10_000 + 6000 + 10_000 + 10_000),
        ("loyalty", "card_value", "EUR", 2, 9200 + 10_000),
        ("loyalty", "card_points", "PTS", 1, 8),
    )


def test_liability_with_every_transaction_equals_the_card_balances(books: Books) -> None:
    """Far enough ahead, the liability per currency is the sum of the cards' balances."""
    liability: dict[str, int] = {}
    for row in rows(books, "liability", as_of="2100-01-01"):
        if row["account"] == "card_value":
            liability[row["unit"]] = liability.get(row["unit"], 0) + row["liability_minor"]
    balances: dict[str, int] = {}
    for balance in books.balances():
        balances[balance["currency"]] = (
            balances.get(balance["currency"], 0) + balance["value_minor"]
        )
    assert liability == balances == {"EUR": 42_300 - 500, "SEK": 10_100}


def test_breakage_is_the_value_and_points_that_expired_in_the_window(books: Books) -> None:
    """Expired value and points per program, merchant and unit, within the window only."""
    assert rows(books, "breakage", window_days="30") == table(
        "program merchant unit cards expirations breakage_minor",
        ("gift", "M2", "EUR", 1, 1, 2000),
        ("loyalty", "M1", "PTS", 1, 1, 15),
    )
    assert rows(books, "breakage", as_of="2025-11-25", window_days="1") == table(
        "program merchant unit cards expirations breakage_minor",
        ("loyalty", "M1", "PTS", 1, 1, 15),
    )
    assert rows(books, "breakage", window_days="3") == []


def test_expire_posts_card_value_and_points_to_breakage(books: Books) -> None:
    """The expire kind keeps the books balanced and takes the lapsed amounts off the cards."""
    assert books.trial_balance() == {"EUR": 0, "PTS": 0, "SEK": 0}
    assert books.card_balance("F")["value_minor"] == 8000  # type: ignore[index]
    assert books.card_balance("E")["points"] == 25  # type: ignore[index]


# -- customer value ---------------------------------------------------------------------------

SEGMENT_COLUMNS = (
    "currency card program recency_days frequency monetary_minor r_score f_score m_score"
    " rfm_score top_fifth revenue_share_bp"
)


def test_segments_score_recency_frequency_and_spend_and_flag_the_top_fifth(books: Books) -> None:
    """Over 30 days: A spent most (the top fifth of five cards is one), scores by quintile.

    Recency 1 (B), 2, 2 (A, E), 24 (C), 41 (D): 5, 4, 4, 2, 1 (ties share the better score).
    Frequency 4 (E), 3 (A), 2 (C), 1 (B), 0 (D) and spend 6000 (A), 4000 (E), 2500 (C, net
    of its refund), 500 (B), 0 (D) score 5 to 1. Revenue 13000: A's share is 4615 bp.
    F never bought anything and is left out; K is alone in SEK.
    """
    report = books.report("segments", {"as_of": AS_OF, "window_days": "30"})
    assert report.rows == table(
        SEGMENT_COLUMNS,
        ("EUR", "A", "gift", 2, 3, 6000, 4, 4, 5, "445", True, 4615),
        ("EUR", "E", "loyalty", 2, 4, 4000, 4, 5, 4, "454", False, 3077),
        ("EUR", "C", "gift", 24, 2, 2500, 2, 3, 3, "233", False, 1923),
        ("EUR", "B", "gift", 1, 1, 500, 5, 2, 2, "522", False, 385),
        ("EUR", "D", "loyalty", 41, 0, 0, 1, 1, 1, "111", False, 0),
        ("SEK", "K", "gift", 0, 1, 9900, 5, 5, 5, "555", True, 10_000),
    )
    assert report.summary == {
        "EUR": {
            "cards": 5,
            "top_cards": 1,
            "revenue_minor": 13_000,
            "top_revenue_minor": 6000,
            "top_share_bp": 4615,
        },
        "SEK": {
            "cards": 1,
            "top_cards": 1,
            "revenue_minor": 9900,
            "top_revenue_minor": 9900,
            "top_share_bp": 10_000,
        },
    }


def test_segments_over_a_longer_window_count_older_purchases_and_share_tied_scores(
    books: Books,
) -> None:
    """Over 90 days B (2 purchases, 4500) and D (1, 800) gain; B and C tie on frequency."""
    scores = {
        row["card"]: (row["frequency"], row["monetary_minor"], row["rfm_score"])
        for row in rows(books, "segments", window_days="90")
    }
    assert scores == {
        "A": (3, 6000, "445"),
        "B": (2, 4500, "534"),
        "C": (2, 2500, "232"),
        "D": (1, 800, "111"),
        "E": (4, 4000, "453"),
        "K": (1, 9900, "555"),
    }


def test_lapsing_lists_regulars_who_stayed_away(books: Books) -> None:
    """Two purchases in 30 days and none in the last 10: only C (last seen 24 days ago)."""
    assert rows(books, "lapsing", window_days="30", days="10", min_purchases="2") == table(
        "currency card program purchases monetary_minor last_purchase days_since_purchase",
        ("EUR", "C", "gift", 2, 2500, "2025-11-06", 24),
    )


def test_lapsing_counts_exactly_days_away_as_lapsed_and_orders_by_spend(books: Books) -> None:
    """Away for 2 days with 3 purchases: A and E (2 days each), the bigger spender first."""
    assert rows(books, "lapsing", window_days="30", days="2", min_purchases="3") == table(
        "currency card program purchases monetary_minor last_purchase days_since_purchase",
        ("EUR", "A", "gift", 3, 6000, "2025-11-28", 2),
        ("EUR", "E", "loyalty", 4, 4000, "2025-11-28", 2),
    )
    assert rows(books, "lapsing") == []  # defaults: 90 days, 3 purchases, away for 30


# -- terminals --------------------------------------------------------------------------------

TERMINAL_COLUMNS = "date terminal kind currency count amount_minor card_value_minor points"


def test_terminals_total_each_day_per_terminal_kind_and_currency(books: Books) -> None:
    """Daily totals in the window; two sales of one day on one terminal are added up."""
    assert rows(books, "terminals", as_of="2025-11-16", window_days="2") == table(
        TERMINAL_COLUMNS,
        ("2025-11-15", "T2", "purchase", "EUR", 1, 1000, 1000, 10),
        ("2025-11-16", "T2", "purchase", "EUR", 2, 2000, 2000, 20),
    )
    assert rows(books, "terminals", window_days="3") == table(
        TERMINAL_COLUMNS,
        ("2025-11-28", "T1", "purchase", "EUR", 1, 2000, 2000, 0),
        ("2025-11-28", "T2", "purchase", "EUR", 1, 1000, 1000, 10),
        ("2025-11-29", "T1", "purchase", "EUR", 1, 500, 500, 0),
        ("2025-11-30", "T4", "purchase", "SEK", 1, 9900, 9900, 0),
    )
    assert rows(books, "terminals", as_of="2025-11-26", window_days="2") == table(
        TERMINAL_COLUMNS,
        ("2025-11-25", "T9", "expire", "EUR", 1, 0, 0, 15),
        ("2025-11-26", "T9", "expire", "EUR", 1, 2000, 2000, 0),
    )


# -- parameters, defaults, HTTP ---------------------------------------------------------------


def test_a_report_says_what_it_covers(books: Books) -> None:
    """The JSON names the report, its date, window, parameters, columns, rows and summary."""
    document = books.report("lapsing", {"as_of": AS_OF, "days": "5"}).to_json()
    assert {key: document[key] for key in ("report", "as_of", "window_days", "parameters")} == {
        "report": "lapsing",
        "as_of": AS_OF,
        "window_days": 90,
        "parameters": {"days": 5, "min_purchases": 3},
    }
    assert document["columns"][:2] == ["currency", "card"]
    assert document["summary"] == {}


def test_the_default_date_is_today_by_the_books_clock(books: Books) -> None:
    """Without as_of a report is taken as of the clock's UTC date."""
    assert books.report("liability").query.as_of == date(2025, 11, 30)


@pytest.mark.parametrize(
    "name, parameters",
    [
        ("liability", {"as_of": "2025-13-01"}),
        ("liability", {"as_of": "20251130"}),
        ("liability", {"as_of": "2025-11-30T00:00"}),
        ("liability", {"as_of": ""}),
        ("terminals", {"window_days": "0"}),
        ("terminals", {"window_days": "-1"}),
        ("terminals", {"window_days": "+5"}),
        ("terminals", {"window_days": "1e3"}),
        ("terminals", {"window_days": "3661"}),
        ("terminals", {"window_days": "9" * 5000}),
        ("liability", {"days": "5"}),
        ("segments", {"colour": "red"}),
        ("lapsing", {"days": "90"}),
        ("lapsing", {"min_purchases": "0"}),
    ],
)
def test_bad_report_parameters_are_parameter_invalid(name: str, parameters: dict[str, str]) -> None:
    """Dates are YYYY-MM-DD, counts whole numbers in range, and no report takes strangers."""
    with pytest.raises(BatchInvalid) as caught:
        parse_report_query(name, parameters, date(2025, 11, 30))
    assert (caught.value.reason, caught.value.http_status) == ("parameter_invalid", 400)


def test_an_unknown_report_is_report_unknown() -> None:
    """A name that is not a report is NotFound report_unknown (404)."""
    with pytest.raises(NotFound) as caught:
        parse_report_query("profit", {}, date(2025, 11, 30))
    assert (caught.value.reason, caught.value.http_status) == ("report_unknown", 404)


def test_a_report_over_its_row_limit_is_refused_not_cut(
    books: Books, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More rows than REPORT_ROWS_MAX is report_too_large (413), never a silent truncation."""
    monkeypatch.setattr("ledger.queries.REPORT_ROWS_MAX", 3)
    with pytest.raises(BatchTooLarge) as caught:
        rows(books, "terminals", window_days="3")
    assert (caught.value.reason, caught.value.http_status) == ("report_too_large", 413)
    assert len(rows(books, "terminals", as_of="2025-11-16", window_days="2")) == 2


def test_reports_over_http_equal_the_books(dsn: str) -> None:
    """GET /v1/reports/<name> answers exactly what Books.report computes; errors are typed."""
    server = serve(dsn, clock=lambda: at(AS_OF, hour=23))
    try:
        server.books.post_batch(report_history())
        client = LedgerClient(server.url, timeout_s=30)
        for name, parameters in [
            ("liability", {}),
            ("breakage", {"window_days": "30"}),
            ("segments", {"as_of": AS_OF, "window_days": "30"}),
            ("lapsing", {"window_days": "30", "days": "10", "min_purchases": "2"}),
            ("terminals", {"as_of": "2025-11-16", "window_days": "2"}),
        ]:
            assert (
                client.report(name, parameters) == server.books.report(name, parameters).to_json()
            )
        with pytest.raises(NotFound) as unknown:
            client.report("profit")
        assert unknown.value.reason == "report_unknown"
        with pytest.raises(BatchInvalid) as invalid:
            client.report("terminals", {"window_days": "0"})
        assert invalid.value.reason == "parameter_invalid"
        with pytest.raises(BatchInvalid):
            client._request("GET", "/v1/reports/terminals?window_days=1&window_days=2")
        with pytest.raises(BatchInvalid):
            client._request("GET", "/v1/reports/terminals?window_days")
    finally:
        server.stop()


# -- refused ----------------------------------------------------------------------------------


def test_refused_lists_the_windows_refusals_and_what_became_of_them(dsn: str) -> None:
    """The refused report: the transactions batches refused within the window (by the day
    the ledger refused them), each with the batch that has its txn_id in the books since
    (null: the sale is still not in the books), and counts by reason."""
    now = [at("2025-11-01")]
    books = open_books(dsn, clock=lambda: now[0])
    try:
        early_refund = refund("T1-3", "T1-2", card_value_minor=100)
        books.post_batch(batch("gw1-1", issue("T1-1"), early_refund))
        now[0] = at("2025-11-20")
        negative_points = purchase("T1-4") | {"points": -1}
        books.post_batch(batch("gw1-2", purchase("T1-2"), early_refund, negative_points))
        report = books.report("refused", {"as_of": AS_OF, "window_days": "30"})
        assert [
            (row["refused_at"], row["batch_id"], row["txn_id"], row["reason"],
             row["posted_batch_id"])
            for row in report.rows
        ] == [
            (at("2025-11-01"), "gw1-1", "T1-3", "refund_unknown_original", "gw1-2"),
            (at("2025-11-20"), "gw1-2", "T1-4", "amount_invalid", None),
        ]  # fmt: skip
        assert report.summary == {
            "refused": 2,
            "not_posted": 1,
            "by_reason": {"refund_unknown_original": 1, "amount_invalid": 1},
        }
        recent = books.report("refused", {"as_of": AS_OF, "window_days": "11"})
        assert [row["txn_id"] for row in recent.rows] == ["T1-4"]
        assert books.refused_transactions() == report.rows
        assert books.refused_transactions("gw1-2") == report.rows[1:]
    finally:
        books.close()
