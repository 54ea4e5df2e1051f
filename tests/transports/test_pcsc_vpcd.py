"""pyscard through the machine's real pcscd to a VpcdCard in vsmartcard's virtual slot.

Every test that touches vpcd's fixed ports (35963/35964, machine-wide) is in this module, and
each VpcdCard holds its slot's lock file, so other test runs on the machine wait their turn.
"""

import time
from collections.abc import Iterator

import pytest

from tools.simulator.ntag424_card import Ntag424Card
from tools.simulator.pn532_emulator import EchoCard
from tools.transports import CardRemoved, NoCard, ReaderUnavailable, open_reader
from tools.transports.pcsc_reader import PcscReader, card_present
from tools.transports.pcscd import PcscDaemon, socket_answers
from tools.transports.vpcd_card import (
    VPCD_PORT_SLOT0,
    VPCD_PORT_SLOT1,
    VPCD_READER_SLOT0,
    VPCD_READER_SLOT1,
    SlotLock,
    VpcdCard,
)

pytestmark = pytest.mark.e2e

SELECT_NDEF = bytes.fromhex("00A4040007D276000085010100")  # NDEF application, Le 00
SELECT_UNKNOWN = bytes.fromhex("00A4040007A000000000000100")  # unknown AID: 6A82 (wire trace)
SELECT_NDEF_NO_FCI = bytes.fromhex("00A4040C07D276000085010100")  # as NTAG 424 readers send it
GET_VERSION = bytes.fromhex("9060000000")
ADDITIONAL_FRAME = bytes.fromhex("90AF000000")
NTAG_UID = bytes.fromhex("04A1B2C3D4E5F6")
CARD_WAIT_S = 5.0
REMOVAL_NOTICED_S = 3.0  # vpcd polls presence about every 0.45 s
THROUGHPUT_APDUS = 1000


class CountingCard(EchoCard):
    """EchoCard that counts activate() calls (power on / reset from vpcd)."""

    def __init__(self) -> None:
        super().__init__()
        self.activations = 0

    def activate(self) -> None:
        self.activations += 1


@pytest.fixture(scope="module")
def slot0(pcscd: PcscDaemon) -> Iterator[VpcdCard]:
    with VpcdCard(CountingCard(), port=VPCD_PORT_SLOT0) as virtual:
        yield virtual


@pytest.fixture(scope="module")
def reader(slot0: VpcdCard) -> Iterator[PcscReader]:
    with PcscReader(VPCD_READER_SLOT0, card_wait_s=CARD_WAIT_S) as connected:
        yield connected


def test_pcscd_answers_on_its_socket(pcscd: PcscDaemon):
    assert socket_answers(pcscd.socket_path), pcscd.describe()


def test_select_of_the_ndef_application_answers_9000(reader: PcscReader):
    assert reader.transmit(SELECT_NDEF) == bytes.fromhex("9000")


def test_select_of_an_unknown_application_answers_6a82(reader: PcscReader):
    assert reader.transmit(SELECT_UNKNOWN) == bytes.fromhex("6A82")


def test_the_card_receives_the_apdu_bytes_unchanged(reader: PcscReader, slot0: VpcdCard):
    command = bytes.fromhex("80 10 01 02 03 AABBCC 00")
    assert reader.transmit(command) == command + bytes.fromhex("9000")
    assert slot0.card.apdus[-1] == command


def test_the_uid_is_answered_by_the_reader_part_not_the_card(reader, slot0):
    before = len(slot0.card.apdus)
    assert reader.uid() == slot0.card.uid
    assert len(slot0.card.apdus) == before  # FF CA never reached the card


def test_the_atr_is_the_pcsc_atr_for_the_cards_ats(reader: PcscReader):
    assert reader.atr == bytes.fromhex("3B 80 80 01 01")


def test_a_short_apdu_with_255_data_bytes_round_trips(reader: PcscReader):
    command = bytes.fromhex("80 20 00 00 FF") + bytes(range(255)) + b"\x00"
    assert reader.transmit(command) == command + bytes.fromhex("9000")


def test_an_extended_apdu_of_4000_data_bytes_round_trips(reader: PcscReader):
    data = bytes(i * 7 % 256 for i in range(4000))
    command = bytes.fromhex("80 20 00 00 00 0F A0") + data + bytes.fromhex("0000")
    assert reader.transmit(command) == command + bytes.fromhex("9000")


