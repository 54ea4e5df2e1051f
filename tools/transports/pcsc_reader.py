"""The reader side over PC/SC: pyscard's `smartcard.scard` (WinSCard calls) through pcscd.

`PcscReader(reader_name=None)` connects to a named reader (its exact name, else the first
holding a card among those whose name contains it, case-insensitive: "ACR122") or, with no
name, to the first reader that has a card; it waits up to `card_wait_s` for one. Then:

    transmit(apdu) -> response     data || SW1 SW2
    uid()                          PC/SC Part 3 GET DATA `FF CA 00 00 00`, answered by the reader
    wait_for_removal(timeout_s)    disconnect, wait for that reader to report the card gone
    atr                            the card's ATR as the reader reports it

The low-level calls give the exact PC/SC return codes, which map onto the transport errors:

    SCARD_W_REMOVED_CARD, SCARD_E_NO_SMARTCARD,
    SCARD_W_RESET_CARD, SCARD_W_UNPOWERED_CARD        CardRemoved (card_pulled)
    SCARD_E_TIMEOUT, SCARD_W_UNRESPONSIVE_CARD         ExchangeTimeout (reader_timeout)
    SCARD_E_NO_SERVICE, SCARD_E_SERVICE_STOPPED,
    SCARD_E_READER_UNAVAILABLE, SCARD_E_UNKNOWN_READER ReaderUnavailable (reader_unavailable)
    anything else, or an answer without SW1 SW2        ExchangeFailed, unless the card turns out
                                                       to be gone (then CardRemoved)

A reset counts as removal: the card lost its session (an NTAG 424 DNA its authentication).
After CardRemoved, call connect() again when the card is back.

About the UID: every USB contactless reader answers `FF CA` itself; vpcd hands it to the
virtual card, and tools.transports.vpcd_card.VpcdCard answers it on the card's behalf. An NTAG
424 DNA with random ID enabled reports a random UID there: the real one comes from GetCardUID
after authentication (protocol.ntag424_commands).

`smartcard` is imported when a reader connects, so this module imports without pyscard.
"""

from __future__ import annotations

import time
from types import ModuleType
from typing import Any

from tools.transports import (
    CARD_WAIT_S,
    INSTALL_PCSC,
    CardRemoved,
    ExchangeFailed,
    ExchangeTimeout,
    NoCard,
    Reader,
    ReaderUnavailable,
    TransportError,
    UidUnavailable,
)

STATE_WAIT_SLICE_S = 0.25  # SCardGetStatusChange waits at most this long before re-listing
READER_POLL_S = 0.05
EVENT_COUNT_SHIFT = 16  # pcsc-lite: insertions + removals seen, in the event state's top bits
REMOVAL_SETTLE_S = 1.0  # vpcd polls presence about every 0.45 s
APDU_BYTES_MAX = 65544  # extended length: 4 header + 3 Lc + 65535 data + 2 Le
GET_UID_APDU = bytes.fromhex("FFCA000000")
PCSCD_FIX = "start pcscd (tools.transports.pcscd.use_pcscd(), or `pcscd --foreground &`)"


def _load_scard() -> ModuleType:
    try:
        from smartcard import scard
    except ImportError as error:
        raise ReaderUnavailable(f"pyscard is not installed ({error}); {INSTALL_PCSC}") from error
    return scard


def _code(value: int) -> int:
    return value & 0xFFFFFFFF


_NAMED_CODES = (
    "SCARD_W_REMOVED_CARD",
    "SCARD_E_NO_SMARTCARD",
    "SCARD_W_UNPOWERED_CARD",
    "SCARD_W_RESET_CARD",
    "SCARD_E_TIMEOUT",
    "SCARD_W_UNRESPONSIVE_CARD",
    "SCARD_E_NO_SERVICE",
    "SCARD_E_SERVICE_STOPPED",
    "SCARD_E_READER_UNAVAILABLE",
    "SCARD_E_UNKNOWN_READER",
)


