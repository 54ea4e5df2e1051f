"""A virtual card in a PC/SC slot: a TCP client of vpcd (vsmartcard's driver inside pcscd).

pcscd with `vsmartcard-vpcd` listens on TCP 35963 (slot "Virtual PCD 00 00") and 35964
("Virtual PCD 00 01"). `VpcdCard(card).insert()` connects there and serves the card object
from a thread until `remove()` (the socket closes: PC/SC sees the card leave) or `close()`.

Wire (docs/cards.md "vpcd on the wire"; tests/vectors/vpcd_wire_trace.txt): every message is a
2-byte big-endian length and a payload. From vpcd, a 1-byte payload is a control message:

    00 power off, 01 power on, 02 reset     no reply (power on and reset: card.activate())
    04 get ATR                              reply: the ATR

Any longer payload is a command APDU; the reply is one response APDU (data || SW1 SW2).

Playing the reader's part too: a contactless PC/SC reader answers the PC/SC Part 3 pseudo-APDU
GET DATA (`FF CA 00 00 Le`: the UID; `FF CA 01 00 Le`: the ATS historical bytes) itself, and
reports an ATR built from the ATS (PC/SC Part 3, 3.1.3.2.3.1). vpcd passes everything to the
card, so this class does both, as a USB reader would (`reader_get_data=False` hands them to the
card instead). For the default ATS `05 78 80 A0 02` the ATR is the minimal `3B 80 80 01 01`.

Speed: vpcd writes a message's length and payload in two writes. With Nagle on our side and
delayed ACKs on both, that caps a round trip near 50 ms (20 APDU/s); TCP_NODELAY on this socket
and TCP_QUICKACK before every recv bring it to thousands per second (docs/cards.md "Speed").

The vpcd ports are machine-wide and take one card each: a `VpcdCard` holds an exclusive lock
file for its port from `insert()` to `close()` (across `remove()`/`insert()`), so two test runs
or tools never fight over a slot; a busy slot is a `VirtualCardError` after a bounded wait.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import socket
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from tools.transports import VirtualCardError

log = logging.getLogger(__name__)

VPCD_HOST = "127.0.0.1"
VPCD_PORT_SLOT0 = 35963
VPCD_PORT_SLOT1 = 35964
VPCD_READER_SLOT0 = "Virtual PCD 00 00"  # the PC/SC reader name of each port's slot
VPCD_READER_SLOT1 = "Virtual PCD 00 01"
VPCD_READERS_FIX = (
    "apt-get install -y vsmartcard-vpcd, then restart pcscd: it reads /etc/reader.conf.d "
    "only when it starts"
)
CONNECT_TIMEOUT_S = 2.0
FIRST_POLL_TIMEOUT_S = 3.0  # vpcd asks for the ATR about every 0.45 s once it has accepted us
RECV_POLL_S = 0.2  # the serving thread checks for remove() this often
JOIN_TIMEOUT_S = 2.0
SLOT_LOCK_WAIT_S = 60.0
RECV_BYTES_MAX = 65536 + 2
SEND_PAYLOAD_BYTES_MAX = 0xFFFF
LOCK_POLL_S = 0.05

CONTROL_POWER_OFF = 0x00
CONTROL_POWER_ON = 0x01
CONTROL_RESET = 0x02
CONTROL_GET_ATR = 0x04

SW_OK = b"\x90\x00"
SW_WRONG_LENGTH = 0x6C  # 6C XX: wrong Le, XX bytes available
SW_FUNCTION_NOT_SUPPORTED = b"\x6a\x81"
SW_NO_PRECISE_DIAGNOSIS = b"\x6f\x00"  # what the card side answers when card.apdu() raises

VPCD_FIX = (
    "vpcd is not listening: start pcscd with the vsmartcard-vpcd driver "
    "(tools.transports.pcscd.use_pcscd(), or `pcscd --foreground &`; "
    "install: apt-get install -y pcscd vsmartcard-vpcd)"
)


def frame(payload: bytes) -> bytes:
    """vpcd's framing: a 2-byte big-endian length, then the payload."""
    assert len(payload) <= SEND_PAYLOAD_BYTES_MAX, "a vpcd message holds at most 65535 bytes"
    return len(payload).to_bytes(2, "big") + payload


