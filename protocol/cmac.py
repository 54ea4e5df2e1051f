"""AES-CMAC (RFC 4493 / NIST SP 800-38B) and NXP's 8-byte truncation MACt.

    L  = E(K, 0^128);  K1 = double(L);  K2 = double(K1)     (double: shift left, ^0x87 on carry)
    last block = M_n ^ K1 if M_n is a whole block, else (M_n || 80 00..) ^ K2
    CMAC = last block of AES-CBC(K, IV 0, M_1 .. M_n-1 || last block)

NXP secure messaging (NTAG 424 DNA, DESFire EV2/EV3; AN12196) sends MACt: the 8 bytes at odd
indexes 1, 3, .., 15 of the 16-byte CMAC. Checked against RFC 4493 section 4 and the AN12196
vectors on both interpreters, and against `cryptography`'s CMAC on CPython.
"""

from protocol import aes

MAC_BYTES = aes.BLOCK_BYTES
MAC_T_BYTES = 8

_PADDING = b"\x80" + bytes(aes.BLOCK_BYTES - 1)


def _double(block):
    """Multiply by x in GF(2^128) (RFC 4493 section 2.3): shift left one bit, 0x87 on carry."""
    out = bytearray(aes.BLOCK_BYTES)
    carry = 0
    for i in range(aes.BLOCK_BYTES - 1, -1, -1):
        value = block[i]
        out[i] = ((value << 1) | carry) & 0xFF
        carry = value >> 7
    if carry:
        out[-1] ^= 0x87
    return bytes(out)


def subkeys(key):
    """(K1, K2) of RFC 4493 section 2.3 for `key`."""
    first = _double(aes.encrypt_block(key, aes.ZERO_BLOCK))
    return first, _double(first)


def pad(data):
    """ISO/IEC 9797-1 method 2: 80 then zeros up to the next whole block; always adds a byte."""
    return data + _PADDING[: aes.BLOCK_BYTES - len(data) % aes.BLOCK_BYTES]


def mac_with_subkeys(key, key1, key2, message):
    """CMAC of `message` with subkeys already computed (callers that MAC often keep them)."""
    whole = len(message) - len(message) % aes.BLOCK_BYTES
    if message and whole == len(message):
        head = message[: whole - aes.BLOCK_BYTES]
        last = aes.xor_bytes(message[whole - aes.BLOCK_BYTES :], key1)
    else:
        head = message[:whole]
        last = aes.xor_bytes(pad(message[whole:]), key2)
    return aes.cbc_encrypt(key, aes.ZERO_BLOCK, bytes(head) + last)[-aes.BLOCK_BYTES :]


def aes_cmac(key, message):
    """The 16-byte AES-CMAC of `message` (bytes, any length) under the 16-byte `key`."""
    key1, key2 = subkeys(key)
    return mac_with_subkeys(key, key1, key2, message)


def truncate(mac):
    """NXP MACt: bytes 1, 3, 5, .., 15 of a 16-byte CMAC (AN12196)."""
    assert len(mac) == MAC_BYTES
    return bytes(mac[i] for i in range(1, MAC_BYTES, 2))


def mac_t(key, message):
    """The 8-byte NXP MACt of `message` under `key`."""
    return truncate(aes_cmac(key, message))
