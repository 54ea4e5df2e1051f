"""VpcdCard on the wire, byte for byte, against a stand-in for vpcd on a free port: the frames
of tests/vectors/vpcd_wire_trace.txt (a capture of the real vpcd, docs/cards.md "vpcd on the
wire") are replayed whole; the real vpcd is in test_pcsc_vpcd.py."""

import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import REPO_ROOT
from tools.simulator.pn532_emulator import EchoCard
from tools.transports import VirtualCardError
from tools.transports.vpcd_card import VpcdCard

READ_TIMEOUT_S = 2.0
WIRE_TRACE_PATH = REPO_ROOT / "tests" / "vectors" / "vpcd_wire_trace.txt"
WIRE_TRACE_LINE = re.compile(r"^[0-9.]+ (vpcd->vicc|vicc->vpcd) len=([0-9]+) raw=([0-9a-f]+)$")
TRACE_APPLICATION = bytes.fromhex("F0010203040506")  # the AID the trace's card stub knew


class CountingCard(EchoCard):
    activations = 0

    def activate(self) -> None:
        self.activations += 1


class FakeVpcd:
    """Listens like vpcd; `card` is the accepted connection once a VpcdCard connects."""

    def __init__(self, lock_dir: Path) -> None:
        self.lock_dir = lock_dir  # slot locks of these throwaway ports go with the test
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(1)
        self.server.settimeout(READ_TIMEOUT_S)
        self.port = self.server.getsockname()[1]
        self.card: socket.socket | None = None

    def accept(self) -> socket.socket:
        self.card, _ = self.server.accept()
        self.card.settimeout(READ_TIMEOUT_S)
        return self.card

    def read(self, count: int) -> bytes:
        assert self.card is not None
        data = b""
        while len(data) < count:
            chunk = self.card.recv(count - len(data))
            assert chunk, "the card closed the connection"
            data += chunk
        return data

    def expect_silence(self) -> None:
        assert self.card is not None
        self.card.settimeout(0.2)
        with pytest.raises(TimeoutError):
            self.card.recv(1)
        self.card.settimeout(READ_TIMEOUT_S)

    def close(self) -> None:
        if self.card is not None:
            self.card.close()
        self.server.close()


@pytest.fixture
def vpcd(tmp_path: Path) -> Iterator[FakeVpcd]:
    fake = FakeVpcd(tmp_path)
    yield fake
    fake.close()


def inserted(card, vpcd: FakeVpcd, virtual: VpcdCard | None = None):
    """Insert `card` while answering vpcd's first poll (insert() waits for it)."""
    virtual = virtual or VpcdCard(card, port=vpcd.port, lock_dir=vpcd.lock_dir)
    accepted: list[socket.socket] = []

    def first_poll() -> None:
        connection = vpcd.accept()
        connection.sendall(bytes.fromhex("000104"))  # GET_ATR
        accepted.append(connection)

    poller = threading.Thread(target=first_poll)
    poller.start()
    virtual.insert(card)
    poller.join(READ_TIMEOUT_S)
    assert vpcd.read(7) == bytes.fromhex("0005 3B80800101")  # the ATR for the default ATS
    return virtual, accepted[0]


def test_controls_and_apdus_are_answered_as_in_the_wire_trace(vpcd: FakeVpcd):
    card = CountingCard()
    virtual, wire = inserted(card, vpcd)
    try:
        wire.sendall(bytes.fromhex("000101"))  # POWER_ON: no reply, the card is activated
        vpcd.expect_silence()
        assert card.activations == 1
        wire.sendall(bytes.fromhex("000D 00A4040007D276000085010100"))  # SELECT NDEF app
        assert vpcd.read(4) == bytes.fromhex("0002 9000")
        wire.sendall(bytes.fromhex("000D 00A4040007A000000000000100"))  # unknown AID
        assert vpcd.read(4) == bytes.fromhex("0002 6A82")
        wire.sendall(bytes.fromhex("0005 FFCA000000"))  # PC/SC GET DATA: UID, by the reader
        assert vpcd.read(11) == bytes.fromhex("0009 04112233445566 9000")
        wire.sendall(bytes.fromhex("000100"))  # POWER_OFF: no reply
        vpcd.expect_silence()
    finally:
        virtual.close()
    assert virtual.counts["power_on"] == 1 and virtual.counts["power_off"] == 1
    assert virtual.counts["apdus"] == 3 and virtual.counts["reader_get_data"] == 1


