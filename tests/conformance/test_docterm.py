"""The docs-only terminal does what docs/protocol.md says, without a broker.

Deterministic CBOR and its refusals (section 1), the COSE_Mac0 envelope's reasons in the
order of section 2, the ack steps of 5.1 on the journal, the clock rule of 5.5, configuration
versions of 5.7 and the programs it carries (docs/programs.md 1), the offline limits of 5.4
and the offline quote (docs/programs.md 2.1), the card's AES-CMAC against RFC 4493, and the
terminal's handling of downlinks fed to it directly.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import cbor2
import pytest
from cryptography.hazmat.primitives import hashes, hmac

from tests.conformance.docterm import card, dcbor, journal, mac0, programs, schema, settings
from tests.conformance.docterm.errors import Refused
from tests.conformance.docterm.link import down_topic
from tests.conformance.docterm.terminal import DocTerminal, Rtc

ROOT = Path(__file__).resolve().parents[2]
KEY = bytes(range(32))
KEYS = {b"T1": KEY}


# -- section 1: deterministic CBOR ------------------------------------------------------------
def test_cbor2_canonical_order_equals_bytewise_order_for_the_keys_tilltap_uses() -> None:
    item = {key: key for key in range(64)} | {"txn_minor_max": 1, "tier": 2, "a": 3}
    data = dcbor.encode(item)
    dcbor.scan(data)  # bytewise order of the encoded keys
    assert data == cbor2.dumps(item, canonical=True)


def test_keys_whose_cbor2_order_is_not_bytewise_are_refused_by_the_encoder() -> None:
    # RFC 8949 4.2.1: 24 (0x1818) sorts before -1 (0x20); cbor2 puts the shorter -1 first.
    with pytest.raises(ValueError, match="non-deterministic"):
        dcbor.encode({-1: None, 24: None})
    assert dcbor.decode(bytes.fromhex("a21818f620f6")) == {24: None, -1: None}


@pytest.mark.parametrize(("name", "data"), [
    ("non-shortest integer", "1801"),
    ("non-shortest length", "5801ff"),
    ("indefinite array", "9f01ff"),
    ("unsorted keys", "a2020001 00"),
    ("duplicate keys", "a201000100"),
    ("trailing bytes", "0101"),
    ("half float", "f93c00"),
    ("double", "fb3ff0000000000000"),
    ("undefined", "f7"),
    ("simple value 0", "e0"),
    ("tag 1 (a date)", "c11a00000001"),
    ("tag 2 (a bignum)", "c249010000000000000000"),
    ("truncated", "a20100"),
    ("text that is not UTF-8", "62c328"),
    ("an item at depth 9 in arrays", "81" * 9 + "00"),
    ("an item at depth 9 in map values", "a100" * 9 + "00"),
    ("a map key at depth 9", "81" * 8 + "a10000"),
    ("an item at depth 9 under tags", "d1" * 9 + "00"),
    ("array of 257", "990101" + "00" * 257),
])
def test_the_decoder_refuses_what_section_1_excludes(name: str, data: str) -> None:
    with pytest.raises(Refused) as refused:
        dcbor.decode(bytes.fromhex(data.replace(" ", "")))
    assert refused.value.reason == "message_malformed"


def test_the_decoder_takes_depth_8_and_256_entries() -> None:
    assert dcbor.decode(bytes.fromhex("81" * 8 + "00")) == [[[[[[[[0]]]]]]]]
    assert dcbor.decode(bytes.fromhex("81" * 7 + "a10000")) == [[[[[[[{0: 0}]]]]]]]
    nested = dcbor.decode(bytes.fromhex("d1" * 8 + "00"))
    for _ in range(8):
        assert isinstance(nested, cbor2.CBORTag) and nested.tag == 17
        nested = nested.value
    assert nested == 0
    assert dcbor.decode(bytes.fromhex("990100" + "00" * 256)) == [0] * 256


@pytest.mark.parametrize(("name", "item"), [
    ("a text key", {0: 6, 1: 1, 2: "T1", 22: "x", "a": 1}),
    ("a negative key", {0: 6, 1: 1, 2: "T1", 22: "x", -1: 1}),
    ("a tag 17 as a value", {0: 6, 1: 1, 2: "T1", 22: cbor2.CBORTag(17, "x")}),
])
def test_a_message_map_with_a_key_or_value_outside_its_table_is_field_invalid(
        name: str, item: dict[Any, Any]) -> None:
    data = cbor2.dumps(item, canonical=True)
    with pytest.raises(Refused) as refused:
        schema.decode_bare(data, schema.NOTICE)
    assert refused.value.reason == "field_invalid"


@pytest.mark.parametrize(("name", "data", "reason"), [
    ("an array key", "a5 0006 0101 026254 31 166178 8101 00", "field_invalid"),
    ("true beside 1", "a5 0006 0101 026254 31 166178 f5 05", "field_invalid"),
    ("true where key 1 belongs", "a4 0006 026254 31 166178 f5 01", "field_missing"),
])
def test_any_item_may_be_a_map_key_and_the_schema_refuses_one_that_is_not_a_uint(
        name: str, data: str, reason: str) -> None:
    """Section 1: the decoder takes it; `true` neither passes for key 1 nor merges with it,
    as it would in a Python dict."""
    item = dcbor.decode(bytes.fromhex(data.replace(" ", "")))
    with pytest.raises(Refused) as refused:
        schema.unpack(item, schema.NOTICE)
    assert refused.value.reason == reason


@pytest.mark.parametrize("value", [1.5, float("nan"), {(1, 2): 3}, {True: 1}, 2**64, object()])
def test_the_encoder_refuses_values_outside_the_subset(value: Any) -> None:
    with pytest.raises(ValueError):
        dcbor.encode(value)


# -- section 2 and rows 1-3 of 5.1: the envelope ------------------------------------------------
PAYLOAD = schema.encode_bare(schema.NOTICE, {"terminal": "T1", "reason": "mac_invalid"})


def _envelope(protected: Any, unprotected: Any, tag: Any, payload: Any = PAYLOAD,
              tag_number: int = 17) -> bytes:
    return cbor2.dumps(cbor2.CBORTag(tag_number, [protected, unprotected, payload, tag]),
                       canonical=True)


BAD_ALG = bytes.fromhex("a10106")  # {1: 6}: HMAC 384/384, not ours
GOOD_TAG = mac0.parse(mac0.seal(KEY, PAYLOAD, b"T1")).tag
BAD_TAG = bytes(32)
KID_33 = b"T" * 33


# Each envelope breaks the rule its reason names, and every later rule of section 2 too
# (unknown kid, other alg, bad tag), so only the order of the checks picks the reason.
@pytest.mark.parametrize(("name", "data", "reason"), [
    ("beyond 1024 bytes", bytes(1025), "message_too_large"),
    ("no tag 17", cbor2.dumps([BAD_ALG, {}, PAYLOAD, BAD_TAG]), "message_malformed"),
    ("tag 16 (COSE_Encrypt0) is not in the subset",
     _envelope(BAD_ALG, {}, BAD_TAG, tag_number=16), "message_malformed"),
    ("an array of 3", cbor2.dumps(cbor2.CBORTag(17, [BAD_ALG, {}, PAYLOAD])),
     "message_malformed"),
    ("protected as a map", _envelope({1: 6}, {}, BAD_TAG), "message_malformed"),
    ("unprotected as an array", _envelope(BAD_ALG, [4], BAD_TAG), "message_malformed"),
    ("payload as text", _envelope(BAD_ALG, {}, BAD_TAG, payload="x"), "message_malformed"),
    ("a 16-byte tag", _envelope(BAD_ALG, {}, bytes(16)), "message_malformed"),
    ("an unprotected key other than 4", _envelope(BAD_ALG, {5: b"x"}, BAD_TAG),
     "message_malformed"),
    ("a kid of 33 bytes", _envelope(BAD_ALG, {4: KID_33}, BAD_TAG), "message_malformed"),
    ("a kid as text", _envelope(BAD_ALG, {4: "T1"}, BAD_TAG), "message_malformed"),
    ("no kid", _envelope(BAD_ALG, {}, BAD_TAG), "terminal_unknown"),
    ("a kid with no key", _envelope(BAD_ALG, {4: b"T9"}, BAD_TAG), "terminal_unknown"),
    ("another alg", _envelope(BAD_ALG, {4: b"T1"}, BAD_TAG), "alg_unsupported"),
    ("an empty protected map", _envelope(bytes.fromhex("a0"), {4: b"T1"}, BAD_TAG),
     "alg_unsupported"),
    ("{1: 5} spelled otherwise", _envelope(bytes.fromhex("a1011805"), {4: b"T1"}, GOOD_TAG),
     "alg_unsupported"),
    ("a tag that does not verify", _envelope(mac0.PROTECTED, {4: b"T1"}, BAD_TAG),
     "mac_invalid"),
])
def test_an_envelope_is_refused_with_the_first_reason_in_section_2s_order(
        name: str, data: bytes, reason: str) -> None:
    with pytest.raises(Refused) as refused:
        mac0.verify(mac0.parse(data), KEYS)
    assert refused.value.reason == reason


def test_protected_bytes_other_than_a10105_are_alg_unsupported_even_with_a_good_tag() -> None:
    """Section 2: the protected bytes are compared, not what they decode to."""
    signer = hmac.HMAC(KEY, hashes.SHA256())
    signer.update(dcbor.encode(["MAC0", BAD_ALG, b"", PAYLOAD]))
    tag = signer.finalize()
    with pytest.raises(Refused) as refused:
        mac0.verify(mac0.parse(_envelope(BAD_ALG, {4: b"T1"}, tag)), KEYS)
    assert refused.value.reason == "alg_unsupported"
    assert mac0.verify(mac0.parse(_envelope(mac0.PROTECTED, {4: b"T1"}, GOOD_TAG)),
                       KEYS) == PAYLOAD


def test_a_sealed_message_whose_payload_changed_does_not_verify() -> None:
    data = mac0.seal(KEY, PAYLOAD, b"T1")
    tampered = data.replace(b"mac_invalid", b"mac_invalie")
    with pytest.raises(Refused) as refused:
        mac0.verify(mac0.parse(tampered), KEYS)
    assert refused.value.reason == "mac_invalid"


@pytest.mark.parametrize(("item", "reason"), [
    ({0: 6, 1: 1, 2: "T1"}, "field_missing"),
    ({0: 6, 1: 1, 2: "T1", 22: "x", 99: 1}, "field_invalid"),
    ({0: 6, 1: 1, 2: "T1", 22: None}, "field_invalid"),
    ({0: 6, 1: 2, 2: "T1", 22: "x"}, "version_unsupported"),
    ({0: 4, 1: 1, 2: "T1", 22: "x"}, "message_type_invalid"),
    ({0: 6, 1: 1, 2: "T 1", 22: "x"}, "field_invalid"),
    ([6, 1], "message_malformed"),
])
def test_a_message_that_breaks_its_table_is_refused_with_the_reason_of_section_3(
        item: Any, reason: str) -> None:
    with pytest.raises(Refused) as refused:
        schema.unpack(item, schema.NOTICE)
    assert refused.value.reason == reason


# -- section 5.1: the ack steps on the journal ---------------------------------------------------
def _record(journal_: journal.Journal, seq: int) -> journal.Entry:
    fields = {"terminal": "T1", "seq": seq, "prev": journal_.last_digest, "time": 1,
              "merchant": "M1", "card": "04a1a2a3a4a5a6", "kind": 3, "currency": "EUR",
              "amount_minor": 100 + seq, "card_value_minor": 0, "bonus_minor": 0, "points": 0,
              "auth_mode": 1}
    return journal_.append(schema.seal(KEY, schema.TXN, fields), fields)


def _ack(acked_through: int, rejected: list[list[Any]] | None = None,
         replayed: list[list[Any]] | None = None) -> dict[str, Any]:
    ack: dict[str, Any] = {"terminal": "T1", "time": 1, "acked_through": acked_through,
                           "rejected": rejected or []}
    if replayed is not None:
        ack["replayed"] = replayed
    return ack


def test_records_chain_from_zero_and_from_the_digest_of_the_last_sealed_record() -> None:
    book = journal.Journal()
    first = _record(book, 1)
    assert first.fields["prev"] == bytes(32)
    second = _record(book, 2)
    assert second.fields["prev"] == journal.digest(first.record)


def test_an_ack_notes_refused_records_in_the_refused_log_and_drops_what_it_covers() -> None:
    book = journal.Journal()
    for seq in (1, 2, 3):
        _record(book, seq)
    assert book.apply_ack(_ack(2, rejected=[[2, "rule_mismatch"]]))
    assert list(book.entries) == [3]
    assert book.outcomes == {1: "accepted", 2: "rule_mismatch"}
    assert [(r.seq, r.reason, r.amount_minor) for r in book.refused_log] == [
        (2, "rule_mismatch", 102)]
    assert book.last_seq == 3  # the chain does not move back


def test_a_refusal_named_again_is_neither_noted_twice_nor_fresh() -> None:
    book = journal.Journal()
    _record(book, 1)
    assert book.apply_ack(_ack(1, rejected=[[1, "card_unknown"]]))
    assert not book.apply_ack(_ack(1, rejected=[[1, "card_unknown"]]))  # a resend's answer
    assert book.refused_count == 1 and book.outcomes == {1: "card_unknown"}


def test_an_ack_that_answers_nothing_held_is_not_fresh() -> None:
    book = journal.Journal()
    _record(book, 1)
    assert book.apply_ack(_ack(1))
    assert not book.apply_ack(_ack(1))  # a resend of the same ack: nothing dropped
    assert not book.apply_ack(_ack(0))  # a gap: acked_through stays at the head


def test_a_replay_is_noted_only_when_the_terminal_holds_that_seq_with_that_digest() -> None:
    book = journal.Journal()
    entry = _record(book, 1)
    assert not book.apply_ack(_ack(0, replayed=[[1, bytes(32)]]))  # another record's digest
    assert book.refused_count == 0
    # Row 13: held ahead of a gap, so not covered: step 3 notes it, fresh; step 4 drops
    # it only once an ack covers its seq.
    assert book.apply_ack(_ack(0, replayed=[[1, entry.digest]]))
    assert book.outcomes == {1: "seq_replayed"} and 1 in book.entries
    assert book.apply_ack(_ack(1))
    assert book.outcomes == {1: "seq_replayed"} and not book.entries
    assert book.refused_count == 1


def test_the_refused_log_keeps_the_last_eight_and_counts_them_all() -> None:
    book = journal.Journal()
    for seq in range(1, 11):
        _record(book, seq)
    book.apply_ack(_ack(10, rejected=[[seq, "time_invalid"] for seq in range(1, 11)]))
    assert book.refused_count == 10
    assert [r.seq for r in book.refused_log] == list(range(3, 11))


def test_fifteen_refusals_told_in_two_acks_as_section_5_1_splits_them_are_all_noted() -> None:
    """More refusals than one ack carries: the first ack acks only through the seq before
    the second ack's first entry, so no record is dropped before the ack that names it."""
    book = journal.Journal()
    for seq in range(1, 16):
        _record(book, seq)
    first = _ack(12, rejected=[[seq, "amount_invalid"] for seq in range(1, 13)])
    second = _ack(15, rejected=[[seq, "amount_invalid"] for seq in range(13, 16)])
    assert book.apply_ack(first) and sorted(book.entries) == [13, 14, 15]
    assert book.apply_ack(second) and not book.entries
    assert book.refused_count == 15
    assert set(book.outcomes.values()) == {"amount_invalid"}
    assert [r.seq for r in book.refused_log] == list(range(8, 16))


