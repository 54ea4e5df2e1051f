"""The Reader seam (firmware.hal) on a PN532: `read_card(timeout_ms)` -> UID hex or None.

A read: configure the PN532 if needed (wakeup, SAMConfiguration, MaxRetries), poll
InListPassiveTarget until a type A card answers or timeout_ms has passed, run `on_card` (if
given) while the card is selected, then InRelease it, whatever happened in between.

    reader = Pn532Reader(Pn532(I2CBus(i2c), clock), clock)
    uid = reader.read_card(3000)      # "04a1b2c3d4e5f6", or None and reader.last_error says why

Every failure ends the read cleanly: read_card returns None and `last_error` holds the reason
code the terminal shows (`last_detail` the text for logs; `failures` counts each reason):

    card_absent                  no card within timeout_ms
    card_pulled, card_status,    the card left or failed during on_card's APDUs
    card_response_too_long
    reader_timeout, reader_frame_invalid, reader_nack,
    reader_error_frame, reader_bus_error
                                 the PN532 misbehaved; it is configured afresh on the next read

`exchange_apdu(apdu)` sends an ISO 7816-4 APDU to the selected card (inside `on_card`, which
later secure-messaging work uses for SELECT / READ); it raises Pn532Error. A failed InRelease
after a good read keeps the UID but sets `last_error` and reconfigures the PN532 next time.
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
    """Reader seam on a `firmware.pn532.Pn532`; `on_card(reader, target)` runs while selected."""

    def __init__(self, pn532, clock, on_card=None):
        self.pn532 = pn532
        self.clock = clock
        self.on_card = on_card
        self.target = None  # the selected card, only while on_card runs
        self.configured = False
        self.firmware_version = None
        self.last_error = None
        self.last_detail = ""
        self.failures = {}
        self.sun = None  # the SUN URL on_card read from the last card, if it reads one

    def read_card(self, timeout_ms):
        self.sun = None
        self.last_error = None
        self.last_detail = ""
        try:
            target = self._activate(timeout_ms)
        except Pn532Error as error:
            return self._failed(error)
        self.target = target
        try:
            if self.on_card is not None:
                self.on_card(self, target)
            uid = hexlify(target.uid).decode()
        except ProtocolError as error:  # the chip's, or the card's answers (card_sun)
            uid = self._failed(error)
        finally:
            self.target = None
            self._release(target)
        return uid

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
        """Record a failure (the first of a read is the one shown); always returns None."""
        if self.last_error is None:
            self.last_error = error.reason
            self.last_detail = error.detail
        self.failures[error.reason] = self.failures.get(error.reason, 0) + 1
        if error.reason in READER_REASONS:
            self.configured = False
        return None