def _classify(scard: ModuleType, hresult: int, action: str) -> TransportError:
    """The transport error for a failed PC/SC call."""
    code = _code(hresult)
    detail = f"{action}: {scard.SCardGetErrorMessage(hresult)} (0x{code:08X})"
    names = {name: _code(getattr(scard, name)) for name in _NAMED_CODES if hasattr(scard, name)}
    by_code = {value: name for name, value in names.items()}
    name = by_code.get(code, "")
    if name in ("SCARD_W_REMOVED_CARD", "SCARD_E_NO_SMARTCARD", "SCARD_W_UNPOWERED_CARD"):
        return CardRemoved(detail)
    if name == "SCARD_W_RESET_CARD":
        return CardRemoved(detail + "; the card was reset and lost its session")
    if name in ("SCARD_E_TIMEOUT", "SCARD_W_UNRESPONSIVE_CARD"):
        return ExchangeTimeout(detail)
    if name in ("SCARD_E_NO_SERVICE", "SCARD_E_SERVICE_STOPPED"):
        return ReaderUnavailable(f"{detail}; {PCSCD_FIX}")
    if name in ("SCARD_E_READER_UNAVAILABLE", "SCARD_E_UNKNOWN_READER"):
        return ReaderUnavailable(detail)
    return ExchangeFailed(detail)


def list_readers() -> list[str]:
    """The PC/SC reader names pcscd knows now (empty when it knows none)."""
    scard = _load_scard()
    context = _establish(scard)
    try:
        return _readers(scard, context)
    finally:
        scard.SCardReleaseContext(context)


def card_present(reader_name: str) -> bool:
    """Whether pcscd sees a card in that reader now (vpcd notices a removal at its next poll,
    about 0.45 s later)."""
    scard = _load_scard()
    context = _establish(scard)
    try:
        hresult, states = scard.SCardGetStatusChange(
            context, 0, [(reader_name, scard.SCARD_STATE_UNAWARE)]
        )
        if hresult != scard.SCARD_S_SUCCESS:
            raise _classify(scard, hresult, f"SCardGetStatusChange({reader_name!r})")
        return bool(states[0][1] & scard.SCARD_STATE_PRESENT)
    finally:
        scard.SCardReleaseContext(context)


