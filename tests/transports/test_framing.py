"""The pure parts of the transports, byte for byte: ISO-DEP card blocks, ATS for emulation,
the PC/SC ATR and GET DATA answers, vpcd framing, reader specs."""

import pytest

from tools.simulator.pn532_emulator import EchoCard
from tools.transports import (
    DESCRIPTIONS,
    CardRemoved,
    ReaderUnavailable,
    TransportError,
    open_reader,
)
from tools.transports.nfc_card import IsoDepCard, _new_counts, ats_for_emulation, fsd_from_rats
from tools.transports.nfc_reader import NfcReader
from tools.transports.pcsc_reader import PcscReader, match_readers
from tools.transports.vpcd_card import (
    atr_for_ats,
    ats_historical_bytes,
    frame,
    reader_get_data,
)

SELECT_NDEF = bytes.fromhex("00A4040007D276000085010100")


def card_session(fsd: int = 256) -> tuple[IsoDepCard, EchoCard]:
    card = EchoCard()
    return IsoDepCard(card.apdu, fsd, _new_counts()), card


# -- ISO-DEP card side (ISO/IEC 14443-4) ---------------------------------------------------
def test_an_i_block_is_answered_in_an_i_block_with_the_same_block_number():
    session, card = card_session()
    assert session.handle(bytes.fromhex("02") + SELECT_NDEF) == bytes.fromhex("02 9000")
    assert session.handle(bytes.fromhex("03") + SELECT_NDEF) == bytes.fromhex("03 9000")
    assert card.apdus == [SELECT_NDEF, SELECT_NDEF]


def test_a_chained_command_is_acknowledged_block_by_block_then_answered_whole():
    session, card = card_session()
    assert session.handle(bytes.fromhex("12 00A40400")) == bytes.fromhex("A2")  # I(0) MI -> ACK(0)
    assert session.handle(bytes.fromhex("13 07D2760000")) == bytes.fromhex("A3")  # I(1) MI
    assert session.handle(bytes.fromhex("02 85010100")) == bytes.fromhex("02 9000")  # last I(0)
    assert card.apdus == [SELECT_NDEF]
    assert session.counts["chained_command_blocks"] == 2


def test_a_response_longer_than_the_frame_size_is_chained_and_released_by_acks():
    session, _ = card_session(fsd=16)  # 13 bytes of INF per block
    command = bytes.fromhex("80010000 0A 00010203040506070809")  # echoed + 9000 = 17 bytes
    echoed = command + b"\x90\x00"
    first = session.handle(b"\x02" + command)
    assert first == b"\x12" + echoed[:13]  # I(0) with MI
    assert session.handle(bytes.fromhex("A3")) == b"\x03" + echoed[13:]  # ACK(1) -> last I(1)
    assert session.counts["chained_response_blocks"] == 1


def test_a_nak_with_our_block_number_gets_the_last_block_again():
    session, _ = card_session()
    answer = session.handle(bytes.fromhex("02") + SELECT_NDEF)
    assert session.handle(bytes.fromhex("B2")) == answer  # NAK(0): our answer was lost
    assert session.counts["retransmissions"] == 1


def test_an_ack_with_our_block_number_gets_the_last_block_again():
    session, _ = card_session(fsd=16)
    first = session.handle(b"\x02" + bytes.fromhex("80010000 0A 00010203040506070809"))
    assert session.handle(bytes.fromhex("A2")) == first  # ACK(0) = ours: repeat, not next


def test_a_nak_with_another_block_number_is_answered_with_an_ack():
    session, _ = card_session()
    session.handle(bytes.fromhex("02") + SELECT_NDEF)  # our block number is now 0
    assert session.handle(bytes.fromhex("B3")) == bytes.fromhex("A2")  # presence check / lost


def test_deselect_is_answered_and_ends_the_session():
    session, _ = card_session()
    assert session.handle(bytes.fromhex("C2")) == bytes.fromhex("C2")
    assert session.deselected


def test_a_cid_sent_by_the_reader_is_echoed_and_another_cid_is_ignored():
    session, _ = card_session()
    assert session.handle(bytes.fromhex("0A 00") + SELECT_NDEF) == bytes.fromhex("0A 00 9000")
    assert session.handle(bytes.fromhex("0B 01") + SELECT_NDEF) is None  # CID 1: not us


def test_garbled_blocks_get_no_answer():
    session, _ = card_session()
    for block in (b"", bytes.fromhex("26"), bytes.fromhex("F2 01"), bytes.fromhex("A3")):
        assert session.handle(block) is None
    assert session.counts["ignored_blocks"] == 4


