"""SUN / SDM messages against AN12196 (ntag424_an12196.json) and the published sdm-backend
vectors, on CPython and MicroPython; URL parsing and every way a SUN message is refused."""

from mpytest import expect_raises, load_json
from protocol import aes, cmac
from protocol import ntag424_sun as sun
from protocol.errors import AuthenticationError, ValidationError

ZERO_KEY = bytes(16)

# Published by nfc-developer/sdm-backend tests/test_libsdm.py
# @0b6e2b1500fa2293fff780ff48bce7b769fd6570 (test_sun2 "FROM AN12196 page 18", test_sun3_custom,
# test_plain_sdm); values only. test_sun2's MAC input is "<enc hex>&cmac=", test_sun3's is the
# enc hex alone.
SUN2_URL = (
    "https://www.my424dna.com/?picc_data=FD91EC264309878BE6345CBE53BADF40"
    "&enc=CEE9A53E3E463EF1F459635736738962&cmac=ECC1E7F6C6C73BF6"
)
SUN3_META_KEY = bytes.fromhex("42aff114f2cb3b6141be6dc95dfc5416")
SUN3_FILE_KEY = bytes.fromhex("b62a9baf092439bd43c62aee96b970c5")
SUN3 = ("8ACADDEF0A9B62CDAE39A16B83FC14DE", "238B2543A8DEBAD8", "B8436E11F627BB7F543FCC0C1E0D1A89")
PLAIN_URL = "https://example.com/tag?uid=041E3C8A2D6B80&ctr=000006&cmac=4B00064004B0B3D3"


def _vectors():
    return {vector["id"]: vector for vector in load_json("ntag424_an12196.json")["vectors"]}


def _hex(text):
    return bytes.fromhex(text)


def _upper(data):
    return data.hex().upper()


def _reason(error_type, function, *args, **kwargs):
    return expect_raises(error_type, function, *args, **kwargs).reason


# -- AN12196 ---------------------------------------------------------------------------------


def test_sdm_session_keys_match_an12196_table_1():
    vector = _vectors()["an12196_sdm_session_keys_table1"]
    uid, counter_bytes = _hex(vector["UID"]), _hex(vector["SDMReadCtr_bytes_LSB_first"])
    counter = int.from_bytes(counter_bytes, "little")
    sv1, sv2 = sun.sdm_session_vectors(uid, counter)
    assert _upper(sv1) == vector["SV1"] and _upper(sv2) == vector["SV2"]
    enc_key, mac_key = sun.sdm_session_keys(_hex(vector["KSDMFileRead"]), uid, counter)
    assert _upper(enc_key) == vector["KSesSDMFileReadENC"]
    assert _upper(mac_key) == vector["KSesSDMFileReadMAC"]


def test_picc_data_and_the_empty_input_sdmmac_match_an12196_tables_2_and_4():
    vector = _vectors()["an12196_sun_encrypted_piccdata_cmac"]
    meta_key = _hex(vector["KSDMMetaRead"])
    picc_enc_data = _hex(vector["PICCENCData"])
    assert _upper(aes.decrypt_block(meta_key, picc_enc_data)) == vector["PICCData_plain"]
    tag, uid, counter = sun.decode_picc_data(meta_key, picc_enc_data)
    assert "%02X" % tag == vector["PICCDataTag"]
    assert _upper(uid) == vector["UID"] and counter == vector["SDMReadCtr"]
    assert _upper(sun.sdm_session_vectors(uid, counter)[1]) == vector["SV2"]
    file_key = _hex(vector["KSDMFileRead"])
    mac_key = sun.sdm_session_keys(file_key, uid, counter)[1]
    assert _upper(mac_key) == vector["KSesSDMFileReadMAC"]
    assert _upper(cmac.aes_cmac(mac_key, b"")) == vector["CMAC_full"]
    assert _upper(sun.sdm_mac(file_key, uid, counter)) == vector["SDMMAC"]


def test_the_an12196_example_url_verifies():
    vector = _vectors()["an12196_sun_encrypted_piccdata_cmac"]
    fields = sun.parse_sun_url(vector["example_url"])
    assert fields["form"] == "encrypted" and fields["mac_input"] == b""
    assert fields["picc_data"] == vector["PICCENCData"] and fields["cmac"] == vector["SDMMAC"]
    result = sun.verify_sun_url(vector["example_url"], ZERO_KEY, ZERO_KEY)
    assert result == {
        "valid": True,
        "reason": None,
        "uid": _hex(vector["UID"]),
        "read_counter": 61,
        "file_data": None,
    }


# -- Encrypted file data (published sdm-backend vectors) ----------------------------------------


def test_a_url_with_encrypted_file_data_verifies_and_decrypts():
    fields = sun.parse_sun_url(SUN2_URL)
    assert fields["mac_input"] == b"CEE9A53E3E463EF1F459635736738962&cmac="
    result = sun.verify_sun_url(SUN2_URL, ZERO_KEY, ZERO_KEY)
    assert result["valid"] and result["uid"] == _hex("04958CAA5C5E80")
    assert result["read_counter"] == 8 and result["file_data"] == b"x" * 16


