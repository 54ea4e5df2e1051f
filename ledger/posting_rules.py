"""Posting rules: which account legs each transaction posts. Pure, no I/O.

An account is (kind, owner), its kind one of `protocol.accounts` (the names the program
engine writes too), and a leg is (account kind, owner, unit, amount_minor) with positive =
debit and negative = credit. Every unit (each currency, and "PTS" for points) balances on
its own: the legs of one transaction sum to zero per unit. Liabilities (card_value,
card_points) therefore carry negative sums; their balance as shown to a card holder is the
negated sum.

A transaction that carries "legs" (the program engine's, docs/programs.md) posts exactly
those, each as given, with its owner implied by its account: the card for card_value and
card_points, the merchant for every other account. Otherwise its kind's rule decides:

    kind      debit                                   credit
    issue     cash_clearing(M) amount                 card_value(C) amount
    topup     cash_clearing(M) amount                 card_value(C) amount + bonus
              promotion_expense(M) bonus
    purchase  card_value(C) card_value                merchant_settlement(M) card_value
              promotion_expense(M)[PTS] points        card_points(C)[PTS] points
    refund    merchant_settlement(M) card_value       card_value(C) card_value
     of a     card_points(C)[PTS] points              promotion_expense(M)[PTS] points
     purchase
    refund    card_value(C) card_value                cash_clearing(M) card_value - bonus
     of an                                            promotion_expense(M) bonus
     issue or topup
    expire    card_value(C) card_value                breakage(M) card_value
              card_points(C)[PTS] points              breakage(M)[PTS] points
    cashout   card_value(C) card_value                cash_clearing(M) card_value
    transfer  card_value(OLD) value                   card_value(NEW) value
              card_points(OLD)[PTS] points            card_points(NEW)[PTS] points

A transfer (a replaced card, `transfer_legs`) is posted by the ledger alone, never sent in a
gateway's batch; its row names the old card and its legs both cards.

A refund of a load takes value OFF the card: the cash paid back and the bonus reversed.
An expire (emitted by the program engine when value or points lapse) moves what the card
holder can no longer spend out of the liability and into the merchant's breakage income.
A cashout pays card value out of the till: the liability shrinks by what the holder took
in cash. It is no original a refund may name (it is not in REFUNDABLE_KINDS).

Legs of amount zero are omitted; a transaction may therefore have no legs at all
(a purchase paid wholly by other tender that earned no points).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple

from ledger.currencies import POINTS_UNIT
from ledger.errors import BatchInvalid
from ledger.model import (
    KIND_CASHOUT,
    KIND_EXPIRE,
    KIND_ISSUE,
    KIND_PURCHASE,
    KIND_REFUND,
    KIND_TOPUP,
    KINDS,
    GivenLeg,
    Txn,
)
from protocol.accounts import (
    BREAKAGE,
    CARD_POINTS,
    CARD_VALUE,
    CASH_CLEARING,
    MERCHANT_SETTLEMENT,
    PROMOTION_EXPENSE,
)

LIABILITY_KINDS = (CARD_VALUE, CARD_POINTS)
"""Accounts owned by the card; every other account is owned by the merchant."""
CURRENCY_ONLY_KINDS = (CARD_VALUE, MERCHANT_SETTLEMENT, CASH_CLEARING)
"""Accounts that hold money only: a leg on them is in the transaction's currency."""
POINTS_ONLY_KINDS = (CARD_POINTS,)
"""Accounts that hold points only: a leg on them is in PTS."""

CAUSE_LOAD = "load"
CAUSE_BONUS = "bonus"
CAUSE_SPEND = "spend"
CAUSE_REDEEM = "redeem"
CAUSE_EARN = "earn"
CAUSE_EXPIRE = "expire"
CAUSE_CASH_OUT = "cash_out"
LEG_CAUSES = (
    CAUSE_LOAD,
    CAUSE_BONUS,
    CAUSE_SPEND,
    CAUSE_REDEEM,
    CAUSE_EARN,
    CAUSE_EXPIRE,
    CAUSE_CASH_OUT,
)
"""Why the engine wrote a leg (docs/programs.md section 3); checked, not stored."""
LOAD_KINDS = (KIND_ISSUE, KIND_TOPUP)
"""Kinds that put value on a card; a refund of one takes value off it."""
REFUNDABLE_KINDS = (KIND_PURCHASE, *LOAD_KINDS)
"""Kinds a refund may name; an expire or a cashout is never reversed by a refund."""


class Leg(NamedTuple):
    """One side of a posting: positive amount = debit, negative = credit."""

    account_kind: str
    owner: str
    unit: str
    amount_minor: int


def legs_for(txn: Txn, refunded_kind: str = KIND_PURCHASE) -> list[Leg]:
    """The balanced legs a transaction posts: its given legs, else its kind's rule.

    `refunded_kind` is the kind of the transaction a refund names (the books know it).
    """
    legs = given_legs(txn) if txn.legs is not None else rule_legs(txn, refunded_kind)
    assert_balanced(legs)
    return legs


def rule_legs(txn: Txn, refunded_kind: str = KIND_PURCHASE) -> list[Leg]:
    """The legs the posting rules derive from a transaction's fields, zero amounts left out."""
    rule = _RULES.get(txn.kind)
    if txn.kind == KIND_REFUND and refunded_kind in LOAD_KINDS:
        rule = _refund_load
    if rule is None:
        raise BatchInvalid("kind_unknown", f"{txn.txn_id}: no posting rule for {txn.kind!r}")
    return [leg for leg in rule(txn) if leg.amount_minor != 0]


def given_legs(txn: Txn) -> list[Leg]:
    """A transaction's own legs, in the order given, each owned by its card or merchant."""
    assert txn.legs is not None
    return [_owned(txn, leg) for leg in txn.legs]


