"""The gateway's card book enforces program rules, holds and refund limits."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.cards import CardBook
from protocol import txn
from protocol.errors import ValidationError

PROGRAMS = {
    "gift": {"id": "gift", "currency": "EUR", "holds_value": True},
    "prepaid": {"id": "prepaid", "currency": "EUR", "holds_value": True, "topup_allowed": True,
                "topup_bonus_bp": 500},
    "loyalty": {"id": "loyalty", "currency": "EUR", "earns_points": True,
                "points_per_unit_bp": 10000},
}


def fields(kind: int, card: str = "c1", seq: int = 1, **extra: Any) -> dict[str, Any]:
    base = {"terminal": "T1", "seq": seq, "merchant": "M1", "card": card, "kind": kind,
            "currency": "EUR", "amount_minor": 0, "card_value_minor": 0, "bonus_minor": 0,
            "points": 0, "auth_mode": txn.AUTH_ONLINE, "time": 1}
    base.update(extra)
    return base


def issued(program: str = "gift", value: int = 5000) -> CardBook:
    book = CardBook(PROGRAMS)
    issue = fields(txn.KIND_ISSUE, amount_minor=value, card_value_minor=value, program=program)
    book.check(issue)
    book.apply(issue)
    return book


def reason_of(book: CardBook, record: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        book.check(record)
    return caught.value.reason


def test_issue_creates_the_card_once() -> None:
    book = issued()
    assert book.cards["c1"]["value_minor"] == 5000
    again = fields(txn.KIND_ISSUE, amount_minor=1, card_value_minor=1, program="gift")
    assert reason_of(book, again) == "card_exists"


def test_purchase_on_an_unknown_card_is_refused() -> None:
    book = CardBook(PROGRAMS)
    assert reason_of(book, fields(txn.KIND_PURCHASE, amount_minor=1)) == "card_unknown"


def test_points_and_bonus_must_match_the_program() -> None:
    book = issued("loyalty", 0)
    assert reason_of(book, fields(txn.KIND_PURCHASE, amount_minor=1999, points=20)) == (
        "rule_mismatch")
    book.check(fields(txn.KIND_PURCHASE, amount_minor=1999, points=19))
    prepaid = issued("prepaid", 0)
    topup = fields(txn.KIND_TOPUP, amount_minor=1000, bonus_minor=60, card_value_minor=1060)
    assert reason_of(prepaid, topup) == "rule_mismatch"


def test_authorization_holds_value_so_it_cannot_be_spent_twice() -> None:
    book = issued(value=1000)
    request = {"kind": txn.KIND_PURCHASE, "card": "c1", "currency": "EUR",
               "amount_minor": 800, "card_value_minor": 800}
    first = book.authorize(request, now_s=0)
    assert first["approved"] and first["value_minor"] == 200
    second = book.authorize(request, now_s=0)
    assert second == {"approved": False, "reason": "insufficient_value"}
    assert book.expire_holds(now_s=10_000) == 1
    assert book.authorize(request, now_s=10_000)["approved"]


def test_refunds_reverse_at_most_the_purchase() -> None:
    book = issued(value=1000)
    purchase = fields(txn.KIND_PURCHASE, amount_minor=600, card_value_minor=600, seq=2)
    book.check(purchase)
    book.apply(purchase)
    refund = fields(txn.KIND_REFUND, amount_minor=600, card_value_minor=600, seq=3, ref="T1-2")
    book.check(refund)
    book.apply(refund)
    assert book.cards["c1"]["value_minor"] == 1000
    again = fields(txn.KIND_REFUND, amount_minor=1, card_value_minor=1, seq=4, ref="T1-2")
    assert reason_of(book, again) == "refund_exceeds_original"
    unknown = fields(txn.KIND_REFUND, amount_minor=1, card_value_minor=1, seq=5, ref="T9-9")
    assert reason_of(book, unknown) == "refund_unknown_original"


def test_purchases_past_the_refund_window_are_forgotten_and_cannot_be_refunded() -> None:
    from gateway.cards import REFUND_WINDOW_S

    book = issued(value=1000)
    old = fields(txn.KIND_PURCHASE, amount_minor=100, card_value_minor=100, seq=2, time=1)
    book.check(old)
    book.apply(old)
    later = fields(txn.KIND_PURCHASE, amount_minor=100, card_value_minor=100, seq=3,
                   time=2 + REFUND_WINDOW_S)
    book.check(later)
    book.apply(later)
    assert list(book.purchases) == ["T1-3"]
    refund = fields(txn.KIND_REFUND, amount_minor=100, card_value_minor=100, seq=4, ref="T1-2")
    assert reason_of(book, refund) == "refund_unknown_original"
