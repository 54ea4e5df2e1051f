"""The PN532 driver: frame codec, commands, retries and the I2C / SPI / UART transports, checked
byte for byte against frames from the NXP PN532 User Manual (UM0701-02). Runs on CPython and
real MicroPython; the chip is a script of frames, the clock a fake that only moves when slept."""

from binascii import hexlify, unhexlify

from firmware import pn532
from firmware.pn532 import (
    ACK_FRAME,
    APDU_BYTES_MAX,
    CARD_PULLED,
    CARD_RESPONSE_TOO_LONG,
    CARD_STATUS,
    ERROR_FRAME,
    FRAME_ACK,
    FRAME_ERROR,
    FRAME_INFORMATION,
    FRAME_NACK,
    NACK_FRAME,
    READER_BUS_ERROR,
    READER_ERROR_FRAME,
    READER_FRAME_INVALID,
    READER_NACK,
    READER_TIMEOUT,
    RETRY_LIMIT,
    Pn532,
    Pn532Error,
    command_frame,
    decode_frame,
    decode_response,
    encode_frame,
)
from firmware.pn532_bus import I2CBus, SpiBus, UartBus, bit_reverse
from mpytest import expect_raises

TO_PN532 = "host -> PN532"
TO_HOST = "PN532 -> host"

# Frames used by several tests (each checked byte for byte where it is first used).
ACK = "0000ff00ff00"  # either way: ACK
NACK = "0000ffff0000"  # host -> PN532: NACK, send the last response again
GET_FIRMWARE_VERSION = "0000ff02fed4022a00"  # host -> PN532: GetFirmwareVersion
FIRMWARE_VERSION_1_6 = "0000ff06fad50332010607e800"  # PN532 -> host: IC 32, v1.6, support 07
LIST_PASSIVE_TARGET = "0000ff04fcd44a0100e100"  # host -> PN532: InListPassiveTarget 1, 106 A


def h(text):
    return unhexlify(text)


def hex_of(data):
    return hexlify(bytes(data)).decode()


class FakeClock:
    """Milliseconds that pass only when someone sleeps; nothing really waits."""

    def __init__(self):
        self.now_ms = 0

    def ticks_ms(self):
        return self.now_ms

    def ticks_diff(self, a, b):
        return a - b

    def sleep_ms(self, ms):
        self.now_ms += max(0, ms)


class ScriptedBus:
    """A PN532 played from a script of (direction, hex frame). Each frame the host writes must
    be exactly the next TO_PN532 line; the TO_HOST lines after it are what the chip then
    sends, one frame per read. With nothing to send, wait_ready sleeps its whole timeout."""

    def __init__(self, clock, script, padding_bytes=0):
        self.clock = clock
        self.script = list(script)
        self.padding = bytes(padding_bytes)
        self.ready = []
        self.wakeups = 0

    def write(self, frame):
        assert self.script, "host wrote %s after the script ended" % hex_of(frame)
        direction, expected = self.script.pop(0)
        assert direction == TO_PN532, "host wrote %s; script expects the PN532" % hex_of(frame)
        written = hex_of(frame)
        assert written == expected, "host wrote %s, script says %s" % (written, expected)
        while self.script and self.script[0][0] == TO_HOST:
            self.ready.append(h(self.script.pop(0)[1]))

    def wait_ready(self, timeout_ms):
        if self.ready:
            return True
        self.clock.sleep_ms(timeout_ms)
        return False

    def read(self, n, timeout_ms):
        return (self.ready.pop(0) + self.padding)[:n]

    def wakeup(self):
        self.wakeups += 1

    def finished(self):
        return not self.script and not self.ready


def scripted(script, padding_bytes=0):
    clock = FakeClock()
    bus = ScriptedBus(clock, script, padding_bytes)
    return Pn532(bus, clock), bus


def pn532_frame(body_hex):
    return hex_of(encode_frame(h(body_hex)))


