"""The emulated NTAG 424 DNA (tools/simulator/ntag424_card.py), command by command with its
status words, against the AN12196 vectors (ntag424_an12196.json) and the published SUN URLs,
and in a whole personalization driven by the reader-side code; on CPython and MicroPython."""

import json

from firmware.card_sun import on_card_read_sun, read_sun_url
from firmware.ndef import first_uri
from firmware.pn532 import Pn532
from firmware.reader import Pn532Reader
from mpytest import load_json
from protocol import keys, ntag424
from protocol import ntag424_auth as auth
from protocol import ntag424_commands as commands
from protocol import ntag424_files as files
from protocol import ntag424_sun as sun
from protocol.errors import ValidationError
from protocol.ntag424_sm import COMM_FULL, COMM_MAC, COMM_PLAIN
from tools.simulator.ntag424_card import Ntag424Card
from tools.simulator.pn532_emulator import Pn532Emulator, SimulatedClock

ZERO_KEY = bytes(16)
UID = bytes.fromhex("04DE5F1EACC040")  # AN12196's card
RND_A = bytes.fromhex("13C5DB8A5930439FC3DEF9A4C675360F")
SELECT_APPLICATION = bytes.fromhex("00A4040C07D276000085010100")
SELECT_NDEF_FILE = bytes.fromhex("00A4000C02E10400")
READ_BINARY_ALL = bytes.fromhex("00B0000000")
OK_NATIVE = b"\x91\x00"
OK_ISO = b"\x90\x00"


def _vectors():
    return {vector["id"]: vector for vector in load_json("ntag424_an12196.json")["vectors"]}


def _hex(text):
    return bytes.fromhex(text)


def _upper(data):
    return bytes(data).hex().upper()


class Scripted:
    """A random seam that hands out the given values in order (then counting bytes)."""

    def __init__(self, *values):
        self.values = list(values)
        self.counter = 0

    def __call__(self, count):
        if self.values:
            value = self.values.pop(0)
            assert len(value) == count, "scripted %d bytes, asked %d" % (len(value), count)
            return value
        self.counter += 1
        return bytes((self.counter + i) & 0xFF for i in range(count))


def _card(uid=UID, *values):
    card = Ntag424Card(uid, random=Scripted(*values))
    assert card.apdu(SELECT_APPLICATION) == OK_ISO
    return card


def _authenticate(card, key=ZERO_KEY, key_number=0, rnd_a=RND_A, previous=None):
    """The reader's Session after AuthenticateEV2First (NonFirst with `previous`)."""
    reader = auth.PcdAuthentication(key, key_number, rnd_a, previous)
    challenge = card.apdu(reader.start())
    return reader.finish(card.apdu(reader.answer_challenge(challenge)))


def _exchange(card, session, capdu):
    return session.response(card.apdu(capdu))


def _ndef_file(url):
    """An NDEF file holding one URI record with the "https://" prefix code: NLEN || record."""
    assert url.startswith("https://")
    body = url[len("https://") :].encode()
    record = bytes((0xD1, 0x01, len(body) + 1, 0x55, 0x04)) + body
    return len(record).to_bytes(2, "big") + record


def _file_offset(url, index):
    """Where character `index` of `url` sits in `_ndef_file(url)` (NLEN, header, code 04)."""
    return 2 + 5 + index - len("https://")


