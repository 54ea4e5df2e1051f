"""Deterministic CBOR (RFC 8949 section 4.2.1, "core deterministic encoding").

A deliberately small subset: unsigned and negative integers, byte strings, text strings,
arrays, maps, tags, false/true/null. Floats, undefined, indefinite lengths and big-number tags
are refused in both directions: money is integers, and one value must have exactly one
encoding so that a MAC or a digest over it is reproducible on every interpreter.

The decoder is strict because it faces the network: it rejects non-shortest heads, unsorted
or duplicate map keys, trailing bytes, nesting deeper than DEPTH_MAX and containers larger
than ITEMS_MAX. Every refusal is a `DecodeError` with reason `message_malformed`.
"""

import struct

from protocol.errors import DecodeError
from protocol.reasons import MESSAGE_MALFORMED

try:
    from micropython import const
except ImportError:  # CPython

    def const(value):
        return value


DEPTH_MAX = const(8)
ITEMS_MAX = const(256)
UINT_MAX = const(0xFFFFFFFFFFFFFFFF)

_MAJOR_UINT = const(0)
_MAJOR_NINT = const(1)
_MAJOR_BYTES = const(2)
_MAJOR_TEXT = const(3)
_MAJOR_ARRAY = const(4)
_MAJOR_MAP = const(5)
_MAJOR_TAG = const(6)
_MAJOR_SIMPLE = const(7)


class Tag:
    """A tagged item: `Tag(17, [...])` is a COSE_Mac0 (RFC 9052 section 2)."""

    def __init__(self, tag, value):
        self.tag = tag
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Tag) and self.tag == other.tag and self.value == other.value

    def __repr__(self):
        return "Tag(%d, %r)" % (self.tag, self.value)


def _head_into(out, major, n):
    # Appended byte by byte: no bytes object per head (most heads are one byte).
    assert 0 <= n <= UINT_MAX, "CBOR argument out of range"
    m = major << 5
    if n < 24:
        out.append(m | n)
    elif n < 0x100:
        out.append(m | 24)
        out.append(n)
    elif n < 0x10000:
        out.append(m | 25)
        out.extend(struct.pack(">H", n))
    elif n < 0x100000000:
        out.append(m | 26)
        out.extend(struct.pack(">I", n))
    else:
        out.append(m | 27)
        out.extend(struct.pack(">Q", n))


# Built once: a tuple written in the isinstance call is built again on every call.
_BYTES_TYPES = (bytes, bytearray, memoryview)
_ARRAY_TYPES = (list, tuple)


def _uint_keys(mapping):
    # A loop, not all(...): MicroPython would build a generator for every map.
    for key in mapping:  # noqa: SIM110
        if type(key) is not int or key < 0:
            return False
    return True


def _encode_into(out, value):
    # bool first: on both interpreters True is also an int.
    if value is False:
        out.append(0xF4)
    elif value is True:
        out.append(0xF5)
    elif value is None:
        out.append(0xF6)
    elif isinstance(value, int):
        if value >= 0:
            _head_into(out, _MAJOR_UINT, value)
        else:
            _head_into(out, _MAJOR_NINT, -1 - value)
    elif isinstance(value, _BYTES_TYPES):
        _head_into(out, _MAJOR_BYTES, len(value))
        out.extend(value)
    elif isinstance(value, str):
        raw = value.encode("utf-8")
        _head_into(out, _MAJOR_TEXT, len(raw))
        out.extend(raw)
    elif isinstance(value, _ARRAY_TYPES):
        _head_into(out, _MAJOR_ARRAY, len(value))
        for item in value:
            _encode_into(out, item)
    elif isinstance(value, dict):
        _head_into(out, _MAJOR_MAP, len(value))
        if _uint_keys(value):
            # Every message map: unsigned keys sort by their encoded bytes exactly as by
            # value (a longer head means a larger number, and same-length heads are
            # big-endian), so no key is encoded twice.
            for key in sorted(value):
                if key < 24:
                    out.append(key)  # its whole head: major type 0, the value itself
                else:
                    _head_into(out, _MAJOR_UINT, key)
                _encode_into(out, value[key])
            return
        pairs = []
        for key in value:
            pairs.append((encode(key), key))
        # Core deterministic encoding: keys sorted by their encoded bytes.
        pairs.sort(key=lambda pair: pair[0])
        for encoded_key, key in pairs:
            out.extend(encoded_key)
            _encode_into(out, value[key])
    elif isinstance(value, Tag):
        _head_into(out, _MAJOR_TAG, value.tag)
        _encode_into(out, value.value)
    else:
        raise AssertionError("type not encodable in tilltap CBOR: %r" % (type(value),))


