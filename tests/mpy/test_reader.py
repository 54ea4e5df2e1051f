"""The Reader seam on a PN532, end to end over the emulated PN532 and card: UIDs, APDUs with
extended frames and chaining, and every way a read can go wrong ending in (None, None, reason)
with the card released. Also checks the emulator against the manual's frames. Runs on CPython
and real MicroPython (tools/simulator/pn532_emulator.py is mounted beside firmware/)."""

from binascii import hexlify, unhexlify

from firmware.pn532 import (
    ACK_FRAME,
    ACTIVATION_TIMEOUT_MS,
    APDU_BYTES_MAX,
    CARD_ABSENT,
    CARD_PULLED,
    CARD_RESPONSE_TOO_LONG,
    CARD_STATUS,
    READER_FRAME_INVALID,
    READER_TIMEOUT,
    RETRY_LIMIT,
    Pn532,
    Pn532Error,
)
from firmware.pn532_bus import I2CBus
from firmware.reader import Pn532Reader
from mpytest import expect_raises
from protocol.errors import ValidationError
from protocol.reasons import CARD_COMMAND_REFUSED
from tools.simulator.pn532_emulator import EchoCard, Pn532Emulator, SimulatedClock

IN_LIST_PASSIVE_TARGET = 0x4A
IN_DATA_EXCHANGE = 0x40
IN_RELEASE = 0x52
SELECT_NDEF_APPLICATION = unhexlify("00a4040007d276000085010100")


def hex_of(data):
    return hexlify(bytes(data)).decode()


def rig(card=None, on_card=None):
    """(reader, emulator, clock): a Pn532Reader on a Pn532 on an emulated PN532."""
    clock = SimulatedClock()
    emulator = Pn532Emulator(clock)
    if card is not None:
        emulator.present(card)
    reader = Pn532Reader(Pn532(emulator, clock), clock, on_card)
    return reader, emulator, clock


def sending(apdu, responses=None, before=None):
    """An on_card that (after calling `before`, if given) sends `apdu`, keeping the answer."""

    def on_card(reader, target):
        if before is not None:
            before()
        response = reader.exchange_apdu(apdu)
        if responses is not None:
            responses.append(response)

    return on_card


# -- reads that work ------------------------------------------------------------------------
def test_read_card_returns_the_uid_in_lowercase_hex_and_releases_the_card():
    reader, emulator, _ = rig(EchoCard(uid=unhexlify("04A1B2C3D4E5F6")))
    assert reader.read_card(1000) == ("04a1b2c3d4e5f6", None, None)  # no on_card: no SUN
    assert emulator.counts["releases"] == 1
    assert emulator.commands[-2:] == [IN_LIST_PASSIVE_TARGET, IN_RELEASE]


def test_the_first_read_wakes_and_configures_the_pn532_and_later_reads_only_poll():
    reader, emulator, _ = rig(EchoCard())
    reader.read_card(1000)
    assert emulator.counts["wakeups"] == 1
    assert emulator.sam_mode == 1
    assert emulator.max_retries == (0xFF, 0x01, 0x01)  # passive activation no longer infinite
    assert reader.firmware_version == (0x32, 1, 6, 7)
    assert emulator.commands == [0x14, 0x32, 0x02, IN_LIST_PASSIVE_TARGET, IN_RELEASE]
    reader.read_card(1000)
    assert emulator.commands[5:] == [IN_LIST_PASSIVE_TARGET, IN_RELEASE]


def test_a_four_byte_uid_card_without_iso_dep_reads_too():
    card = EchoCard(uid=unhexlify("deadbeef"), sens_res=unhexlify("0004"), sel_res=0x08, ats=b"")
    reader, _, _ = rig(card)
    assert reader.read_card(1000) == ("deadbeef", None, None)


