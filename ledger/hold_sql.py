"""SQL of holds: place, void, expire and post them, and read them back.

The rules a hold obeys, and its value types, are `ledger.hold_rules` (pure); this module
reads what they judge and writes what they allow. Every function here that writes runs
inside one `Database.transact` transaction. Placing a hold locks its card's row
(`Session.lock_rows`) before it reads the card's value, points and holds, as a batch locks
the cards it posts: holds on one card, and settlement of that card, take turns, so holds
never over-commit value or points; holds on other cards go on meanwhile. A hold on a card of
a company then locks the company's row (`company_sql.judge_hold`), so holds on the cards of
one company take turns and never pass its shared budget together; a hold of a counted reward
item locks the item's stock row before (`reward_stock_sql.judge_hold`). A void or a batch
posting a hold locks the hold's row, so a hold is either voided or posted, never both. On
SQLite the one writer does all of this.

A hold is a row of `holds` (value only) or of `point_holds` (points, and value if any),
never of both (`ledger.hold_rules`); every read here looks in both, every status change
writes the one row the hold is. A hold's postings are in the matching table
(`hold_postings`, `point_hold_postings`: each references its holds table).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from operator import attrgetter
from typing import Any

from ledger import block_sql, company_sql, grant_holds_sql, reward_stock_sql, sun_sql
from ledger.db import Session
from ledger.errors import HoldRefused, NotFound
from ledger.hold_rules import (
    HOLD_REQUEST_FIELDS,
    HOLD_VALUE_FIELDS,
    STATUS_EXPIRED,
    STATUS_OPEN,
    STATUS_POSTED,
    STATUS_VOIDED,
    STATUSES,
    CardFunds,
    EngineTerms,
    HoldAnswer,
    HoldPosting,
    HoldRequest,
    HoldState,
    available_after,
    check_currency,
    check_engine,
    check_grants,
    check_newer_tap,
    check_replay,
    check_voidable,
    effective_status,
    points_after,
)
from ledger.schema import (
    HOLD_COLUMNS,
    HOLD_POSTING_COLUMNS,
    POINT_HOLD_COLUMNS,
    POINT_HOLD_POSTING_COLUMNS,
)
from protocol.accounts import CARD_POINTS, CARD_VALUE

VALUE_HOLDS = "holds"
POINT_HOLDS = "point_holds"
HOLD_TABLES = (VALUE_HOLDS, POINT_HOLDS)
"""Where holds are kept; always read in this order (and so locked in it: no deadlock)."""
POSTINGS_OF = {VALUE_HOLDS: "hold_postings", POINT_HOLDS: "point_hold_postings"}
_POINTS_OF = {VALUE_HOLDS: "0", POINT_HOLDS: "points"}
"""The points column of each holds table, as SQL (a hold of value only holds none)."""


def _table_of(holds_points: bool) -> str:
    return POINT_HOLDS if holds_points else VALUE_HOLDS


def place(database: Session, request: HoldRequest, now: int,
          engine_terms: Callable[[Session], EngineTerms | None] | None = None) -> HoldAnswer:
    """Place a hold, or answer a replay of one; refuse what the card's value or points
    cannot cover. `engine_terms`: the card's kept engine state's terms, read under the
    card's lock (ledger/card_engine.py `hold_terms`), which must allow the hold too."""
    known = _replay(database, request, now, HOLD_TABLES)
    if known is not None:
        return known
    cards = database.fetch(
        f"SELECT currency, sun_counter, program FROM cards WHERE card = ?{database.lock_rows}",
        (request.card,),
    )
    if not cards:
        raise NotFound("card_unknown", f"the ledger has no card {request.card!r}")
    check_currency(request, cards[0][0])
    if block_sql.is_blocked(database, request.card):
        raise HoldRefused("card_blocked", f"card {request.card[:64]!r} is blocked at the ledger")
    # The primary key of the table this hold goes to decides between two requests for its
    # id; one placed meanwhile in the other table, on this card, is seen now, under the lock.
    other = _table_of(not request.holds_points)
    known = _replay(database, request, now, (other,))
    if known is not None:
        return known
    check_newer_tap(request, cards[0][1])
    _expire_card(database, request.card, now)
    funds = card_funds(database, request.card, now)
    left_minor = available_after(request, funds.available_minor)
    left_points = points_after(request, funds.available_points)
    terms = engine_terms(database) if engine_terms is not None else None
    if terms is not None:
        left_points = min(left_points, check_engine(request, terms, funds.held_points))
    if request.grants:
        check_grants(request, terms, grant_holds_sql.held(database, request.card, now))
    reward_stock_sql.judge_hold(database, request, cards[0][2], now)  # locks the item's count
    # Last, when the card itself allows the hold: the company's row is locked only then, so
    # holds its cards cannot cover anyway never make the company's other cards wait.
    company_sql.judge_hold(database, request.card, request.amount_minor, now)
    placed = (now, now + request.ttl_s, left_minor)
    if request.holds_points:
        row = (*_request_values(request), *placed, left_points, STATUS_OPEN)
        database.bulk_insert(POINT_HOLDS, POINT_HOLD_COLUMNS, [row])
        reward_stock_sql.note_hold(database, request, cards[0][2])
    else:
        row = (*_value_values(request), *placed, STATUS_OPEN)
        database.bulk_insert(VALUE_HOLDS, HOLD_COLUMNS, [row])
    grant_holds_sql.note_hold(database, request)
    if request.sun_counter is not None:
        # With the hold, under the card's lock: the tap is used from the moment it is held.
        sun_sql.raise_to(database, [(request.card, request.sun_counter)])
    return HoldAnswer(request.hold_id, STATUS_OPEN, left_minor, left_points, created=True)


