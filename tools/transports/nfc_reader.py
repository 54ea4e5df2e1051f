"""The reader side over nfcpy: a USB reader nfcpy drives (`usb[:...]`, `tty:...`) or its udp
driver (`udp:HOST:PORT`, no hardware; tools.transports.nfc_card.NfcUdpCard is the card there).

`NfcReader(path).connect()` senses for up to `card_wait_s` for an ISO-DEP Type 4A tag (106A)
and activates it (RATS/ATS); then `transmit(apdu)` goes through nfcpy's ISO-DEP initiator
(`tag.transceive`: block numbers, chaining, NAK retries) and `uid()` is the UID the
anticollision gave (an NTAG 424 DNA with random ID reports a random one there; the real UID
comes from GetCardUID after authentication). `wait_for_removal(timeout_s)` ends the session
and senses until that UID no longer answers. Ctrl-C is never swallowed (nfcpy's own
`connect` would turn it into "no tag"; this module senses and activates by itself).

Errors:

    nfcpy cannot open the device          ReaderUnavailable
    no Type 4A tag within card_wait_s     NoCard (a tag of another type: ExchangeFailed)
    no answer within the frame waiting    CardRemoved when a quick presence check (R(NAK))
      time, after nfcpy's retries         gets no answer either (the tag left the field),
                                          else ExchangeTimeout (the tag is there, but slow)
    transmission or protocol errors       ExchangeFailed

After CardRemoved, ExchangeTimeout or ExchangeFailed the ISO-DEP session is in an unknown
state: connect() again (it opens the device afresh). `nfc` is imported when a reader
connects, so this module imports without nfcpy.
"""

from __future__ import annotations

import time
from typing import Any

from tools.transports import (
    CARD_WAIT_S,
    INSTALL_NFC,
    CardRemoved,
    ExchangeFailed,
    ExchangeTimeout,
    NoCard,
    Reader,
    ReaderUnavailable,
    TransportError,
)

SENSE_INTERVAL_S = 0.1  # between sense attempts while waiting for a tag
PRESENCE_CHECK_TIMEOUT_S = 0.25
APDU_BYTES_MAX = 65544  # extended length; ISO-DEP chains it (the card must support it)


def _load_nfc() -> Any:
    try:
        import nfc
        import nfc.clf
        import nfc.tag
        import nfc.tag.tt4
    except ImportError as error:
        raise ReaderUnavailable(f"nfcpy is not installed ({error}); {INSTALL_NFC}") from error
    return nfc


