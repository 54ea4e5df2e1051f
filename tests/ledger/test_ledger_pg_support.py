"""The PostgreSQL test support itself: a private cluster can be started, used and removed."""

from __future__ import annotations

import pytest

from ledger import open_books
from tests.ledger.builders import batch, issue
from tests.support.postgres import (
    PostgresUnavailable,
    postgres_server,
    private_cluster,
    temporary_database,
)


def test_private_cluster_serves_books_and_is_stopped_afterwards() -> None:
    """A private cluster (used when no server answers) hosts real books and is stopped after."""
    import psycopg

    with private_cluster() as admin_dsn, temporary_database(admin_dsn) as dsn:
        books = open_books(dsn)
        books.post_batch(batch("gw1-1", issue("T1-1")))
        assert books.trial_balance() == {"EUR": 0}
        books.close()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(admin_dsn, connect_timeout=3).close()


def test_configured_server_that_does_not_answer_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """TILLTAP_TEST_PG_DSN pointing at nothing fails loudly instead of skipping or falling back."""
    monkeypatch.setenv("TILLTAP_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:1/postgres")
    with pytest.raises(PostgresUnavailable), postgres_server():
        pass
