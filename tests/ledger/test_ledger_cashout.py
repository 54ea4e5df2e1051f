"""The cashout kind: card value paid out in cash at the counter.

A cashout takes card_value_minor (= amount_minor, above zero) off the card and out of the
merchant's cash clearing: D card_value(C), C cash_clearing(M). It carries nothing else (no
bonus, points, original, discount or redemption; it may post the hold the gateway placed for
it, like a purchase), given legs must take exactly its card
value off the card, no refund may name it, and the reports count it as a kind of its own but
never as spend.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from ledger import Books
from ledger.client import LedgerClient
from ledger.errors import HoldRefused
from ledger.server import serve
from tests.ledger.builders import (
    account_totals,
    assert_balanced,
    assert_txn_refused,
    at,
    batch,
    cashout,
    hold_request,
    issue,
    posted_legs,
    purchase,
    refund,
    replace_last,
    snapshot,
    topup,
)

Document = dict[str, Any]

CASH_OUT_LEGS = [
    ["card_value", "EUR", 1500, "cash_out"],
    ["cash_clearing", "EUR", -1500, "cash_out"],
]
"""The engine's legs of a cashout of 1500."""


def opening() -> Document:
    """Card C1 issued with 5000 at M1, then a purchase of 1000 earning 10 points."""
    return batch("gw1-open", issue("T1-1"), purchase("T1-2", card_value_minor=1000, points=10))


def value_minor(books: Books, card: str = "C1") -> int:
    """A card's value as its holder sees it."""
    balance = books.card_balance(card)
    assert balance is not None, card
    value: int = balance["value_minor"]
    return value


# -- posting ----------------------------------------------------------------------------------


def test_a_posted_cashout_lowers_the_card_and_the_till(books: Books, dsn: str) -> None:
    """After a cashout of 1500 the card holds 5000 - 1000 - 1500; points are untouched."""
    books.post_batch(opening())
    result = books.post_batch(batch("gw1-cash", cashout("T1-3", amount_minor=1500)))
    assert (result.status, result.posted) == ("posted", 1)
    assert posted_legs(dsn, "T1-3") == [
        ("card_value", "C1", "EUR", 1500),
        ("cash_clearing", "M1", "EUR", -1500),
    ]
    balance = books.card_balance("C1")
    assert balance is not None
    assert (balance["value_minor"], balance["points"]) == (2500, 10)
    assert account_totals(dsn) == {
        ("cash_clearing", "EUR"): 5000 - 1500,
        ("card_value", "EUR"): -5000 + 1000 + 1500,
        ("merchant_settlement", "EUR"): -1000,
        ("card_points", "PTS"): -10,
        ("promotion_expense", "PTS"): 10,
    }
    assert_balanced(books)


def test_a_cashout_of_the_whole_value_leaves_the_card_empty(books: Books) -> None:
    """Paying out everything left (as the engine does by default) brings the card to zero."""
    books.post_batch(opening())
    books.post_batch(batch("gw1-cash", cashout("T1-3", amount_minor=4000)))
    assert value_minor(books) == 0
    assert_balanced(books)


def test_the_ledger_books_a_cashout_beyond_the_value_as_told(books: Books) -> None:
    """The gateway judges the value; settlement records what happened, even below zero."""
    books.post_batch(opening())
    books.post_batch(batch("gw1-cash", cashout("T1-3", amount_minor=4500)))
    assert value_minor(books) == -500
    assert_balanced(books)


def test_a_cashout_with_the_engines_legs_posts_them(books: Books, dsn: str) -> None:
    """Given legs (cause cash_out) are posted as given, owners implied."""
    books.post_batch(opening())
    document = cashout("T1-3", amount_minor=1500, version=2, legs=copy.deepcopy(CASH_OUT_LEGS))
    books.post_batch(batch("gw1-cash", document))
    assert posted_legs(dsn, "T1-3") == [
        ("card_value", "C1", "EUR", 1500),
        ("cash_clearing", "M1", "EUR", -1500),
    ]
    assert value_minor(books) == 2500


def test_value_that_lapsed_before_a_cashout_rides_along_with_cause_expire(books: Books) -> None:
    """Legs of cause expire are left out of the check: only the cash paid out must match."""
    books.post_batch(opening())
    legs = [
        ["card_points", "PTS", 10, "expire"],
        ["breakage", "PTS", -10, "expire"],
        *copy.deepcopy(CASH_OUT_LEGS),
    ]
    books.post_batch(batch("gw1-cash", cashout("T1-3", amount_minor=1500, legs=legs)))
    balance = books.card_balance("C1")
    assert balance is not None
    assert (balance["value_minor"], balance["points"]) == (2500, 0)
    assert_balanced(books)


