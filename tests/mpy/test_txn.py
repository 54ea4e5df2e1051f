"""Transactions: the golden sealed record, consistency rules per kind, schema refusals,
and every downlink type sealed and opened. Runs on CPython and real MicroPython."""

from mpytest import expect_raises
from protocol import messages, sealed, topics, txn
from protocol.errors import AuthenticationError, DecodeError, ValidationError

KEY = bytes(range(32))


def golden_fields():
    return {
        "terminal": "T1", "seq": 1, "prev": txn.GENESIS_DIGEST, "time": 1763900000,
        "merchant": "M1", "card": "04aabbccddeeff", "kind": txn.KIND_PURCHASE,
        "currency": "EUR", "amount_minor": 1250, "card_value_minor": 1250, "bonus_minor": 0,
        "points": 12, "auth_mode": txn.AUTH_ONLINE, "auth_id": "a1",
    }


# The sealed bytes of golden_fields() under KEY, as shown in docs/protocol.md; a CPython test
# checks the same bytes independently with cbor2 and `cryptography`'s HMAC.
GOLDEN_RECORD = (
    "d18443a10105a1044254315861b0000101010262543103010458200000000000000000000000000000"
    "000000000000000000000000000000000000051a6922fa6006624d31076e3034616162626363646465"
    "656666080309634555520a1904e20b1904e20c000d0c10011162613158205cc1506298374ba0882e52"
    "27ffeffa2a84068968b7da78d21eb7ad774e73a8e0"
)


def test_sealed_record_matches_the_golden_bytes():
    assert txn.seal(KEY, golden_fields()).hex() == GOLDEN_RECORD


def test_opened_record_gives_back_the_fields():
    record = txn.seal(KEY, golden_fields())
    assert txn.open_record(record, KEY) == golden_fields()
    assert len(txn.digest(record)) == 32


def test_a_changed_byte_or_another_key_fails_the_mac():
    record = bytearray(txn.seal(KEY, golden_fields()))
    record[60] ^= 0x01
    error = expect_raises(AuthenticationError, txn.open_record, bytes(record), KEY)
    assert error.reason == "mac_invalid"
    record = txn.seal(KEY, golden_fields())
    assert expect_raises(AuthenticationError, txn.open_record, record, bytes(32)).reason == (
        "mac_invalid")


def test_kid_must_name_the_signing_terminal():
    fields = golden_fields()
    payload = messages.encode(messages.TYPE_TXN, fields)
    from protocol import cose

    forged = cose.create(KEY, payload, b"T2")
    error = expect_raises(AuthenticationError, txn.open_record, forged, KEY)
    assert error.reason == "terminal_unknown"


def test_consistency_rules_per_kind():
    bad = golden_fields()
    bad["card_value_minor"] = 1251
    assert expect_raises(ValidationError, txn.check_consistency, bad).reason == "amount_invalid"
    bad = golden_fields()
    bad["kind"] = txn.KIND_REFUND
    assert expect_raises(ValidationError, txn.check_consistency, bad).reason == "field_missing"
    bad = golden_fields()
    bad["kind"] = 9
    assert expect_raises(ValidationError, txn.check_consistency, bad).reason == "kind_unknown"
    issue = golden_fields()
    issue.update(kind=txn.KIND_ISSUE, amount_minor=0, card_value_minor=0, points=0,
                 program="loyalty")
    assert txn.check_consistency(issue) is issue
    topup = golden_fields()
    topup.update(kind=txn.KIND_TOPUP, amount_minor=1000, bonus_minor=50, card_value_minor=1050,
                 points=0)
    assert txn.check_consistency(topup) is topup


def test_schema_refuses_missing_wrong_and_unknown_fields():
    item = messages.pack(messages.TYPE_TXN, golden_fields())
    missing = dict(item)
    del missing[10]
    assert expect_raises(ValidationError, messages.unpack, missing,
                         messages.TYPE_TXN).reason == "field_missing"
    wrong = dict(item)
    wrong[10] = -5
    assert expect_raises(ValidationError, messages.unpack, wrong,
                         messages.TYPE_TXN).reason == "field_invalid"
    extra = dict(item)
    extra[99] = 1
    assert expect_raises(ValidationError, messages.unpack, extra,
                         messages.TYPE_TXN).reason == "field_invalid"
    other = dict(item)
    other[1] = 2
    assert expect_raises(ValidationError, messages.unpack, other,
                         messages.TYPE_TXN).reason == "version_unsupported"
    assert expect_raises(ValidationError, messages.unpack, item,
                         messages.TYPE_ACK).reason == "message_type_invalid"
    currency = dict(item)
    currency[9] = "XXZ"
    assert expect_raises(ValidationError, messages.unpack, currency,
                         messages.TYPE_TXN).reason == "currency_unknown"


