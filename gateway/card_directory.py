"""Cards this gateway has not seen, asked of the ledger, off the card lock.

A card registered centrally (personalized at a technician's desk, or issued at another
store) is unknown here until its first tap. The stages ask the ledger about it *before*
they take the card book's lock (`find`), so a slow or absent ledger delays only the
terminal that tapped that card, never the authorizations and records of other cards; the
card book then adopts what the ledger said (`CardBook.adopt`). A card the ledger does not
know, or a question the ledger did not answer, is remembered for NEGATIVE_TTL_S (at most
NEGATIVE_MAX cards, the oldest forgotten first), so a card tapped again and again costs the
ledger one question, and a hanging ledger one timeout, per that time.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

NEGATIVE_TTL_S = 5.0
NEGATIVE_MAX = 10_000

Lookup = Callable[[str], "dict[str, Any] | None"]  # the ledger's card, or None


class CardDirectory:
    def __init__(self, lookup: Lookup, clock: Callable[[], float] = time.monotonic) -> None:
        self.lookup = lookup
        self.clock = clock
        self._unknown: OrderedDict[str, float] = OrderedDict()  # card -> asked again after
        self._lock = threading.Lock()  # guards _unknown only; never held over a look-up
        self.asked = 0
        self.remembered_unknown = 0

    def find(self, card: str) -> dict[str, Any] | None:
        """The ledger's answer for `card`, or None (unknown, or the ledger did not answer)."""
        now = self.clock()
        with self._lock:
            until = self._unknown.get(card)
            if until is not None and until > now:
                self.remembered_unknown += 1
                return None
            self._unknown.pop(card, None)
        self.asked += 1
        found = self.lookup(card)  # I/O: no lock held
        if found is None:
            with self._lock:
                self._unknown[card] = now + NEGATIVE_TTL_S
                while len(self._unknown) > NEGATIVE_MAX:
                    self._unknown.popitem(last=False)
        return found
