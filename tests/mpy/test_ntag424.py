"""NTAG 424 DNA secure messaging reproduces every step of the AN12196 vectors
(ntag424_an12196.json), reader side and card side, on CPython and MicroPython; plus the EV2
IV and MAC vectors of desfire.json (same secure messaging, AN12343) and the error paths."""

from mpytest import expect_raises, load_json
from protocol import aes, cmac, ntag424
from protocol import ntag424_auth as auth
from protocol import ntag424_commands as commands
from protocol import ntag424_files as files
from protocol.errors import AuthenticationError, ValidationError
from protocol.ntag424 import CardStatusError
from protocol.ntag424_sm import COMM_FULL, COMM_MAC, COMM_PLAIN, Session


def _vectors(name="ntag424_an12196.json"):
    return {vector["id"]: vector for vector in load_json(name)["vectors"]}


def _hex(text):
    return bytes.fromhex(text)


def _upper(data):
    return data.hex().upper()


def _body(capdu):
    """The data field of a short C-APDU with Lc and Le."""
    return ntag424.parse_command(capdu)[4]


def _first_auth():
    return _vectors()["an12196_auth_ev2_first_key00"]


def _authenticated_reader():
    """The reader's session after the AN12196 AuthenticateEV2First (TI 9D00C4DF)."""
    vector = _first_auth()
    reader = auth.PcdAuthentication(_hex(vector["key"]), 0, _hex(vector["RndA"]))
    reader.start()
    reader.answer_challenge(_hex(vector["rapdu_1"]))
    return reader.finish(_hex(vector["rapdu_2"]))


def _card_session(reader_session):
    """The card's copy of a session (what the card derived in the same authentication)."""
    return Session(
        reader_session.enc_key,
        reader_session.mac_key,
        reader_session.transaction_id,
        reader_session.key_number,
        reader_session.command_counter,
    )


# -- AuthenticateEV2First ------------------------------------------------------------------


def test_reader_authenticate_ev2_first_reproduces_an12196_table_14():
    vector = _first_auth()
    reader = auth.PcdAuthentication(_hex(vector["key"]), 0, _hex(vector["RndA"]))
    assert _upper(reader.start()) == vector["capdu_1"]
    assert _upper(reader.answer_challenge(_hex(vector["rapdu_1"]))) == vector["capdu_2"]
    assert _upper(reader.rnd_b) == vector["RndB"]
    assert _upper(auth.rotate_left(reader.rnd_b)) == vector["RndB_rotl1"]
    session = reader.finish(_hex(vector["rapdu_2"]))
    assert _upper(session.transaction_id) == vector["TI"]
    assert _upper(session.enc_key) == vector["SesAuthENCKey"]
    assert _upper(session.mac_key) == vector["SesAuthMACKey"]
    assert session.command_counter == vector["CmdCtr_after_auth"] == 0
    assert session.key_number == 0 and session.active


def test_authentication_intermediate_values_match_an12196_table_14():
    vector = _first_auth()
    key, rnd_a, rnd_b = _hex(vector["key"]), _hex(vector["RndA"]), _hex(vector["RndB"])
    assert _upper(aes.encrypt_block(key, rnd_b)) == vector["E_K_RndB"]
    token = aes.cbc_encrypt(key, bytes(16), rnd_a + auth.rotate_left(rnd_b))
    assert _upper(token) == vector["E_K_RndA_RndBrot"]
    plain = aes.cbc_decrypt(key, bytes(16), _hex(vector["rapdu_2"])[:-2])
    assert _upper(plain) == vector["D_K_rapdu2"]
    assert _upper(plain[4:20]) == vector["RndA_rotl1"] == _upper(auth.rotate_left(rnd_a))
    assert _upper(plain[20:26]) == vector["PDcap2"] and _upper(plain[26:32]) == vector["PCDcap2"]
    sv1, sv2 = auth.session_vectors(rnd_a, rnd_b)
    assert _upper(sv1) == vector["SV1"] and _upper(sv2) == vector["SV2"]