class NfcReader(Reader):
    def __init__(self, path: str, *, card_wait_s: float = CARD_WAIT_S) -> None:
        self.path = path
        self.name = path
        self.card_wait_s = card_wait_s
        self.counts = {"connects": 0, "apdus": 0, "removals": 0, "timeouts": 0}
        self.tag: Any = None
        self._nfc: Any = None
        self._clf: Any = None
        self._card_left = False

    @property
    def connected(self) -> bool:
        return self.tag is not None

    def connect(self) -> None:
        """Open the device and wait up to card_wait_s for a Type 4A tag to activate.

        nfcpy's own `ContactlessFrontend.connect` returns False on Ctrl-C (it catches
        KeyboardInterrupt), which would read as "no card": this senses and activates by
        itself, so Ctrl-C leaves at once and the device is closed."""
        nfc = self._nfc = _load_nfc()
        self.close()
        clf = self._open()
        try:
            tag = self._sense_and_activate(clf, time.monotonic() + self.card_wait_s)
        except BaseException:
            self.close()
            raise
        if tag is None:
            self.close()
            raise NoCard(f"no Type 4A tag at {self.path} within {self.card_wait_s:.1f} s")
        if not isinstance(tag, nfc.tag.tt4.Type4Tag):
            self.close()
            raise ExchangeFailed(f"{tag} at {self.path} is not an ISO-DEP (Type 4) tag")
        self.tag = tag
        self._card_left = False
        self.counts["connects"] += 1

    def _open(self) -> Any:
        clf = self._nfc.ContactlessFrontend()
        try:
            opened = clf.open(self.path)
        except (OSError, ValueError) as error:
            raise ReaderUnavailable(f"nfcpy cannot open {self.path}: {error}") from error
        if not opened:
            raise ReaderUnavailable(f"nfcpy found no reader at {self.path}")
        self._clf = clf
        return clf

    def _sense(self, clf: Any) -> Any:
        """One sense for a 106A target: the target, or None when none answered."""
        nfc = self._nfc
        try:
            return clf.sense(nfc.clf.RemoteTarget("106A"), iterations=1,
                             interval=SENSE_INTERVAL_S)
        except nfc.clf.UnsupportedTargetError as error:
            raise ReaderUnavailable(f"{self.path} cannot sense Type A: {error}") from error
        except nfc.clf.CommunicationError:
            return None  # a garbled answer, as from two cards at once: sense again
        except OSError as error:
            raise ReaderUnavailable(f"{self.path}: {error}") from error

    def _sense_and_activate(self, clf: Any, deadline: float) -> Any:
        """Sense until a tag activates (the tag) or the deadline passes (None)."""
        while True:
            target = self._sense(clf)
            if target is not None:
                tag = self._nfc.tag.activate(clf, target)
                if tag is not None:
                    return tag
            if time.monotonic() >= deadline:
                return None
            time.sleep(SENSE_INTERVAL_S)

    def wait_for_removal(self, timeout_s: float) -> bool:
        """End the ISO-DEP session and sense until no tag answers (or one with another UID
        does); False if the same UID still answers after timeout_s. nfcpy has no field
        presence check without a session, so each look is a fresh anticollision."""
        if self.tag is None and self._clf is None:
            return True
        uid = bytes(self.tag.identifier) if self.tag is not None else None
        self.tag = None
        clf = self._clf if self._clf is not None else self._open()
        deadline = time.monotonic() + timeout_s
        while True:
            target = self._sense(clf)
            if target is None or (uid is not None and bytes(target.sdd_res) != uid):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(SENSE_INTERVAL_S)

    def transmit(self, apdu: bytes) -> bytes:
        assert 4 <= len(apdu) <= APDU_BYTES_MAX, "a command APDU has 4..65544 bytes"
        tag = self._connected_tag()
        nfc = self._nfc
        try:
            response = tag.transceive(bytes(apdu))
        except nfc.tag.tt4.Type4TagCommandError as error:
            raise self._failed(error) from error
        except nfc.clf.CommunicationError as error:
            raise self._failed(error) from error
        self.counts["apdus"] += 1
        if response is None or len(response) < 2:
            raise ExchangeFailed(f"response {response!r} has no status word")
        return bytes(response)

    def _failed(self, error: Exception) -> TransportError:
        nfc = self._nfc
        timed_out = getattr(error, "errno", None) == nfc.tag.TIMEOUT_ERROR or isinstance(
            error, nfc.clf.TimeoutError
        )
        if not timed_out:
            return ExchangeFailed(f"{self.path}: {error}")
        if self._still_there():
            self.counts["timeouts"] += 1
            return ExchangeTimeout(f"{self.path}: the tag is there but did not answer in time")
        self.counts["removals"] += 1
        self._card_left = True
        self.tag = None
        return CardRemoved(f"{self.path}: no answer, and none to a presence check: tag lost")

    def _still_there(self) -> bool:
        try:
            self.tag._dep.exchange(None, PRESENCE_CHECK_TIMEOUT_S)  # R(NAK): any answer is one
        except self._nfc.clf.CommunicationError:
            return False
        return True

    def uid(self) -> bytes:
        """The UID from the anticollision (nfcpy's tag.identifier)."""
        return bytes(self._connected_tag().identifier)

    def _connected_tag(self) -> Any:
        if self.tag is None:
            if self._card_left:
                raise CardRemoved(f"the tag left {self.path}; connect() again")
            raise AssertionError("use the reader after connect()")
        return self.tag

    def close(self) -> None:
        self.tag = None
        if self._clf is not None:
            self._clf.close()  # udp: sends RFOFF, the card side's session ends
            self._clf = None
