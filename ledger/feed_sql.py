"""SQL of the card feed: every posted transaction, in an order no later commit can break.

Each transaction a batch posts adds a `card_changes` row in the batch's own database
transaction (`note`). Gateways read the feed (GET /v1/changes?after=CURSOR) to learn what
other stores did with the cards they serve, and apply it to their card states
(gateway/card_feed.py): value, points, tier, discount and refundable sales carried across
stores within seconds (issue 14 item 4).

Why not simply "rows with id > cursor": batches post in parallel on PostgreSQL (row locks per
card, no global lock), so a row with a lower id can commit after one with a higher id, and a
reader that already moved past it would never see it. Each row therefore keeps the id of the
database transaction that wrote it (`xid`), and the feed serves, in (xid, id) order, only
rows whose xid is below the oldest transaction still running (`pg_snapshot_xmin`): every
writer below that line has ended, so nothing can appear behind the cursor later. A posting
still running holds the feed back at most until it commits. SQLite has one writer, so its
rows commit in id order and the id alone is the cursor (xid is reported as 0).

A cursor is (xid, id), written "XID.ID" on the wire; "0.0" is the start, "end" asks for no
changes and the cursor after the last one (where a new gateway starts).

A gateway that takes a card on (GET /v1/cards/<card>) gets the balances that include some
changes of the card and not others; `card_position` says which: every change with an xid
below `horizon`, or an id up to `through`, or named in `known`, is already in them.
"""

from __future__ import annotations

from typing import Any

from ledger.db import Session
from ledger.limits import CHANGES_PAGE_MAX
from ledger.schema import CARD_CHANGE_COLUMNS

CHANGE_FIELDS = ("xid", "id", "gateway_id", "txn_id", "card", "terminal", "merchant", "kind",
                 "amount_minor", "card_value_minor", "bonus_minor", "points", "ref_txn_id",
                 "program", "time", "discount_minor", "redeem_points", "auth", "sun_counter",
                 "replaced_by", "reward")
"""One change as the feed shows it: where it stands in the feed, who posted it, and the
posted transaction's terms, with the SUN read counter of its tap (null without one): a
gateway raises its own highest counter for the card to it, so that tap is refused there
too (gateway/card_feed.py). A card replacement (kind "transfer", ledger/replace_sql.py) is
two changes of one transaction, one per card (``card`` the old card, then the new), each
with ``replaced_by`` the new card; null for every other change. ``reward``: the item a reward
redemption handed over (null on every other change), which the engine replays as one."""

_HORIZON = {
    "postgresql": "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint",
    "sqlite": "SELECT COALESCE(MAX(id), 0) + 1 FROM card_changes",
}
_XID = {"postgresql": "c.xid", "sqlite": "0"}
_AFTER = {
    "postgresql": "(c.xid > ? OR (c.xid = ? AND c.id > ?)) AND c.xid < ?",
    "sqlite": "c.id > ? AND c.id < ?",
}
_ORDER = {"postgresql": "c.xid, c.id", "sqlite": "c.id"}


def note(database: Session, gateway_id: str, txns: list[tuple[str, str]]) -> None:
    """Add the feed's rows for (txn_id, card) pairs a batch of `gateway_id` posts."""
    database.bulk_insert("card_changes", CARD_CHANGE_COLUMNS,
                         ((txn_id, card, gateway_id) for txn_id, card in txns))


def after(database: Session, xid: int, change_id: int,
          limit: int = CHANGES_PAGE_MAX) -> dict[str, Any]:
    """The changes after cursor (xid, change_id), oldest first, at most `limit`:
    {"changes": [...], "next": "XID.ID"} (the same cursor when nothing is new)."""
    dialect = database.dialect
    horizon = database.fetch(_HORIZON[dialect])[0][0]
    params: tuple[int, ...] = ((xid, xid, change_id, horizon) if dialect == "postgresql"
                               else (change_id, horizon))
    rows = database.fetch(
        f"SELECT {_XID[dialect]}, c.id, c.gateway_id, t.txn_id, c.card, t.terminal,"
        " t.merchant, t.kind, t.amount_minor, t.card_value_minor, t.bonus_minor, t.points,"
        " t.ref_txn_id, t.program, t.time, t.discount_minor, t.redeem_points, t.auth,"
        " t.sun_counter, r.new_card, t.reward"
        " FROM card_changes c JOIN transactions t ON t.txn_id = c.txn_id"
        " LEFT JOIN card_replacements r ON r.txn_id = t.txn_id"
        f" WHERE {_AFTER[dialect]} ORDER BY {_ORDER[dialect]} LIMIT {int(limit)}", params)
    changes = [dict(zip(CHANGE_FIELDS, row, strict=True)) for row in rows]
    last = changes[-1] if changes else {"xid": xid, "id": change_id}
    return {"changes": changes, "next": cursor_text(int(last["xid"]), int(last["id"]))}


def end(database: Session) -> dict[str, Any]:
    """No changes, and the cursor after the last one served: where a new reader starts."""
    dialect = database.dialect
    horizon = database.fetch(_HORIZON[dialect])[0][0]
    if dialect == "postgresql":
        rows = database.fetch("SELECT xid, id FROM card_changes WHERE xid < ?"
                              " ORDER BY xid DESC, id DESC LIMIT 1", (horizon,))
    else:
        rows = database.fetch("SELECT 0, COALESCE(MAX(id), 0) FROM card_changes")
    xid, change_id = rows[0] if rows else (0, 0)
    return {"changes": [], "next": cursor_text(int(xid), int(change_id))}


def card_position(database: Session, card: str) -> dict[str, Any]:
    """Which of a card's changes the balances read in this same session (one snapshot)
    include: {"horizon": XID, "through": ID, "known": [txn_id, ...]}: a change is included
    if its xid is below horizon, or its id is at most through, or it is named in known."""
    dialect = database.dialect
    horizon = int(database.fetch(_HORIZON[dialect])[0][0])
    if dialect != "postgresql":
        return {"horizon": 0, "through": horizon - 1, "known": []}
    rows = database.fetch("SELECT txn_id FROM card_changes WHERE card = ? AND xid >= ?",
                          (card, horizon))
    return {"horizon": horizon, "through": 0, "known": sorted(row[0] for row in rows)}


def cursor_text(xid: int, change_id: int) -> str:
    return f"{xid}.{change_id}"


def parse_cursor(text: str) -> tuple[int, int] | None:
    """(xid, id) from "XID.ID", or None if it is not one."""
    xid, dot, change_id = text.partition(".")
    if not dot or not xid.isdigit() or not change_id.isdigit() or len(text) > 40:
        return None
    return int(xid), int(change_id)
