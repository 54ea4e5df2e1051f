"""The messages of docs/protocol.md section 3, key by key, and the rules of section 3.2.

Callers use the names of the key table (section 3); `pack` turns names into the integer-keyed
map and checks every field, `unpack` checks a decoded map and returns names. Key 1 (protocol
version) and key 19 (program version) share the name "version" in the key table, as do keys
16 and 25 ("auth_mode"); keys 0 and 1 are implicit here, so within one message type every
name is unique again.

    seal(key, type, fields) -> bytes        sealed message (section 2)
    open_sealed(data, type, keys) -> fields verified under the kid's key and checked
    encode_bare / decode_bare               an unsigned notice: a bare CBOR map
    check_txn(fields)                       section 3.2, before sealing
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from . import dcbor, mac0
from .errors import Refused

PROTOCOL_VERSION = 1
TXN, AUTH_REQUEST, AUTH_RESPONSE, ACK, STATUS, NOTICE, CONFIG, LOST = 1, 2, 3, 4, 5, 6, 7, 8
DIAG_REQUEST, DIAG = 9, 10  # section 5.10
TYPE_NAMES = {TXN: "txn", AUTH_REQUEST: "auth request", AUTH_RESPONSE: "auth response",
              ACK: "ack", STATUS: "status", NOTICE: "notice", CONFIG: "config", LOST: "lost",
              DIAG_REQUEST: "diag request", DIAG: "diag"}
# Section 3.1, **11 enrol request** and **12 enrol response** (section 5.11).
ENROL_REQUEST, ENROL_RESPONSE = 11, 12
TYPE_NAMES[ENROL_REQUEST] = "enrol request"
TYPE_NAMES[ENROL_RESPONSE] = "enrol response"
KEY_TYPE, KEY_VERSION = 0, 1

KIND_ISSUE, KIND_TOPUP, KIND_PURCHASE, KIND_REFUND, KIND_INQUIRY, KIND_CASHOUT = 1, 2, 3, 4, 5, 7
JOURNALED_KINDS = (KIND_ISSUE, KIND_TOPUP, KIND_PURCHASE, KIND_REFUND, KIND_CASHOUT)
AUTH_ONLINE, AUTH_OFFLINE, AUTH_STAND_IN = 1, 2, 3

AMOUNT_MAX = 10**12
ID_CHARS_MAX = 32
TEXT_CHARS_MAX = 64
SUN_CHARS_MAX = 256
REJECTED_MAX = 12
REPLAYED_MAX = 4
HOTLIST_MAX = 200
DIGEST_BYTES = 32

_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
# Section 3: the active ISO 4217 list is the gateway's to judge (currency_unknown); a terminal
# sends the currency it was provisioned with, and checks only the form of one it reads.
_CURRENCY = re.compile(r"[A-Z]{3}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_uint(value: Any) -> bool:
    return _is_int(value) and value >= 0


def is_amount(value: Any) -> bool:
    return _is_int(value) and 0 <= value <= AMOUNT_MAX


def is_id(value: Any) -> bool:
    return isinstance(value, str) and _ID.fullmatch(value) is not None


def _text(value: Any) -> bool:
    return isinstance(value, str) and len(value) <= TEXT_CHARS_MAX


def _sun(value: Any) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= SUN_CHARS_MAX


def _digest(value: Any) -> bool:
    return isinstance(value, bytes) and len(value) == DIGEST_BYTES


def _pairs(count_max: int, second: Callable[[Any], bool]) -> Callable[[Any], bool]:
    def check(value: Any) -> bool:
        return isinstance(value, list) and len(value) <= count_max and all(
            isinstance(p, list) and len(p) == 2 and is_uint(p[0]) and second(p[1])
            for p in value)
    return check


def _text_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) for k in value)


def _ids(value: Any) -> bool:
    return isinstance(value, list) and len(value) <= HOTLIST_MAX and all(is_id(v) for v in value)


def _currency(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    if _CURRENCY.fullmatch(value) is None:
        raise Refused("currency_unknown", repr(value))
    return True


CHECKS: dict[str, Callable[[Any], bool]] = {
    "uint": is_uint, "int": _is_int, "amount": is_amount, "id": is_id, "text": _text,
    "sun": _sun, "digest": _digest, "bool": lambda v: isinstance(v, bool),
    "currency": _currency, "map": _text_map, "ids": _ids,
    "rejected": _pairs(REJECTED_MAX, is_id), "replayed": _pairs(REPLAYED_MAX, _digest),
}

# (key, name, type, required) of section 3.1, table by table.
_TERMINAL = (2, "terminal", "id", True)
SCHEMAS: dict[int, tuple[tuple[int, str, str, bool], ...]] = {
    TXN: (
        _TERMINAL, (3, "seq", "uint", True), (4, "prev", "digest", True),
        (5, "time", "uint", True), (6, "merchant", "id", True), (7, "card", "id", True),
        (8, "kind", "uint", True), (9, "currency", "currency", True),
        (10, "amount_minor", "amount", True), (11, "card_value_minor", "amount", True),
        (12, "bonus_minor", "amount", True), (13, "points", "amount", True),
        (14, "ref", "text", False), (15, "program", "id", False),
        (16, "auth_mode", "uint", True), (17, "auth_id", "text", False),
        (18, "sun", "sun", False), (19, "version", "uint", False),
        (26, "discount_minor", "amount", False), (27, "redeem_points", "amount", False),
        (28, "redeem_minor", "amount", False), (33, "split", "bool", False),
        (34, "reward", "id", False),
    ),
    AUTH_REQUEST: (
        _TERMINAL, (3, "seq", "uint", False), (5, "time", "uint", True),
        (6, "merchant", "id", True), (7, "card", "id", True), (8, "kind", "uint", True),
        (9, "currency", "currency", True), (10, "amount_minor", "amount", True),
        (11, "card_value_minor", "amount", False), (14, "ref", "text", False),
        (15, "program", "id", False), (18, "sun", "sun", False),
        (20, "request", "uint", True), (27, "redeem_points", "amount", False),
        (33, "split", "bool", False), (34, "reward", "id", False),
    ),
    AUTH_RESPONSE: (
        _TERMINAL, (5, "time", "uint", True), (20, "request", "uint", True),
        (21, "approved", "bool", True), (22, "reason", "text", False),
        (9, "currency", "currency", False), (10, "amount_minor", "amount", False),
        (11, "card_value_minor", "amount", False), (12, "bonus_minor", "amount", False),
        (13, "points", "amount", False), (15, "program", "id", False),
        (17, "auth_id", "text", False), (19, "version", "uint", False),
        (23, "value_minor", "int", False), (24, "points_balance", "int", False),
        (25, "auth_mode", "uint", False), (26, "discount_minor", "amount", False),
        (27, "redeem_points", "amount", False), (28, "redeem_minor", "amount", False),
        (60, "tier", "text", False), (61, "discount_pct", "uint", False),
        (62, "promotions", "ids", False), (82, "first_name", "text", False),
    ),
    ACK: (
        _TERMINAL, (5, "time", "uint", True), (30, "acked_through", "uint", True),
        (31, "rejected", "rejected", True), (32, "replayed", "replayed", False),
    ),
    STATUS: (
        _TERMINAL, (5, "time", "uint", True), (40, "state", "text", True),
        (41, "journal_depth", "uint", False), (42, "firmware", "text", False),
        (43, "heap_free", "uint", False), (44, "refused", "uint", False),
    ),
    NOTICE: (_TERMINAL, (3, "seq", "uint", False), (22, "reason", "text", True)),
    CONFIG: (
        _TERMINAL, (50, "config_version", "uint", True), (51, "limits", "map", True),
        (52, "programs", "map", True), (53, "hotlist", "ids", False),
    ),
    LOST: (_TERMINAL, (3, "seq", "uint", True), (29, "digest", "digest", True)),
    ENROL_REQUEST: (
        _TERMINAL, (20, "request", "uint", True), (5, "time", "uint", True),
        (6, "merchant", "id", True), (7, "card", "id", True), (18, "sun", "sun", False),
        (80, "phone", "text", False), (81, "email", "text", False),
        (82, "first_name", "text", False), (83, "consent", "bool", True),
    ),
    ENROL_RESPONSE: (
        _TERMINAL, (20, "request", "uint", True), (5, "time", "uint", True),
        (21, "approved", "bool", True), (22, "reason", "text", False),
        (82, "first_name", "text", False), (84, "joined", "bool", False),
    ),
    DIAG_REQUEST: (_TERMINAL, (20, "request", "uint", True), (5, "time", "uint", True)),
    DIAG: (
        _TERMINAL, (20, "request", "uint", True), (5, "time", "uint", True),
        (42, "firmware", "text", True), (50, "config_version", "uint", True),
        (41, "journal_depth", "uint", True), (44, "refused", "uint", True),
        (43, "heap_free", "uint", False), (70, "uptime_s", "uint", True),
        (71, "errors", "ids", True),
    ),
}


def pack(message_type: int, fields: dict[str, Any]) -> dict[int, Any]:
    """Names -> the integer-keyed map; every field checked first (a programmer error if not).

    A name with the value None is left out: that is how callers leave an optional key out
    (section 3: a null on the wire is a present, wrong field)."""
    schema = SCHEMAS[message_type]
    names = {name for _, name, _, _ in schema}
    unknown = {n for n, v in fields.items() if v is not None} - names
    assert not unknown, f"fields not in the {TYPE_NAMES[message_type]} table: {unknown}"
    item: dict[int, Any] = {KEY_TYPE: message_type, KEY_VERSION: PROTOCOL_VERSION}
    for key, name, kind, required in schema:
        value = fields.get(name)
        if value is None:
            assert not required, f"{name} is required in a {TYPE_NAMES[message_type]}"
            continue
        assert CHECKS[kind](value), f"{name}={value!r} is not a valid {kind}"
        item[key] = value
    return item


def unpack(item: Any, message_type: int) -> dict[str, Any]:
    """A decoded map checked against its table; Refused with the reason of section 3 / 6."""
    if not isinstance(item, dict):
        raise Refused("message_malformed", "message is not a map")
    if not is_uint(item.get(KEY_TYPE)) or item[KEY_TYPE] != message_type:
        raise Refused("message_type_invalid", f"expected type {message_type}")
    if KEY_VERSION not in item:
        raise Refused("field_missing", "version")
    if not is_uint(item[KEY_VERSION]) or item[KEY_VERSION] != PROTOCOL_VERSION:
        raise Refused("version_unsupported", repr(item[KEY_VERSION]))
    fields: dict[str, Any] = {}
    known = {KEY_TYPE, KEY_VERSION}
    for key, name, kind, required in SCHEMAS[message_type]:
        known.add(key)
        if key not in item:
            if required:
                raise Refused("field_missing", name)
            continue
        if not CHECKS[kind](item[key]):
            raise Refused("field_invalid", name)
        fields[name] = item[key]
    # Section 1: a message map's keys are unsigned integers; any other key (text, negative,
    # an array, a bool...) is simply a key no table lists.
    extra = [key for key in item if not is_uint(key) or key not in known]
    if extra:
        raise Refused("field_invalid", f"unknown keys {sorted(map(str, extra))}")
    return fields


def encode_bare(message_type: int, fields: dict[str, Any]) -> bytes:
    return dcbor.encode(pack(message_type, fields))


def decode_bare(data: bytes, message_type: int) -> dict[str, Any]:
    return unpack(dcbor.decode(data), message_type)


def bytes_max(message_type: int) -> int:
    return mac0.CONFIG_BYTES_MAX if message_type == CONFIG else mac0.MESSAGE_BYTES_MAX


def seal(key: bytes, message_type: int, fields: dict[str, Any]) -> bytes:
    if message_type == TXN:
        check_txn(fields)
    data = mac0.seal(key, encode_bare(message_type, fields), fields["terminal"].encode())
    assert len(data) <= bytes_max(message_type), "message beyond its size limit"
    return data


def open_sealed(data: bytes, message_type: int,
                keys: Mapping[bytes, bytes]) -> dict[str, Any]:
    """Parse, verify under the kid's key in `keys`, check the table; the signed terminal
    must be the kid."""
    envelope = mac0.parse(data, bytes_max(message_type))
    fields = decode_bare(mac0.verify(envelope, keys), message_type)
    if fields["terminal"].encode() != envelope.kid:
        raise Refused("topic_mismatch", "kid differs from the signed terminal")
    return fields


def check_txn(fields: dict[str, Any]) -> None:
    """Section 3.2, checked before sealing (a record this terminal built wrong is a bug)."""
    kind = fields["kind"]
    amount, card_value = fields["amount_minor"], fields["card_value_minor"]
    bonus, points = fields["bonus_minor"], fields["points"]
    discount = fields.get("discount_minor") or 0
    redeem_points = fields.get("redeem_points") or 0
    redeem_minor = fields.get("redeem_minor") or 0
    assert kind in JOURNALED_KINDS, f"kind {kind} is never journaled"
    assert fields["auth_mode"] in (AUTH_ONLINE, AUTH_OFFLINE, AUTH_STAND_IN)
    if kind == KIND_ISSUE:
        assert card_value == amount and not bonus and not points and fields.get("program")
        return
    assert amount > 0, "amount must be positive"
    if kind == KIND_TOPUP:
        assert card_value == amount + bonus and not points
    elif kind == KIND_PURCHASE:
        assert discount + redeem_minor + card_value <= amount
        assert (redeem_minor > 0) == (redeem_points > 0) and not bonus and not fields.get("ref")
    elif kind == KIND_REFUND:
        assert card_value <= amount + bonus and not discount and fields.get("ref")
    else:  # cash-out: "nothing else"
        assert card_value == amount and not (bonus or points or discount or redeem_points)
        assert not fields.get("ref")