def test_a_cashout_leaves_less_value_to_hold(books: Books) -> None:
    """Available value for holds is the value after the cashout."""
    books.post_batch(opening())
    books.post_batch(batch("gw1-cash", cashout("T1-3", amount_minor=3000)))
    with pytest.raises(HoldRefused) as caught:
        books.place_hold(hold_request("H1", amount_minor=1001))
    assert caught.value.reason == "insufficient_value"
    assert books.place_hold(hold_request("H2", amount_minor=1000)).available_minor == 0


def test_a_cashout_posts_the_hold_placed_for_it(books: Books) -> None:
    """Two-phase, like a purchase: the hold keeps the value from other stores until the
    cashout that names it is settled, and posting it frees what it did not take."""
    books.post_batch(opening())
    books.place_hold(hold_request("H1", amount_minor=3000))
    books.post_batch(batch("gw1-cash", cashout("T1-3", amount_minor=2500, hold_id="H1")))
    assert value_minor(books) == 4000 - 2500
    assert books.place_hold(hold_request("H2", amount_minor=1500)).available_minor == 0
    again = batch("gw1-again", cashout("T1-4", amount_minor=100, hold_id="H1"))
    assert_txn_refused(books, again, "hold_posted")
    assert value_minor(books) == 4000 - 2500


def test_a_cashout_posts_over_http_as_in_python(dsn: str) -> None:
    """Through the server and client a cashout posts and the card shows what is left."""
    server = serve(dsn)
    try:
        client = LedgerClient(server.url, timeout_s=30)
        client.post_batch(opening())
        assert (
            client.post_batch(batch("gw1-cash", cashout("T1-3", amount_minor=1500)))["posted"] == 1
        )
        assert client.card("C1")["value_minor"] == 2500
        assert client.terminal_totals()["T1"]["by_kind"]["cashout"] == {
            "count": 1,
            "amount_minor": 1500,
            "card_value_minor": 1500,
            "points": 0,
        }
    finally:
        server.stop()


# -- exactly once -----------------------------------------------------------------------------


def test_the_same_cashout_batch_twice_pays_out_once(books: Books) -> None:
    """A resent batch is a duplicate; the same cashout in another batch is skipped."""
    books.post_batch(opening())
    document = batch("gw1-cash", cashout("T1-3", amount_minor=1500))
    assert books.post_batch(document).status == "posted"
    before = snapshot(books)
    assert books.post_batch(copy.deepcopy(document)).status == "duplicate"
    assert snapshot(books) == before
    again = books.post_batch(batch("gw1-again", cashout("T1-3", amount_minor=1500)))
    assert (again.posted, again.already_posted) == (0, 1)
    assert value_minor(books) == 2500


def test_the_same_cashout_id_with_another_amount_is_a_conflict(books: Books) -> None:
    """Another amount under a posted cashout's txn_id is txn_conflict, alarmed, nothing paid."""
    books.post_batch(opening())
    books.post_batch(batch("gw1-cash", cashout("T1-3", amount_minor=1500)))
    other = batch("gw1-other", cashout("T1-3", amount_minor=1600))
    assert_txn_refused(books, other, "txn_conflict")
    assert value_minor(books) == 2500
    assert [alarm["reason"] for alarm in books.alarms()] == ["txn_conflict"]


# -- refusals ---------------------------------------------------------------------------------


def with_fields(**fields: Any) -> Callable[[Document], None]:
    """Mutation: the last transaction is a cashout of 500 from C1 with these fields changed."""
    return replace_last(cashout("T2-2", amount_minor=500) | fields)


def cash_legs(debit_minor: int, credit_minor: int, cause: str = "cash_out") -> list[list[Any]]:
    """Legs that debit the card and credit the till (negative amounts swap the sides)."""
    return [
        ["card_value", "EUR", debit_minor, cause],
        ["cash_clearing", "EUR", -credit_minor, cause],
    ]


CASES: dict[str, tuple[Callable[[Document], None], str]] = {
    "nothing paid out": (with_fields(amount_minor=0, card_value_minor=0), "amount_invalid"),
    "card value below the amount": (with_fields(card_value_minor=499), "amount_invalid"),
    "card value above the amount": (with_fields(card_value_minor=501), "amount_invalid"),
    "a bonus": (with_fields(bonus_minor=1), "amount_invalid"),
    "points": (with_fields(points=5), "amount_invalid"),
    "an original": (with_fields(ref_txn_id="T1-1"), "field_invalid"),
    "a hold the ledger never placed": (with_fields(hold_id="gw1-a1"), "hold_unknown"),
    "a discount": (with_fields(discount_minor=0), "amount_invalid"),
    "points redeemed": (with_fields(redeem_points=5, legs=cash_legs(500, 500)), "amount_invalid"),
    "legs paying out another amount": (with_fields(legs=cash_legs(400, 400)), "legs_mismatch"),
    "legs crediting the card": (with_fields(legs=cash_legs(-500, -500)), "legs_mismatch"),
    "no legs on the card": (with_fields(legs=[]), "legs_mismatch"),
    "cash out hidden as expire": (
        with_fields(legs=cash_legs(500, 500, cause="expire")),
        "legs_mismatch",
    ),
    "unbalanced legs": (with_fields(legs=cash_legs(500, 499)), "legs_unbalanced"),
    "a refund naming a cashout in the books": (
        replace_last(refund("T2-2", "T1-3", card_value_minor=100)),
        "refund_mismatch",
    ),
    "a refund naming a cashout earlier in the batch": (
        replace_last(
            cashout("T2-2", amount_minor=500),
            refund("T2-3", "T2-2", card_value_minor=500, amount_minor=500),
        ),
        "refund_mismatch",
    ),
    "a refund of a cashout taking value off the card": (
        replace_last(refund("T2-2", "T1-3", card_value_minor=100, legs=cash_legs(100, 100))),
        "refund_mismatch",
    ),
}


