"""Posting rules: each kind's legs, their balance per unit, and what is left out."""

from __future__ import annotations

import pytest

from ledger.errors import BatchInvalid
from ledger.posting_rules import Leg, legs_for, unit_sums
from ledger.validate import parse_txn
from tests.ledger.builders import cashout, expire, issue, purchase, refund, topup, txn


def legs(document: dict[str, object]) -> list[Leg]:
    """Legs of a transaction document after validation."""
    return legs_for(parse_txn(document))


def test_issue_debits_cash_clearing_and_credits_the_card() -> None:
    """An issue moves the amount from the merchant's cash clearing to the card's value."""
    assert legs(issue("T1-1", amount_minor=5000)) == [
        Leg("cash_clearing", "M1", "EUR", 5000),
        Leg("card_value", "C1", "EUR", -5000),
    ]


def test_topup_bonus_is_a_promotion_expense() -> None:
    """A topup credits the card with amount plus bonus; the bonus is the merchant's expense."""
    assert legs(topup("T1-1", amount_minor=1000, bonus_minor=100)) == [
        Leg("cash_clearing", "M1", "EUR", 1000),
        Leg("promotion_expense", "M1", "EUR", 100),
        Leg("card_value", "C1", "EUR", -1100),
    ]


def test_purchase_pays_the_merchant_and_earns_points_in_pts() -> None:
    """A purchase moves card value to merchant settlement and points in the PTS unit."""
    assert legs(purchase("T1-1", card_value_minor=800, points=8, amount_minor=1000)) == [
        Leg("card_value", "C1", "EUR", 800),
        Leg("merchant_settlement", "M1", "EUR", -800),
        Leg("promotion_expense", "M1", "PTS", 8),
        Leg("card_points", "C1", "PTS", -8),
    ]


def test_refund_mirrors_the_purchase() -> None:
    """A refund returns card value from merchant settlement and takes the points back."""
    assert legs(refund("T1-2", "T1-1", card_value_minor=300, points=3)) == [
        Leg("merchant_settlement", "M1", "EUR", 300),
        Leg("card_value", "C1", "EUR", -300),
        Leg("card_points", "C1", "PTS", 3),
        Leg("promotion_expense", "M1", "PTS", -3),
    ]


def test_refund_of_a_load_takes_value_off_the_card() -> None:
    """A refund of a topup debits the card; cash and the reversed bonus go back to M1."""
    document = refund("T1-2", "T1-1", card_value_minor=550, bonus_minor=50)
    assert legs_for(parse_txn(document), refunded_kind="topup") == [
        Leg("card_value", "C1", "EUR", 550),
        Leg("cash_clearing", "M1", "EUR", -500),
        Leg("promotion_expense", "M1", "EUR", -50),
    ]


def test_given_legs_are_posted_as_given_with_their_owners() -> None:
    """Legs sent with a transaction replace its rule: liabilities on the card, the rest on M1."""
    given = [["card_points", "PTS", 5, "expire"], ["breakage", "PTS", -5, "expire"]]
    assert legs(purchase("T1-1", card_value_minor=0, points=0, legs=given)) == [
        Leg("card_points", "C1", "PTS", 5),
        Leg("breakage", "M1", "PTS", -5),
    ]


def test_expire_moves_lapsed_value_and_points_to_the_merchants_breakage() -> None:
    """An expire debits the card's value and points and credits breakage(M) in each unit."""
    assert legs(expire("T1-1", card_value_minor=700, points=12)) == [
        Leg("card_value", "C1", "EUR", 700),
        Leg("breakage", "M1", "EUR", -700),
        Leg("card_points", "C1", "PTS", 12),
        Leg("breakage", "M1", "PTS", -12),
    ]
    assert legs(expire("T1-1", points=5)) == [
        Leg("card_points", "C1", "PTS", 5),
        Leg("breakage", "M1", "PTS", -5),
    ]


@pytest.mark.parametrize(
    "document, reason",
    [
        (expire("T1-1"), "amount_invalid"),
        (expire("T1-1", card_value_minor=700) | {"amount_minor": 800}, "amount_invalid"),
        (expire("T1-1", card_value_minor=700, bonus_minor=1), "amount_invalid"),
        (expire("T1-1", points=5, ref_txn_id="T1-0"), "field_invalid"),
    ],
    ids=["nothing", "amount-differs", "bonus", "ref"],
)
def test_an_expire_must_take_value_or_points_and_nothing_else(
    document: dict[str, object], reason: str
) -> None:
    """An expire takes card_value_minor (= amount_minor) and/or points, no bonus, no ref."""
    with pytest.raises(BatchInvalid) as caught:
        parse_txn(document)
    assert caught.value.reason == reason


def test_cashout_pays_card_value_out_of_the_till() -> None:
    """A cashout debits the card's value and credits the merchant's cash clearing."""
    assert legs(cashout("T1-1", amount_minor=1500)) == [
        Leg("card_value", "C1", "EUR", 1500),
        Leg("cash_clearing", "M1", "EUR", -1500),
    ]


def test_zero_amount_legs_are_omitted() -> None:
    """A purchase paid wholly by other tender and earning nothing posts no legs at all."""
    assert legs(purchase("T1-1", card_value_minor=0, points=0, amount_minor=2500)) == []
    assert legs(topup("T1-2", amount_minor=1000)) == [
        Leg("cash_clearing", "M1", "EUR", 1000),
        Leg("card_value", "C1", "EUR", -1000),
    ]


@pytest.mark.parametrize(
    "document",
    [
        issue("T1-1", amount_minor=123),
        topup("T1-1", amount_minor=10**12 - 5, bonus_minor=5),
        purchase("T1-1", card_value_minor=999, points=10**12, amount_minor=10**12),
        refund("T1-2", "T1-1", card_value_minor=7, points=0),
        expire("T1-1", card_value_minor=700, points=12),
        cashout("T1-1", amount_minor=1500),
        txn("T1-1", "purchase", currency="JPY", amount_minor=500, card_value_minor=500, points=5),
    ],
)
def test_every_kind_sums_to_zero_per_unit(document: dict[str, object]) -> None:
    """The legs of every transaction kind sum to zero in each unit separately."""
    sums = unit_sums(legs(document))
    assert sums and all(total == 0 for total in sums.values())


def test_a_kind_without_rule_is_refused() -> None:
    """legs_for refuses a transaction whose kind has no posting rule (reason kind_unknown)."""
    from dataclasses import replace

    bogus = replace(parse_txn(issue("T1-1")), kind="withdrawal")
    with pytest.raises(BatchInvalid) as caught:
        legs_for(bogus)
    assert caught.value.reason == "kind_unknown"
