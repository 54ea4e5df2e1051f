"""The seam between the books and a SQL database: one small interface, two engines.

`Session` is what the books' SQL modules need and nothing more: fetch rows, run a
statement, bulk-insert rows, look rows up by a list of ids, and the clauses that lock the
rows a statement reads. `Database` hands out sessions: `transact` runs a piece of work in one
transaction (retried whole, up to TXN_ATTEMPTS_MAX times, when the engine says two
transactions collided), `read` gives a consistent read. SQL is written once with ``?``
placeholders and portable types; each engine adapts it (SQLite: `ledger.db.sqlite`, one
connection and one writer; PostgreSQL via psycopg 3 and a connection pool:
`ledger.db.postgres`, imported only when a PostgreSQL DSN is opened, where transactions run
side by side and lock only the rows they change). Nothing in this package knows the books'
tables: those are `ledger.schema`'s.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from ledger.errors import ConfigInvalid

Row = tuple[Any, ...]
Result = TypeVar("Result")
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
SQLITE_SCHEME = "sqlite://"
SQLITE_MEMORY = ":memory:"


class Session(ABC):
    """Statements on one connection: inside a transaction of `Database.transact`/`read`, or
    (on a `Database` itself) each statement on its own, committed at once."""

    dialect: str
    lock_rows: str
    """Appended to a SELECT whose rows the transaction will change or rely on: PostgreSQL
    " FOR UPDATE" (held until commit; another transaction locking them waits), SQLite ""
    (its one writer already excludes every other)."""
    lock_rows_skip_locked: str
    """The same, but rows another transaction holds are left out instead of waited for."""

    @abstractmethod
    def fetch(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Run a query and return all its rows."""

    @abstractmethod
    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        """Run one statement that returns no rows."""

    @abstractmethod
    def bulk_insert(self, table: str, columns: Sequence[str], rows: Iterable[Row]) -> None:
        """Insert many rows in as few round trips as the engine allows."""

    @abstractmethod
    def fetch_in(self, sql: str, column: str, ids: Iterable[str]) -> list[Row]:
        """Run `sql` whose ``{match}`` stands for "`column` is one of `ids`"; rows of all ids."""


class Database(Session):
    """The books' database: sessions for the books' work, and single statements for tools."""

    errors: tuple[type[Exception], ...]
    """Driver exceptions that mean "the database failed", mapped to LedgerUnavailable."""

    @abstractmethod
    def transact(self, work: Callable[[Session], Result]) -> Result:
        """`work` in one read-write transaction, committed when it returns, rolled back when
        it raises. Where the engine runs transactions side by side, one that collided with
        another (deadlock, serialization failure, a unique key taken meanwhile) is rolled
        back and `work` run again from the start, at most TXN_ATTEMPTS_MAX times, so `work`
        must only read and write through its session."""

    @abstractmethod
    def read(self) -> AbstractContextManager[Session]:
        """A session whose reads all see the books at one moment (no writes)."""

    @abstractmethod
    def schema_transaction(self) -> AbstractContextManager[Session]:
        """One transaction that no other ledger process's schema change interleaves with."""

    @abstractmethod
    def close(self) -> None:
        """Release the connections; the object is unusable afterwards."""


def open_database(dsn: str) -> Database:
    """Open the engine a DSN names: PostgreSQL URL, ``sqlite:///abs/path``, path or ``:memory:``."""
    if dsn.startswith(POSTGRES_SCHEMES):
        try:
            from ledger.db.postgres import PostgresDatabase
        except ImportError as error:
            raise ConfigInvalid(
                "driver_missing",
                "PostgreSQL needs psycopg 3 and its pool: pip install 'tilltap[postgres]'",
            ) from error
        return PostgresDatabase(dsn)
    from ledger.db.sqlite import SqliteDatabase

    return SqliteDatabase(sqlite_path(dsn))


def sqlite_path(dsn: str) -> str:
    """The file path (or ``:memory:``) a SQLite DSN names; other URL schemes are refused.

    ``sqlite:///abs/path.db`` and SQLAlchemy's ``sqlite:////abs/path.db`` both name the
    absolute path /abs/path.db; a relative path must be given without the URL scheme.
    """
    if dsn.startswith(SQLITE_SCHEME):
        path = dsn[len(SQLITE_SCHEME) :]
        if path == "/" + SQLITE_MEMORY:
            return SQLITE_MEMORY
        if not path.startswith("/") or not path.strip("/"):
            raise ConfigInvalid("dsn_invalid", "a SQLite URL must be sqlite:///absolute/path.db")
        return "/" + path.lstrip("/")
    if not dsn or "://" in dsn:
        raise ConfigInvalid(
            "dsn_invalid", f"cannot open {dsn!r}: use a postgresql:// or sqlite:/// URL"
        )
    return dsn
