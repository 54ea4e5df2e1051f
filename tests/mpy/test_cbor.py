"""Deterministic CBOR: RFC 8949 Appendix A encodings, section 4.2.1 ordering, strict decoding.
Runs on CPython and on real MicroPython."""

from mpytest import expect_raises
from protocol import cbor
from protocol.errors import DecodeError

# RFC 8949 Appendix A, the examples within tilltap's subset (no floats, no bignums).
APPENDIX_A = [
    (0, "00"), (1, "01"), (10, "0a"), (23, "17"), (24, "1818"), (25, "1819"), (100, "1864"),
    (1000, "1903e8"), (1000000, "1a000f4240"), (1000000000000, "1b000000e8d4a51000"),
    (18446744073709551615, "1bffffffffffffffff"), (-1, "20"), (-10, "29"), (-100, "3863"),
    (-1000, "3903e7"), (-18446744073709551616, "3bffffffffffffffff"),
    (False, "f4"), (True, "f5"), (None, "f6"),
    (b"", "40"), (b"\x01\x02\x03\x04", "4401020304"),
    ("", "60"), ("a", "6161"), ("IETF", "6449455446"), ("\"\\", "62225c"), ("\u00fc", "62c3bc"),
    ("\u6c34", "63e6b0b4"),
    ([], "80"), ([1, 2, 3], "83010203"), ([1, [2, 3], [4, 5]], "8301820203820405"),
    ({}, "a0"), ({1: 2, 3: 4}, "a201020304"), ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
    (["a", {"b": "c"}], "826161a161626163"),
]


def test_appendix_a_examples_encode_and_decode_exactly():
    for value, expected in APPENDIX_A:
        assert cbor.encode(value).hex() == expected, expected
        assert cbor.decode(bytes.fromhex(expected)) == value, expected


def test_map_keys_are_sorted_by_their_encoded_bytes():
    # Section 4.2.1: 10 (0x0a) < 100 (0x1864) < -1 (0x20) < "z" (0x617a) < "aa" (0x626161)
    encoded = cbor.encode({"aa": 5, "z": 4, -1: 3, 100: 2, 10: 1})
    assert encoded.hex() == "a50a011864022003617a0462616105"


def test_unsigned_keys_take_the_same_order_as_encoded_bytes_across_head_sizes():
    # The map of unsigned keys alone (every message) is sorted by value, not by encoded
    # bytes: both orders agree, also where a key's head grows (23/24, 255/256, 2**32).
    keys = [2**64 - 1, 2**32, 2**32 - 1, 65536, 65535, 256, 255, 24, 23, 1, 0]
    by_value = cbor.encode({key: 0 for key in keys})
    by_bytes = bytearray(b"\xab")  # map head, 11 pairs
    for encoded_key in sorted(cbor.encode(key) for key in keys):
        by_bytes.extend(encoded_key + b"\x00")
    assert by_value == bytes(by_bytes)
    # A bool key is no unsigned key: it keeps the general path (True sorts as 0xf5).
    assert cbor.encode({True: 0, 1000: 0}).hex() == "a21903e800f500"


def test_tagged_item_round_trips():
    encoded = cbor.encode(cbor.Tag(17, [b"", {}]))
    assert encoded.hex() == "d18240a0"
    assert cbor.decode(encoded) == cbor.Tag(17, [b"", {}])


def test_decoder_rejects_non_shortest_integer():
    error = expect_raises(DecodeError, cbor.decode, bytes.fromhex("1817"))
    assert error.reason == "message_malformed"


def test_decoder_rejects_unsorted_and_duplicate_map_keys():
    expect_raises(DecodeError, cbor.decode, bytes.fromhex("a203040102"))
    expect_raises(DecodeError, cbor.decode, bytes.fromhex("a201020103"))


def test_decoder_rejects_floats_indefinite_lengths_and_trailing_bytes():
    expect_raises(DecodeError, cbor.decode, bytes.fromhex("f93c00"))  # half float 1.0
    expect_raises(DecodeError, cbor.decode, bytes.fromhex("9f01ff"))  # indefinite array
    expect_raises(DecodeError, cbor.decode, bytes.fromhex("0101"))
    expect_raises(DecodeError, cbor.decode, b"")


def test_decoder_rejects_truncated_input_and_lengths_past_the_end():
    expect_raises(DecodeError, cbor.decode, bytes.fromhex("1a0001"))
    expect_raises(DecodeError, cbor.decode, bytes.fromhex("5affffffff00"))


def test_decoder_bounds_nesting_depth():
    deep = bytes.fromhex("81" * (cbor.DEPTH_MAX + 2) + "00")
    expect_raises(DecodeError, cbor.decode, deep)


def test_decoder_rejects_invalid_utf8_text():
    expect_raises(DecodeError, cbor.decode, bytes.fromhex("62c328"))


def test_decoder_takes_only_integer_and_text_map_keys():
    # {1: 1, true: 5}: in Python true and 1 would be one key; on the wire they are two kinds.
    # Then true, null, a byte string, an array, a map and a tag as the only key.
    for hex_map in ("a20101f505", "a1f505", "a1f605", "a1410005", "a18005", "a1a005",
                    "a1d18005"):
        error = expect_raises(DecodeError, cbor.decode, bytes.fromhex(hex_map))
        assert error.reason == "message_malformed"
    assert cbor.decode(bytes.fromhex("a2016161616201")) == {1: "a", "b": 1}
