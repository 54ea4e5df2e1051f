"""The books' tables, created idempotently on open; the same schema on SQLite and PostgreSQL.

Money and counts are BIGINT (64-bit on PostgreSQL; SQLite integers are 64-bit anyway).
Indexes exist only for the queries the ledger runs: entries by account owner (card
balances), transactions by ref_txn_id (refund limits). Primary keys cover the id look-ups.
"""

from __future__ import annotations

from ledger.db import Database

_SERIAL = {
    "sqlite": "INTEGER PRIMARY KEY",
    "postgresql": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
}

_STATEMENTS = (
    """CREATE TABLE IF NOT EXISTS batches (
        batch_id TEXT PRIMARY KEY,
        content_hash TEXT NOT NULL,
        gateway_id TEXT NOT NULL,
        created BIGINT NOT NULL,
        received_at BIGINT NOT NULL,
        txn_count BIGINT NOT NULL,
        posted_count BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS transactions (
        txn_id TEXT PRIMARY KEY,
        batch_id TEXT NOT NULL,
        terminal TEXT NOT NULL,
        seq BIGINT NOT NULL,
        merchant TEXT NOT NULL,
        kind TEXT NOT NULL,
        card TEXT NOT NULL,
        currency TEXT NOT NULL,
        amount_minor BIGINT NOT NULL CHECK (amount_minor >= 0),
        card_value_minor BIGINT NOT NULL CHECK (card_value_minor >= 0),
        bonus_minor BIGINT NOT NULL CHECK (bonus_minor >= 0),
        points BIGINT NOT NULL CHECK (points >= 0),
        ref_txn_id TEXT,
        program TEXT,
        time BIGINT NOT NULL,
        digest TEXT NOT NULL,
        auth TEXT NOT NULL,
        content_hash TEXT NOT NULL)""",
    """CREATE INDEX IF NOT EXISTS transactions_by_ref
        ON transactions (ref_txn_id) WHERE ref_txn_id IS NOT NULL""",
    """CREATE TABLE IF NOT EXISTS entries (
        id {serial},
        txn_id TEXT NOT NULL,
        account_kind TEXT NOT NULL,
        owner TEXT NOT NULL,
        unit TEXT NOT NULL,
        amount_minor BIGINT NOT NULL CHECK (amount_minor <> 0))""",
    "CREATE INDEX IF NOT EXISTS entries_by_account ON entries (owner, account_kind, unit)",
    """CREATE TABLE IF NOT EXISTS cards (
        card TEXT PRIMARY KEY,
        program TEXT,
        currency TEXT NOT NULL,
        activated_txn_id TEXT REFERENCES transactions (txn_id))""",
    """CREATE TABLE IF NOT EXISTS alarms (
        id {serial},
        at BIGINT NOT NULL,
        reason TEXT NOT NULL,
        detail TEXT NOT NULL)""",
)

TXN_COLUMNS = (
    "txn_id",
    "batch_id",
    "terminal",
    "seq",
    "merchant",
    "kind",
    "card",
    "currency",
    "amount_minor",
    "card_value_minor",
    "bonus_minor",
    "points",
    "ref_txn_id",
    "program",
    "time",
    "digest",
    "auth",
    "content_hash",
)
ENTRY_COLUMNS = ("txn_id", "account_kind", "owner", "unit", "amount_minor")
CARD_COLUMNS = ("card", "program", "currency", "activated_txn_id")


def create_schema(database: Database) -> None:
    """Create every table and index that is missing, in one transaction; existing data stays."""
    with database.write_transaction():
        for statement in _STATEMENTS:
            database.execute(statement.format(serial=_SERIAL[database.dialect]))
