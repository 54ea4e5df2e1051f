"""A regular is greeted by first name at every store (issue 17; docs/ledger.md "Greeting at
every store"): two stores, each its broker as deployed and its own gateway, one ledger with
its customer key (tests/support/two_stores.py), the tills the firmware's own.

A card sold and enrolled at store A is tapped for the first time at store B: B's gateway
takes the card on from the ledger, whose answer names the customer's first name, and B's
approval greets them by it. B's store file never holds the name. On the single-store SQLite
ledger only: the ledger's side is tested on PostgreSQL too (tests/ledger/).
"""

from __future__ import annotations

import time
from pathlib import Path

from ledger.customers import Customers
from ledger.errors import NotFound
from ledger.personal_crypto import load_key_file, new_key_file
from tests.support.stack import wait_until
from tests.support.store_broker import StoreBroker
from tests.support.two_stores import chain

CARD = "04d1d2d3d4d5d6"
PHONE = "+351 913 456 789"
FIRST_NAME = "Philippa"
WAIT_S = 10.0


def test_a_card_enrolled_at_one_store_is_greeted_by_name_at_the_other(
        store_broker: StoreBroker, second_broker: StoreBroker, tmp_path: Path) -> None:
    new_key_file(tmp_path / "customer.key")
    key = load_key_file(tmp_path / "customer.key")
    with chain(f"sqlite://{tmp_path / 'ledger.db'}", (store_broker, second_broker), tmp_path,
               customer_key=key) as shops:
        a, b = shops.stores
        a.serve(CARD)
        assert a.till.terminal.issue("gift", 5_000)["approved"]
        a.sent()

        def known() -> bool:
            try:
                shops.client.card(CARD)
            except NotFound:
                return False
            return True

        assert wait_until(known, WAIT_S)
        a.serve(CARD)
        enrolled = a.till.terminal.enrol(phone=PHONE, first_name=FIRST_NAME, consent=False)
        assert enrolled["approved"] and enrolled["response"]["first_name"] == FIRST_NAME

        b.serve(CARD)
        sale = b.till.terminal.purchase(1_200)
        assert sale["approved"], sale
        assert sale["response"]["first_name"] == FIRST_NAME
        assert "first_name" not in sale["txn"]
        b.sent()
        assert b.till.drain(time.monotonic() + WAIT_S)
        [customer] = {row["customer_id"] for row in shops.ledger.books.read(
            lambda session, now: [{"customer_id": r[0]} for r in session.fetch(
                "SELECT customer_id FROM customer_cards WHERE card = ?", (CARD,))])}
        trail = Customers(shops.ledger.books, None).audit_trail(customer)
        assert [(e["action"], e["login"], e["detail"]) for e in trail
                if e["action"] == "greet"] == [("greet", "(open ledger)", f"card {CARD}")]
    stored = b"".join(path.read_bytes() for path in (tmp_path / "B").glob("gateway.db*"))
    assert FIRST_NAME.encode() not in stored