def test_records_go_out_at_most_32_at_a_time_from_the_oldest_at_once_on_connect() -> None:
    book = journal.Journal()
    for seq in range(1, 41):
        _record(book, seq)  # sealed while disconnected: never sent
    assert [e.seq for e in book.due(100.0)] == list(range(1, 33))  # the (re)connect
    assert book.due(102.9) == []
    assert [e.seq for e in book.due(103.0)] == list(range(1, 33))  # no ack for 3 s
    book.apply_ack(_ack(32))
    assert [e.seq for e in book.due(103.1)] == list(range(33, 41))  # never sent: at once
    book.forget_sends()  # a reconnect: the unanswered go out again at once
    assert [e.seq for e in book.due(103.2)] == list(range(33, 41))


# -- section 5.7 and docs/programs.md section 1: configuration and its programs ---------------
# Programs in the shape validation gives them (docs/protocol.md 5.7); GIFT is section 8's.
GIFT: dict[str, Any] = {
    "id": "gift", "gift": {"cash_out": False, "expiry_days": 365}, "name": "Gift card",
    "tiers": None, "points": None, "prepaid": None, "version": 1, "currency": "EUR",
    "discount": None, "volume": None, "promotions": None, "rewards": None,
    "refund_window_days": 90}
VIP: dict[str, Any] = dict(
    GIFT, id="vip", name="VIP", gift=None,
    points={"earn_bp": 100, "earn_rounding": "down", "points_per_unit": 100,
            "expiry_days": None},
    tiers={"window_days": 365, "downgrade": "days_below", "downgrade_days": 30,
           "discount_rounding": "down", "levels": [
               {"name": "member", "spend_minor": 0, "earn_multiplier_bp": 10000,
                "discount_pct": 0},
               {"name": "silver", "spend_minor": 20000, "earn_multiplier_bp": 15000,
                "discount_pct": 5}]})