def test_a_card_that_raises_answers_6f00_and_the_session_goes_on():
    def broken(command: bytes) -> bytes:
        raise RuntimeError("card bug")

    session = IsoDepCard(broken, 256, _new_counts())
    assert session.handle(bytes.fromhex("02") + SELECT_NDEF) == bytes.fromhex("02 6F00")
    assert session.counts["card_errors"] == 1
    assert isinstance(session.card_error, RuntimeError)


def test_ats_for_emulation_sets_fwi_14_and_keeps_the_rest():
    assert ats_for_emulation(bytes.fromhex("05 78 80 A0 02")) == bytes.fromhex("05 78 80 E0 02")
    # TL 06: T0 78, TA 77, TB 71, TC 02, one historical byte 80 (NTAG 424 DNA's ATS)
    assert ats_for_emulation(bytes.fromhex("06 77 77 71 02 80")) == bytes.fromhex(
        "06 77 77 E1 02 80"
    )
    # No TA/TB/TC: inserted as their defaults (TA 00; TB FWI 4 SFGI 0 -> FWI 14)
    assert ats_for_emulation(bytes.fromhex("02 05")) == bytes.fromhex("04 35 00 E0")
    assert ats_for_emulation(bytes.fromhex("05 78 80 A0 02"), fwi=8) == bytes.fromhex(
        "05 78 80 80 02"
    )


def test_fsd_comes_from_the_rats_parameter_byte():
    assert fsd_from_rats(bytes.fromhex("E0 80")) == 256  # nfcpy's RATS
    assert fsd_from_rats(bytes.fromhex("E0 50")) == 64
    assert fsd_from_rats(bytes.fromhex("E0 F0")) == 256  # RFU/larger: clamped


# -- PC/SC reader part played by VpcdCard ----------------------------------------------------
def test_atr_for_the_default_ats_is_the_minimal_t1_atr():
    assert atr_for_ats(bytes.fromhex("05 78 80 A0 02")) == bytes.fromhex("3B 80 80 01 01")


def test_atr_carries_the_ats_historical_bytes_and_a_check_byte():
    ats = bytes.fromhex("06 77 77 71 02 80")
    assert ats_historical_bytes(ats) == bytes.fromhex("80")
    assert atr_for_ats(ats) == bytes.fromhex("3B 81 80 01 80 80")  # TCK = 81^80^01^80


def test_get_data_answers_uid_and_historical_bytes_like_a_contactless_reader():
    card = EchoCard()
    assert reader_get_data(card, bytes.fromhex("FFCA000000")) == card.uid + b"\x90\x00"
    assert reader_get_data(card, bytes.fromhex("FFCA000004")) == bytes.fromhex("6C07")
    assert reader_get_data(card, bytes.fromhex("FFCA010000")) == bytes.fromhex("9000")
    assert reader_get_data(card, bytes.fromhex("FFCA020000")) == bytes.fromhex("6A81")
    assert reader_get_data(card, SELECT_NDEF) is None


def test_vpcd_frames_are_a_two_byte_big_endian_length_and_the_payload():
    assert frame(bytes.fromhex("3B80800101")) == bytes.fromhex("0005 3B80800101")
    assert frame(b"\x90\x00") == bytes.fromhex("0002 9000")


# -- reader selection ----------------------------------------------------------------------
def test_reader_names_match_exactly_then_by_substring():
    readers = ["Virtual PCD 00 00", "Virtual PCD 00 01", "ACS ACR122U 00 00"]
    assert match_readers(readers, None) == readers
    assert match_readers(readers, "Virtual PCD 00 01") == ["Virtual PCD 00 01"]
    assert match_readers(readers, "acr122") == ["ACS ACR122U 00 00"]
    assert match_readers(readers, "Nope") == []


def test_open_reader_picks_the_side_from_the_reader_spec():
    assert isinstance(open_reader("pcsc"), PcscReader)
    named = open_reader("pcsc:Virtual PCD 00 01")
    assert isinstance(named, PcscReader) and named.reader_name == "Virtual PCD 00 01"
    assert isinstance(open_reader("udp:127.0.0.1:54321"), NfcReader)
    assert isinstance(open_reader("usb:054c:06c3"), NfcReader)
    with pytest.raises(ReaderUnavailable) as error:
        open_reader("bluetooth")
    assert error.value.reason == "reader_unavailable"


def test_every_error_has_a_described_reason_code():
    kinds = TransportError.__subclasses__()
    assert len(kinds) == 7
    assert {kind.reason for kind in kinds} == set(DESCRIPTIONS)


def test_errors_carry_their_reason_codes():
    assert CardRemoved("gone").reason == "card_pulled"
    assert str(CardRemoved("gone")) == "card_pulled: gone"
