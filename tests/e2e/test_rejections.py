"""(c) Forged, tampered, unknown and replayed records are refused, each with its own reason
code, counted, and move no money; the gateway keeps running, and no refused record holds
up the terminal's later ones (docs/protocol.md section 5.1)."""

from __future__ import annotations

import os
from pathlib import Path

from gateway import store_reports
from protocol import cbor, cose, messages, txn
from tests.support.stack import RawTerminal, running_stack, wait_until
from tests.support.store_broker import StoreBroker

CARD = "04b0b1b2b3b4b5"


def _fields(seq: int, prev: bytes, amount: int, **extra: object) -> dict[str, object]:
    fields: dict[str, object] = {
        "terminal": "T1", "seq": seq, "prev": prev, "time": 1, "merchant": "M1", "card": CARD,
        "kind": txn.KIND_PURCHASE, "currency": "EUR", "amount_minor": amount,
        "card_value_minor": amount, "bonus_minor": 0, "points": 0, "auth_mode": txn.AUTH_ONLINE}
    fields.update(extra)
    return fields


def _tamper_amount(record: bytes, amount: int) -> bytes:
    """Change the amount inside a sealed record and keep its original tag."""
    mac0 = cose.parse(record)
    item = cbor.decode(mac0.payload)
    item[10] = amount
    item[11] = amount
    return cbor.encode(cbor.Tag(17, [mac0.protected, mac0.unprotected, cbor.encode(item),
                                     mac0.tag]))


def test_bad_records_are_refused_with_their_own_reason_and_move_no_money(
    store_broker: StoreBroker, tmp_path: Path
) -> None:
    with running_stack(store_broker, tmp_path, ["T1"]) as stack:
        raw = RawTerminal(store_broker, "T1", stack.keys["T1"])
        issue = raw.approved(txn.KIND_ISSUE, CARD, 5_000, program="gift")
        raw.publish(issue)
        assert wait_until(lambda: raw.acked_through() == 1)
        head = txn.digest(issue)
        key = stack.keys["T1"]

        forged = txn.seal(os.urandom(32), _fields(2, head, 100))
        tampered = _tamper_amount(txn.seal(key, _fields(2, head, 100)), 4_000)
        replayed = txn.seal(key, _fields(1, txn.GENESIS_DIGEST, 100))
        inflated_points = txn.seal(key, _fields(2, head, 100, points=500))
        # Signed by the key holder, inconsistent in itself: placed and stored as refused.
        overdrawn_card_part = _fields(3, txn.digest(inflated_points), 100)
        overdrawn_card_part["card_value_minor"] = 200
        inconsistent = cose.create(key, messages.encode(messages.TYPE_TXN, overdrawn_card_part),
                                   b"T1")
        second_two = txn.seal(key, _fields(2, head, 150))  # seq 2 is taken: a replay
        stranger = txn.seal(os.urandom(32), dict(_fields(1, txn.GENESIS_DIGEST, 100),
                                                 terminal="T9"))
        for record in (forged, tampered, replayed, inflated_points, inconsistent, second_two):
            raw.publish(record)
        # A terminal the gateway does not know, with a broker login of its own (one left
        # behind when it was retired): terminal_unknown. T1's login writing on T9's topic
        # is dropped by the broker's ACL, so it is counted once, not twice.
        outsider = RawTerminal(store_broker, "T9", os.urandom(32))
        outsider.publish(stranger)
        raw.publish(stranger, terminal="T9")
        raw.publish(b"\xff" * 10)
        raw.publish(bytes(messages.MESSAGE_BYTES_MAX + 1))

        expected = {"mac_invalid": 2, "seq_replayed": 2, "rule_mismatch": 1,
                    "amount_invalid": 1, "terminal_unknown": 1, "message_malformed": 1,
                    "message_too_large": 1}
        assert wait_until(lambda: stack.gateway.stats.rejections() == expected), (
            stack.gateway.stats.rejections())

        def acked_rejections() -> set[tuple[int, str]]:
            return {(r[0], r[1]) for a in raw.acks() for r in a["rejected"]}

        # Refused after the MAC verified: signed, with the seq, and the seq consumed.
        assert wait_until(lambda: acked_rejections() == {(2, "rule_mismatch"),
                                                         (3, "amount_invalid")})
        assert wait_until(lambda: raw.acked_through() == 3)
        assert wait_until(lambda: raw.replayed() == {(1, txn.digest(replayed)),
                                                     (2, txn.digest(second_two))})
        # Only what failed before its MAC verified gets an unsigned notice.
        notices = ["mac_invalid", "mac_invalid", "message_malformed", "message_too_large"]
        assert wait_until(lambda: sorted(n["reason"] for n in raw.notices()) == notices), (
            raw.notices())
        assert not any(n["signed"] for n in raw.notices())

        # The next record follows the refused one in the chain and is accepted.
        good = txn.seal(key, _fields(4, txn.digest(inconsistent), 100))
        raw.publish(good)
        assert wait_until(lambda: raw.acked_through() == 4)
        assert {(r["seq"], r["reason"]) for r in store_reports.refusals(stack.gateway.store)} == {
            (2, "rule_mismatch"), (3, "amount_invalid")}
        stack.gateway.settle()
        assert stack.ledger_client.card(CARD)["value_minor"] == 4_900
        assert stack.ledger_client.terminal_totals()["T1"]["count"] == 2
        raw.close()
        outsider.close()


def test_the_broker_drops_a_packet_no_protocol_message_could_need(
    store_broker: StoreBroker, tmp_path: Path
) -> None:
    from tools.mosquitto import PACKET_BYTES_MAX

    with running_stack(store_broker, tmp_path, ["T1"]) as stack:
        flooder = RawTerminal(store_broker, "T1", stack.keys["T1"])
        flooder.client.publish("tilltap/v1/M1/T1/up/txn", bytes(4 * PACKET_BYTES_MAX), qos=0)
        flooder.close()
        raw = RawTerminal(store_broker, "T1", stack.keys["T1"])
        raw.publish(raw.approved(txn.KIND_ISSUE, CARD, 5_000, program="gift"))
        assert wait_until(lambda: raw.acked_through() == 1)
        # Only the record reached the gateway: the big packet ended at the broker.
        assert stack.gateway.stats.snapshot()["received"] == 1
        raw.close()