def wait_for_readers(names: list[str], timeout_s: float) -> list[str]:
    """The reader list once it holds every name in `names`; ReaderUnavailable after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while True:
        readers = list_readers()
        if all(name in readers for name in names):
            return readers
        if time.monotonic() >= deadline:
            missing = [name for name in names if name not in readers]
            raise ReaderUnavailable(f"pcscd lists {readers}, not {missing}")
        time.sleep(READER_POLL_S)


def _establish(scard: ModuleType) -> Any:
    hresult, context = scard.SCardEstablishContext(scard.SCARD_SCOPE_USER)
    if hresult != scard.SCARD_S_SUCCESS:
        raise _classify(scard, hresult, "SCardEstablishContext")
    return context


def _readers(scard: ModuleType, context: Any) -> list[str]:
    hresult, readers = scard.SCardListReaders(context, [])
    if _code(hresult) == _code(scard.SCARD_E_NO_READERS_AVAILABLE):
        return []
    if hresult != scard.SCARD_S_SUCCESS:
        raise _classify(scard, hresult, "SCardListReaders")
    return list(readers)


def match_readers(readers: list[str], wanted: str | None) -> list[str]:
    """Readers `wanted` names: all for None, the exact name, else those whose name contains
    it (case-insensitive); connect() takes the first of them that holds a card."""
    if wanted is None:
        return list(readers)
    if wanted in readers:
        return [wanted]
    return [name for name in readers if wanted.lower() in name.lower()]


class PcscReader(Reader):
    def __init__(self, reader_name: str | None = None, *, card_wait_s: float = CARD_WAIT_S):
        self.reader_name = reader_name
        self.card_wait_s = card_wait_s
        self.name = reader_name or "pcsc"
        self.atr = b""
        self.counts = {"connects": 0, "apdus": 0, "removals": 0}
        self._scard: ModuleType | None = None
        self._context: Any = None
        self._card: Any = None
        self._protocol = 0
        self._card_left = False
        self._uid: bytes | None = None

    @property
    def connected(self) -> bool:
        return self._card is not None

    def connect(self) -> None:
        """Wait up to card_wait_s for a card in the reader(s) named, and connect to it."""
        scard = self._scard = _load_scard()
        self._drop_card()
        if self._context is None:
            self._context = _establish(scard)
        deadline = time.monotonic() + self.card_wait_s
        while True:
            name = self._wait_for_card(scard, deadline)
            hresult, card, protocol = scard.SCardConnect(
                self._context,
                name,
                scard.SCARD_SHARE_SHARED,
                scard.SCARD_PROTOCOL_T0 | scard.SCARD_PROTOCOL_T1,
            )
            if hresult == scard.SCARD_S_SUCCESS:
                break
            error = _classify(scard, hresult, f"SCardConnect({name!r})")
            if not isinstance(error, CardRemoved) or time.monotonic() >= deadline:
                raise error
            time.sleep(READER_POLL_S)  # the card left after the state check: look again
        self._card, self._protocol, self.name = card, protocol, name
        self._card_left = False
        self._uid = None
        self.atr = self._status_atr(scard)
        self.counts["connects"] += 1

    def _wait_for_card(self, scard: ModuleType, deadline: float) -> str:
        while True:
            readers = _readers(scard, self._context)
            candidates = match_readers(readers, self.reader_name)
            if candidates:
                hresult, states = scard.SCardGetStatusChange(
                    self._context, 0, [(name, scard.SCARD_STATE_UNAWARE) for name in candidates]
                )
                if hresult != scard.SCARD_S_SUCCESS:
                    raise _classify(scard, hresult, "SCardGetStatusChange")
                for name, event, _atr in states:
                    if event & scard.SCARD_STATE_PRESENT and not event & scard.SCARD_STATE_MUTE:
                        return str(name)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._nothing_found(readers, candidates)
            if candidates:
                known = [(n, e & ~scard.SCARD_STATE_CHANGED) for n, e, _atr in states]
                wait_ms = int(min(remaining, STATE_WAIT_SLICE_S) * 1000)
                scard.SCardGetStatusChange(self._context, wait_ms, known)  # wakes on a change
            else:
                time.sleep(min(remaining, READER_POLL_S))

    def _nothing_found(self, readers: list[str], candidates: list[str]) -> TransportError:
        if not candidates:
            wanted = f"named {self.reader_name!r}" if self.reader_name else "at all"
            return ReaderUnavailable(
                f"no PC/SC reader {wanted} after {self.card_wait_s:.1f} s; pcscd lists {readers}"
            )
        return NoCard(f"no card in {candidates} within {self.card_wait_s:.1f} s")

    def _status_atr(self, scard: ModuleType) -> bytes:
        hresult, _reader, _state, _protocol, atr = scard.SCardStatus(self._card)
        if hresult != scard.SCARD_S_SUCCESS:
            raise _classify(scard, hresult, "SCardStatus")
        return bytes(atr)

    def transmit(self, apdu: bytes) -> bytes:
        assert 4 <= len(apdu) <= APDU_BYTES_MAX, "a command APDU has 4..65544 bytes"
        scard = self._scard
        if self._card is None or scard is None:
            if self._card_left:
                raise CardRemoved(f"the card left {self.name}; connect() again")
            raise AssertionError("transmit() before connect()")
        hresult, response = scard.SCardTransmit(self._card, self._protocol, list(apdu))
        if hresult != scard.SCARD_S_SUCCESS:
            error = _classify(scard, hresult, f"SCardTransmit on {self.name}")
            if not isinstance(error, CardRemoved) and self._card_gone(scard):
                error = CardRemoved(f"{error.detail}; the card is no longer in {self.name}")
            if isinstance(error, CardRemoved):
                self._drop_card()
                self._card_left = True
                self.counts["removals"] += 1
            raise error
        response = bytes(response)
        if len(response) < 2:
            # vpcd answers an exchange cut short by the card leaving with no bytes at all.
            if self._card_gone(scard):
                self._drop_card()
                self._card_left = True
                self.counts["removals"] += 1
                raise CardRemoved(f"{self.name}: an empty answer, and the card is gone")
            raise ExchangeFailed(f"response of {len(response)} bytes has no status word")
        self.counts["apdus"] += 1
        return response

    def _card_gone(self, scard: ModuleType) -> bool:
        """After a failed exchange: is the card gone? Waits up to REMOVAL_SETTLE_S for the
        reader to notice (vpcd sees a closed socket only at its next presence poll)."""
        hresult, states = scard.SCardGetStatusChange(
            self._context, 0, [(self.name, scard.SCARD_STATE_UNAWARE)]
        )
        if hresult != scard.SCARD_S_SUCCESS:
            return False
        _name, event, _atr = states[0]
        if not event & scard.SCARD_STATE_PRESENT:
            return True
        known = [(self.name, event & ~scard.SCARD_STATE_CHANGED)]
        hresult, states = scard.SCardGetStatusChange(
            self._context, int(REMOVAL_SETTLE_S * 1000), known
        )
        if hresult != scard.SCARD_S_SUCCESS:
            return False  # no change within the wait: the card is still there
        return not states[0][1] & scard.SCARD_STATE_PRESENT

    def uid(self) -> bytes:
        """The UID the reader reports (PC/SC GET DATA); cached until the next connect()."""
        if self._uid is None:
            response = self.transmit(GET_UID_APDU)
            if response[-2:] != b"\x90\x00" or len(response) < 6:
                raise UidUnavailable(
                    f"{self.name} answered GET DATA (FF CA) with {response.hex().upper()}; "
                    "read an NTAG 424 DNA's UID with GetCardUID after authentication"
                )
            self._uid = response[:-2]
        return self._uid

    def wait_for_removal(self, timeout_s: float) -> bool:
        """Disconnect, then wait up to timeout_s (in slices, so Ctrl-C is seen) until the
        reader that held the card reports it gone, or reports a card inserted since (pcsc-lite
        counts insertions and removals in the upper 16 bits of the event state, so a swap
        between two looks is seen too)."""
        scard = self._scard
        if scard is None or self._context is None:
            return True  # never connected: no card of ours is there
        self._drop_card()
        self._uid = None
        deadline = time.monotonic() + timeout_s
        known, first_count, wait_ms = scard.SCARD_STATE_UNAWARE, None, 0
        while True:
            hresult, states = scard.SCardGetStatusChange(self._context, wait_ms,
                                                         [(self.name, known)])
            code = _code(hresult)
            if code == _code(scard.SCARD_E_UNKNOWN_READER):
                return True  # the reader itself went away, and the card with it
            if code != _code(scard.SCARD_E_TIMEOUT):  # a timeout: nothing changed
                if hresult != scard.SCARD_S_SUCCESS:
                    raise _classify(scard, hresult, f"SCardGetStatusChange({self.name!r})")
                event = states[0][1]
                count = event >> EVENT_COUNT_SHIFT
                first_count = count if first_count is None else first_count
                if not event & scard.SCARD_STATE_PRESENT or count != first_count:
                    return True
                known = event & ~scard.SCARD_STATE_CHANGED
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            wait_ms = int(min(remaining, STATE_WAIT_SLICE_S) * 1000)

    def _drop_card(self) -> None:
        if self._card is not None and self._scard is not None:
            self._scard.SCardDisconnect(self._card, self._scard.SCARD_LEAVE_CARD)
        self._card = None

    def close(self) -> None:
        self._drop_card()
        if self._context is not None and self._scard is not None:
            self._scard.SCardReleaseContext(self._context)
        self._context = None
