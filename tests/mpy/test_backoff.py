"""Reconnect delays (firmware/backoff.py): after the n-th consecutive failure the delay is drawn
from [0, min(cap, base * 2**n)], both ends included, and a success starts again from base.
Runs on CPython and real MicroPython with scripted random numbers."""

from firmware.backoff import RECONNECT_BASE_MS, RECONNECT_CAP_MS, Backoff


class ScriptedRandom:
    """u32() returns `values` in turn: a value equal to the ceiling draws the ceiling itself,
    one above it draws 0."""

    def __init__(self, values=()):
        self.values = list(values)

    def u32(self):
        return self.values.pop(0)


class CountingRandom:
    """Every 32-bit value in turn from a linear congruential generator (Numerical Recipes)."""

    def __init__(self, seed=1):
        self.state = seed

    def u32(self):
        self.state = (1664525 * self.state + 1013904223) & 0xFFFFFFFF
        return self.state


def ceiling(failures):
    return min(RECONNECT_CAP_MS, RECONNECT_BASE_MS * 2**failures)


def test_the_ceiling_doubles_from_the_base_with_each_failure_up_to_the_cap():
    ceilings = [ceiling(n) for n in range(8)]
    assert ceilings == [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000]
    backoff = Backoff(ScriptedRandom(ceilings))  # each draw is the ceiling itself
    assert [backoff.next_delay_ms() for _ in range(8)] == ceilings
    assert backoff.failures == 8


def test_the_jitter_reaches_zero_as_well():
    backoff = Backoff(ScriptedRandom([ceiling(n) + 1 for n in range(8)]))
    assert [backoff.next_delay_ms() for _ in range(8)] == [0] * 8


def test_every_delay_lies_within_zero_and_the_ceiling_of_its_failure():
    backoff = Backoff(CountingRandom())
    for failures in range(40):
        delay = backoff.next_delay_ms()
        assert 0 <= delay <= ceiling(failures), (failures, delay)


def test_the_delays_are_spread_not_all_at_the_ceiling():
    delays = set()
    for seed in range(1, 21):
        backoff = Backoff(CountingRandom(seed))
        backoff.failures = 10  # well past the cap
        delays.add(backoff.next_delay_ms())
    assert len(delays) > 10 and max(delays) <= RECONNECT_CAP_MS


def test_after_many_failures_the_delay_stays_capped():
    backoff = Backoff(ScriptedRandom([RECONNECT_CAP_MS, RECONNECT_CAP_MS + 1, 0xFFFFFFFF]))
    backoff.failures = 100
    assert backoff.next_delay_ms() == RECONNECT_CAP_MS
    assert backoff.next_delay_ms() == 0
    assert backoff.next_delay_ms() <= RECONNECT_CAP_MS


def test_reset_starts_again_from_the_base():
    just_above_base = RECONNECT_BASE_MS + 1
    backoff = Backoff(ScriptedRandom([0] * 5 + [just_above_base, just_above_base]))
    for _ in range(5):
        backoff.next_delay_ms()
    assert backoff.next_delay_ms() == just_above_base  # within the sixth failure's ceiling
    backoff.reset()
    assert backoff.failures == 0
    assert backoff.next_delay_ms() == 0  # above the base's ceiling: wraps to 0


def test_base_and_cap_can_be_chosen():
    backoff = Backoff(ScriptedRandom([10, 20, 25, 25]), base_ms=10, cap_ms=25)
    assert [backoff.next_delay_ms() for _ in range(4)] == [10, 20, 25, 25]