def ats_historical_bytes(ats: bytes) -> bytes:
    """The historical bytes of an ATS (TL T0 [TA] [TB] [TC] historical bytes)."""
    if len(ats) < 2:
        return b""
    t0 = ats[1]
    start = 2 + bin(t0 & 0x70).count("1")
    return bytes(ats[start : ats[0]])


def atr_for_ats(ats: bytes) -> bytes:
    """The ATR a PC/SC reader reports for an ISO 14443-4 type A card (PC/SC Part 3)."""
    historical = ats_historical_bytes(ats)[:15]
    body = bytes((0x80 | len(historical), 0x80, 0x01)) + historical
    check = 0
    for byte in body:
        check ^= byte
    return b"\x3b" + body + bytes((check,))


def reader_get_data(card: Any, apdu: bytes) -> bytes | None:
    """A PC/SC reader's answer to GET DATA (FF CA P1 00 Le); None for any other APDU."""
    if len(apdu) < 4 or apdu[0] != 0xFF or apdu[1] != 0xCA:
        return None
    if apdu[2] == 0x00 and apdu[3] == 0x00:
        data = bytes(card.uid)
    elif apdu[2] == 0x01 and apdu[3] == 0x00:
        data = ats_historical_bytes(bytes(card.ats))
    else:
        return SW_FUNCTION_NOT_SUPPORTED
    wanted = apdu[4] if len(apdu) == 5 else 0
    if wanted and wanted < len(data):
        return bytes((SW_WRONG_LENGTH, len(data)))
    return data + SW_OK


class SlotLock:
    """An exclusive lock file for one vpcd port, machine-wide (VpcdCard holds one; a test that
    needs a slot empty holds one too)."""

    def __init__(self, port: int, lock_dir: Path | None = None) -> None:
        self.path = (lock_dir or Path(tempfile.gettempdir())) / f"tilltap-vpcd-{port}.lock"
        self._handle: IO[bytes] | None = None

    @property
    def held(self) -> bool:
        return self._handle is not None

    def acquire(self, wait_s: float) -> None:
        if self._handle is not None:
            return
        handle = open(self.path, "ab")  # noqa: SIM115 (held until release)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    handle.close()
                    raise VirtualCardError(
                        f"vpcd slot lock {self.path} still held after {wait_s:.0f} s by "
                        "another process (another test run or tool has a card in that slot)"
                    ) from None
                time.sleep(LOCK_POLL_S)
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None

    def __enter__(self) -> SlotLock:
        self.acquire(SLOT_LOCK_WAIT_S)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


