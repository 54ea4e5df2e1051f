"""The tables: created with exactly the columns their rows are inserted with, on both engines.

The insert column lists are derived from the value types (`Txn`, `HoldRequest`), the tables
are written out in SQL; these tests keep the two the same.
"""

from __future__ import annotations

import pytest

from ledger import open_books
from ledger.db import open_database
from ledger.model import (
    TXN_KEYS,
    TXN_LEDGER_ONLY_FIELDS,
    TXN_OPTIONAL_KEYS,
    TXN_UNSTORED_FIELDS,
)
from ledger.schema import (
    CARD_BLOCK_COLUMNS,
    CARD_CHANGE_COLUMNS,
    CARD_COLUMNS,
    COMPANY_AUDIT_COLUMNS,
    COMPANY_CARD_COLUMNS,
    COMPANY_CARD_DAY_COLUMNS,
    COMPANY_COLUMNS,
    ENGINE_STATE_COLUMNS,
    ENTRY_COLUMNS,
    GRANT_HOLD_COLUMNS,
    HOLD_COLUMNS,
    HOLD_POSTING_COLUMNS,
    POINT_HOLD_COLUMNS,
    POINT_HOLD_POSTING_COLUMNS,
    REWARD_HOLD_COLUMNS,
    REWARD_STOCK_AUDIT_COLUMNS,
    REWARD_STOCK_COLUMNS,
    SERVED_CARD_COLUMNS,
    TXN_COLUMNS,
    table_columns,
)

INSERTED = [
    ("transactions", TXN_COLUMNS, ()),
    ("entries", ENTRY_COLUMNS, ("id",)),
    ("cards", CARD_COLUMNS, ("sun_counter",)),
    ("holds", HOLD_COLUMNS, ("closed_at",)),
    ("hold_postings", HOLD_POSTING_COLUMNS, ()),
    ("point_holds", POINT_HOLD_COLUMNS, ("closed_at",)),
    ("point_hold_postings", POINT_HOLD_POSTING_COLUMNS, ()),
    ("card_blocks", CARD_BLOCK_COLUMNS, ("id",)),
    ("card_changes", CARD_CHANGE_COLUMNS, ("id", "xid")),
    ("card_engine_states", ENGINE_STATE_COLUMNS, ()),
    ("served_cards", SERVED_CARD_COLUMNS, ()),
    ("companies", COMPANY_COLUMNS, ()),
    ("company_cards", COMPANY_CARD_COLUMNS, ()),
    ("company_audit", COMPANY_AUDIT_COLUMNS, ("id",)),
    ("company_card_days", COMPANY_CARD_DAY_COLUMNS, ()),
    ("reward_stock", REWARD_STOCK_COLUMNS, ()),
    ("reward_holds", REWARD_HOLD_COLUMNS, ()),
    ("grant_holds", GRANT_HOLD_COLUMNS, ()),
    ("reward_stock_audit", REWARD_STOCK_AUDIT_COLUMNS, ("id",)),
]
"""(table, the columns its rows are inserted with, the columns set otherwise)."""


@pytest.mark.parametrize(("table", "inserted", "set_otherwise"), INSERTED)
def test_a_table_has_exactly_the_columns_its_rows_are_inserted_with(
    dsn: str, table: str, inserted: tuple[str, ...], set_otherwise: tuple[str, ...]
) -> None:
    """The created table and its insert column list name the same columns, each once."""
    open_books(dsn).close()
    database = open_database(dsn)
    try:
        # The feed's xid exists on PostgreSQL only (ledger/feed_sql.py).
        wanted = {*inserted, *set_otherwise} - (
            {"xid"} if database.dialect == "sqlite" else set())
        assert table_columns(database, table) == wanted
    finally:
        database.close()
    assert len(set(inserted)) == len(inserted)


def test_a_transaction_row_holds_every_key_a_batch_sends_but_hold_id_and_legs() -> None:
    """What is sent is stored as a column, but the hold (a hold_postings row) and the legs
    (entries rows); the row adds its batch, the content hash and what only the ledger
    writes (its own operations' terms)."""
    sent = {*TXN_KEYS, *TXN_OPTIONAL_KEYS}
    assert set(TXN_UNSTORED_FIELDS) == {"hold_id", "legs"}
    assert set(TXN_LEDGER_ONLY_FIELDS) == {"card_op"} and not sent & {"card_op"}
    assert set(TXN_COLUMNS) == sent - set(TXN_UNSTORED_FIELDS) | {
        "batch_id", "content_hash", *TXN_LEDGER_ONLY_FIELDS}
