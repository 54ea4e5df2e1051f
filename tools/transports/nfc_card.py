"""A Type 4A (ISO-DEP) card over nfcpy's udp driver: serves a card object to any nfcpy reader.

nfcpy emulates only Type 3 tags by itself. This listener uses its udp driver's listener
instead (docs/cards.md "nfcpy as a card"): given `LocalTarget('106A', sens_res, sdd_res=uid,
sel_res)` it answers the anticollision and hands back the reader's RATS; the ATS goes back,
and from then on `IsoDepCard` answers the ISO/IEC 14443-4 blocks:

    I(bn) with chaining       R(ACK, bn); the command data is collected
    I(bn)                     the card's response in I-blocks, chained (MI) when longer
                              than the reader's frame size (FSD from RATS, minus PCB and CRC)
    R(ACK/NAK, bn = ours)     the last block again (retransmission)
    R(ACK, bn != ours)        the next block of a chained response
    R(NAK, bn != ours)        R(ACK, ours) (the reader lost our last block, or checks presence)
    S(DESELECT)               S(DESELECT); the session ends and the card listens again
    anything else             no answer, as a card in the field does with a garbled frame

The block number starts at 1 and toggles on every I-block and every new R(ACK) (ISO/IEC
14443-4, rules C/D/E and 9..13). A CID byte is echoed when the reader sends one; NAD is
dropped. WTX is never needed: the ATS sent carries FWI 14 (about 4.9 s) whatever the card
object's ATS says, because a Python card answers in milliseconds but nfcpy's own timeouts are
tight (`ats_for_emulation`). Everything else of the card's ATS (FSCI, TA, TC, historical
bytes) is kept.

The session also ends when the reader switches the field off (nfcpy sends `RFOFF` on close),
when it starts a new activation (REQA/WUPA arrives), or after `idle_timeout_s` of silence (a
reader that vanished without RFOFF). Each new activation calls the card's `activate()` if it
has one (Ntag424Card: back to MF level, no session).

Byte order: a card object's `sens_res` is the ATQA as a PN532 reports it (00 44); nfcpy's
LocalTarget wants it as sent on the air (44 00), so it is reversed here.

The socket is bound to `host:port` (127.0.0.1 by default) once, in start(), and kept until
stop(); nfcpy's own ContactlessFrontend.listen() would bind 0.0.0.0 and rebind on every call
(see `_UdpLink`).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from tools.transports import INSTALL_NFC, VirtualCardError

log = logging.getLogger(__name__)

FWI_EMULATION = 14  # FWT = 4096/13.56 MHz * 2**14, about 4.9 s
FSD_BY_FSDI = (16, 24, 32, 40, 48, 64, 96, 128, 256)
FSD_DEFAULT = 32  # what a reader that says nothing can take
PROLOGUE_AND_CRC_BYTES = 3  # PCB and the two CRC bytes count against the frame size
COMMAND_BYTES_MAX = 65544  # an extended-length APDU
LISTEN_SLICE_S = 1.0  # each listen waits this long (stop() wakes it sooner)
RECV_POLL_S = 0.2  # during a session, idleness is checked this often
SESSION_IDLE_S = 60.0
JOIN_TIMEOUT_S = 3.0

PCB_I_BLOCK = 0x02
PCB_R_ACK = 0xA2
PCB_R_NAK = 0xB2
PCB_S_DESELECT = 0xC2
PCB_CHAINING = 0x10
PCB_CID = 0x08
PCB_NAD = 0x04
PCB_BLOCK_NUMBER = 0x01

SW_NO_PRECISE_DIAGNOSIS = b"\x6f\x00"
SW_WRONG_LENGTH = b"\x67\x00"


def ats_for_emulation(ats: bytes, fwi: int = FWI_EMULATION) -> bytes:
    """The card's ATS with TA and TB present (nfcpy reads them at fixed offsets) and FWI set.

    >>> ats_for_emulation(bytes.fromhex("0578 80 A0 02")).hex()
    '057880e002'
    """
    assert 0 <= fwi <= 14, "FWI 15 is RFU"
    t0 = ats[1] if len(ats) > 1 else 0x02  # absent T0: FSCI 2, no TA/TB/TC
    index = 2
    ta = tb = 0x00
    tc: int | None = None
    if t0 & 0x10:
        ta, index = ats[index], index + 1
    if t0 & 0x20:
        tb, index = ats[index], index + 1
    else:
        tb = 0x40  # absent TB: FWI 4, SFGI 0
    if t0 & 0x40:
        tc, index = ats[index], index + 1
    historical = bytes(ats[index : ats[0]]) if ats else b""
    body = bytes((0x30 | (0x40 if tc is not None else 0) | (t0 & 0x0F), ta))
    body += bytes(((fwi << 4) | (tb & 0x0F),)) + (bytes((tc,)) if tc is not None else b"")
    body += historical
    return bytes((len(body) + 1,)) + body


def fsd_from_rats(rats: bytes) -> int:
    """The reader's frame size (FSD) from RATS `E0 <FSDI CID>`."""
    if len(rats) < 2:
        return FSD_DEFAULT
    return FSD_BY_FSDI[min(rats[1] >> 4, len(FSD_BY_FSDI) - 1)]