# -- frame codec ----------------------------------------------------------------------------
def test_get_firmware_version_is_the_manuals_frame_with_tfi_d4_and_both_checksums():
    # host -> PN532: 00 | 00 FF | LEN 02 | LCS FE | TFI D4, code 02 | DCS 2A | 00
    assert hex_of(command_frame(0x02)) == GET_FIRMWARE_VERSION


def test_sam_configuration_frame_carries_normal_mode_timeout_and_irq():
    # host -> PN532: SAMConfiguration normal mode, timeout 0x14 (x 50 ms), IRQ on
    assert hex_of(command_frame(0x14, h("011401"))) == "0000ff05fbd4140114010200"


def test_ack_nack_and_error_frames_are_the_fixed_frames_of_the_manual():
    assert hex_of(ACK_FRAME) == ACK
    assert hex_of(NACK_FRAME) == NACK
    assert hex_of(ERROR_FRAME) == "0000ff01ff7f8100"  # PN532 -> host: syntax error
    assert decode_frame(ACK_FRAME) == (FRAME_ACK, b"")
    assert decode_frame(NACK_FRAME) == (FRAME_NACK, b"")
    assert decode_frame(ERROR_FRAME) == (FRAME_ERROR, b"")


def test_a_response_frame_decodes_to_the_data_after_its_response_code():
    # PN532 -> host: D5 03 = response to 02; IC 0x32 (PN532), version 1, revision 6, support 7
    assert decode_frame(h(FIRMWARE_VERSION_1_6)) == (FRAME_INFORMATION, h("d50332010607"))
    assert decode_response(h(FIRMWARE_VERSION_1_6), 0x02) == h("32010607")


def test_a_longer_preamble_and_padding_after_the_postamble_are_accepted():
    # PN532 -> host: the same response, two preamble bytes, then I2C/SPI read padding
    data = h("00" + FIRMWARE_VERSION_1_6 + "000000ff")
    assert decode_response(data, 0x02) == h("32010607")


def test_every_broken_check_makes_the_frame_invalid():
    broken = [
        "00ff06fad50332010607e800",  # no preamble before the start code 00 FF
        "0000fe06fad50332010607e800",  # start code 00 FE
        "0000ff06fbd50332010607e800",  # LCS FB: LEN + LCS is not 0x00
        "0000ff06fad50332010607e900",  # DCS E9: the data no longer sums to 0x00
        "0000ff06fad50332010607e8ff",  # postamble FF
        "0000ff06fad50332",  # truncated inside the data
        "0000ff000000",  # LEN 0, LCS 00: a frame without even a TFI
        "",  # nothing at all
    ]
    for frame in broken:
        error = expect_raises(Pn532Error, decode_response, h(frame), 0x02)
        assert error.reason == READER_FRAME_INVALID, frame


def test_a_response_with_the_host_tfi_d4_is_refused():
    # "PN532 -> host" with TFI D4: checksums right, direction wrong
    error = expect_raises(Pn532Error, decode_response, h("0000ff06fad40332010607e900"), 0x02)
    assert error.reason == READER_FRAME_INVALID
    assert "TFI" in error.detail


def test_a_response_to_another_command_is_refused():
    # PN532 -> host: D5 15 answers SAMConfiguration (14), not GetFirmwareVersion (02)
    error = expect_raises(Pn532Error, decode_response, h("0000ff02fed5151600"), 0x02)
    assert error.reason == READER_FRAME_INVALID


def test_the_syntax_error_frame_is_its_own_reason():
    error = expect_raises(Pn532Error, decode_response, ERROR_FRAME, 0x02)
    assert error.reason == READER_ERROR_FRAME


def test_a_body_above_255_bytes_goes_in_an_extended_frame_and_decodes_back():
    body = h("d540") + bytes(range(256)) + bytes(2)  # 260 bytes with TFI
    frame = encode_frame(body)
    # 00 | 00 FF | FF FF (extended) | LENM 01 LENL 04 | LCS FB | ... | DCS | 00
    assert hex_of(frame[:8]) == "0000ffffff0104fb"
    assert len(frame) == 260 + 10
    assert decode_frame(frame) == (FRAME_INFORMATION, body)