def test_card_authenticate_ev2_first_reproduces_an12196_table_14():
    vector = _first_auth()
    key_number, pcd_capabilities = auth.parse_first_command(_body(_hex(vector["capdu_1"])))
    assert key_number == 0 and pcd_capabilities == bytes(6)
    card = auth.PiccAuthentication(
        _hex(vector["key"]), key_number, _hex(vector["RndB"]), transaction_id=_hex(vector["TI"])
    )
    assert _upper(card.challenge()) == vector["rapdu_1"]
    rapdu, session = card.verify(_body(_hex(vector["capdu_2"])))
    assert _upper(rapdu) == vector["rapdu_2"]
    assert _upper(session.enc_key) == vector["SesAuthENCKey"]
    assert _upper(session.mac_key) == vector["SesAuthMACKey"]


def test_reader_refuses_a_card_that_returns_the_wrong_rnd_a():
    vector = _first_auth()
    reader = auth.PcdAuthentication(_hex(vector["key"]), 0, bytes(16))  # not the RndA sent
    reader.start()
    reader.answer_challenge(_hex(vector["rapdu_1"]))
    error = expect_raises(AuthenticationError, reader.finish, _hex(vector["rapdu_2"]))
    assert error.reason == "card_auth_failed"


def test_card_refuses_a_reader_that_does_not_know_the_key():
    vector = _first_auth()
    card = auth.PiccAuthentication(bytes(16), 0, _hex(vector["RndB"]), transaction_id=bytes(4))
    card.challenge()
    forged = aes.cbc_encrypt(b"\x01" * 16, bytes(16), bytes(32))
    error = expect_raises(AuthenticationError, card.verify, forged)
    assert error.reason == "card_auth_failed"


def test_a_card_refusing_authentication_with_91ae_is_card_auth_failed():
    reader = auth.PcdAuthentication(bytes(16), 0, bytes(16))
    reader.start()
    error = expect_raises(CardStatusError, reader.answer_challenge, b"\x91\xae")
    assert error.reason == "card_auth_failed" and error.status_word == 0x91AE
    error = expect_raises(CardStatusError, reader.answer_challenge, b"\x91\x40")
    assert error.reason == "card_command_refused"


def test_a_challenge_of_the_wrong_length_is_malformed():
    reader = auth.PcdAuthentication(bytes(16), 0, bytes(16))
    error = expect_raises(ValidationError, reader.answer_challenge, bytes(8) + b"\x91\xaf")
    assert error.reason == "card_response_malformed"
    error = expect_raises(ValidationError, auth.parse_first_command, b"\x00\x02\x00")
    assert error.reason == "apdu_malformed"


# -- AuthenticateEV2NonFirst ---------------------------------------------------------------


def test_authenticate_ev2_non_first_reproduces_an12196_table_24_and_keeps_ti_and_counter():
    vector = _vectors()["an12196_auth_ev2_nonfirst_key00"]
    key, rnd_a, rnd_b = _hex(vector["key"]), _hex(vector["RndA"]), _hex(vector["RndB"])
    previous = Session(bytes(16), bytes(16), _hex("7614281A"), 0, 5)
    reader = auth.PcdAuthentication(key, 0, rnd_a, previous=previous)
    assert _upper(reader.start()) == "9077000001" + "00" + "00"
    card = auth.PiccAuthentication(key, 0, rnd_b, previous=_card_session(previous))
    challenge = card.challenge()
    assert _upper(challenge) == vector["E_K_RndB"] + "91AF"
    capdu = reader.answer_challenge(challenge)
    assert _upper(capdu) == "90AF000020" + vector["E_K_RndA_RndBrot"] + "00"
    rapdu, card_session = card.verify(_body(capdu))
    assert rapdu == aes.encrypt_block(key, auth.rotate_left(rnd_a)) + b"\x91\x00"
    session = reader.finish(rapdu)
    assert _upper(auth.session_vectors(rnd_a, rnd_b)[0]) == vector["SV1"]
    assert _upper(session.enc_key) == vector["SesAuthENCKey"]
    assert _upper(session.mac_key) == vector["SesAuthMACKey"]
    assert session.transaction_id == card_session.transaction_id == _hex("7614281A")
    assert session.command_counter == card_session.command_counter == 5


