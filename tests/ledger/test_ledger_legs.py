"""Settlement transactions that carry the program engine's legs, and refunds of loads.

A transaction with "legs" posts exactly those legs (owners implied: the card for card_value
and card_points, the merchant for the rest); the legs are checked one by one, must balance
per unit, and must change the card's value as the transaction's fields say. A refund may
name an issue or topup: it then takes value off the card.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from ledger import Books, TxnRefusal, open_books
from ledger.client import LedgerClient
from ledger.db import open_database
from ledger.limits import AMOUNT_MINOR_MAX, LEGS_MAX
from ledger.server import serve
from ledger.validate import parse_batch, parse_txn
from tests.ledger.builders import (
    account_totals,
    assert_balanced,
    assert_txn_refused,
    batch,
    expire,
    issue,
    posted_legs,
    posted_rows,
    purchase,
    refund,
    snapshot,
    topup,
)

Document = dict[str, Any]

REDEEMING_LEGS = [
    ["card_value", "EUR", 700, "spend"],
    ["merchant_settlement", "EUR", -700, "spend"],
    ["card_points", "PTS", 30, "redeem"],
    ["promotion_expense", "PTS", -30, "redeem"],
    ["promotion_expense", "EUR", 300, "redeem"],
    ["merchant_settlement", "EUR", -300, "redeem"],
    ["promotion_expense", "PTS", 7, "earn"],
    ["card_points", "PTS", -7, "earn"],
]
"""A sale of 1000: 30 points redeemed worth 300, 700 paid from the card, 7 points earned."""


def redeeming_purchase(txn_id: str, **fields: Any) -> Document:
    """A purchase that redeemed points, with the engine's legs (REDEEMING_LEGS)."""
    document = purchase(
        txn_id,
        card_value_minor=700,
        points=7,
        amount_minor=1000,
        redeem_points=30,
        discount_minor=0,
        version=3,
        legs=copy.deepcopy(REDEEMING_LEGS),
    )
    return document | fields


def opening() -> Document:
    """Card C1 issued with 5000, then a purchase of 1000 earning 50 points (rule-derived)."""
    return batch("gw1-open", issue("T1-1"), purchase("T1-2", card_value_minor=1000, points=50))


# -- posting ----------------------------------------------------------------------------------


def test_given_legs_are_posted_exactly_with_owners_implied(books: Books, dsn: str) -> None:
    """Each given leg becomes one entry, in order: liabilities on the card, the rest on M1."""
    books.post_batch(opening())
    books.post_batch(batch("gw1-legs", redeeming_purchase("T1-3")))
    owners = {"card_value": "C1", "card_points": "C1"}
    assert posted_legs(dsn, "T1-3") == [
        (account, owners.get(account, "M1"), unit, amount)
        for account, unit, amount, _cause in REDEEMING_LEGS
    ]
    balance = books.card_balance("C1")
    assert balance is not None
    assert (balance["value_minor"], balance["points"]) == (5000 - 1000 - 700, 50 - 30 + 7)
    assert_balanced(books)


def test_given_legs_replace_the_rule_derived_ones(books: Books, dsn: str) -> None:
    """A purchase's legs post the redemption, which the posting rules know nothing of."""
    books.post_batch(opening())
    books.post_batch(batch("gw1-legs", redeeming_purchase("T1-3")))
    assert account_totals(dsn) == {
        ("cash_clearing", "EUR"): 5000,
        ("card_value", "EUR"): -5000 + 1000 + 700,
        ("merchant_settlement", "EUR"): -1000 - 700 - 300,
        ("promotion_expense", "EUR"): 300,
        ("card_points", "PTS"): -50 + 30 - 7,
        ("promotion_expense", "PTS"): 50 - 30 + 7,
    }


