"""AES-128 (FIPS 197): single blocks and CBC with an explicit IV, no padding.

Three back ends, chosen once at import, all with the same results:

    CPython       `cryptography` (OpenSSL)
    MicroPython   `cryptolib.aes` where the port has it (ECB/CBC in C)
    otherwise     the portable code below, written from FIPS 197

The portable code keeps three 256-byte tables (S-box, inverse S-box, multiply-by-2), built at
import from the GF(2^8) arithmetic of FIPS 197 section 4, and works on one 16-byte bytearray
state per block: about 0.5 ms a block on MicroPython under Node. It is checked against the
FIPS 197 Appendix C.1 and NIST SP 800-38A F.2 vectors on both interpreters and against
`cryptography` with random inputs on CPython. Callers pad (NXP rules differ per command);
lengths that are not whole blocks are programmer errors (assertions).
"""

import sys

BLOCK_BYTES = 16
KEY_BYTES = 16
ZERO_BLOCK = bytes(BLOCK_BYTES)

_ROUNDS = 10
_ROUND_KEYS_BYTES = BLOCK_BYTES * (_ROUNDS + 1)


def xor_bytes(a, b):
    """a XOR b, byte by byte (equal lengths)."""
    assert len(a) == len(b)
    return bytes(x ^ y for x, y in zip(a, b))


def _build_tables():
    """S-box and inverse S-box (FIPS 197 section 5.1.1) and the xtime() table (section 4.2.1)."""
    times_two = bytearray(256)
    for a in range(256):
        times_two[a] = ((a << 1) ^ (0x1B if a & 0x80 else 0)) & 0xFF
    # Powers of the generator 3 enumerate the 255 non-zero field elements: exp[log[a]] == a.
    exp = bytearray(255)
    log = bytearray(256)
    element = 1
    for power in range(255):
        exp[power] = element
        log[element] = power
        element ^= times_two[element]  # element * 3 = element * 2 + element
    sbox = bytearray(256)
    inverse_sbox = bytearray(256)
    for a in range(256):
        inverse = exp[(255 - log[a]) % 255] if a else 0
        s = inverse
        rotated = inverse
        for _ in range(4):  # affine transformation: b ^ rotl(b,1..4) ^ 0x63
            rotated = ((rotated << 1) | (rotated >> 7)) & 0xFF
            s ^= rotated
        s ^= 0x63
        sbox[a] = s
        inverse_sbox[s] = a
    return bytes(sbox), bytes(inverse_sbox), bytes(times_two)


_SBOX, _INVERSE_SBOX, _TIMES_TWO = _build_tables()


def _expand_key(key):
    """FIPS 197 section 5.2 KeyExpansion: 11 round keys, 176 bytes."""
    assert len(key) == KEY_BYTES, "AES-128 key must be 16 bytes"
    sbox = _SBOX
    words = bytearray(_ROUND_KEYS_BYTES)
    words[0:KEY_BYTES] = key
    round_constant = 1
    for i in range(KEY_BYTES, _ROUND_KEYS_BYTES, 4):
        t0, t1, t2, t3 = words[i - 4], words[i - 3], words[i - 2], words[i - 1]
        if i % KEY_BYTES == 0:  # RotWord, SubWord, Rcon
            t0, t1, t2, t3 = sbox[t1] ^ round_constant, sbox[t2], sbox[t3], sbox[t0]
            round_constant = _TIMES_TWO[round_constant]
        words[i] = words[i - 16] ^ t0
        words[i + 1] = words[i - 15] ^ t1
        words[i + 2] = words[i - 14] ^ t2
        words[i + 3] = words[i - 13] ^ t3
    return words