# -- Secure messaging: IVs and MACs -----------------------------------------------------------


def test_command_iv_matches_the_desfire_ev2_vectors():
    for case in _vectors("desfire.json")["ev2_ivc"]["cases"]:
        session = Session(_hex(case["SesAuthENCKey"]), bytes(16), _hex(case["TI"]), 0)
        session.command_counter = case["CmdCtr"]
        assert _upper(session.command_iv()) == case["IVc"]


def test_command_and_response_macs_match_an12343_write_and_read_in_commmode_mac():
    vector = _vectors("desfire.json")["an12343_ev2_commmode_mac_write_read"]
    session = Session(bytes(16), _hex(vector["SesAuthMACKey"]), _hex(vector["TI"]), 0)
    for step in vector["steps"]:
        session.command_counter = step["CmdCtr"]
        data = _hex(step["mac_data"])
        if step["dir"] == "cmd":
            mac = session.command_mac(int(step["ins"], 16), b"", data)
        else:
            session.command_counter -= 1  # the response MAC uses CmdCtr + 1
            mac = session.response_mac(int(step["rc"], 16), data)
        assert _upper(mac) == step["MACt"], step


def test_session_keys_match_an12343():
    vector = _vectors("desfire.json")["an12343_ev2_session_keys"]
    key, rnd_a, rnd_b = _hex(vector["key"]), _hex(vector["RndA"]), _hex(vector["RndB"])
    assert _upper(auth.session_vectors(rnd_a, rnd_b)[0]) == vector["SV1"]
    enc_key, mac_key = auth.session_keys(key, rnd_a, rnd_b)
    assert _upper(enc_key) == vector["SesAuthENCKey"]
    assert _upper(mac_key) == vector["SesAuthMACKey"]


# -- GetFileSettings in CommMode MAC ---------------------------------------------------------


def test_get_file_settings_in_commmode_mac_reproduces_an12196_5_3():
    vector = _vectors()["an12196_getfilesettings_commmode_mac"]
    session = Session(bytes(16), _hex(vector["SesAuthMACKey"]), _hex(vector["TI"]), 0)
    mac_input = _hex(vector["mac_input_cmd"])
    assert _upper(cmac.mac_t(session.mac_key, mac_input)) == vector["MACt_cmd"]
    capdu = commands.get_file_settings(2, session)
    assert _upper(capdu) == vector["capdu"]
    rapdu = _hex(vector["rapdu"])
    resp_input = _hex(vector["mac_input_resp"])
    assert _upper(cmac.mac_t(session.mac_key, resp_input)) == vector["MACt_resp"]
    data = session.response(rapdu)
    assert data == resp_input[7:]
    assert session.command_counter == 1


def test_get_file_settings_answer_decodes_to_the_sdm_settings_of_an12196_5_3():
    vector = _vectors()["an12196_getfilesettings_commmode_mac"]
    settings = files.decode_settings(_hex(vector["mac_input_resp"])[7:])
    assert settings.file_type == 0 and settings.comm_mode == COMM_PLAIN and settings.sdm_enabled
    assert (settings.read, settings.write, settings.read_write, settings.change) == (14, 14, 14, 14)
    assert settings.file_size == 256
    assert settings.sdm_options == files.SDM_UID | files.SDM_READ_COUNTER | 0x10 | 0x01
    assert (settings.sdm_meta_read, settings.sdm_file_read) == (0, 0)
    assert settings.sdm_counter_retrieval == files.ACCESS_FREE
    assert settings.present_offsets() == [
        "picc_data_offset",
        "mac_input_offset",
        "enc_offset",
        "enc_length",
        "mac_offset",
    ]
    assert (settings.picc_data_offset, settings.mac_input_offset) == (0x1F, 0x44)
    assert (settings.enc_offset, settings.enc_length, settings.mac_offset) == (0x44, 0x20, 0x6A)
    assert settings.uid_offset is None and settings.read_counter_limit is None