SAVER: dict[str, Any] = dict(
    GIFT, id="saver", name="Saver", gift=None, prepaid={
        "bonus_bp": 0, "bonus_rounding": "down", "cash_out": False},
    discount={"threshold_minor": 10000, "qualify_days": 30, "discount_pct": 10,
              "duration_days": 30, "discount_rounding": "half_up"})
CLUB: dict[str, Any] = dict(
    VIP, id="club", tiers=None,
    points={"earn_bp": 200, "earn_rounding": "half_even", "points_per_unit": 100,
            "expiry_days": 365})
EXPONENTS = {"EUR": 2}


def test_a_configuration_is_taken_only_at_a_higher_version() -> None:
    held = settings.Settings(exponents=EXPONENTS)
    config = {"terminal": "T1", "config_version": 3, "limits": {"txn_minor_max": 5},
              "programs": {"gift": GIFT, "vip": VIP, "saver": SAVER, "club": CLUB}}
    assert held.offer(config, b"v3") == settings.TAKEN
    assert held.limits["txn_minor_max"] == 5 and held.limits["offline_s_max"] == 0
    assert held.offer(config, b"v3") == settings.SAME
    with pytest.raises(Refused) as refused:
        held.offer(dict(config, config_version=2), b"v2")
    assert refused.value.reason == "config_rollback"
    assert held.version == 3 and held.sealed == b"v3"