def test_a_body_of_255_bytes_still_fits_a_normal_frame():
    frame = encode_frame(bytes(255))
    assert hex_of(frame[:5]) == "0000ffff01"  # LEN FF, LCS 01: normal, not the FF FF marker
    assert decode_frame(frame) == (FRAME_INFORMATION, bytes(255))


def test_a_short_body_may_also_arrive_in_an_extended_frame():
    # PN532 -> host: D5 03 .. in the extended format (LENM 00, LENL 06, LCS FA)
    data = h("0000ffffff0006fad50332010607e800")
    assert decode_response(data, 0x02) == h("32010607")


def test_an_extended_frame_with_a_wrong_length_checksum_is_invalid():
    data = h("0000ffffff0006fbd50332010607e800")  # LCS FB
    assert expect_raises(Pn532Error, decode_frame, data).reason == READER_FRAME_INVALID


def test_an_extended_length_above_the_pn532_buffer_is_invalid():
    data = h("0000ffffff010af5") + bytes(268)  # 266 bytes: one above the 265-byte buffer
    assert expect_raises(Pn532Error, decode_frame, data).reason == READER_FRAME_INVALID


# -- commands -------------------------------------------------------------------------------
def test_begin_wakes_configures_sam_and_max_retries_and_reads_the_firmware_version():
    driver, bus = scripted(
        [
            (TO_PN532, ACK),  # host -> PN532: abort anything left running
            (TO_PN532, "0000ff05fbd4140114010200"),  # SAMConfiguration normal, 0x14, IRQ on
            (TO_HOST, ACK),
            (TO_HOST, "0000ff02fed5151600"),  # D5 15: SAMConfiguration done
            (TO_PN532, "0000ff06fad43205ff0101f400"),  # RFConfiguration MaxRetries FF 01 01
            (TO_HOST, ACK),
            (TO_HOST, "0000ff02fed533f800"),  # D5 33: RFConfiguration done
            (TO_PN532, GET_FIRMWARE_VERSION),
            (TO_HOST, ACK),
            (TO_HOST, FIRMWARE_VERSION_1_6),
        ]
    )
    assert driver.begin() == (0x32, 0x01, 0x06, 0x07)
    assert bus.wakeups == 1
    assert bus.finished()


def test_list_passive_target_reports_the_target_number_sens_res_sel_res_uid_and_ats():
    driver, bus = scripted(
        [
            (TO_PN532, LIST_PASSIVE_TARGET),
            (TO_HOST, ACK),
            # D5 4B | 1 target | Tg 01 | SENS_RES 00 44 | SEL_RES 20 (ISO-DEP) | NFCID 7 bytes
            # 04 11 22 33 44 55 66 | ATS 05 78 80 A0 02 (TL 05 first)
            (TO_HOST, "0000ff14ecd54b01010044200704112233445566057880a0026b00"),
        ]
    )
    target = driver.list_passive_target()
    assert target.number == 1
    assert target.sens_res == h("0044")
    assert target.sel_res == 0x20
    assert target.uid == h("04112233445566")
    assert target.ats == h("057880a002")
    assert target.iso_dep
    assert bus.finished()


def test_a_card_without_iso_dep_has_a_four_byte_uid_and_no_ats():
    driver, _ = scripted(
        [
            (TO_PN532, LIST_PASSIVE_TARGET),
            (TO_HOST, ACK),
            # D5 4B | 1 | Tg 01 | SENS_RES 00 04 | SEL_RES 08 (MIFARE Classic) | 4: DE AD BE EF
            (TO_HOST, "0000ff0cf4d54b010100040804deadbeef9600"),
        ]
    )
    target = driver.list_passive_target()
    assert (target.uid, target.ats, target.iso_dep) == (h("deadbeef"), b"", False)


def test_zero_targets_means_no_card():
    driver, _ = scripted(
        [
            (TO_PN532, LIST_PASSIVE_TARGET),
            (TO_HOST, ACK),
            (TO_HOST, "0000ff03fdd54b00e000"),  # D5 4B 00: no target
        ]
    )
    assert driver.list_passive_target() is None