class IsoDepCard:
    """ISO/IEC 14443-4 card side for one activation; pure (no I/O): blocks in, blocks out."""

    def __init__(self, apdu: Callable[[bytes], bytes], fsd: int, counts: dict[str, int]) -> None:
        self.apdu = apdu
        self.fsd = fsd
        self.counts = counts
        self.block_number = 1  # rule C
        self.deselected = False
        self.card_error: BaseException | None = None
        self._command = bytearray()
        self._command_overflow = False
        self._pending = b""  # the rest of a chained response
        self._last_block = b""

    def handle(self, block: bytes) -> bytes | None:
        """The block to send back, or None to stay silent."""
        if not block:
            return self._ignore()
        pcb = block[0]
        has_cid = bool(pcb & PCB_CID)
        if has_cid and (len(block) < 2 or block[1] & 0x0F != 0):
            return self._ignore()  # a block for another card (this one has CID 0)
        cid = block[1:2] if has_cid else b""
        if pcb & 0xE2 == PCB_I_BLOCK:
            body = block[1 + len(cid) + (1 if pcb & PCB_NAD else 0) :]
            return self._i_block(pcb, cid, body)
        if pcb & 0xE6 == PCB_R_ACK and len(block) == 1 + len(cid):
            return self._r_block(pcb, cid)
        if pcb & 0xF7 == PCB_S_DESELECT and len(block) == 1 + len(cid):
            self.deselected = True
            self.counts["deselects"] += 1
            return bytes((pcb,)) + cid
        return self._ignore()

    def _ignore(self) -> bytes | None:
        """Count the block and answer nothing."""
        self.counts["ignored_blocks"] += 1
        return None

    def _i_block(self, pcb: int, cid: bytes, body: bytes) -> bytes:
        self.block_number = pcb & PCB_BLOCK_NUMBER  # rule D: toggled to the reader's number
        self._pending = b""
        if len(self._command) + len(body) > COMMAND_BYTES_MAX:
            self._command_overflow = True
        else:
            self._command += body
        if pcb & PCB_CHAINING:
            self.counts["chained_command_blocks"] += 1
            return self._send(
                bytes((PCB_R_ACK | (PCB_CID if cid else 0) | self.block_number,)) + cid
            )
        command, overflow = bytes(self._command), self._command_overflow
        self._command, self._command_overflow = bytearray(), False
        self._pending = SW_WRONG_LENGTH if overflow else self._card_answer(command)
        return self._next_response_block(cid)

    def _card_answer(self, command: bytes) -> bytes:
        self.counts["apdus"] += 1
        try:
            return bytes(self.apdu(command))
        except Exception as error:  # a card bug must not end the session: answer as a card would
            self.counts["card_errors"] += 1
            self.card_error = error
            log.exception("card.apdu(%s) raised; answered 6F00", command.hex())
            return SW_NO_PRECISE_DIAGNOSIS

    def _r_block(self, pcb: int, cid: bytes) -> bytes | None:
        nak = bool(pcb & 0x10)
        if nak:
            self.counts["naks_received"] += 1
        if pcb & PCB_BLOCK_NUMBER == self.block_number:
            if not self._last_block:
                return self._ignore()
            self.counts["retransmissions"] += 1  # rule 11
            return self._last_block
        if nak:  # rule 13
            return self._send(
                bytes((PCB_R_ACK | (PCB_CID if cid else 0) | self.block_number,)) + cid
            )
        if not self._pending:
            return self._ignore()
        self.block_number ^= 1  # rules E and 12: go on with the chained response
        return self._next_response_block(cid)

    def _next_response_block(self, cid: bytes) -> bytes:
        room = self.fsd - PROLOGUE_AND_CRC_BYTES - len(cid)
        chunk, self._pending = self._pending[:room], self._pending[room:]
        pcb = PCB_I_BLOCK | self.block_number | (PCB_CID if cid else 0)
        if self._pending:
            pcb |= PCB_CHAINING
            self.counts["chained_response_blocks"] += 1
        return self._send(bytes((pcb,)) + cid + chunk)

    def _send(self, block: bytes) -> bytes:
        self._last_block = block
        return block


