"""What the gateway has sent each terminal: the highest seq its acks covered, and when it last
answered it (an ack or an authorization response).

The ack stage (gateway/acks.py) and the authorization stage (gateway/authorize.py) note each
answer here before they send it; the verify stage reads it as each record arrives and the
record carries it (`Verified.told`) to the offline re-check (gateway/offline_episodes.py).
Noted before it is sent, read when the record arrives: a record never carries less than its
terminal could have known when it made it.

Kept in memory only. A new gateway process cannot know which answers of the one before
reached their terminals, so it takes the reading that never holds against a terminal what
it may have been told: every terminal has had the ack through its chain's head (stored), and
an answer when the process started.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from gateway.offline_episodes import Told


class Answered:
    """Thread-safe: written by the ack and authorization stages, read by the verify stage.
    Holds one entry per terminal answered (only registered terminals are answered)."""

    def __init__(self, heads: Mapping[str, int], start_s: float) -> None:
        """`heads`: each terminal's highest stored seq; `start_s`: now, the gateway's clock."""
        self._lock = threading.Lock()
        self._start_s = start_s
        self._told = {terminal: Told(seq, start_s) for terminal, seq in heads.items()}

    def acked(self, terminal: str, acked_through: int, at_s: float) -> None:
        """An ack through `acked_through`, about to be sent at `at_s`."""
        with self._lock:
            before = self._told.get(terminal, Told(0, self._start_s))
            self._told[terminal] = Told(max(before.acked_through, acked_through),
                                        max(before.answered_s, at_s))

    def replied(self, terminal: str, at_s: float) -> None:
        """An authorization response, about to be sent at `at_s`."""
        with self._lock:
            before = self._told.get(terminal, Told(0, self._start_s))
            self._told[terminal] = Told(before.acked_through, max(before.answered_s, at_s))

    def told(self, terminal: str) -> Told:
        with self._lock:
            return self._told.get(terminal, Told(0, self._start_s))