def test_card_answers_get_file_settings_with_the_an12196_5_3_response():
    vector = _vectors()["an12196_getfilesettings_commmode_mac"]
    card = Session(bytes(16), _hex(vector["SesAuthMACKey"]), _hex(vector["TI"]), 0)
    header, data = card.open_command(0xF5, _body(_hex(vector["capdu"])), 1, COMM_MAC)
    assert header == b"\x02" and data == b""
    settings = _hex(vector["mac_input_resp"])[7:]
    assert _upper(card.answer(settings, COMM_MAC)) == vector["rapdu"]


# -- WriteData / ChangeFileSettings in CommMode Full ------------------------------------------


def test_write_data_in_commmode_full_reproduces_an12196_table_18():
    vector = _vectors()["an12196_writedata_commmode_full_ndef"]
    session = _authenticated_reader()
    plain = _hex(vector["plain_data_0x80"])
    assert len(plain) == 0x80 and len(cmac.pad(plain)) == vector["padded_plain_len"]
    assert plain[2:].startswith(b"\xd1\x01\x4d\x55\x04" + vector["ndef_url"][8:].encode())
    assert _upper(session.command_iv()) == vector["IVc"]
    encrypted = aes.cbc_encrypt(session.enc_key, session.command_iv(), cmac.pad(plain))
    assert _upper(encrypted) == vector["E_data"]
    header = _hex(vector["cmd_header"])
    mac_input = b"\x8d\x00\x00" + session.transaction_id + header + encrypted
    assert _upper(cmac.aes_cmac(session.mac_key, mac_input)) == vector["CMAC"]
    capdu = commands.write_data(2, 0, plain, session, COMM_FULL)
    assert _upper(capdu) == vector["capdu"]
    assert session.response(_hex(vector["rapdu"])) == b""
    assert session.command_counter == 1


def test_card_opens_the_an12196_write_data_and_answers_its_response():
    vector = _vectors()["an12196_writedata_commmode_full_ndef"]
    card = _card_session(_authenticated_reader())
    header, data = card.open_command(0x8D, _body(_hex(vector["capdu"])), 7, COMM_FULL)
    assert header == _hex(vector["cmd_header"]) and data == _hex(vector["plain_data_0x80"])
    assert _upper(card.answer(b"", COMM_FULL)) == vector["rapdu"]
    assert card.command_counter == 1


def test_change_file_settings_with_sdm_reproduces_an12196_table_19():
    vector = _vectors()["an12196_changefilesettings_commmode_full_sdm"]
    session = _authenticated_reader()
    session.command_counter = vector["CmdCtr"]
    assert _upper(session.command_iv()) == vector["IVc"]
    plain = _hex(vector["plain_data"])
    capdu = commands.change_file_settings(session, 2, plain)
    assert _upper(capdu) == vector["capdu"]
    encrypted = _body(capdu)[1:-8]
    assert _upper(encrypted) == vector["E_data"]
    header = b"\x02"
    assert session.command_mac(0x5F, header, encrypted) == _body(capdu)[-8:]
    assert (
        _upper(b"\x5f\x01\x00" + session.transaction_id + header + encrypted) == vector["mac_input"]
    )
    response_mac = cmac.mac_t(session.mac_key, _hex(vector["resp_mac_input"]))
    assert response_mac + b"\x91\x00" == _hex(vector["rapdu"])
    assert session.response(_hex(vector["rapdu"])) == b""
    assert session.command_counter == 2


def test_the_an12196_table_19_settings_encode_from_file_settings():
    settings = files.FileSettings(comm_mode=COMM_PLAIN, read=files.ACCESS_FREE)
    settings.sdm_enabled = True
    settings.sdm_options = files.SDM_UID | files.SDM_READ_COUNTER | files.SDM_ASCII
    settings.sdm_meta_read, settings.sdm_file_read, settings.sdm_counter_retrieval = 2, 1, 1
    settings.picc_data_offset, settings.mac_input_offset, settings.mac_offset = 0x20, 0x43, 0x43
    plain = _vectors()["an12196_changefilesettings_commmode_full_sdm"]["plain_data"]
    assert _upper(files.encode_change(settings)) == plain


