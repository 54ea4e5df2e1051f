"""The seam between the books and a SQL database: one small interface, two engines.

`Database` is what the books' SQL modules need and nothing more: fetch rows, run a
statement, bulk-insert rows, look rows up by a list of ids, and run one serialized write
transaction. SQL is written once with ``?`` placeholders and portable types; each
engine adapts it (SQLite: `ledger.db.sqlite`, PostgreSQL via psycopg 3:
`ledger.db.postgres`, imported only when a PostgreSQL DSN is opened). Nothing in this
package knows the books' tables: those are `ledger.schema`'s.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from ledger.errors import ConfigInvalid

Row = tuple[Any, ...]
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
SQLITE_SCHEME = "sqlite://"
SQLITE_MEMORY = ":memory:"


class Database(ABC):
    """A connection to the books' database; callers serialize access (one thread at a time)."""

    dialect: str
    errors: tuple[type[Exception], ...]
    """Driver exceptions that mean "the database failed", mapped to LedgerUnavailable."""

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

    @abstractmethod
    def write_transaction(self) -> AbstractContextManager[None]:
        """One atomic transaction holding the books' single writer lock; rolls back on error."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection; the object is unusable afterwards."""


def open_database(dsn: str) -> Database:
    """Open the engine a DSN names: PostgreSQL URL, ``sqlite:///abs/path``, path or ``:memory:``."""
    if dsn.startswith(POSTGRES_SCHEMES):
        try:
            from ledger.db.postgres import PostgresDatabase
        except ImportError as error:
            raise ConfigInvalid(
                "driver_missing", "PostgreSQL needs psycopg 3: pip install 'psycopg[binary]'"
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
