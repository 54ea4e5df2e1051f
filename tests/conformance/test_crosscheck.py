"""The project and the docs-only terminal say the same thing in the same bytes.

For every message type, the project's code (`protocol.sealed`, `protocol.txn`,
`protocol.messages`) and the docs-only terminal (cbor2 and `cryptography`,
tests/conformance/docterm) build the same message byte for byte, and each side verifies and
decodes what the other built. The card's side too: a SUN URL made from docs/cards.md verifies
with the project's verifier, and the project's emulated card's URLs verify with the docs-only
one. The examples of docs/protocol.md section 8, when it holds some, decode and verify with
the docs-only code.

This file may import the project; only tests/conformance/docterm may not.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import secrets
from pathlib import Path
from typing import Any

import cbor2
import pytest

from firmware.card_sun import read_sun_url as project_read_sun_url
from protocol import cbor, engine_offline, keys, messages, ntag424_sun, sealed, txn
from protocol.errors import ValidationError
from protocol.programs import validate_program, validate_programs
from tests.conformance.docterm import card, dcbor, mac0, programs, schema
from tests.conformance.docterm.errors import Refused
from tests.conformance.test_docterm import INVALID_CONFIGURATIONS
from tools.cards import new_master_keys
from tools.demo import DEMO_PROGRAMS
from tools.personalize import personalize
from tools.programs import load_programs
from tools.simulator.ntag424_card import Ntag424Card

ROOT = Path(__file__).resolve().parents[2]
KEY = bytes(range(32))  # the key of docs/protocol.md section 8
KEYS = {b"T1": KEY}
SUN = ("https://tap.example/c?picc_data=1043C0370EAC3DF12FE0FE13EA84B414"
       "&cmac=A207754B28D0A41B")
DIGEST = bytes(range(100, 132))

TXN_FIELDS: dict[str, Any] = {
    "terminal": "T1", "seq": 42, "prev": DIGEST, "time": 1_767_225_600, "merchant": "M1",
    "card": "04a1a2a3a4a5a6", "kind": schema.KIND_PURCHASE, "currency": "EUR",
    "amount_minor": 12_000, "card_value_minor": 9_000, "bonus_minor": 0, "points": 90,
    "program": "vip", "auth_mode": schema.AUTH_STAND_IN, "auth_id": "a3-17", "sun": SUN,
    "version": 2, "discount_minor": 600, "redeem_points": 100, "redeem_minor": 100,
}
REFUND_FIELDS: dict[str, Any] = dict(
    {k: v for k, v in TXN_FIELDS.items() if k not in ("discount_minor", "redeem_minor")},
    kind=schema.KIND_REFUND, amount_minor=1_000, card_value_minor=800, points=8,
    ref="T1-40", auth_mode=schema.AUTH_ONLINE, redeem_points=None)
ISSUE_FIELDS: dict[str, Any] = {
    "terminal": "T1", "seq": 1, "prev": bytes(32), "time": 1, "merchant": "M1",
    "card": "04a1a2a3a4a5a6", "kind": schema.KIND_ISSUE, "currency": "EUR",
    "amount_minor": 5_000, "card_value_minor": 5_000, "bonus_minor": 0, "points": 0,
    "program": "gift", "auth_mode": schema.AUTH_ONLINE}
CASHOUT_FIELDS: dict[str, Any] = dict(
    ISSUE_FIELDS, kind=schema.KIND_CASHOUT, amount_minor=700, card_value_minor=700,
    program="prepaid", auth_mode=schema.AUTH_OFFLINE)

SEALED_MESSAGES: list[tuple[str, int, dict[str, Any]]] = [
    ("txn purchase, every optional key", schema.TXN, TXN_FIELDS),
    ("txn refund", schema.TXN, REFUND_FIELDS),
    ("txn issue", schema.TXN, ISSUE_FIELDS),
    ("txn cash-out", schema.TXN, CASHOUT_FIELDS),
    ("auth request", schema.AUTH_REQUEST, {
        "terminal": "T1", "seq": 43, "time": 1_767_225_600, "merchant": "M1",
        "card": "04a1a2a3a4a5a6", "kind": schema.KIND_PURCHASE, "currency": "EUR",
        "amount_minor": 12_000, "card_value_minor": 12_000, "sun": SUN,
        "request": 2**31 - 1, "redeem_points": 100}),
    ("auth request, a void", schema.AUTH_REQUEST, {
        "terminal": "T1", "time": 5, "merchant": "M1", "card": "04a1a2a3a4a5a6",
        "kind": schema.KIND_REFUND, "currency": "EUR", "amount_minor": 0, "ref": "T1-40",
        "program": "gift", "request": 0}),
    ("auth response, approved", schema.AUTH_RESPONSE, {
        "terminal": "T1", "time": 1_767_225_601, "request": 7, "approved": True,
        "currency": "EUR", "amount_minor": 12_000, "card_value_minor": 9_000,
        "bonus_minor": 0, "points": 90, "program": "vip", "auth_id": "a3-17", "version": 2,
        "value_minor": -250, "points_balance": 4_000, "auth_mode": schema.AUTH_STAND_IN,
        "discount_minor": 600, "redeem_points": 100, "redeem_minor": 100, "tier": "silver",
        "discount_pct": 5}),
    ("auth response, declined", schema.AUTH_RESPONSE, {
        "terminal": "T1", "time": 9, "request": 8, "approved": False,
        "reason": "insufficient_value"}),
    ("ack", schema.ACK, {
        "terminal": "T1", "time": 1_767_225_602, "acked_through": 2**32,
        "rejected": [[3, "chain_broken"], [2**32, "time_invalid"]],
        "replayed": [[1, DIGEST], [2, bytes(32)]]}),
    ("ack, nothing refused", schema.ACK, {
        "terminal": "T1", "time": 0, "acked_through": 0, "rejected": []}),
    ("status", schema.STATUS, {
        "terminal": "T1", "time": 1_767_225_603, "state": "heartbeat", "journal_depth": 3,
        "firmware": "0.1.0", "heap_free": 81_920, "refused": 2}),
    ("status, last will", schema.STATUS, {"terminal": "T1", "time": 1, "state": "offline"}),
    ("notice, sealed", schema.NOTICE, {"terminal": "T1", "seq": 12,
                                        "reason": "message_malformed"}),
    ("lost", schema.LOST, {"terminal": "T1", "seq": 2**32, "digest": DIGEST}),
    ("config", schema.CONFIG, {
        "terminal": "T1", "config_version": 7,
        "limits": {"txn_minor_max": 2000, "card_offline_minor_max": 3000,
                   "terminal_offline_minor_max": 5000, "offline_s_max": 600,
                   "offline_txn_max": 5},
        "programs": validate_programs({"programs": DEMO_PROGRAMS}),
        "hotlist": ["04a1a2a3a4a5a6", "04b0b1b2b3b4b5"]}),
]


def _project_seal(message_type: int, fields: dict[str, Any]) -> bytes:
    if message_type == schema.TXN:
        return bytes(txn.seal(KEY, fields))
    return bytes(sealed.seal(KEY, message_type, fields))


def _without_none(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v is not None}


@pytest.mark.parametrize(("name", "message_type", "fields"), SEALED_MESSAGES,
                         ids=[m[0] for m in SEALED_MESSAGES])
def test_both_sides_seal_every_message_type_to_the_same_bytes(
        name: str, message_type: int, fields: dict[str, Any]) -> None:
    assert schema.seal(KEY, message_type, fields) == _project_seal(message_type, fields)


@pytest.mark.parametrize(("name", "message_type", "fields"), SEALED_MESSAGES,
                         ids=[m[0] for m in SEALED_MESSAGES])
def test_each_side_verifies_and_decodes_what_the_other_sealed(
        name: str, message_type: int, fields: dict[str, Any]) -> None:
    expected = _without_none(fields)
    ours = schema.seal(KEY, message_type, fields)
    theirs = _project_seal(message_type, fields)
    opened = sealed.open_message(ours, message_type, KEY)
    if message_type == schema.TXN:
        opened = txn.open_record(ours, KEY)
    assert opened == expected
    assert schema.open_sealed(theirs, message_type, KEYS) == expected


@pytest.mark.parametrize(("name", "message_type", "fields"), SEALED_MESSAGES,
                         ids=[m[0] for m in SEALED_MESSAGES])
def test_payloads_equal_cbor2_canonical_and_the_project_codec(
        name: str, message_type: int, fields: dict[str, Any]) -> None:
    item = schema.pack(message_type, fields)
    ours = schema.encode_bare(message_type, fields)
    assert ours == cbor2.dumps(item, canonical=True) == cbor.encode(item)
    assert ours == messages.encode(message_type, fields)
    dcbor.scan(ours)  # and the key order is RFC 8949's bytewise order


@pytest.mark.parametrize(("name", "message_type", "fields"), SEALED_MESSAGES,
                         ids=[m[0] for m in SEALED_MESSAGES])
def test_a_sealed_message_is_refused_by_both_sides_under_another_key(
        name: str, message_type: int, fields: dict[str, Any]) -> None:
    other = os.urandom(32)
    with pytest.raises(Refused) as refused:
        schema.open_sealed(_project_seal(message_type, fields), message_type,
                           {b"T1": other})
    assert refused.value.reason == "mac_invalid"
    with pytest.raises(Exception) as error:
        sealed.open_message(schema.seal(KEY, message_type, fields), message_type, other)
    assert getattr(error.value, "reason", None) == "mac_invalid"


def test_an_unsigned_notice_is_the_same_bare_map_on_both_sides() -> None:
    for fields in ({"terminal": "T1", "reason": "mac_invalid"},
                   {"terminal": "T1", "seq": 9, "reason": "topic_mismatch"}):
        ours = schema.encode_bare(schema.NOTICE, fields)
        assert ours == messages.encode(messages.TYPE_NOTICE, fields)
        assert ours[0] != mac0.SEALED_FIRST_BYTE  # a bare map, told apart by its first byte
        assert schema.decode_bare(ours, schema.NOTICE) == fields
        assert messages.decode(ours, messages.TYPE_NOTICE) == fields


def test_a_sealed_notice_starts_with_tag_17_and_an_unsigned_one_does_not() -> None:
    fields = {"terminal": "T1", "reason": "message_malformed"}
    assert schema.seal(KEY, schema.NOTICE, fields)[0] == 0xD1
    assert sealed.seal(KEY, messages.TYPE_NOTICE, fields)[0] == 0xD1


def test_the_record_digest_that_chains_the_next_record_is_the_same() -> None:
    record = schema.seal(KEY, schema.TXN, TXN_FIELDS)
    from tests.conformance.docterm.journal import digest

    assert digest(record) == txn.digest(record)


# -- card programs (docs/programs.md sections 1 and 2.1) -----------------------------------------
VALIDATED_PROGRAMS = {**DEMO_PROGRAMS, **{
    f"example_{key}": dict(program, id=f"example_{key}")
    for key, program in load_programs(ROOT / "examples" / "programs.toml").items()}}
EXPONENTS = {"EUR": 2}


@pytest.mark.parametrize("program_id", sorted(VALIDATED_PROGRAMS))
def test_the_docs_only_validator_takes_every_program_the_project_validates(
        program_id: str) -> None:
    program = VALIDATED_PROGRAMS[program_id]
    assert validate_program(program_id, program) == program  # the configuration's shape
    programs.check_program(program_id, program, EXPONENTS)


def test_what_the_docs_only_validator_refuses_the_project_refuses_too() -> None:
    """Except a key left out: validation fills that in, and a configuration's program has
    every key (docs/protocol.md 5.7)."""
    checked = 0
    for _, table, _ in INVALID_CONFIGURATIONS:
        for program_id, program in table.items():
            with pytest.raises(Refused):
                programs.check_program(program_id, program, EXPONENTS)
            if set(program) < programs.PROGRAM_KEYS:
                continue
            with pytest.raises(ValidationError):
                validate_program(program_id, program)
            checked += 1
    assert checked >= 20


def _snapshots(program: dict[str, Any]) -> list[tuple[str | None, int]]:
    """Every (tier, discount_pct) an answer for a card of `program` can carry."""
    tiers = [None] if program["tiers"] is None else [
        level["name"] for level in program["tiers"]["levels"]]
    found = []
    for tier in tiers:
        tier_pct = 0 if tier is None else next(
            level["discount_pct"] for level in program["tiers"]["levels"]
            if level["name"] == tier)
        top = 100 if program["discount"] is not None else tier_pct
        found += [(tier, pct) for pct in sorted({0, tier_pct, top, 7, 10, 33} & set(
            range(top + 1)))]
    return found


@pytest.mark.parametrize("program_id", sorted(VALIDATED_PROGRAMS))
def test_the_docs_only_offline_quote_equals_the_projects(program_id: str) -> None:
    program = VALIDATED_PROGRAMS[program_id]
    holds_value = program["gift"] is not None or program["prepaid"] is not None
    compared = 0
    for tier, pct in _snapshots(program):
        for amount in (1, 5, 99, 125, 375, 1005, 1999, 12_345, 999_999):
            for same_day in (True, False):
                for pay_card in (True, False) if holds_value else (False,):
                    try:
                        ours = programs.quote(program, tier, pct, same_day, amount, pay_card,
                                              EXPONENTS[program["currency"]])
                    except Refused as refused:  # a company card's per-purchase limit
                        with pytest.raises(ValidationError) as caught:
                            engine_offline.quote(program, tier, pct, same_day, amount, "card")
                        assert caught.value.reason == refused.reason
                        compared += 1
                        continue
                    theirs = engine_offline.quote(program, tier, pct, same_day, amount,
                                                  "card" if pay_card else "other")
                    assert (ours.discount_minor, ours.card_minor, ours.points_earned) == (
                        theirs["discount_minor"], theirs["card_minor"],
                        theirs["points_earned"]), (tier, pct, amount, same_day, pay_card)
                    compared += 1
    assert compared


# -- the card ---------------------------------------------------------------------------------
SYSTEM_ID = b"tilltap"


def test_an10922_keys_equal_the_projects_for_random_masters_and_uids() -> None:
    for _ in range(50):
        master, uid = os.urandom(16), os.urandom(7)
        system_id = os.urandom(1 + secrets.randbelow(23))
        for number in (0, 2, 3, 4):
            assert (card.card_key(master, uid, number, system_id)
                    == keys.card_key(master, uid, number, system_id))
        assert card.system_key(master, 1, system_id) == keys.system_key(master, 1, system_id)


def test_a_sun_url_made_from_the_docs_verifies_with_the_projects_verifier() -> None:
    masters = {1: os.urandom(16), 2: os.urandom(16)}
    tapped = card.Card(os.urandom(7), masters, SYSTEM_ID)
    meta_key = keys.system_key(masters[1], 1, SYSTEM_ID)
    for counter in (1, 2, 3):
        result = ntag424_sun.verify_sun_url(
            tapped.tap(), meta_key, lambda uid: keys.card_key(masters[2], uid, 2, SYSTEM_ID))
        assert result["valid"] and result["uid"] == tapped.uid
        assert result["read_counter"] == counter


def test_the_projects_emulated_card_yields_urls_the_docs_only_reader_verifies() -> None:
    masters = new_master_keys(SYSTEM_ID)
    emulated = Ntag424Card(bytes.fromhex("04a1a2a3a4a5a6"))
    personalize(emulated.apdu, masters, "https://tap.example/c", secrets.token_bytes)
    meta_key = card.system_key(masters.master(1), 1, SYSTEM_ID)

    def file_key(uid: bytes) -> bytes:
        return card.card_key(masters.master(2), uid, 2, SYSTEM_ID)

    counters = []
    for _ in range(3):
        emulated.activate()
        uid, counter = card.read_sun_url(project_read_sun_url(emulated.apdu), meta_key,
                                         file_key)
        assert uid == emulated.uid
        counters.append(counter)
    assert counters == sorted(set(counters))  # every tap a new, higher counter


def test_a_sun_url_with_another_cards_mac_is_refused_by_both_verifiers() -> None:
    masters = {1: os.urandom(16), 2: os.urandom(16)}
    one, other = (card.Card(os.urandom(7), masters, SYSTEM_ID) for _ in range(2))
    forged = one.tap().split("&cmac=")[0] + "&cmac=" + other.tap().split("&cmac=")[1]
    meta_key = keys.system_key(masters[1], 1, SYSTEM_ID)
    result = ntag424_sun.verify_sun_url(
        forged, meta_key, lambda uid: keys.card_key(masters[2], uid, 2, SYSTEM_ID))
    assert not result["valid"]
    with pytest.raises(Refused) as refused:
        card.read_sun_url(forged, one.meta_key,
                          lambda uid: card.card_key(masters[2], uid, 2, SYSTEM_ID))
    assert refused.value.reason == "card_auth_failed"


def test_the_master_key_file_format_of_the_docs_is_what_the_gateway_loads(
        tmp_path: Path) -> None:
    from gateway.card_auth import CardKeys

    masters = {1: os.urandom(16), 2: os.urandom(16)}
    path = tmp_path / "masters.json"
    path.write_text(card.master_keys_text(masters, SYSTEM_ID))
    loaded = CardKeys.load(path)
    tapped = card.Card(os.urandom(7), masters, SYSTEM_ID)
    assert loaded.meta_key == tapped.meta_key
    assert loaded.file_key(tapped.uid) == tapped.file_key


# -- docs/protocol.md section 8 ------------------------------------------------------------------
_FENCE = re.compile(r"```([^\n]*)\n(.*?)```", re.S)
_HEX_INFO = re.compile(r"hex\s+(\S+)")


def _section(text: str, heading: str) -> str:
    start = text.find(heading)
    if start < 0:
        return ""
    end = text.find("\n## ", start + len(heading))
    return text[start:] if end < 0 else text[start:end]


def _diagnostic(text: str) -> Any:
    """RFC 8949 diagnostic notation as the examples write it, as a Python value."""
    text = re.sub(r"h'([0-9a-fA-F]*)'", lambda m: repr(bytes.fromhex(m.group(1))), text)
    text = re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", text))
    return ast.literal_eval(re.sub(r"\bnull\b", "None", text))


def examples() -> list[tuple[str, Any, bytes]]:
    """(name, the message in diagnostic notation, the bytes) of every ```hex NAME block of
    section 8, with the plain block just before it."""
    text = _section((ROOT / "docs" / "protocol.md").read_text(), "## 8. Examples")
    found = []
    previous = None
    for info, body in _FENCE.findall(text):
        match = _HEX_INFO.fullmatch(info.strip())
        if match is None:
            previous = body
            continue
        assert previous is not None, f"example {match.group(1)} has no message before it"
        found.append((match.group(1), _diagnostic(previous), bytes.fromhex("".join(body.split()))))
        previous = None
    return found


EXAMPLES = examples()
EXAMPLE_KEY_TYPE = 0


@pytest.mark.parametrize(("name", "message", "data"), EXAMPLES or [("none", None, b"")],
                         ids=[e[0] for e in EXAMPLES] or ["none"])
def test_each_example_of_section_8_decodes_and_verifies_with_the_docs_only_code(
        name: str, message: Any, data: bytes) -> None:
    if not EXAMPLES:
        pytest.skip("docs/protocol.md section 8 holds no ```hex example yet")
    message_type = message[EXAMPLE_KEY_TYPE]
    if data[0] == mac0.SEALED_FIRST_BYTE:
        envelope = mac0.parse(data, schema.bytes_max(message_type))
        payload = mac0.verify(envelope, KEYS)
        fields = schema.open_sealed(data, message_type, KEYS)
    else:
        assert message_type == schema.NOTICE, "only a notice travels without an envelope"
        payload = data
        fields = schema.decode_bare(data, message_type)
    assert dcbor.decode(payload) == message
    assert schema.pack(message_type, fields) == message
    # And the docs-only terminal seals the same message to the same bytes.
    if data[0] == mac0.SEALED_FIRST_BYTE:
        assert mac0.seal(KEY, dcbor.encode(message), b"T1") == data
    else:
        assert dcbor.encode(message) == data


def test_the_examples_chain_as_section_3_3_says() -> None:
    by_name = {name: (message, data) for name, message, data in EXAMPLES}
    if "txn-issue" not in by_name or "txn-purchase" not in by_name:
        pytest.skip("section 8 has no txn-issue and txn-purchase examples")
    issue, purchase = by_name["txn-issue"], by_name["txn-purchase"]
    assert issue[0][4] == bytes(32)  # record 1 chains from 32 zero bytes
    assert purchase[0][4] == hashlib.sha256(issue[1]).digest()


def test_the_vectors_file_an10922_example_matches_the_docs_only_diversification() -> None:
    vectors = json.loads((ROOT / "tests" / "vectors" / "an10922.json").read_text())
    vector = next(v for v in vectors["vectors"] if v["id"] == "an10922_aes128_2_2_1")
    master = bytes.fromhex(vector["master_key"])
    m = bytes.fromhex(vector["M"])
    expected = next(v for k, v in vector.items() if k.lower().startswith("diversified"))
    assert card.diversify(master, m) == bytes.fromhex(expected)
