"""Message schemas of protocol v1: CBOR maps with small integer keys, checked field by field.

Every message is a map whose key 0 is the message type and key 1 the protocol version, so a
signed authorization response can never be replayed as an acknowledgement. Callers work with
dicts keyed by field *names*; `pack` turns them into the integer-keyed map and `unpack`
checks a decoded map against the schema of its type and returns names again.

Field kinds:
    uint     integer >= 0 (not bool)       int      any integer (not bool)
    amount   integer in 0..AMOUNT_MINOR_MAX
    id       1..ID_CHARS_MAX chars of [A-Za-z0-9_-] (terminals, merchants, cards, programs)
    text     UTF-8 string of at most TEXT_CHARS_MAX chars
    currency ISO 4217 code known to protocol.money
    digest   32-byte bstr                  bool     true / false
    rejects  array of [seq (uint), reason (id)] pairs, at most REJECTS_MAX
    replays  array of [seq (uint), digest (32-byte bstr)] pairs, at most REPLAYED_MAX
    sun      the card's SUN URL as read, at most SUN_CHARS_MAX chars
    ids      an array of at most HOTLIST_MAX ids
    map      a map with text keys (configuration; its values are checked by its own module)
"""

from protocol import PROTOCOL_VERSION, cbor
from protocol.errors import DecodeError, ValidationError
from protocol.money import check_currency, is_amount
from protocol.reasons import (
    FIELD_INVALID,
    FIELD_MISSING,
    MESSAGE_MALFORMED,
    MESSAGE_TYPE_INVALID,
    VERSION_UNSUPPORTED,
)

ID_CHARS_MAX = 32
TEXT_CHARS_MAX = 64
SUN_CHARS_MAX = 256
HOTLIST_MAX = 200  # cards blocked per configuration message (fits CONFIG_BYTES_MAX)
# Per ack: with seqs as large as CBOR allows and 32-character reasons, a full ack still fits
# MESSAGE_BYTES_MAX (tests/mpy/test_txn.py builds the largest one); more go in further acks.
REJECTS_MAX = 12
REPLAYED_MAX = 4
MESSAGE_BYTES_MAX = 1024
CONFIG_BYTES_MAX = 8192  # signed configuration carries every program

TYPE_TXN = 1
TYPE_AUTH_REQUEST = 2
TYPE_AUTH_RESPONSE = 3
TYPE_ACK = 4
TYPE_STATUS = 5
TYPE_NOTICE = 6
TYPE_CONFIG = 7
TYPE_LOST = 8  # the terminal lost the record it sealed under a seq (docs/protocol.md 5.9)
TYPE_DIAG_REQUEST = 9  # a technician asks a terminal how it is (docs/protocol.md 5.10)
TYPE_DIAG = 10  # its answer
TYPE_ENROL_REQUEST = 11  # the counter enrols the tapped card for a customer (5.11)
TYPE_ENROL_RESPONSE = 12  # the gateway's signed answer to it

K_TYPE = 0
K_VERSION = 1

_ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"

