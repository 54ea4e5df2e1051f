"""The seams between the terminal's logic and the world. Boards and the simulator implement
these; the transaction, journal and uplink modules only ever call these methods.

    Clock    now_s() -> int unix seconds (RTC); ticks_ms() -> int monotonic ms;
             ticks_diff(a, b) -> a - b with wrap-around; sleep_ms(ms);
             wrapped in SyncedClock, which adds correct(gateway_s)
    Random   u32() -> int (jitter, request ids; not a key source)
    Net      connect(client_id, will_topic, will_payload) -> None, raises OSError
             publish(topic, payload, retain=False) -> None (QoS 1), raises OSError
             subscribe(topic) -> None; poll(timeout_ms) -> [(topic, payload bytes)]
             connected -> bool; disconnect() -> None
    Reader   read_card(timeout_ms) -> (uid, sun, reason): one tap as one value (below)
    Display  show(text) -> None: the line the cashier reads

Journal storage is `firmware.storage` (read_all / append / replace).

The Reader
----------
Implemented by `firmware.reader.Pn532Reader` (a board, the simulator's sun mode and the
MicroPython harness) and `tools.simulator.cards.EmulatedReader` (the simulator's plain mode).
The terminal calls it once per operation, from its one thread, and reads nothing else of it.

read_card(timeout_ms)
    Wait up to `timeout_ms` for a card to enter the field, read it, and let it go.

    Returns a tuple `(uid, sun, reason)`, one of:

      (uid, sun, None)     a card answered and everything asked of it was read whole.
                           `uid` is its UID as lowercase hex without separators
                           ("04a1b2c3d4e5f6": 4, 7 or 10 bytes). `sun` is the SUN URL read
                           from the card on this tap (str), or None when the reader reads
                           none (no on_card step, or a reader that only reads UIDs).
      (None, None, reason) no card answered, or it answered only in part: `reason` is a code
                           of protocol.reasons the terminal shows as is: card_absent (nothing
                           in the field within timeout_ms), card_pulled, card_status,
                           card_response_too_long, card_command_refused,
                           card_response_malformed (the card failed), reader_timeout,
                           reader_frame_invalid, reader_nack, reader_error_frame,
                           reader_bus_error (the reader chip or its bus failed).

    Exactly one of `uid` and `reason` is None (a miss without a reason, a reader's bug, is
    declined as card_read_failed). A partial read is never a tap: a UID without the SUN that
    was asked for is (None, None, reason), so nothing is sold on half a card.

    Timeout: returns within `timeout_ms` plus the time of one bounded activation attempt
    (the PN532's ACTIVATION_TIMEOUT_MS), card present or not; a `timeout_ms` of 0 makes
    one attempt. The reads of a card once found are bounded by the reader's own per-frame
    timeouts, never by waiting for the cashier.

    Raises: never for a card's or a reader's failure; those are reason codes. Only a
    programmer error (a bug in an on_card step, an assertion) propagates, after the card is
    released.

    Between taps the reader must:
      - release the card it selected (InRelease / DESELECT), whatever happened during the
        read, so the next call starts with a fresh activation;
      - carry nothing of one tap into the next: the SUN is read afresh on every tap (its
        read counter advances with each read, which is what makes it single-use), never
        kept from a previous card;
      - after a failure of the reader itself, set the chip up again on the next call (a
        reader fault is reported once, not on every later tap);
      - keep no memory of which card it read last: it never skips a card because the
        previous call read it (each call is one operation the cashier keyed in).

    A reader may keep counters for a technician (Pn532Reader's `failures` and
    `last_detail`); the terminal never reads them.
"""

import time

if hasattr(time, "ticks_ms"):  # MicroPython
    _ticks_ms = getattr(time, "ticks_ms")  # noqa: B009 (absent from CPython's stubs)
    _ticks_diff = getattr(time, "ticks_diff")  # noqa: B009
else:  # CPython has no ticks_*: derive them from the monotonic clock.

    def _ticks_ms():
        # MicroPython's time has no monotonic (scripts/lint_micropython.sh checks against it).
        return int(time.monotonic() * 1000)  # type: ignore[attr-defined, unused-ignore]

    def _ticks_diff(a, b):
        return a - b


class SystemClock:
    """Clock backed by the interpreter's own time functions (board RTC, or the host)."""

    def now_s(self):
        return int(time.time())

    def ticks_ms(self):
        return _ticks_ms()

    def ticks_diff(self, a, b):
        return _ticks_diff(a, b)

    def sleep_ms(self, ms):
        time.sleep(ms / 1000)


CLOCK_STEP_S = 5  # a gap smaller than this is left alone (network delay, rounding)


class SyncedClock:
    """A clock that follows the gateway's: the board's own plus an offset.

    The offset is taken from the time in a fresh signed answer (docs/protocol.md section
    5.5: an auth response to the request waited for, an ack that answered a record sent),
    never from a retained or replayable message, so nobody can move it who cannot answer
    the terminal's own messages. It lives in RAM: after a restart the first fresh answer
    sets it again. Everything else is the wrapped clock's.
    """

    def __init__(self, clock):
        self.clock = clock
        self.offset_s = 0
        self.corrections = 0

    def now_s(self):
        return self.clock.now_s() + self.offset_s

    def ticks_ms(self):
        return self.clock.ticks_ms()

    def ticks_diff(self, a, b):
        return self.clock.ticks_diff(a, b)

    def sleep_ms(self, ms):
        self.clock.sleep_ms(ms)

    def correct(self, gateway_s):
        """Take the gateway's time if ours is more than CLOCK_STEP_S away from it."""
        if abs(gateway_s - self.now_s()) > CLOCK_STEP_S:
            self.offset_s = gateway_s - self.clock.now_s()
            self.corrections += 1
            return True
        return False


class SystemRandom:
    def __init__(self, seed=None):
        import random

        if seed is not None and hasattr(random, "seed"):
            random.seed(seed)
        self._random = random

    def u32(self):
        return self._random.getrandbits(32)


class NullDisplay:
    """A display that remembers the last line shown (the simulator reads it back)."""

    def __init__(self):
        self.last = ""

    def show(self, text):
        self.last = text