def test_verify_sun_takes_the_fields_and_defaults_the_mac_input_to_enc_and_cmac():
    result = sun.verify_sun(
        ZERO_KEY,
        ZERO_KEY,
        "FD91EC264309878BE6345CBE53BADF40",
        "ECC1E7F6C6C73BF6",
        "CEE9A53E3E463EF1F459635736738962",
    )
    assert result["valid"] and result["file_data"] == b"x" * 16


def test_a_mac_input_of_the_file_data_alone_verifies_with_its_own_keys():
    picc_data, mac, enc = SUN3
    result = sun.verify_sun(SUN3_META_KEY, SUN3_FILE_KEY, picc_data, mac, enc, enc.encode())
    assert result["valid"] and result["uid"] == _hex("041d3c8a2d6b80")
    assert result["read_counter"] == 291
    assert result["file_data"] == _hex("4e545858716e6f5f6f42467077792d56")


def test_the_file_key_may_be_a_function_of_the_uid():
    seen = []

    def file_key_for(uid):
        seen.append(uid)
        return SUN3_FILE_KEY

    picc_data, mac, enc = SUN3
    result = sun.verify_sun(SUN3_META_KEY, file_key_for, picc_data, mac, enc, enc.encode())
    assert result["valid"] and seen == [_hex("041d3c8a2d6b80")]


def test_a_plain_mirror_url_verifies_with_the_counter_most_significant_byte_first():
    fields = sun.parse_sun_url(PLAIN_URL)
    assert fields["form"] == "plain" and fields["ctr"] == "000006"
    result = sun.verify_sun_url(PLAIN_URL, None, ZERO_KEY)
    assert result["valid"] and result["uid"] == _hex("041E3C8A2D6B80")
    assert result["read_counter"] == 6


# -- Hex case: the card writes uppercase, a verifier reads either ------------------------------


def test_a_lowercase_an12196_url_verifies_as_the_uppercase_one():
    vector = _vectors()["an12196_sun_encrypted_piccdata_cmac"]
    upper = sun.verify_sun_url(vector["example_url"], ZERO_KEY, ZERO_KEY)
    assert upper["valid"] and vector["example_url"].endswith(vector["SDMMAC"])  # as written
    assert sun.verify_sun_url(vector["example_url"].lower(), ZERO_KEY, ZERO_KEY) == upper


def test_lowercase_encrypted_file_data_is_maced_in_uppercase_as_the_card_wrote_it():
    enc = "CEE9A53E3E463EF1F459635736738962"
    lower = SUN2_URL.replace(enc, enc.lower())
    fields = sun.parse_sun_url(lower)
    assert fields["enc"] == enc.lower() and fields["mac_input"] == (enc + "&cmac=").encode()
    for url in (lower, SUN2_URL.lower(), SUN2_URL.replace("cmac=ECC1", "cmac=ecc1")):
        result = sun.verify_sun_url(url, ZERO_KEY, ZERO_KEY)
        assert result["valid"] and result["file_data"] == b"x" * 16
    picc_data, mac = "FD91EC264309878BE6345CBE53BADF40", "ECC1E7F6C6C73BF6"
    result = sun.verify_sun(ZERO_KEY, ZERO_KEY, picc_data.lower(), mac.lower(), enc.lower())
    assert result["valid"] and result["read_counter"] == 8


def test_a_lowercase_plain_mirror_url_verifies():
    result = sun.verify_sun_url(PLAIN_URL.lower(), None, ZERO_KEY)
    assert result["valid"] and result["uid"] == _hex("041E3C8A2D6B80")


# -- Refusals ----------------------------------------------------------------------------------


def test_a_wrong_sdmmac_is_not_valid_and_reveals_nothing():
    url = SUN2_URL.replace("cmac=ECC1E7F6C6C73BF6", "cmac=3CC1E7F6C6C33B33")
    result = sun.verify_sun_url(url, ZERO_KEY, ZERO_KEY)
    assert result == {
        "valid": False,
        "reason": "card_auth_failed",
        "uid": None,
        "read_counter": None,
        "file_data": None,
    }
    picc_data, _, enc = SUN3
    arguments = (SUN3_META_KEY, SUN3_FILE_KEY, picc_data, "00" * 8, enc, enc.encode())
    assert _reason(AuthenticationError, sun.open_sun, *arguments) == "card_auth_failed"


def test_changed_file_data_or_counter_breaks_the_mac():
    tampered = SUN2_URL.replace("enc=CEE9", "enc=CEE8")
    assert not sun.verify_sun_url(tampered, ZERO_KEY, ZERO_KEY)["valid"]
    assert not sun.verify_sun_url(PLAIN_URL.replace("000006", "000007"), None, ZERO_KEY)["valid"]


def test_a_wrong_file_key_is_not_valid():
    vector = _vectors()["an12196_sun_encrypted_piccdata_cmac"]
    assert not sun.verify_sun_url(vector["example_url"], ZERO_KEY, b"\x01" * 16)["valid"]


