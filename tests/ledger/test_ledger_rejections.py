"""Every refusal names its reason code. A fault of a transaction refuses that transaction
alone (the rest of its batch posts, it is kept in the quarantine); a fault of the batch's
envelope refuses the batch whole and changes NOTHING."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ledger import Books, LedgerRejected
from ledger.limits import AMOUNT_MINOR_MAX, BATCH_TXN_MAX
from tests.ledger.builders import (
    assert_refused_unchanged,
    assert_txn_refused,
    batch,
    expire,
    issue,
    purchase,
    refund,
    replace_last,
    snapshot,
    topup,
    txn,
)

Document = dict[str, Any]


def base_batch() -> Document:
    """Books to reject against: a gift card with 5000, a purchase of 2000 (20 points), a refund."""
    return batch(
        "gw1-base",
        issue("T1-1", amount_minor=5000),
        purchase("T1-2", card_value_minor=2000, points=20),
        refund("T1-3", "T1-2", card_value_minor=500, points=5),
    )


def with_txn(**fields: Any) -> Callable[[Document], None]:
    """Mutation: set fields on the bad transaction."""
    return lambda document: document["transactions"][-1].update(fields)


def without_txn(key: str) -> Callable[[Document], None]:
    """Mutation: remove a field from the bad transaction."""
    return lambda document: document["transactions"][-1].pop(key)


def set_batch(key: str, value: Any) -> Callable[[Document], None]:
    """Mutation: set (or add) a top-level batch key."""
    return lambda document: document.__setitem__(key, value)


ENVELOPE_CASES: dict[str, tuple[Callable[[Document], None], str]] = {
    "missing batch key": (lambda document: document.pop("gateway_id"), "field_missing"),
    "extra batch key": (set_batch("signature", "x"), "field_unknown"),
    "transactions not a list": (set_batch("transactions", {}), "field_type"),
    "transaction not an object": (
        lambda document: document["transactions"].append([1]),
        "field_type",
    ),
    "transaction without txn_id": (without_txn("txn_id"), "field_missing"),
    "empty txn_id": (with_txn(txn_id=""), "field_invalid"),
    "txn_id too long": (with_txn(txn_id="T" * 65), "field_invalid"),
    "txn_id with a space": (with_txn(txn_id="T2 1"), "field_invalid"),
    "numeric txn_id": (with_txn(txn_id=21), "field_type"),
    "bool created": (set_batch("created", True), "field_type"),
    "conflicting txn_id inside the batch": (
        replace_last(topup("T2-1", amount_minor=999)),
        "txn_conflict",
    ),
}
"""Faults that leave the batch's transactions unknown, or not one per txn_id."""

