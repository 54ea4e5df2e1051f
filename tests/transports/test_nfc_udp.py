"""nfcpy's reader (udp driver, ISO-DEP initiator) against NfcUdpCard (nfcpy's udp listener plus
our ISO-DEP card side), on free loopback ports. A small UDP relay in between can lose frames
to prove retransmission."""

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from tools.simulator.ntag424_card import Ntag424Card
from tools.simulator.pn532_emulator import EchoCard
from tools.transports import (
    CardRemoved,
    ExchangeTimeout,
    NoCard,
    VirtualCardError,
    open_reader,
)
from tools.transports.nfc_card import NfcUdpCard, free_udp_port
from tools.transports.nfc_reader import NfcReader

pytestmark = pytest.mark.e2e

SELECT_NDEF = bytes.fromhex("00A4040007D276000085010100")
SELECT_UNKNOWN = bytes.fromhex("00A4040007A000000000000100")
SELECT_NDEF_NO_FCI = bytes.fromhex("00A4040C07D276000085010100")
GET_VERSION = bytes.fromhex("9060000000")
ADDITIONAL_FRAME = bytes.fromhex("90AF000000")
NTAG_UID = bytes.fromhex("04A1B2C3D4E5F6")
CARD_WAIT_S = 5.0
FWI_QUICK = 8  # FWT about 77 ms: lost frames and lost tags show up fast
RELAY_RECV_BYTES_MAX = 2048
RELAY_JOIN_S = 2.0


