"""Fixtures of the ledger tests: every `books`/`dsn` test runs on SQLite AND on PostgreSQL.

PostgreSQL is real (tests.support.postgres): one server for the session, one fresh database
per test. If no server can be found or started the tests fail; they never skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger import Books, open_books
from tests.support.postgres import postgres_server, temporary_database

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session")
def pg_admin_dsn() -> Iterator[str]:
    """Admin DSN of the PostgreSQL server used by this run."""
    with postgres_server() as dsn:
        yield dsn


@pytest.fixture(params=BACKENDS)
def dsn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """DSN of empty books: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path / 'ledger.db'}"
        return
    with temporary_database(request.getfixturevalue("pg_admin_dsn")) as pg_dsn:
        yield pg_dsn


@pytest.fixture
def books(dsn: str) -> Iterator[Books]:
    """Open, empty books on the backend of this parametrization, closed afterwards."""
    opened = open_books(dsn)
    yield opened
    opened.close()
