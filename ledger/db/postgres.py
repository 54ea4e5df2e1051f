"""PostgreSQL engine for the books, through psycopg 3 and its connection pool.

Every request runs in its own transaction on a pooled connection, side by side with the
others (READ COMMITTED). There is no lock over the books: a transaction locks the rows it
relies on (`Session.lock_rows`, ``FOR UPDATE``: a batch its cards in card order, a hold its
card), so requests on other cards never wait for it, and the database's unique keys decide
between two requests for the same id. When PostgreSQL rolls one back because it collided
with another (deadlock, serialization failure, a key another transaction took meanwhile),
`transact` runs it again from the start, at most TXN_ATTEMPTS_MAX times: the second attempt
reads what the first one's rival committed and answers as if the two had come one after the
other. Bulk rows go in with COPY. Only imported when a postgresql:// DSN is opened, so SQLite
users need not install psycopg.
"""

from __future__ import annotations

import logging
import random
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg_pool import ConnectionPool, PoolTimeout

from ledger.db import Database, Result, Row, Session
from ledger.errors import LedgerUnavailable
from ledger.limits import (
    PG_CONNECT_TIMEOUT_S,
    PG_COPY_ROWS_MIN,
    PG_POOL_CONNECTIONS_MAX,
    PG_POOL_CONNECTIONS_MIN,
    PG_POOL_WAIT_S,
    TXN_ATTEMPTS_MAX,
    TXN_RETRY_BACKOFF_MS,
)

log = logging.getLogger(__name__)

SCHEMA_LOCK_KEY = zlib.crc32(b"tilltap.ledger.schema")
"""Advisory lock id held while the schema is created or extended: two ledger processes
opening new books at once would otherwise both try to create the same tables."""

COLLISIONS: tuple[type[psycopg.Error], ...] = (
    pg_errors.SerializationFailure,
    pg_errors.DeadlockDetected,
    pg_errors.UniqueViolation,
)
"""What `transact` retries: two transactions collided and one was rolled back, nothing else
is wrong. A unique key is among them because two requests for one id (the same batch, txn
or hold, or a card first seen in two batches) reach the insert together: the loser, run
again, finds the winner's row and answers as the sequential books do (duplicate, replay,
conflict)."""


def _adapt(sql: str) -> str:
    """Turn the portable ``?`` placeholders into psycopg's ``%s``."""
    assert "%" not in sql, "portable SQL must not contain literal percent signs"
    return sql.replace("?", "%s")


class _Connected(Session):
    """Statements on one pooled connection (in a transaction, or each committed at once)."""

    dialect = "postgresql"
    lock_rows = " FOR UPDATE"
    lock_rows_skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, connection: psycopg.Connection[Any]) -> None:
        self._connection = connection

    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        return self._connection.execute(_adapt(sql), params).fetchall()

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._connection.execute(_adapt(sql), params)

    def bulk_insert(self, table: str, columns: Sequence[str], rows: Iterable[Row]) -> None:
        """COPY FROM STDIN for many rows (several times faster than executemany); a few rows
        as one pipelined INSERT, cheaper than setting a COPY up."""
        rows = rows if isinstance(rows, list) else list(rows)
        if not rows:
            return
        if len(rows) < PG_COPY_ROWS_MIN:
            marks = ",".join(["%s"] * len(columns))
            with self._connection.cursor() as cursor:
                cursor.executemany(
                    f"INSERT INTO {table} ({','.join(columns)}) VALUES ({marks})", rows)
            return
        statement = f"COPY {table} ({','.join(columns)}) FROM STDIN"
        with self._connection.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row(row)

    def fetch_in(self, sql: str, column: str, ids: Iterable[str]) -> list[Row]:
        """One query with the ids as an array parameter: ``column = ANY(%s)``."""
        query = _adapt(sql).format(match=f"{column} = ANY(%s)")
        return self._connection.execute(query, [sorted(set(ids))]).fetchall()