def test_on_card_exchanges_apdus_while_the_card_is_selected():
    card, responses = EchoCard(), []
    reader, emulator, _ = rig(card, sending(SELECT_NDEF_APPLICATION, responses))
    assert reader.read_card(1000) == ("04112233445566", None, None)
    assert responses == [unhexlify("9000")]
    assert card.apdus == [SELECT_NDEF_APPLICATION]
    assert emulator.commands[-1] == IN_RELEASE


def test_an_apdu_above_255_bytes_travels_in_extended_frames_and_chained_both_ways():
    apdu = unhexlify("00d6000000") + unhexlify("0259") + bytes(range(256)) * 2 + bytes(89)
    assert len(apdu) == 608

    card, responses = EchoCard(), []
    reader, emulator, _ = rig(card, sending(apdu, responses))
    assert reader.read_card(1000)[0] == "04112233445566"
    assert card.apdus == [apdu]  # the card got the whole APDU, once
    assert responses == [apdu + unhexlify("9000")]  # 610 bytes back over 3 frames
    host = [frame for direction, frame in emulator.wire if direction == "host"]
    extended = [frame for frame in host if frame[:5] == unhexlify("0000ffffff")]
    assert len(extended) == 2  # two full chunks with MI, the tail fits a normal frame
    assert [frame[8:11] for frame in extended] == [unhexlify("d44041")] * 2
    answers = [frame for direction, frame in emulator.wire if direction == "pn532"]
    assert sum(1 for frame in answers if frame[:5] == unhexlify("0000ffffff")) == 2


# -- reads that end in no card and a reason -----------------------------------------------------
def test_no_card_returns_no_uid_and_card_absent_after_polling_within_the_timeout():
    reader, emulator, clock = rig()
    started = clock.ticks_ms()
    assert reader.read_card(300) == (None, None, CARD_ABSENT)
    assert clock.ticks_diff(clock.ticks_ms(), started) <= 300 + ACTIVATION_TIMEOUT_MS
    assert emulator.commands.count(IN_LIST_PASSIVE_TARGET) > 1
    assert emulator.counts["releases"] == 0  # nothing was selected
    assert reader.failures == {CARD_ABSENT: 1}


def test_a_card_whose_frames_arrive_garbled_returns_reader_frame_invalid():
    def garble():
        emulator.corrupt_responses(RETRY_LIMIT + 1)  # the exchange's answer and every resend

    reader, emulator, _ = rig(EchoCard(), sending(SELECT_NDEF_APPLICATION, before=garble))
    assert reader.read_card(1000) == (None, None, READER_FRAME_INVALID)
    assert emulator.counts["nacks"] == RETRY_LIMIT
    assert emulator.commands[-2:] == [IN_DATA_EXCHANGE, IN_RELEASE]
    assert emulator.counts["releases"] == 1
    assert not reader.configured  # the next read configures the PN532 afresh


def test_one_garbled_frame_is_recovered_by_nack_and_the_read_succeeds():
    reader, emulator, _ = rig(EchoCard(), sending(SELECT_NDEF_APPLICATION))
    emulator.corrupt_responses(1)  # SAMConfiguration's answer, the first frame after the ACK
    assert reader.read_card(1000) == ("04112233445566", None, None)
    assert reader.pn532.stats["nacks_sent"] == 1
    assert reader.failures == {}


def test_a_dropped_answer_returns_reader_timeout_and_still_releases():
    drops = [1]

    def drop_once():
        if drops:
            emulator.drop_responses(drops.pop())  # the first exchange's answer never comes

    reader, emulator, _ = rig(EchoCard(), sending(SELECT_NDEF_APPLICATION, before=drop_once))
    assert reader.read_card(1000) == (None, None, READER_TIMEOUT)
    host_frames = [frame for direction, frame in emulator.wire if direction == "host"]
    assert host_frames[-3][5:7] == unhexlify("d440")  # InDataExchange, ACKed, no answer
    assert host_frames[-2] == ACK_FRAME  # host -> PN532: abort it
    assert emulator.commands[-2:] == [IN_DATA_EXCHANGE, IN_RELEASE]
    assert emulator.counts["releases"] == 1
    assert reader.read_card(1000) == ("04112233445566", None, None)  # configured afresh
    assert emulator.counts["wakeups"] == 2


