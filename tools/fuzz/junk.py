"""Unsigned hostile payloads: raw CBOR of every shape the wire format forbids, and bytes
derived from real messages (pure: a `random.Random` in, bytes out).

`protocol.cbor` only writes the deterministic subset, so this module writes CBOR by hand:
heads of any width (non-shortest ones included), indefinite lengths, floats, undefined,
unsorted and duplicate map keys, byte and text strings that claim more bytes than follow,
nesting past DEPTH_MAX, and tags anywhere.

    head(major, n, width)      one CBOR head; width 0 = shortest, 1/2/4/8 = forced
    raw_map(pairs)             a map of pre-encoded (key, value) pairs, in the order given
    random_item(rng, depth)    one random CBOR item, well-formed or not
    unsigned_payload(rng, real)  (class, payload) of one unsigned hostile message
"""

from __future__ import annotations

import random
import struct

from protocol import cbor

# Sizes the campaign aims at: the gateway's limit, the broker's packet limit.
MESSAGE_BYTES_MAX = 1024  # protocol/messages.py MESSAGE_BYTES_MAX
RANDOM_BYTES_MAX = MESSAGE_BYTES_MAX + 64
# Junk stays well under the broker's packet limit (tools/mosquitto.py PACKET_BYTES_MAX), which
# would close the sender's connection: the classes past the limits are sent on purpose.
JUNK_BYTES_MAX = 4096
ITEM_DEPTH_MAX = 11  # past the decoder's DEPTH_MAX (8), so deep items are refused too
ITEMS_PER_CONTAINER_MAX = 5  # with SCALAR_SHARE, a container has < 1 container on average
SCALAR_SHARE = 0.6
CLAIMED_LENGTH_CHOICES = (24, 255, 256, 65_535, 2**32 - 1, 2**64 - 1)

_WIDTH_INFO = {1: 24, 2: 25, 4: 26, 8: 27}
_WIDTH_FORMAT = {1: ">B", 2: ">H", 4: ">I", 8: ">Q"}


def head(major: int, n: int, width: int = 0) -> bytes:
    """A CBOR head: major type and argument, shortest (width 0) or in `width` bytes."""
    if width == 0:
        if n < 24:
            return bytes(((major << 5) | n,))
        width = 1 if n < 0x100 else 2 if n < 0x10000 else 4 if n < 0x100000000 else 8
    return bytes(((major << 5) | _WIDTH_INFO[width],)) + struct.pack(_WIDTH_FORMAT[width], n)


def raw_map(pairs: list[tuple[bytes, bytes]]) -> bytes:
    """A definite map of encoded (key, value) pairs in the order given: unsorted or
    duplicated keys stay as they are."""
    return head(5, len(pairs)) + b"".join(key + value for key, value in pairs)


def _random_width(rng: random.Random, n: int) -> int:
    """Mostly the shortest head; now and then a longer one (non-shortest, refused)."""
    if rng.random() < 0.8:
        return 0
    fitting = [w for w in (1, 2, 4, 8) if n < 256**w]
    return rng.choice(fitting)


def _random_scalar(rng: random.Random) -> bytes:
    roll = rng.randrange(9)
    if roll == 0:
        n = rng.choice((0, 1, 23, 24, 255, 256, 2**32, 2**64 - 1, rng.getrandbits(64)))
        return head(rng.choice((0, 1)), n, _random_width(rng, n))
    if roll == 1:
        data = rng.randbytes(rng.randrange(40))
        return head(2, len(data), _random_width(rng, len(data))) + data
    if roll == 2:
        text = "".join(rng.choice("aZ09_-é\u20ac\x00") for _ in range(rng.randrange(30)))
        raw = text.encode()
        return head(3, len(raw), _random_width(rng, len(raw))) + raw
    if roll == 3:  # invalid UTF-8 in a text string
        data = rng.choice((b"\xff", b"\xc3", b"\xed\xa0\x80", rng.randbytes(5)))
        return head(3, len(data)) + data
    if roll == 4:  # false, true, null, undefined, a simple value, a reserved one
        return bytes((rng.choice((0xF4, 0xF5, 0xF6, 0xF7, 0xE0, 0xFC, 0xFF)),))
    if roll == 5:  # half, single and double floats
        width = rng.choice((2, 4, 8))
        return bytes((0xF9 if width == 2 else 0xFA if width == 4 else 0xFB,)) + rng.randbytes(
            width)
    if roll == 6:  # a string claiming far more bytes than follow
        claimed = rng.choice(CLAIMED_LENGTH_CHOICES)
        return head(rng.choice((2, 3)), claimed) + rng.randbytes(rng.randrange(8))
    if roll == 7:  # indefinite-length string
        chunk = rng.randbytes(rng.randrange(6))
        return b"\x5f" + head(2, len(chunk)) + chunk + b"\xff"
    return bytes((rng.randrange(256),))  # any initial byte, reserved ones included


