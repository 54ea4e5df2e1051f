"""What the fuzz campaign (tools/fuzz, issue 13) found a stolen terminal key could get
accepted, each as the smallest record that showed it. Every test here failed before its fix:
the gateway booked more than the record said, took an operation other than the one it
approved, an issue marked offline, a ref on a load, or CBOR `true` as the integer 1."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.cards import EFFECTS_FIELD, CardBook
from gateway.verify import SignedRefusal, Verifier
from protocol import cbor, cose, messages, txn
from protocol.errors import ProtocolError
from tests.gateway.test_cards import DAY0_S, apply, fields, issued, reason_of, request
from tests.gateway.test_verify import KEY, NOW_S, TOPIC, _fields, _raw, _verifier
from tools.demo import DEMO_PROGRAMS

LIMITS = {"txn_minor_max": 1000}


def test_an_offline_purchase_books_its_own_card_part_not_its_whole_amount() -> None:
    """A card part within the signed limit on an amount fifteen times larger: the engine's
    figure for the whole amount (1500) would have come off the card."""
    book = CardBook(DEMO_PROGRAMS, offline_limits=LIMITS)
    apply(book, fields(txn.KIND_ISSUE, amount_minor=5000, card_value_minor=5000,
                       program="gift"))
    offline = {"auth_mode": txn.AUTH_OFFLINE, "terminal": "T7"}
    swapped = fields(txn.KIND_PURCHASE, amount_minor=1500, card_value_minor=100, seq=2,
                     **offline)
    assert reason_of(book, swapped) == "rule_mismatch"
    honest = apply(book, fields(txn.KIND_PURCHASE, amount_minor=100, card_value_minor=100,
                                seq=3, **offline))
    assert honest[EFFECTS_FIELD]["card_value_minor"] == 100
    assert book.cards["c1"]["value_minor"] == 4900


def test_an_online_record_is_the_operation_approved_not_only_its_till_amounts() -> None:
    book = issued("gift", 5000)
    answer = book.authorize(request(txn.KIND_PURCHASE, 100, 100), DAY0_S)
    assert answer["approved"] and answer["card_value_minor"] == 100
    approved = fields(txn.KIND_PURCHASE, amount_minor=100, card_value_minor=100, seq=2,
                      version=answer["version"], auth_id=answer["auth_id"])
    # The approved till amounts copied onto a larger amount: 1500 would have been booked.
    assert reason_of(book, dict(approved, amount_minor=1500)) == "rule_mismatch"
    # A sale paid at the till (no card part) on a points card: the amount is free in the
    # till amounts, and the points it earns are the engine's; it must be the amount approved.
    loyalty = issued("loyalty", 0)
    answer = loyalty.authorize(request(txn.KIND_PURCHASE, 1000), DAY0_S)
    assert answer["approved"] and answer["points"] == 10
    paid_at_till = fields(txn.KIND_PURCHASE, amount_minor=1000, points=10, seq=2,
                          version=answer["version"], auth_id=answer["auth_id"])
    assert reason_of(loyalty, dict(paid_at_till, amount_minor=200_000)) == "rule_mismatch"
    assert reason_of(loyalty, dict(paid_at_till, kind=txn.KIND_CASHOUT)) in (
        "rule_mismatch", "operation_not_in_program")
    apply(book, approved)
    apply(loyalty, paid_at_till)
    assert book.cards["c1"]["value_minor"] == 4900 and loyalty.cards["c1"]["points"] == 10


def test_an_online_record_after_a_restart_is_the_operation_kept_with_its_approval() -> None:
    book = issued("loyalty", 0)
    answer = book.authorize(request(txn.KIND_PURCHASE, 1000), DAY0_S)
    hold = book.holds.get(answer["auth_id"])
    assert hold is not None and hold.op is not None
    kept = {"terminal": "T1", "card": "c1", "auth_mode": txn.AUTH_ONLINE,
            "expect": hold.expect, "op": hold.op}
    restarted = CardBook(DEMO_PROGRAMS, book.cards, auth_epoch=book.holds.epoch + 1)
    record = fields(txn.KIND_PURCHASE, amount_minor=1000, points=10, seq=2,
                    version=answer["version"], auth_id=answer["auth_id"])
    with pytest.raises(ProtocolError) as caught:
        restarted.check(dict(record, amount_minor=90_000), kept)
    assert caught.value.reason == "rule_mismatch"
    record.update(restarted.apply(record, restarted.check(record, kept)))
    assert restarted.cards["c1"]["points"] == 10


def test_an_issue_marked_offline_is_refused_and_counted() -> None:
    book = CardBook(DEMO_PROGRAMS, offline_limits=LIMITS)
    issue = fields(txn.KIND_ISSUE, amount_minor=500, card_value_minor=500, program="gift",
                   auth_mode=txn.AUTH_OFFLINE, terminal="T7")
    assert reason_of(book, issue) == "offline_kind_invalid"
    assert book.offline_over_limit == {"T7": 1} and "c1" not in book.cards


@pytest.mark.parametrize("kind, extra, ref", [
    (txn.KIND_TOPUP, {"amount_minor": 1000, "card_value_minor": 1000}, "T1-2"),
    (txn.KIND_ISSUE, {"amount_minor": 1000, "card_value_minor": 1000, "program": "gift"},
     "T1-2"),
    (txn.KIND_PURCHASE, {"amount_minor": 1000, "card_value_minor": 1000}, ""),  # empty: a ref
])
def test_only_a_refund_names_an_original(kind: int, extra: dict[str, Any], ref: str) -> None:
    record = fields(kind, ref=ref, **extra)
    with pytest.raises(ProtocolError) as caught:
        txn.check_consistency(record)
    assert caught.value.reason == "field_invalid"
    with pytest.raises(ProtocolError):
        txn.seal(KEY, dict(_fields(kind=kind, **extra), ref=ref))


@pytest.mark.parametrize("key, reason", [
    (messages.K_TYPE, "message_type_invalid"),
    (messages.K_VERSION, "version_unsupported"),
])
def test_cbor_true_is_not_the_integer_one(key: int, reason: str) -> None:
    item = _raw(_fields())
    item[key] = True
    signed = cose.create(KEY, cbor.encode(item), b"T1")
    verifier: Verifier = _verifier()
    with pytest.raises(SignedRefusal) as caught:
        verifier.transaction(TOPIC, signed, NOW_S)
    assert caught.value.reason == reason
    with pytest.raises(ProtocolError) as unpacked:
        messages.unpack(item, messages.TYPE_TXN)
    assert unpacked.value.reason == reason


def test_value_is_loaded_only_under_an_approval_the_gateway_gave() -> None:
    """A stolen key's online top-up or issue naming no approval (or one never given) loads
    nothing; the same record under the gateway's approval loads its value."""
    book = issued("prepaid", 1000)
    topup = fields(txn.KIND_TOPUP, amount_minor=1000, bonus_minor=50, card_value_minor=1050,
                   seq=2, version=1)
    for forged in (topup, dict(topup, auth_id="a0-77")):
        with pytest.raises(ProtocolError) as caught:
            book.check(forged)
        assert caught.value.reason == "auth_unknown"
    issue = fields(txn.KIND_ISSUE, card="c2", amount_minor=5000, card_value_minor=5000,
                   program="gift")
    with pytest.raises(ProtocolError) as refused:
        book.check(issue)
    assert refused.value.reason == "auth_unknown"
    assert book.cards["c1"]["value_minor"] == 1000 and "c2" not in book.cards
    apply(book, topup)  # asks first, as a till does
    assert book.cards["c1"]["value_minor"] == 2050
    # A points-only card issued with no value loads nothing: no approval needed.
    apply(book, fields(txn.KIND_ISSUE, card="c3", program="loyalty", auth_id=None))
    assert book.cards["c3"]["points"] == 0


