"""The verifier sorts every uplink into the answer docs/protocol.md section 5.1 gives it:
unsigned notice (before the MAC verified), placed and refused (after), or sealed notice (it
verified but names no usable seq and prev)."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.offline_episodes import Told
from gateway.registry import TerminalRegistry
from gateway.verify import (
    CLOCK_SKEW_MAX_S,
    DeclinedRequest,
    SignedRefusal,
    Verifier,
)
from protocol import cbor, cose, messages, sealed, topics, txn
from protocol.errors import ProtocolError

KEY = bytes(range(32))
NOW_S = 1_763_900_000
TOPIC = topics.up("M1", "T1", topics.LEAF_TXN)


def _verifier() -> Verifier:
    registry = TerminalRegistry()
    registry.add("T1", "M1", KEY)
    registry.add("T2", "M2", bytes(32))
    return Verifier(registry)


def _fields(**changes: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "terminal": "T1", "seq": 4, "prev": bytes(32), "time": NOW_S, "merchant": "M1",
        "card": "04a1", "kind": txn.KIND_PURCHASE, "currency": "EUR", "amount_minor": 500,
        "card_value_minor": 500, "bonus_minor": 0, "points": 0, "auth_mode": txn.AUTH_ONLINE,
        "auth_id": "a1-7"}
    fields.update(changes)
    return fields


def _signed_map(item: dict[Any, Any], key: bytes = KEY, kid: bytes = b"T1") -> bytes:
    """Any map, MACed under the key: what a key holder (or a broken encoder) can send."""
    return cose.create(key, cbor.encode(item), kid)


def _raw(fields: dict[str, Any]) -> dict[Any, Any]:
    keys = {name: key for key, name, _, _ in messages.SCHEMAS[messages.TYPE_TXN]}
    item: dict[Any, Any] = {0: messages.TYPE_TXN, 1: 1}
    item.update({keys[name]: value for name, value in fields.items()})
    return item


def test_a_good_record_is_verified_without_refusal() -> None:
    verified = _verifier().transaction(TOPIC, txn.seal(KEY, _fields()), NOW_S)
    assert (verified.seq, verified.refusal) == (4, None)


@pytest.mark.parametrize("change, reason", [
    ({"amount_minor": 100}, "amount_invalid"),          # card part above the amount
    ({"kind": 9}, "kind_unknown"),
    ({"time": NOW_S + CLOCK_SKEW_MAX_S + 1}, "time_invalid"),
    ({"merchant": "M9"}, "topic_mismatch"),            # signed merchant is not the topic's
    ({"terminal": "T2"}, "topic_mismatch"),            # signed terminal is not the kid
    ({"currency": "XXZ"}, "currency_unknown"),
    ({"auth_mode": 7}, "field_invalid"),
    ({"program": 5}, "field_invalid"),
    ({"extra": 1}, "field_invalid"),                    # an unknown key
    ({"card": None}, "field_missing"),
])
def test_a_signed_record_that_breaks_a_rule_is_placed_as_refused(
    change: dict[str, Any], reason: str
) -> None:
    fields = _fields(**{k: v for k, v in change.items() if k != "extra"})
    item = _raw({k: v for k, v in fields.items() if v is not None})
    if "extra" in change:
        item[99] = 1
    verified = _verifier().transaction(TOPIC, _signed_map(item), NOW_S)
    assert (verified.refusal, verified.seq, verified.fields["prev"]) == (reason, 4, bytes(32))
    assert verified.merchant == "M1"  # answered where the terminal listens
    assert verified.fields.get("auth_id") in (None, "a1-7")


def test_a_terminal_registered_to_another_merchant_is_placed_as_refused() -> None:
    topic = topics.up("M1", "T2", topics.LEAF_TXN)
    record = txn.seal(bytes(32), _fields(terminal="T2"))
    verified = _verifier().transaction(topic, record, NOW_S)
    assert verified.refusal == "merchant_mismatch"


@pytest.mark.parametrize("item, reason, seq", [
    ({0: 1, 1: 1, 2: "T1", 4: bytes(32)}, "field_missing", None),
    ({0: 1, 1: 1, 2: "T1", 3: -1, 4: bytes(32)}, "field_invalid", None),
    ({0: 1, 1: 1, 2: "T1", 3: 5}, "field_missing", 5),
    ({0: 1, 1: 1, 2: "T1", 3: 5, 4: b"short"}, "field_invalid", 5),
    ({0: 2, 1: 1, 2: "T1", 3: 5, 4: bytes(32)}, "message_type_invalid", None),
    ({0: 1, 1: 2, 2: "T1", 3: 5, 4: bytes(32)}, "version_unsupported", None),
    ([1, 2, 3], "message_malformed", None),
])
def test_a_signed_message_with_no_usable_seq_gets_a_sealed_notice(
    item: Any, reason: str, seq: int | None
) -> None:
    with pytest.raises(SignedRefusal) as caught:
        _verifier().transaction(TOPIC, _signed_map(item), NOW_S)
    assert (caught.value.reason, caught.value.seq) == (reason, seq)


def test_a_lost_notice_is_placed_as_refused_record_lost_under_the_digest_it_names() -> None:
    lost_digest = bytes(range(100, 132))
    notice = txn.seal_lost(KEY, "T1", 4, lost_digest)
    verified = _verifier().transaction(TOPIC, notice, NOW_S)
    assert (verified.seq, verified.refusal, verified.lost) == (4, "record_lost", True)
    assert verified.digest == lost_digest and verified.record == notice
    assert verified.merchant == "M1" and "prev" not in verified.fields


@pytest.mark.parametrize("item, reason, seq", [
    ({0: 8, 1: 1, 2: "T1", 29: bytes(32)}, "field_missing", None),
    ({0: 8, 1: 1, 2: "T1", 3: 5}, "field_missing", 5),
    ({0: 8, 1: 1, 2: "T1", 3: 5, 29: b"short"}, "field_invalid", 5),
    ({0: 8, 1: 1, 2: "T2", 3: 5, 29: bytes(32)}, "topic_mismatch", 5),
])
def test_a_lost_notice_that_names_no_usable_seq_or_digest_gets_a_sealed_notice(
    item: Any, reason: str, seq: int | None
) -> None:
    with pytest.raises(SignedRefusal) as caught:
        _verifier().transaction(TOPIC, _signed_map(item), NOW_S)
    assert (caught.value.reason, caught.value.seq) == (reason, seq)


def test_failures_before_the_mac_are_plain_protocol_errors() -> None:
    good = txn.seal(KEY, _fields())
    cases = [
        (topics.up("M1", "T1", topics.LEAF_AUTH), good, "topic_invalid"),
        (topics.up("M1", "T9", topics.LEAF_TXN), good, "topic_mismatch"),
        (TOPIC, txn.seal(bytes(32), _fields()), "mac_invalid"),
        (TOPIC, b"\xff", "message_malformed"),
        (TOPIC, bytes(messages.MESSAGE_BYTES_MAX + 1), "message_too_large"),
        (topics.up("M1", "T9", topics.LEAF_TXN),
         txn.seal(KEY, _fields(terminal="T9")), "terminal_unknown"),
    ]
    for topic, payload, reason in cases:
        with pytest.raises(ProtocolError) as caught:
            _verifier().transaction(topic, payload, NOW_S)
        assert not isinstance(caught.value, SignedRefusal)
        assert caught.value.reason == reason


def test_a_signed_request_that_breaks_a_rule_is_declined_with_its_request_id() -> None:
    topic = topics.up("M1", "T1", topics.LEAF_AUTH)
    request = {0: 2, 1: 1, 2: "T1", 20: 77, 5: NOW_S, 6: "M1", 7: "04a1", 8: 3, 9: "EUR",
               10: -5}
    with pytest.raises(DeclinedRequest) as caught:
        _verifier().auth_request(topic, _signed_map(request))
    assert (caught.value.reason, caught.value.request) == ("field_invalid", 77)
    del request[20]
    with pytest.raises(SignedRefusal):
        _verifier().auth_request(topic, _signed_map(request))


def test_a_request_from_a_drifting_clock_is_not_refused() -> None:
    topic = topics.up("M1", "T1", topics.LEAF_AUTH)
    fields = {"terminal": "T1", "request": 1, "time": NOW_S + 10 * CLOCK_SKEW_MAX_S,
              "merchant": "M1", "card": "04a1", "kind": txn.KIND_INQUIRY, "currency": "EUR",
              "amount_minor": 0}
    data = sealed.seal(KEY, messages.TYPE_AUTH_REQUEST, fields)
    assert _verifier().auth_request(topic, data)["request"] == 1


def test_a_status_names_only_a_known_state() -> None:
    topic = topics.up("M1", "T1", topics.LEAF_STATUS)
    for state in ("online", "offline", "heartbeat"):
        data = sealed.seal(KEY, messages.TYPE_STATUS, {"terminal": "T1", "state": state,
                                                       "time": NOW_S})
        assert _verifier().status(topic, data)["state"] == state
    odd = sealed.seal(KEY, messages.TYPE_STATUS, {"terminal": "T1", "state": "x" * 40,
                                                  "time": NOW_S})
    with pytest.raises(ProtocolError) as caught:
        _verifier().status(topic, odd)
    assert caught.value.reason == "field_invalid"


def test_a_record_stamped_with_a_time_the_gateway_gave_is_not_future_after_its_clock_steps_back(
        ) -> None:
    """The gateway answered at NOW_S + 1000, then its clock stepped back to NOW_S: its
    terminal's record of that answer's time is not in the future; beyond it still is."""
    told = Told(0, NOW_S + 1000)
    given = _verifier().transaction(TOPIC, txn.seal(KEY, _fields(time=NOW_S + 1000)), NOW_S,
                                    told)
    assert given.refusal is None
    beyond = _verifier().transaction(
        TOPIC, txn.seal(KEY, _fields(time=NOW_S + 1000 + CLOCK_SKEW_MAX_S + 1)), NOW_S, told)
    assert beyond.refusal == "time_invalid"