def test_plain_mirror_settings_carry_uid_and_counter_offsets_and_the_counter_limit():
    settings = files.FileSettings(comm_mode=COMM_PLAIN)
    settings.sdm_enabled = True
    settings.sdm_options = files.SDM_UID | files.SDM_READ_COUNTER | files.SDM_ASCII
    settings.sdm_options |= files.SDM_READ_COUNTER_LIMIT
    settings.sdm_meta_read, settings.sdm_file_read = files.ACCESS_FREE, 3
    settings.uid_offset, settings.read_counter_offset = 0x20, 0x33
    settings.mac_input_offset = settings.mac_offset = 0x40
    settings.read_counter_limit = 1000
    encoded = files.encode_change(settings)
    answer = bytes((0,)) + encoded[:3] + b"\x00\x01\x00" + encoded[3:]
    decoded = files.decode_settings(answer)
    assert decoded.present_offsets() == [
        "uid_offset",
        "read_counter_offset",
        "mac_input_offset",
        "mac_offset",
        "read_counter_limit",
    ]
    assert (decoded.uid_offset, decoded.read_counter_offset, decoded.read_counter_limit) == (
        0x20,
        0x33,
        1000,
    )
    assert files.encode_change(decoded) == encoded


def test_file_settings_of_the_wrong_length_are_malformed():
    answer = _hex(_vectors()["an12196_getfilesettings_commmode_mac"]["mac_input_resp"])[7:]
    error = expect_raises(ValidationError, files.decode_settings, answer[:-1])
    assert error.reason == "card_response_malformed"
    error = expect_raises(ValidationError, files.decode_settings, answer + b"\x00")
    assert error.reason == "card_response_malformed"


# -- ChangeKey ---------------------------------------------------------------------------------


def _change_key_session(counter):
    nonfirst = _vectors()["an12196_auth_ev2_nonfirst_key00"]
    enc_key, mac_key = _hex(nonfirst["SesAuthENCKey"]), _hex(nonfirst["SesAuthMACKey"])
    return Session(enc_key, mac_key, _hex("7614281A"), 0, counter)


def test_change_key_of_another_key_reproduces_an12196_table_26():
    vector = _vectors()["an12196_changekey_other_key02"]
    session = _change_key_session(vector["CmdCtr"])
    new_key = _hex(vector["new_key"])
    assert _upper(commands.crc32_nk(new_key)) == vector["CRC32NK_new_key_LE"]
    assert _upper(session.command_iv()) == vector["IVc"]
    capdu = commands.change_key(session, 2, new_key, 1, _hex(vector["old_key"]))
    assert _upper(capdu) == vector["capdu"]
    assert _upper(_body(capdu)[1:-8]) == vector["E_data"]
    assert session.response(_hex(vector["rapdu"])) == b""
    assert session.active and session.command_counter == 3


def test_card_recovers_the_new_key_of_an12196_table_26():
    vector = _vectors()["an12196_changekey_other_key02"]
    card = _change_key_session(vector["CmdCtr"])
    header, data = card.open_command(0xC4, _body(_hex(vector["capdu"])), 1, COMM_FULL)
    assert header == b"\x02"
    assert _upper(cmac.pad(data)) == vector["plain_hex"]
    assert _upper(card.answer(b"", COMM_FULL)) == vector["rapdu"]


def test_change_key_of_the_authenticating_key_reproduces_an12196_table_27_and_ends_the_session():
    vector = _vectors()["an12196_changekey_auth_key00"]
    session = _change_key_session(vector["CmdCtr"])
    assert _upper(session.command_iv()) == vector["IVc"]
    capdu = commands.change_key(session, 0, _hex(vector["new_key"]), 1)
    assert _upper(capdu) == vector["capdu"]
    assert _upper(_body(capdu)[1:-8]) == vector["E_data"]
    assert session.response(_hex(vector["rapdu"])) == b""
    assert not session.active
    expect_raises(AssertionError, commands.get_card_uid, session)