def _encrypt_with(round_keys, block):
    """Cipher (FIPS 197 section 5.1); state is column-major: byte r of column c at 4*c + r."""
    sbox = _SBOX
    times_two = _TIMES_TWO
    w = round_keys
    state = bytearray(BLOCK_BYTES)
    for i in range(BLOCK_BYTES):
        state[i] = block[i] ^ w[i]
    spare = bytearray(BLOCK_BYTES)
    k = BLOCK_BYTES
    for _ in range(_ROUNDS - 1):
        for c in range(0, BLOCK_BYTES, 4):
            # SubBytes and ShiftRows: row r of column c comes from column c + r.
            a0 = sbox[state[c]]
            a1 = sbox[state[(c + 5) & 15]]
            a2 = sbox[state[(c + 10) & 15]]
            a3 = sbox[state[(c + 15) & 15]]
            # MixColumns: 2*a0 + 3*a1 + a2 + a3 == a0 ^ all ^ 2*(a0 ^ a1), and so on round.
            every = a0 ^ a1 ^ a2 ^ a3
            spare[c] = a0 ^ every ^ times_two[a0 ^ a1] ^ w[k + c]
            spare[c + 1] = a1 ^ every ^ times_two[a1 ^ a2] ^ w[k + c + 1]
            spare[c + 2] = a2 ^ every ^ times_two[a2 ^ a3] ^ w[k + c + 2]
            spare[c + 3] = a3 ^ every ^ times_two[a3 ^ a0] ^ w[k + c + 3]
        state, spare = spare, state
        k += BLOCK_BYTES
    for c in range(0, BLOCK_BYTES, 4):  # last round: no MixColumns
        spare[c] = sbox[state[c]] ^ w[k + c]
        spare[c + 1] = sbox[state[(c + 5) & 15]] ^ w[k + c + 1]
        spare[c + 2] = sbox[state[(c + 10) & 15]] ^ w[k + c + 2]
        spare[c + 3] = sbox[state[(c + 15) & 15]] ^ w[k + c + 3]
    return bytes(spare)


def _decrypt_with(round_keys, block):
    """InvCipher (FIPS 197 section 5.3)."""
    inverse_sbox = _INVERSE_SBOX
    times_two = _TIMES_TWO
    w = round_keys
    k = _ROUNDS * BLOCK_BYTES
    state = bytearray(BLOCK_BYTES)
    for i in range(BLOCK_BYTES):
        state[i] = block[i] ^ w[k + i]
    spare = bytearray(BLOCK_BYTES)
    for _ in range(_ROUNDS - 1):
        k -= BLOCK_BYTES
        for c in range(0, BLOCK_BYTES, 4):
            # InvShiftRows and InvSubBytes: row r of column c comes from column c - r.
            a0 = inverse_sbox[state[c]] ^ w[k + c]
            a1 = inverse_sbox[state[(c + 13) & 15]] ^ w[k + c + 1]
            a2 = inverse_sbox[state[(c + 10) & 15]] ^ w[k + c + 2]
            a3 = inverse_sbox[state[(c + 7) & 15]] ^ w[k + c + 3]
            # InvMixColumns = MixColumns after multiplying the column by {04}x^2 + {05}.
            u = times_two[times_two[a0 ^ a2]]
            v = times_two[times_two[a1 ^ a3]]
            a0 ^= u
            a1 ^= v
            a2 ^= u
            a3 ^= v
            every = a0 ^ a1 ^ a2 ^ a3
            spare[c] = a0 ^ every ^ times_two[a0 ^ a1]
            spare[c + 1] = a1 ^ every ^ times_two[a1 ^ a2]
            spare[c + 2] = a2 ^ every ^ times_two[a2 ^ a3]
            spare[c + 3] = a3 ^ every ^ times_two[a3 ^ a0]
        state, spare = spare, state
    for c in range(0, BLOCK_BYTES, 4):  # last round: no InvMixColumns, round key 0
        spare[c] = inverse_sbox[state[c]] ^ w[c]
        spare[c + 1] = inverse_sbox[state[(c + 13) & 15]] ^ w[c + 1]
        spare[c + 2] = inverse_sbox[state[(c + 10) & 15]] ^ w[c + 2]
        spare[c + 3] = inverse_sbox[state[(c + 7) & 15]] ^ w[c + 3]
    return bytes(spare)


def _check_cbc(iv, data):
    assert len(iv) == BLOCK_BYTES, "IV must be 16 bytes"
    assert len(data) % BLOCK_BYTES == 0, "CBC data must be whole 16-byte blocks (pad first)"


