"""Issue 13's findings that had no end-to-end test of their own, proven on the broker as a
store deploys it (tests/support/store_broker.py: TLS only, logins, ACL): a terminal's login
reads nothing but its own downlinks; envelope tricks on a genuine record take no seq; a
keyed amount past the bound is declined and the authorization thread lives on; one burst of
refusals too many for one ack is split and every ack goes out; unsigned junk on a terminal's
topic gets it a bounded number of notices. Each time the legitimate traffic keeps flowing
and the ledger gets exactly the valid records."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.acks import NOTICE_BURST, NOTICE_REFILL_PER_S
from protocol import cbor, cose, messages, money, topics, txn
from tests.support.stack import RawTerminal, running_stack, sealed_by_hand, wait_until
from tests.support.store_broker import StoreBroker

GIFT = "04d0d1d2d3d4d5"
UNKNOWN_CARD = "04ffffffffffff"
# Refusals that cannot all fit one sealed ack (about 48 `card_unknown` entries do not).
REFUSALS_IN_ONE_BURST = 80
JUNK_MESSAGES = 3 * NOTICE_BURST
SUBSCRIBE_WAIT_S = 10.0
QUIET_S = 0.5  # what the gateway routes within this after the last message has arrived


def _issue(raw: RawTerminal, value_minor: int = 10_000) -> None:
    """Issue GIFT with value as a till does: value is loaded only as the gateway approved."""
    raw.publish(raw.approved(txn.KIND_ISSUE, GIFT, value_minor, program="gift"))
    assert wait_until(lambda: raw.acked_through() == raw.seq)


def _refused(raw: RawTerminal) -> set[tuple[int, str]]:
    return {(seq, reason) for ack in raw.acks() for seq, reason in ack["rejected"]}


def test_a_terminal_login_reads_nothing_but_its_own_downlinks(
    store_broker: StoreBroker, tmp_path: Path
) -> None:
    """An anonymous client reading every configuration and sale is refused outright
    (tests/e2e/test_broker_logins.py); a terminal's own login, subscribed to everything,
    gets only what the gateway sends that terminal."""
    with running_stack(store_broker, tmp_path, ["T1", "T2"]) as stack:
        received: list[str] = []
        subscribed = threading.Event()
        snoop = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="snoop",
                            protocol=mqtt.MQTTv311)
        snoop.username_pw_set(*store_broker.terminal_login("M1", "T2"))
        snoop.tls_set(ca_certs=store_broker.ca)
        snoop.on_message = lambda client, userdata, message: received.append(message.topic)
        snoop.on_subscribe = lambda *args: subscribed.set()
        snoop.connect(store_broker.host, store_broker.port)
        snoop.subscribe("#", qos=1)
        snoop.loop_start()
        raw = RawTerminal(store_broker, "T1", stack.keys["T1"])
        try:
            assert subscribed.wait(SUBSCRIBE_WAIT_S)
            _issue(raw)
            raw.publish(raw.record(txn.KIND_PURCHASE, GIFT, 500))
            assert wait_until(lambda: raw.acked_through() == 2)
            # T2's own signed configuration (retained) reaches it: the subscription works.
            assert wait_until(lambda: "tilltap/v1/M1/T2/down/config" in received)
            time.sleep(QUIET_S)
            own = topics.terminal_subscription("M1", "T2").removesuffix("#")
            assert received and all(topic.startswith(own) for topic in received), received
            stack.gateway.settle()
            assert stack.ledger_client.card(GIFT)["value_minor"] == 9_500
        finally:
            snoop.loop_stop()
            snoop.disconnect()
            raw.close()


def _rewrapped(record: bytes) -> bytes:
    """The same MAC under an extra unprotected header (a third party can add one)."""
    mac0 = cose.parse(record)
    unprotected = dict(mac0.unprotected)
    unprotected[99] = b"x"
    return cbor.encode(cbor.Tag(17, [mac0.protected, unprotected, mac0.payload, mac0.tag]))


def _untagged(record: bytes) -> bytes:
    mac0 = cose.parse(record)
    return cbor.encode([mac0.protected, mac0.unprotected, mac0.payload, mac0.tag])


def _duplicate_key(raw: RawTerminal, record: bytes) -> bytes:
    """The record's map with key `false` beside key 0 (equal in a careless decoder), MACed
    under the terminal's key: the key holder's own trick."""
    payload = cose.parse(record).payload
    entries = payload[0] - 0xA0
    assert 0 < entries < 23  # a one-byte map header
    forged = bytes([payload[0] + 1]) + payload[1:] + b"\xf4" + cbor.encode(messages.TYPE_TXN)
    return cose.create(raw.key, forged, raw.terminal.encode())


def test_envelope_tricks_on_a_genuine_record_take_no_seq(
    store_broker: StoreBroker, tmp_path: Path
) -> None:
    with running_stack(store_broker, tmp_path, ["T1"]) as stack:
        raw = RawTerminal(store_broker, "T1", stack.keys["T1"])
        try:
            _issue(raw)
            genuine = raw.record(txn.KIND_PURCHASE, GIFT, 700)
            for trick in (_rewrapped(genuine), _untagged(genuine),
                          _duplicate_key(raw, genuine)):
                raw.publish(trick)  # first: a third party on the wire, or the key holder
            # Refused before sequencing, as a malformed message (docs/protocol.md 5.1).
            assert wait_until(lambda: stack.gateway.stats.rejections()
                              == {"message_malformed": 3}), stack.gateway.stats.rejections()
            raw.publish(genuine)
            assert wait_until(lambda: raw.acked_through() == 2)
            # Nothing of the tricks was sequenced: the genuine record is neither a replay
            # nor refused, and the one after it chains on.
            assert raw.replayed() == set() and _refused(raw) == set()
            assert not {"seq_replayed", "chain_broken"} & set(stack.gateway.stats.rejections())
            raw.publish(raw.record(txn.KIND_PURCHASE, GIFT, 300))
            assert wait_until(lambda: raw.acked_through() == 3)
            stack.gateway.settle()
            assert stack.ledger_client.card(GIFT)["value_minor"] == 10_000 - 700 - 300
            assert stack.ledger_client.terminal_totals()["T1"]["count"] == 3
        finally:
            raw.close()


def _ask(raw: RawTerminal, request_id: int, kind: int, amount_minor: int) -> None:
    """A signed authorization request, encoded by hand: the encoder itself refuses an
    amount past the bound, a stolen key need not."""
    fields = {"terminal": raw.terminal, "request": request_id, "time": int(time.time()),
              "merchant": raw.merchant, "card": GIFT, "kind": kind, "currency": "EUR",
              "amount_minor": amount_minor}
    raw.publish(sealed_by_hand(raw.key, raw.terminal, messages.TYPE_AUTH_REQUEST, fields),
                leaf=topics.LEAF_AUTH)


def test_a_keyed_amount_past_the_bound_is_declined_and_authorization_goes_on(
    store_broker: StoreBroker, tmp_path: Path
) -> None:
    with running_stack(store_broker, tmp_path, ["T1"]) as stack:
        raw = RawTerminal(store_broker, "T1", stack.keys["T1"])
        try:
            _issue(raw)
            stack.gateway.settle()
            _ask(raw, 1, txn.KIND_TOPUP, money.AMOUNT_MINOR_MAX + 1)
            _ask(raw, 2, txn.KIND_PURCHASE, 400)
            assert wait_until(lambda: set(raw.auth_answers()) >= {1, 2}), raw.auth_answers()
            answers = raw.auth_answers()
            # Declined by the message's own schema (an amount is 0..AMOUNT_MINOR_MAX)...
            assert (answers[1]["approved"], answers[1]["reason"]) == (False, "field_invalid")
            # ...and the thread that answered it answers the next request.
            assert answers[2]["approved"], answers[2]
        finally:
            raw.close()


def test_a_burst_of_refusals_too_many_for_one_ack_is_acked_in_parts(
    store_broker: StoreBroker, tmp_path: Path
) -> None:
    with running_stack(store_broker, tmp_path, ["T1"]) as stack:
        raw = RawTerminal(store_broker, "T1", stack.keys["T1"])
        try:
            _issue(raw)
            refused = [raw.record(txn.KIND_PURCHASE, UNKNOWN_CARD, 10)
                       for _ in range(REFUSALS_IN_ONE_BURST)]
            # The first is sent last: the others wait for it, so one commit refuses them all.
            for record in refused[1:] + refused[:1]:
                raw.publish(record)
            last = raw.seq
            assert wait_until(lambda: raw.acked_through() == last)
            assert _refused(raw) == {(seq, "card_unknown") for seq in range(2, last + 1)}
            assert len([ack for ack in raw.acks() if ack["rejected"]]) > 1
            # The ack thread lives on: the next sale is acked and posted.
            raw.publish(raw.record(txn.KIND_PURCHASE, GIFT, 250))
            assert wait_until(lambda: raw.acked_through() == last + 1)
            stack.gateway.settle()
            assert stack.ledger_client.card(GIFT)["value_minor"] == 10_000 - 250
            assert stack.ledger_client.terminal_totals()["T1"]["count"] == 2
        finally:
            raw.close()


def test_unsigned_junk_on_a_terminals_topic_gets_it_a_bounded_number_of_notices(
    store_broker: StoreBroker, tmp_path: Path
) -> None:
    with running_stack(store_broker, tmp_path, ["T1"]) as stack:
        raw = RawTerminal(store_broker, "T1", stack.keys["T1"])
        try:
            started = time.monotonic()
            for _ in range(JUNK_MESSAGES):
                raw.publish(b"\xff" * 10)
            assert wait_until(lambda: stack.gateway.stats.rejections().get(
                "message_malformed") == JUNK_MESSAGES)
            time.sleep(QUIET_S)
            allowed = NOTICE_BURST + int((time.monotonic() - started) * NOTICE_REFILL_PER_S) + 1
            assert NOTICE_BURST <= len(raw.notices()) <= allowed < JUNK_MESSAGES
            _issue(raw)  # the terminal's own traffic is untouched
            stack.gateway.settle()
            assert stack.ledger_client.card(GIFT)["value_minor"] == 10_000
        finally:
            raw.close()