def _sun_template(prefix, meta_key_number=1, file_key_number=2, enc_plain=None):
    """(NDEF file, FileSettings) for prefix?picc_data=..[&enc=..]&cmac=.. as tilltap lays out."""
    url = prefix + "?picc_data="
    settings = files.FileSettings(COMM_PLAIN, files.ACCESS_FREE, 0, 0, 0)
    settings.sdm_enabled = True
    settings.sdm_options = files.SDM_UID | files.SDM_READ_COUNTER | files.SDM_ASCII
    settings.sdm_meta_read = meta_key_number
    settings.sdm_file_read = file_key_number
    settings.picc_data_offset = _file_offset(url, len(url))
    url += "0" * 32
    if enc_plain is not None:
        url += "&enc="
        settings.sdm_options |= files.SDM_ENC_FILE_DATA
        settings.enc_offset = _file_offset(url, len(url))
        settings.enc_length = 2 * len(enc_plain)
        url += enc_plain + "0" * len(enc_plain)
    url += "&cmac="
    settings.mac_offset = _file_offset(url, len(url))
    url += "0" * 16
    settings.mac_input_offset = settings.mac_offset
    if enc_plain is not None:
        settings.mac_input_offset = settings.enc_offset
    return _ndef_file(url), settings


def _tap(card):
    """What a phone or the terminal reads: select, select E104, read the file, its URL."""
    return read_sun_url(card.apdu)


def _personalize_plain(card, ndef, settings, key=ZERO_KEY):
    """Write `ndef` and `settings` into file 2 with key 0 = `key` (no diversification)."""
    session = _authenticate(card, key)
    assert _exchange(card, session, commands.write_data(2, 0, ndef, session, COMM_PLAIN)) == b""
    capdu = commands.change_file_settings(session, 2, files.encode_change(settings))
    assert _exchange(card, session, capdu) == b""
    card.activate()  # out of the personalization station's field
    assert card.apdu(SELECT_APPLICATION) == OK_ISO


# -- AN12196, replayed against the emulator ----------------------------------------------------


def test_select_of_the_ndef_application_answers_9000_as_in_an12196():
    expected = load_json("ntag424_an12196.json")["iso_apdus"]["select_ndef_app_by_df_name"]
    card = Ntag424Card(UID)
    assert _upper(card.apdu(_hex(expected["capdu"]))) == expected["rapdu"]


def test_get_version_answers_the_three_frames_of_an12196():
    card = Ntag424Card(_hex("04968CAA5C5E80"))
    assert _upper(card.apdu(commands.get_version())) == "0404023000110591AF"
    assert _upper(card.apdu(commands.additional_frame())) == "0404020101110591AF"
    assert _upper(card.apdu(commands.additional_frame())) == "04968CAA5C5E80CD65935D4021189100"
    assert _upper(card.apdu(commands.additional_frame())) == "911C"  # nothing more to send


def test_authenticate_ev2_first_with_the_factory_key_answers_an12196_table_14():
    vector = _vectors()["an12196_auth_ev2_first_key00"]
    card = _card(UID, _hex(vector["RndB"]), _hex(vector["TI"]))
    assert _upper(card.apdu(_hex(vector["capdu_1"]))) == vector["rapdu_1"]
    assert _upper(card.apdu(_hex(vector["capdu_2"]))) == vector["rapdu_2"]
    assert _upper(card.session.enc_key) == vector["SesAuthENCKey"]
    assert _upper(card.session.mac_key) == vector["SesAuthMACKey"]