class TraceStubCard(CountingCard):
    """Answers as the card stub of the wire trace did: SELECT of F0010203040506 9000, any other
    SELECT 6A82, anything else 6D00. Its default ATS gives the trace's ATR, 3B 80 80 01 01."""

    def apdu(self, command: bytes) -> bytes:
        if command[:2] == b"\x00\xa4":
            return b"\x90\x00" if command[5 : 5 + command[4]] == TRACE_APPLICATION else b"\x6a\x82"
        return b"\x6d\x00"


def wire_trace() -> list[tuple[str, bytes]]:
    """(direction, bytes on the TCP stream) of every message of the trace, in order."""
    messages = []
    for line in WIRE_TRACE_PATH.read_text().splitlines():
        match = WIRE_TRACE_LINE.match(line)
        if match:
            direction, length, raw = match.group(1), int(match.group(2)), bytes.fromhex(match[3])
            assert int.from_bytes(raw[:2], "big") == length == len(raw) - 2, line
            messages.append((direction, raw))
    return messages


def test_the_whole_wire_trace_of_the_real_vpcd_is_answered_byte_for_byte(vpcd: FakeVpcd):
    trace = wire_trace()
    from_vpcd = [raw for direction, raw in trace if direction == "vpcd->vicc"]
    from_card = b"".join(raw for direction, raw in trace if direction == "vicc->vpcd")
    assert len(from_vpcd) == 45 and len(from_card) == 7 * 38 + 4 * 3  # 38 ATRs, 3 answers
    card = TraceStubCard()
    virtual, wire = inserted(card, vpcd)  # answers one GET_ATR before the trace starts
    try:
        wire.sendall(b"".join(from_vpcd))
        assert vpcd.read(len(from_card)) == from_card
        vpcd.expect_silence()  # power on and off are not answered
    finally:
        virtual.close()
    assert card.activations == from_vpcd.count(bytes.fromhex("000101")) == 2
    assert virtual.counts["power_off"] == 2 and virtual.counts["apdus"] == 3


def test_a_message_split_across_writes_is_answered_once_whole(vpcd: FakeVpcd):
    virtual, wire = inserted(EchoCard(), vpcd)
    try:
        wire.sendall(bytes.fromhex("000D"))  # vpcd writes the length first...
        vpcd.expect_silence()
        wire.sendall(bytes.fromhex("00A4040007D276000085010100"))  # ...then the payload
        assert vpcd.read(4) == bytes.fromhex("0002 9000")
        wire.sendall(bytes.fromhex("000104 000104"))  # two polls in one segment: two ATRs
        assert vpcd.read(14) == bytes.fromhex("0005 3B80800101") * 2
    finally:
        virtual.close()


def test_vpcd_going_away_is_recorded_as_the_failure(vpcd: FakeVpcd):
    virtual, wire = inserted(EchoCard(), vpcd)
    wire.close()
    vpcd.card = None
    deadline = time.monotonic() + READ_TIMEOUT_S
    while virtual.inserted and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not virtual.inserted
    assert virtual.failure is not None and "closed" in virtual.failure
    virtual.close()


def test_removal_closes_the_connection_and_insert_connects_again(vpcd: FakeVpcd):
    virtual, wire = inserted(EchoCard(), vpcd)
    try:
        virtual.remove()
        assert wire.recv(1) == b""  # vpcd sees the card gone
        wire.close()
        replacement = CountingCard()
        inserted(replacement, vpcd, virtual)
        assert virtual.card is replacement and virtual.counts["insertions"] == 2
    finally:
        virtual.close()


def test_nothing_listening_is_a_virtual_card_error_that_names_the_fix(tmp_path: Path):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # a port nobody listens on
    with pytest.raises(VirtualCardError) as error:
        VpcdCard(EchoCard(), port=port, lock_dir=tmp_path).insert()
    assert error.value.reason == "virtual_card_unavailable"
    assert "pcscd" in error.value.detail


def test_a_slot_that_never_polls_is_a_virtual_card_error(vpcd: FakeVpcd):
    virtual = VpcdCard(EchoCard(), port=vpcd.port, lock_dir=vpcd.lock_dir)
    with pytest.raises(VirtualCardError) as error:
        virtual.insert(first_poll_timeout_s=0.3)  # accepted by the kernel, never by vpcd
    assert "did not poll" in error.value.detail
    virtual.close()