def test_a_card_pulled_mid_exchange_returns_card_pulled_and_is_released():
    reader, emulator, _ = rig(EchoCard(), sending(SELECT_NDEF_APPLICATION))
    emulator.pull_card()
    assert reader.read_card(1000) == (None, None, CARD_PULLED)
    assert "0x01" in reader.last_detail
    assert emulator.commands[-2:] == [IN_DATA_EXCHANGE, IN_RELEASE]
    assert reader.read_card(200) == (None, None, CARD_ABSENT)  # and it is gone


def test_a_card_pulled_between_chained_chunks_returns_card_pulled():
    card = EchoCard()
    reader, emulator, _ = rig(card, sending(bytes(600)))
    emulator.pull_card(after_exchanges=1)  # after the first chunk went through
    assert reader.read_card(1000) == (None, None, CARD_PULLED)
    assert card.apdus == []
    assert emulator.commands[-1] == IN_RELEASE


def test_a_card_that_vanishes_between_two_apdus_returns_card_pulled():
    def select_then_vanish(reader, target):
        reader.exchange_apdu(SELECT_NDEF_APPLICATION)
        emulator.remove()
        reader.exchange_apdu(unhexlify("00b0000000"))

    reader, emulator, _ = rig(EchoCard(), select_then_vanish)
    assert reader.read_card(1000) == (None, None, CARD_PULLED)
    assert emulator.counts["releases"] == 1


def test_a_card_answering_with_a_crc_error_returns_card_status():
    reader, emulator, _ = rig(EchoCard(), sending(SELECT_NDEF_APPLICATION))
    emulator.pull_card(status=0x02)  # status 02: CRC error from the card's side
    assert reader.read_card(1000) == (None, None, CARD_STATUS)
    assert emulator.counts["releases"] == 1


def test_a_response_above_apdu_bytes_max_returns_card_response_too_long():
    oversized = bytes(APDU_BYTES_MAX)  # echoed with 90 00: two bytes too many
    reader, emulator, _ = rig(EchoCard(), sending(oversized))
    assert reader.read_card(1000) == (None, None, CARD_RESPONSE_TOO_LONG)
    assert emulator.commands[-1] == IN_RELEASE


def test_the_sun_on_card_returns_is_the_taps_sun():
    reader, _, _ = rig(EchoCard(), lambda reader, target: "https://tap.example/c?x=1")
    assert reader.read_card(1000) == ("04112233445566", "https://tap.example/c?x=1", None)


def test_a_sun_read_that_fails_is_no_tap_not_a_uid_without_its_sun():
    def refused(reader, target):
        raise ValidationError(CARD_COMMAND_REFUSED, "status 6982")

    reader, emulator, _ = rig(EchoCard(), refused)
    assert reader.read_card(1000) == (None, None, CARD_COMMAND_REFUSED)
    assert reader.last_detail == "status 6982"
    assert emulator.counts["releases"] == 1


def test_nothing_of_one_tap_carries_into_the_next():
    suns = ["https://tap.example/c?n=1"]

    def once(reader, target):
        return suns.pop() if suns else None  # the second read finds no SUN

    reader, _, _ = rig(EchoCard(), once)
    assert reader.read_card(1000)[1] == "https://tap.example/c?n=1"
    assert reader.read_card(1000) == ("04112233445566", None, None)
    assert reader.read_card(1000) == ("04112233445566", None, None)  # the card stayed


def test_a_failed_release_after_a_good_read_keeps_the_tap_and_reconfigures_next_time():
    def drop_release(reader, target):
        emulator.drop_responses(1)  # the answer to InRelease never comes
        return "https://tap.example/c"

    reader, emulator, _ = rig(EchoCard(), drop_release)
    assert reader.read_card(1000) == ("04112233445566", "https://tap.example/c", None)
    assert reader.failures == {READER_TIMEOUT: 1}
    assert not reader.configured
    reader.on_card = None
    assert reader.read_card(1000) == ("04112233445566", None, None)
    assert emulator.counts["wakeups"] == 2