def test_an12196_write_data_and_change_file_settings_answers_and_its_sun_come_out_exactly():
    # AN12196 writes the NDEF file in CommMode Full (Table 18), so that file is first set to
    # Full with write key 0, as on the card the note used; then Tables 14, 18 and 19 replay
    # byte for byte, and the 61st read gives the PICCENCData and SDMMAC of Tables 2 and 4.
    first = _vectors()["an12196_auth_ev2_first_key00"]
    write = _vectors()["an12196_writedata_commmode_full_ndef"]
    change = _vectors()["an12196_changefilesettings_commmode_full_sdm"]
    sun_vector = _vectors()["an12196_sun_encrypted_piccdata_cmac"]
    card = _card(UID, bytes(16), bytes(4), _hex(first["RndB"]), _hex(first["TI"]),
                 _hex(sun_vector["PICCData_plain"])[11:])
    session = _authenticate(card)
    full = files.FileSettings(COMM_FULL, files.ACCESS_FREE, 0, 0, 0)
    assert _exchange(card, session, commands.change_file_settings(
        session, 2, files.encode_change(full))) == b""
    assert _upper(card.apdu(_hex(first["capdu_1"]))) == first["rapdu_1"]
    assert _upper(card.apdu(_hex(first["capdu_2"]))) == first["rapdu_2"]
    assert _upper(card.apdu(_hex(write["capdu"]))) == write["rapdu"]
    assert _upper(card.apdu(_hex(change["capdu"]))) == change["rapdu"]
    assert card.sdm_read_counter == 0  # enabling SDM restarts the counter
    card.sdm_read_counter = sun_vector["SDMReadCtr"] - 1
    url = _tap(card)
    assert url == "https://choose.url.com/ntag424?e=%s&c=%s" % (
        sun_vector["PICCENCData"], sun_vector["SDMMAC"])
    assert sun.verify_sun_url(url, ZERO_KEY, ZERO_KEY)["read_counter"] == 61


def test_non_first_and_change_key_answer_an12196_tables_24_26_and_27():
    nonfirst = _vectors()["an12196_auth_ev2_nonfirst_key00"]
    other = _vectors()["an12196_changekey_other_key02"]
    own = _vectors()["an12196_changekey_auth_key00"]
    card = _card(UID, bytes(16), _hex("7614281A"), _hex(nonfirst["RndB"]))
    session = _authenticate(card)
    for _ in range(other["CmdCtr"]):  # bring CmdCtr to 2, where the tables start
        _exchange(card, session, commands.get_file_settings(2, session))
    reader = auth.PcdAuthentication(ZERO_KEY, 0, _hex(nonfirst["RndA"]), session)
    challenge = card.apdu(reader.start())
    assert _upper(challenge) == nonfirst["E_K_RndB"] + "91AF"
    token = reader.answer_challenge(challenge)
    assert _upper(ntag424.parse_command(token)[4]) == nonfirst["E_K_RndA_RndBrot"]
    session = reader.finish(card.apdu(token))
    assert _upper(card.session.enc_key) == nonfirst["SesAuthENCKey"]
    assert card.session.command_counter == session.command_counter == 2
    assert _upper(card.apdu(_hex(other["capdu"]))) == other["rapdu"]
    assert card.keys[2] == _hex(other["new_key"]) and card.key_versions[2] == 1
    assert _upper(card.apdu(_hex(own["capdu"]))) == own["rapdu"]
    assert card.keys[0] == _hex(own["new_key"]) and card.key_versions[0] == 1
    assert card.session is None  # changing the authenticating key ends the session
    assert _upper(card.apdu(commands.get_card_uid(session))) == "91AE"


def test_get_file_settings_answers_the_an12196_5_3_settings_plain_and_with_a_mac():
    vector = _vectors()["an12196_getfilesettings_commmode_mac"]
    settings_bytes = _hex(vector["mac_input_resp"])[7:]
    card = _card()
    session = _authenticate(card)
    capdu = commands.change_file_settings(
        session, 2, files.encode_change(files.decode_settings(settings_bytes)))
    assert _exchange(card, session, capdu) == b""
    assert _exchange(card, session, commands.get_file_settings(2, session)) == settings_bytes
    assert card.apdu(SELECT_APPLICATION) == OK_ISO  # ends the session: plain from now on
    assert card.apdu(commands.get_file_settings(2)) == settings_bytes + OK_NATIVE


