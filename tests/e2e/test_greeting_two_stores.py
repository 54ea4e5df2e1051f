"""A regular is greeted by first name at every store (issue 17; docs/ledger.md "Greeting at
every store"): two stores, each its broker as deployed and its own gateway, one ledger with
its customer key (tests/support/two_stores.py), the tills the firmware's own.

A card sold and enrolled at store A is tapped for the first time at store B: B's gateway
takes the card on from the ledger, whose answer names the customer's first name, and B's
approval greets them by it. B's store file never holds the name. Once the customer's
birthday is on record, a second card of theirs (loyalty), first tapped at B in their
birthday week, gets the program's birthday offer: the answer names it and the ledger posts
its discount and bonus points; B's store never holds the birthday either. On the
single-store SQLite ledger only: the ledger's side is tested on PostgreSQL too
(tests/ledger/).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from ledger.customers import Customers
from ledger.errors import NotFound
from ledger.personal_crypto import load_key_file, new_key_file
from tests.support.stack import wait_until
from tests.support.store_broker import StoreBroker
from tests.support.two_stores import chain

CARD = "04d1d2d3d4d5d6"
LOYALTY_CARD = "04e1e2e3e4e5e6"
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
        a.serve(LOYALTY_CARD)
        assert a.till.terminal.issue("loyalty", 0)["approved"]
        a.sent()

        def known() -> bool:
            try:
                shops.client.card(CARD)
                shops.client.card(LOYALTY_CARD)
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

        # -- their birthday week: the loyalty card's first sale at B gets the offer --------
        today = datetime.now(UTC).date()
        birthday = f"{1992 if (today.month, today.day) == (2, 29) else 1990}-{today:%m-%d}"
        Customers(shops.ledger.books, key).update(customer, {"birthday": birthday}, "admin")
        a.serve(LOYALTY_CARD)
        assert a.till.terminal.enrol(phone=PHONE, consent=False)["approved"]
        b.serve(LOYALTY_CARD)
        sale = b.till.terminal.purchase(1_200, pay_from_card=False)
        assert sale["approved"] and sale["response"]["promotions"] == ["birthday"], sale
        # 10 % off 12.00; 1 point per euro of the 10.80 paid (10) and 100 bonus points.
        assert (sale["txn"]["discount_minor"], sale["txn"]["points"]) == (120, 110)
        b.sent()
        assert wait_until(lambda: shops.client.card(LOYALTY_CARD)["points"] == 110, WAIT_S)
        assert ("greet", "(open ledger)", f"card {LOYALTY_CARD}, birthday") in [
            (e["action"], e["login"], e["detail"])
            for e in Customers(shops.ledger.books, None).audit_trail(customer)]
    stored = b"".join(path.read_bytes() for path in (tmp_path / "B").glob("gateway.db*"))
    assert FIRST_NAME.encode() not in stored
    assert f'"{birthday[5:]}"'.encode() not in stored


REFRESH_S = 0.5  # store B looks a known card up again this soon (6 hours as shipped)


def test_a_store_that_knew_the_card_learns_the_birthday_recorded_since_for_the_next_sale(
        store_broker: StoreBroker, second_broker: StoreBroker, tmp_path: Path) -> None:
    """B takes the loyalty card on before its customer exists (no greeting, no birthday).
    The customer then enrols at A and their birthday (today) is recorded. At B, the card's
    next sale after the refresh time is priced as before (GREETING_LEARNED_FOR_NEXT_SALE)
    and has the card looked up again off the counter's path; the sale after it greets the
    customer and gets the birthday offer. Before, B never asked again."""
    new_key_file(tmp_path / "customer.key")
    key = load_key_file(tmp_path / "customer.key")
    with chain(f"sqlite://{tmp_path / 'ledger.db'}", (store_broker, second_broker), tmp_path,
               customer_key=key) as shops:
        a, b = shops.stores
        b.gateway.stop()
        b.greeting_refresh_s = REFRESH_S
        b.gateway = b.new_gateway()
        b.gateway.start()
        a.serve(LOYALTY_CARD)
        assert a.till.terminal.issue("loyalty", 0)["approved"]
        a.sent()
        assert wait_until(lambda: shops.card(LOYALTY_CARD).get("value_minor") == 0, WAIT_S)
        b.serve(LOYALTY_CARD)
        first = b.till.terminal.purchase(1_000, pay_from_card=False)
        assert first["approved"] and "first_name" not in first["response"]
        assert not first["response"].get("promotions")

        a.serve(LOYALTY_CARD)
        assert a.till.terminal.enrol(phone=PHONE, first_name=FIRST_NAME,
                                     consent=False)["approved"]
        [customer] = {row["customer_id"] for row in shops.ledger.books.read(
            lambda session, now: [{"customer_id": r[0]} for r in session.fetch(
                "SELECT customer_id FROM customer_cards WHERE card = ?", (LOYALTY_CARD,))])}
        today = datetime.now(UTC).date()
        birthday = f"{1992 if (today.month, today.day) == (2, 29) else 1990}-{today:%m-%d}"
        Customers(shops.ledger.books, key).update(customer, {"birthday": birthday}, "admin")
        time.sleep(REFRESH_S)

        b.serve(LOYALTY_CARD)
        priced_before = b.till.terminal.purchase(1_000, pay_from_card=False)
        assert priced_before["approved"] and not priced_before["response"].get("promotions")
        assert wait_until(lambda: b.gateway.greetings.birthday(LOYALTY_CARD) == birthday[5:],
                          WAIT_S)
        b.serve(LOYALTY_CARD)
        sale = b.till.terminal.purchase(1_200, pay_from_card=False)
        assert sale["approved"] and sale["response"]["promotions"] == ["birthday"], sale
        assert sale["response"]["first_name"] == FIRST_NAME
        # 10 % off 12.00; 1 point per euro of the 10.80 paid (10) and 100 bonus points.
        assert (sale["txn"]["discount_minor"], sale["txn"]["points"]) == (120, 110)