def _replay(database: Session, request: HoldRequest, now: int,
            tables: Iterable[str]) -> HoldAnswer | None:
    """The answer to a hold_id placed before (hold_conflict if with other content), or None.

    It answers the value and points left right after the hold was placed; a hold of value
    only kept no points figure (it was placed before holds held points, or held none), so
    its answer has the card's available points now."""
    for table in tables:
        points_left = "available_points" if table == POINT_HOLDS else "NULL"
        known = database.fetch(
            f"SELECT content_hash, status, expires_at, available_minor, {points_left}, card"
            f" FROM {table} WHERE hold_id = ?",
            (request.hold_id,),
        )
        if known:
            content_hash, status, expires_at, available_minor, available_points, card = known[0]
            check_replay(request, content_hash)
            if available_points is None:
                available_points = card_funds(database, card, now).available_points
            status = effective_status(status, expires_at, now)
            return HoldAnswer(request.hold_id, status, available_minor, int(available_points))
    return None


def void(database: Session, hold_id: str, now: int) -> HoldAnswer:
    """Void an open or expired hold (again: the same answer); a posted hold is hold_posted."""
    for table in HOLD_TABLES:
        rows = database.fetch(
            f"SELECT card, status, expires_at FROM {table} WHERE hold_id = ?{database.lock_rows}",
            (hold_id,),
        )
        if rows:
            break
    else:
        raise NotFound("hold_unknown", f"the ledger has no hold {hold_id[:64]!r}")
    card, stored, expires_at = rows[0]
    status = effective_status(stored, expires_at, now)
    check_voidable(hold_id, status)
    if status != STATUS_VOIDED:
        database.execute(
            f"UPDATE {table} SET status = ?, closed_at = ? WHERE hold_id = ?",
            (STATUS_VOIDED, now, hold_id),
        )
    funds = card_funds(database, card, now)
    return HoldAnswer(hold_id, STATUS_VOIDED, funds.available_minor, funds.available_points)


def expire_due(database: Session, now: int) -> int:
    """Mark open holds past their expiry expired (closed at their expiry); how many.

    Holds a batch, a placement or a void has locked are left for the next sweep (their
    expiry counts wherever they are read meanwhile): the sweep never waits for a card, and
    two sweeps or a sweep and a batch cannot deadlock over many holds."""
    expired = 0
    for table in HOLD_TABLES:
        expired += len(database.fetch(
            f"UPDATE {table} SET status = ?, closed_at = expires_at WHERE hold_id IN"
            f" (SELECT hold_id FROM {table} WHERE status = ? AND expires_at <= ?"
            f"{database.lock_rows_skip_locked}) RETURNING hold_id",
            (STATUS_EXPIRED, STATUS_OPEN, now),
        ))
    return expired


def _expire_card(database: Session, card: str, now: int) -> None:
    """expire_due for one card, before its available value and points are judged."""
    for table in HOLD_TABLES:
        database.execute(
            f"UPDATE {table} SET status = ?, closed_at = expires_at"
            " WHERE card = ? AND status = ? AND expires_at <= ?",
            (STATUS_EXPIRED, card, STATUS_OPEN, now),
        )


def card_funds(database: Session, card: str, now: int) -> CardFunds:
    """One card's value and points, and what its open unexpired holds hold of each."""
    value_sum, points_sum = database.fetch(
        "SELECT CAST(COALESCE(SUM(CASE WHEN account_kind = ? THEN amount_minor END), 0)"
        " AS BIGINT),"
        " CAST(COALESCE(SUM(CASE WHEN account_kind = ? THEN amount_minor END), 0) AS BIGINT)"
        " FROM entries WHERE owner = ? AND account_kind IN (?, ?)",
        (CARD_VALUE, CARD_POINTS, card, CARD_VALUE, CARD_POINTS),
    )[0]
    held_minor = held_points = 0
    for table in HOLD_TABLES:
        minor, points = database.fetch(
            "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT),"
            f" CAST(COALESCE(SUM({_POINTS_OF[table]}), 0) AS BIGINT) FROM {table}"
            " WHERE card = ? AND status = ? AND expires_at > ?",
            (card, STATUS_OPEN, now),
        )[0]
        held_minor += int(minor)
        held_points += int(points)
    # The entries carry credits (liabilities), hence the minus.
    return CardFunds(-int(value_sum), held_minor, -int(points_sum), held_points)


