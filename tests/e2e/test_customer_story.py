"""A customer's life across a chain, end to end (issue 17, "Done when"): two stores as
deployed (tests/support/two_stores.py: each its broker with TLS, logins and ACL, its own
gateway, a till running the firmware), one ledger with its customer key, on PostgreSQL and
on the single-store SQLite ledger.

A regular enrols a VIP card at store A's counter, reaches gold there, and buys at store B,
which greets them and gives gold's discount; a second card (prepaid) joins them at B's
counter. Their history at the ledger lists the sales of both stores with running balances.
The VIP card is lost and replaced: its points with their earn days, its tier and its
discount carry to the new card, which redeems at B; the prepaid card is replaced too, its
value carried; both old cards are refused at both stores. The customer's export holds their
record and history; the erase removes what is personal, leaves every balance and the trial
balance as they were, and the books still list the history without a name.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.errors import NotFound
from ledger.personal_crypto import load_key_file, new_key_file
from tests.support.stack import wait_until
from tests.support.store_broker import StoreBroker
from tests.support.two_stores import Chain, Store, chain
from tools.card_ledger import CardClient
from tools.customers import CustomersClient

VIP, VIP_NEW = "04c1c2c3c4c5c6", "04c1c2c3c4c5c7"  # program vip: points, tiers with discounts
CLUB, CLUB_NEW = "04c9c8c7c6c5c4", "04c9c8c7c6c5c3"  # program club: prepaid value and points
PHONE, PHONE_OTHERWISE, PHONE_E164 = "+44 7700 900123", "+44-7700-900-123", "+447700900123"
FIRST_NAME, NAME = "Ottoline", "Ottoline Brackenbury"
WAIT_S = 10.0  # a posted change reaches the ledger and the other store far within this
GOLD_SPEND_MINOR = 60_000  # docs/programs.md: the demo's vip program reaches gold on this
GOLD_DISCOUNT_PCT = 10


@pytest.fixture
def shops(chain_ledger_dsn: str, store_broker: StoreBroker, second_broker: StoreBroker,
          tmp_path: Path) -> Iterator[Chain]:
    new_key_file(tmp_path / "customer.key")
    with chain(chain_ledger_dsn, (store_broker, second_broker), tmp_path,
               customer_key=load_key_file(tmp_path / "customer.key")) as two:
        yield two


def _sell(store: Store, shops: Chain, card: str, program: str, value_minor: int) -> None:
    store.serve(card)
    assert store.till.terminal.issue(program, value_minor)["approved"]
    store.sent()
    assert wait_until(lambda: bool(shops.card(card)), WAIT_S)


def _balances(shops: Chain) -> dict[str, tuple[int, int]]:
    return {card: (shops.card(card)["value_minor"], shops.card(card)["points"])
            for card in (VIP, VIP_NEW, CLUB, CLUB_NEW)}


def test_a_customer_enrolled_at_one_store_lives_across_the_chain_and_is_erased_cleanly(
        shops: Chain) -> None:
    a, b = shops.stores
    office = CustomersClient(shops.ledger.url)
    # -- store A: a VIP card sold and enrolled at the counter, then a sale that reaches gold --
    _sell(a, shops, VIP, "vip", 0)
    a.serve(VIP)
    enrolled = a.till.terminal.enrol(phone=PHONE, first_name=NAME, consent=True)
    assert enrolled["approved"] and enrolled["response"]["first_name"] == FIRST_NAME
    customer_id = office.find_customer("phone", PHONE_OTHERWISE)["customer_id"]
    a.serve(VIP)
    assert a.till.terminal.purchase(GOLD_SPEND_MINOR, pay_from_card=False)["approved"]
    a.sent()
    assert wait_until(lambda: shops.card(VIP).get("points", 0) > 0, WAIT_S)

    # -- store B: greeted by name, gold's discount on the first sale there -------------------
    b.serve(VIP)
    at_b = b.till.terminal.purchase(2_000, pay_from_card=False)
    assert at_b["approved"], at_b
    assert at_b["response"]["first_name"] == FIRST_NAME
    assert at_b["txn"]["discount_minor"] == 2_000 * GOLD_DISCOUNT_PCT // 100
    b.sent()
    # A prepaid card joins the same customer at B's counter (the phone written otherwise).
    _sell(b, shops, CLUB, "club", 5_000)
    b.serve(CLUB)
    joined = b.till.terminal.enrol(phone=PHONE_OTHERWISE)
    assert joined["approved"] and joined["response"]["joined"] is True
    b.serve(CLUB)
    assert b.till.terminal.purchase(1_500)["approved"]
    b.sent()
    assert wait_until(lambda: shops.card(CLUB).get("value_minor") == 3_500, WAIT_S)

    # -- the customer's history: both cards, both stores, running balances -------------------
    history = office.customer_history(customer_id)["transactions"]
    assert {(row["card"], row["store"], row["kind"]) for row in history} >= {
        (VIP, "gwA", "issue"), (VIP, "gwA", "purchase"), (VIP, "gwB", "purchase"),
        (CLUB, "gwB", "issue"), (CLUB, "gwB", "purchase")}
    vip_rows = [row for row in history if row["card"] == VIP]
    assert vip_rows[-1]["points_balance"] == shops.card(VIP)["points"]
    club_rows = [row for row in history if row["card"] == CLUB]
    assert club_rows[-1]["value_balance_minor"] == 3_500

    # -- the VIP card is lost: points with their days, tier and discount move --------------
    points = shops.card(VIP)["points"]
    lots = b.entry(VIP)["state"]["lots"]  # B made the card's last sale: its lots are newest
    assert sum(lot[1] for lot in lots) == points and len(lots) == 2  # one lot per store's sale
    replacer = CardClient(shops.ledger.url)
    assert replacer.replace_card(VIP, VIP_NEW, "lost")["points"] == points
    assert replacer.replace_card(CLUB, CLUB_NEW, "lost")["value_minor"] == 3_500
    for store in (a, b):
        assert wait_until(lambda s=store: s.entry(VIP_NEW).get("points") == points, WAIT_S)
    moved = b.entry(VIP_NEW)["state"]
    assert moved["lots"] == lots and moved["tier"] == "gold"
    b.serve(VIP_NEW)
    redeemed = b.till.terminal.purchase(10_000, pay_from_card=False, redeem_points=points)
    assert redeemed["approved"], redeemed
    assert redeemed["txn"]["redeem_points"] == points
    assert redeemed["txn"]["discount_minor"] > 0  # gold's discount on the new card
    b.serve(CLUB_NEW)
    assert b.till.terminal.purchase(500)["approved"]
    b.sent()
    assert wait_until(lambda: shops.card(CLUB_NEW).get("value_minor") == 3_000, WAIT_S)
    for store in (a, b):
        for old in (VIP, CLUB):
            assert wait_until(lambda s=store, c=old: s.refuses_blocked(c), WAIT_S)
    record = office.customer(customer_id)
    assert {card["card"] for card in record["cards"]} >= {VIP_NEW, CLUB_NEW}

    # -- export, then erase: personal data gone, the books unchanged ---------------------------
    exported = office.export_customer(customer_id)
    assert (exported["customer"]["name"], exported["customer"]["phone"]) == (NAME, PHONE_E164)
    exported_txns = {row["txn_id"] for row in exported["history"]["transactions"]}
    assert {row["txn_id"] for row in history} <= exported_txns  # the lost cards' sales too
    trial, balances = shops.client.trial_balance(), _balances(shops)
    assert all(total == 0 for total in trial.values())
    office.erase_customer(customer_id)
    assert shops.client.trial_balance() == trial
    assert _balances(shops) == balances
    erased = office.customer(customer_id)
    assert erased.get("name") is None and erased.get("phone") is None
    with pytest.raises(NotFound):
        office.find_customer("phone", PHONE)
    kept = office.card_history(VIP)["transactions"]
    assert {(row["store"], row["kind"]) for row in kept} >= {
        ("gwA", "purchase"), ("gwB", "purchase"), ("DESK", "transfer")}  # the ledger's desk
