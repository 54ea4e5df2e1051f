"""SQL of the cards' SUN read counters: the ledger is the authority on which taps were used.

Each NTAG 424 DNA tap carries a read counter that the card raises by one (docs/cards.md). A
store's gateway refuses a tap whose counter is not above the highest it accepted for the card
(gateway/card_auth.py), but a gateway knows only its own taps: a SUN read accepted at one store
could be replayed (by a clone, or a skimmed URL) at another. So the ledger keeps, per card, the
highest counter any store had accepted (`cards.sun_counter`), and

    a hold carrying a counter    is refused card_replayed unless the counter is above it
                                 (`ledger.hold_rules.check_newer_tap`), and raises it in the
                                 hold's own database transaction
    a posted transaction         carrying a counter raises it in the batch's transaction
                                 (never lowers it: an offline sale may arrive after a later tap)

and the card feed and GET /v1/cards/<card> carry counters to every gateway, which raise their
own (gateway/card_feed.py, gateway/card_states.py). Only under the card's row lock (the hold's
and the batch's), so two raises never interleave.
"""

from __future__ import annotations

from collections.abc import Iterable

from ledger.db import Session


def highest(database: Session, card: str) -> int | None:
    """The highest SUN read counter accepted for the card; None: none yet (or no such card)."""
    rows = database.fetch("SELECT sun_counter FROM cards WHERE card = ?", (card,))
    return None if not rows or rows[0][0] is None else int(rows[0][0])


def raise_to(database: Session, counters: Iterable[tuple[str, int]]) -> None:
    """Raise each card's highest counter to the one given, where it is higher (or unset).

    One statement per card: a batch carries counters only for the cards its taps named."""
    for card, counter in sorted(counters):
        database.execute(
            "UPDATE cards SET sun_counter = ? WHERE card = ?"
            " AND (sun_counter IS NULL OR sun_counter < ?)",
            (counter, card, counter),
        )


def highest_per_card(counters: Iterable[tuple[str, int | None]]) -> dict[str, int]:
    """(card, counter or None) pairs -> each card's highest counter (cards with none left out)."""
    top: dict[str, int] = {}
    for card, counter in counters:
        if counter is not None and counter > top.get(card, -1):
            top[card] = counter
    return top
