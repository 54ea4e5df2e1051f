"""Overdrafts: a card spent below zero, seen at the center and blocked for every store.

A card's value goes below zero only by a sale that happened without the ledger's hold: an
offline sale (a terminal on its own, within its signed limits) or a stand-in approval (a
gateway that could not reach the ledger), made on a balance another store had already
spent. Online sales cannot: their holds check the value every store sees (issue 14 item 5).

`block_overdrawn` runs in the posting batch's own database transaction: every card that one
of the batch's offline or stand-in sales left below zero and that is not blocked yet is
blocked (a `card_blocks` row by login OVERDRAFT_LOGIN, with the value and the batch in its
reason) and alarmed. The block reaches every store through the block feed (GET /v1/blocks),
so the card is declined online at once and offline within each store's poll; a person
unblocks it (`tilltap card unblock`) once it is settled with the customer.

`exposure` is the report (GET /v1/reports/exposure): each card below zero, and per store
(gateway) and terminal the offline and stand-in card value taken on those cards.
"""

from __future__ import annotations

from typing import Any

from ledger import block_sql
from ledger.db import Session
from ledger.model import Txn
from ledger.queries import bounded_fetch
from protocol.accounts import CARD_VALUE

OVERDRAFT_LOGIN = "ledger"
"""Who the audit trail says blocked an overdrawn card: the ledger itself."""
UNHELD_AUTH = ("offline", "stand_in")
"""Sales made without a ledger hold: the only ones that can take a card below zero."""
OVERDRAFT_REASON = "overdraft"

_VALUES = f"""
    SELECT owner, CAST(SUM(amount_minor) AS BIGINT) FROM entries
    WHERE account_kind = '{CARD_VALUE}' AND {{match}} GROUP BY owner"""


def block_overdrawn(session: Session, batch_id: str, txns: list[Txn],
                    now: int) -> list[tuple[str, int]]:
    """Block the cards this batch's unheld sales left below zero; [(card, value_minor)]."""
    cards = sorted({txn.card for txn in txns if txn.auth in UNHELD_AUTH})
    if not cards:
        return []
    blocked = []
    for card, total in sorted(session.fetch_in(_VALUES, "owner", cards)):
        value_minor = -int(total)  # liabilities are credits: the holder's value is -sum
        if value_minor >= 0 or block_sql.is_blocked(session, card):
            continue
        reason = f"{OVERDRAFT_REASON}: value {value_minor} after batch {batch_id[:64]}"
        block_sql.change(session, card, True, reason, OVERDRAFT_LOGIN, now)
        session.execute("INSERT INTO alarms (at, reason, detail) VALUES (?, ?, ?)",
                        (now, OVERDRAFT_REASON, f"card {card[:64]} blocked: {reason}"))
        blocked.append((card, value_minor))
    return blocked


EXPOSURE_CARD_FIELDS = ("card", "currency", "value_minor", "blocked")
EXPOSURE_TERMINAL_FIELDS = ("gateway_id", "merchant", "terminal", "card", "unheld_minor")


def exposure(session: Session) -> dict[str, Any]:
    """Cards below zero now, and who sold on them without a hold: {"cards": [...],
    "sales": [...] (per store, terminal and card), "by_gateway": {gateway: minor}}."""
    cards = bounded_fetch(
        session,
        f"""SELECT c.card, c.currency, CAST(-SUM(e.amount_minor) AS BIGINT)
            FROM cards c JOIN entries e ON e.owner = c.card AND e.account_kind = '{CARD_VALUE}'
            GROUP BY c.card, c.currency HAVING SUM(e.amount_minor) > 0 ORDER BY c.card""",
        ())
    rows = [dict(zip(EXPOSURE_CARD_FIELDS,
                     (card, currency, value, block_sql.is_blocked(session, card)), strict=True))
            for card, currency, value in cards]
    sales: list[dict[str, Any]] = []
    by_gateway: dict[str, int] = {}
    if rows:
        found = session.fetch_in(
            """SELECT b.gateway_id, t.merchant, t.terminal, t.card,
                   CAST(SUM(t.card_value_minor) AS BIGINT)
               FROM transactions t JOIN batches b ON b.batch_id = t.batch_id
               WHERE t.kind = 'purchase' AND t.auth IN ('offline', 'stand_in') AND {match}
               GROUP BY b.gateway_id, t.merchant, t.terminal, t.card""",
            "t.card", [row["card"] for row in rows])
        for row in sorted(found):
            sale = dict(zip(EXPOSURE_TERMINAL_FIELDS, row, strict=True))
            sales.append(sale)
            by_gateway[sale["gateway_id"]] = (by_gateway.get(sale["gateway_id"], 0)
                                              + sale["unheld_minor"])
    return {"cards": rows, "sales": sales, "by_gateway": by_gateway}
