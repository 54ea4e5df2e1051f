"""The gateway's fast path for reading uplinks (CPython): the one envelope and map shape
every terminal sends, read without the general decoder's per-item calls.

Every uplink is a COSE_Mac0 whose protected header is {1: 5} and whose unprotected header
is {4: kid}, around a map of integer keys to integers, byte and text strings and
true/false/null (protocol/messages.py). The general decoder (protocol/cbor.py) walks that
item by item, with a method call per head and per slice: most of the verify stage's time.
Here the same bytes are read in one loop each.

Both functions answer None for anything else, a malformed message included, and the
caller then runs the general path, which decodes it or refuses it with its reason: so this
path never accepts what the general one refuses, never refuses what it accepts, and
returns equal values (tests/gateway/test_fast_cbor.py proves it over generated records,
mutations of them and arbitrary items, and against cbor2).
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from protocol import cbor, cose, messages
from protocol.errors import AuthenticationError
from protocol.hmac256 import DIGEST_BYTES
from protocol.reasons import MAC_INVALID

_PROTECTED = cbor.encode({cose.HEADER_ALG: cose.ALG_HMAC_256_256})
# Tag 17, an array of 4, the protected header's bstr, then a map of one pair whose key is 4.
_ENVELOPE_HEAD = (b"\xd1\x84" + cbor.encode(_PROTECTED) + b"\xa1"
                  + cbor.encode(cose.HEADER_KID))
# The MAC_structure ["MAC0", protected, h'', payload] up to its last item: an array's
# encoding is its head and then its items', so this and the payload's item (as it stands in
# the envelope) are the bytes `cose.Mac0.verify` MACs.
_MAC_STRUCTURE_HEAD = (b"\x84" + cbor.encode("MAC0") + cbor.encode(_PROTECTED)
                       + cbor.encode(b""))
_BSTR = 0x40  # major type 2 (byte string), argument 0
_BSTR_1 = 0x58  # a byte string whose length is in the next byte
_BSTR_2 = 0x59  # ... in the next two bytes
_TAG_BSTR = bytes((_BSTR_1, DIGEST_BYTES))
_FALSE = 0xF4
_NULL = 0xF6
_SIMPLE = {0xF4: False, 0xF5: True, 0xF6: None}


class Envelope:
    """A COSE_Mac0 read on the fast path: not yet verified."""

    __slots__ = ("payload", "mac_structure", "tag", "terminal")

    def __init__(self, payload: bytes, mac_structure: bytes, tag: bytes,
                 terminal: str) -> None:
        self.payload = payload
        self.mac_structure = mac_structure  # the bytes the tag is the HMAC of
        self.tag = tag
        self.terminal = terminal

    def verify(self, key: bytes) -> bytes:
        """The payload, or AuthenticationError as `cose.Mac0.verify` raises it."""
        expected = hmac.digest(bytes(key), self.mac_structure, hashlib.sha256)
        if not hmac.compare_digest(expected, self.tag):
            raise AuthenticationError(MAC_INVALID, "tag does not verify")
        return self.payload


def envelope(data: bytes) -> Envelope | None:
    """`data` as `sealed.peek` reads it (protected header {1: 5}, a kid that is a terminal
    id), or None: not that shape, to be read by `sealed.peek`."""
    if (type(data) is not bytes or len(data) > messages.MESSAGE_BYTES_MAX
            or not data.startswith(_ENVELOPE_HEAD)):
        return None
    end = len(data)
    kid_span = _bstr_span(data, len(_ENVELOPE_HEAD), end)
    if kid_span is None or kid_span[1] - kid_span[0] > cose.KID_BYTES_MAX:
        return None
    kid = data[kid_span[0]:kid_span[1]]
    pos = kid_span[1]
    payload_span = _bstr_span(data, pos, end)
    if payload_span is None:
        return None
    start, payload_end = payload_span
    tag_start = payload_end + len(_TAG_BSTR)
    if tag_start + DIGEST_BYTES != end or data[payload_end:tag_start] != _TAG_BSTR:
        return None
    try:
        terminal = kid.decode()
    except UnicodeError:
        return None
    if not messages.is_id(terminal):
        return None
    return Envelope(data[start:payload_end], _MAC_STRUCTURE_HEAD + data[pos:payload_end],
                    data[tag_start:], terminal)


def _bstr_span(data: bytes, pos: int, end: int) -> tuple[int, int] | None:
    """(start, stop) of the byte string whose head is at `pos`, when that head is in its
    shortest form of at most two bytes of length and the string ends by `end`."""
    if pos >= end:
        return None
    initial = data[pos]
    if _BSTR <= initial < _BSTR + 24:
        start, length = pos + 1, initial - _BSTR
    elif initial == _BSTR_1 and pos + 1 < end and data[pos + 1] >= 24:
        start, length = pos + 2, data[pos + 1]
    elif initial == _BSTR_2 and pos + 2 < end:
        start, length = pos + 3, int.from_bytes(data[pos + 1:pos + 3], "big")
        if length < 0x100:
            return None
    else:
        return None
    return (start, start + length) if start + length <= end else None


def flat_map(data: bytes) -> dict[int, Any] | None:
    """`data` as `cbor.decode` reads it when it is a map of fewer than 256 pairs, each an
    unsigned integer key below 256 and a value that is an integer, a byte or text string,
    false, true or null; None for anything else."""
    end = len(data)
    if type(data) is not bytes or not end or data[0] >> 5 != 5:  # major type 5: a map
        return None
    pairs = data[0] & 0x1F
    pos = 1
    if pairs == 24 and end > 1 and data[1] >= 24:  # a record with most of its fields has 24 or more
        pairs = data[1]
        pos = 2
    elif pairs >= 24:
        return None
    result: dict[int, Any] = {}
    previous = -1
    for _ in range(pairs):
        if pos >= end:
            return None
        key = data[pos]
        if key < 24:
            pos += 1
        elif key == 24 and pos + 1 < end and data[pos + 1] >= 24:
            key = data[pos + 1]
            pos += 2
        else:
            return None
        # Deterministic order: unsigned keys sort by their encodings as by their values.
        if key <= previous or pos >= end:
            return None
        previous = key
        initial = data[pos]
        major = initial >> 5
        info = initial & 0x1F
        pos += 1
        if major == 7:
            if not _FALSE <= initial <= _NULL:
                return None
            result[key] = _SIMPLE[initial]
            continue
        if info < 24:
            argument = info
        else:
            width = 1 << (info - 24) if info < 28 else 0
            if not width or pos + width > end:
                return None
            argument = int.from_bytes(data[pos:pos + width], "big")
            pos += width
            # Shortest form only: each wider head must hold what the narrower could not.
            if argument < (24 if width == 1 else 1 << (4 * width)):
                return None
        if major == 0:
            result[key] = argument
        elif major == 1:
            result[key] = -1 - argument
        elif major == 2 or major == 3:
            stop = pos + argument
            if stop > end:
                return None
            chunk = data[pos:stop]
            pos = stop
            if major == 2:
                result[key] = chunk
            else:
                try:
                    result[key] = chunk.decode("utf-8")
                except UnicodeError:
                    return None
        else:  # arrays, maps, tags: the general decoder's
            return None
    return result if pos == end else None