def random_item(rng: random.Random, depth: int = 0) -> bytes:
    """One random CBOR item, well-formed or not; containers nest up to ITEM_DEPTH_MAX. At
    most JUNK_BYTES_MAX (a larger one is cut, which only makes it more broken)."""
    return _random_item(rng, depth)[:JUNK_BYTES_MAX]


def _random_item(rng: random.Random, depth: int) -> bytes:
    if depth >= ITEM_DEPTH_MAX or rng.random() < SCALAR_SHARE:
        return _random_scalar(rng)
    roll = rng.randrange(6)
    count = rng.randrange(ITEMS_PER_CONTAINER_MAX)
    if roll == 0:
        return head(4, count) + b"".join(_random_item(rng, depth + 1) for _ in range(count))
    if roll == 1:
        pairs = [(_random_item(rng, depth + 1), _random_item(rng, depth + 1))
                 for _ in range(count)]
        return raw_map(pairs)
    if roll == 2:  # a map with integer keys, sometimes repeated or out of order
        keys = [cbor.encode(rng.randrange(-3, 64)) for _ in range(count)]
        if keys and rng.random() < 0.5:
            keys.append(rng.choice(keys))
        return raw_map([(key, _random_item(rng, depth + 1)) for key in keys])
    if roll == 3:
        tag = rng.choice((0, 1, 2, 3, 17, 18, 55799, 2**32))
        return head(6, tag) + _random_item(rng, depth + 1)
    if roll == 4:  # indefinite-length array or map
        body = b"".join(_random_item(rng, depth + 1) for _ in range(count))
        return bytes((rng.choice((0x9F, 0xBF)),)) + body + b"\xff"
    claimed = rng.choice(CLAIMED_LENGTH_CHOICES)  # an array or map claiming too many entries
    return head(rng.choice((4, 5)), claimed) + _random_item(rng, depth + 1)


def _deep(rng: random.Random) -> bytes:
    """Arrays (or maps, or tags) nested past the decoder's depth limit."""
    depth = rng.randrange(9, 64)
    opener = rng.choice((b"\x81", b"\xa1\x00", b"\xd1"))
    return opener * depth + b"\x00"


def unsigned_payload(rng: random.Random, real: list[bytes]) -> tuple[str, bytes]:
    """One unsigned hostile payload and its class. `real`: recent genuine messages to cut,
    extend and splice (may be empty)."""
    roll = rng.randrange(10)
    if real and roll < 3:
        message = rng.choice(real)
        if roll == 0:
            return "truncated", message[: rng.randrange(len(message))]
        if roll == 1:
            return "extended", message + rng.randbytes(rng.randrange(1, 64))
        cut = rng.randrange(len(message))
        other = rng.choice(real)
        return "spliced", message[:cut] + other[rng.randrange(len(other)):]
    if roll < 5:
        return "random_bytes", rng.randbytes(rng.randrange(RANDOM_BYTES_MAX))
    if roll == 5:
        return "cbor_deep", _deep(rng)
    return "cbor_junk", random_item(rng)


def oversize_payload(rng: random.Random, size: int) -> bytes:
    """`size` bytes that start like a COSE_Mac0 (tag 17, an array), then noise."""
    start = b"\xd1\x84\x43\xa1\x01\x05"
    return (start + rng.randbytes(max(0, size - len(start))))[:size]