def test_power_on_activates_the_card(slot0: VpcdCard):
    assert slot0.counts["power_on"] >= 1
    assert slot0.card.activations == slot0.counts["power_on"] + slot0.counts["resets"]


def test_apdus_per_second_over_vpcd_are_measured(reader: PcscReader, capsys):
    started = time.perf_counter()
    for _ in range(THROUGHPUT_APDUS):
        reader.transmit(SELECT_NDEF)
    rate = THROUGHPUT_APDUS / (time.perf_counter() - started)
    with capsys.disabled():
        print(f"\n  pyscard -> pcscd -> vpcd -> VpcdCard: {rate:,.0f} APDU/s (13-byte SELECT)")


def test_the_common_interface_opens_a_pcsc_reader_by_spec(slot0: VpcdCard):
    with open_reader(f"pcsc:{VPCD_READER_SLOT0}", card_wait_s=CARD_WAIT_S) as reader:
        assert reader.transmit(SELECT_NDEF) == bytes.fromhex("9000")
        assert reader.uid() == slot0.card.uid


def test_removing_the_card_is_a_typed_error_then_it_works_again_once_reinserted(slot0):
    with PcscReader(VPCD_READER_SLOT0, card_wait_s=CARD_WAIT_S) as reader:
        assert reader.transmit(SELECT_NDEF) == bytes.fromhex("9000")
        slot0.remove()
        started = time.monotonic()
        with pytest.raises(CardRemoved) as removed:
            reader.transmit(SELECT_NDEF)
        assert removed.value.reason == "card_pulled"
        assert time.monotonic() - started < REMOVAL_NOTICED_S
        with pytest.raises(CardRemoved):
            reader.transmit(SELECT_NDEF)  # stays removed until connect() again
        slot0.insert()
        reader.connect()
        assert reader.transmit(SELECT_NDEF) == bytes.fromhex("9000")
    assert slot0.counts["removals"] >= 1 and slot0.counts["insertions"] >= 2


def test_a_card_that_raises_answers_6f00_and_the_slot_keeps_serving(pcscd):
    class BrokenCard(EchoCard):
        def apdu(self, command: bytes) -> bytes:
            raise RuntimeError("card bug")

    with (
        VpcdCard(BrokenCard(), port=VPCD_PORT_SLOT1) as virtual,
        PcscReader(VPCD_READER_SLOT1, card_wait_s=CARD_WAIT_S) as reader,
    ):
        assert reader.transmit(SELECT_NDEF) == bytes.fromhex("6F00")
        assert reader.transmit(SELECT_NDEF) == bytes.fromhex("6F00")
        assert virtual.counts["card_errors"] == 2


def test_the_ntag424_emulator_answers_through_pcsc(pcscd: PcscDaemon):
    card = Ntag424Card(NTAG_UID)
    with (
        VpcdCard(card, port=VPCD_PORT_SLOT1),
        PcscReader(VPCD_READER_SLOT1, card_wait_s=CARD_WAIT_S) as reader,
    ):
        assert reader.atr == bytes.fromhex("3B 81 80 01 80 80")  # from ATS 06 77 77 71 02 80
        assert reader.uid() == NTAG_UID
        assert reader.transmit(SELECT_NDEF_NO_FCI) == bytes.fromhex("9000")
        assert reader.transmit(GET_VERSION)[-2:] == bytes.fromhex("91AF")  # hardware info
        assert reader.transmit(ADDITIONAL_FRAME)[-2:] == bytes.fromhex("91AF")  # software info
        assert reader.transmit(ADDITIONAL_FRAME)[:7] == NTAG_UID  # production info, UID first


def test_an_empty_slot_is_no_card_within_the_wait(pcscd: PcscDaemon):
    with SlotLock(VPCD_PORT_SLOT1):
        deadline = time.monotonic() + REMOVAL_NOTICED_S
        while card_present(VPCD_READER_SLOT1):  # a card that just left is still seen a moment
            assert time.monotonic() < deadline, "vpcd did not notice the card leave"
            time.sleep(0.05)
        with pytest.raises(NoCard) as absent:
            PcscReader(VPCD_READER_SLOT1, card_wait_s=0.3).connect()
    assert absent.value.reason == "card_absent"


def test_an_unknown_reader_name_is_reader_unavailable(pcscd: PcscDaemon):
    with pytest.raises(ReaderUnavailable) as unavailable:
        PcscReader("No Such Reader", card_wait_s=0.2).connect()
    assert "Virtual PCD 00 00" in unavailable.value.detail  # lists what there is
