"""AES-128 and AES-CMAC against published vectors, on CPython and MicroPython: the portable
AES code, the interpreter's back end, and the cryptolib adaptor over a stand-in module."""

from mpytest import expect_raises, load_json
from protocol import aes, cmac

# FIPS 197 Appendix C.1 (AES-128 example vectors).
FIPS197_KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
FIPS197_PLAINTEXT = bytes.fromhex("00112233445566778899aabbccddeeff")
FIPS197_CIPHERTEXT = bytes.fromhex("69c4e0d86a7b0430d8cdb78070b4c55a")

# NIST SP 800-38A Appendix F.2.1 CBC-AES128.Encrypt (F.2.2 decrypts the same values).
SP800_38A_KEY = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
SP800_38A_IV = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
SP800_38A_PLAINTEXT = bytes.fromhex(
    "6bc1bee22e409f96e93d7e117393172a"
    "ae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52ef"
    "f69f2445df4f9b17ad2b417be66c3710"
)
SP800_38A_CIPHERTEXT = bytes.fromhex(
    "7649abac8119b246cee98e9b12e9197d"
    "5086cb9b507219ee95db113a917678b2"
    "73bed6b8e3c1743b7116e69e22229516"
    "3ff1caa1681fac09120eca307586e1a7"
)


def with_portable_aes(function):
    """Run `function()` with the portable AES code as the back end, whatever the interpreter."""
    saved = aes._cbc_encrypt, aes._cbc_decrypt
    aes._cbc_encrypt, aes._cbc_decrypt = aes.cbc_encrypt_portable, aes.cbc_decrypt_portable
    try:
        return function()
    finally:
        aes._cbc_encrypt, aes._cbc_decrypt = saved


def test_portable_aes_encrypts_and_decrypts_the_fips197_c1_block():
    assert aes.encrypt_block_portable(FIPS197_KEY, FIPS197_PLAINTEXT) == FIPS197_CIPHERTEXT
    assert aes.decrypt_block_portable(FIPS197_KEY, FIPS197_CIPHERTEXT) == FIPS197_PLAINTEXT


def test_the_interpreters_back_end_encrypts_and_decrypts_the_fips197_c1_block():
    assert aes.BACKEND in ("cryptography", "cryptolib", "portable")
    assert aes.encrypt_block(FIPS197_KEY, FIPS197_PLAINTEXT) == FIPS197_CIPHERTEXT
    assert aes.decrypt_block(FIPS197_KEY, FIPS197_CIPHERTEXT) == FIPS197_PLAINTEXT


def test_portable_cbc_matches_sp800_38a_f21_and_f22():
    encrypted = aes.cbc_encrypt_portable(SP800_38A_KEY, SP800_38A_IV, SP800_38A_PLAINTEXT)
    assert encrypted == SP800_38A_CIPHERTEXT
    decrypted = aes.cbc_decrypt_portable(SP800_38A_KEY, SP800_38A_IV, SP800_38A_CIPHERTEXT)
    assert decrypted == SP800_38A_PLAINTEXT


def test_the_interpreters_cbc_matches_sp800_38a_f21_and_f22():
    assert aes.cbc_encrypt(SP800_38A_KEY, SP800_38A_IV, SP800_38A_PLAINTEXT) == SP800_38A_CIPHERTEXT
    assert aes.cbc_decrypt(SP800_38A_KEY, SP800_38A_IV, SP800_38A_CIPHERTEXT) == SP800_38A_PLAINTEXT


def test_cbc_of_no_data_is_no_data_and_partial_blocks_are_programmer_errors():
    assert aes.cbc_encrypt(SP800_38A_KEY, SP800_38A_IV, b"") == b""
    assert aes.cbc_encrypt_portable(SP800_38A_KEY, SP800_38A_IV, b"") == b""
    expect_raises(AssertionError, aes.cbc_encrypt, SP800_38A_KEY, SP800_38A_IV, bytes(15))
    expect_raises(AssertionError, aes.cbc_decrypt_portable, SP800_38A_KEY, bytes(8), bytes(16))
    expect_raises(AssertionError, aes.encrypt_block_portable, bytes(24), bytes(16))


class _StandInCryptolib:
    """Behaves like MicroPython's cryptolib for mode 2 (CBC): one direction per object."""

    calls = []

    class aes:  # noqa: N801 - the name cryptolib uses
        def __init__(self, key, mode, iv):
            assert mode == 2
            _StandInCryptolib.calls.append(mode)
            self.key, self.iv, self.direction = key, iv, None

        def _use(self, direction):
            assert self.direction in (None, direction), "cryptolib objects are one-way"
            self.direction = direction

        def encrypt(self, data):
            self._use("encrypt")
            return aes.cbc_encrypt_portable(self.key, self.iv, data)

        def decrypt(self, data):
            self._use("decrypt")
            return aes.cbc_decrypt_portable(self.key, self.iv, data)


def test_the_cryptolib_adaptor_uses_cbc_mode_with_the_iv():
    _StandInCryptolib.calls.clear()
    encrypt, decrypt = aes.cryptolib_backend(_StandInCryptolib)
    assert encrypt(SP800_38A_KEY, SP800_38A_IV, SP800_38A_PLAINTEXT) == SP800_38A_CIPHERTEXT
    assert decrypt(SP800_38A_KEY, SP800_38A_IV, SP800_38A_CIPHERTEXT) == SP800_38A_PLAINTEXT
    assert encrypt(SP800_38A_KEY, SP800_38A_IV, b"") == b""
    assert _StandInCryptolib.calls == [2, 2]


def _rfc4493():
    return load_json("rfc.json")["aes_cmac_rfc4493"]


def _check_rfc4493():
    vectors = _rfc4493()
    key = bytes.fromhex(vectors["subkeys"]["key"])
    assert aes.encrypt_block(key, bytes(16)).hex() == vectors["subkeys"]["AES_128_K_0"]
    key1, key2 = cmac.subkeys(key)
    assert key1.hex() == vectors["subkeys"]["K1"]
    assert key2.hex() == vectors["subkeys"]["K2"]
    assert len(vectors["examples"]) == 4
    for example in vectors["examples"]:
        message = bytes.fromhex(example["message"])
        assert len(message) == example["len"]
        assert cmac.aes_cmac(bytes.fromhex(example["key"]), message).hex() == example["cmac"]


def test_cmac_subkeys_and_macs_match_rfc4493_section_4():
    _check_rfc4493()


def test_cmac_over_the_portable_aes_matches_rfc4493_section_4():
    with_portable_aes(_check_rfc4493)


def test_mac_t_is_the_odd_indexed_bytes_of_the_cmac_as_in_an12196():
    # AN12196 WriteData in CommMode Full (ntag424_an12196.json): CMAC and the MACt sent.
    vector = load_json("ntag424_an12196.json")["vectors"][3]
    assert vector["id"] == "an12196_writedata_commmode_full_ndef"
    full = bytes.fromhex(vector["CMAC"])
    assert cmac.truncate(full).hex().upper() == vector["MACt"]
    assert cmac.truncate(bytes(range(16))) == bytes((1, 3, 5, 7, 9, 11, 13, 15))


def test_padding_always_adds_80_and_fills_the_block():
    assert cmac.pad(b"") == b"\x80" + bytes(15)
    assert cmac.pad(bytes(15)) == bytes(15) + b"\x80"
    assert cmac.pad(bytes(16)) == bytes(16) + b"\x80" + bytes(15)
