"""Fixtures of the ledger tests: every `books`/`dsn` test runs on SQLite AND on PostgreSQL.

PostgreSQL is real (tests.support.postgres): one server for the session, one fresh database
per test (`pg_admin_dsn`, tests/conftest.py). If no server can be found or started the tests
fail; they never skip.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger import Books, open_books
from tests.support.postgres import temporary_database

BACKENDS = ["sqlite", "postgres"]


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