def test_the_sdm_backend_url_with_encrypted_file_data_comes_out_exactly():
    # nfc-developer/sdm-backend tests/test_libsdm.py @0b6e2b1 test_sun2 (values only): UID
    # 04958CAA5C5E80, counter 8, file data "xxxxxxxxxxxxxxxx", all keys zero.
    expected = ("https://www.my424dna.com/?picc_data=FD91EC264309878BE6345CBE53BADF40"
                "&enc=CEE9A53E3E463EF1F459635736738962&cmac=ECC1E7F6C6C73BF6")
    card = _card(_hex("04958CAA5C5E80"), bytes(16), bytes(4), _hex("a243c86dfc"))
    ndef, settings = _sun_template("https://www.my424dna.com/", 0, 0, "x" * 16)
    _personalize_plain(card, ndef, settings)
    card.sdm_read_counter = 7
    assert _tap(card) == expected


def test_a_plain_mirror_gives_the_published_uid_ctr_cmac_url():
    expected = "https://example.com/tag?uid=041E3C8A2D6B80&ctr=000006&cmac=4B00064004B0B3D3"
    url = "https://example.com/tag?uid=" + "0" * 14 + "&ctr=000000&cmac=" + "0" * 16
    settings = files.FileSettings(COMM_PLAIN, files.ACCESS_FREE, 0, 0, 0)
    settings.sdm_enabled = True
    settings.sdm_options = files.SDM_UID | files.SDM_READ_COUNTER | files.SDM_ASCII
    settings.sdm_meta_read, settings.sdm_file_read = files.ACCESS_FREE, 0
    settings.uid_offset = _file_offset(url, url.index("uid=") + 4)
    settings.read_counter_offset = _file_offset(url, url.index("ctr=") + 4)
    settings.mac_offset = settings.mac_input_offset = _file_offset(url, url.index("cmac=") + 5)
    card = _card(_hex("041E3C8A2D6B80"))
    _personalize_plain(card, _ndef_file(url), settings)
    card.sdm_read_counter = 5
    assert _tap(card) == expected


# -- Files, selection and ISO commands ---------------------------------------------------------


def test_factory_file_settings_are_those_nxp_ships():
    card = _card()
    assert _upper(card.apdu(commands.get_file_settings(1))) == "000000E02000009100"
    assert _upper(card.apdu(commands.get_file_settings(2))) == "0000E0EE0001009100"
    assert _upper(card.apdu(commands.get_file_settings(3))) == "000330238000009100"
    assert _upper(card.apdu(commands.get_file_settings(4))) == "91F0"


def test_at_mf_level_only_get_version_and_selecting_the_application_work():
    card = Ntag424Card(UID)
    assert _upper(card.apdu(auth.PcdAuthentication(ZERO_KEY, 0, RND_A).start())) == "919D"
    assert _upper(card.apdu(commands.read_data(2, 0, 0))) == "919D"
    assert _upper(card.apdu(SELECT_NDEF_FILE)) == "6A82"
    assert _upper(card.apdu(READ_BINARY_ALL)) == "6986"
    assert card.apdu(commands.get_version())[-2:] == b"\x91\xaf"


def test_selection_refuses_unknown_names_files_and_parameters():
    card = _card()
    assert _upper(card.apdu(_hex("00A4040C07D276000085010200"))) == "6A82"
    assert _upper(card.apdu(_hex("00A4000C02E10600"))) == "6A82"
    assert _upper(card.apdu(_hex("00A4010C02E10400"))) == "6A86"
    assert _upper(card.apdu(_hex("00A4000C03E1040000"))) == "6700"
    assert card.apdu(_hex("00A4000C02E103")) == OK_ISO  # Le may be left out


def test_iso_read_binary_reads_the_capability_container_within_its_bounds():
    card = _card()
    assert card.apdu(READ_BINARY_ALL) == _hex("6986")  # no file selected yet
    assert card.apdu(_hex("00A4000C02E10300")) == OK_ISO
    data = card.apdu(_hex("00B000000F"))
    assert _upper(data) == "001720010000FF0406E10401000000" + "9000"
    assert len(card.apdu(READ_BINARY_ALL)) == 32 + 2
    assert _upper(card.apdu(_hex("00B0001E04"))) == "0000" + "6282"  # 2 of 4 bytes left
    assert _upper(card.apdu(_hex("00B0002001"))) == "6B00"
    assert _upper(card.apdu(_hex("00B0820002"))) == "00009000"  # SFI 2: the NDEF file
    assert _upper(card.apdu(_hex("00B0830001"))) == "6982"  # proprietary: read needs key 2