def _owned(txn: Txn, leg: GivenLeg) -> Leg:
    """A given leg with its owner: the card for liabilities, the merchant for the rest."""
    owner = txn.card if leg.account_kind in LIABILITY_KINDS else txn.merchant
    return Leg(leg.account_kind, owner, leg.unit, leg.amount_minor)


def unit_allowed(account_kind: str, unit: str, currency: str) -> bool:
    """Whether a leg on `account_kind` may be in `unit` for a transaction in `currency`."""
    if unit == POINTS_UNIT:
        return account_kind not in CURRENCY_ONLY_KINDS
    return unit == currency and account_kind not in POINTS_ONLY_KINDS


def unit_sums(legs: Iterable[Leg]) -> dict[str, int]:
    """Sum of legs per unit; a balanced set of legs gives zero for every unit."""
    sums: dict[str, int] = {}
    for leg in legs:
        sums[leg.unit] = sums.get(leg.unit, 0) + leg.amount_minor
    return sums


def assert_balanced(legs: Iterable[Leg]) -> None:
    """Programmer check: a posting rule that does not balance must never reach the books."""
    sums = unit_sums(legs)
    assert all(total == 0 for total in sums.values()), f"unbalanced legs: {sums}"


def _issue(txn: Txn) -> list[Leg]:
    """Card sold at the counter: the till holds the cash, the card holder is owed the value."""
    return [
        Leg(CASH_CLEARING, txn.merchant, txn.currency, txn.amount_minor),
        Leg(CARD_VALUE, txn.card, txn.currency, -txn.amount_minor),
    ]


def _topup(txn: Txn) -> list[Leg]:
    """Value loaded for cash; a bonus on top is the merchant's promotion expense."""
    return [
        Leg(CASH_CLEARING, txn.merchant, txn.currency, txn.amount_minor),
        Leg(PROMOTION_EXPENSE, txn.merchant, txn.currency, txn.bonus_minor),
        Leg(CARD_VALUE, txn.card, txn.currency, -(txn.amount_minor + txn.bonus_minor)),
    ]


def _purchase(txn: Txn) -> list[Leg]:
    """The card pays its part to the merchant; points earned are the merchant's expense."""
    return [
        Leg(CARD_VALUE, txn.card, txn.currency, txn.card_value_minor),
        Leg(MERCHANT_SETTLEMENT, txn.merchant, txn.currency, -txn.card_value_minor),
        Leg(PROMOTION_EXPENSE, txn.merchant, POINTS_UNIT, txn.points),
        Leg(CARD_POINTS, txn.card, POINTS_UNIT, -txn.points),
    ]


def _refund(txn: Txn) -> list[Leg]:
    """The mirror of a purchase: value back to the card, points back to the merchant."""
    return [
        Leg(MERCHANT_SETTLEMENT, txn.merchant, txn.currency, txn.card_value_minor),
        Leg(CARD_VALUE, txn.card, txn.currency, -txn.card_value_minor),
        Leg(CARD_POINTS, txn.card, POINTS_UNIT, txn.points),
        Leg(PROMOTION_EXPENSE, txn.merchant, POINTS_UNIT, -txn.points),
    ]


def _refund_load(txn: Txn) -> list[Leg]:
    """The mirror of an issue or topup: value off the card, cash paid back, bonus reversed."""
    return [
        Leg(CARD_VALUE, txn.card, txn.currency, txn.card_value_minor),
        Leg(CASH_CLEARING, txn.merchant, txn.currency, -(txn.card_value_minor - txn.bonus_minor)),
        Leg(PROMOTION_EXPENSE, txn.merchant, txn.currency, -txn.bonus_minor),
    ]


def _expire(txn: Txn) -> list[Leg]:
    """Lapsed value and points leave the card; the merchant books them as breakage."""
    return [
        Leg(CARD_VALUE, txn.card, txn.currency, txn.card_value_minor),
        Leg(BREAKAGE, txn.merchant, txn.currency, -txn.card_value_minor),
        Leg(CARD_POINTS, txn.card, POINTS_UNIT, txn.points),
        Leg(BREAKAGE, txn.merchant, POINTS_UNIT, -txn.points),
    ]


def _cashout(txn: Txn) -> list[Leg]:
    """Card value paid out in cash: it leaves the card and the merchant's till."""
    return [
        Leg(CARD_VALUE, txn.card, txn.currency, txn.card_value_minor),
        Leg(CASH_CLEARING, txn.merchant, txn.currency, -txn.card_value_minor),
    ]


def transfer_legs(old: str, new: str, currency: str, value_minor: int,
                  points: int) -> list[Leg]:
    """A card replacement (kind "transfer", ledger/replace_sql.py): the old card's value and
    points become the new card's. Both accounts are liabilities of the same kind, so the
    books' totals do not move; zero amounts left out."""
    legs = [
        Leg(CARD_VALUE, old, currency, value_minor),
        Leg(CARD_VALUE, new, currency, -value_minor),
        Leg(CARD_POINTS, old, POINTS_UNIT, points),
        Leg(CARD_POINTS, new, POINTS_UNIT, -points),
    ]
    legs = [leg for leg in legs if leg.amount_minor != 0]
    assert_balanced(legs)
    return legs


_RULES: dict[str, Callable[[Txn], list[Leg]]] = {
    KIND_ISSUE: _issue,
    KIND_TOPUP: _topup,
    KIND_PURCHASE: _purchase,
    KIND_REFUND: _refund,
    KIND_EXPIRE: _expire,
    KIND_CASHOUT: _cashout,
}
assert set(_RULES) == set(KINDS), "every transaction kind needs a posting rule"
