"""SQL of reward stock: count a store's reward items, hold one for a redemption, take it off
when the redemption posts, and list the counts.

The rules are `ledger.reward_stock` (pure). Every function here that writes runs inside one
`Database.transact` transaction. A hold of a reward locks the item's stock row (after its
card's row, `hold_sql.place`), so holds of one item at one store take turns and never hand
over more than the count; holds of other items, or at other stores, go on meanwhile. A batch
lowers the counts of the items it posts after its cards are locked, in (program, item,
merchant) order; a hold takes the card then one stock row: the two never wait on each other
in a circle. On SQLite the one writer does all of this.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from ledger.db import Session
from ledger.hold_rules import STATUS_OPEN, HoldRequest
from ledger.model import KIND_PURCHASE, Txn
from ledger.reward_stock import (
    ACTION_UNCOUNT,
    StockChange,
    check_available,
    counted_after,
)
from ledger.schema import REWARD_HOLD_COLUMNS, REWARD_STOCK_AUDIT_COLUMNS

LISTED_ROWS_MAX = 10_000
"""Counted items one listing answers (a chain of 1,000 stores with 10 counted items fits)."""
_HELD_SQL = (
    "SELECT COUNT(*) FROM reward_holds r JOIN point_holds h ON h.hold_id = r.hold_id"
    " WHERE r.program = ? AND r.item = ? AND r.merchant = ? AND h.status = ?"
    " AND h.expires_at > ?")


def judge_hold(session: Session, request: HoldRequest, program: str | None, now: int) -> None:
    """Under the card's lock: refuse reward_out_of_stock a hold of a counted item none of
    which is left unheld at the hold's merchant, locking the item's stock row. A card of no
    program, or an item not counted there, is not judged."""
    if request.reward is None or program is None:
        return
    rows = session.fetch(
        "SELECT quantity FROM reward_stock WHERE program = ? AND item = ? AND merchant = ?"
        f"{session.lock_rows}", (program, request.reward, request.merchant))
    if not rows:
        return
    held = _held(session, program, request.reward, request.merchant, now)
    check_available(request.reward, request.merchant, int(rows[0][0]), held)


def note_hold(session: Session, request: HoldRequest, program: str | None) -> None:
    """With the placed hold, in its transaction: the item it holds (counted or not, so a
    count set later sees the holds open then)."""
    if request.reward is not None and program is not None:
        session.bulk_insert("reward_holds", REWARD_HOLD_COLUMNS,
                            [(request.hold_id, program, request.reward, request.merchant)])


def note_posted(session: Session, txns: Sequence[Txn]) -> None:
    """In a batch's transaction, its cards locked: each posted reward redemption takes one
    of its item off its merchant's count (REWARD_STOCK_POSTED_TAKES_ONE; items not counted
    are left alone). The program is the card's, as the hold judged it."""
    redeemed = [posted for posted in txns
                if posted.kind == KIND_PURCHASE and posted.reward is not None]
    if not redeemed:
        return
    programs: dict[str, str | None] = dict(session.fetch_in(
        "SELECT card, program FROM cards WHERE {match}", "card",
        sorted({posted.card for posted in redeemed})))
    taken = Counter((programs.get(posted.card), posted.reward, posted.merchant)
                    for posted in redeemed)
    for (program, item, merchant), count in sorted(
            (key, count) for key, count in taken.items() if key[0] is not None):
        session.execute(
            "UPDATE reward_stock SET quantity = quantity - ?"
            " WHERE program = ? AND item = ? AND merchant = ?",
            (count, program, item, merchant))


def change(session: Session, change: StockChange, login: str, now: int) -> dict[str, Any]:
    """Set, add to or stop counting one item at one merchant, audited: its row afterwards
    (`quantity` null: not counted) and what it was before."""
    known = session.fetch(
        "SELECT quantity FROM reward_stock WHERE program = ? AND item = ? AND merchant = ?"
        f"{session.lock_rows}", (change.program, change.item, change.merchant))
    before = int(known[0][0]) if known else None
    after = counted_after(change, before)
    key = (change.program, change.item, change.merchant)
    if after is None:
        session.execute(
            "DELETE FROM reward_stock WHERE program = ? AND item = ? AND merchant = ?", key)
    else:
        # Two first counts of one item at once: the primary key picks one, the other updates.
        session.execute(
            "INSERT INTO reward_stock (program, item, merchant, quantity, updated_at, login)"
            " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (program, item, merchant) DO UPDATE"
            " SET quantity = excluded.quantity, updated_at = excluded.updated_at,"
            " login = excluded.login", (*key, after, now, login))
    session.bulk_insert("reward_stock_audit", REWARD_STOCK_AUDIT_COLUMNS, [(
        now, login, *key, change.action,
        None if change.action == ACTION_UNCOUNT else change.quantity)])
    held = _held(session, *key, now)
    return {"program": change.program, "item": change.item, "merchant": change.merchant,
            "quantity": after, "before": before, "held": held,
            "available": None if after is None else after - held}


def listing(session: Session, program: str | None, now: int) -> dict[str, Any]:
    """The counted items (of one program, or all), each with its open holds and what is
    available, in (program, item, merchant) order; at most LISTED_ROWS_MAX ("truncated")."""
    where, params = ("WHERE s.program = ?", [program]) if program is not None else ("", [])
    rows = session.fetch(
        "SELECT s.program, s.item, s.merchant, s.quantity, s.updated_at, s.login,"
        " (SELECT COUNT(*) FROM reward_holds r JOIN point_holds h ON h.hold_id = r.hold_id"
        "  WHERE r.program = s.program AND r.item = s.item AND r.merchant = s.merchant"
        "  AND h.status = ? AND h.expires_at > ?)"
        f" FROM reward_stock s {where} ORDER BY s.program, s.item, s.merchant LIMIT ?",
        (STATUS_OPEN, now, *params, LISTED_ROWS_MAX + 1))
    items = [{"program": row[0], "item": row[1], "merchant": row[2], "quantity": int(row[3]),
              "held": int(row[6]), "available": int(row[3]) - int(row[6]),
              "updated_at": int(row[4]), "login": row[5]} for row in rows[:LISTED_ROWS_MAX]]
    return {"items": items, "truncated": len(rows) > LISTED_ROWS_MAX}


def _held(session: Session, program: str, item: str, merchant: str, now: int) -> int:
    return int(session.fetch(_HELD_SQL, (program, item, merchant, STATUS_OPEN, now))[0][0])
