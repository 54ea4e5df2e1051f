"""SQLite engine for the books: WAL journal, synchronous=FULL, one writer via BEGIN IMMEDIATE."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import islice
from typing import Any

from ledger.db import Database, Row
from ledger.errors import LedgerUnavailable
from ledger.limits import LOOKUP_CHUNK_IDS, SQLITE_BUSY_TIMEOUT_MS


class SqliteDatabase(Database):
    """One SQLite connection, usable from any thread as long as callers serialize access."""

    dialect = "sqlite"
    errors: tuple[type[Exception], ...] = (sqlite3.Error,)

    def __init__(self, path: str) -> None:
        try:
            # isolation_level=None: no implicit transactions; write_transaction opens them.
            self._connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute("PRAGMA synchronous=FULL")
            self._connection.execute("PRAGMA foreign_keys=ON")
            self._connection.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_MS)}")
        except sqlite3.Error as error:
            raise LedgerUnavailable(f"cannot open SQLite database {path!r}: {error}") from error

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run a query and return all its rows."""
        return self._connection.execute(sql, params).fetchall()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement that returns no rows."""
        self._connection.execute(sql, params)

    def bulk_insert(self, table: str, columns: Sequence[str], rows: Iterable[Row]) -> None:
        """executemany: one prepared statement, stepped once per row inside the C library."""
        marks = ",".join("?" * len(columns))
        sql = f"INSERT INTO {table} ({','.join(columns)}) VALUES ({marks})"
        self._connection.executemany(sql, rows)

    def fetch_in(self, sql: str, column: str, ids: Iterable[str]) -> list[Row]:
        """Look ids up in chunks of LOOKUP_CHUNK_IDS, under SQLite's bound-parameter limit."""
        rows: list[Row] = []
        remaining = iter(sorted(set(ids)))
        while chunk := list(islice(remaining, LOOKUP_CHUNK_IDS)):
            match = f"{column} IN ({','.join('?' * len(chunk))})"
            rows.extend(self._connection.execute(sql.format(match=match), chunk).fetchall())
        return rows

    @contextmanager
    def write_transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE takes SQLite's write lock up front, so no other process interleaves."""
        self._connection.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._connection.execute("ROLLBACK")
            raise
        self._connection.execute("COMMIT")

    def close(self) -> None:
        """Close the connection; WAL content is checkpointed by SQLite on the last close."""
        self._connection.close()
