"""Everyday reads of the books: card balances, terminal totals, trial balance, alarms, counts.

Every figure is summed from the entries or transactions themselves (no cached balances),
so a query can never disagree with the postings it describes. The named reports
(liability, breakage, ...) are `ledger.reports`; a hold's own state is `ledger.hold_sql`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ledger.db import Database, Row
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

_HELD = """
    SELECT card, CAST(SUM(amount_minor) AS BIGINT) FROM holds
    WHERE status = 'open' AND expires_at > ? {and_card} GROUP BY card"""


def card_balance(database: Database, card: str, now: int) -> dict[str, Any] | None:
    """One card's value and points as its holder sees them (liabilities negated), or None.

    ``held_minor`` is the sum of its open holds unexpired at `now`; ``available_minor`` is
    what a new hold may take: ``value_minor - held_minor``.
    """
    rows = database.fetch(_CARD_BALANCES.format(where="WHERE c.card = ?"), (card,))
    if not rows:
        return None
    held: dict[str, int] = dict(database.fetch(_HELD.format(and_card="AND card = ?"), (now, card)))
    return _balance(rows[0], held)


def balances(database: Database, now: int) -> list[dict[str, Any]]:
    """Every known card's balance, ordered by card id."""
    held: dict[str, int] = dict(database.fetch(_HELD.format(and_card=""), (now,)))
    return [_balance(row, held) for row in database.fetch(_CARD_BALANCES.format(where=""))]


def _balance(row: Row, held: Mapping[str, int]) -> dict[str, Any]:
    """A card balance row as the API shows it; the entries carry credits, hence the minus."""
    card, currency, program, value_sum, points_sum = row
    held_minor = held.get(card, 0)
    return {
        "card": card,
        "currency": currency,
        "value_minor": -value_sum,
        "points": -points_sum,
        "program": program,
        "held_minor": held_minor,
        "available_minor": -value_sum - held_minor,
    }


def terminal_totals(database: Database) -> dict[str, dict[str, Any]]:
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


def trial_balance(database: Database) -> dict[str, int]:
    """Sum of all entries per unit: double entry makes every one of them zero."""
    rows = database.fetch(
        "SELECT unit, CAST(SUM(amount_minor) AS BIGINT) FROM entries GROUP BY unit ORDER BY unit"
    )
    return {unit: total for unit, total in rows}


def alarms(database: Database) -> list[dict[str, Any]]:
    """Every alarm recorded, oldest first."""
    rows = database.fetch("SELECT id, at, reason, detail FROM alarms ORDER BY id")
    return [
        {"id": id_, "at": at, "reason": reason, "detail": detail}
        for id_, at, reason, detail in rows
    ]


COUNTED_TABLES = ("batches", "transactions", "entries", "cards", "holds", "hold_postings", "alarms")


def counts(database: Database) -> dict[str, int]:
    """Number of rows in each of the books' tables."""
    return {
        table: database.fetch(f"SELECT COUNT(*) FROM {table}")[0][0] for table in COUNTED_TABLES
    }