class VpcdCard:
    """Serves `card` in vpcd's slot at host:port until remove()/close()."""

    def __init__(
        self,
        card: Any,
        host: str = VPCD_HOST,
        port: int = VPCD_PORT_SLOT0,
        *,
        atr: bytes | None = None,
        reader_get_data: bool = True,
        slot_lock_wait_s: float = SLOT_LOCK_WAIT_S,
        lock_dir: Path | None = None,
    ) -> None:
        self.card = card
        self.host = host
        self.port = port
        self.atr_override = atr
        self.answer_get_data = reader_get_data
        self.slot_lock_wait_s = slot_lock_wait_s
        self.counts = {
            "insertions": 0,
            "removals": 0,
            "atr_requests": 0,
            "power_on": 0,
            "power_off": 0,
            "resets": 0,
            "apdus": 0,
            "reader_get_data": 0,
            "card_errors": 0,
            "unknown_controls": 0,
        }
        self.failure: str | None = None  # why serving stopped on its own (vpcd went away)
        self.card_error: BaseException | None = None  # the last exception card.apdu() raised
        self._lock = SlotLock(port, lock_dir)
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._polled = threading.Event()

    # -- life cycle -------------------------------------------------------------------------
    @property
    def atr(self) -> bytes:
        return self.atr_override or atr_for_ats(bytes(getattr(self.card, "ats", b"")))

    @property
    def inserted(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def insert(self, card: Any = None, first_poll_timeout_s: float = FIRST_POLL_TIMEOUT_S) -> None:
        """Put a card (this one, or `card`) in the slot; returns once vpcd has polled it."""
        assert not self.inserted, "remove() the card before inserting another"
        if self._socket is not None:
            self.remove()  # serving ended on its own (vpcd went away): close that connection
        if card is not None:
            self.card = card
        locked_here = not self._lock.held
        self._lock.acquire(self.slot_lock_wait_s)
        try:
            self._connect(first_poll_timeout_s)
        except VirtualCardError:
            if locked_here:
                self._lock.release()
            raise

    def _connect(self, first_poll_timeout_s: float) -> None:
        try:
            connection = socket.create_connection((self.host, self.port), CONNECT_TIMEOUT_S)
        except OSError as error:
            raise VirtualCardError(f"{self.host}:{self.port}: {error}; {VPCD_FIX}") from error
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection.settimeout(RECV_POLL_S)
        self._socket = connection
        self.failure = None
        self._stop.clear()
        self._polled.clear()
        self._thread = threading.Thread(
            target=self._serve, args=(connection,), name=f"vpcd-card-{self.port}", daemon=True
        )
        self._thread.start()
        self.counts["insertions"] += 1
        if not self._polled.wait(first_poll_timeout_s):
            self.remove()
            raise VirtualCardError(
                f"connected to {self.host}:{self.port} but vpcd did not poll the card within "
                f"{first_poll_timeout_s:.1f} s: another client (not a tilltap VpcdCard) may "
                "hold the slot, or pcscd is hung"
            )

    def remove(self) -> None:
        """Take the card out: close the socket (vpcd reports the card gone). Keeps the slot."""
        thread, connection = self._thread, self._socket
        self._thread = self._socket = None
        if connection is None:
            return
        self._stop.set()
        with contextlib.suppress(OSError):
            connection.shutdown(socket.SHUT_RDWR)
        if thread is not None:
            thread.join(JOIN_TIMEOUT_S)
        connection.close()
        self.counts["removals"] += 1

    def close(self) -> None:
        """Remove the card and give the slot back to other processes."""
        self.remove()
        self._lock.release()

    def __enter__(self) -> VpcdCard:
        self.insert()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # -- the serving thread -----------------------------------------------------------------
    def _serve(self, connection: socket.socket) -> None:
        buffer = bytearray()
        while not self._stop.is_set():
            try:
                # Delayed ACKs would hold vpcd's payload write behind its length write.
                connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
                chunk = connection.recv(RECV_BYTES_MAX)
            except TimeoutError:
                continue
            except OSError as error:
                if not self._stop.is_set():
                    self.failure = f"vpcd connection failed: {error}"
                return
            if not chunk:
                if not self._stop.is_set():
                    self.failure = "vpcd closed the connection (pcscd stopped?)"
                return
            buffer += chunk
            if not self._answer_complete_messages(connection, buffer):
                return

    def _answer_complete_messages(self, connection: socket.socket, buffer: bytearray) -> bool:
        while len(buffer) >= 2:
            length = int.from_bytes(buffer[:2], "big")
            if len(buffer) < 2 + length:
                return True
            payload = bytes(buffer[2 : 2 + length])
            del buffer[: 2 + length]
            self._polled.set()
            reply = self._handle(payload)
            if reply is None:
                continue
            try:
                connection.sendall(frame(reply))
            except OSError as error:
                if not self._stop.is_set():
                    self.failure = f"vpcd connection failed: {error}"
                return False
        return True

    def _handle(self, payload: bytes) -> bytes | None:
        if len(payload) == 1:
            return self._control(payload[0])
        self.counts["apdus"] += 1
        if self.answer_get_data:
            answer = reader_get_data(self.card, payload)
            if answer is not None:
                self.counts["reader_get_data"] += 1
                return answer
        try:
            return bytes(self.card.apdu(payload))
        except Exception as error:  # a card bug must not kill the slot: answer as a card would
            self.counts["card_errors"] += 1
            self.card_error = error
            log.exception("card.apdu(%s) raised; answered 6F00", payload.hex())
            return SW_NO_PRECISE_DIAGNOSIS

    def _control(self, control: int) -> bytes | None:
        if control == CONTROL_GET_ATR:
            self.counts["atr_requests"] += 1
            return self.atr
        if control == CONTROL_POWER_OFF:
            self.counts["power_off"] += 1
        elif control in (CONTROL_POWER_ON, CONTROL_RESET):
            self.counts["power_on" if control == CONTROL_POWER_ON else "resets"] += 1
            activate = getattr(self.card, "activate", None)
            if callable(activate):
                try:
                    activate()
                except Exception as error:  # as for apdu(): count it, keep the slot serving
                    self.counts["card_errors"] += 1
                    self.card_error = error
                    log.exception("card.activate() raised")
        else:
            self.counts["unknown_controls"] += 1
        return None