class PostgresDatabase(Database):
    """A pool of autocommit psycopg connections; a request borrows one for its transaction."""

    dialect = "postgresql"
    errors: tuple[type[Exception], ...] = (psycopg.Error,)
    lock_rows = _Connected.lock_rows
    lock_rows_skip_locked = _Connected.lock_rows_skip_locked

    def __init__(self, dsn: str) -> None:
        # One plain connection first: a server that does not answer is reported with its
        # own error at once, not as a pool timeout after PG_POOL_WAIT_S.
        try:
            psycopg.connect(dsn, connect_timeout=PG_CONNECT_TIMEOUT_S).close()
        except psycopg.Error as error:
            raise LedgerUnavailable(f"cannot connect to PostgreSQL: {error}") from error
        self._pool = ConnectionPool(
            dsn, min_size=PG_POOL_CONNECTIONS_MIN, max_size=PG_POOL_CONNECTIONS_MAX,
            kwargs={"autocommit": True, "connect_timeout": PG_CONNECT_TIMEOUT_S},
            timeout=PG_POOL_WAIT_S, name="tilltap-ledger", open=False)
        try:
            self._pool.open(wait=True, timeout=PG_POOL_WAIT_S)
        except PoolTimeout as error:
            self._pool.close()
            raise LedgerUnavailable(f"cannot open PostgreSQL connections: {error}") from error

    @contextmanager
    def _borrowed(self) -> Iterator[psycopg.Connection[Any]]:
        """A pooled connection; one the server dropped makes the pool test its idle ones,
        so a server restart costs one failed request, not one per pooled connection."""
        broken = False
        try:
            with self._pool.connection() as connection:
                try:
                    yield connection
                except psycopg.Error:
                    broken = connection.broken
                    raise
        finally:
            if broken:
                self._pool.check()

    # -- single statements (tools and tests), each committed at once --------------------------
    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        with self._borrowed() as connection:
            return _Connected(connection).fetch(sql, params)

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        with self._borrowed() as connection:
            _Connected(connection).execute(sql, params)

    def bulk_insert(self, table: str, columns: Sequence[str], rows: Iterable[Row]) -> None:
        with self._borrowed() as connection, connection.transaction():
            _Connected(connection).bulk_insert(table, columns, rows)

    def fetch_in(self, sql: str, column: str, ids: Iterable[str]) -> list[Row]:
        with self._borrowed() as connection:
            return _Connected(connection).fetch_in(sql, column, ids)

    # -- transactions ---------------------------------------------------------------------------
    def transact(self, work: Callable[[Session], Result]) -> Result:
        """`work` in a READ COMMITTED transaction, run again after a collision (see COLLISIONS).

        READ COMMITTED on purpose: each statement sees what was committed before it began, so
        once a transaction has waited for a row lock its next reads see the rival's commit
        (REPEATABLE READ would answer a serialization failure instead, and retry far more)."""
        for attempt in range(1, TXN_ATTEMPTS_MAX + 1):
            try:
                with self._borrowed() as connection, connection.transaction():
                    return work(_Connected(connection))
            except COLLISIONS as collision:
                if attempt == TXN_ATTEMPTS_MAX:
                    raise LedgerUnavailable(
                        f"the transaction collided {attempt} times; send it again"
                        f" ({type(collision).__name__}: {collision})", reason="ledger_busy"
                    ) from collision
                log.info("transaction collided (%s), attempt %d of %d",
                         type(collision).__name__, attempt, TXN_ATTEMPTS_MAX)
            # Off every lock and with the connection back in the pool.
            time.sleep(random.uniform(0, TXN_RETRY_BACKOFF_MS * 2 ** (attempt - 1)) / 1000)
        raise AssertionError("unreachable: the last attempt returns or raises")

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only REPEATABLE READ transaction: every query of it sees one snapshot."""
        with self._borrowed() as connection, connection.transaction():
            connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield _Connected(connection)

    @contextmanager
    def schema_transaction(self) -> Iterator[Session]:
        """A transaction holding the schema's advisory lock (released at its end)."""
        with self._borrowed() as connection, connection.transaction():
            connection.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
            yield _Connected(connection)

    def close(self) -> None:
        """Close every connection; later calls raise (PoolClosed) instead of reconnecting."""
        self._pool.close()
