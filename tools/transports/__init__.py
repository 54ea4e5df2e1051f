"""Readers and virtual cards: the edges where APDUs leave Python for a real stack.

Reader sides (what a technician tool talks to), behind one small interface, `Reader`:

    PcscReader   pyscard through a running pcscd (any PC/SC reader, or vpcd's virtual slots)
    NfcReader    nfcpy: `usb:...` (a USB reader nfcpy drives) or `udp:HOST:PORT` (no hardware)

`open_reader(spec)` picks one from a `--reader` value: `pcsc`, `pcsc:NAME`, `usb[:...]`,
`tty:...`, `udp[:HOST[:PORT]]`. A reader is connected by `connect()` or by entering it as a
context manager, and then `transmit(apdu) -> response` (data followed by SW1 SW2), `uid()`;
`wait_for_removal(timeout_s)` ends the session and waits for the card to leave the field.

Card sides (serve any card object: `apdu(command) -> response`, `uid`, `sens_res`, `sel_res`,
`ats`; an optional `activate()` is called at every power-up or activation, as
tools.simulator.ntag424_card.Ntag424Card has it):

    VpcdCard     a TCP client of vpcd inside pcscd: the card shows up in a PC/SC slot
    NfcUdpCard   an nfcpy udp listener that speaks ISO-DEP (ISO/IEC 14443-4) as a Type 4A card

Errors are typed, each with a stable reason code (`.reason`) a tool can show, and `.detail`
for logs:

    TransportError
    +-- ReaderUnavailable     reader_unavailable: no library, no pcscd, no such reader/device
    +-- NoCard                card_absent: no card arrived within the wait
    +-- CardRemoved           card_pulled: the card left (PC/SC removed or reset, tag lost)
    +-- ExchangeTimeout       reader_timeout: the card did not answer within the bound
    +-- ExchangeFailed        reader_exchange_failed: the exchange broke (framing, protocol)
    +-- UidUnavailable        uid_unavailable: the reader cannot tell the card's UID
    +-- VirtualCardError      virtual_card_unavailable: a virtual card cannot attach
                              (vpcd not listening, its slot held by another process, udp
                              port in use)

Modules import without pyscard and nfcpy; the libraries load when a reader or card starts,
and their absence is a `ReaderUnavailable` / `VirtualCardError` whose detail says what to
install.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from protocol.reasons import CARD_ABSENT, CARD_PULLED, READER_TIMEOUT

READER_UNAVAILABLE = "reader_unavailable"
READER_EXCHANGE_FAILED = "reader_exchange_failed"
UID_UNAVAILABLE = "uid_unavailable"
VIRTUAL_CARD_UNAVAILABLE = "virtual_card_unavailable"

DESCRIPTIONS = {
    READER_UNAVAILABLE: "the reader, its library or its service (pcscd) is not there",
    CARD_ABSENT: "no card in the field",
    CARD_PULLED: "the card left the field",
    READER_TIMEOUT: "the card did not answer in time",
    READER_EXCHANGE_FAILED: "the exchange with the card broke",
    UID_UNAVAILABLE: "the reader cannot tell the card's UID",
    VIRTUAL_CARD_UNAVAILABLE: "a virtual card could not attach to its reader",
}

CARD_WAIT_S = 5.0  # how long connect() waits for a card by default
INSTALL_PCSC = ".venv/bin/pip install -e '.[pcsc]' (scripts/bootstrap.sh does it)"
INSTALL_NFC = ".venv/bin/pip install -e '.[nfc]' (scripts/bootstrap.sh does it)"


class TransportError(Exception):
    reason = READER_EXCHANGE_FAILED

    def __init__(self, detail: str = "", reason: str | None = None) -> None:
        super().__init__(detail)
        if reason is not None:
            self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


class ReaderUnavailable(TransportError):
    reason = READER_UNAVAILABLE


class NoCard(TransportError):
    reason = CARD_ABSENT


class CardRemoved(TransportError):
    reason = CARD_PULLED


class ExchangeTimeout(TransportError):
    reason = READER_TIMEOUT


class ExchangeFailed(TransportError):
    reason = READER_EXCHANGE_FAILED


class UidUnavailable(TransportError):
    reason = UID_UNAVAILABLE


class VirtualCardError(TransportError):
    reason = VIRTUAL_CARD_UNAVAILABLE


class Reader:
    """The interface both reader sides share; a subclass implements these.

    connect()                  wait up to card_wait_s for a card and start a session with it
    transmit(apdu) -> bytes    one command APDU, its response (data || SW1 SW2)
    uid() -> bytes             the UID the reader saw (anticollision, or PC/SC GET DATA)
    wait_for_removal(s)        end the session, wait for the card to leave the field
    close()                    free the reader (idempotent)
    connected                  a session with a card is open

    Ctrl-C (KeyboardInterrupt) is never swallowed: it leaves any of them at once, and the
    caller's `with` closes the reader.
    """

    name = "reader"

    @property
    def connected(self) -> bool:
        """A session with a card is open (False before connect() and after the card left)."""
        raise NotImplementedError

    def connect(self) -> None:
        raise NotImplementedError

    def transmit(self, apdu: bytes) -> bytes:
        """Send one command APDU; the response APDU (data || SW1 SW2)."""
        raise NotImplementedError

    def uid(self) -> bytes:
        raise NotImplementedError

    def wait_for_removal(self, timeout_s: float) -> bool:
        """Let the card go (end the session) and wait up to timeout_s for it to leave the
        field: True once no card is there or another card is; False if it is still there.
        A batch waits for this between cards, so one card is never taken for the next."""
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.connect()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


READER_SPEC_HELP = "pcsc, pcsc:READER NAME, usb[:VID[:PID]], tty:PORT:DRIVER or udp:HOST:PORT"


def open_reader(spec: str, card_wait_s: float = CARD_WAIT_S) -> Reader:
    """The reader a `--reader` value names, not yet connected (enter it with `with`)."""
    kind = spec.split(":", 1)[0]
    if kind == "pcsc":
        from tools.transports.pcsc_reader import PcscReader

        name = spec[len("pcsc:") :] if spec.startswith("pcsc:") else None
        return PcscReader(name or None, card_wait_s=card_wait_s)
    if kind in ("usb", "udp", "tty", "com"):
        from tools.transports.nfc_reader import NfcReader

        return NfcReader(spec, card_wait_s=card_wait_s)
    raise ReaderUnavailable(f"unknown reader {spec!r}; use {READER_SPEC_HELP}")


__all__ = [
    "CARD_WAIT_S",
    "DESCRIPTIONS",
    "READER_SPEC_HELP",
    "CardRemoved",
    "ExchangeFailed",
    "ExchangeTimeout",
    "NoCard",
    "Reader",
    "ReaderUnavailable",
    "TransportError",
    "UidUnavailable",
    "VirtualCardError",
    "open_reader",
]
