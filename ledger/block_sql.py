"""SQL of card blocks: block or unblock a card centrally, read its state, feed the changes.

A block is a row of `card_blocks` (`ledger.schema`), never changed or deleted: a card's latest
row is its state (blocked or not, why, when, by which login), every row is the audit trail,
and the rows' ids are the cursor of the feed the gateways poll (GET /v1/blocks?since=ID).
Blocking locks the card's row as a hold does (`hold_sql.place`), so a hold placed at the
same moment is either before the block (and posts) or after it (and is refused
``card_blocked``); on SQLite the one writer orders them.
"""

from __future__ import annotations

from typing import Any

from ledger.db import Session
from ledger.errors import NotFound
from ledger.limits import BLOCKS_PAGE_MAX, LAST_STORES_MAX
from ledger.schema import CARD_BLOCK_COLUMNS

BLOCK_FIELDS = ("id", "card", "blocked", "reason", "at", "login")
"""One block change as the API shows it (``blocked`` a boolean)."""


def change(database: Session, card: str, blocked: bool, reason: str, login: str,
           now: int) -> tuple[dict[str, Any], bool]:
    """Block or unblock a card; its state afterwards and whether this changed it (blocking a
    blocked card, or unblocking one that is not, records nothing)."""
    if not database.fetch(f"SELECT card FROM cards WHERE card = ?{database.lock_rows}", (card,)):
        raise NotFound("card_unknown", f"the ledger has no card {card[:64]!r}")
    current = latest(database, card)
    if (current is not None and current["blocked"]) == blocked:
        return state(current), False
    database.bulk_insert("card_blocks", CARD_BLOCK_COLUMNS,
                         [(card, int(blocked), reason, now, login)])
    return state(latest(database, card)), True


def latest(database: Session, card: str) -> dict[str, Any] | None:
    """The card's latest block change, or None if it was never blocked."""
    rows = database.fetch(
        "SELECT id, card, blocked, reason, at, login FROM card_blocks WHERE card = ?"
        " ORDER BY id DESC LIMIT 1", (card,))
    return _change(rows[0]) if rows else None


def is_blocked(database: Session, card: str) -> bool:
    """Whether the card is blocked now."""
    current = latest(database, card)
    return current is not None and bool(current["blocked"])


def state(current: dict[str, Any] | None) -> dict[str, Any]:
    """{"blocked": bool, "block": the latest change or None} as GET /v1/cards/<card> shows."""
    return {"blocked": bool(current and current["blocked"]), "block": current}


def since(database: Session, cursor: int) -> dict[str, Any]:
    """The feed: block changes after `cursor`, oldest first, at most BLOCKS_PAGE_MAX, and the
    cursor to ask from next (`cursor` again when there is nothing new)."""
    rows = database.fetch(
        "SELECT id, card, blocked, reason, at, login FROM card_blocks WHERE id > ?"
        f" ORDER BY id LIMIT {int(BLOCKS_PAGE_MAX)}", (cursor,))
    changes = [_change(row) for row in rows]
    return {"blocks": changes, "next": changes[-1]["id"] if changes else cursor}


def last_stores(database: Session, card: str) -> list[dict[str, Any]]:
    """Where the card was last used, as far as settled batches tell: per gateway, terminal
    and merchant the time of its latest transaction, most recent first."""
    rows = database.fetch(
        "SELECT b.gateway_id, t.terminal, t.merchant, MAX(t.time) FROM transactions t"
        " JOIN batches b ON b.batch_id = t.batch_id WHERE t.card = ?"
        " GROUP BY b.gateway_id, t.terminal, t.merchant ORDER BY MAX(t.time) DESC,"
        f" t.terminal LIMIT {int(LAST_STORES_MAX)}", (card,))
    return [{"gateway": gateway, "terminal": terminal, "merchant": merchant, "last_time": at}
            for gateway, terminal, merchant, at in rows]


def _change(row: tuple[Any, ...]) -> dict[str, Any]:
    values = dict(zip(BLOCK_FIELDS, row, strict=True))
    values["blocked"] = bool(values["blocked"])
    return values