def _new_counts() -> dict[str, int]:
    return dict.fromkeys(
        (
            "activations",
            "apdus",
            "chained_command_blocks",
            "chained_response_blocks",
            "naks_received",
            "retransmissions",
            "deselects",
            "rf_off",
            "field_resets",
            "idle_timeouts",
            "ignored_blocks",
            "ignored_activations",
            "transmission_errors",
            "card_errors",
        ),
        0,
    )


class NfcUdpCard:
    """Serves `card` as a Type 4A tag on nfcpy's `udp:host:port` until stop()."""

    def __init__(
        self,
        card: Any,
        port: int,
        host: str = "127.0.0.1",
        *,
        fwi: int = FWI_EMULATION,
        idle_timeout_s: float = SESSION_IDLE_S,
    ) -> None:
        self.card = card
        self.host = host
        self.port = port
        self.fwi = fwi
        self.idle_timeout_s = idle_timeout_s
        self.counts = _new_counts()
        self.failure: str | None = None
        self.card_error: BaseException | None = None
        self._clf: Any = None
        self._link: _UdpLink | None = None
        self._nfc: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def path(self) -> str:
        return f"udp:{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def local_target(self) -> Any:
        card = self.card
        sens_res = bytes(getattr(card, "sens_res", None) or card.atqa)
        sel_res = getattr(card, "sel_res", None)
        sel_res = card.sak if sel_res is None else sel_res
        return self._nfc.clf.LocalTarget(
            "106A",
            sens_res=bytearray(sens_res[::-1]),  # PN532 order -> air order
            sdd_res=bytearray(card.uid),
            sel_res=bytearray((sel_res,)),
        )

    def start(self) -> NfcUdpCard:
        """Bind host:port and serve from a thread."""
        assert not self.running, "already serving"
        try:
            import nfc
            import nfc.clf
        except ImportError as error:
            raise VirtualCardError(f"nfcpy is not installed ({error}); {INSTALL_NFC}") from error
        self._nfc = nfc
        clf = nfc.ContactlessFrontend()
        if not clf.open(self.path):
            raise VirtualCardError(f"nfcpy could not open {self.path}")
        link = _UdpLink(clf.device)
        try:
            link.bind(self.host, self.port)
        except OSError as error:
            clf.close()
            raise VirtualCardError(f"cannot bind udp {self.host}:{self.port}: {error}") from error
        self._clf, self._link = clf, link
        self.failure = None
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._serve, args=(link,), name=f"nfc-card-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (a reader then sees the tag gone) and free the port."""
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None:
            _wake(self.host, self.port)  # the wait in progress returns now, not at its timeout
            thread.join(JOIN_TIMEOUT_S)
            if thread.is_alive():
                log.warning(
                    "nfc card thread on port %d did not stop within %.1f s",
                    self.port,
                    JOIN_TIMEOUT_S,
                )
        if self._clf is not None:
            self._clf.close()
            self._clf = self._link = None

    def __enter__(self) -> NfcUdpCard:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- the serving thread -----------------------------------------------------------------
    def _serve(self, link: _UdpLink) -> None:
        target = self.local_target()
        activated = restart = None
        try:
            while not self._stop.is_set():
                activated = link.listen(target, LISTEN_SLICE_S, restart)
                restart = None
                if activated is not None and not self._stop.is_set():
                    restart = self._activated(link, activated)
        except (OSError, self._nfc.clf.Error) as error:
            if not self._stop.is_set():
                self.failure = f"listening failed: {error}"

    def _activated(self, link: _UdpLink, activated: Any) -> Any:
        rats = activated.tt4_cmd
        if self._stop.is_set() or not rats or rats[0] != 0xE0:
            self.counts["ignored_activations"] += 1  # not RATS: no ISO-DEP session
            return None
        return self._session(link, activated._addr, bytes(rats))

    def _session(self, link: _UdpLink, address: Any, rats: bytes) -> Any:
        """Answer blocks until the session ends; returns a REQA/WUPA frame that ended it (to
        be answered by the next listen), else None."""
        errors = self._nfc.clf
        self.counts["activations"] += 1
        self._activate_card()
        session = IsoDepCard(self.card.apdu, fsd_from_rats(rats), self.counts)
        link.send(ats_for_emulation(bytes(self.card.ats), self.fwi), address)
        idle_deadline = time.monotonic() + self.idle_timeout_s
        while not self._stop.is_set():
            try:
                brty, block, address = link.receive(RECV_POLL_S)
            except errors.TimeoutError:
                if time.monotonic() >= idle_deadline:
                    self.counts["idle_timeouts"] += 1
                    return None
                continue
            except errors.BrokenLinkError:
                self.counts["rf_off"] += 1
                return None
            except errors.CommunicationError:
                self.counts["transmission_errors"] += 1
                continue
            if self._stop.is_set():
                return None
            idle_deadline = time.monotonic() + self.idle_timeout_s
            if bytes(block) in (b"\x26", b"\x52"):  # REQA / WUPA: a reader starts over
                self.counts["field_resets"] += 1
                return (brty, block, address)
            reply = session.handle(bytes(block))
            self.card_error = session.card_error or self.card_error
            if reply is not None:
                link.send(reply, address)
            if session.deselected:
                return None
        return None

    def _activate_card(self) -> None:
        activate = getattr(self.card, "activate", None)
        if not callable(activate):
            return
        try:
            activate()
        except Exception as error:  # as for apdu(): count it, keep serving
            self.counts["card_errors"] += 1
            self.card_error = error
            log.exception("card.activate() raised")


