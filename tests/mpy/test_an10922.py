"""AN10922 AES-128 key diversification against an10922.json, and tilltap's per-card keys, on
CPython and MicroPython."""

from mpytest import expect_raises, load_json
from protocol import aes, cmac, keys


def _vector():
    vector = load_json("an10922.json")["vectors"][0]
    assert vector["id"] == "an10922_aes128_2_2_1"
    return vector


def _hex(text):
    return bytes.fromhex(text)


def test_the_master_keys_cmac_subkeys_match_the_note():
    vector = _vector()
    master = _hex(vector["master_key"])
    assert aes.encrypt_block(master, bytes(16)) == _hex(vector["K0_AES_K_zero"])
    assert cmac.subkeys(master) == (_hex(vector["K1"]), _hex(vector["K2"]))


def test_diversification_input_is_uid_aid_system_identifier():
    vector = _vector()
    m = keys.diversification_input(
        _hex(vector["UID"]), _hex(vector["AID"]), _hex(vector["system_identifier"])
    )
    assert m == _hex(vector["M"])
    assert _hex(vector["system_identifier"]) == vector["system_identifier_ascii"].encode()
    assert b"\x01" + m == _hex(vector["D_unpadded"])
    assert cmac.pad(b"\x01" + m) == _hex(vector["D_padded_32"])


def test_the_diversified_key_matches_an10922_section_2_2_1():
    vector = _vector()
    derived = keys.diversify_aes128(_hex(vector["master_key"]), _hex(vector["M"]))
    assert derived == _hex(vector["diversified_key"])


def test_short_input_is_padded_to_two_blocks_unlike_a_plain_cmac():
    master = _hex(_vector()["master_key"])
    short = b"\x04\x78\x2e\x21"
    assert keys.diversify_aes128(master, short) != cmac.aes_cmac(master, b"\x01" + short)
    padded = b"\x01" + short + b"\x80" + bytes(26)
    key1, key2 = cmac.subkeys(master)
    last = aes.xor_bytes(padded[16:], key2)
    expected = aes.cbc_encrypt(master, bytes(16), padded[:16] + last)[16:]
    assert keys.diversify_aes128(master, short) == expected


def test_a_31_byte_input_fills_two_blocks_exactly_and_uses_k1():
    master = _hex(_vector()["master_key"])
    m = bytes(range(31))
    assert keys.diversify_aes128(master, m) == cmac.aes_cmac(master, b"\x01" + m)


def test_input_length_outside_1_to_31_is_a_programmer_error():
    master = _hex(_vector()["master_key"])
    expect_raises(AssertionError, keys.diversify_aes128, master, b"")
    expect_raises(AssertionError, keys.diversify_aes128, master, bytes(32))


def test_card_keys_are_an10922_over_uid_key_number_and_system_identifier():
    vector = _vector()
    master, uid = _hex(vector["master_key"]), _hex(vector["UID"])
    system = b"tilltap"
    card_keys = [keys.card_key(master, uid, n, system) for n in (0, 2, 3, 4)]
    assert card_keys[1] == keys.diversify_aes128(master, uid + b"\x02" + system)
    assert len(set(card_keys)) == 4
    other_card = keys.card_key(master, b"\x04" + bytes(6), 2, system)
    assert other_card != card_keys[1]


def test_the_sdm_meta_read_key_is_per_system_without_the_uid():
    master = _hex(_vector()["master_key"])
    meta_key = keys.system_key(master, keys.KEY_SDM_META_READ, b"tilltap")
    assert meta_key == keys.diversify_aes128(master, b"\x01tilltap")
    assert keys.system_key(master, 1, b"other system") != meta_key
    expect_raises(AssertionError, keys.card_key, master, bytes(7), keys.KEY_SDM_META_READ, b"x")


def test_card_key_refuses_a_4_byte_uid_and_an_unknown_key_number():
    master = bytes(16)
    expect_raises(AssertionError, keys.card_key, master, bytes(4), 0, b"tilltap")
    expect_raises(AssertionError, keys.card_key, master, bytes(7), 5, b"tilltap")
    expect_raises(AssertionError, keys.card_key, master, bytes(7), 0, bytes(24))