def test_release_happens_even_when_on_card_has_a_programmer_error():
    def broken(reader, target):
        raise ValueError("bug in the caller")

    reader, emulator, _ = rig(EchoCard(), broken)
    expect_raises(ValueError, reader.read_card, 1000)
    assert emulator.counts["releases"] == 1


def test_exchange_apdu_outside_on_card_is_a_programmer_error():
    reader, _, _ = rig(EchoCard())
    expect_raises(AssertionError, reader.exchange_apdu, SELECT_NDEF_APPLICATION)


# -- the same stack over I2C ------------------------------------------------------------------
class EmulatorOnI2C:
    """machine.I2C stand-in wired to the emulator: status byte first, reads padded to length."""

    def __init__(self, emulator):
        self.emulator = emulator
        self.reads = []

    def writeto(self, address, data):
        assert address == 0x24
        self.emulator.write(data)

    def readfrom(self, address, count):
        self.reads.append(count)
        if not self.emulator.wait_ready(0):
            return bytes(count)  # status 00: busy
        return (b"\x01" + self.emulator.read(count - 1, 0) + bytes(count))[:count]


def test_the_reader_works_over_i2c_with_status_bytes_and_read_padding():
    clock = SimulatedClock()
    emulator = Pn532Emulator(clock)
    emulator.present(EchoCard())
    i2c, responses = EmulatorOnI2C(emulator), []
    on_card = sending(SELECT_NDEF_APPLICATION, responses)
    reader = Pn532Reader(Pn532(I2CBus(i2c, clock=clock), clock), clock, on_card)
    assert reader.read_card(1000) == ("04112233445566", None, None)
    assert responses == [unhexlify("9000")]
    assert 7 in i2c.reads  # the ACK: status byte + 6


# -- the emulator against the manual -----------------------------------------------------------
def test_the_emulator_acks_then_answers_get_firmware_version_like_the_manual():
    emulator = Pn532Emulator()
    emulator.write(unhexlify("0000ff02fed4022a00"))  # host -> PN532: GetFirmwareVersion
    assert emulator.read(6, 0) == ACK_FRAME  # PN532 -> host: ACK
    assert hex_of(emulator.read(64, 0)) == "0000ff06fad50332010607e800"  # D5 03 32 01 06 07


def test_the_emulator_ignores_a_frame_with_a_bad_checksum():
    emulator = Pn532Emulator()
    emulator.write(unhexlify("0000ff02fed4022b00"))  # DCS 2B: wrong
    assert not emulator.wait_ready(0)
    assert emulator.counts["ignored"] == 1


def test_the_emulator_answers_an_unknown_command_with_the_syntax_error_frame():
    emulator = Pn532Emulator()
    emulator.write(unhexlify("0000ff02fed47eae00"))  # host -> PN532: command 7E
    assert emulator.read(6, 0) == ACK_FRAME
    assert hex_of(emulator.read(64, 0)) == "0000ff01ff7f8100"


def test_the_emulator_resends_its_last_response_on_nack():
    emulator = Pn532Emulator()
    emulator.write(unhexlify("0000ff02fed4022a00"))
    emulator.read(64, 0)
    emulator.write(unhexlify("0000ffff0000"))  # host -> PN532: NACK
    assert hex_of(emulator.read(64, 0)) == "0000ff06fad50332010607e800"


def test_with_infinite_passive_retries_and_no_card_the_driver_times_out_and_aborts():
    clock = SimulatedClock()
    emulator = Pn532Emulator(clock)  # MaxRetries still the 0xFF default: polls forever
    driver = Pn532(emulator, clock)
    error = expect_raises(Pn532Error, driver.list_passive_target, 200)
    assert error.reason == READER_TIMEOUT
    assert emulator.counts["aborts"] == 1
