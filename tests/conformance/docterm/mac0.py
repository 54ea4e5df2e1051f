"""COSE_Mac0 with HMAC 256/256, as docs/protocol.md section 2 draws it.

    17([ h'a10105', {4: kid}, payload, tag ])
    tag = HMAC-SHA256(key, CBOR(["MAC0", h'a10105', h'', payload]))

`seal` builds one; `parse` reads the envelope without a key (to learn the kid); `verify`
finds the kid's key, checks the algorithm and the tag in constant time (`cryptography`'s
HMAC.verify) and returns the payload. Between them they refuse in the order of section 2:

    message_too_large   more than the message's byte limit (section 5.1 row 2)
    message_malformed   not tag 17 around a 4-element array of (bstr, map, bstr, 32-byte
                        bstr); an unprotected key other than 4; a kid that is not a bstr of
                        at most 32 bytes                                          (parse)
    terminal_unknown    no kid (parse), or a kid with no key here                 (verify)
    alg_unsupported     protected bytes other than a10105                         (verify)
    mac_invalid         a tag that does not verify                                (verify)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac

from . import dcbor
from .errors import Refused

HEADER_KID = 4
PROTECTED = bytes.fromhex("a10105")  # {1: 5}: alg (1) HMAC 256/256 (5)
TAG_BYTES = 32
KID_BYTES_MAX = 32
MESSAGE_BYTES_MAX = 1024
CONFIG_BYTES_MAX = 8192
SEALED_FIRST_BYTE = 0xD1  # tag 17: how a terminal tells a sealed notice from a bare map


class Mac0(NamedTuple):
    protected: bytes
    kid: bytes
    payload: bytes
    tag: bytes


def _to_be_maced(protected: bytes, payload: bytes) -> bytes:
    return dcbor.encode(["MAC0", protected, b"", payload])


def _hmac(key: bytes) -> hmac.HMAC:
    return hmac.HMAC(key, hashes.SHA256())


def seal(key: bytes, payload: bytes, kid: bytes) -> bytes:
    assert len(kid) <= KID_BYTES_MAX, "a kid is at most 32 bytes"
    mac = _hmac(key)
    mac.update(_to_be_maced(PROTECTED, payload))
    tag = mac.finalize()
    return dcbor.encode(cbor2.CBORTag(dcbor.COSE_MAC0_TAG,
                                      [PROTECTED, {HEADER_KID: kid}, payload, tag]))


def parse(data: bytes, bytes_max: int = MESSAGE_BYTES_MAX) -> Mac0:
    """The envelope's parts, unverified: the refusals of section 2 that need no key."""
    if len(data) > bytes_max:
        raise Refused("message_too_large", f"{len(data)} bytes")
    item = dcbor.decode(data)
    if not (isinstance(item, cbor2.CBORTag) and item.tag == dcbor.COSE_MAC0_TAG
            and isinstance(item.value, list) and len(item.value) == 4):
        raise Refused("message_malformed", "not tag 17 around an array of 4")
    protected, unprotected, payload, tag = item.value
    if not (isinstance(protected, bytes) and isinstance(unprotected, dict)
            and isinstance(payload, bytes) and isinstance(tag, bytes)
            and len(tag) == TAG_BYTES):
        raise Refused("message_malformed", "not (bstr, map, bstr, 32-byte bstr)")
    if set(unprotected) - {HEADER_KID}:
        raise Refused("message_malformed", "unprotected header holds more than the kid")
    if HEADER_KID not in unprotected:
        raise Refused("terminal_unknown", "kid absent")
    kid = unprotected[HEADER_KID]
    if not isinstance(kid, bytes) or len(kid) > KID_BYTES_MAX:
        raise Refused("message_malformed", "kid is not a bstr of at most 32 bytes")
    return Mac0(protected, kid, payload, tag)


def verify(mac0: Mac0, keys: Mapping[bytes, bytes]) -> bytes:
    """The payload, or Refused: terminal_unknown (no key for the kid), alg_unsupported,
    mac_invalid, in that order."""
    key = keys.get(mac0.kid)
    if key is None:
        raise Refused("terminal_unknown", f"no key for kid {mac0.kid!r}")
    if mac0.protected != PROTECTED:
        raise Refused("alg_unsupported", "protected header is not a10105")
    mac = _hmac(key)
    mac.update(_to_be_maced(mac0.protected, mac0.payload))
    try:
        mac.verify(mac0.tag)
    except InvalidSignature:
        raise Refused("mac_invalid", "tag does not verify") from None
    return mac0.payload