# -- Round trips between the reader's and the card's sessions ----------------------------------


def test_read_data_and_get_card_uid_in_commmode_full_round_trip_between_reader_and_card():
    reader = _authenticated_reader()
    card = _card_session(reader)
    capdu = commands.read_data(2, 0, 0, reader, COMM_FULL)
    header, data = card.open_command(0xAD, _body(capdu), 7, COMM_FULL)
    assert header == b"\x02" + bytes(6) and data == b""
    contents = b"\x00\x10tilltap card 01!"  # 18 bytes: two blocks once padded
    assert reader.response(card.answer(contents, COMM_FULL)) == contents
    capdu = commands.get_card_uid(reader)
    card.open_command(0x51, _body(capdu), 0, COMM_FULL)
    uid = _hex("04DE5F1EACC040")
    assert commands.parse_card_uid(reader.response(card.answer(uid, COMM_FULL))) == uid
    assert reader.command_counter == card.command_counter == 2


def test_plain_commands_in_a_session_still_count():
    reader = _authenticated_reader()
    card = _card_session(reader)
    capdu = commands.read_data(1, 0, 15, reader, COMM_PLAIN)
    assert _upper(capdu) == "90AD00000701000000" + "0F0000" + "00"
    card.open_command(0xAD, _body(capdu), 7, COMM_PLAIN)
    assert reader.response(card.answer(b"\x00\x17", COMM_PLAIN)) == b"\x00\x17"
    assert reader.command_counter == card.command_counter == 1


def test_a_flipped_response_mac_bit_is_card_auth_failed_and_ends_the_session():
    vector = _vectors()["an12196_writedata_commmode_full_ndef"]
    session = _authenticated_reader()
    commands.write_data(2, 0, _hex(vector["plain_data_0x80"]), session, COMM_FULL)
    rapdu = bytearray(_hex(vector["rapdu"]))
    rapdu[0] ^= 0x01
    error = expect_raises(AuthenticationError, session.response, bytes(rapdu))
    assert error.reason == "card_auth_failed"
    assert not session.active


def test_an_error_status_ends_the_session():
    session = _authenticated_reader()
    commands.get_file_settings(9, session)
    error = expect_raises(CardStatusError, session.response, b"\x91\xf0")
    assert error.reason == "card_command_refused" and error.status_word == 0x91F0
    assert not session.active


def test_a_response_without_a_mac_is_malformed():
    session = _authenticated_reader()
    commands.get_file_settings(2, session)
    error = expect_raises(ValidationError, session.response, b"\x01\x02\x91\x00")
    assert error.reason == "card_response_malformed"


def test_card_refuses_a_command_with_a_wrong_mac():
    vector = _vectors()["an12196_writedata_commmode_full_ndef"]
    card = _card_session(_authenticated_reader())
    body = bytearray(_body(_hex(vector["capdu"])))
    body[-1] ^= 0x80
    error = expect_raises(AuthenticationError, card.open_command, 0x8D, bytes(body), 7, COMM_FULL)
    assert error.reason == "card_auth_failed" and not card.active


def test_card_refuses_a_plain_command_shorter_than_its_header():
    card = _card_session(_authenticated_reader())
    error = expect_raises(ValidationError, card.open_command, 0xAD, b"\x02", 7, COMM_PLAIN)
    assert error.reason == "apdu_malformed" and not card.active


def test_unpadding_refuses_data_without_80_00_padding():
    from protocol.ntag424_sm import unpad

    assert unpad(b"abc\x80" + bytes(12)) == b"abc"
    assert unpad(bytes(16) + b"\x80" + bytes(15)) == bytes(16)
    for bad in (bytes(16), b"abc\x81" + bytes(12), bytes(15) + b"\x01"):
        assert expect_raises(ValidationError, unpad, bad).reason == "card_response_malformed"