def test_target_data_with_a_bad_nfcid_length_is_invalid():
    driver, _ = scripted(
        [
            (TO_PN532, LIST_PASSIVE_TARGET),
            (TO_HOST, ACK),
            (TO_HOST, pn532_frame("d54b0101004420050411223344")),  # NFCID length 5
        ]
    )
    error = expect_raises(Pn532Error, driver.list_passive_target)
    assert error.reason == READER_FRAME_INVALID


def test_in_data_exchange_carries_an_apdu_to_the_target_and_returns_its_response():
    driver, bus = scripted(
        [
            # InDataExchange Tg 01 | SELECT by name D2760000850101 (NDEF application), Le 00
            (TO_PN532, "0000ff10f0d4400100a4040007d2760000850101006d00"),
            (TO_HOST, ACK),
            (TO_HOST, "0000ff05fbd5410090005a00"),  # D5 41 | status 00 | SW 90 00
        ]
    )
    assert driver.exchange(1, h("00a4040007d276000085010100")) == h("9000")
    assert bus.finished()


def test_a_non_zero_status_byte_is_card_status_with_the_code():
    driver, _ = scripted(
        [
            (TO_PN532, "0000ff03fdd44001eb00"),  # InDataExchange Tg 01, no data
            (TO_HOST, ACK),
            (TO_HOST, "0000ff03fdd54102e800"),  # D5 41 | status 02: CRC error
        ]
    )
    error = expect_raises(Pn532Error, driver.exchange, 1, b"")
    assert error.reason == CARD_STATUS
    assert "0x02" in error.detail


def test_status_timeout_or_card_disappeared_means_the_card_was_pulled():
    for status_frame in ("0000ff03fdd54101e900", "0000ff03fdd5412bbf00"):  # status 01, 2B
        driver, _ = scripted(
            [(TO_PN532, "0000ff03fdd44001eb00"), (TO_HOST, ACK), (TO_HOST, status_frame)]
        )
        assert expect_raises(Pn532Error, driver.exchange, 1, b"").reason == CARD_PULLED


def test_a_command_apdu_larger_than_a_frame_is_sent_in_chunks_with_mi_in_the_tg_byte():
    apdu = h("00d60000000127") + bytes(293)  # UPDATE BINARY, extended Lc 0x127: 300 bytes
    driver, bus = scripted(
        [
            # InDataExchange Tg 41 (MI + target 1), the first 262 bytes, in an extended frame:
            # 00 00 FF FF FF | LENM 01 LENL 09 (265) | LCS F6 | D4 40 41 | data | DCS AD | 00
            (TO_PN532, "0000ffffff0109f6" + "d44041" + "00d60000000127" + "00" * 255 + "ad00"),
            (TO_HOST, ACK),
            (TO_HOST, "0000ff03fdd54100ea00"),  # D5 41 | status 00, no data: send the rest
            # InDataExchange Tg 01 (last chunk), the remaining 38 bytes, a normal frame
            (TO_PN532, "0000ff29d7d44001" + "00" * 38 + "eb00"),
            (TO_HOST, ACK),
            (TO_HOST, "0000ff05fbd5410090005a00"),  # D5 41 | status 00 | SW 90 00
        ]
    )
    assert driver.exchange(1, apdu) == h("9000")
    assert bus.finished()


def test_a_response_with_mi_set_is_collected_by_further_exchanges_until_mi_is_clear():
    first = bytes(range(256)) + bytes(6)
    driver, bus = scripted(
        [
            (TO_PN532, "0000ff08f8d4400100b0000000" + "3b00"),  # READ BINARY at 0, Le 00 (256)
            (TO_HOST, ACK),
            # D5 41 | status 40 (MI: more to come) | 262 bytes, extended frame, DCS 2A
            (TO_HOST, "0000ffffff0109f6" + "d54140" + hex_of(first) + "2a00"),
            (TO_PN532, "0000ff03fdd44001eb00"),  # InDataExchange Tg 01, no data: the rest
            (TO_HOST, ACK),
            (TO_HOST, "0000ff07f9d54100010290005700"),  # status 00 | 01 02 | SW 90 00
        ]
    )
    assert driver.exchange(1, h("00b0000000")) == first + h("01029000")
    assert bus.finished()


