"""The portable AES, CMAC, AN10922 and secure messaging agree with `cryptography` on random
inputs (CPython only); the MicroPython boards without cryptolib run exactly this code."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from cryptography.hazmat.primitives import cmac as crypto_cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st

from protocol import aes, cmac, keys, ntag424_files, ntag424_sm

keys_16 = st.binary(min_size=16, max_size=16)
blocks = st.binary(min_size=16, max_size=16)
whole_blocks = st.integers(0, 6).flatmap(lambda n: st.binary(min_size=16 * n, max_size=16 * n))


def openssl_cbc(key: bytes, iv: bytes, data: bytes, decrypt: bool = False) -> bytes:
    cipher = Cipher(algorithms.AES(key), modes.CBC(iv))
    context = cipher.decryptor() if decrypt else cipher.encryptor()
    return context.update(data) + context.finalize()


def openssl_cmac(key: bytes, message: bytes) -> bytes:
    mac = crypto_cmac.CMAC(algorithms.AES(key))
    mac.update(message)
    return mac.finalize()


def openssl_subkey_2(key: bytes) -> bytes:
    """RFC 4493 K2 computed from OpenSSL's E(K, 0) with integer arithmetic."""
    value = int.from_bytes(openssl_cbc(key, bytes(16), bytes(16)), "big")
    for _ in range(2):
        value = ((value << 1) ^ (0x87 if value >> 127 else 0)) & ((1 << 128) - 1)
    return value.to_bytes(16, "big")


@contextmanager
def portable_aes() -> Iterator[None]:
    """Route every AES call (CMAC, AN10922, secure messaging) through the portable code."""
    saved = aes._cbc_encrypt, aes._cbc_decrypt
    aes._cbc_encrypt, aes._cbc_decrypt = aes.cbc_encrypt_portable, aes.cbc_decrypt_portable
    try:
        yield
    finally:
        aes._cbc_encrypt, aes._cbc_decrypt = saved


def test_cpython_uses_the_cryptography_back_end() -> None:
    assert aes.BACKEND == "cryptography"


@given(keys_16, blocks)
def test_portable_block_encryption_equals_openssl(key: bytes, block: bytes) -> None:
    expected = openssl_cbc(key, bytes(16), block)
    assert aes.encrypt_block_portable(key, block) == expected
    assert aes.decrypt_block_portable(key, expected) == block


@given(keys_16, blocks, whole_blocks)
def test_portable_cbc_equals_openssl_both_ways(key: bytes, iv: bytes, data: bytes) -> None:
    assert aes.cbc_encrypt_portable(key, iv, data) == openssl_cbc(key, iv, data)
    assert aes.cbc_decrypt_portable(key, iv, data) == openssl_cbc(key, iv, data, decrypt=True)


@given(keys_16, st.binary(max_size=80))
def test_cmac_over_the_portable_aes_equals_openssl_cmac(key: bytes, message: bytes) -> None:
    expected = openssl_cmac(key, message)
    with portable_aes():
        assert cmac.aes_cmac(key, message) == expected
        assert cmac.mac_t(key, message) == expected[1::2]


@given(keys_16, st.binary(max_size=80))
def test_cmac_over_the_default_back_end_equals_openssl_cmac(key: bytes, message: bytes) -> None:
    assert cmac.aes_cmac(key, message) == openssl_cmac(key, message)


@given(keys_16, st.binary(min_size=16, max_size=31))
def test_an10922_equals_a_plain_cmac_when_d_spans_more_than_one_block(key: bytes, m: bytes) -> None:
    with portable_aes():
        assert keys.diversify_aes128(key, m) == openssl_cmac(key, b"\x01" + m)


@given(keys_16, st.binary(min_size=1, max_size=15))
def test_an10922_pads_a_short_input_to_two_blocks(key: bytes, m: bytes) -> None:
    d = b"\x01" + m + b"\x80" + bytes(30 - len(m))
    last = bytes(a ^ b for a, b in zip(d[16:], openssl_subkey_2(key), strict=True))
    with portable_aes():
        assert keys.diversify_aes128(key, m) == openssl_cbc(key, bytes(16), d[:16] + last)[16:]


comm_modes = st.sampled_from([ntag424_sm.COMM_PLAIN, ntag424_sm.COMM_MAC, ntag424_sm.COMM_FULL])


@given(keys_16, keys_16, st.integers(0, 0xFFFE), comm_modes, st.binary(max_size=64),
       st.binary(max_size=64))  # fmt: skip
def test_reader_and_card_sessions_agree_on_any_data_in_any_comm_mode(
    enc_key: bytes,
    mac_key: bytes,
    counter: int,
    comm_mode: int,
    command_data: bytes,
    answer_data: bytes,
) -> None:
    transaction_id = b"\x01\x02\x03\x04"
    reader = ntag424_sm.Session(enc_key, mac_key, transaction_id, 0, counter)
    card = ntag424_sm.Session(enc_key, mac_key, transaction_id, 0, counter)
    with portable_aes():
        capdu = reader.command(0x8D, b"\x02", command_data, comm_mode)
        header, data = card.open_command(0x8D, capdu[5:-1], 1, comm_mode)
        assert (header, data) == (b"\x02", command_data)
        assert reader.response(card.answer(answer_data, comm_mode)) == answer_data
    assert reader.command_counter == card.command_counter == counter + 1


@given(
    st.sampled_from([0, 1, 3]),
    st.integers(0, 15),
    st.integers(0, 15),
    st.sampled_from([0x01, 0x81, 0xC1, 0xD1, 0xF1, 0x41, 0x21]),
    st.sampled_from([0, 2, 0xE, 0xF]),
    st.sampled_from([0, 1, 0xF]),
    st.integers(0, 0xFFFFFF),
)
def test_file_settings_survive_encode_and_decode(
    comm_mode: int, read: int, change: int, options: int, meta: int, file_read: int, offset: int
) -> None:
    settings = ntag424_files.FileSettings(comm_mode=comm_mode, read=read, change=change)
    settings.sdm_enabled = True
    settings.sdm_options = options
    settings.sdm_meta_read, settings.sdm_file_read = meta, file_read
    for name in settings.present_offsets():
        setattr(settings, name, offset)
    encoded = ntag424_files.encode_change(settings)
    answer = b"\x00" + encoded[:3] + b"\x00\x01\x00" + encoded[3:]
    decoded = ntag424_files.decode_settings(answer)
    assert ntag424_files.encode_change(decoded) == encoded
    assert decoded.present_offsets() == settings.present_offsets()
