"""The Reader seam (firmware.hal) on a PN532: `read_card(timeout_ms)` -> (uid, sun, reason).

A read: configure the PN532 if needed (wakeup, SAMConfiguration, MaxRetries), poll
InListPassiveTarget until a type A card answers or timeout_ms has passed, run `on_card` (if
given) while the card is selected, then InRelease it, whatever happened in between.

    reader = Pn532Reader(Pn532(I2CBus(i2c), clock), clock, on_card_read_sun)
    uid, sun, reason = reader.read_card(3000)
    # ("04a1b2c3d4e5f6", "https://...", None), or (None, None, "card_pulled")

`on_card(reader, target)` returns the card's SUN URL (or None when it reads none); it may
call `exchange_apdu(apdu)`, which sends an ISO 7816-4 APDU to the selected card and raises
Pn532Error (firmware.card_sun's on_card_read_sun reads the NDEF file this way).

Every failure ends the read cleanly: read_card returns (None, None, reason) with the reason
code the terminal shows (`last_detail` keeps the text for logs; `failures` counts each reason):

    card_absent                  no card within timeout_ms
    card_pulled, card_status,    the card left or failed during on_card's APDUs
    card_response_too_long,
    card_command_refused,        the card refused or garbled on_card's reads (card_sun)
    card_response_malformed
    reader_timeout, reader_frame_invalid, reader_nack,
    reader_error_frame, reader_bus_error
                                 the PN532 misbehaved; it is configured afresh on the next read

A failed InRelease after a good read keeps the tap, (uid, sun, None): the card's answers were
whole. It is counted in `failures` and the PN532 is configured afresh on the next read.
read_card returns within timeout_ms plus one InListPassiveTarget (ACTIVATION_TIMEOUT_MS).
"""

from binascii import hexlify

from firmware.pn532 import (
    ACTIVATION_TIMEOUT_MS,
    CARD_ABSENT,
    READER_REASONS,
    Pn532Error,
)
from protocol.errors import ProtocolError

try:
    from micropython import const
except ImportError:

    def const(value):
        return value


POLL_INTERVAL_MS = const(50)


class Pn532Reader:
    """Reader seam on a `firmware.pn532.Pn532`; `on_card(reader, target)` runs while selected
    and returns the card's SUN URL or None."""

    def __init__(self, pn532, clock, on_card=None):
        self.pn532 = pn532
        self.clock = clock
        self.on_card = on_card
        self.target = None  # the selected card, only while on_card runs
        self.configured = False
        self.firmware_version = None
        self.last_detail = ""  # the text of the last read's first failure, for logs
        self.failures = {}  # reason -> count, every failure since start

    def read_card(self, timeout_ms):
        """(uid hex, sun or None, None) for a card read whole, else (None, None, reason)."""
        self.last_detail = ""
        try:
            target = self._activate(timeout_ms)
        except Pn532Error as error:
            return None, None, self._failed(error)
        self.target = target
        uid = sun = reason = None
        try:
            if self.on_card is not None:
                sun = self.on_card(self, target)
            uid = hexlify(target.uid).decode()
        except ProtocolError as error:  # the chip's, or the card's answers (card_sun)
            sun, reason = None, self._failed(error)
        finally:
            self.target = None
            self._release(target)
        return uid, sun, reason

    def exchange_apdu(self, apdu):
        """The card's response APDU (data + SW1 SW2) to `apdu`; only while a card is selected."""
        assert self.target is not None, "exchange_apdu outside on_card: no card is selected"
        return self.pn532.exchange(self.target.number, apdu)

    def _activate(self, timeout_ms):
        if not self.configured:
            self.firmware_version = self.pn532.begin()
            self.configured = True
        start = self.clock.ticks_ms()
        for _ in range(max(0, timeout_ms) // POLL_INTERVAL_MS + 1):
            target = self.pn532.list_passive_target(ACTIVATION_TIMEOUT_MS)
            if target is not None:
                return target
            remaining = timeout_ms - self.clock.ticks_diff(self.clock.ticks_ms(), start)
            if remaining <= 0:
                break
            self.clock.sleep_ms(min(POLL_INTERVAL_MS, remaining))
        raise Pn532Error(CARD_ABSENT, "no card within %d ms" % timeout_ms)

    def _release(self, target):
        try:
            self.pn532.release(target.number)
        except Pn532Error as error:
            self._failed(error)

    def _failed(self, error):
        """Count a failure (the first of a read keeps its detail); returns its reason."""
        if not self.last_detail:
            self.last_detail = error.detail or error.reason
        self.failures[error.reason] = self.failures.get(error.reason, 0) + 1
        if error.reason in READER_REASONS:
            self.configured = False
        return error.reason
