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

Filtered for one gateway (GET /v1/changes?after=..&for=GATEWAY, what gateways read): only
the changes other gateways posted of the cards it serves, that is the cards it posted
transactions of (its own card_changes rows) and those it took on (`serve`: a look-up, a
replacement's new card, or the list a gateway registers once when it first reads filtered).
Without it every gateway would be sent every change of the chain, each read costing the
ledger stores x changes; filtered, a read of a store whose cards nobody else used is empty.
The cursor still moves over the changes left out: a page shorter than its limit ends at the
last change below the horizon, so a store is never sent them later.
"""

from __future__ import annotations

from typing import Any

from ledger.db import Session
from ledger.limits import CHANGES_PAGE_MAX
from ledger.schema import CARD_CHANGE_COLUMNS, SERVED_CARD_COLUMNS

CHANGE_FIELDS = ("xid", "id", "gateway_id", "txn_id", "card", "terminal", "merchant", "kind",
                 "amount_minor", "card_value_minor", "bonus_minor", "points", "ref_txn_id",
                 "program", "time", "discount_minor", "redeem_points", "auth", "sun_counter",
                 "replaced_by", "reward", "grants", "card_op")
"""One change as the feed shows it: where it stands in the feed, who posted it, and the
posted transaction's terms, with the SUN read counter of its tap (null without one): a
gateway raises its own highest counter for the card to it, so that tap is refused there
too (gateway/card_feed.py). A card replacement (kind "transfer", ledger/replace_sql.py) is
two changes of one transaction, one per card (``card`` the old card, then the new), each
with ``replaced_by`` the new card; null for every other change. ``reward``: the item a reward
redemption handed over (null on every other change), which the engine replays as one.
``grants``: a purchase's targeted offers as its gateway priced it (JSON text, null when
not sent), the only ones a replay takes a use of.
``card_op``: the terms of the ledger's own operations with no money (kinds "grant" and
"rank", ledger/card_ops_sql.py), applied by every gateway serving the card."""

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
_ORDER_DESC = {"postgresql": "c.xid DESC, c.id DESC", "sqlite": "c.id DESC"}


def note(database: Session, gateway_id: str, txns: list[tuple[str, str]]) -> None:
    """Add the feed's rows for (txn_id, card) pairs a batch of `gateway_id` posts."""
    database.bulk_insert("card_changes", CARD_CHANGE_COLUMNS,
                         ((txn_id, card, gateway_id) for txn_id, card in txns))


_SERVED = (" AND c.gateway_id <> ? AND (EXISTS (SELECT 1 FROM served_cards s"
           " WHERE s.gateway_id = ? AND s.card = c.card) OR EXISTS (SELECT 1 FROM"
           " card_changes o WHERE o.card = c.card AND o.gateway_id = ?))")
"""Changes another gateway posted, of a card this one serves (`after`'s `served_by`)."""


def after(database: Session, xid: int, change_id: int, limit: int = CHANGES_PAGE_MAX,
          served_by: str | None = None) -> dict[str, Any]:
    """The changes after cursor (xid, change_id), oldest first, at most `limit`:
    {"changes": [...], "next": "XID.ID"} (the same cursor when nothing is new).
    `served_by`: only those of the cards that gateway serves (see the module's words)."""
    dialect = database.dialect
    horizon = database.fetch(_HORIZON[dialect])[0][0]
    params: tuple[Any, ...] = ((xid, xid, change_id, horizon) if dialect == "postgresql"
                               else (change_id, horizon))
    served = "" if served_by is None else _SERVED
    rows = database.fetch(
        f"SELECT {_XID[dialect]}, c.id, c.gateway_id, t.txn_id, c.card, t.terminal,"
        " t.merchant, t.kind, t.amount_minor, t.card_value_minor, t.bonus_minor, t.points,"
        " t.ref_txn_id, t.program, t.time, t.discount_minor, t.redeem_points, t.auth,"
        " t.sun_counter, r.new_card, t.reward, t.grants, t.card_op"
        " FROM card_changes c JOIN transactions t ON t.txn_id = c.txn_id"
        " LEFT JOIN card_replacements r ON r.txn_id = t.txn_id"
        f" WHERE {_AFTER[dialect]}{served} ORDER BY {_ORDER[dialect]} LIMIT {int(limit)}",
        params if served_by is None else (*params, served_by, served_by, served_by))
    changes = [dict(zip(CHANGE_FIELDS, row, strict=True)) for row in rows]
    if changes:
        last: tuple[int, int] = (int(changes[-1]["xid"]), int(changes[-1]["id"]))
    else:
        last = (xid, change_id)
    if served_by is not None and len(changes) < limit:
        # Nothing more of this gateway's cards below the horizon: move past what was left
        # out, so the next read starts after it.
        scanned = database.fetch(
            f"SELECT {_XID[dialect]}, c.id FROM card_changes c WHERE {_AFTER[dialect]}"
            f" ORDER BY {_ORDER_DESC[dialect]} LIMIT 1", params)
        if scanned:
            last = (int(scanned[0][0]), int(scanned[0][1]))
    return {"changes": changes, "next": cursor_text(*last)}


SERVE_ROWS_PER_STATEMENT = 200  # cards noted by one INSERT (two parameters each)


def serve(database: Session, gateway_id: str, cards: list[str]) -> None:
    """Note that `gateway_id` serves those of `cards` the ledger knows (its feed then carries
    their changes). One it does not know yet has no change to send; once a batch posts it,
    the gateway that posted it serves it by its own rows."""
    for first in range(0, len(cards), SERVE_ROWS_PER_STATEMENT):
        chunk = cards[first:first + SERVE_ROWS_PER_STATEMENT]
        database.execute(
            f"INSERT INTO served_cards ({', '.join(SERVED_CARD_COLUMNS)}) SELECT ?, card"
            f" FROM cards WHERE card IN ({', '.join(['?'] * len(chunk))})"
            " ON CONFLICT (gateway_id, card) DO NOTHING", [gateway_id, *chunk])


def hand_over(database: Session, old_card: str, new_card: str) -> None:
    """A replacement: every gateway that serves the old card serves the new one (it moves
    the old card's state there when the replacement reaches it, gateway/card_feed.py)."""
    database.execute(
        "INSERT INTO served_cards (gateway_id, card) SELECT gateway_id, ? FROM ("
        " SELECT gateway_id FROM served_cards WHERE card = ? UNION"
        " SELECT gateway_id FROM card_changes WHERE card = ?) AS serving"
        # SQLite reads "ON" after a FROM as a join's unless a WHERE comes between.
        " WHERE gateway_id IS NOT NULL"
        " ON CONFLICT (gateway_id, card) DO NOTHING", (new_card, old_card, old_card))


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
