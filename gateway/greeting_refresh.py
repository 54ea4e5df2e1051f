"""Look a known card up again at the ledger, off every counter's path, so its greeting and
birthday follow the customer's record.

A store learns a card's greeting (first name) and birthday from the ledger's answer to its
first look-up of the card (gateway/card_directory.py, `enrol.take_greeting`), which it asks
only for a card it does not know. Without more, a card this store knew before its customer
enrolled at another store, or gave a birthday, or one it knew before a restart (greetings are
memory only), would never be greeted here nor get its birthday-week offers. So after each
authorization of a card whose last look-up is older than GREETING_REFRESH_S (or never, in
this run), the card is queued for this stage, which asks the ledger again (GET
/v1/cards/<card>, the gateway's own look-up) and keeps what the answer says. The answer
serves the card's *next* sale: the one just authorized was priced with what was known then
(named rule GREETING_LEARNED_FOR_NEXT_SALE: a counter never waits for this look-up).

The queue is bounded (REFRESH_QUEUE_MAX cards); a card already queued is not queued twice,
and a card that finds the queue full is counted ("greeting_refresh.dropped") and asked
again at a later tap. A ledger that does not answer changes nothing (the card is due again
at its next tap). A thread that dies takes the gateway down (gateway/stage.py).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from gateway.enrol import Greetings
from gateway.stage import OnDeath, Stage, exit_process
from gateway.stats import Stats

REFRESH_QUEUE_MAX = 1_000
"""Cards waiting to be looked up again; more are dropped (counted) until it drains."""

Lookup = Callable[[str], "dict[str, Any] | None"]
"""The gateway's card look-up that keeps the greeting (`GatewayService._ledger_card`)."""


class GreetingRefresh(Stage[str]):
    """One thread that asks the ledger about the cards queued by `due`, one at a time."""

    name = "gateway-greeting-refresh"

    def __init__(self, greetings: Greetings, lookup: Lookup, stats: Stats,
                 known: Callable[[str], bool], inbox: queue.Queue[str | None] | None = None,
                 on_death: OnDeath = exit_process) -> None:
        """`known`: is the card in this store's card book (a card the ledger does not know
        is asked by the card directory, which remembers the answer, not here)."""
        super().__init__(inbox if inbox is not None else queue.Queue(REFRESH_QUEUE_MAX),
                         on_death)
        self.greetings = greetings
        self.lookup = lookup
        self.stats = stats
        self.known = known
        self._queued: set[str] = set()
        self._lock = threading.Lock()  # guards _queued; never held over a look-up

    def tapped(self, card: str) -> None:
        """After an authorization of `card`: queue it if its look-up is due (never blocks)."""
        if not self.known(card) or not self.greetings.lookup_due(card):
            return
        with self._lock:
            if card in self._queued:
                return
            try:
                self.inbox.put_nowait(card)
            except queue.Full:
                self.stats.add("greeting_refresh.dropped")
                return
            self._queued.add(card)

    def stop(self, timeout_s: float) -> None:
        """Finish what is queued, then end the thread (the queue takes the end mark even
        when full: it waits for room)."""
        self.inbox.put(None)
        self.join(timeout_s)

    def handle(self, item: str) -> None:
        with self._lock:
            self._queued.discard(item)
        if not self.greetings.lookup_due(item):  # looked up meanwhile (its first look-up)
            return
        self.stats.add("greeting_refresh.asked")
        self.lookup(item)  # I/O, no lock held; keeps the greeting and notes the look-up