def test_iso_update_binary_writes_free_files_only():
    card = _card()
    assert card.apdu(SELECT_NDEF_FILE) == OK_ISO
    assert card.apdu(ntag424.iso_update_binary(0, b"\x00\x03\xd0\x00\x00")) == OK_ISO
    assert card.apdu(_hex("00B0000005")) == b"\x00\x03\xd0\x00\x00" + OK_ISO
    assert _upper(card.apdu(ntag424.iso_update_binary(0xFF, b"\x01\x02"))) == "6700"
    assert _upper(card.apdu(ntag424.iso_update_binary(0x100, b"\x01"))) == "6B00"
    assert card.apdu(_hex("00A4000C02E10300")) == OK_ISO
    assert _upper(card.apdu(ntag424.iso_update_binary(0, b"\x01"))) == "6982"


def test_unknown_classes_instructions_and_malformed_apdus_get_their_status_words():
    card = _card()
    assert _upper(card.apdu(_hex("9042000000"))) == "911C"
    assert _upper(card.apdu(_hex("90AF000000"))) == "911C"  # no frame is pending
    assert _upper(card.apdu(_hex("00CA000000"))) == "6D00"
    assert _upper(card.apdu(_hex("80A4040C00"))) == "6E00"
    assert _upper(card.apdu(_hex("90AD000005020000"))) == "917E"  # Lc says 5, 3 follow
    assert _upper(card.apdu(_hex("00D60000050102"))) == "6700"
    assert _upper(card.apdu(_hex("90AD00000302000000"))) == "917E"  # header too short


# -- Authentication and keys -------------------------------------------------------------------


def test_a_wrong_key_is_91ae_and_leaves_the_card_unauthenticated():
    card = _card()
    reader = auth.PcdAuthentication(ZERO_KEY, 0, RND_A)
    card.apdu(reader.start())
    assert _upper(card.apdu(ntag424.native_command(0xAF, bytes(16)))) == "917E"
    reader = auth.PcdAuthentication(b"\x01" * 16, 0, RND_A)
    assert _upper(card.apdu(reader.answer_challenge(card.apdu(reader.start())))) == "91AE"
    assert card.session is None
    assert _upper(card.apdu(ntag424.native_command(0x71, b"\x05\x00"))) == "9140"


def test_non_first_needs_a_session_and_another_command_abandons_an_authentication():
    card = _card()
    assert _upper(card.apdu(ntag424.native_command(0x77, b"\x00"))) == "91AE"
    reader = auth.PcdAuthentication(ZERO_KEY, 0, RND_A)
    challenge = card.apdu(reader.start())
    assert card.apdu(commands.get_file_settings(2))[-2:] == OK_NATIVE
    assert _upper(card.apdu(reader.answer_challenge(challenge))) == "911C"


def test_get_card_uid_needs_a_session_and_answers_in_commmode_full():
    card = _card()
    assert _upper(card.apdu(ntag424.native_command(0x51))) == "91AE"
    session = _authenticate(card, ZERO_KEY, 3)
    capdu = commands.get_card_uid(session)
    assert len(ntag424.parse_command(capdu)[4]) == 8  # MACt only
    assert commands.parse_card_uid(_exchange(card, session, capdu)) == UID
    assert card.session.command_counter == session.command_counter == 1


def test_a_command_with_a_wrong_mac_is_911e_and_ends_the_session():
    card = _card()
    session = _authenticate(card)
    capdu = bytearray(commands.get_card_uid(session))
    capdu[-2] ^= 0x01
    assert _upper(card.apdu(bytes(capdu))) == "911E"
    assert card.session is None


