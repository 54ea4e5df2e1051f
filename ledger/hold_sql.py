"""SQL of holds: place, void, expire and post them, and read them back.

The rules a hold obeys, and its value types, are `ledger.hold_rules` (pure); this module
reads what they judge and writes what they allow. Every function here that writes runs
inside one `Database.transact` transaction. Placing a hold locks its card's row
(`Session.lock_rows`) before it reads the card's value and holds, as a batch locks the
cards it posts: holds on one card, and settlement of that card, take turns, so holds never
over-commit; holds on other cards go on meanwhile. A void or a batch posting a hold locks
the hold's row, so a hold is either voided or posted, never both. On SQLite the one writer
does all of this.
"""

from __future__ import annotations

from collections.abc import Iterable
from operator import attrgetter
from typing import Any

from ledger import block_sql
from ledger.db import Row, Session
from ledger.errors import HoldRefused, NotFound
from ledger.hold_rules import (
    HOLD_REQUEST_FIELDS,
    STATUS_EXPIRED,
    STATUS_OPEN,
    STATUS_POSTED,
    STATUS_VOIDED,
    STATUSES,
    HoldAnswer,
    HoldPosting,
    HoldRequest,
    HoldState,
    available_after,
    check_currency,
    check_replay,
    check_voidable,
    effective_status,
)
from ledger.schema import HOLD_COLUMNS, HOLD_POSTING_COLUMNS
from protocol.accounts import CARD_VALUE


def place(database: Session, request: HoldRequest, now: int) -> HoldAnswer:
    """Place a hold, or answer a replay of one; refuse what the card's value cannot cover."""
    known = database.fetch(
        "SELECT content_hash, status, expires_at, available_minor FROM holds WHERE hold_id = ?",
        (request.hold_id,),
    )
    if known:
        content_hash, status, expires_at, available_minor = known[0]
        check_replay(request, content_hash)
        status = effective_status(status, expires_at, now)
        return HoldAnswer(request.hold_id, status, available_minor)
    cards = database.fetch(
        f"SELECT currency FROM cards WHERE card = ?{database.lock_rows}", (request.card,)
    )
    if not cards:
        raise NotFound("card_unknown", f"the ledger has no card {request.card!r}")
    check_currency(request, cards[0][0])
    if block_sql.is_blocked(database, request.card):
        raise HoldRefused("card_blocked", f"card {request.card[:64]!r} is blocked at the ledger")
    _expire_card(database, request.card, now)
    value_minor, held_minor = card_funds(database, request.card, now)
    left_minor = available_after(request, value_minor - held_minor)
    database.bulk_insert("holds", HOLD_COLUMNS, [_hold_row(request, now, left_minor)])
    return HoldAnswer(request.hold_id, STATUS_OPEN, left_minor, created=True)


def void(database: Session, hold_id: str, now: int) -> HoldAnswer:
    """Void an open or expired hold (again: the same answer); a posted hold is hold_posted."""
    rows = database.fetch(
        f"SELECT card, status, expires_at FROM holds WHERE hold_id = ?{database.lock_rows}",
        (hold_id,),
    )
    if not rows:
        raise NotFound("hold_unknown", f"the ledger has no hold {hold_id[:64]!r}")
    card, stored, expires_at = rows[0]
    status = effective_status(stored, expires_at, now)
    check_voidable(hold_id, status)
    if status != STATUS_VOIDED:
        database.execute(
            "UPDATE holds SET status = ?, closed_at = ? WHERE hold_id = ?",
            (STATUS_VOIDED, now, hold_id),
        )
    value_minor, held_minor = card_funds(database, card, now)
    return HoldAnswer(hold_id, STATUS_VOIDED, value_minor - held_minor)


def expire_due(database: Session, now: int) -> int:
    """Mark open holds past their expiry expired (closed at their expiry); how many.

    Holds a batch, a placement or a void has locked are left for the next sweep (their
    expiry counts wherever they are read meanwhile): the sweep never waits for a card, and
    two sweeps or a sweep and a batch cannot deadlock over many holds."""
    expired = database.fetch(
        "UPDATE holds SET status = ?, closed_at = expires_at WHERE hold_id IN"
        " (SELECT hold_id FROM holds WHERE status = ? AND expires_at <= ?"
        f"{database.lock_rows_skip_locked}) RETURNING hold_id",
        (STATUS_EXPIRED, STATUS_OPEN, now),
    )
    return len(expired)