CASES: dict[str, tuple[Callable[[Document], None], str]] = {
    "missing field": (without_txn("amount_minor"), "field_missing"),
    "float amount": (with_txn(amount_minor=12.5), "field_type"),
    "whole float amount": (with_txn(amount_minor=1250.0), "field_type"),
    "bool amount": (with_txn(amount_minor=True), "field_type"),
    "string amount": (with_txn(amount_minor="1250"), "field_type"),
    "null amount": (with_txn(amount_minor=None), "field_type"),
    "negative amount": (with_txn(amount_minor=-1), "amount_invalid"),
    "huge amount": (with_txn(amount_minor=AMOUNT_MINOR_MAX + 1), "amount_invalid"),
    "negative bonus": (with_txn(bonus_minor=-5), "amount_invalid"),
    "unknown currency": (with_txn(currency="XYZ"), "currency_unknown"),
    "lowercase currency": (with_txn(currency="eur"), "currency_unknown"),
    "points unit as currency": (with_txn(currency="PTS"), "currency_unknown"),
    "numeric currency code": (with_txn(currency="978"), "currency_unknown"),
    "unknown kind": (with_txn(kind="withdrawal"), "kind_unknown"),
    "extra txn key": (with_txn(tip_minor=0), "field_unknown"),
    "card as number": (with_txn(card=4711), "field_type"),
    "negative seq": (with_txn(seq=-1), "field_invalid"),
    "bool seq": (with_txn(seq=False), "field_type"),
    "uppercase digest": (with_txn(digest="AB" * 32), "field_invalid"),
    "short digest": (with_txn(digest="ab" * 31), "field_invalid"),
    "card value over amount": (
        replace_last(purchase("T2-2", card_value_minor=900, amount_minor=800)),
        "amount_invalid",
    ),
    "bonus on a purchase": (
        replace_last(purchase("T2-2", card_value_minor=100) | {"bonus_minor": 5}),
        "amount_invalid",
    ),
    "points on a topup": (with_txn(points=5), "amount_invalid"),
    "card value on a topup": (with_txn(card_value_minor=5), "amount_invalid"),
    "issue without program": (
        replace_last(issue("T2-2", card="C2", program=None)),
        "field_invalid",
    ),
    "refund without ref_txn_id": (
        replace_last(refund("T2-2", "T1-2", card_value_minor=1) | {"ref_txn_id": None}),
        "field_invalid",
    ),
    "purchase with ref_txn_id": (
        replace_last(purchase("T2-2", card_value_minor=1) | {"ref_txn_id": "T1-2"}),
        "field_invalid",
    ),
    "refund of unknown purchase": (
        replace_last(refund("T2-2", "T9-9", card_value_minor=100)),
        "refund_unknown_original",
    ),
    "refund beyond original value": (
        replace_last(refund("T2-2", "T1-2", card_value_minor=1501)),
        "refund_exceeds_original",
    ),
    "refund beyond original points": (
        replace_last(refund("T2-2", "T1-2", card_value_minor=0, points=16)),
        "refund_exceeds_original",
    ),
    "refund of a refund": (
        replace_last(refund("T2-2", "T1-3", card_value_minor=10)),
        "refund_mismatch",
    ),
    "refund of a topup beyond its value": (
        replace_last(refund("T2-2", "T2-1", card_value_minor=1001)),
        "refund_exceeds_original",
    ),
    "refund of an issue beyond its value": (
        replace_last(refund("T2-2", "T1-1", card_value_minor=5001)),
        "refund_exceeds_original",
    ),
    "bonus reversed that the load never gave": (
        replace_last(refund("T2-2", "T1-1", card_value_minor=10, bonus_minor=10, amount_minor=0)),
        "refund_exceeds_original",
    ),
    "bonus on a refund of a purchase": (
        replace_last(refund("T2-2", "T1-2", card_value_minor=100, bonus_minor=10)),
        "amount_invalid",
    ),
    "points on a refund of a load": (
        replace_last(refund("T2-2", "T2-1", card_value_minor=10, points=1)),
        "amount_invalid",
    ),
    "refund bonus over its card value": (
        replace_last(refund("T2-2", "T2-1", card_value_minor=5, bonus_minor=10, amount_minor=0)),
        "amount_invalid",
    ),
    "refund card value over amount plus bonus": (
        replace_last(refund("T2-2", "T2-1", card_value_minor=61, bonus_minor=10, amount_minor=50)),
        "amount_invalid",
    ),
    "version zero": (with_txn(version=0), "field_invalid"),
    "version over 2^31-1": (with_txn(version=2**31), "field_invalid"),
    "float version": (with_txn(version=3.0), "field_type"),
    "bool version": (with_txn(version=True), "field_type"),
    "discount on a topup": (with_txn(discount_minor=0), "amount_invalid"),
    "discount over the amount": (
        replace_last(purchase("T2-2", card_value_minor=100, discount_minor=101)),
        "amount_invalid",
    ),
    "negative discount": (
        replace_last(purchase("T2-2", card_value_minor=100, discount_minor=-1)),
        "amount_invalid",
    ),
    "redeem_points on a topup": (with_txn(redeem_points=5), "amount_invalid"),
    "redeem_points without legs": (
        replace_last(purchase("T2-2", card_value_minor=100, redeem_points=5)),
        "field_invalid",
    ),
    "float redeem_points": (
        replace_last(purchase("T2-2", card_value_minor=100, redeem_points=5.0)),
        "field_type",
    ),
    "refund to another card": (
        replace_last(refund("T2-2", "T1-2", card="C2", card_value_minor=10)),
        "refund_mismatch",
    ),
    "other currency on a known card": (
        replace_last(purchase("T2-2", card_value_minor=10) | {"currency": "USD"}),
        "currency_mismatch",
    ),
    "second issue of a card": (replace_last(issue("T2-2")), "card_already_issued"),
    "expire of more value than the card holds (4500)": (
        replace_last(expire("T2-2", card_value_minor=4501)), "expire_exceeds_balance"),
    "expire of more points than the card holds (15)": (
        replace_last(expire("T2-2", points=16)), "expire_exceeds_balance"),
    "txn_id posted before with other content": (
        replace_last(topup("T1-2", amount_minor=1)),
        "txn_conflict",
    ),
}
"""Faults of one transaction (its fields, or a rule of the books)."""