def test_malformed_urls_are_sun_malformed():
    picc, mac = "EF963FF7828658A599F3041510671E88", "94EED9EE65337086"
    for url in (
        "https://ntag.nxp.com/424",  # no query
        "https://x/?e=" + picc,  # no cmac
        "https://x/?c=" + mac,  # no picc data, no uid/ctr
        "https://x/?e=" + picc + "&e=" + picc + "&c=" + mac,  # twice
        "https://x/?e=" + picc + "&picc_data=" + picc + "&c=" + mac,  # both spellings
        "https://x/?e=" + picc + "&uid=04DE5F1EACC040&c=" + mac,  # mixed forms
        "https://x/?uid=04DE5F1EACC040&c=" + mac,  # plain without ctr
        "https://x/?e=" + picc + "&c=" + mac + "&enc=" + picc,  # enc after the MAC
        "https://x/?e&c=" + mac,  # no value
        "https://x/?" + "a=b&" * 300 + "e=" + picc + "&c=" + mac,  # too long
    ):
        assert _reason(ValidationError, sun.parse_sun_url, url) == "sun_malformed", url


def test_fields_that_are_not_hex_or_of_the_wrong_length_are_sun_malformed():
    picc, mac = "EF963FF7828658A599F3041510671E88", "94EED9EE65337086"
    for url in (
        "https://x/?e=" + picc[:-2] + "&c=" + mac,  # 15 bytes
        "https://x/?e=" + picc[:-1] + "G&c=" + mac,  # not hex
        "https://x/?e=" + picc + "&c=" + mac + "00",  # 9-byte MAC
        "https://x/?e=" + picc + "&c=" + mac[:-1],  # odd length
        "https://x/?e=" + picc + " &c=" + mac,  # a space
        "https://x/?e=" + picc + "&enc=ABCD&c=" + mac,  # not whole blocks
        "https://x/?e=" + picc + "&enc=" + "AB" * 144 + "&c=" + mac,  # longer than the file
        "https://x/?uid=04DE5F1EACC0&ctr=000001&c=" + mac,  # 6-byte UID
        "https://x/?uid=04DE5F1EACC040&ctr=0001&c=" + mac,  # 2-byte counter
    ):
        reason = _reason(ValidationError, sun.verify_sun_url, url, ZERO_KEY, ZERO_KEY)
        assert reason == "sun_malformed", url


def test_other_query_fields_and_a_fragment_are_ignored():
    vector = _vectors()["an12196_sun_encrypted_piccdata_cmac"]
    url = vector["example_url"].replace("?", "?program=gift&") + "&lang=en#top"
    assert sun.verify_sun_url(url, ZERO_KEY, ZERO_KEY)["valid"]


def _picc_enc_data(plain_picc_data):
    return aes.encrypt_block(ZERO_KEY, plain_picc_data).hex().upper()


def test_an_unknown_picc_data_tag_is_card_family_unknown():
    mac = "94EED9EE65337086"
    for tag in (0xC4, 0xF7, 0x07, 0xD7):  # 4-byte UID, RFU bits, no UID bit, RFU bit 4
        picc = _picc_enc_data(bytes((tag,)) + _hex("04DE5F1EACC0403D0000DA5CF60941"))
        reason = _reason(ValidationError, sun.verify_sun, ZERO_KEY, ZERO_KEY, picc, mac)
        assert reason == "card_family_unknown", tag


def test_a_card_that_mirrors_no_counter_or_no_uid_is_card_family_unknown():
    mac = "94EED9EE65337086"
    for plain in ("8704DE5F1EACC040" + "00" * 8, "403D0000" + "00" * 12):
        picc = _picc_enc_data(_hex(plain))
        reason = _reason(ValidationError, sun.verify_sun, ZERO_KEY, ZERO_KEY, picc, mac)
        assert reason == "card_family_unknown", plain
    assert sun.decode_picc_data(ZERO_KEY, _hex(_picc_enc_data(_hex("403D0000" + "00" * 12)))) == (
        0x40,
        None,
        61,
    )


def test_lrp_mode_picc_data_is_card_family_unknown():
    lrp = load_json("ntag424_an12196.json")["vectors"][-1]["cases"][1]
    assert len(lrp["PICCENCData_24B"]) == 48
    url = "https://x/?e=" + lrp["PICCENCData_24B"] + "&c=" + lrp["SDMMAC"]
    reason = _reason(ValidationError, sun.verify_sun_url, url, ZERO_KEY, ZERO_KEY)
    assert reason == "card_family_unknown"


# -- Replay ------------------------------------------------------------------------------------


def test_a_read_counter_not_above_the_last_accepted_one_is_a_replay():
    sun.check_read_counter(None, 0)
    sun.check_read_counter(60, 61)
    assert _reason(ValidationError, sun.check_read_counter, 61, 61) == "card_replayed"
    assert _reason(ValidationError, sun.check_read_counter, 62, 61) == "card_replayed"
