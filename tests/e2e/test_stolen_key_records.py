"""Issue 13's records of a stolen terminal key that had no end-to-end test of their own, on
the broker as a store deploys it (tests/support/store_broker.py: TLS only, logins, ACL): a
stand-in top-up the gateway never stood in for, records carrying amounts at and past the
bound of `protocol/money.py` (encoded by hand: the encoder refuses them, a stolen key need
not), and a record whose map holds keys 1 and `true` MACed by the key holder. Each is
refused with its reason and posts nothing; the terminal's next record is accepted, the
gateway keeps answering, and the ledger gets exactly the valid records."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ledger.server import serve
from protocol import cbor, cose, messages, money, topics, txn
from tests.support.stack import RawTerminal, running_stack, sealed_by_hand, wait_until
from tests.support.store_broker import StoreBroker

PREPAID = "04e0e1e2e3e4e5"
OPENING_MINOR = 10_000
STAND_IN_SALE_MINOR = 2_000  # within the gateway's stand-in limit of 5,000 a sale
STOLEN_TOPUP_MINOR = 1_000_000  # issue 13: "stand-in top-ups of 1,000,000"
TOPUP_MINOR = 1_000
BONUS_BP = 500  # the demo's prepaid program: 5 % on a top-up, rounded down


def _bonus(amount_minor: int) -> int:
    return amount_minor * BONUS_BP // 10_000


def _ask(raw: RawTerminal, request_id: int, kind: int, amount_minor: int,
         card_value_minor: int = 0) -> dict[str, Any]:
    """A signed authorization request for PREPAID, encoded by hand (any amount); the answer."""
    fields = {"terminal": raw.terminal, "request": request_id, "time": int(time.time()),
              "merchant": raw.merchant, "card": PREPAID, "kind": kind, "currency": "EUR",
              "amount_minor": amount_minor, "card_value_minor": card_value_minor}
    raw.publish(sealed_by_hand(raw.key, raw.terminal, messages.TYPE_AUTH_REQUEST, fields),
                leaf=topics.LEAF_AUTH)
    assert wait_until(lambda: request_id in raw.auth_answers()), "no answer"
    return raw.auth_answers()[request_id]


def _by_hand(raw: RawTerminal, kind: int, amount_minor: int, **extra: Any) -> int:
    """The next record of `raw`'s chain with the fields given, encoded and MACed by hand;
    sent; its seq."""
    fields: dict[str, Any] = {
        "terminal": raw.terminal, "seq": raw.seq + 1, "prev": raw.prev,
        "time": int(time.time()), "merchant": raw.merchant, "card": PREPAID, "kind": kind,
        "currency": "EUR", "amount_minor": amount_minor, "card_value_minor": amount_minor,
        "bonus_minor": 0, "points": 0, "auth_mode": txn.AUTH_ONLINE}
    fields.update(extra)
    return raw.send_by_hand(fields)


def _refused(raw: RawTerminal) -> set[tuple[int, str]]:
    return {(seq, reason) for ack in raw.acks() for seq, reason in ack["rejected"]}


def _issue_prepaid(raw: RawTerminal) -> None:
    raw.publish(raw.approved(txn.KIND_ISSUE, PREPAID, OPENING_MINOR, program="prepaid"))
    assert wait_until(lambda: raw.acked_through() == raw.seq)


def test_a_stand_in_top_up_the_gateway_never_stood_in_for_is_refused_and_posts_nothing(
    store_broker: StoreBroker, tmp_path: Path
) -> None:
    """Stand-in is what the gateway says it did. With the ledger away it stands in for a
    sale, and approves a top-up online; both records are taken. Then a stolen key's stand-in
    top-ups of 1,000,000: with no approval, or naming an online approval, `auth_unknown`;
    naming the sale's stand-in approval, `rule_mismatch` (not the operation approved).
    None of them posts."""
    with running_stack(store_broker, tmp_path, ["T1"]) as stack:
        raw = RawTerminal(store_broker, "T1", stack.keys["T1"])
        try:
            _issue_prepaid(raw)
            assert stack.gateway.settle().posted == 1  # the ledger knows the card
            stack.gateway.follow_feed_once()  # heard from the ledger: it may stand in
            port = stack.ledger.port
            stack.ledger.stop()  # unreachable: the gateway stands in, within its limits
            stood_in = _ask(raw, 1, txn.KIND_PURCHASE, STAND_IN_SALE_MINOR,
                            card_value_minor=STAND_IN_SALE_MINOR)
            assert stood_in["approved"] and stood_in["auth_mode"] == txn.AUTH_STAND_IN, stood_in
            topup = _ask(raw, 2, txn.KIND_TOPUP, TOPUP_MINOR)
            assert topup["approved"] and "auth_mode" not in topup, topup  # online
            _by_hand(raw, txn.KIND_PURCHASE, STAND_IN_SALE_MINOR, auth_mode=txn.AUTH_STAND_IN,
                     auth_id=stood_in["auth_id"])
            loaded = _by_hand(raw, txn.KIND_TOPUP, TOPUP_MINOR,
                              card_value_minor=TOPUP_MINOR + _bonus(TOPUP_MINOR),
                              bonus_minor=_bonus(TOPUP_MINOR), auth_id=topup["auth_id"])
            assert wait_until(lambda: raw.acked_through() == loaded), raw.acks()
            assert _refused(raw) == set()

            stolen = {"card_value_minor": STOLEN_TOPUP_MINOR + _bonus(STOLEN_TOPUP_MINOR),
                      "bonus_minor": _bonus(STOLEN_TOPUP_MINOR), "auth_mode": txn.AUTH_STAND_IN}
            refused = {
                (_by_hand(raw, txn.KIND_TOPUP, STOLEN_TOPUP_MINOR, **stolen), "auth_unknown"),
                (_by_hand(raw, txn.KIND_TOPUP, STOLEN_TOPUP_MINOR, **stolen,
                          auth_id=topup["auth_id"]), "auth_unknown"),
                # The stand-in sale's approval, used by its own record already: spent.
                (_by_hand(raw, txn.KIND_TOPUP, STOLEN_TOPUP_MINOR, **stolen,
                          auth_id=stood_in["auth_id"]), "auth_unknown"),
            }
            good = _by_hand(raw, txn.KIND_PURCHASE, 100)  # and the chain goes on
            assert wait_until(lambda: raw.acked_through() == good), raw.acks()
            assert _refused(raw) == refused
            assert stack.gateway.stats.rejections() == {"auth_unknown": 3}

            # Back on the same books: exactly the valid records post, nothing of the claims.
            stack.ledger = serve(f"sqlite:///{tmp_path / 'ledger.db'}", port=port)
            stack.gateway.settle()
            card = stack.ledger_client.card(PREPAID)
            assert card["value_minor"] == (OPENING_MINOR - STAND_IN_SALE_MINOR + TOPUP_MINOR
                                           + _bonus(TOPUP_MINOR) - 100)
            assert stack.ledger_client.terminal_totals()["T1"]["count"] == 4
            assert not any(stack.ledger_client.trial_balance().values())
        finally:
            raw.close()


def test_one_top_up_approval_loads_value_once(
    store_broker: StoreBroker, tmp_path: Path
) -> None:
    with running_stack(store_broker, tmp_path, ["T1"]) as stack:
        raw = RawTerminal(store_broker, "T1", stack.keys["T1"])
        try:
            _issue_prepaid(raw)
            topup = _ask(raw, 1, txn.KIND_TOPUP, TOPUP_MINOR)
            as_approved = {"card_value_minor": TOPUP_MINOR + _bonus(TOPUP_MINOR),
                           "bonus_minor": _bonus(TOPUP_MINOR), "auth_id": topup["auth_id"]}
            first = _by_hand(raw, txn.KIND_TOPUP, TOPUP_MINOR, **as_approved)
            assert wait_until(lambda: raw.acked_through() == first)
            again = _by_hand(raw, txn.KIND_TOPUP, TOPUP_MINOR, **as_approved)
            assert wait_until(lambda: raw.acked_through() == again)
            stack.gateway.settle()
            value_minor = stack.ledger_client.card(PREPAID)["value_minor"]
            assert {seq for seq, _ in _refused(raw)} == {again}, _refused(raw)
            assert value_minor == OPENING_MINOR + TOPUP_MINOR + _bonus(TOPUP_MINOR)
        finally:
            raw.close()


def test_one_purchase_approval_takes_value_once(
    store_broker: StoreBroker, tmp_path: Path
) -> None:
    with running_stack(store_broker, tmp_path, ["T1"]) as stack:
        raw = RawTerminal(store_broker, "T1", stack.keys["T1"])
        try:
            _issue_prepaid(raw)
            stack.gateway.settle()
            sale = _ask(raw, 1, txn.KIND_PURCHASE, 4000, card_value_minor=4000)
            seqs = []
            for _ in range(3):
                seqs.append(_by_hand(raw, txn.KIND_PURCHASE, 4000, auth_id=sale["auth_id"]))
                assert wait_until(lambda: raw.acked_through() == seqs[-1])
            stack.gateway.settle()
            value_minor = stack.ledger_client.card(PREPAID)["value_minor"]
            assert {seq for seq, _ in _refused(raw)} == set(seqs[1:]), _refused(raw)
            assert value_minor == OPENING_MINOR - 4000
        finally:
            raw.close()


def test_records_past_the_amount_bound_are_refused_and_the_next_record_is_taken(
    store_broker: StoreBroker, tmp_path: Path
) -> None:
    """A purchase of 10^12 + 1, and a top-up of 10^12 whose 5 % bonus takes the card's part
    past the bound, break the record's schema (an amount is 0..AMOUNT_MINOR_MAX:
    `field_invalid`); a top-up of 10^12 asked for is declined `amount_invalid` (its result
    is past the bound). The gateway answers on, and the next record is accepted."""
    past = money.AMOUNT_MINOR_MAX + 1
    at = money.AMOUNT_MINOR_MAX
    with running_stack(store_broker, tmp_path, ["T1"]) as stack:
        raw = RawTerminal(store_broker, "T1", stack.keys["T1"])
        try:
            _issue_prepaid(raw)
            refused = {
                (_by_hand(raw, txn.KIND_PURCHASE, past), "field_invalid"),
                (_by_hand(raw, txn.KIND_TOPUP, at, card_value_minor=at + _bonus(at),
                          bonus_minor=_bonus(at)), "field_invalid"),
                (_by_hand(raw, txn.KIND_TOPUP, at, card_value_minor=at + _bonus(at),
                          bonus_minor=_bonus(at), auth_mode=txn.AUTH_OFFLINE), "field_invalid"),
            }
            good = _by_hand(raw, txn.KIND_PURCHASE, 300)
            assert wait_until(lambda: raw.acked_through() == good), raw.acks()
            assert _refused(raw) == refused
            # Asked for at the counter: declined on the engine's result, before any hold.
            declined = _ask(raw, 1, txn.KIND_TOPUP, at)
            assert (declined["approved"], declined["reason"]) == (False, "amount_invalid")
            # Every stage still works: an approval, its record, an ack, a settlement.
            raw.publish(raw.approved(txn.KIND_TOPUP, PREPAID, TOPUP_MINOR,
                                     card_value_minor=TOPUP_MINOR + _bonus(TOPUP_MINOR),
                                     bonus_minor=_bonus(TOPUP_MINOR)))
            assert wait_until(lambda: raw.acked_through() == raw.seq)
            assert _refused(raw) == refused
            stack.gateway.settle()
            assert stack.ledger_client.card(PREPAID)["value_minor"] == (
                OPENING_MINOR - 300 + TOPUP_MINOR + _bonus(TOPUP_MINOR))
            assert stack.ledger_client.terminal_totals()["T1"]["count"] == 3
        finally:
            raw.close()


def _one_and_true(raw: RawTerminal, record: bytes) -> bytes:
    """The record's map with key `true` beside key 1 (the version; equal in a careless
    decoder), MACed under the terminal's key: the key holder's own trick."""
    payload = cose.parse(record).payload
    entries = payload[0] - 0xA0
    assert 0 < entries < 23  # a one-byte map header
    forged = bytes([payload[0] + 1]) + payload[1:] + b"\xf5" + cbor.encode(1)
    return cose.create(raw.key, forged, raw.terminal.encode())


def test_a_map_with_keys_one_and_true_takes_no_seq(
    store_broker: StoreBroker, tmp_path: Path
) -> None:
    with running_stack(store_broker, tmp_path, ["T1"]) as stack:
        raw = RawTerminal(store_broker, "T1", stack.keys["T1"])
        try:
            _issue_prepaid(raw)
            genuine = raw.record(txn.KIND_PURCHASE, PREPAID, 700)
            raw.publish(_one_and_true(raw, genuine))  # first, as a key holder would
            # Refused before sequencing, as a malformed message (docs/protocol.md 5.1).
            assert wait_until(lambda: stack.gateway.stats.rejections()
                              == {"message_malformed": 1}), stack.gateway.stats.rejections()
            raw.publish(genuine)
            assert wait_until(lambda: raw.acked_through() == 2)
            assert raw.replayed() == set() and _refused(raw) == set()
            raw.publish(raw.record(txn.KIND_PURCHASE, PREPAID, 300))
            assert wait_until(lambda: raw.acked_through() == 3)
            assert stack.gateway.stats.rejections() == {"message_malformed": 1}
            stack.gateway.settle()
            assert stack.ledger_client.card(PREPAID)["value_minor"] == OPENING_MINOR - 700 - 300
            assert stack.ledger_client.terminal_totals()["T1"]["count"] == 3
        finally:
            raw.close()