def bad_batch(mutate: Callable[[Document], None]) -> Document:
    """A good topup of 1000 to C1, then the bad transaction `mutate` makes."""
    bad = batch("gw1-bad", topup("T2-1", amount_minor=1000), topup("T2-9", amount_minor=10))
    mutate(bad)
    return bad


@pytest.mark.parametrize("mutate, reason", CASES.values(), ids=list(CASES))
def test_a_bad_transaction_is_refused_alone_with_its_reason(
    books: Books, mutate: Callable[[Document], None], reason: str
) -> None:
    """A batch with one bad transaction after a good one posts the good one; the bad one is
    refused with its reason, kept in the quarantine, and changes no balance."""
    books.post_batch(base_batch())
    assert_txn_refused(books, bad_batch(mutate), reason)
    assert [(row["card"], row["value_minor"]) for row in books.balances()] == [("C1", 4500)]


@pytest.mark.parametrize("mutate, reason", ENVELOPE_CASES.values(), ids=list(ENVELOPE_CASES))
def test_a_bad_envelope_refuses_the_batch_whole_and_changes_nothing(
    books: Books, mutate: Callable[[Document], None], reason: str
) -> None:
    """A batch whose envelope is bad is refused whole, with its reason; nothing is kept."""
    books.post_batch(base_batch())
    assert_refused_unchanged(books, bad_batch(mutate), reason)
    assert books.refused_transactions() == []
    # The refused batch_id was not burned: its good part posts afterwards.
    assert books.post_batch(batch("gw1-bad", topup("T2-1", amount_minor=1000))).posted == 1


def test_batch_over_the_transaction_limit_is_too_large(books: Books) -> None:
    """A batch of more than BATCH_TXN_MAX transactions is refused as batch_too_large (413)."""
    books.post_batch(base_batch())
    before = snapshot(books)
    one = topup("T2-1")
    with pytest.raises(LedgerRejected) as caught:
        books.post_batch(batch("gw1-huge", *([one] * (BATCH_TXN_MAX + 1))))
    assert (caught.value.reason, caught.value.http_status) == ("batch_too_large", 413)
    assert snapshot(books) == before


@pytest.mark.parametrize(
    "document", [[], "batch", None, 42], ids=["list", "string", "null", "number"]
)
def test_a_batch_that_is_not_an_object_is_malformed(books: Books, document: object) -> None:
    """Anything but a JSON object as the batch is refused as batch_malformed."""
    with pytest.raises(LedgerRejected) as caught:
        books.post_batch(document)
    assert caught.value.reason == "batch_malformed"
    assert books.counts() == dict.fromkeys(books.counts(), 0)


def test_a_python_value_that_is_not_json_is_a_type_error(books: Books) -> None:
    """A Python caller's non-JSON value (a set) is refused as field_type, not a crash."""
    bad = batch("gw1-bad", txn("T2-1", "topup", amount_minor=5) | {"program": {"gift"}})
    with pytest.raises(LedgerRejected) as caught:
        books.post_batch(bad)
    assert caught.value.reason == "field_type"
    assert books.counts()["transactions"] == 0


def test_a_lapse_posted_twice_is_breakage_once(books: Books) -> None:
    """Two stores each expire the card's whole value (neither had read the other's): the
    second expire finds nothing left and is refused; the card holds 0, not less."""
    books.post_batch(base_batch())
    result = books.post_batch(batch("gw1-lapse", expire("X1-1", card_value_minor=3500),
                                    expire("X2-1", card_value_minor=3500)))
    assert [refused.reason for refused in result.refused] == ["expire_exceeds_balance"]
    assert [(row["card"], row["value_minor"]) for row in books.balances()] == [("C1", 0)]
    again = books.post_batch(batch("gw2-lapse", expire("X3-1", card_value_minor=3500)))
    assert [refused.reason for refused in again.refused] == ["expire_exceeds_balance"]
