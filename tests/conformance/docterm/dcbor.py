"""Deterministic CBOR as docs/protocol.md section 1 says.

Encoding is cbor2's `canonical=True`; the result is then read back by `scan`, the strict
check below, so bytes whose map keys are not in RFC 8949 section 4.2.1 bytewise order are
never sent. (cbor2's canonical mode sorts keys length first, the older RFC 7049 rule; the two
orders agree for unsigned integer keys 0..63 and for text keys, which is all tilltap uses.
For keys such as -1 and 24 they differ, and `encode` refuses rather than send the wrong
order.)

Decoding refuses, with reason message_malformed, anything outside the subset of section 1:
floats and other simple values, tags other than 17, indefinite lengths, non-shortest heads,
map keys out of bytewise order or repeated, text that is not UTF-8, trailing bytes, nesting
deeper than DEPTH_MAX and containers of more than ITEMS_MAX entries. The same walk over the
raw bytes builds the Python values. A map key may be any item of the subset (section 1: a
message map with a key other than an unsigned integer is its schema's to refuse); a key that
is neither an integer nor text comes back as a `ForeignKey`, so `true` never merges with `1`
the way a Python dict would merge them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cbor2

from .errors import Refused

DEPTH_MAX = 8
ITEMS_MAX = 256
COSE_MAC0_TAG = 17
MALFORMED = "message_malformed"

_MAJOR_UINT, _MAJOR_NINT, _MAJOR_BYTES, _MAJOR_TEXT = 0, 1, 2, 3
_MAJOR_ARRAY, _MAJOR_MAP, _MAJOR_TAG, _MAJOR_SIMPLE = 4, 5, 6, 7
_SIMPLE_VALUES = {20: False, 21: True, 22: None}
# Additional information 24..27: the argument follows in 1, 2, 4 or 8 bytes; the smallest
# value that needs that many bytes (anything below has a shorter head).
_ARGUMENT_BYTES = {24: (1, 24), 25: (2, 0x100), 26: (4, 0x10000), 27: (8, 0x100000000)}


def encode(value: Any) -> bytes:
    """The deterministic encoding of `value` (ints, bytes, str, list, dict, bool, None,
    CBORTag 17); ValueError for anything else or an order cbor2 gets wrong."""
    _check_value(value, 0)
    data: bytes = cbor2.dumps(value, canonical=True)
    try:
        scan(data)
    except Refused as error:
        raise ValueError(f"cbor2 produced non-deterministic bytes: {error.detail}") from None
    return data


def decode(data: bytes) -> Any:
    """Exactly one deterministic CBOR item as Python values, or Refused(message_malformed)."""
    if not isinstance(data, bytes | bytearray):
        raise Refused(MALFORMED, "not bytes")
    scanner = _Scanner(bytes(data))
    value = scanner.item(0)
    if scanner.position != len(scanner.data):
        raise Refused(MALFORMED, "trailing bytes")
    return value


@dataclass(frozen=True)
class ForeignKey:
    """A map key that is neither an integer nor text (an array, a bool, ...), as its bytes:
    never equal to an int or a str, so no schema mistakes it for one."""

    encoded: bytes


def _check_value(value: Any, depth: int) -> None:
    if depth > DEPTH_MAX:
        raise ValueError("nesting deeper than DEPTH_MAX")
    if value is None or isinstance(value, bool | bytes | str):
        return
    if isinstance(value, int):
        if not -(2**64) <= value < 2**64:
            raise ValueError("integer beyond 64 bits")
        return
    if isinstance(value, list):
        if len(value) > ITEMS_MAX:
            raise ValueError("array larger than ITEMS_MAX")
        for item in value:
            _check_value(item, depth + 1)
        return
    if isinstance(value, dict):
        if len(value) > ITEMS_MAX:
            raise ValueError("map larger than ITEMS_MAX")
        for key, item in value.items():
            if isinstance(key, bool) or not isinstance(key, int | str):
                raise ValueError("map key is neither an integer nor text")
            _check_value(key, depth + 1)
            _check_value(item, depth + 1)
        return
    if isinstance(value, cbor2.CBORTag) and value.tag == COSE_MAC0_TAG:
        _check_value(value.value, depth + 1)
        return
    raise ValueError(f"{type(value).__name__} is not in tilltap's CBOR subset")


class _Scanner:
    """A cursor over raw CBOR bytes that checks each head as it reads it."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.position = 0

    def take(self, count: int) -> bytes:
        end = self.position + count
        if end > len(self.data):
            raise Refused(MALFORMED, "truncated")
        chunk = self.data[self.position:end]
        self.position = end
        return chunk

    def head(self) -> tuple[int, int, int]:
        """(major type, additional information, argument), shortest form enforced."""
        initial = self.take(1)[0]
        major, info = initial >> 5, initial & 0x1F
        if info < 24:
            return major, info, info
        if info not in _ARGUMENT_BYTES:
            raise Refused(MALFORMED, "indefinite length or reserved additional information")
        count, smallest = _ARGUMENT_BYTES[info]
        argument = int.from_bytes(self.take(count), "big")
        if argument < smallest or major == _MAJOR_SIMPLE:
            raise Refused(MALFORMED, "non-shortest head, or a float")
        return major, info, argument

    def item(self, depth: int) -> Any:
        """Check one item (depth counted as section 1 says) and return its value."""
        if depth > DEPTH_MAX:
            raise Refused(MALFORMED, "nesting deeper than DEPTH_MAX")
        major, info, argument = self.head()
        if major == _MAJOR_UINT:
            return argument
        if major == _MAJOR_NINT:
            return -1 - argument
        if major == _MAJOR_BYTES:
            return self.take(argument)
        if major == _MAJOR_TEXT:
            try:
                return self.take(argument).decode("utf-8")
            except UnicodeDecodeError:
                raise Refused(MALFORMED, "text that is not UTF-8") from None
        if major == _MAJOR_ARRAY:
            if argument > ITEMS_MAX:
                raise Refused(MALFORMED, "array larger than ITEMS_MAX")
            return [self.item(depth + 1) for _ in range(argument)]
        if major == _MAJOR_MAP:
            return self.map(depth, argument)
        if major == _MAJOR_TAG:
            if argument != COSE_MAC0_TAG:
                raise Refused(MALFORMED, f"tag {argument}")
            return cbor2.CBORTag(argument, self.item(depth + 1))
        if info not in _SIMPLE_VALUES:
            raise Refused(MALFORMED, "simple value other than false, true, null")
        return _SIMPLE_VALUES[info]

    def map(self, depth: int, count: int) -> dict[Any, Any]:
        if count > ITEMS_MAX:
            raise Refused(MALFORMED, "map larger than ITEMS_MAX")
        value: dict[Any, Any] = {}
        previous = b""
        for index in range(count):
            start = self.position
            key = self.item(depth + 1)
            encoded = self.data[start:self.position]
            if index and encoded <= previous:
                raise Refused(MALFORMED, "map keys out of bytewise order, or repeated")
            previous = encoded
            if isinstance(key, bool) or not isinstance(key, int | str):
                key = ForeignKey(encoded)
            value[key] = self.item(depth + 1)
        return value


def scan(data: bytes) -> None:
    """Refused(message_malformed) unless `data` is one item of tilltap's deterministic subset.

    Depth as section 1 counts it: 0 at the outermost item, each array or map element (key or
    value) and each tagged item one deeper than its container; an item at depth 9 is refused.
    """
    decode(data)