# Field tables: (integer key, name, kind, required). Keys are unique across all messages so
# that docs/protocol.md can give one key table.
_COMMON = ((2, "terminal", "id", True),)
_TXN = (
    (3, "seq", "uint", True),
    (4, "prev", "digest", True),
    (5, "time", "uint", True),
    (6, "merchant", "id", True),
    (7, "card", "id", True),
    (8, "kind", "uint", True),
    (9, "currency", "currency", True),
    (10, "amount_minor", "amount", True),
    (11, "card_value_minor", "amount", True),
    (12, "bonus_minor", "amount", True),
    (13, "points", "amount", True),
    (14, "ref", "text", False),
    (15, "program", "id", False),
    (16, "auth_mode", "uint", True),
    (17, "auth_id", "text", False),
    (18, "sun", "sun", False),
    (19, "version", "uint", False),
    (26, "discount_minor", "amount", False),
    (27, "redeem_points", "amount", False),
    (28, "redeem_minor", "amount", False),
    # A purchase paid partly by the card and the rest by other tender (split tender): the
    # card part is card_value_minor exactly (docs/protocol.md section 5.2).
    (33, "split", "bool", False),
    # A reward redemption: the catalogue item the card's points paid for (a purchase paid in
    # points, and any co-payment in other tender; docs/protocol.md section 5.2).
    (34, "reward", "id", False),
    # The signed configuration the terminal held when it made the sale (key 50 as in a
    # configuration): the gateway refuses an offline sale of a card that one hotlisted.
    (50, "config_version", "uint", False),
)
_AUTH_REQUEST = (
    (20, "request", "uint", True),
    (3, "seq", "uint", False),
    (5, "time", "uint", True),
    (6, "merchant", "id", True),
    (7, "card", "id", True),
    (8, "kind", "uint", True),
    (9, "currency", "currency", True),
    (10, "amount_minor", "amount", True),
    (11, "card_value_minor", "amount", False),
    (14, "ref", "text", False),
    (15, "program", "id", False),
    (18, "sun", "sun", False),
    (27, "redeem_points", "amount", False),
    (33, "split", "bool", False),
    (34, "reward", "id", False),
)
_AUTH_RESPONSE = (
    (20, "request", "uint", True),
    (5, "time", "uint", True),
    (21, "approved", "bool", True),
    (22, "reason", "text", False),
    (23, "value_minor", "int", False),
    (24, "points_balance", "int", False),
    (25, "auth_mode", "uint", False),
    (17, "auth_id", "text", False),
    (15, "program", "id", False),
    (9, "currency", "currency", False),
    (11, "card_value_minor", "amount", False),
    (13, "points", "amount", False),
    (12, "bonus_minor", "amount", False),
    (19, "version", "uint", False),
    (26, "discount_minor", "amount", False),
    (27, "redeem_points", "amount", False),
    (28, "redeem_minor", "amount", False),
    (10, "amount_minor", "amount", False),
    (60, "tier", "text", False),
    (61, "discount_pct", "uint", False),
    # The ids of the program's promotions the sale got (docs/programs.md): the receipt
    # names them from the terminal's signed programs; never copied into a record.
    (62, "promotions", "ids", False),
    # A card of an enrolled customer: the first name the counter greets them by, nothing
    # more (docs/protocol.md section 5.11); never copied into a record.
    (82, "first_name", "text", False),
)
_ACK = (
    (5, "time", "uint", True),
    (30, "acked_through", "uint", True),
    (31, "rejected", "rejects", True),
    (32, "replayed", "replays", False),
)
_STATUS = (
    (40, "state", "text", True),
    (5, "time", "uint", True),
    (41, "journal_depth", "uint", False),
    (42, "firmware", "text", False),
    (43, "heap_free", "uint", False),
    (44, "refused", "uint", False),
)
_CONFIG = (
    (50, "config_version", "uint", True),
    (51, "limits", "map", True),
    (52, "programs", "map", True),
    (53, "hotlist", "ids", False),
)
_NOTICE = (
    (3, "seq", "uint", False),
    (22, "reason", "text", True),
)
_LOST = (
    (3, "seq", "uint", True),
    (29, "digest", "digest", True),
)
# A technician's view (docs/protocol.md section 5.10): the gateway's request names a fresh
# request id and its time; the answer names the same id. `errors`: the terminal's last
# reason codes, newest last (firmware/uplink.py keeps at most DIAG_ERRORS_MAX).
_DIAG_REQUEST = (
    (20, "request", "uint", True),
    (5, "time", "uint", True),
)
_DIAG = (
    (20, "request", "uint", True),
    (5, "time", "uint", True),
    (42, "firmware", "text", True),
    (50, "config_version", "uint", True),
    (41, "journal_depth", "uint", True),
    (44, "refused", "uint", True),
    (43, "heap_free", "uint", False),
    (70, "uptime_s", "uint", True),
    (71, "errors", "ids", True),
    (72, "tls", "bool", False),  # a board's broker link: False when configured clear text
)
# Enrolment at the counter (docs/protocol.md section 5.11): the cashier keys a phone number
# and/or an e-mail address (what the ledger checks), perhaps a first name, and the customer's
# answer to marketing; the gateway answers with the first name to show, nothing else held.
_ENROL_REQUEST = (
    (20, "request", "uint", True),
    (5, "time", "uint", True),
    (6, "merchant", "id", True),
    (7, "card", "id", True),
    (18, "sun", "sun", False),
    (80, "phone", "text", False),
    (81, "email", "text", False),
    (82, "first_name", "text", False),
    (83, "consent", "bool", True),
)
_ENROL_RESPONSE = (
    (20, "request", "uint", True),
    (5, "time", "uint", True),
    (21, "approved", "bool", True),
    (22, "reason", "text", False),
    (82, "first_name", "text", False),
    (84, "joined", "bool", False),
)

SCHEMAS = {
    TYPE_TXN: _COMMON + _TXN,
    TYPE_AUTH_REQUEST: _COMMON + _AUTH_REQUEST,
    TYPE_AUTH_RESPONSE: _COMMON + _AUTH_RESPONSE,
    TYPE_ACK: _COMMON + _ACK,
    TYPE_STATUS: _COMMON + _STATUS,
    TYPE_NOTICE: _COMMON + _NOTICE,
    TYPE_CONFIG: _COMMON + _CONFIG,
    TYPE_LOST: _COMMON + _LOST,
    TYPE_DIAG_REQUEST: _COMMON + _DIAG_REQUEST,
    TYPE_DIAG: _COMMON + _DIAG,
    TYPE_ENROL_REQUEST: _COMMON + _ENROL_REQUEST,
    TYPE_ENROL_RESPONSE: _COMMON + _ENROL_RESPONSE,
}


