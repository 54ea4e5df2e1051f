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
    Reader   read_card(timeout_ms) -> card id (str) or None when no card answered in time
    Display  show(text) -> None: the line the cashier reads

Journal storage is `firmware.storage` (read_all / append / replace).
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