# -- Plain APDUs -------------------------------------------------------------------------------


def test_iso_select_of_the_ndef_application_matches_an12196():
    expected = load_json("ntag424_an12196.json")["iso_apdus"]["select_ndef_app_by_df_name"]
    assert _upper(ntag424.iso_select_df_name()) == expected["capdu"]
    assert ntag424.iso_response(_hex(expected["rapdu"])) == b""


def test_iso_select_read_and_update_binary_frames():
    assert _upper(ntag424.iso_select_file_id(ntag424.FILE_ID_NDEF)) == "00A4000C02E10400"
    assert _upper(ntag424.iso_read_binary(0, 0)) == "00B0000000"
    assert _upper(ntag424.iso_read_binary(0x102, 0x20)) == "00B0010220"
    assert _upper(ntag424.iso_update_binary(2, b"\xd1\x01")) == "00D6000202D101"
    error = expect_raises(CardStatusError, ntag424.iso_response, b"\x6a\x82")
    assert error.reason == "card_command_refused" and error.status_word == 0x6A82


def test_get_version_frames_and_answer_of_an12196():
    # AN12196's GetVersion example as a public ntag424 JS test transcribes it (hardware
    # subtype 02; the note prints 08 there, which the test calls a typo).
    assert _upper(commands.get_version()) == "9060000000"
    assert _upper(commands.additional_frame()) == "90AF000000"
    hardware = ntag424.native_response(_hex("0404023000110591AF"), more_frames=True)
    software = ntag424.native_response(_hex("0404020101110591AF"), more_frames=True)
    production = ntag424.native_response(_hex("04968CAA5C5E80CD65935D4021189100"))
    version = commands.parse_version(hardware, software, production)
    assert version["hardware"] == {
        "vendor_id": 4,
        "type": 4,
        "subtype": 2,
        "major": 0x30,
        "minor": 0,
        "storage_size": 0x11,
        "protocol": 5,
    }
    assert version["software"]["major"] == 1 and version["software"]["minor"] == 1
    assert version["uid"] == _hex("04968CAA5C5E80")
    assert (version["production_week_bcd"], version["production_year_bcd"]) == (0x21, 0x18)
    assert version["fab_key_id"] is None


def test_plain_commands_without_a_session():
    assert _upper(commands.get_file_settings(2)) == "90F500000102" + "00"
    assert _upper(commands.read_data(2, 0x20, 0x10)) == "90AD0000070220000010000000"
    assert _upper(commands.write_data(1, 0, b"\xab")) == "908D00000801000000010000AB00"
    expect_raises(AssertionError, commands.read_data, 2, 0, 0, None, COMM_FULL)


def test_card_side_apdu_parsing():
    assert ntag424.parse_command(_hex("9060000000")) == (0x90, 0x60, 0, 0, b"", 0)
    assert ntag424.parse_command(_hex("90600000")) == (0x90, 0x60, 0, 0, b"", None)
    assert ntag424.parse_command(_hex("00D6000202D101")) == (0, 0xD6, 0, 2, b"\xd1\x01", None)
    for bad in ("9060", "90AF000005AABB00", "90AF000000AA"):
        error = expect_raises(ValidationError, ntag424.parse_command, _hex(bad))
        assert error.reason == "apdu_malformed"


def test_a_response_shorter_than_a_status_word_is_malformed():
    error = expect_raises(ValidationError, ntag424.native_response, b"\x91")
    assert error.reason == "card_response_malformed"


def test_every_reason_code_has_a_description():
    codes = [
        ntag424.CARD_AUTH_FAILED,
        ntag424.CARD_COMMAND_REFUSED,
        ntag424.CARD_RESPONSE_MALFORMED,
        ntag424.APDU_MALFORMED,
        ntag424.SUN_MALFORMED,
        ntag424.CARD_FAMILY_UNKNOWN,
        ntag424.SUN_REPLAYED,
    ]
    assert sorted(codes) == sorted(ntag424.DESCRIPTIONS)
