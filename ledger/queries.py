"""Everyday reads of the books: card balances, terminal totals, trial balance, alarms, counts,
and the refused transactions (the ledger's quarantine).

Every figure is summed from the entries or transactions themselves (no cached balances),
so a query can never disagree with the postings it describes. The named reports
(liability, breakage, ...) are `ledger.reports`; a hold's own state is `ledger.hold_sql`'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ledger.db import Row, Session
from ledger.errors import BatchTooLarge
from ledger.limits import INT64_MAX, REPORT_ROWS_MAX
from protocol.accounts import CARD_POINTS, CARD_VALUE

_CARD_BALANCES = f"""
    SELECT c.card, c.currency, c.program,
        CAST(COALESCE(SUM(CASE WHEN e.account_kind = '{CARD_VALUE}' THEN e.amount_minor END), 0)
            AS BIGINT),
        CAST(COALESCE(SUM(CASE WHEN e.account_kind = '{CARD_POINTS}' THEN e.amount_minor END), 0)
            AS BIGINT)
    FROM cards c
    LEFT JOIN entries e
        ON e.owner = c.card AND e.account_kind IN ('{CARD_VALUE}', '{CARD_POINTS}')
    {{where}}
    GROUP BY c.card, c.currency, c.program
    ORDER BY c.card"""

# Holds of value only (holds) and holds with points (point_holds, ledger.hold_rules).
_HELD = """
    SELECT card, CAST(SUM(amount_minor) AS BIGINT), CAST(SUM(points) AS BIGINT) FROM (
        SELECT card, amount_minor, 0 AS points FROM holds
        WHERE status = 'open' AND expires_at > ? {and_card}
        UNION ALL
        SELECT card, amount_minor, points FROM point_holds
        WHERE status = 'open' AND expires_at > ? {and_card}) AS held
    GROUP BY card"""


def card_balance(database: Session, card: str, now: int) -> dict[str, Any] | None:
    """One card's value and points as its holder sees them (liabilities negated), or None.

    ``held_minor`` and ``held_points`` are the sums of its open holds unexpired at `now`;
    ``available_minor`` and ``available_points`` are what a new hold may take:
    ``value_minor - held_minor`` and ``points - held_points``.
    """
    rows = database.fetch(_CARD_BALANCES.format(where="WHERE c.card = ?"), (card,))
    if not rows:
        return None
    held = _held(database.fetch(_HELD.format(and_card="AND card = ?"), (now, card, now, card)))
    return _balance(rows[0], held)


def balances(database: Session, now: int) -> list[dict[str, Any]]:
    """Every known card's balance, ordered by card id."""
    held = _held(database.fetch(_HELD.format(and_card=""), (now, now)))
    return [_balance(row, held) for row in database.fetch(_CARD_BALANCES.format(where=""))]


def _held(rows: Sequence[Row]) -> dict[str, tuple[int, int]]:
    """card -> (held_minor, held_points)."""
    return {card: (int(minor), int(points)) for card, minor, points in rows}


def _balance(row: Row, held: Mapping[str, tuple[int, int]]) -> dict[str, Any]:
    """A card balance row as the API shows it; the entries carry credits, hence the minus."""
    card, currency, program, value_sum, points_sum = row
    held_minor, held_points = held.get(card, (0, 0))
    return {
        "card": card,
        "currency": currency,
        "value_minor": -value_sum,
        "points": -points_sum,
        "program": program,
        "held_minor": held_minor,
        "available_minor": -value_sum - held_minor,
        "held_points": held_points,
        "available_points": -points_sum - held_points,
    }


def terminal_totals(database: Session) -> dict[str, dict[str, Any]]:
    """Per terminal: txn count, and per kind the count and sums of amounts and points."""
    rows = database.fetch(
        "SELECT terminal, kind, COUNT(*), CAST(SUM(amount_minor) AS BIGINT),"
        " CAST(SUM(card_value_minor) AS BIGINT), CAST(SUM(points) AS BIGINT)"
        " FROM transactions GROUP BY terminal, kind ORDER BY terminal, kind"
    )
    totals: dict[str, dict[str, Any]] = {}
    for terminal, kind, count, amount_minor, card_value_minor, points in rows:
        total = totals.setdefault(terminal, {"count": 0, "by_kind": {}})
        total["count"] += count
        total["by_kind"][kind] = {
            "count": count,
            "amount_minor": amount_minor,
            "card_value_minor": card_value_minor,
            "points": points,
        }
    return totals


def trial_balance(database: Session) -> dict[str, int]:
    """Sum of all entries per unit: double entry makes every one of them zero."""
    rows = database.fetch(
        "SELECT unit, CAST(SUM(amount_minor) AS BIGINT) FROM entries GROUP BY unit ORDER BY unit"
    )
    return {unit: total for unit, total in rows}


def alarms(database: Session) -> list[dict[str, Any]]:
    """Every alarm recorded, oldest first."""
    rows = database.fetch("SELECT id, at, reason, detail FROM alarms ORDER BY id")
    return [
        {"id": id_, "at": at, "reason": reason, "detail": detail}
        for id_, at, reason, detail in rows
    ]


REFUSED_FIELDS = (
    "refused_at", "batch_id", "txn_id", "reason", "detail", "content_hash", "posted_batch_id",
)  # fmt: skip
"""A refused transaction as a person reads it; posted_batch_id: the batch that has its
txn_id in the books (posted later once fixed, or, for a txn_conflict, the one it conflicts
with), or null: the sale is not in the books."""


def refused_transactions(
    database: Session,
    batch_id: str | None = None,
    refused_from_s: int = 0,
    refused_before_s: int = INT64_MAX,
) -> list[dict[str, Any]]:
    """The transactions batches refused (of one batch, or refused within a time span),
    oldest first and in batch order: the ledger's quarantine, REFUSED_FIELDS each."""
    match_batch = "" if batch_id is None else " AND r.batch_id = ?"
    rows = bounded_fetch(
        database,
        "SELECT r.refused_at, r.batch_id, r.txn_id, r.reason, r.detail, r.content_hash,"
        " t.batch_id FROM refused_txns r LEFT JOIN transactions t ON t.txn_id = r.txn_id"
        f" WHERE r.refused_at >= ? AND r.refused_at < ?{match_batch}"
        " ORDER BY r.refused_at, r.batch_id, r.position",
        (refused_from_s, refused_before_s, *(() if batch_id is None else (batch_id,))),
    )
    return [dict(zip(REFUSED_FIELDS, row, strict=True)) for row in rows]


def bounded_fetch(database: Session, sql: str, params: Sequence[Any]) -> list[Row]:
    """All rows of a query that grows with the books, or report_too_large: a list a person
    reads is never silently cut."""
    rows = database.fetch(f"{sql} LIMIT {REPORT_ROWS_MAX + 1}", params)
    if len(rows) > REPORT_ROWS_MAX:
        raise BatchTooLarge(
            "report_too_large", f"more than {REPORT_ROWS_MAX} rows; narrow the window"
        )
    return rows


COUNTED_TABLES = (
    "batches", "transactions", "entries", "cards", "holds", "hold_postings", "point_holds",
    "point_hold_postings", "refused_txns", "alarms",
)  # fmt: skip


def counts(database: Session) -> dict[str, int]:
    """Number of rows in each of the books' tables."""
    return {
        table: database.fetch(f"SELECT COUNT(*) FROM {table}")[0][0] for table in COUNTED_TABLES
    }