class _UdpLink:
    """The few calls into nfcpy's udp driver (nfc/clf/udp.py, nfcpy 1.0.x) the card side uses.

    ContactlessFrontend.listen() closes and rebinds the socket (on 0.0.0.0) at every call,
    which loses a reader's REQA arriving between two sessions (that reader then waits out
    nfcpy's 1 s sense timeout); and its exchange() does not tell who sent a frame. So the card
    side binds the driver's socket itself, once, and uses the driver's listener loop
    `_listen_tta` (optionally starting from a REQA already received) and its frame calls
    `_recv_data` / `_send_data`. Pinned in pyproject.toml; tests/transports prove them.
    """

    BRTY = "106A"

    def __init__(self, device: Any) -> None:
        self.device = device

    def bind(self, host: str, port: int) -> None:
        self.device._create_socket()
        self.device.socket.bind((host, port))

    def listen(self, target: Any, timeout_s: float, first_frame: Any = None) -> Any:
        return self.device._listen_tta(target, time.time() + timeout_s, first_frame)

    def receive(self, timeout_s: float) -> tuple[str, bytearray, Any]:
        brty, frame, address = self.device._recv_data(timeout_s, self.BRTY)
        return brty, frame, address

    def send(self, frame: bytes, address: Any) -> None:
        self.device._send_data(self.BRTY, frame, address)


FREE_PORT_TRIES_MAX = 100


def free_udp_port(host: str = "127.0.0.1") -> int:
    """A free UDP port for a virtual card that nfcpy's udp driver can open: nfcpy turns the
    port back into text with getnameinfo without NI_NUMERICSERV, so a port that
    /etc/services names (57000 is "dircproxy") reaches int() as a service name and fails;
    such ports are skipped. getnameinfo without NI_DGRAM looks the port up as TCP, so a
    name for either protocol counts (60177 is "tfido" for TCP only)."""
    for _ in range(FREE_PORT_TRIES_MAX):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind((host, 0))
            port = int(probe.getsockname()[1])
        if not any(_service_name(port, protocol) for protocol in ("tcp", "udp")):
            return port  # no service name: nfcpy reads it back as a number
    raise VirtualCardError(f"no free unnamed UDP port on {host}")


def _service_name(port: int, protocol: str) -> bool:
    try:
        socket.getservbyport(port, protocol)
    except OSError:
        return False
    return True


def _wake(host: str, port: int) -> None:
    """A junk frame to our own port: the serving thread returns from its wait and sees stop."""
    waker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        waker.sendto(b"106A 00", ("127.0.0.1" if host in ("", "0.0.0.0") else host, port))
    except OSError as error:
        log.debug("could not wake the card thread on port %d: %s", port, error)
    finally:
        waker.close()