def _changed(program: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of `program` with the dotted `path` set to `value` (DELETE: removed)."""
    copy = json.loads(json.dumps(program))
    *parents, last = path.split(".")
    target = copy
    for key in parents:
        target = target[int(key)] if isinstance(target, list) else target[key]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value
    return dict(copy)


DELETE = object()


INVALID_CONFIGURATIONS: list[tuple[dict[str, Any], dict[str, Any], str]] = [
    ({"txn_minor_max": -1}, {}, "config_invalid"),
    ({"txn_minor_max": True}, {}, "config_invalid"),
    ({"overdraft": 1}, {}, "config_invalid"),
    ({}, {"bad id!": dict(GIFT, id="bad id!")}, "program_invalid"),
    ({}, {"gift": _changed(GIFT, "name", DELETE)}, "program_invalid"),
    ({}, {"gift": _changed(GIFT, "colour", "red")}, "program_invalid"),
    ({}, {"gift": _changed(GIFT, "id", "other")}, "program_invalid"),
    ({}, {"gift": _changed(GIFT, "version", 0)}, "program_invalid"),
    ({}, {"gift": _changed(GIFT, "currency", "eur")}, "program_invalid"),
    ({}, {"gift": _changed(GIFT, "name", "")}, "program_invalid"),
    ({}, {"gift": _changed(GIFT, "refund_window_days", 732)}, "program_invalid"),
    ({}, {"gift": _changed(GIFT, "gift", None)}, "program_invalid"),  # no section
    ({}, {"gift": _changed(GIFT, "gift", [])}, "program_invalid"),
    ({}, {"gift": _changed(GIFT, "gift.colour", "red")}, "program_invalid"),
    ({}, {"gift": _changed(GIFT, "gift.cash_out", 1)}, "program_invalid"),
    ({}, {"gift": _changed(GIFT, "prepaid", {})}, "program_invalid"),  # prepaid and gift
    ({}, {"vip": _changed(VIP, "points.earn_bp", 10001)}, "program_invalid"),
    ({}, {"vip": _changed(VIP, "points.earn_rounding", "nearest")}, "program_invalid"),
    ({}, {"vip": _changed(VIP, "points.points_per_unit", 3)}, "program_invalid"),
    ({}, {"vip": _changed(VIP, "points.expiry_days", 3661)}, "program_invalid"),
    ({}, {"vip": _changed(VIP, "tiers.downgrade", "never")}, "program_invalid"),
    ({}, {"vip": _changed(VIP, "tiers.window_days", 732)}, "program_invalid"),
    ({}, {"vip": _changed(VIP, "tiers.levels.0.spend_minor", 1)}, "program_invalid"),
    ({}, {"vip": _changed(VIP, "tiers.levels.1.spend_minor", 0)}, "program_invalid"),
    ({}, {"vip": _changed(VIP, "tiers.levels.1.name", "member")}, "program_invalid"),
    ({}, {"vip": _changed(VIP, "tiers.levels.1.discount_pct", 101)}, "program_invalid"),
    ({}, {"vip": _changed(VIP, "tiers.levels", [])}, "program_invalid"),
    ({}, {"vip": _changed(VIP, "points", None)}, "program_invalid"),  # a multiplier, no points
    ({}, {"vip": _changed(VIP, "tiers.basis", "rank")}, "program_invalid"),
    ({}, {"vip": _changed(VIP, "tiers.basis", "visits")}, "program_invalid"),  # spend_minor
    ({}, {"vip": _changed(VIP, "tiers.basis", "membership_days")}, "program_invalid"),
    ({}, {"saver": _changed(SAVER, "discount.discount_pct", 0)}, "program_invalid"),
    ({}, {"saver": _changed(SAVER, "discount.threshold_minor", DELETE)}, "program_invalid"),
    ({}, {"saver": _changed(SAVER, "prepaid.bonus_bp", -1)}, "program_invalid"),
]


@pytest.mark.parametrize(("limits", "programs", "reason"), INVALID_CONFIGURATIONS)
def test_an_invalid_configuration_is_refused_and_the_old_one_kept(
        limits: dict[str, Any], programs: dict[str, Any], reason: str) -> None:
    held = settings.Settings(exponents=EXPONENTS)
    with pytest.raises(Refused) as refused:
        held.offer({"config_version": 1, "limits": limits, "programs": programs}, b"")
    assert refused.value.reason == reason and held.version == 0


def test_optional_keys_of_a_section_may_be_absent_or_null() -> None:
    """docs/programs.md's defaults apply to a key left out (the docs do not say whether a
    validated section spells every optional key)."""
    gift = _changed(_changed(GIFT, "gift.expiry_days", DELETE), "gift.cash_out", None)
    assert programs.check_programs({"gift": gift}, EXPONENTS) == {"gift": gift}


# -- docs/programs.md section 2.1: the offline quote ---------------------------------------------
TIE: dict[str, Any] = _changed(_changed(_changed(
    VIP, "tiers.discount_rounding", "up"), "tiers.levels.1.discount_pct", 10),
    "discount", SAVER["discount"] | {"discount_rounding": "down"})


@pytest.mark.parametrize(("name", "program", "tier", "pct", "same_day", "amount", "card",
                          "expected"), [
    # silver: 5 % off, rounded down; points on what is paid, x1.5, rounded down:
    # 1900 * 100 bp * 15000 bp / (10^8 * 1 minor per point) = 28.5 -> 28
    ("tier discount and points", VIP, "silver", 5, True, 2000, True, (100, 1900, 28)),
    ("paid in cash: no card part", VIP, "silver", 5, True, 2000, False, (100, 0, 28)),
    ("the tier's discount on a later day too", VIP, "silver", 5, False, 2000, True,
     (100, 1900, 28)),
    # tracked 10 % of 1005 = 100.5, half_up -> 101
    ("tracked discount on the answer's day", SAVER, None, 10, True, 1005, True,
     (101, 904, 0)),
    ("no tracked discount on a later day", SAVER, None, 10, False, 1005, True, (0, 1005, 0)),
    # equal percents: the tier's rounding (up), not the tracked one's (down); points
    # 904 * 100 * 15000 / 10^8 = 13.56 -> 13
    ("a tie takes the tier's rounding", TIE, "silver", 10, True, 1005, True, (101, 904, 13)),
    # 2 % of 125 = 2.5 points, half_even -> 2; of 375 = 7.5 -> 8
    ("half_even points, down to even", CLUB, None, 0, True, 125, False, (0, 0, 2)),
    ("half_even points, up to even", CLUB, None, 0, True, 375, False, (0, 0, 8)),
])
def test_the_offline_quote_follows_docs_programs_2_1(
        name: str, program: dict[str, Any], tier: str | None, pct: int, same_day: bool,
        amount: int, card: bool, expected: tuple[int, int, int]) -> None:
    quoted = programs.quote(program, tier, pct, same_day, amount, card, 2)
    assert (quoted.discount_minor, quoted.card_minor, quoted.points_earned) == expected


@pytest.mark.parametrize(("program", "tier", "pct"), [
    (VIP, "platinum", 0),  # not a level of the program
    (VIP, None, 0),  # a program with tiers always has one
    (CLUB, "silver", 0),  # a tier in a program without tiers
    (VIP, "silver", 6),  # above the tier's, and the program tracks no discount
])
def test_a_snapshot_the_program_cannot_have_given_is_field_invalid(
        program: dict[str, Any], tier: str | None, pct: int) -> None:
    with pytest.raises(Refused) as refused:
        programs.quote(program, tier, pct, True, 1000, False, 2)
    assert refused.value.reason == "field_invalid"


# -- section 5.4: the offline limits -------------------------------------------------------------
LIMITS = {"txn_minor_max": 2000, "card_offline_minor_max": 3000,
          "terminal_offline_minor_max": 4000, "offline_txn_max": 3, "offline_s_max": 600}


@pytest.mark.parametrize(("pending", "card_minor", "since", "reason"), [
    ([], 2000, 10, None),
    ([], 0, 10, None),  # paid in cash: no card part counts against the limits
    ([("A", 2500), ("B", 1400)], 0, 10, None),
    ([], 2000, None, "offline_time_limit"),  # not online since start
    ([], 100, 601, "offline_time_limit"),
    ([], 2001, 10, "offline_amount_limit"),
    ([("B", 1), ("C", 1), ("D", 1)], 1, 10, "offline_count_limit"),
    ([("A", 2000)], 1001, 10, "offline_card_limit"),
    ([("B", 2000), ("C", 1500)], 501, 10, "offline_terminal_limit"),
    # Every limit broken at once, then one fewer each time: 5.4's order picks the reason.
    ([("A", 2900), ("B", 1000), ("C", 1)], 2001, 601, "offline_time_limit"),
    ([("A", 2900), ("B", 1000), ("C", 1)], 2001, 10, "offline_amount_limit"),
    ([("A", 2900), ("B", 1000), ("C", 1)], 200, 10, "offline_count_limit"),
    ([("A", 2900), ("B", 1000)], 200, 10, "offline_card_limit"),
])
def test_offline_limits_decline_with_the_first_limit_they_pass_in_section_5_4s_order(
        pending: list[tuple[str, int]], card_minor: int, since: int | None,
        reason: str | None) -> None:
    assert settings.offline_decline(LIMITS, pending, "A", card_minor, since) == reason


# -- the card ------------------------------------------------------------------------------------
def test_aes_cmac_and_its_subkeys_match_rfc_4493() -> None:
    vectors = json.loads((ROOT / "tests" / "vectors" / "rfc.json").read_text())
    cmac = vectors["aes_cmac_rfc4493"]
    key = bytes.fromhex(cmac["subkeys"]["key"])
    assert card.cmac_subkeys(key) == (bytes.fromhex(cmac["subkeys"]["K1"]),
                                      bytes.fromhex(cmac["subkeys"]["K2"]))
    for example in cmac["examples"]:
        assert card.aes_cmac(bytes.fromhex(example["key"]),
                             bytes.fromhex(example["message"])).hex() == example["cmac"]


def test_an10922_equals_a_plain_cmac_only_for_inputs_of_16_to_31_bytes() -> None:
    master = bytes(range(16))
    for length in range(1, 32):
        m = bytes(range(length))
        plain = card.aes_cmac(master, b"\x01" + m)
        assert (card.diversify(master, m) == plain) == (16 <= length <= 31), length


def test_each_tap_gives_a_new_url_with_a_higher_counter_that_verifies() -> None:
    masters = {1: bytes(16), 2: bytes(range(16))}
    tapped = card.Card(bytes.fromhex("04a1a2a3a4a5a6"), masters, b"tilltap")
    urls = [tapped.tap() for _ in range(3)]
    assert len(set(urls)) == 3
    counters = [card.read_sun_url(url, tapped.meta_key, lambda uid: tapped.file_key)[1]
                for url in urls]
    assert counters == [1, 2, 3]
    assert tapped.card_id == "04a1a2a3a4a5a6"


# -- the terminal's downlinks, without a broker --------------------------------------------------
def _offline_terminal(drift_s: float = 0.0) -> DocTerminal:
    return DocTerminal("T1", "M1", KEY, "EUR", "127.0.0.1", 1, Rtc(drift_s))


def _deliver(terminal: DocTerminal, leaf: str, payload: bytes) -> None:
    terminal.link.inbox.put((down_topic("M1", "T1", leaf), payload))
    terminal.service(0)


CONFIG = {"terminal": "T1", "config_version": 4,
          "limits": dict(LIMITS, txn_minor_max=10), "programs": {"gift": GIFT}}


def test_a_configuration_with_a_time_key_is_refused_since_a_configuration_carries_none() -> None:
    terminal = _offline_terminal()
    item = schema.pack(schema.CONFIG, CONFIG) | {5: 1_767_225_600}
    _deliver(terminal, "config", mac0.seal(KEY, dcbor.encode(item), b"T1"))
    assert terminal.counts.config_refused == {"field_invalid": 1}
    assert terminal.settings.version == 0
    _deliver(terminal, "config", schema.seal(KEY, schema.CONFIG, CONFIG))
    assert terminal.settings.version == 4 and terminal.settings.limits["txn_minor_max"] == 10


def test_downlinks_that_do_not_prove_the_key_change_nothing() -> None:
    terminal = _offline_terminal()
    other = bytes(32)
    _deliver(terminal, "config", schema.seal(other, schema.CONFIG, CONFIG))
    _deliver(terminal, "ack", schema.seal(other, schema.ACK, _ack(5) | {"time": 10**9}))
    _deliver(terminal, "notice", schema.seal(other, schema.NOTICE,
                                             {"terminal": "T1", "reason": "field_invalid"}))
    assert terminal.counts.bad_downlinks == 3
    assert terminal.settings.version == 0 and terminal.clock_offset_s == 0
    assert not terminal.counts.sealed_notices
    # An unsigned notice is counted and shown, and changes nothing either.
    _deliver(terminal, "notice", schema.encode_bare(schema.NOTICE,
                                                    {"terminal": "T1", "reason": "mac_invalid"}))
    assert terminal.counts.unsigned_notices == [{"terminal": "T1", "reason": "mac_invalid"}]


def test_the_clock_moves_only_on_a_fresh_answer_that_differs_by_more_than_5_s() -> None:
    terminal = _offline_terminal(drift_s=600)
    entry = _record(terminal.journal, 1)
    gateway_s = int(terminal.rtc.now()) - 600
    # An ack that answers nothing held, or an auth response nobody waits for: not fresh.
    _deliver(terminal, "ack", schema.seal(KEY, schema.ACK, _ack(0) | {"time": gateway_s}))
    _deliver(terminal, "auth", schema.seal(KEY, schema.AUTH_RESPONSE, {
        "terminal": "T1", "time": gateway_s, "request": 1, "approved": False,
        "reason": "card_unknown"}))
    assert terminal.clock_offset_s == 0 and terminal.counts.stale_auth_responses == 1
    # The ack that answers the held record is fresh: the clock takes the gateway's time.
    _deliver(terminal, "ack", schema.seal(KEY, schema.ACK, _ack(1) | {"time": gateway_s}))
    assert entry.outcome == journal.ACCEPTED
    assert abs(terminal.clock_offset_s + 600) <= 1
    # Within 5 s it stays as it is.
    _record(terminal.journal, 2)
    _deliver(terminal, "ack", schema.seal(KEY, schema.ACK, _ack(2) | {"time": gateway_s + 4}))
    assert abs(terminal.clock_offset_s + 600) <= 1
    # The gateway's time is compared with the corrected clock, not the RTC: with the RTC back
    # on time, the gateway's time is 600 s from what the terminal would write: taken again.
    terminal.rtc.drift_s = 0
    _record(terminal.journal, 3)
    _deliver(terminal, "ack", schema.seal(KEY, schema.ACK,
                                          _ack(3) | {"time": int(terminal.rtc.now())}))
    assert abs(terminal.clock_offset_s) <= 1


def _seen_online(terminal: DocTerminal, tapped: card.Card) -> None:
    """The configuration, and a card the terminal knows from an answer (its program)."""
    _deliver(terminal, "config", schema.seal(KEY, schema.CONFIG, CONFIG | {
        "limits": LIMITS}))
    terminal.known_cards[tapped.card_id] = {"program": "gift", "tier": None,
                                            "discount_pct": 0, "day": terminal.day(),
                                            "value_minor": 5_000}


def _fresh_ack(terminal: DocTerminal, gateway_s: int) -> None:
    seq = terminal.journal.last_seq + 1
    _record(terminal.journal, seq)
    _deliver(terminal, "ack", schema.seal(KEY, schema.ACK, _ack(seq) | {"time": gateway_s}))


def test_offline_time_runs_on_the_corrected_clock_from_the_last_fresh_answer() -> None:
    terminal = _offline_terminal()
    tapped = card.Card(bytes.fromhex("04a1a2a3a4a5a6"), {1: bytes(16), 2: bytes(16)}, b"t")
    _seen_online(terminal, tapped)
    declined = terminal.purchase(tapped, 100)  # no fresh answer since start
    assert (declined.approved, declined.reason) == (False, "offline_time_limit")
    _fresh_ack(terminal, int(terminal.rtc.now()))
    sale = terminal.purchase(tapped, 100)
    assert sale.approved and sale.record is not None
    assert (sale.record["auth_mode"], sale.record["card_value_minor"]) == (2, 100)
    assert sale.record.get("auth_id") is None
    terminal.rtc.drift_s = LIMITS["offline_s_max"] + 1  # the clock says 601 s have passed
    late = terminal.purchase(tapped, 100)
    assert (late.approved, late.reason) == (False, "offline_time_limit")


def test_a_clock_correction_does_not_look_like_time_passing_offline() -> None:
    terminal = _offline_terminal(drift_s=3600)  # an RTC an hour fast
    tapped = card.Card(bytes.fromhex("04a1a2a3a4a5a6"), {1: bytes(16), 2: bytes(16)}, b"t")
    _seen_online(terminal, tapped)
    _fresh_ack(terminal, int(time.time()))  # the gateway's time: an hour back
    assert abs(terminal.clock_offset_s + 3600) <= 1
    assert terminal.purchase(tapped, 100).approved