def test_program_fields_are_stored_with_the_transaction(books: Books, dsn: str) -> None:
    """version, discount_minor and redeem_points are kept; transactions without them hold null."""
    books.post_batch(opening())
    books.post_batch(
        batch(
            "gw1-legs",
            redeeming_purchase("T1-3", discount_minor=0, version=7),
            purchase("T1-4", card_value_minor=900, amount_minor=1000, points=0, discount_minor=100),
        )
    )
    rows = posted_rows(
        dsn,
        "SELECT txn_id, version, discount_minor, redeem_points FROM transactions ORDER BY txn_id",
    )
    assert rows == [
        ("T1-1", None, None, None),
        ("T1-2", None, None, None),
        ("T1-3", 7, 0, 30),
        ("T1-4", None, 100, None),
    ]


def test_legs_on_one_account_are_each_posted(books: Books) -> None:
    """Two legs on one account both post; the card's balance is their sum."""
    books.post_batch(opening())
    split = [
        ["card_value", "EUR", 400, "spend"],
        ["card_value", "EUR", 300, "spend"],
        ["merchant_settlement", "EUR", -700, "spend"],
    ]
    books.post_batch(
        batch("gw1-split", purchase("T1-3", card_value_minor=700, points=0, legs=split))
    )
    assert books.card_balance("C1")["value_minor"] == 5000 - 1000 - 700  # type: ignore[index]
    assert books.counts()["entries"] == 2 + 4 + 3


def test_legs_with_expire_cause_are_left_out_of_the_card_value_check(books: Books) -> None:
    """Value that lapsed before a purchase (cause expire) rides along; the spend must match."""
    books.post_batch(opening())
    legs = [
        ["card_value", "EUR", 3000, "expire"],
        ["breakage", "EUR", -3000, "expire"],
        ["card_value", "EUR", 500, "spend"],
        ["merchant_settlement", "EUR", -500, "spend"],
    ]
    books.post_batch(
        batch("gw1-lapse", purchase("T1-3", card_value_minor=500, points=0, legs=legs))
    )
    assert books.card_balance("C1")["value_minor"] == 5000 - 1000 - 3000 - 500  # type: ignore[index]
    assert_balanced(books)


def test_an_empty_list_of_legs_posts_nothing(books: Books) -> None:
    """ "legs": [] is a transaction that moved nothing in the loop (paid by other tender)."""
    books.post_batch(opening())
    before = books.counts()["entries"]
    other_tender = purchase("T1-3", card_value_minor=0, points=0, amount_minor=800, legs=[])
    assert books.post_batch(batch("gw1-cash", other_tender)).posted == 1
    assert books.counts()["entries"] == before


def test_an_expire_with_legs_posts_breakage_in_both_units(books: Books) -> None:
    """An expire's legs move lapsed value and points to breakage; both nets must match."""
    books.post_batch(opening())
    legs = [
        ["card_points", "PTS", 20, "expire"],
        ["breakage", "PTS", -20, "expire"],
        ["card_value", "EUR", 600, "expire"],
        ["breakage", "EUR", -600, "expire"],
    ]
    books.post_batch(batch("gw1-exp", expire("T9-1", card_value_minor=600, points=20, legs=legs)))
    balance = books.card_balance("C1")
    assert balance is not None
    assert (balance["value_minor"], balance["points"]) == (5000 - 1000 - 600, 50 - 20)
    assert_balanced(books)


# -- exactly once -----------------------------------------------------------------------------


def test_the_same_batch_with_legs_twice_posts_once(books: Books) -> None:
    """A resent batch is a duplicate; the same transaction in another batch is skipped."""
    books.post_batch(opening())
    document = batch("gw1-legs", redeeming_purchase("T1-3"))
    assert books.post_batch(document).status == "posted"
    before = snapshot(books)
    assert books.post_batch(copy.deepcopy(document)).status == "duplicate"
    assert snapshot(books) == before
    again = books.post_batch(batch("gw1-again", redeeming_purchase("T1-3")))
    assert (again.posted, again.already_posted) == (0, 1)
    after = snapshot(books)
    assert after["counts"].pop("batches") == before["counts"].pop("batches") + 1
    assert after == before