def test_change_key_needs_key_0_and_a_correct_crc32nk():
    card = _card()
    session = _authenticate(card, ZERO_KEY, 2)
    capdu = commands.change_key(session, 3, b"\x33" * 16, 1, ZERO_KEY)
    assert _upper(card.apdu(capdu)) == "91AE"
    session = _authenticate(card)
    capdu = commands.change_key(session, 3, b"\x33" * 16, 1, b"\x01" * 16)  # wrong old key
    assert _upper(card.apdu(capdu)) == "911E"
    assert card.keys[3] == ZERO_KEY and card.session is None


def test_get_key_version_answers_plain_or_with_a_mac():
    card = _card()
    session = _authenticate(card)
    assert _exchange(card, session, commands.change_key(session, 4, b"\x44" * 16, 7,
                                                        ZERO_KEY)) == b""
    capdu = session.command(0x64, b"\x04", b"", COMM_MAC)
    assert _exchange(card, session, capdu) == b"\x07"
    assert card.apdu(SELECT_APPLICATION) == OK_ISO  # ends the session
    assert card.apdu(ntag424.native_command(0x64, b"\x04")) == b"\x07" + OK_NATIVE
    assert _upper(card.apdu(ntag424.native_command(0x64, b"\x05"))) == "9140"


# -- Data ------------------------------------------------------------------------------------


def test_the_proprietary_file_is_written_with_key_3_and_read_with_key_2_in_commmode_full():
    card = _card()
    assert _upper(card.apdu(commands.read_data(3, 0, 4))) == "91AE"
    session = _authenticate(card, ZERO_KEY, 3)
    capdu = commands.write_data(3, 16, b"tilltap", session, COMM_FULL)
    assert len(ntag424.parse_command(capdu)[4]) == 7 + 16 + 8  # header, one block, MACt
    assert _exchange(card, session, capdu) == b""
    session = _authenticate(card, ZERO_KEY, 2)
    capdu = commands.read_data(3, 16, 7, session, COMM_FULL)
    assert _exchange(card, session, capdu) == b"tilltap"
    capdu = commands.write_data(3, 0, b"x", session, COMM_FULL)
    assert _upper(card.apdu(capdu)) == "91AE"  # key 2 may read, not write


def test_read_and_write_data_stay_inside_the_file():
    card = _card()
    assert _upper(card.apdu(commands.read_data(2, 250, 7))) == "91BE"
    assert _upper(card.apdu(commands.read_data(2, 256, 0))) == "91BE"
    assert len(card.apdu(commands.read_data(2, 250, 0))) == 6 + 2  # 0: to the end
    assert _upper(card.apdu(commands.write_data(2, 255, b"ab"))) == "91BE"
    assert _upper(card.apdu(commands.read_data(9, 0, 1))) == "91F0"
    header_says_two = _hex("908D000008020000000200004100")  # length 2, one byte of data
    assert _upper(card.apdu(header_says_two)) == "917E"


def test_change_file_settings_refuses_layouts_the_card_would_refuse():
    def answer(file_number=2, **changes):
        card = _card()
        session = _authenticate(card)
        _, settings = _sun_template("https://tap.example/c", 1, 2)
        for name, value in changes.items():
            setattr(settings, name, value(settings) if callable(value) else value)
        capdu = commands.change_file_settings(session, file_number, files.encode_change(settings))
        return _upper(card.apdu(capdu))

    assert answer().endswith("9100")  # the template itself is accepted
    assert answer(mac_offset=lambda s: s.picc_data_offset + 8) == "919E"  # overlap
    assert answer(mac_offset=250) == "919E"  # past the end of the file
    assert answer(mac_input_offset=lambda s: s.mac_offset + 1) == "919E"
    assert answer(sdm_options=files.SDM_UID | files.SDM_READ_COUNTER) == "919E"  # not ASCII
    assert answer(sdm_file_read=files.ACCESS_FREE) == "919E"
    assert answer(read=7) == "919E"  # no such access condition
    assert answer(file_number=3) == "919E"  # SDM on the NDEF file only
    card = _card()
    session = _authenticate(card)
    capdu = commands.change_file_settings(session, 2, b"\x00\xe0")
    assert _upper(card.apdu(capdu)) == "917E"


