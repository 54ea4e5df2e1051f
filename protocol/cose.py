"""COSE_Mac0 with HMAC 256/256 (RFC 9052 sections 6.2-6.3, RFC 9053 section 3.1).

    COSE_Mac0 = 17([protected: bstr .cbor {1: 5}, unprotected: {4: kid}, payload: bstr, tag])
    MAC_structure = ["MAC0", protected, external_aad = h'', payload]
    tag = HMAC-SHA256(key, deterministic CBOR of MAC_structure), all 32 bytes

The kid names the terminal whose key signed the message; it sits in the unprotected bucket
as RFC 9052 allows, and the verifier checks it against the signed payload and the topic.
`parse` only checks the shape; `verify` checks the algorithm and the tag.
"""

from protocol import cbor
from protocol.errors import AuthenticationError, DecodeError
from protocol.hmac256 import DIGEST_BYTES, digests_equal, hmac_sha256
from protocol.reasons import ALG_UNSUPPORTED, MAC_INVALID, MESSAGE_MALFORMED

COSE_MAC0_TAG = 17
HEADER_ALG = 1
HEADER_KID = 4
ALG_HMAC_256_256 = 5
KID_BYTES_MAX = 32

_PROTECTED_HMAC = cbor.encode({HEADER_ALG: ALG_HMAC_256_256})

# `create` encodes the payload bstr once and completes both structures with it: an array's
# encoding is its head then its items' encodings, so these prefixes plus the rest are
# exactly the encodings of the whole arrays (tests/protocol/test_crosscheck.py checks).
_ARRAY_OF_4_HEAD = b"\x84"  # major type 4 (array), 4 items
_MAC_STRUCTURE_PREFIX = (_ARRAY_OF_4_HEAD + cbor.encode("MAC0") + cbor.encode(_PROTECTED_HMAC)
                         + cbor.encode(b""))
_TAG_MAC0_HEAD = b"\xd1"  # major type 6 (tag), COSE_MAC0_TAG = 17
_MAC0_PREFIX = _TAG_MAC0_HEAD + _ARRAY_OF_4_HEAD + cbor.encode(_PROTECTED_HMAC)


def _to_be_maced(protected, payload):
    return cbor.encode(["MAC0", protected, b"", payload])


def create(key, payload, kid):
    """Wrap `payload` (bytes) in a tagged COSE_Mac0 under `key`, naming `kid` (bytes or None)."""
    assert isinstance(payload, bytes) and (kid is None or isinstance(kid, bytes))
    payload_item = cbor.encode(payload)
    tag = hmac_sha256(key, _MAC_STRUCTURE_PREFIX + payload_item)
    unprotected = {HEADER_KID: kid} if kid is not None else {}
    return _MAC0_PREFIX + cbor.encode(unprotected) + payload_item + cbor.encode(tag)


class Mac0:
    """A parsed, not yet verified, COSE_Mac0."""

    def __init__(self, protected, unprotected, payload, tag):
        self.protected = protected
        self.unprotected = unprotected
        self.payload = payload
        self.tag = tag

    @property
    def kid(self):
        return self.unprotected.get(HEADER_KID)

    def verify(self, key):
        """Raise AuthenticationError unless the algorithm is HMAC 256/256 and the tag verifies."""
        # Exactly {1: 5}: one spelling, so the bytes MACed never carry a header we ignore.
        if self.protected != _PROTECTED_HMAC:
            raise AuthenticationError(ALG_UNSUPPORTED, "protected header is not {1: 5}")
        expected = hmac_sha256(key, _to_be_maced(self.protected, self.payload))
        if not digests_equal(expected, self.tag):
            raise AuthenticationError(MAC_INVALID, "tag does not verify")
        return self.payload


def parse(data):
    """Check the COSE_Mac0 shape and return a Mac0; raises DecodeError on any deviation."""
    item = cbor.decode(data)
    if not isinstance(item, cbor.Tag) or item.tag != COSE_MAC0_TAG:
        raise DecodeError(MESSAGE_MALFORMED, "not tagged 17 (COSE_Mac0)")
    item = item.value
    if not isinstance(item, list) or len(item) != 4:
        raise DecodeError(MESSAGE_MALFORMED, "COSE_Mac0 is not a 4-element array")
    protected, unprotected, payload, tag = item
    if not isinstance(protected, bytes) or not isinstance(payload, bytes):
        raise DecodeError(MESSAGE_MALFORMED, "protected header or payload is not a bstr")
    if not isinstance(unprotected, dict):
        raise DecodeError(MESSAGE_MALFORMED, "unprotected header is not a map")
    if not isinstance(tag, bytes) or len(tag) != DIGEST_BYTES:
        raise DecodeError(MESSAGE_MALFORMED, "tag is not a 32-byte bstr")
    if any(key != HEADER_KID for key in unprotected):
        raise DecodeError(MESSAGE_MALFORMED, "unprotected header holds more than the kid")
    kid = unprotected.get(HEADER_KID)
    if kid is not None and (not isinstance(kid, bytes) or len(kid) > KID_BYTES_MAX):
        raise DecodeError(MESSAGE_MALFORMED, "kid is not a bstr of at most KID_BYTES_MAX")
    return Mac0(protected, unprotected, payload, tag)