def test_the_same_txn_id_with_other_legs_is_a_conflict(books: Books) -> None:
    """Other legs, or legs where none were sent, are other content: txn_conflict, alarmed."""
    books.post_batch(opening())
    books.post_batch(batch("gw1-legs", redeeming_purchase("T1-3")))
    balances = books.balances()
    other = redeeming_purchase("T1-3")
    other["legs"][6:] = [
        ["promotion_expense", "PTS", 8, "earn"],
        ["card_points", "PTS", -8, "earn"],
    ]
    changes = (other, purchase("T1-2", card_value_minor=1000, points=50, legs=[]))
    for number, changed in enumerate(changes):
        assert_txn_refused(books, batch(f"gw1-other-{number}", changed), "txn_conflict")
    assert books.balances() == balances
    assert [alarm["reason"] for alarm in books.alarms()] == ["txn_conflict", "txn_conflict"]


def test_null_optional_keys_are_the_same_transaction_as_absent_ones() -> None:
    """ "version": null (or any optional key null) leaves a transaction's identity unchanged."""
    plain = parse_txn(purchase("T1-2"))
    nulls = {"version": None, "discount_minor": None, "redeem_points": None, "legs": None}
    assert parse_txn(purchase("T1-2") | nulls).content_hash == plain.content_hash
    assert parse_txn(purchase("T1-2") | {"version": 1}).content_hash != plain.content_hash


# -- refusals ---------------------------------------------------------------------------------


def with_legs(*legs: list[Any], **fields: Any) -> Callable[[Document], None]:
    """Mutation: the bad transaction (a purchase of 700 from the card) carries these legs."""
    bad = purchase("T2-2", card_value_minor=700, points=0, legs=[list(leg) for leg in legs])
    return lambda document: document["transactions"].__setitem__(-1, bad | fields)


SPEND = (["card_value", "EUR", 700, "spend"], ["merchant_settlement", "EUR", -700, "spend"])

