"""Offline episodes: the gateway's re-check of a terminal's offline count, totals and time
(pure: no clock, no lock, no I/O).

A terminal approves an offline purchase only while its signed limits hold
(protocol/offline.py): its count and totals run over its offline records the gateway has not
acknowledged yet, and its time offline runs from the last fresh signed answer it had. The
gateway cannot see a terminal's journal, but it knows what it told the terminal, and a
terminal cannot have learnt an answer before the gateway sent it. So when a record arrives,
what the gateway had sent by then (`Told`, taken at arrival, gateway/answered.py) is at least
what its terminal knew when it made the record. From that, for a record of seq s with
auth_mode offline:

    episode  the offline records of its terminal this gateway accepted with a seq below s and
             above the highest ack it had sent when s arrived (never below the floor of an
             offline record accepted before: the episode's start only moves forward). Each
             of them was still in the terminal's journal, unacknowledged, when it decided on
             s: no ack covering it had been sent when s arrived. So the gateway counts a
             subset of what the terminal counted, never more.
    count    the episode's records + 1 above offline_txn_max: offline_count_limit
    card     the card parts of the episode's records of s's card + s's card part above
             card_offline_minor_max: offline_card_limit
    terminal the same over every card, above terminal_offline_minor_max:
             offline_terminal_limit
    time     s's time (the terminal's clock) more than offline_s_max +
             OFFLINE_CLOCK_TOLERANCE_S after the gateway last answered the terminal (an ack
             or an authorization response, its clock), when s arrived: offline_time_limit.
             The terminal's last fresh answer came no later than that.

in protocol.offline.decide's order (time, count, card, terminal), after the checks of
gateway/cards.py `offline_refusal` (kind, points, per-purchase amount). Only accepted records
count: one refused for any reason is not in the books. So an honest terminal applying
`decide` is never refused here (tests/gateway/test_offline_episodes.py checks it on random
runs), and a terminal whose key is stolen gets, per episode, no more accepted offline
records and value than its signed limits allow.

What this does not bound (docs/security.md): an ack follows every commit, so a terminal
that sends its offline records one ack apart starts a new episode each time, exactly as an
honest terminal does whose authorizations go unanswered while its records get through; and
a record's time is the terminal's word. The limits are the ones the gateway runs with now:
after a configuration is tightened, an offline record made under the looser one before its
terminal got the new one can be refused.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any, NamedTuple

from protocol import offline, txn
from protocol.reasons import (
    OFFLINE_CARD_LIMIT,
    OFFLINE_COUNT_LIMIT,
    OFFLINE_TERMINAL_LIMIT,
    OFFLINE_TIME_LIMIT,
)

# How far a terminal's clock may be from the gateway's when it writes an offline record: a
# terminal takes the gateway's time only when it is more than CLOCK_STEP_S (5 s) away, its
# clock drifts while it is offline, and whole seconds round. As much as the gateway already
# allows a record's time ahead of its own (gateway/verify.py CLOCK_SKEW_MAX_S).
OFFLINE_CLOCK_TOLERANCE_S = 300


class Told(NamedTuple):
    """What the gateway had sent a terminal when one of its records arrived."""

    acked_through: int  # the highest seq an ack to it covered
    answered_s: float  # when it last answered it (an ack or an authorization response)


class _Episode:
    """One terminal's accepted offline records above `floor`, in seq order, and their sums."""

    __slots__ = ("floor", "records", "total_minor", "by_card")

    def __init__(self) -> None:
        self.floor = 0
        self.records: deque[tuple[int, str, int]] = deque()  # (seq, card, card part)
        self.total_minor = 0
        self.by_card: dict[str, int] = {}

    def sums_above(self, seq: int, card: str) -> tuple[int, int, int]:
        """(count, terminal total, card total) of the records above `seq` (and the floor)."""
        count, total, card_total = len(self.records), self.total_minor, self.by_card.get(card, 0)
        for record_seq, record_card, value in self.records:
            if record_seq > seq:
                break
            count -= 1
            total -= value
            if record_card == card:
                card_total -= value
        return count, total, card_total

    def raise_floor(self, seq: int) -> None:
        """Forget the records at or below `seq`: an ack covering them was sent."""
        self.floor = max(self.floor, seq)
        while self.records and self.records[0][0] <= self.floor:
            _, card, value = self.records.popleft()
            self.total_minor -= value
            left = self.by_card.get(card, 0) - value
            if left:
                self.by_card[card] = left
            else:  # forgotten, or only records of card part 0 are left: they add nothing
                self.by_card.pop(card, None)


class OfflineEpisodes:
    """Per terminal, the offline records it may still have counted; `refusal` decides,
    `accept` keeps a record that was accepted. A new gateway process starts with none: any
    record arriving after a restart may have been made after the ack of everything stored
    before it (gateway/answered.py starts every terminal at its chain's head)."""

    def __init__(self, limits: Mapping[str, int]) -> None:
        self.limits = offline.check_limits(dict(limits))
        self._episodes: dict[str, _Episode] = {}

    def refusal(self, fields: Mapping[str, Any], told: Told) -> str | None:
        """The reason an offline record passes its terminal's signed limits, else None (an
        online or stand-in record: None). Changes nothing."""
        if fields["auth_mode"] != txn.AUTH_OFFLINE:
            return None
        limits = self.limits
        if (fields["time"] - told.answered_s
                > limits["offline_s_max"] + OFFLINE_CLOCK_TOLERANCE_S):
            return OFFLINE_TIME_LIMIT
        value = fields["card_value_minor"]
        episode = self._episodes.get(fields["terminal"])
        count, total, card_total = (0, 0, 0) if episode is None else episode.sums_above(
            told.acked_through, fields["card"])
        if count + 1 > limits["offline_txn_max"]:
            return OFFLINE_COUNT_LIMIT
        if card_total + value > limits["card_offline_minor_max"]:
            return OFFLINE_CARD_LIMIT
        if total + value > limits["terminal_offline_minor_max"]:
            return OFFLINE_TERMINAL_LIMIT
        return None

    def accept(self, fields: Mapping[str, Any], told: Told) -> None:
        """An offline record passed `refusal` and every other rule: it counts from now on."""
        if fields["auth_mode"] != txn.AUTH_OFFLINE:
            return
        episode = self._episodes.setdefault(fields["terminal"], _Episode())
        seq = fields["seq"]
        # Records are placed in seq order (gateway/sequencer.py): a programmer's error else.
        assert not episode.records or episode.records[-1][0] < seq, (fields["terminal"], seq)
        episode.raise_floor(told.acked_through)
        card, value = fields["card"], fields["card_value_minor"]
        episode.records.append((seq, card, value))
        episode.total_minor += value
        episode.by_card[card] = episode.by_card.get(card, 0) + value

    def episode_of(self, terminal: str) -> list[tuple[int, str, int]]:
        """(seq, card, card part) of the records a terminal's next offline record may count
        with, oldest first."""
        episode = self._episodes.get(terminal)
        return [] if episode is None else list(episode.records)