@pytest.mark.parametrize("mutate, reason", CASES.values(), ids=list(CASES))
def test_a_bad_cashout_is_refused_with_its_reason_and_changes_nothing(
    books: Books, mutate: Callable[[Document], None], reason: str
) -> None:
    """A bad cashout (or a refund of one) is refused alone; the rest of its batch posts."""
    books.post_batch(opening())
    books.post_batch(batch("gw1-cash", cashout("T1-3", amount_minor=1500)))
    bad = batch("gw1-bad", topup("T2-1", amount_minor=1000), cashout("T2-9", amount_minor=1))
    mutate(bad)
    before_minor = value_minor(books)
    assert_txn_refused(books, bad, reason)
    sign = {"topup": 1, "cashout": -1}
    good = bad["transactions"][:-1]
    assert value_minor(books) == before_minor + sum(
        sign[txn["kind"]] * txn["card_value_minor"] for txn in good
    )


# -- reports ----------------------------------------------------------------------------------

AS_OF = "2025-11-30"


def cash_history() -> Document:
    """C1 buys three times, then takes 1500 in cash; C2 only ever cashes out (both gift)."""
    return batch(
        "gw1-history",
        issue("T0-1", "C1", 5000, time=at("2025-11-01")),
        issue("T0-2", "C2", 5000, time=at("2025-11-01")),
        purchase("T1-1", "C1", 1000, points=0, time=at("2025-11-02")),
        purchase("T1-2", "C1", 1000, points=0, time=at("2025-11-03")),
        purchase("T1-3", "C1", 1000, points=0, time=at("2025-11-04")),
        cashout("T1-4", "C1", 1500, time=at("2025-11-05")),
        cashout("T1-5", "C2", 2000, time=at("2025-11-05", hour=15)),
    )


def report_rows(books: Books, name: str, **parameters: str) -> list[dict[str, Any]]:
    """The rows of a report as of AS_OF unless the parameters say otherwise."""
    rows: list[dict[str, Any]] = books.report(name, {"as_of": AS_OF, **parameters}).rows
    return rows


def test_terminals_count_cashouts_as_their_own_kind(books: Books) -> None:
    """The terminals report and terminal totals show cashouts apart from purchases."""
    books.post_batch(cash_history())
    day = [row for row in report_rows(books, "terminals") if row["date"] == "2025-11-05"]
    assert day == [
        {
            "date": "2025-11-05",
            "terminal": "T1",
            "kind": "cashout",
            "currency": "EUR",
            "count": 2,
            "amount_minor": 3500,
            "card_value_minor": 3500,
            "points": 0,
        }
    ]
    by_kind = books.terminal_totals()["T1"]["by_kind"]
    assert (by_kind["cashout"]["count"], by_kind["purchase"]["count"]) == (2, 3)


def test_a_cashout_is_no_spend_in_segments_nor_lapsing(books: Books) -> None:
    """Spend and the last purchase ignore cashouts; a card that only cashed out is no customer."""
    books.post_batch(cash_history())
    segments = report_rows(books, "segments", window_days="30")
    assert [
        (r["card"], r["frequency"], r["monetary_minor"], r["recency_days"]) for r in segments
    ] == [("C1", 3, 3000, 26)]
    lapsing = report_rows(books, "lapsing", window_days="30", days="26")
    assert [
        (r["card"], r["purchases"], r["monetary_minor"], r["last_purchase"]) for r in lapsing
    ] == [("C1", 3, 3000, "2025-11-04")]


def test_the_liability_reflects_cashouts(books: Books) -> None:
    """What holders are owed drops by the cash paid out, and equals the card balances."""
    books.post_batch(cash_history())
    assert report_rows(books, "liability") == [
        {
            "program": "gift",
            "account": "card_value",
            "unit": "EUR",
            "cards": 2,
            "liability_minor": 10_000 - 3000 - 1500 - 2000,
        }
    ]
    assert report_rows(books, "liability", as_of="2025-11-04")[0]["liability_minor"] == 7000
    assert sum(balance["value_minor"] for balance in books.balances()) == 3500
