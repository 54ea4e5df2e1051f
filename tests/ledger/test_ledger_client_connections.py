"""The ledger client keeps a connection alive per thread (ledger/client.py), sends a request
the ledger takes twice once more when a kept connection was closed under it, and never an
other; a stopped server ends the connections it kept."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from ledger import client as client_module
from ledger.client import LedgerClient
from ledger.db import open_database
from ledger.errors import LedgerUnavailable
from ledger.personal_crypto import CustomerKey
from ledger.server import LedgerServer, serve
from tests.ledger.builders import batch, issue
from tools.customers import CustomersClient


def kept(client: LedgerClient) -> object:
    """The calling thread's kept connection object (None: none)."""
    return getattr(client._kept, "connection", None)


@pytest.fixture
def ledger(tmp_path: Path) -> LedgerServer:
    return serve(f"sqlite://{tmp_path / 'ledger.db'}")


def test_one_connection_serves_a_threads_requests_and_each_thread_has_its_own(
        ledger: LedgerServer) -> None:
    client = LedgerClient(ledger.url)
    try:
        client.health()
        first = kept(client)
        assert first is not None
        assert client.post_batch(batch("gw1-B1", issue("T1-1", "C1", 500)))["posted"] == 1
        assert client.card("C1")["value_minor"] == 500
        assert kept(client) is first  # the same connection throughout
        seen: list[object] = []

        def elsewhere() -> None:
            client.health()
            seen.append(kept(client))

        other = threading.Thread(target=elsewhere)
        other.start()
        other.join()
        assert seen and seen[0] is not None and seen[0] is not first
    finally:
        ledger.stop()


def test_a_connection_left_idle_is_not_reused(ledger: LedgerServer,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client_module, "KEPT_IDLE_MAX_S", -1.0)  # every gap is too long
    client = LedgerClient(ledger.url)
    try:
        client.health()
        first = kept(client)
        client.health()
        assert kept(client) is not first
    finally:
        ledger.stop()


def test_after_a_restart_a_safe_request_goes_again_and_another_is_not_sent_twice(
        tmp_path: Path) -> None:
    dsn = f"sqlite://{tmp_path / 'ledger.db'}"
    key = CustomerKey(os.urandom(32))
    ledger = serve(dsn, customer_key=key)
    port = ledger.port
    client = CustomersClient(ledger.url)
    client.post_batch(batch("gw1-B1", issue("T1-1", "C1", 500)))

    def restarted() -> LedgerServer:
        """The ledger stopped (which ends the kept connection) and served again."""
        ledger.stop()
        return serve(dsn, port=port, customer_key=key)

    ledger = restarted()
    try:
        # A look-up and a batch (idempotent by its id) go again on a new connection.
        assert client.card("C1")["value_minor"] == 500
        ledger = restarted()
        assert client.post_batch(batch("gw1-B1", issue("T1-1", "C1", 500)))[
            "already_posted"] == 1
        # A new customer is not a request the ledger takes twice without harm: on a kept
        # connection closed under it, it is not sent again (the caller decides)...
        ledger = restarted()
        with pytest.raises(LedgerUnavailable):
            client.create_customer({"name": "Ada Lovelace"})
        # ... and nothing was made; the next request opens a new connection.
        made = client.create_customer({"name": "Ada Lovelace"})
        assert client.customer(made["customer_id"])["name"] == "Ada Lovelace"
        database = open_database(dsn)
        try:
            assert database.fetch("SELECT COUNT(*) FROM customers")[0][0] == 1
        finally:
            database.close()
    finally:
        ledger.stop()