CASES: dict[str, tuple[Callable[[Document], None], str]] = {
    "unbalanced currency": (
        with_legs(
            ["card_value", "EUR", 700, "spend"], ["merchant_settlement", "EUR", -699, "spend"]
        ),
        "legs_unbalanced",
    ),
    "unbalanced points": (
        with_legs(*SPEND, ["promotion_expense", "PTS", 7, "earn"]),
        "legs_unbalanced",
    ),
    "balanced only across units": (
        with_legs(
            *SPEND, ["promotion_expense", "PTS", 7, "earn"], ["card_value", "EUR", -7, "earn"]
        ),
        "legs_unbalanced",
    ),
    "unknown account": (
        with_legs(["card_value", "EUR", 700, "spend"], ["bank", "EUR", -700, "spend"]),
        "field_invalid",
    ),
    "unit of another currency": (
        with_legs(
            ["card_value", "USD", 700, "spend"], ["merchant_settlement", "USD", -700, "spend"]
        ),
        "field_invalid",
    ),
    "unit in lower case": (
        with_legs(
            *SPEND, ["promotion_expense", "pts", 7, "earn"], ["card_points", "pts", -7, "earn"]
        ),
        "field_invalid",
    ),
    "card value in points": (
        with_legs(
            *SPEND, ["card_value", "PTS", 7, "earn"], ["promotion_expense", "PTS", -7, "earn"]
        ),
        "field_invalid",
    ),
    "card points in money": (
        with_legs(
            *SPEND, ["card_points", "EUR", 7, "earn"], ["promotion_expense", "EUR", -7, "earn"]
        ),
        "field_invalid",
    ),
    "unknown cause": (
        with_legs(["card_value", "EUR", 700, "spend"], ["merchant_settlement", "EUR", -700, "tip"]),
        "field_invalid",
    ),
    "float amount": (
        with_legs(
            ["card_value", "EUR", 700.0, "spend"], ["merchant_settlement", "EUR", -700, "spend"]
        ),
        "field_type",
    ),
    "bool amount": (
        with_legs(
            *SPEND, ["promotion_expense", "PTS", True, "earn"], ["card_points", "PTS", -1, "earn"]
        ),
        "field_type",
    ),
    "string amount": (
        with_legs(
            ["card_value", "EUR", "700", "spend"], ["merchant_settlement", "EUR", -700, "spend"]
        ),
        "field_type",
    ),
    "zero amount": (with_legs(*SPEND, ["breakage", "EUR", 0, "expire"]), "amount_invalid"),
    "huge amount": (
        with_legs(
            *SPEND,
            ["breakage", "PTS", AMOUNT_MINOR_MAX + 1, "expire"],
            ["card_points", "PTS", -AMOUNT_MINOR_MAX - 1, "expire"],
        ),
        "amount_invalid",
    ),
    "account not a string": (
        with_legs(["card_value", "EUR", 700, "spend"], [7, "EUR", -700, "spend"]),
        "field_type",
    ),
    "cause missing": (
        with_legs(["card_value", "EUR", 700, "spend"], ["merchant_settlement", "EUR", -700]),
        "field_invalid",
    ),
    "leg as an object": (
        lambda document: document["transactions"].__setitem__(
            -1, purchase("T2-2", card_value_minor=0, points=0, legs=[{"account": "card_value"}])
        ),
        "field_type",
    ),
    "legs as an object": (
        lambda document: document["transactions"].__setitem__(
            -1, purchase("T2-2", card_value_minor=0, points=0, legs={})
        ),
        "field_type",
    ),
    "too many legs": (
        with_legs(*(list(SPEND) * (LEGS_MAX // 2)), *SPEND),
        "field_invalid",
    ),
    "card value other than the purchase's": (
        with_legs(
            ["card_value", "EUR", 600, "spend"], ["merchant_settlement", "EUR", -600, "spend"]
        ),
        "legs_mismatch",
    ),
    "no card legs on a card purchase": (with_legs(), "legs_mismatch"),
    "spend hidden as expire": (
        with_legs(["card_value", "EUR", 700, "expire"], ["breakage", "EUR", -700, "expire"]),
        "legs_mismatch",
    ),
    "topup legs short of its bonus": (
        lambda document: document["transactions"].__setitem__(
            -1,
            topup(
                "T2-2",
                amount_minor=1000,
                bonus_minor=100,
                legs=[["cash_clearing", "EUR", 1000, "load"], ["card_value", "EUR", -1000, "load"]],
            ),
        ),
        "legs_mismatch",
    ),
    "load refund crediting the card": (
        lambda document: document["transactions"].__setitem__(
            -1,
            refund(
                "T2-2",
                "T2-1",
                card_value_minor=100,
                legs=[["cash_clearing", "EUR", 100, "load"], ["card_value", "EUR", -100, "load"]],
            ),
        ),
        "legs_mismatch",
    ),
    "expire legs short of its points": (
        lambda document: document["transactions"].__setitem__(
            -1,
            expire(
                "T2-2",
                points=20,
                legs=[["card_points", "PTS", 19, "expire"], ["breakage", "PTS", -19, "expire"]],
            ),
        ),
        "legs_mismatch",
    ),
}


@pytest.mark.parametrize("mutate, reason", CASES.values(), ids=list(CASES))
def test_bad_legs_are_refused_with_their_reason_and_change_nothing(
    books: Books, mutate: Callable[[Document], None], reason: str
) -> None:
    """A transaction with bad legs is refused alone, with its reason; the rest of its batch
    (a topup of 1000) posts."""
    books.post_batch(opening())
    bad = batch("gw1-bad", topup("T2-1", amount_minor=1000), purchase("T2-9", card_value_minor=1))
    mutate(bad)
    assert_txn_refused(books, bad, reason)
    assert [(row["card"], row["value_minor"]) for row in books.balances()] == [("C1", 5000)]


def test_a_refusal_names_the_leg_at_fault() -> None:
    """The detail points at the transaction index, the leg and its field."""
    bad = with_legs(
        *SPEND, ["promotion_expense", "PTS", 7, "win"], ["card_points", "PTS", -7, "earn"]
    )
    document = batch("gw1-bad", purchase("T2-9"))
    bad(document)
    [refusal] = parse_batch(document).transactions
    assert isinstance(refusal, TxnRefusal)
    assert refusal.detail.startswith("transactions[0].legs[2].cause")


def test_legs_over_http_post_and_refuse_as_in_python(dsn: str) -> None:
    """Through the server and client, given legs post; unbalanced ones are refused in the
    answer, as in Python."""
    server = serve(dsn)
    try:
        client = LedgerClient(server.url, timeout_s=30)
        client.post_batch(opening())
        assert client.post_batch(batch("gw1-legs", redeeming_purchase("T1-3")))["posted"] == 1
        assert (client.card("C1")["value_minor"], client.card("C1")["points"]) == (3300, 27)
        unbalanced = purchase("T1-4", card_value_minor=1, legs=[["card_value", "EUR", 1, "spend"]])
        answer = client.post_batch(batch("gw1-bad", unbalanced))
        assert (answer["status"], answer["posted"]) == ("partial", 0)
        assert [(item["txn_id"], item["reason"]) for item in answer["refused"]] == [
            ("T1-4", "legs_unbalanced")
        ]
    finally:
        server.stop()


# -- refunds of loads -------------------------------------------------------------------------


def test_a_refund_of_a_topup_takes_cash_and_bonus_off_the_card(books: Books, dsn: str) -> None:
    """Refunding half a topup of 1000 + 100 bonus: 550 off the card, 500 cash, 50 bonus back."""
    books.post_batch(
        batch("gw1-load", issue("T1-1", amount_minor=5000), topup("T1-2", bonus_minor=100))
    )
    books.post_batch(
        batch("gw1-back", refund("T1-3", "T1-2", card_value_minor=550, bonus_minor=50))
    )
    assert posted_legs(dsn, "T1-3") == [
        ("card_value", "C1", "EUR", 550),
        ("cash_clearing", "M1", "EUR", -500),
        ("promotion_expense", "M1", "EUR", -50),
    ]
    assert books.card_balance("C1")["value_minor"] == 5000 + 1100 - 550  # type: ignore[index]
    assert account_totals(dsn)[("promotion_expense", "EUR")] == 50
    assert_balanced(books)


def test_refunds_of_a_load_together_take_at_most_what_it_loaded(books: Books) -> None:
    """The rest of the topup may be refunded, in the same batch too; one minor more may not."""
    books.post_batch(
        batch("gw1-load", issue("T1-1", amount_minor=5000), topup("T1-2", bonus_minor=100))
    )
    books.post_batch(
        batch(
            "gw1-back",
            refund("T1-3", "T1-2", card_value_minor=550, bonus_minor=50),
            refund("T1-4", "T1-2", card_value_minor=550, bonus_minor=50),
        )
    )
    bad = batch("gw1-more", refund("T1-5", "T1-2", card_value_minor=1))
    assert_txn_refused(books, bad, "refund_exceeds_original")
    assert books.card_balance("C1")["value_minor"] == 5000  # type: ignore[index]


def test_a_refund_of_an_issue_with_the_engines_legs(books: Books, dsn: str) -> None:
    """An issue refunded with given legs (cause load) takes the value off the card."""
    books.post_batch(batch("gw1-load", issue("T1-1", amount_minor=5000)))
    legs = [["card_value", "EUR", 2000, "load"], ["cash_clearing", "EUR", -2000, "load"]]
    books.post_batch(batch("gw1-back", refund("T1-2", "T1-1", card_value_minor=2000, legs=legs)))
    assert books.card_balance("C1")["value_minor"] == 3000  # type: ignore[index]
    assert account_totals(dsn) == {("cash_clearing", "EUR"): 3000, ("card_value", "EUR"): -3000}


def test_a_refund_of_a_purchase_is_unchanged(books: Books, dsn: str) -> None:
    """A refund naming a purchase still gives its card value back (rule-derived legs)."""
    books.post_batch(opening())
    books.post_batch(batch("gw1-back", refund("T1-3", "T1-2", card_value_minor=300, points=3)))
    assert posted_legs(dsn, "T1-3") == [
        ("merchant_settlement", "M1", "EUR", 300),
        ("card_value", "C1", "EUR", -300),
        ("card_points", "C1", "PTS", 3),
        ("promotion_expense", "M1", "PTS", -3),
    ]


def test_a_refund_of_a_load_is_no_negative_spend_in_segments(books: Books) -> None:
    """Customer spend counts purchases less their refunds; a load given back is not spend."""
    books.post_batch(
        batch(
            "gw1-spend",
            issue("T1-1", amount_minor=5000),
            topup("T1-2", bonus_minor=100),
            purchase("T1-3", card_value_minor=1000, points=0),
            refund("T1-4", "T1-2", card_value_minor=1100, bonus_minor=100),
            refund("T1-5", "T1-3", card_value_minor=200),
        )
    )
    report = books.report("segments", {"as_of": "2025-11-30", "window_days": "30"})
    assert [(row["card"], row["monetary_minor"]) for row in report.rows] == [("C1", 1000 - 200)]


# -- storage ----------------------------------------------------------------------------------

TRANSACTIONS_BEFORE_PROGRAM_FIELDS = """CREATE TABLE transactions (
    txn_id TEXT PRIMARY KEY, batch_id TEXT NOT NULL, terminal TEXT NOT NULL,
    seq BIGINT NOT NULL, merchant TEXT NOT NULL, kind TEXT NOT NULL, card TEXT NOT NULL,
    currency TEXT NOT NULL, amount_minor BIGINT NOT NULL CHECK (amount_minor >= 0),
    card_value_minor BIGINT NOT NULL CHECK (card_value_minor >= 0),
    bonus_minor BIGINT NOT NULL CHECK (bonus_minor >= 0),
    points BIGINT NOT NULL CHECK (points >= 0), ref_txn_id TEXT, program TEXT,
    time BIGINT NOT NULL, digest TEXT NOT NULL, auth TEXT NOT NULL, content_hash TEXT NOT NULL)"""
"""The transactions table as books made before the program engine's fields have it."""


def test_books_made_before_the_program_fields_gain_their_columns_on_open(dsn: str) -> None:
    """Opening older books adds the nullable columns; old rows read null; reopening is a no-op."""
    database = open_database(dsn)
    try:
        database.execute(TRANSACTIONS_BEFORE_PROGRAM_FIELDS)
        database.execute(
            "INSERT INTO transactions VALUES ('T0-1', 'old', 'T0', 1, 'M1', 'issue', 'C0', 'EUR',"
            " 100, 100, 0, 0, NULL, 'gift', 1, ?, 'online', 'x')",
            ("ab" * 32,),
        )
    finally:
        database.close()
    for attempt in range(2):
        books = open_books(dsn)
        try:
            books.post_batch(opening())
            books.post_batch(batch(f"gw1-legs-{attempt}", redeeming_purchase("T1-3")))
        finally:
            books.close()
    rows = posted_rows(
        dsn,
        "SELECT txn_id, version, discount_minor, redeem_points FROM transactions ORDER BY txn_id",
    )
    assert rows == [
        ("T0-1", None, None, None),
        ("T1-1", None, None, None),
        ("T1-2", None, None, None),
        ("T1-3", 3, 0, 30),
    ]
