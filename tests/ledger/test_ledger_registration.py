"""Registering a personalized card: one issue posting with its program and opening value,
exactly once, over HTTP on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from ledger.client import LedgerClient
from ledger.errors import BatchConflict, BatchInvalid
from ledger.server import serve


@pytest.fixture(params=["sqlite", "postgres"])
def client(request: pytest.FixtureRequest, tmp_path: object) -> object:
    if request.param == "sqlite":
        dsn = f"sqlite:///{tmp_path}/ledger.db"  # type: ignore[str-bytes-safe]
        server = serve(dsn)
        yield LedgerClient(server.url)
        server.stop()
    else:
        from tests.support.postgres import temporary_database

        with temporary_database() as dsn:
            server = serve(dsn)
            yield LedgerClient(server.url)
            server.stop()


def test_a_card_registers_once_with_its_opening_value(client: LedgerClient) -> None:
    first = client.register_card("04aa01", "gift", "EUR", "M1", 5000)
    assert first["status"] == "posted"
    again = client.register_card("04aa01", "gift", "EUR", "M1", 5000)
    assert again["status"] == "duplicate"
    card = client.card("04aa01")
    assert (card["program"], card["value_minor"]) == ("gift", 5000)
    assert client.trial_balance() == {"EUR": 0}


def test_another_program_for_a_registered_card_is_refused(client: LedgerClient) -> None:
    client.register_card("04aa02", "gift", "EUR", "M1", 100)
    with pytest.raises(BatchConflict):
        client.register_card("04aa02", "prepaid", "EUR", "M1", 100)
    assert client.card("04aa02")["value_minor"] == 100


def test_a_malformed_registration_changes_nothing(client: LedgerClient) -> None:
    with pytest.raises(BatchInvalid):
        client.register_card("04aa03", "gift", "EUR", "M1", -1)
    with pytest.raises(BatchInvalid):
        client.register_card("04aa03", "gift", "XXX", "M1", 1)
    assert client.balances() == []