def test_an_approval_moves_value_once_and_only_its_terminal_can_end_its_hold() -> None:
    """Found by the end-to-end attack tests: an approval whose hold was gone was recalled for
    every record naming it, so one approval loaded or took value again and again; and
    another terminal's refused record naming it released its hold."""
    book = issued("gift", 5000)
    answer = book.authorize(dict(request(txn.KIND_PURCHASE, 1000, 1000), terminal="T1",
                                 seq=2), DAY0_S)
    sale = fields(txn.KIND_PURCHASE, amount_minor=1000, card_value_minor=1000, seq=2,
                  version=1, auth_id=answer["auth_id"])
    hold = book.holds.get(answer["auth_id"])
    assert hold is not None and hold.expect is not None
    book.refused(dict(sale, terminal="T2", seq=9))  # a stranger's refused record
    assert answer["auth_id"] in book.holds
    kept = {"terminal": "T1", "card": "c1", "auth_mode": txn.AUTH_ONLINE,
            "expect": hold.expect, "op": hold.op, "used_by": None}
    apply(book, sale)  # the genuine record uses it
    again = dict(sale, seq=3)
    for recalled in (dict(kept, used_by="T1-2"), None):  # as the store says, or no hold
        with pytest.raises(ProtocolError) as caught:
            book.check(again, recalled)
        assert caught.value.reason == "auth_unknown"
    assert book.cards["c1"]["value_minor"] == 4000