def test_a_chained_response_longer_than_apdu_bytes_max_is_refused():
    mi_frame = pn532_frame("d54140" + "ab" * 262)  # D5 41 | status 40 (MI) | 262 bytes
    script = [(TO_PN532, "0000ff03fdd44001eb00"), (TO_HOST, ACK), (TO_HOST, mi_frame)]
    for _ in range(APDU_BYTES_MAX // 262):
        script += [(TO_PN532, "0000ff03fdd44001eb00"), (TO_HOST, ACK), (TO_HOST, mi_frame)]
    driver, bus = scripted(script)
    assert expect_raises(Pn532Error, driver.exchange, 1, b"").reason == CARD_RESPONSE_TOO_LONG
    assert bus.finished()


def test_in_release_releases_the_target():
    driver, bus = scripted(
        [
            (TO_PN532, "0000ff03fdd45201d900"),  # InRelease Tg 01
            (TO_HOST, ACK),
            (TO_HOST, "0000ff03fdd55300d800"),  # D5 53 | status 00
        ]
    )
    driver.release(1)
    assert bus.finished()


# -- retries, NACKs and timeouts ------------------------------------------------------------
def test_a_response_with_a_bad_checksum_is_asked_for_again_with_nack():
    driver, bus = scripted(
        [
            (TO_PN532, GET_FIRMWARE_VERSION),
            (TO_HOST, ACK),
            (TO_HOST, "0000ff06fad50332010607e900"),  # DCS E9: corrupted on the way
            (TO_PN532, NACK),
            (TO_HOST, FIRMWARE_VERSION_1_6),  # the same response again, intact
        ]
    )
    assert driver.firmware_version() == (0x32, 1, 6, 7)
    assert driver.stats["nacks_sent"] == 1
    assert driver.stats["retries"] == 1
    assert driver.stats["frames_invalid"] == 1
    assert bus.finished()


def test_a_response_that_stays_bad_is_given_up_after_the_retry_limit():
    script = [(TO_PN532, GET_FIRMWARE_VERSION), (TO_HOST, ACK)]
    script.append((TO_HOST, "0000ff06fad40332010607e900"))  # TFI D4: wrong direction
    for _ in range(RETRY_LIMIT):
        script += [(TO_PN532, NACK), (TO_HOST, "0000ff06fad40332010607e900")]
    driver, bus = scripted(script)
    error = expect_raises(Pn532Error, driver.firmware_version)
    assert error.reason == READER_FRAME_INVALID
    assert driver.stats["nacks_sent"] == RETRY_LIMIT
    assert driver.stats["frames_invalid"] == RETRY_LIMIT + 1
    assert bus.finished()


def test_a_missing_ack_aborts_and_sends_the_command_again():
    driver, bus = scripted(
        [
            (TO_PN532, GET_FIRMWARE_VERSION),  # not heard: no ACK comes
            (TO_PN532, ACK),  # host -> PN532: ACK = abort whatever is running
            (TO_PN532, GET_FIRMWARE_VERSION),  # the same command again
            (TO_HOST, ACK),
            (TO_HOST, FIRMWARE_VERSION_1_6),
        ]
    )
    assert driver.firmware_version() == (0x32, 1, 6, 7)
    assert driver.stats["timeouts"] == 1
    assert driver.stats["retries"] == 1
    assert bus.finished()


def test_a_pn532_that_keeps_answering_nack_gives_reader_nack_after_the_retry_limit():
    script = [(TO_PN532, GET_FIRMWARE_VERSION), (TO_HOST, NACK)]
    for _ in range(RETRY_LIMIT):
        script += [(TO_PN532, ACK), (TO_PN532, GET_FIRMWARE_VERSION), (TO_HOST, NACK)]
    driver, bus = scripted(script)
    assert expect_raises(Pn532Error, driver.firmware_version).reason == READER_NACK
    assert driver.stats["retries"] == RETRY_LIMIT
    assert bus.finished()


def test_no_response_in_time_is_aborted_with_ack_and_raises_reader_timeout():
    driver, bus = scripted(
        [
            (TO_PN532, LIST_PASSIVE_TARGET),
            (TO_HOST, ACK),  # ACKed, then silence (a PN532 still polling for a card)
            (TO_PN532, ACK),  # host -> PN532: abort
        ]
    )
    error = expect_raises(Pn532Error, driver.list_passive_target, 500)
    assert error.reason == READER_TIMEOUT
    assert driver.stats["timeouts"] == 1
    assert driver.stats["aborts"] == 1
    assert bus.finished()


def test_the_syntax_error_frame_is_raised_without_a_nack():
    driver, bus = scripted(
        [
            (TO_PN532, "0000ff02fed47eae00"),  # host -> PN532: command 7E, which does not exist
            (TO_HOST, ACK),
            (TO_HOST, "0000ff01ff7f8100"),  # PN532 -> host: syntax error frame
        ]
    )
    assert expect_raises(Pn532Error, driver.call, 0x7E).reason == READER_ERROR_FRAME
    assert driver.stats["error_frames"] == 1
    assert driver.stats["nacks_sent"] == 0
    assert bus.finished()


def test_padding_after_a_frame_from_a_fixed_length_read_is_ignored():
    driver, _ = scripted(
        [(TO_PN532, GET_FIRMWARE_VERSION), (TO_HOST, ACK), (TO_HOST, FIRMWARE_VERSION_1_6)],
        padding_bytes=32,
    )
    assert driver.firmware_version() == (0x32, 1, 6, 7)


class BrokenBus(ScriptedBus):
    def write(self, frame):
        raise OSError(19)  # ENODEV: nothing answers at the address


def test_a_bus_that_fails_is_reader_bus_error():
    clock = FakeClock()
    driver = Pn532(BrokenBus(clock, []), clock)
    assert expect_raises(Pn532Error, driver.firmware_version).reason == READER_BUS_ERROR


def test_a_frame_body_above_the_pn532_buffer_is_a_programmer_error():
    expect_raises(AssertionError, encode_frame, bytes(266))


def test_an_apdu_above_apdu_bytes_max_is_a_programmer_error():
    driver, _ = scripted([])
    expect_raises(AssertionError, driver.exchange, 1, bytes(APDU_BYTES_MAX + 1))


# -- transports -----------------------------------------------------------------------------
class FakeI2C:
    """machine.I2C stand-in: records transfers; readfrom answers from a queue of byte strings."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.transfers = []

    def writeto(self, address, data):
        self.transfers.append(("write", address, hex_of(data)))

    def readfrom(self, address, count):
        self.transfers.append(("read", address, count))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return (answer + bytes(count))[:count]


def test_i2c_bus_writes_the_frame_to_address_0x24():
    i2c = FakeI2C([])
    I2CBus(i2c, clock=FakeClock()).write(command_frame(0x02))
    assert i2c.transfers == [("write", 0x24, GET_FIRMWARE_VERSION)]


def test_i2c_bus_polls_the_status_byte_until_bit_0_is_set():
    i2c = FakeI2C([b"\x00", OSError(19), b"\x01"])  # busy, address not acknowledged, ready
    assert I2CBus(i2c, clock=FakeClock()).wait_ready(100)
    assert i2c.transfers == [("read", 0x24, 1)] * 3


def test_i2c_bus_read_skips_the_leading_status_byte():
    i2c = FakeI2C([h("01" + ACK)])  # status 01 (ready), then the ACK frame
    assert I2CBus(i2c, clock=FakeClock()).read(6, 100) == ACK_FRAME
    assert i2c.transfers == [("read", 0x24, 7)]


def test_i2c_bus_wait_ready_gives_up_after_its_timeout():
    clock = FakeClock()
    i2c = FakeI2C([b"\x00"] * 1000)
    assert not I2CBus(i2c, clock=clock).wait_ready(20)
    assert len(i2c.transfers) < 1000


class FakePin:
    def __init__(self):
        self.levels = []

    def value(self, level):
        self.levels.append(level)


class FakeSpi:
    """machine.SPI stand-in: records what is clocked out; read answers from a queue."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.transfers = []

    def write(self, data):
        self.transfers.append(("write", hex_of(data)))

    def read(self, count):
        self.transfers.append(("read", count))
        return self.answers.pop(0)[:count]


def test_spi_bus_sends_dw_then_the_frame_bit_reversed_under_chip_select():
    spi, cs = FakeSpi([]), FakePin()
    SpiBus(spi, cs, clock=FakeClock()).write(command_frame(0x02))
    # DW 01 -> 80, then 00 00 FF 02 FE D4 02 2A 00 with each byte's bits reversed
    assert spi.transfers == [("write", "800000ff407f2b405400")]
    assert cs.levels == [1, 0, 1]


def test_spi_bus_reads_status_with_sr_and_the_frame_with_dr():
    ready = bit_reverse(b"\x01")  # status byte 01 as it arrives LSB first
    spi, cs = FakeSpi([b"\x00", ready, bit_reverse(ACK_FRAME)]), FakePin()
    bus = SpiBus(spi, cs, clock=FakeClock())
    assert bus.wait_ready(100)
    assert bus.read(6, 100) == ACK_FRAME
    # SR 02 -> 40 (busy), SR again (ready), DR 03 -> C0 then 6 bytes
    assert spi.transfers == [
        ("write", "40"),
        ("read", 1),
        ("write", "40"),
        ("read", 1),
        ("write", "c0"),
        ("read", 6),
    ]
    assert cs.levels == [1, 0, 1, 0, 1, 0, 1]


def test_bit_reverse_mirrors_each_byte():
    assert hex_of(bit_reverse(h("0102038001d4ff00"))) == "8040c001802bff00"


class FakeUart:
    """machine.UART stand-in: bytes arrive in chunks, one chunk per any() poll."""

    def __init__(self, chunks=()):
        self.chunks = [bytes(chunk) for chunk in chunks]
        self.pending = b""
        self.written = []

    def any(self):
        if not self.pending and self.chunks:
            self.pending = self.chunks.pop(0)
        return len(self.pending)

    def read(self, count):
        data, self.pending = self.pending[:count], self.pending[count:]
        return data or None

    def write(self, data):
        self.written.append(hex_of(data))


def test_uart_bus_wakes_the_pn532_with_55_55_and_a_long_preamble():
    uart = FakeUart()
    UartBus(uart, clock=FakeClock()).wakeup()
    assert uart.written == ["5555" + "00" * 14]


def test_uart_bus_drops_stale_bytes_then_writes_the_frame_as_is():
    uart = FakeUart([h("0000ff")])  # half a frame left over from before
    UartBus(uart, clock=FakeClock()).write(command_frame(0x02))
    assert uart.written == [GET_FIRMWARE_VERSION]
    assert uart.any() == 0


def test_uart_bus_reads_a_frame_that_arrives_in_pieces_until_the_line_is_idle():
    response = h(FIRMWARE_VERSION_1_6)
    uart = FakeUart([response[:4], response[4:9], response[9:]])
    bus = UartBus(uart, clock=FakeClock())
    assert bus.wait_ready(100)
    assert bus.read(pn532.FRAME_BODY_BYTES_MAX + pn532.FRAME_OVERHEAD_BYTES, 100) == response


def test_uart_bus_read_stops_at_n_bytes_and_leaves_the_rest():
    uart = FakeUart([h(ACK + FIRMWARE_VERSION_1_6)])  # ACK and response back to back
    bus = UartBus(uart, clock=FakeClock())
    assert bus.read(6, 100) == ACK_FRAME
    assert bus.read(64, 100) == h(FIRMWARE_VERSION_1_6)


def test_uart_bus_read_returns_nothing_after_its_timeout():
    assert UartBus(FakeUart(), clock=FakeClock()).read(6, 30) == b""