def test_change_file_settings_needs_the_change_key():
    card = _card()
    ndef, settings = _sun_template("https://tap.example/c")
    session = _authenticate(card, ZERO_KEY, 1)
    capdu = commands.change_file_settings(session, 2, files.encode_change(settings))
    assert _upper(card.apdu(capdu)) == "91AE"
    assert not card.files[2].settings.sdm_enabled


# -- SUN: counter, read sessions and clones ----------------------------------------------------


def _sun_card(uid=UID):
    card = _card(uid)
    ndef, settings = _sun_template("https://tap.example/c", 1, 2)
    _personalize_plain(card, ndef, settings)
    return card


def test_every_tap_advances_the_counter_and_verifies():
    card = _sun_card()
    counters = []
    for _ in range(3):
        result = sun.verify_sun_url(_tap(card), ZERO_KEY, ZERO_KEY)
        assert result["valid"] and result["uid"] == UID
        counters.append(result["read_counter"])
    assert counters == [1, 2, 3] and card.sdm_read_counter == 3


def test_a_read_in_pieces_sees_one_url_and_counts_once():
    card = _sun_card()
    assert card.apdu(SELECT_NDEF_FILE) == OK_ISO
    first = card.apdu(_hex("00B0000040"))[:-2]
    rest = card.apdu(_hex("00B0004000"))[:-2]
    assert card.sdm_read_counter == 1
    url = first_uri((first + rest)[2:])
    assert sun.verify_sun_url(url, ZERO_KEY, ZERO_KEY)["read_counter"] == 1
    assert card.apdu(SELECT_NDEF_FILE) == OK_ISO  # a new selection, a new read
    card.apdu(READ_BINARY_ALL)
    assert card.sdm_read_counter == 2


def test_read_data_without_authentication_mirrors_too():
    card = _sun_card()
    data = card.apdu(commands.read_data(2, 0, 0))
    assert data[-2:] == OK_NATIVE
    url = first_uri(data[2:-2])
    assert sun.verify_sun_url(url, ZERO_KEY, ZERO_KEY)["read_counter"] == 1


def test_authenticated_reads_return_the_template_and_do_not_count():
    card = _sun_card()
    ndef, _ = _sun_template("https://tap.example/c", 1, 2)
    session = _authenticate(card)
    capdu = commands.read_data(2, 0, len(ndef), session, COMM_PLAIN)
    assert _exchange(card, session, capdu) == ndef
    assert card.sdm_read_counter == 0


def test_the_read_counter_limit_and_the_counter_maximum_refuse_reads():
    card = _card()
    ndef, settings = _sun_template("https://tap.example/c", 1, 2)
    settings.sdm_options |= files.SDM_READ_COUNTER_LIMIT
    settings.read_counter_limit = 2
    _personalize_plain(card, ndef, settings)
    _tap(card)
    _tap(card)
    error = None
    try:
        _tap(card)
    except ValidationError as refused:
        error = refused
    assert error is not None and "6982" in error.detail
    card.files[2].settings.read_counter_limit = None
    card.sdm_read_counter = 0xFFFFFF
    assert _upper(card.apdu(commands.read_data(2, 0, 0))) == "919D"