def is_id(value):
    if not isinstance(value, str) or not 1 <= len(value) <= ID_CHARS_MAX:
        return False
    # Nothing left once every id character is stripped from both ends: each character is
    # one, in one C loop (a per-character test in Python costs MicroPython 15 times more).
    return not value.strip(_ID_CHARS)


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_pairs(value, count_max, second):
    """An array of at most count_max [seq, x] pairs whose x passes `second`."""
    if not isinstance(value, list) or len(value) > count_max:
        return False
    for pair in value:
        if not isinstance(pair, list) or len(pair) != 2:
            return False
        if not _is_int(pair[0]) or pair[0] < 0 or not second(pair[1]):
            return False
    return True


def _is_digest(value):
    return isinstance(value, bytes) and len(value) == 32


def _is_uint(value):
    return _is_int(value) and value >= 0


def _is_text(value):
    return isinstance(value, str) and len(value) <= TEXT_CHARS_MAX


def _is_currency(value):
    check_currency(value)  # raises currency_unknown, a more useful reason
    return True


def _is_bool(value):
    return value is True or value is False


def _is_sun(value):
    return isinstance(value, str) and 0 < len(value) <= SUN_CHARS_MAX


def _is_ids(value):
    return isinstance(value, list) and len(value) <= HOTLIST_MAX and all(
        is_id(item) for item in value)


def _is_map(value):
    return isinstance(value, dict) and all(isinstance(k, str) for k in value)


def _is_rejects(value):
    return _is_pairs(value, REJECTS_MAX, is_id)


def _is_replays(value):
    return _is_pairs(value, REPLAYED_MAX, _is_digest)


# One check per field kind, looked up once per field: a chain of string comparisons cost
# each field of every record as many comparisons as kinds before its own.
_CHECKS = {
    "uint": _is_uint, "int": _is_int, "amount": is_amount, "id": is_id, "text": _is_text,
    "currency": _is_currency, "digest": _is_digest, "bool": _is_bool, "sun": _is_sun,
    "ids": _is_ids, "map": _is_map, "rejects": _is_rejects, "replays": _is_replays,
}


def _valid(kind, value):
    check = _CHECKS.get(kind)
    if check is None:
        raise AssertionError("unknown field kind " + kind)
    return check(value)


def pack(message_type, fields):
    """Names -> integer-keyed map, checked against the schema before anything is signed."""
    schema = SCHEMAS[message_type]
    out = {K_TYPE: message_type, K_VERSION: PROTOCOL_VERSION}
    for key, name, kind, required in schema:
        value = fields.get(name)
        if value is not None:
            assert _valid(kind, value), "field %s=%r is not a valid %s" % (name, value, kind)
            out[key] = value
        else:
            assert not required, "required field missing: " + name
    return out


def encode(message_type, fields):
    return cbor.encode(pack(message_type, fields))


def unpack(item, expected_type):
    """Check a decoded map against the schema of `expected_type`; return {name: value}."""
    if not isinstance(item, dict):
        raise DecodeError(MESSAGE_MALFORMED, "message is not a map")
    # `type(...) is int`: CBOR true is not the integer 1, although Python's True == 1.
    message_type = item.get(K_TYPE)
    if type(message_type) is not int or message_type != expected_type:
        raise ValidationError(MESSAGE_TYPE_INVALID, "expected type %d" % expected_type)
    version = item.get(K_VERSION)
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise ValidationError(VERSION_UNSUPPORTED, "version %r" % (version,))
    schema = SCHEMAS[expected_type]
    fields = {}
    checks = _CHECKS
    for key, name, kind, required in schema:
        if key not in item:
            if required:
                raise ValidationError(FIELD_MISSING, name)
            continue
        value = item[key]
        if not checks[kind](value):
            raise ValidationError(FIELD_INVALID, name)
        fields[name] = value
    # Every key of the map is the type, the version or a field read above (schema keys are
    # distinct); a count that differs names an unknown key.
    if len(item) != len(fields) + 2:
        known = [K_TYPE, K_VERSION] + [entry[0] for entry in schema]
        for key in item:
            if key not in known:
                raise ValidationError(FIELD_INVALID, "unknown key %r" % (key,))
    return fields


def decode(data, expected_type):
    return unpack(cbor.decode(data), expected_type)
