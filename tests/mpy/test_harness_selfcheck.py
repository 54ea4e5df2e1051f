"""The tests/mpy harness itself: the interpreter under test has what protocol/ relies on.

Runs on CPython (pytest) and on real MicroPython (tests/test_micropython_harness.py).
"""

import hashlib
import struct

from mpytest import expect_raises, load_json

# FIPS 180-2, appendix B.1: SHA-256 of the one-block message "abc".
SHA256_OF_ABC_HEX = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


def test_sha256_of_abc_is_the_fips_180_2_digest():
    assert hashlib.sha256(b"abc").digest() == bytes.fromhex(SHA256_OF_ABC_HEX)


def test_struct_packs_big_endian_unsigned_int():
    assert struct.pack(">I", 1) == b"\x00\x00\x00\x01"
    assert struct.unpack(">I", b"\x01\x02\x03\x04") == (0x01020304,)


def test_expect_raises_returns_the_exception_and_fails_when_nothing_is_raised():
    error = expect_raises(ValueError, int, "not a number")
    assert isinstance(error, ValueError)
    nothing_raised = expect_raises(AssertionError, expect_raises, ValueError, int, "7")
    assert "ValueError" in str(nothing_raised)


def test_vector_files_are_found():
    vectors = load_json("rfc.json")
    assert "aes_cmac_rfc4493" in vectors
