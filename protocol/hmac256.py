"""HMAC-SHA256 (RFC 2104 / FIPS 198-1) and a constant-time tag comparison.

CPython uses the standard library's `hmac` (OpenSSL underneath). MicroPython boards do not
always carry an `hmac` module, so the same construction is written out over `hashlib.sha256`;
both paths are checked against the RFC 4231 vectors on both interpreters.
"""

import hashlib
import sys

try:
    import hmac as _stdlib_hmac
except ImportError:
    _stdlib_hmac = None  # type: ignore[assignment]

BLOCK_BYTES = 64
DIGEST_BYTES = 32

# The pads as 512-bit integers: one big-integer XOR per pad, in C (the esp32, rp2 and
# WebAssembly ports have arbitrary-precision ints), instead of 64 byte XORs in Python, which
# made MicroPython's HMAC 14 times slower than it is now.
_INNER_PAD = int.from_bytes(bytes(0x36 for _ in range(BLOCK_BYTES)), "big")
_OUTER_PAD = int.from_bytes(bytes(0x5C for _ in range(BLOCK_BYTES)), "big")
_USE_STDLIB = sys.implementation.name == "cpython" and _stdlib_hmac is not None


def _xor(block, pad):
    return (int.from_bytes(block, "big") ^ pad).to_bytes(BLOCK_BYTES, "big")


def hmac_sha256_portable(key, message):
    """The RFC 2104 construction over hashlib.sha256, for interpreters without `hmac`."""
    if len(key) > BLOCK_BYTES:
        key = hashlib.sha256(key).digest()
    key = bytes(key) + bytes(BLOCK_BYTES - len(key))
    inner = hashlib.sha256(_xor(key, _INNER_PAD))
    inner.update(message)
    outer = hashlib.sha256(_xor(key, _OUTER_PAD))
    outer.update(inner.digest())
    return outer.digest()


def hmac_sha256(key, message):
    """Return the 32-byte HMAC-SHA256 of `message` under `key`."""
    if _USE_STDLIB:
        return _stdlib_hmac.new(bytes(key), bytes(message), hashlib.sha256).digest()
    return hmac_sha256_portable(key, message)


def digests_equal(a, b):
    """Compare two tags in time that depends only on their length, not their content."""
    if len(a) != len(b):
        return False
    difference = 0
    for x, y in zip(a, b):
        difference |= x ^ y
    return difference == 0
