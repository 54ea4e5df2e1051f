"""A known card's greeting and birthday are asked of the ledger again once its last look-up
is GREETING_REFRESH_S old (gateway/greeting_refresh.py): queued after a tap, at most once,
never for a card the store does not know, dropped (counted) when the queue is full, and
kept from the ledger's answer for the next sale."""

from __future__ import annotations

import queue
from typing import Any

from gateway.enrol import GREETING_REFRESH_S, Greetings, take_greeting
from gateway.greeting_refresh import GreetingRefresh
from gateway.stats import Stats

CARD, OTHER, STRANGER = "04aa", "04bb", "04cc"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


class Ledger:
    """The gateway's look-up (`_ledger_card`): the ledger's answer, greeting kept."""

    def __init__(self, greetings: Greetings) -> None:
        self.greetings = greetings
        self.answers: dict[str, dict[str, Any]] = {}
        self.asked: list[str] = []

    def __call__(self, card: str) -> dict[str, Any] | None:
        self.asked.append(card)
        return take_greeting(self.greetings, card, self.answers.get(card))


def refresher(size: int = 10) -> tuple[Clock, Greetings, Ledger, GreetingRefresh, Stats]:
    clock = Clock()
    greetings = Greetings(clock=clock)
    ledger = Ledger(greetings)
    stats = Stats()
    known = {CARD, OTHER}
    refresh = GreetingRefresh(greetings, ledger, stats, lambda card: card in known,
                              inbox=queue.Queue(size))
    return clock, greetings, ledger, refresh, stats


def drain(refresh: GreetingRefresh) -> None:
    while not refresh.inbox.empty():
        item = refresh.inbox.get_nowait()
        assert item is not None
        refresh.handle(item)


def test_a_card_looked_up_is_not_due_until_the_refresh_time_has_passed() -> None:
    clock = Clock()
    greetings = Greetings(clock=clock)
    assert greetings.lookup_due(CARD)  # never in this run (a restart forgets)
    take_greeting(greetings, CARD, {"program": "gift", "greeting": "Ana"})
    assert not greetings.lookup_due(CARD)
    clock.now += GREETING_REFRESH_S - 1
    assert not greetings.lookup_due(CARD)
    clock.now += 1
    assert greetings.lookup_due(CARD)
    # An answer the ledger did not give (None: unknown, or out of reach) is no look-up.
    take_greeting(greetings, OTHER, None)
    assert greetings.lookup_due(OTHER)


def test_a_known_card_learns_a_birthday_recorded_since_its_last_look_up() -> None:
    """Looked up with no customer; the customer's birthday recorded elsewhere; after the
    refresh time its next tap queues it, the look-up keeps greeting and birthday, and the
    taps after that queue nothing."""
    clock, greetings, ledger, refresh, _ = refresher()
    ledger.answers[CARD] = {"program": "loyalty"}
    ledger(CARD)  # the card's first look-up at this store (the card directory's)
    ledger.answers[CARD] = {"program": "loyalty", "greeting": "Ana", "birthday": "12-06"}
    refresh.tapped(CARD)
    assert refresh.inbox.empty()  # looked up just now
    clock.now += GREETING_REFRESH_S
    refresh.tapped(CARD)
    refresh.tapped(CARD)  # queued once
    assert refresh.inbox.qsize() == 1
    drain(refresh)
    assert ledger.asked == [CARD, CARD]
    assert (greetings.get(CARD), greetings.birthday(CARD)) == ("Ana", "12-06")
    refresh.tapped(CARD)
    assert refresh.inbox.empty()
    # The customer's record loses the birthday: the next refresh forgets it here too.
    ledger.answers[CARD] = {"program": "loyalty", "greeting": "Ana"}
    clock.now += GREETING_REFRESH_S
    refresh.tapped(CARD)
    drain(refresh)
    assert (greetings.get(CARD), greetings.birthday(CARD)) == ("Ana", None)


def test_a_card_the_store_does_not_know_is_never_queued() -> None:
    _, _, ledger, refresh, _ = refresher()
    refresh.tapped(STRANGER)
    assert refresh.inbox.empty() and ledger.asked == []


def test_a_full_queue_drops_the_card_counted_and_takes_it_at_a_later_tap() -> None:
    _, _, ledger, refresh, stats = refresher(size=1)
    refresh.tapped(CARD)
    refresh.tapped(OTHER)
    assert stats.snapshot().get("greeting_refresh.dropped") == 1
    drain(refresh)
    refresh.tapped(OTHER)
    drain(refresh)
    assert ledger.asked == [CARD, OTHER]


def test_a_ledger_out_of_reach_leaves_the_card_due() -> None:
    _, greetings, ledger, refresh, _ = refresher()
    refresh.tapped(CARD)
    drain(refresh)  # no answer (None)
    assert ledger.asked == [CARD] and greetings.lookup_due(CARD)
