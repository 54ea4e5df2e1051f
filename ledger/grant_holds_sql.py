"""SQL of the targeted offers a hold takes a use of (issue 14: one card, every store).

A card's grant of a targeted offer (ledger/offers.py issues it; the card's kept engine
state counts its uses left, ledger/engine_sql.py) is spent by the purchases that get the
offer. Each store prices a sale on its own copy of the card, which learns another store's
sale from the card feed a few seconds later: without a check at the ledger, two stores
could each give a card's last use. A store's hold names the offers its sale gets
("grants"); the ledger places it, under the card's lock (`hold_sql.place`), only while each
has a use that no open hold has taken (hold_rules.check_grants), and keeps one grant_holds
row per offer. When the purchase posts, its hold is posted and the engine state spends the
use in the same transaction; a voided or expired hold gives it back.
"""

from __future__ import annotations

from ledger.db import Session
from ledger.hold_rules import STATUS_OPEN, HoldRequest
from ledger.schema import GRANT_HOLD_COLUMNS

_HELD_SQL = (
    "SELECT g.offer, COUNT(*) FROM grant_holds g JOIN ("
    " SELECT hold_id, status, expires_at FROM holds UNION ALL"
    " SELECT hold_id, status, expires_at FROM point_holds) h ON h.hold_id = g.hold_id"
    " WHERE g.card = ? AND h.status = ? AND h.expires_at > ? GROUP BY g.offer")


def held(session: Session, card: str, now: int) -> dict[str, int]:
    """Uses of the card's offers that open, unexpired holds have taken, by offer."""
    return {str(offer): int(count)
            for offer, count in session.fetch(_HELD_SQL, (card, STATUS_OPEN, now))}


def note_hold(session: Session, request: HoldRequest) -> None:
    """With the placed hold, in its transaction: the offers it takes a use of."""
    if request.grants:
        session.bulk_insert("grant_holds", GRANT_HOLD_COLUMNS,
                            [(request.hold_id, request.card, offer)
                             for offer in request.grants])
