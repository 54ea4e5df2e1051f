"""The project's own CBOR and COSE code agrees with independent implementations: cbor2 for
encoding, `cryptography`'s HMAC for the MAC (CPython only)."""

from __future__ import annotations

import contextlib

import cbor2
from cryptography.hazmat.primitives import hashes, hmac
from hypothesis import given
from hypothesis import strategies as st

from protocol import cbor, cose, hmac256, messages, txn

KEY = bytes(range(32))

scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**64), max_value=2**64 - 1)
           | st.binary(max_size=40) | st.text(max_size=20))
lists = st.recursive(scalars, lambda children: st.lists(children, max_size=5), max_leaves=20)
values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(st.integers(-30, 30) | st.text(max_size=5), children, max_size=5),
    max_leaves=20,
)


@given(lists)
def test_maps_aside_encoding_equals_cbor2_canonical_byte_for_byte(value: object) -> None:
    assert cbor.encode(value) == cbor2.dumps(value, canonical=True)


@given(values)
def test_cbor2_decodes_our_encoding_and_we_decode_it_back(value: object) -> None:
    encoded = cbor.encode(value)
    assert cbor2.loads(encoded) == value
    assert cbor.decode(encoded) == value


def test_map_keys_follow_rfc8949_bytewise_order_not_cbor2_length_first_order() -> None:
    # RFC 8949 section 4.2.1 sorts keys by their encoded bytes: 24 (0x1818) before -1 (0x20).
    # cbor2's canonical mode uses the older length-first order (RFC 8949 section 4.2.3).
    assert cbor.encode({-1: None, 24: None}).hex() == "a21818f620f6"
    assert cbor2.dumps({-1: None, 24: None}, canonical=True).hex() == "a220f61818f6"


@given(st.binary(max_size=64))
def test_decoder_never_crashes_on_arbitrary_bytes(data: bytes) -> None:
    with contextlib.suppress(cbor.DecodeError):
        cbor.decode(data)


def test_sealed_record_checks_out_with_cbor2_and_cryptography() -> None:
    fields = {"terminal": "T1", "seq": 7, "prev": bytes(32), "time": 1, "merchant": "M1",
              "card": "04aa", "kind": txn.KIND_PURCHASE, "currency": "EUR",
              "amount_minor": 500, "card_value_minor": 0, "bonus_minor": 0, "points": 5,
              "auth_mode": txn.AUTH_ONLINE}
    record = txn.seal(KEY, fields)
    item = cbor2.loads(record)
    assert item.tag == cose.COSE_MAC0_TAG
    protected, unprotected, payload, tag = item.value
    assert cbor2.loads(protected) == {1: 5} and unprotected == {4: b"T1"}
    assert cbor2.loads(payload)[10] == 500
    mac = hmac.HMAC(KEY, hashes.SHA256())
    mac.update(cbor2.dumps(["MAC0", protected, b"", payload], canonical=True))
    mac.verify(tag)


@given(st.dictionaries(st.integers(min_value=0, max_value=2**64 - 1), scalars, max_size=8))
def test_maps_of_unsigned_keys_equal_cbor2_canonical(value: dict[int, object]) -> None:
    # With unsigned keys only (our fast path), length-first and bytewise order agree.
    assert cbor.encode(value) == cbor2.dumps(value, canonical=True)


@given(st.binary(max_size=600), st.none() | st.binary(min_size=1, max_size=32),
       st.binary(min_size=0, max_size=100))
def test_cose_create_equals_the_structures_encoded_whole(payload: bytes, kid: bytes | None,
                                                         key: bytes) -> None:
    protected = cbor2.dumps({1: 5})
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(cbor2.dumps(["MAC0", protected, b"", payload]))
    unprotected = {} if kid is None else {4: kid}
    expected = cbor2.dumps(cbor2.CBORTag(17, [protected, unprotected, payload, mac.finalize()]))
    assert cose.create(key, payload, kid) == expected


@given(st.binary(max_size=200), st.binary(max_size=300))
def test_portable_hmac_equals_cryptography(key: bytes, message: bytes) -> None:
    mac = hmac.HMAC(key, hashes.SHA256())
    mac.update(message)
    assert hmac256.hmac_sha256_portable(key, message) == mac.finalize()


@given(st.text(alphabet=st.sampled_from(messages._ID_CHARS) | st.characters(), max_size=40))
def test_is_id_is_every_character_an_id_character(value: str) -> None:
    expected = 1 <= len(value) <= messages.ID_CHARS_MAX and all(
        char in messages._ID_CHARS for char in value)
    assert messages.is_id(value) == expected
