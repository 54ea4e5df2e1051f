"""SQL of what a gateway needs to take a card on: the card's posted transactions, in order.

A gateway that has not seen a card asks the ledger for it (GET /v1/cards/<card>). Balances
alone lose what the program engine keeps beside them (points lots and their earn days,
qualifying spend towards a discount or a tier, refundable sales), so the answer also lists
the card's transactions, oldest first, for the gateway to replay through the same engine
(protocol/engine_replay.py). A card with more than ADOPT_CHANGES_MAX of them is listed as None:
the gateway then starts from the balances (protocol/engine_adopt.py).
"""

from __future__ import annotations

from typing import Any

from ledger.db import Session
from ledger.limits import ADOPT_CHANGES_MAX

ADOPT_FIELDS = ("txn_id", "kind", "time", "gateway_id", "amount_minor", "card_value_minor",
                "bonus_minor", "points", "ref_txn_id", "program", "discount_minor",
                "redeem_points", "reward", "grants", "auth", "card_op")
"""One transaction of the card as a replay reads it (the card feed's terms of the same name)."""


def card_transactions(session: Session, card: str) -> list[dict[str, Any]] | None:
    """The card's posted transactions in the order of their terminal time, then of posting;
    None when there are more than ADOPT_CHANGES_MAX."""
    rows = session.fetch(
        "SELECT t.txn_id, t.kind, t.time, c.gateway_id, t.amount_minor, t.card_value_minor,"
        " t.bonus_minor, t.points, t.ref_txn_id, t.program, t.discount_minor, t.redeem_points,"
        " t.reward, t.grants, t.auth, t.card_op"
        " FROM card_changes c JOIN transactions t ON t.txn_id = c.txn_id"
        f" WHERE c.card = ? ORDER BY t.time, c.id LIMIT {ADOPT_CHANGES_MAX + 1}", (card,))
    if len(rows) > ADOPT_CHANGES_MAX:
        return None
    return [dict(zip(ADOPT_FIELDS, row, strict=True)) for row in rows]
