"""PostgreSQL engine for the books, through psycopg 3; bulk rows go in with COPY.

Only imported when a postgresql:// DSN is opened, so SQLite users need not install psycopg.
Writers take a transaction-scoped advisory lock, so two ledger processes on one database
post batches one after the other, just as SQLite's single writer lock does.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg

from ledger.db import Database, Row
from ledger.errors import LedgerUnavailable
from ledger.limits import PG_CONNECT_TIMEOUT_S

WRITER_LOCK_KEY = zlib.crc32(b"tilltap.ledger.writer")
"""Advisory lock id held by every write transaction (any fixed 64-bit number would do)."""


def _adapt(sql: str) -> str:
    """Turn the portable ``?`` placeholders into psycopg's ``%s``."""
    assert "%" not in sql, "portable SQL must not contain literal percent signs"
    return sql.replace("?", "%s")


class PostgresDatabase(Database):
    """One autocommit psycopg connection; reopened on the next call if the server dropped it."""

    dialect = "postgresql"
    errors: tuple[type[Exception], ...] = (psycopg.Error,)

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self._closed = False
        self._connection = self._connect()

    def _connect(self) -> psycopg.Connection[Any]:
        """A new autocommit connection; a server that does not answer is LedgerUnavailable."""
        try:
            return psycopg.connect(self._dsn, autocommit=True, connect_timeout=PG_CONNECT_TIMEOUT_S)
        except psycopg.Error as error:
            raise LedgerUnavailable(f"cannot connect to PostgreSQL: {error}") from error

    def _live(self) -> psycopg.Connection[Any]:
        """The connection, replaced first if a server restart or network fault broke it."""
        if self._closed:
            raise LedgerUnavailable("the books were closed")
        if self._connection.closed or self._connection.broken:
            self._connection.close()
            self._connection = self._connect()
        return self._connection

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run a query and return all its rows."""
        return self._live().execute(_adapt(sql), params).fetchall()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement that returns no rows."""
        self._live().execute(_adapt(sql), params)

    def bulk_insert(self, table: str, columns: Sequence[str], rows: Iterable[Row]) -> None:
        """COPY FROM STDIN: one stream for all rows, several times faster than executemany."""
        statement = f"COPY {table} ({','.join(columns)}) FROM STDIN"
        with self._live().cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)

    def fetch_in(self, sql: str, column: str, ids: Iterable[str]) -> list[Row]:
        """One query with the ids as an array parameter: ``column = ANY(%s)``."""
        query = _adapt(sql).format(match=f"{column} = ANY(%s)")
        return self._live().execute(query, [sorted(set(ids))]).fetchall()

    @contextmanager
    def write_transaction(self) -> Iterator[None]:
        """A transaction that first waits for the books' writer lock (released at its end)."""
        connection = self._live()
        with connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (WRITER_LOCK_KEY,))
            yield

    def close(self) -> None:
        """Close the connection; later calls raise LedgerUnavailable instead of reconnecting."""
        self._closed = True
        self._connection.close()