def encode(value):
    """Return the deterministic encoding of `value` as bytes."""
    out = bytearray()
    _encode_into(out, value)
    return bytes(out)


def _fail(detail):
    raise DecodeError(MESSAGE_MALFORMED, detail)


class _Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        end = self.pos + n
        if end > len(self.data):
            _fail("truncated")
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def head(self):
        initial = self.take(1)[0]
        major = initial >> 5
        info = initial & 0x1F
        if info < 24:
            return major, info, info
        if info == 24:
            n = self.take(1)[0]
            if n < 24:
                _fail("non-shortest head")
        elif info == 25:
            n = struct.unpack(">H", self.take(2))[0]
            if n < 0x100:
                _fail("non-shortest head")
        elif info == 26:
            n = struct.unpack(">I", self.take(4))[0]
            if n < 0x10000:
                _fail("non-shortest head")
        elif info == 27:
            n = struct.unpack(">Q", self.take(8))[0]
            if n < 0x100000000:
                _fail("non-shortest head")
        else:
            _fail("indefinite length or reserved additional information")
        return major, info, n


def _decode_item(reader, depth):
    if depth > DEPTH_MAX:
        _fail("nesting deeper than DEPTH_MAX")
    start = reader.pos
    major, info, n = reader.head()
    if major == _MAJOR_UINT:
        return n
    if major == _MAJOR_NINT:
        return -1 - n
    if major == _MAJOR_BYTES:
        return bytes(reader.take(n))
    if major == _MAJOR_TEXT:
        try:
            return bytes(reader.take(n)).decode("utf-8")
        except UnicodeError:
            _fail("text is not UTF-8")
    if major == _MAJOR_ARRAY:
        if n > ITEMS_MAX:
            _fail("array longer than ITEMS_MAX")
        return [_decode_item(reader, depth + 1) for _ in range(n)]
    if major == _MAJOR_MAP:
        return _decode_map(reader, depth, n)
    if major == _MAJOR_TAG:
        return Tag(n, _decode_item(reader, depth + 1))
    # Major type 7: only false, true, null; their head must be the one-byte form.
    if info == 20:
        return False
    if info == 21:
        return True
    if info == 22:
        return None
    reader.pos = start
    _fail("float or unsupported simple value")


def _decode_map(reader, depth, n):
    if n > ITEMS_MAX:
        _fail("map larger than ITEMS_MAX")
    result = {}
    previous_key = None
    for _ in range(n):
        key_start = reader.pos
        key = _decode_item(reader, depth + 1)
        encoded_key = bytes(reader.data[key_start : reader.pos])
        if previous_key is not None and encoded_key <= previous_key:
            _fail("map keys not in deterministic order or duplicated")
        previous_key = encoded_key
        # Integers and text only: a bool, null or byte-string key would be another kind of
        # key, and in Python `true` and 1 would even be the same one.
        if isinstance(key, bool) or not isinstance(key, (int, str)):
            _fail("map key must be an integer or a text string")
        result[key] = _decode_item(reader, depth + 1)
    return result


def decode(data):
    """Decode exactly one deterministic CBOR item; anything else raises DecodeError."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        _fail("input is not bytes")
    reader = _Reader(bytes(data))
    value = _decode_item(reader, 0)
    if reader.pos != len(reader.data):
        _fail("trailing bytes after the item")
    return value
