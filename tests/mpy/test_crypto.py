"""HMAC-SHA256 against RFC 4231 and COSE_Mac0 against the COSE WG example HMac-01, on both
interpreters; the portable HMAC path is checked on CPython too."""

from mpytest import expect_raises, load_json
from protocol import cbor, cose, hmac256
from protocol.errors import AuthenticationError, DecodeError


def _rfc4231_cases():
    return load_json("rfc.json")["hmac_sha256_rfc4231"]["cases"]


def _check_rfc4231(function):
    cases = _rfc4231_cases()
    assert len(cases) == 7
    for case in cases:
        key, data = bytes.fromhex(case["key"]), bytes.fromhex(case["data"])
        # Test case 5 publishes only the first 128 bits of its tag.
        expected = case.get("hmac_sha256") or case["hmac_sha256_truncated_128"]
        assert function(key, data).hex()[: len(expected)] == expected, case["rfc4231_test_case"]


def test_hmac_sha256_matches_rfc4231():
    _check_rfc4231(hmac256.hmac_sha256)


def test_portable_hmac_matches_rfc4231():
    _check_rfc4231(hmac256.hmac_sha256_portable)


def test_pads_xored_as_integers_equal_the_byte_by_byte_xor():
    blocks = [bytes(64), bytes(range(64)), bytes(range(192, 256)), b"\xff" * 64]
    for block in blocks:
        assert hmac256._xor(block, hmac256._INNER_PAD) == bytes(b ^ 0x36 for b in block)
        assert hmac256._xor(block, hmac256._OUTER_PAD) == bytes(b ^ 0x5C for b in block)


def test_digests_equal_compares_content_and_length():
    assert hmac256.digests_equal(b"abc", b"abc")
    assert not hmac256.digests_equal(b"abc", b"abd")
    assert not hmac256.digests_equal(b"abc", b"ab")


def _hmac01():
    vector = load_json("cose_wg_examples.json")["hmac01"]
    return bytes.fromhex(vector["key"]), vector


def test_cose_mac0_reproduces_cose_wg_hmac01_bytes():
    key, vector = _hmac01()
    payload = vector["payload_text"].encode()
    assert cose._to_be_maced(cose._PROTECTED_HMAC, payload).hex() == vector["to_mac"]
    assert cose.create(key, payload, None).hex() == vector["cbor"]


def test_cose_mac0_verifies_cose_wg_hmac01():
    key, vector = _hmac01()
    mac0 = cose.parse(bytes.fromhex(vector["cbor"]))
    assert mac0.verify(key) == vector["payload_text"].encode()


def test_cose_mac0_refuses_a_wrong_key_and_a_flipped_payload_bit():
    key, vector = _hmac01()
    data = bytearray(bytes.fromhex(vector["cbor"]))
    error = expect_raises(AuthenticationError, cose.parse(bytes(data)).verify, bytes(32))
    assert error.reason == "mac_invalid"
    data[10] ^= 0x01  # inside the payload bytes
    error = expect_raises(AuthenticationError, cose.parse(bytes(data)).verify, key)
    assert error.reason == "mac_invalid"


def test_cose_mac0_refuses_other_algorithms_and_shapes():
    key, vector = _hmac01()
    mac0 = cose.parse(bytes.fromhex(vector["cbor"]))
    mac0.protected = bytes.fromhex("a10104")  # alg 4 = HMAC 256/64
    assert expect_raises(AuthenticationError, mac0.verify, key).reason == "alg_unsupported"
    expect_raises(DecodeError, cose.parse, bytes.fromhex("d1820102"))
    expect_raises(DecodeError, cose.parse, bytes.fromhex("d28443a10105a0404100"))


def test_cose_mac0_takes_one_spelling_only():
    """docs/protocol.md section 2: tagged 17, protected exactly a10105, only the kid."""
    key, vector = _hmac01()
    data = bytes.fromhex(vector["cbor"])
    mac0 = cose.parse(data)
    mac0.protected = bytes.fromhex("a2010504f6")  # alg 5 and one more header
    assert expect_raises(AuthenticationError, mac0.verify, key).reason == "alg_unsupported"
    untagged = data[1:]  # the same array without tag 17
    assert expect_raises(DecodeError, cose.parse, untagged).reason == "message_malformed"
    created = cose.create(key, b"x", b"T1")
    item = cbor.decode(created)
    item.value[1][5] = b"extra"  # a second unprotected header
    extra = cbor.encode(item)
    assert expect_raises(DecodeError, cose.parse, extra).reason == "message_malformed"