def cbc_encrypt_portable(key, iv, data):
    """AES-128-CBC encryption in pure Python (whole blocks, no padding)."""
    _check_cbc(iv, data)
    round_keys = _expand_key(key)
    out = bytearray(len(data))
    chain = iv
    for start in range(0, len(data), BLOCK_BYTES):
        chain = _encrypt_with(round_keys, xor_bytes(data[start : start + BLOCK_BYTES], chain))
        out[start : start + BLOCK_BYTES] = chain
    return bytes(out)


def cbc_decrypt_portable(key, iv, data):
    """AES-128-CBC decryption in pure Python (whole blocks, no padding removed)."""
    _check_cbc(iv, data)
    round_keys = _expand_key(key)
    out = bytearray(len(data))
    chain = iv
    for start in range(0, len(data), BLOCK_BYTES):
        block = data[start : start + BLOCK_BYTES]
        out[start : start + BLOCK_BYTES] = xor_bytes(_decrypt_with(round_keys, block), chain)
        chain = block
    return bytes(out)


def encrypt_block_portable(key, block):
    assert len(block) == BLOCK_BYTES
    return _encrypt_with(_expand_key(key), block)


def decrypt_block_portable(key, block):
    assert len(block) == BLOCK_BYTES
    return _decrypt_with(_expand_key(key), block)


# ---------------------------------------------------------------------------------------------
# Back ends

_CRYPTOLIB_MODE_CBC = 2


def cryptolib_backend(cryptolib):
    """(cbc_encrypt, cbc_decrypt) over MicroPython's `cryptolib` module (passed in for tests).

    cryptolib.aes(key, 2, iv) is a CBC cipher object good for one direction only, so each
    call makes a new one.
    """

    def encrypt(key, iv, data):
        _check_cbc(iv, data)
        assert len(key) == KEY_BYTES
        if not data:
            return b""
        return bytes(cryptolib.aes(bytes(key), _CRYPTOLIB_MODE_CBC, bytes(iv)).encrypt(data))

    def decrypt(key, iv, data):
        _check_cbc(iv, data)
        assert len(key) == KEY_BYTES
        if not data:
            return b""
        return bytes(cryptolib.aes(bytes(key), _CRYPTOLIB_MODE_CBC, bytes(iv)).decrypt(data))

    return encrypt, decrypt


_cbc_encrypt = cbc_encrypt_portable
_cbc_decrypt = cbc_decrypt_portable
BACKEND = "portable"

if sys.implementation.name == "cpython":
    try:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    except ImportError:
        pass
    else:

        def _cbc_encrypt_openssl(key, iv, data):
            _check_cbc(iv, data)
            encryptor = Cipher(algorithms.AES(bytes(key)), modes.CBC(bytes(iv))).encryptor()
            return encryptor.update(bytes(data)) + encryptor.finalize()

        def _cbc_decrypt_openssl(key, iv, data):
            _check_cbc(iv, data)
            decryptor = Cipher(algorithms.AES(bytes(key)), modes.CBC(bytes(iv))).decryptor()
            return decryptor.update(bytes(data)) + decryptor.finalize()

        _cbc_encrypt = _cbc_encrypt_openssl
        _cbc_decrypt = _cbc_decrypt_openssl
        BACKEND = "cryptography"
else:
    try:
        import cryptolib as _cryptolib
    except ImportError:
        _cryptolib = None  # type: ignore[assignment, unused-ignore]  # boards without cryptolib
    if _cryptolib is not None:
        _cbc_encrypt, _cbc_decrypt = cryptolib_backend(_cryptolib)
        BACKEND = "cryptolib"


def cbc_encrypt(key, iv, data):
    """AES-128-CBC encryption of whole blocks under `key` from `iv`; returns bytes."""
    return _cbc_encrypt(key, iv, data)


def cbc_decrypt(key, iv, data):
    """AES-128-CBC decryption of whole blocks under `key` from `iv`; returns bytes."""
    return _cbc_decrypt(key, iv, data)


def encrypt_block(key, block):
    """E(key, block): one 16-byte block (ECB; equal to CBC with a zero IV)."""
    assert len(block) == BLOCK_BYTES
    return _cbc_encrypt(key, ZERO_BLOCK, block)


def decrypt_block(key, block):
    """D(key, block): one 16-byte block."""
    assert len(block) == BLOCK_BYTES
    return _cbc_decrypt(key, ZERO_BLOCK, block)