def test_a_perfect_clone_is_caught_by_the_read_counter():
    card = _sun_card()
    last_accepted = sun.verify_sun_url(_tap(card), ZERO_KEY, ZERO_KEY)["read_counter"]
    clone = Ntag424Card.from_state(json.loads(json.dumps(card.state())), Scripted())
    assert clone.uid == card.uid and clone.keys == card.keys
    last_accepted = sun.verify_sun_url(_tap(card), ZERO_KEY, ZERO_KEY)["read_counter"]
    cloned = sun.verify_sun_url(_tap(clone), ZERO_KEY, ZERO_KEY)
    assert cloned["valid"] and cloned["read_counter"] == last_accepted  # a genuine-looking URL
    try:
        sun.check_read_counter(last_accepted, cloned["read_counter"])
        reason = None
    except ValidationError as error:
        reason = error.reason
    assert reason == "card_replayed"


def test_state_round_trips_through_json():
    card = _sun_card()
    _tap(card)
    copy = Ntag424Card.from_state(json.loads(json.dumps(card.state())))
    assert copy.state() == card.state()
    assert copy.files[2].settings_bytes() == card.files[2].settings_bytes()


# -- A whole personalization, reader-side code against the emulator ----------------------------


MASTERS = [bytes((0x10 * n + 1,)) * 16 for n in range(5)]
SYSTEM_ID = b"tilltap-test"


def _diversified(uid):
    return [keys.system_key(MASTERS[1], 1, SYSTEM_ID) if n == 1 else
            keys.card_key(MASTERS[n], uid, n, SYSTEM_ID) for n in range(5)]


def test_personalization_with_diversified_keys_gives_suns_the_back_office_verifies():
    card = _card(_hex("04A1B2C3D4E5F6"))
    uid = card.uid
    card_keys = _diversified(uid)
    session = _authenticate(card)  # factory key 0
    for n in (1, 2, 3, 4):
        capdu = commands.change_key(session, n, card_keys[n], 1, ZERO_KEY)
        assert _exchange(card, session, capdu) == b""
    assert _exchange(card, session, commands.change_key(session, 0, card_keys[0], 1)) == b""
    assert not session.active
    session = _authenticate(card, card_keys[0])
    ndef, settings = _sun_template("https://tap.example/c", 1, 2)
    assert _exchange(card, session, commands.write_data(2, 0, ndef, session, COMM_PLAIN)) == b""
    settings.write = 0  # after personalization only key 0 rewrites the URL
    capdu = commands.change_file_settings(session, 2, files.encode_change(settings))
    assert _exchange(card, session, capdu) == b""
    url = _tap(card)
    result = sun.verify_sun_url(
        url, card_keys[1], lambda seen: keys.card_key(MASTERS[2], seen, 2, SYSTEM_ID))
    assert result["valid"] and result["uid"] == uid and result["read_counter"] == 1
    assert not sun.verify_sun_url(url, card_keys[1], ZERO_KEY)["valid"]
    assert _authenticate(card, card_keys[3], 3).active  # a terminal's presence check
    reader = auth.PcdAuthentication(ZERO_KEY, 0, RND_A)
    assert _upper(card.apdu(reader.answer_challenge(card.apdu(reader.start())))) == "91AE"
    assert card.apdu(SELECT_NDEF_FILE) == OK_ISO
    assert _upper(card.apdu(ntag424.iso_update_binary(0, b"\x00"))) == "6982"


def test_the_card_answers_through_the_emulated_pn532_and_the_terminal_reads_its_sun():
    card = _sun_card(_hex("04A1B2C3D4E5F6"))
    clock = SimulatedClock()
    emulator = Pn532Emulator(clock)
    emulator.present(card)
    reader = Pn532Reader(Pn532(emulator, clock), clock, on_card_read_sun)
    taps = [reader.read_card(1000), reader.read_card(1000)]
    assert [(uid, reason) for uid, _, reason in taps] == [("04a1b2c3d4e5f6", None)] * 2
    results = [sun.verify_sun_url(url, ZERO_KEY, ZERO_KEY) for _, url, _ in taps]
    assert [result["read_counter"] for result in results] == [1, 2]
    assert all(result["valid"] for result in results)
