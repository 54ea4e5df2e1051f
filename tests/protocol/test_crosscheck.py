"""The project's own CBOR and COSE code agrees with independent implementations: cbor2 for
encoding, `cryptography`'s HMAC for the MAC (CPython only)."""

from __future__ import annotations

import contextlib

import cbor2
from cryptography.hazmat.primitives import hashes, hmac
from hypothesis import given
from hypothesis import strategies as st

from protocol import cbor, cose, txn

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