class BigCard(EchoCard):
    """READ BINARY (00 B0) answers `size` bytes: a response longer than any frame."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.data = bytes(i % 251 for i in range(size))

    def apdu(self, command: bytes) -> bytes:
        if command[:2] == b"\x00\xb0":
            return self.data + b"\x90\x00"
        return super().apdu(command)


class LossyRelay:
    """A UDP relay reader <-> card that drops the next n frames in one direction."""

    def __init__(self, card_port: int) -> None:
        self.card_address = ("127.0.0.1", card_port)
        self.port = free_udp_port()
        self.drop = {"to_card": 0, "to_reader": 0}
        self.dropped = {"to_card": 0, "to_reader": 0}
        self._outer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the reader's side
        self._outer.bind(("127.0.0.1", self.port))
        self._inner = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the card's side
        self._inner.bind(("127.0.0.1", 0))
        self._reader_address: tuple[str, int] | None = None
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._pump, args=(self._outer, "to_card"), daemon=True),
            threading.Thread(target=self._pump, args=(self._inner, "to_reader"), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _pump(self, source: socket.socket, direction: str) -> None:
        source.settimeout(0.1)
        while not self._stop.is_set():
            try:
                datagram, address = source.recvfrom(RELAY_RECV_BYTES_MAX)
            except TimeoutError:
                continue
            except OSError:
                return
            if direction == "to_card":
                self._reader_address = address
            if self.drop[direction] > 0 and not datagram.startswith(b"RFOFF"):
                self.drop[direction] -= 1
                self.dropped[direction] += 1
                continue
            if direction == "to_card":
                self._inner.sendto(datagram, self.card_address)
            elif self._reader_address is not None:
                self._outer.sendto(datagram, self._reader_address)

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(RELAY_JOIN_S)
        self._outer.close()
        self._inner.close()


@pytest.fixture
def port() -> int:
    return free_udp_port()


@pytest.fixture
def card(port: int) -> Iterator[NfcUdpCard]:
    with NfcUdpCard(EchoCard(), port) as served:
        yield served


@pytest.fixture
def reader(card: NfcUdpCard) -> Iterator[NfcReader]:
    with NfcReader(card.path, card_wait_s=CARD_WAIT_S) as connected:
        yield connected


def test_select_of_the_ndef_application_answers_9000(reader: NfcReader):
    assert reader.transmit(SELECT_NDEF) == bytes.fromhex("9000")


def test_select_of_an_unknown_application_answers_6a82(reader: NfcReader):
    assert reader.transmit(SELECT_UNKNOWN) == bytes.fromhex("6A82")


def test_the_uid_is_the_one_the_anticollision_gave(reader: NfcReader, card: NfcUdpCard):
    assert reader.uid() == card.card.uid == bytes.fromhex("04112233445566")


def test_a_longest_short_apdu_is_chained_both_ways(reader: NfcReader, card: NfcUdpCard):
    command = bytes.fromhex("80 20 00 00 FF") + bytes(range(255)) + b"\x00"  # 261 bytes
    assert reader.transmit(command) == command + bytes.fromhex("9000")  # 263 bytes back
    assert card.card.apdus[-1] == command
    assert card.counts["chained_command_blocks"] == 1  # 253 + 8 bytes
    assert card.counts["chained_response_blocks"] == 1


def test_an_extended_apdu_of_1000_data_bytes_round_trips(reader: NfcReader, card: NfcUdpCard):
    data = bytes(i * 7 % 256 for i in range(1000))
    command = bytes.fromhex("80 20 00 00 00 03 E8") + data + bytes.fromhex("0000")
    assert reader.transmit(command) == command + bytes.fromhex("9000")
    assert card.counts["chained_command_blocks"] == 3  # 1009 bytes in 253-byte blocks


def test_a_slow_answer_is_exchange_timeout_while_the_tag_is_still_there(port: int):
    class SlowCard(EchoCard):
        def apdu(self, command: bytes) -> bytes:
            if command[1] == 0x5A:
                time.sleep(0.12)  # past FWT and nfcpy's retries, inside its presence check
            return super().apdu(command)

    card = NfcUdpCard(SlowCard(), port, fwi=4)  # FWT about 5 ms
    with card, NfcReader(card.path, card_wait_s=CARD_WAIT_S) as reader:
        with pytest.raises(ExchangeTimeout) as slow:
            reader.transmit(bytes.fromhex("905A000000"))
        assert slow.value.reason == "reader_timeout"
        reader.connect()  # the session's state is unknown after a timeout: start over
        assert reader.transmit(SELECT_NDEF) == bytes.fromhex("9000")


def test_a_response_much_larger_than_the_frame_size_is_chained(port: int):
    big = BigCard(1000)
    with NfcUdpCard(big, port) as card, NfcReader(card.path, card_wait_s=CARD_WAIT_S) as reader:
        assert reader.transmit(bytes.fromhex("00B0000000")) == big.data + bytes.fromhex("9000")
        assert card.counts["chained_response_blocks"] == 3  # 1002 bytes in 253-byte blocks


def test_the_common_interface_opens_an_nfcpy_reader_by_spec(card: NfcUdpCard):
    with open_reader(card.path, card_wait_s=CARD_WAIT_S) as reader:
        assert reader.transmit(SELECT_NDEF) == bytes.fromhex("9000")
        assert reader.uid() == card.card.uid


def test_closing_the_reader_switches_the_field_off_and_the_card_listens_again(card):
    for _ in range(2):
        with NfcReader(card.path, card_wait_s=CARD_WAIT_S) as reader:
            assert reader.transmit(SELECT_NDEF) == bytes.fromhex("9000")
    deadline = time.monotonic() + 2.0
    while card.counts["rf_off"] < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert card.counts["activations"] == 2 and card.counts["rf_off"] == 2


def test_a_lost_tag_is_a_typed_error_and_a_new_tag_connects_again(port: int):
    first = NfcUdpCard(EchoCard(), port, fwi=FWI_QUICK).start()
    with NfcReader(first.path, card_wait_s=CARD_WAIT_S) as reader:
        assert reader.transmit(SELECT_NDEF) == bytes.fromhex("9000")
        first.stop()
        with pytest.raises(CardRemoved) as lost:
            reader.transmit(SELECT_NDEF)
        assert lost.value.reason == "card_pulled"
        with pytest.raises(CardRemoved):
            reader.transmit(SELECT_NDEF)  # stays lost until connect() again
        with NfcUdpCard(EchoCard(), port, fwi=FWI_QUICK):
            reader.connect()
            assert reader.transmit(SELECT_NDEF) == bytes.fromhex("9000")


def test_a_port_in_use_is_a_virtual_card_error(card: NfcUdpCard):
    with pytest.raises(VirtualCardError) as error:
        NfcUdpCard(EchoCard(), card.port).start()
    assert error.value.reason == "virtual_card_unavailable"


def test_no_tag_is_no_card_within_the_wait(port: int):
    with pytest.raises(NoCard) as absent:
        NfcReader(f"udp:127.0.0.1:{port}", card_wait_s=0.5).connect()
    assert absent.value.reason == "card_absent"


def test_a_lost_response_is_sent_again_after_the_readers_nak(port: int):
    with NfcUdpCard(EchoCard(), port, fwi=FWI_QUICK) as card:
        relay = LossyRelay(port)
        try:
            with NfcReader(f"udp:127.0.0.1:{relay.port}", card_wait_s=CARD_WAIT_S) as reader:
                relay.drop["to_reader"] = 1
                assert reader.transmit(SELECT_NDEF) == bytes.fromhex("9000")
        finally:
            relay.close()
    assert relay.dropped["to_reader"] == 1
    assert card.counts["naks_received"] == 1 and card.counts["retransmissions"] == 1
    assert card.counts["apdus"] == 1  # the card ran the command once


def test_a_lost_command_is_acknowledged_then_sent_again_by_the_reader(port: int):
    with NfcUdpCard(EchoCard(), port, fwi=FWI_QUICK) as card:
        relay = LossyRelay(port)
        try:
            with NfcReader(f"udp:127.0.0.1:{relay.port}", card_wait_s=CARD_WAIT_S) as reader:
                assert reader.transmit(SELECT_NDEF) == bytes.fromhex("9000")
                relay.drop["to_card"] = 1
                assert reader.transmit(SELECT_UNKNOWN) == bytes.fromhex("6A82")
        finally:
            relay.close()
    assert relay.dropped["to_card"] == 1
    assert card.counts["naks_received"] == 1 and card.counts["apdus"] == 2


def test_deselect_ends_the_session_and_the_card_can_be_activated_again(card, reader):
    assert reader.transmit(SELECT_NDEF) == bytes.fromhex("9000")
    assert bytes(reader.tag.clf.exchange(bytearray(b"\xc2"), 1.0)) == b"\xc2"  # S(DESELECT)
    reader.connect()
    assert reader.transmit(SELECT_NDEF) == bytes.fromhex("9000")
    assert card.counts["deselects"] == 1 and card.counts["activations"] == 2


def test_a_reader_that_starts_over_without_switching_the_field_off_connects_at_once(card):
    first = NfcReader(card.path, card_wait_s=CARD_WAIT_S)
    first.connect()
    second = NfcReader(card.path, card_wait_s=CARD_WAIT_S)
    try:
        assert first.transmit(SELECT_NDEF) == bytes.fromhex("9000")
        started = time.monotonic()
        second.connect()  # its REQA reaches the card mid-session and is answered, not lost
        assert time.monotonic() - started < 1.0  # a lost REQA costs nfcpy's 1 s sense timeout
        assert second.transmit(SELECT_NDEF) == bytes.fromhex("9000")
    finally:
        second.close()
        first.close()
    assert card.counts["field_resets"] == 1 and card.counts["activations"] == 2


def test_a_session_idle_longer_than_the_bound_ends_and_the_reader_sees_the_tag_lost(port):
    with NfcUdpCard(EchoCard(), port, fwi=FWI_QUICK, idle_timeout_s=0.3) as card:
        with NfcReader(card.path, card_wait_s=CARD_WAIT_S) as reader:
            assert reader.transmit(SELECT_NDEF) == bytes.fromhex("9000")
            deadline = time.monotonic() + 3.0
            while card.counts["idle_timeouts"] == 0 and time.monotonic() < deadline:
                time.sleep(0.05)
            with pytest.raises(CardRemoved):
                reader.transmit(SELECT_NDEF)
        assert card.counts["idle_timeouts"] == 1


def test_every_activation_activates_the_card(port: int):
    class CountingCard(EchoCard):
        activations = 0

        def activate(self) -> None:
            self.activations += 1

    counting = CountingCard()
    with NfcUdpCard(counting, port) as card:
        for _ in range(2):
            with NfcReader(card.path, card_wait_s=CARD_WAIT_S) as reader:
                reader.transmit(SELECT_NDEF)
    assert counting.activations == 2


def test_the_ntag424_emulator_answers_through_nfcpy(port: int):
    card = Ntag424Card(NTAG_UID)
    with (
        NfcUdpCard(card, port) as served,
        NfcReader(served.path, card_wait_s=CARD_WAIT_S) as reader,
    ):
        assert reader.uid() == NTAG_UID  # double-size UID through both cascade levels
        assert reader.transmit(SELECT_NDEF_NO_FCI) == bytes.fromhex("9000")
        assert reader.transmit(GET_VERSION)[-2:] == bytes.fromhex("91AF")
        assert reader.transmit(ADDITIONAL_FRAME)[-2:] == bytes.fromhex("91AF")
        assert reader.transmit(ADDITIONAL_FRAME)[:7] == NTAG_UID


def test_apdus_per_second_over_nfcpy_udp_are_measured(reader: NfcReader, capsys):
    count = 500
    started = time.perf_counter()
    for _ in range(count):
        reader.transmit(SELECT_NDEF)
    rate = count / (time.perf_counter() - started)
    with capsys.disabled():
        print(f"\n  nfcpy udp reader -> NfcUdpCard: {rate:,.0f} APDU/s (13-byte SELECT)")
