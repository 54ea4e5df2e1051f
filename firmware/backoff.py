"""Reconnect delays: capped exponential backoff with full jitter.

After the n-th consecutive failure the next attempt waits a random time in
[0, min(CAP, BASE * 2**n)]: terminals that lost the same broker at the same moment do not all
come back at the same moment, and a long outage costs one attempt per CAP at most.
"""

try:
    from micropython import const
except ImportError:

    def const(value):
        return value


RECONNECT_BASE_MS = const(500)
RECONNECT_CAP_MS = const(30000)


class Backoff:
    def __init__(self, random, base_ms=RECONNECT_BASE_MS, cap_ms=RECONNECT_CAP_MS):
        self.random = random
        self.base_ms = base_ms
        self.cap_ms = cap_ms
        self.failures = 0

    def next_delay_ms(self):
        ceiling = self.cap_ms
        if self.failures < 16:
            ceiling = min(self.cap_ms, self.base_ms << self.failures)
        self.failures += 1
        return self.random.u32() % (ceiling + 1)

    def reset(self):
        self.failures = 0
