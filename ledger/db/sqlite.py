"""SQLite engine for the books: WAL journal, synchronous=FULL, one writer via BEGIN IMMEDIATE.

SQLite has one writer per database whatever the caller does, and the books use one
connection; so one lock serializes every use of it (a transaction, a read, a single
statement) and nothing is ever retried. This is the single store's ledger (one gateway):
it behaves exactly as PostgreSQL does, one request after the other.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from itertools import islice
from typing import Any

from ledger.db import Database, Result, Row, Session
from ledger.errors import LedgerUnavailable
from ledger.limits import LOOKUP_CHUNK_IDS, SQLITE_BUSY_TIMEOUT_MS


class SqliteDatabase(Database):
    """One SQLite connection, usable from any thread: its lock makes the callers take turns."""

    dialect = "sqlite"
    errors: tuple[type[Exception], ...] = (sqlite3.Error,)
    lock_rows = ""
    lock_rows_skip_locked = ""

    def __init__(self, path: str) -> None:
        # The one writer SQLite allows, in this process: held for a whole transaction (the
        # database work is the lock's purpose here, so it is the only lock in the ledger that
        # is held across I/O).
        self._lock = threading.Lock()
        try:
            # isolation_level=None: no implicit transactions; transact opens them.
            self._connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._connection.execute("PRAGMA journal_mode=WAL")
            self._connection.execute("PRAGMA synchronous=FULL")
            self._connection.execute("PRAGMA foreign_keys=ON")
            self._connection.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_MS)}")
        except sqlite3.Error as error:
            raise LedgerUnavailable(f"cannot open SQLite database {path!r}: {error}") from error

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run a query and return all its rows."""
        with self._lock:
            return self._fetch(sql, params)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement that returns no rows."""
        with self._lock:
            self._execute(sql, params)

    def bulk_insert(self, table: str, columns: Sequence[str], rows: Iterable[Row]) -> None:
        with self._lock:
            self._bulk_insert(table, columns, rows)

    def fetch_in(self, sql: str, column: str, ids: Iterable[str]) -> list[Row]:
        with self._lock:
            return self._fetch_in(sql, column, ids)

    def transact(self, work: Callable[[Session], Result]) -> Result:
        """BEGIN IMMEDIATE takes SQLite's write lock up front, so no other process interleaves."""
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                result = work(_Locked(self))
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")
            return result

    @contextmanager
    def read(self) -> Iterator[Session]:
        """The lock alone: no write can come between the reads of one request."""
        with self._lock:
            yield _Locked(self)

    @contextmanager
    def schema_transaction(self) -> Iterator[Session]:
        """A write transaction like any other (SQLite's write lock spans processes)."""
        with self._lock:
            self._connection.execute("BEGIN IMMEDIATE")
            try:
                yield _Locked(self)
            except BaseException:
                self._connection.execute("ROLLBACK")
                raise
            self._connection.execute("COMMIT")

    def close(self) -> None:
        """Close the connection; WAL content is checkpointed by SQLite on the last close."""
        with self._lock:
            self._connection.close()

    # -- the statements, called with the lock held --------------------------------------------
    def _fetch(self, sql: str, params: Sequence[Any]) -> list[Row]:
        return self._connection.execute(sql, params).fetchall()

    def _execute(self, sql: str, params: Sequence[Any]) -> None:
        self._connection.execute(sql, params)

    def _bulk_insert(self, table: str, columns: Sequence[str], rows: Iterable[Row]) -> None:
        """executemany: one prepared statement, stepped once per row inside the C library."""
        marks = ",".join("?" * len(columns))
        sql = f"INSERT INTO {table} ({','.join(columns)}) VALUES ({marks})"
        self._connection.executemany(sql, rows)

    def _fetch_in(self, sql: str, column: str, ids: Iterable[str]) -> list[Row]:
        """Look ids up in chunks of LOOKUP_CHUNK_IDS, under SQLite's bound-parameter limit."""
        rows: list[Row] = []
        remaining = iter(sorted(set(ids)))
        while chunk := list(islice(remaining, LOOKUP_CHUNK_IDS)):
            match = f"{column} IN ({','.join('?' * len(chunk))})"
            rows.extend(self._connection.execute(sql.format(match=match), chunk).fetchall())
        return rows


class _Locked(Session):
    """The connection while its lock is held (inside `transact`, `read`, a schema change)."""

    dialect = "sqlite"
    lock_rows = ""
    lock_rows_skip_locked = ""

    def __init__(self, database: SqliteDatabase) -> None:
        self._database = database

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._database._fetch(sql, params)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._database._execute(sql, params)

    def bulk_insert(self, table: str, columns: Sequence[str], rows: Iterable[Row]) -> None:
        self._database._bulk_insert(table, columns, rows)

    def fetch_in(self, sql: str, column: str, ids: Iterable[str]) -> list[Row]:
        return self._database._fetch_in(sql, column, ids)