def read_states(database: Session, hold_ids: Iterable[str], now: int) -> dict[str, HoldState]:
    """The holds a batch names, by id, with expiry applied to their status; locked in id
    order (holds, then point_holds), so a void waits for the batch (and then finds the hold
    posted) or the batch for the void (and refuses hold_voided)."""
    wanted = list(hold_ids)
    states: dict[str, HoldState] = {}
    for table in HOLD_TABLES:
        rows = database.fetch_in(
            f"SELECT hold_id, card, currency, amount_minor, {_POINTS_OF[table]}, status,"
            f" expires_at FROM {table} WHERE {{match}} ORDER BY hold_id{database.lock_rows}",
            "hold_id",
            wanted,
        )
        for hold_id, card, currency, amount_minor, points, status, at in rows:
            states[hold_id] = HoldState(hold_id, card, currency, amount_minor,
                                        effective_status(status, at, now), int(points),
                                        holds_points=table == POINT_HOLDS)
    return states


def record_postings(
    database: Session, batch_id: str, postings: list[HoldPosting], now: int
) -> None:
    """Link each posted hold to its purchase and close it, in the batch's transaction."""
    value_only = [p for p in postings if not p.holds_points]
    if value_only:
        database.bulk_insert(
            "hold_postings",
            HOLD_POSTING_COLUMNS,
            (
                (p.hold_id, p.txn_id, batch_id, p.posted_minor, p.released_minor, int(p.late),
                 now)
                for p in value_only
            ),
        )
    with_points = [p for p in postings if p.holds_points]
    if with_points:
        database.bulk_insert(
            "point_hold_postings",
            POINT_HOLD_POSTING_COLUMNS,
            (
                (p.hold_id, p.txn_id, batch_id, p.posted_minor, p.released_minor,
                 p.posted_points, p.released_points, int(p.late), now)
                for p in with_points
            ),
        )
    for table, posted in ((VALUE_HOLDS, value_only), (POINT_HOLDS, with_points)):
        if posted:
            # One set-based statement, not one per hold: a batch may post 200,000 of them.
            database.execute(
                f"UPDATE {table} SET status = ?, closed_at = ?"
                f" WHERE hold_id IN (SELECT hold_id FROM {POSTINGS_OF[table]} WHERE batch_id = ?)",
                (STATUS_POSTED, now, batch_id),
            )


def detail(database: Session, hold_id: str, now: int) -> dict[str, Any] | None:
    """One hold as GET /v1/holds/<id> shows it, or None."""
    for table in HOLD_TABLES:
        points = "h.points, p.posted_points, p.released_points" if table == POINT_HOLDS else (
            "0, NULL, NULL")
        rows = database.fetch(
            "SELECT h.hold_id, h.card, h.currency, h.amount_minor, h.terminal, h.merchant,"
            " h.status, h.placed_at, h.expires_at, h.closed_at,"
            f" p.txn_id, p.posted_minor, p.released_minor, p.late, {points}"
            f" FROM {table} h LEFT JOIN {POSTINGS_OF[table]} p ON p.hold_id = h.hold_id"
            " WHERE h.hold_id = ?",
            (hold_id,),
        )
        if rows:
            break
    else:
        return None
    (hold_id, card, currency, amount_minor, terminal, merchant, stored, placed_at, expires_at,
     closed_at, txn_id, posted_minor, released_minor, late, held_points, posted_points,
     released_points) = rows[0]  # fmt: skip
    if table == VALUE_HOLDS and txn_id is not None:
        posted_points = released_points = 0  # a hold of value only posts and releases none
    status = effective_status(stored, expires_at, now)
    return {
        "hold_id": hold_id,
        "card": card,
        "currency": currency,
        "amount_minor": amount_minor,
        "points": int(held_points),
        "terminal": terminal,
        "merchant": merchant,
        "status": status,
        "placed_at": placed_at,
        "expires_at": expires_at,
        "closed_at": expires_at if status != stored else closed_at,
        "posted_txn_id": txn_id,
        "posted_minor": posted_minor,
        "released_minor": released_minor,
        "posted_points": posted_points,
        "released_points": released_points,
        "posted_late": bool(late),
    }


def totals(database: Session, now: int) -> dict[str, int]:
    """Holds per status at `now`, and how many were posted after they had expired."""
    counted = dict.fromkeys(STATUSES, 0)
    late = 0
    for table in HOLD_TABLES:
        rows = database.fetch(
            "SELECT CASE WHEN status = ? AND expires_at <= ? THEN ? ELSE status END, COUNT(*)"
            f" FROM {table} GROUP BY 1",
            (STATUS_OPEN, now, STATUS_EXPIRED),
        )
        for status, count in rows:
            counted[status] += int(count)
        late += int(database.fetch(
            f"SELECT COUNT(*) FROM {POSTINGS_OF[table]} WHERE late = 1")[0][0])
    return counted | {"posted_late": late}


_request_values = attrgetter(*HOLD_REQUEST_FIELDS)
"""A request's values in POINT_HOLD_COLUMNS order (its first columns)."""
_value_values = attrgetter(*HOLD_VALUE_FIELDS)
"""A request's values in HOLD_COLUMNS order (its first columns): all but its points."""