def test_oversized_messages_are_refused_before_parsing():
    error = expect_raises(DecodeError, sealed.peek, bytes(messages.MESSAGE_BYTES_MAX + 1))
    assert error.reason == "message_too_large"


def test_ack_and_auth_response_round_trip_sealed():
    ack = {"terminal": "T1", "time": 1763900000, "acked_through": 7,
           "rejected": [[5, "rule_mismatch"]], "replayed": [[3, bytes(range(32))]]}
    data = sealed.seal(KEY, messages.TYPE_ACK, ack)
    assert sealed.open_message(data, messages.TYPE_ACK, KEY) == ack
    response = {"terminal": "T1", "time": 1763900000, "request": 42, "approved": False,
                "reason": "insufficient_value"}
    data = sealed.seal(KEY, messages.TYPE_AUTH_RESPONSE, response)
    assert sealed.open_message(data, messages.TYPE_AUTH_RESPONSE, KEY) == response
    # An auth response can never pass as an ack.
    error = expect_raises(ValidationError, sealed.open_message, data, messages.TYPE_ACK, KEY)
    assert error.reason == "message_type_invalid"


def test_the_largest_ack_fits_one_message():
    """REJECTS_MAX and REPLAYED_MAX are chosen so that the fullest ack, with the largest
    seqs CBOR can carry and 32-character reasons, still fits MESSAGE_BYTES_MAX."""
    seq_max = 2 ** 64 - 1
    ack = {"terminal": "T" * messages.ID_CHARS_MAX, "time": seq_max, "acked_through": seq_max,
           "rejected": [[seq_max, "r" * messages.ID_CHARS_MAX]] * messages.REJECTS_MAX,
           "replayed": [[seq_max, bytes(32)]] * messages.REPLAYED_MAX}
    data = sealed.seal(KEY, messages.TYPE_ACK, ack)
    assert len(data) <= messages.MESSAGE_BYTES_MAX


def test_an_ack_with_too_many_entries_or_a_bad_reason_is_refused():
    for fields in ({"rejected": [[1, "rule_mismatch"]] * (messages.REJECTS_MAX + 1)},
                   {"replayed": [[1, bytes(32)]] * (messages.REPLAYED_MAX + 1)},
                   {"rejected": [[1, "not a reason"]]},
                   {"replayed": [[1, bytes(31)]]}):
        item = {0: messages.TYPE_ACK, 1: 1, 2: "T1", 5: 1, 30: 1, 31: []}
        item[31 if "rejected" in fields else 32] = list(fields.values())[0]
        error = expect_raises(ValidationError, messages.unpack, item, messages.TYPE_ACK)
        assert error.reason == "field_invalid"


def test_an_id_is_1_to_32_of_letters_digits_underscore_and_hyphen():
    for good in ("T1", "04aabbccddeeff", "_", "-", "a" * 32, "Store-2_B"):
        assert messages.is_id(good), good
    for bad in ("", "a" * 33, "T 1", "T1\n", "\u00e9", "a\u00e9b", "a.b", "a/b", 7, None):
        assert not messages.is_id(bad), bad


def test_topics_build_and_parse():
    name = topics.up("M1", "T1", topics.LEAF_TXN)
    assert name == "tilltap/v1/M1/T1/up/txn"
    assert topics.parse(name) == ("M1", "T1", "up", "txn")
    assert topics.gateway_subscription() == "tilltap/v1/+/+/up/#"
    assert topics.gateway_subscriptions("M1") == [("tilltap/v1/M1/+/up/txn", 1),
                                                  ("tilltap/v1/M1/+/up/auth", 0),
                                                  ("tilltap/v1/M1/+/up/status", 1),
                                                  ("tilltap/v1/M1/+/up/diag", 0)]
    for bad in ("tilltap/v1/M1/T1/up/ack", "tilltap/v2/M1/T1/up/txn", "tilltap/v1/M1/T+/up/txn",
                "tilltap/v1/M1/T1/up", "x"):
        assert expect_raises(ValidationError, topics.parse, bad).reason == "topic_invalid"