def _expire_card(database: Session, card: str, now: int) -> None:
    """expire_due for one card, before its available value is judged."""
    database.execute(
        "UPDATE holds SET status = ?, closed_at = expires_at"
        " WHERE card = ? AND status = ? AND expires_at <= ?",
        (STATUS_EXPIRED, card, STATUS_OPEN, now),
    )


def card_funds(database: Session, card: str, now: int) -> tuple[int, int]:
    """(value_minor, held_minor) of one card: its value, and its open unexpired holds."""
    value_sum = database.fetch(
        "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM entries"
        " WHERE owner = ? AND account_kind = ?",
        (card, CARD_VALUE),
    )[0][0]
    held_minor = database.fetch(
        "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM holds"
        " WHERE card = ? AND status = ? AND expires_at > ?",
        (card, STATUS_OPEN, now),
    )[0][0]
    return -int(value_sum), int(held_minor)


def read_states(database: Session, hold_ids: Iterable[str], now: int) -> dict[str, HoldState]:
    """The holds a batch names, by id, with expiry applied to their status; locked in id
    order, so a void waits for the batch (and then finds the hold posted) or the batch for
    the void (and refuses hold_voided)."""
    rows = database.fetch_in(
        "SELECT hold_id, card, currency, amount_minor, status, expires_at FROM holds WHERE {match}"
        f" ORDER BY hold_id{database.lock_rows}",
        "hold_id",
        hold_ids,
    )
    return {
        hold_id: HoldState(hold_id, card, currency, amount_minor, effective_status(status, at, now))
        for hold_id, card, currency, amount_minor, status, at in rows
    }


def record_postings(
    database: Session, batch_id: str, postings: list[HoldPosting], now: int
) -> None:
    """Link each posted hold to its purchase and close it, in the batch's transaction."""
    if not postings:
        return
    database.bulk_insert(
        "hold_postings",
        HOLD_POSTING_COLUMNS,
        (
            (p.hold_id, p.txn_id, batch_id, p.posted_minor, p.released_minor, int(p.late), now)
            for p in postings
        ),
    )
    # One set-based statement, not one per hold: a batch may post 200,000 of them.
    database.execute(
        "UPDATE holds SET status = ?, closed_at = ?"
        " WHERE hold_id IN (SELECT hold_id FROM hold_postings WHERE batch_id = ?)",
        (STATUS_POSTED, now, batch_id),
    )


def detail(database: Session, hold_id: str, now: int) -> dict[str, Any] | None:
    """One hold as GET /v1/holds/<id> shows it, or None."""
    rows = database.fetch(
        "SELECT h.hold_id, h.card, h.currency, h.amount_minor, h.terminal, h.merchant,"
        " h.status, h.placed_at, h.expires_at, h.closed_at,"
        " p.txn_id, p.posted_minor, p.released_minor, p.late"
        " FROM holds h LEFT JOIN hold_postings p ON p.hold_id = h.hold_id"
        " WHERE h.hold_id = ?",
        (hold_id,),
    )
    if not rows:
        return None
    (hold_id, card, currency, amount_minor, terminal, merchant, stored, placed_at, expires_at,
     closed_at, txn_id, posted_minor, released_minor, late) = rows[0]  # fmt: skip
    status = effective_status(stored, expires_at, now)
    return {
        "hold_id": hold_id,
        "card": card,
        "currency": currency,
        "amount_minor": amount_minor,
        "terminal": terminal,
        "merchant": merchant,
        "status": status,
        "placed_at": placed_at,
        "expires_at": expires_at,
        "closed_at": expires_at if status != stored else closed_at,
        "posted_txn_id": txn_id,
        "posted_minor": posted_minor,
        "released_minor": released_minor,
        "posted_late": bool(late),
    }


def totals(database: Session, now: int) -> dict[str, int]:
    """Holds per status at `now`, and how many were posted after they had expired."""
    rows = database.fetch(
        "SELECT CASE WHEN status = ? AND expires_at <= ? THEN ? ELSE status END, COUNT(*)"
        " FROM holds GROUP BY 1",
        (STATUS_OPEN, now, STATUS_EXPIRED),
    )
    counted = dict.fromkeys(STATUSES, 0) | {status: int(count) for status, count in rows}
    late = database.fetch("SELECT COUNT(*) FROM hold_postings WHERE late = 1")[0][0]
    return counted | {"posted_late": int(late)}


_request_values = attrgetter(*HOLD_REQUEST_FIELDS)


def _hold_row(request: HoldRequest, now: int, available_minor: int) -> Row:
    """A holds row in HOLD_COLUMNS order: the request, then when, until when, what is left."""
    return (*_request_values(request), now, now + request.ttl_s, available_minor, STATUS_OPEN)
