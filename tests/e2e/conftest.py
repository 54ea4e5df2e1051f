"""Fixtures of the end-to-end tests beyond tests/conftest.py's.

- `chain_ledger_dsn`: the central ledger of a chain test, on a fresh PostgreSQL database and
  on the single-store SQLite ledger (each test runs on both).
- `shops`: two stores, A and B, each its own broker and gateway, on that ledger
  (tests/support/two_stores.py); a module needing another chain defines its own.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.postgres import temporary_database
from tests.support.store_broker import StoreBroker
from tests.support.two_stores import Chain, chain


@pytest.fixture(params=["postgres", "sqlite"])
def chain_ledger_dsn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path / 'ledger.db'}"
        return
    with temporary_database(request.getfixturevalue("pg_admin_dsn")) as dsn:
        yield dsn


@pytest.fixture
def shops(chain_ledger_dsn: str, store_broker: StoreBroker, second_broker: StoreBroker,
          tmp_path: Path) -> Iterator[Chain]:
    with chain(chain_ledger_dsn, (store_broker, second_broker), tmp_path) as two:
        yield two
