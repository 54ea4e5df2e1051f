"""Fixtures of the end-to-end tests beyond tests/conftest.py's.

- `chain_ledger_dsn`: the central ledger of a chain test, on a fresh PostgreSQL database and
  on the single-store SQLite ledger (each test runs on both).
"""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.postgres import temporary_database


@pytest.fixture(params=["postgres", "sqlite"])
def chain_ledger_dsn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path / 'ledger.db'}"
        return
    with temporary_database(request.getfixturevalue("pg_admin_dsn")) as dsn:
        yield dsn
