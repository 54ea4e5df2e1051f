"""One card, two stores: what a chain's customer expects (issue 14).

Two stores, each with its broker as deployed and its own gateway, and one ledger: on a real
PostgreSQL database, and on the single-store SQLite ledger (tests/support/two_stores.py).
The tills are the firmware's own; the cards emulated. Each test states one expectation.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.card_auth import CardAuthenticator, CardKeys
from ledger.errors import NotFound
from ledger.server import serve
from protocol import txn
from tests.support.stack import wait_until
from tests.support.store_broker import StoreBroker
from tests.support.two_stores import FEED_POLL_S, Chain, Store, chain
from tools.cards import new_master_keys
from tools.personalize import personalize
from tools.simulator.ntag424_card import Ntag424Card

GIFT = "04a1a2a3a4a5a6"
FLOW_WAIT_S = 5.0  # far above the stores' POST_WITHIN_S (0.2 s), far below a settlement


def test_records_reach_the_ledger_within_seconds_not_at_the_settlement(shops: Chain) -> None:
    a, _ = shops.stores
    a.serve(GIFT)
    assert a.till.terminal.issue("gift", 5_000)["approved"]
    a.sent()
    assert wait_until(lambda: _value(shops, GIFT) == 5_000, FLOW_WAIT_S)


def test_a_gift_card_sold_at_one_store_is_spent_at_the_other_right_away(
        shops: Chain) -> None:
    a, b = shops.stores
    a.serve(GIFT)
    assert a.till.terminal.issue("gift", 5_000)["approved"]
    a.sent()
    assert wait_until(lambda: _known(shops, GIFT), FLOW_WAIT_S)
    b.serve(GIFT)
    answer = b.till.terminal.purchase(1_200)
    assert answer["approved"], answer
    b.sent()
    assert wait_until(lambda: _value(shops, GIFT) == 3_800, FLOW_WAIT_S)


def _value(shops: Chain, card: str) -> int | None:
    """The card's value at the ledger; None while the ledger does not know the card."""
    try:
        return int(shops.client.card(card)["value_minor"])
    except NotFound:
        return None


def _known(shops: Chain, card: str) -> bool:
    return _value(shops, card) is not None


PREPAID = "04b1b2b3b4b5b6"
VIP = "04c1c2c3c4c5c6"
FEED_WAIT_S = 10.0  # a change posted at one store is applied at the other within this


def _look(store: Store, card: str) -> dict[str, Any]:
    """The card's balance as the store's till shows it (an inquiry, online)."""
    store.serve(card)
    outcome = store.till.terminal.inquiry()
    assert outcome["approved"], outcome
    response: dict[str, Any] = outcome["response"]
    return response


def _shows(store: Store, card: str, key: str, expected: Any) -> bool:
    """True once the store's till shows `expected` under `key` (asked again until then)."""
    return wait_until(lambda: _look(store, card).get(key) == expected, FEED_WAIT_S)


def _sold(store: Store, outcome: dict[str, Any]) -> str:
    """The txn id of an approved sale the store's till journaled."""
    assert outcome["approved"], outcome
    return f"{store.till_id}-{outcome['txn']['seq']}"


def test_value_spent_at_one_store_is_gone_at_the_other(shops: Chain) -> None:
    a, b = shops.stores
    a.serve(GIFT)
    assert a.till.terminal.issue("gift", 5_000)["approved"]
    a.sent()
    assert _shows(a, GIFT, "value_minor", 5_000)
    assert wait_until(lambda: _known(shops, GIFT), FLOW_WAIT_S)
    b.serve(GIFT)
    assert b.till.terminal.purchase(1_200)["approved"]
    b.sent()
    assert _shows(a, GIFT, "value_minor", 3_800)  # the customer back at A
    a.serve(GIFT)
    declined = a.till.terminal.purchase(4_000)
    assert not declined["approved"] and declined["reason"] == "insufficient_value"


def test_a_top_up_at_one_store_is_spendable_at_the_other(shops: Chain) -> None:
    a, b = shops.stores
    a.serve(PREPAID)
    assert a.till.terminal.issue("prepaid", 1_000)["approved"]
    a.sent()
    assert wait_until(lambda: _known(shops, PREPAID), FLOW_WAIT_S)
    assert _shows(b, PREPAID, "value_minor", 1_000)  # B takes the card on from the ledger
    a.serve(PREPAID)
    assert a.till.terminal.topup(5_000)["approved"]
    a.sent()
    assert _shows(b, PREPAID, "value_minor", 6_250)  # with the program's 5 % top-up bonus
    b.serve(PREPAID)
    assert b.till.terminal.purchase(6_000)["approved"]
    b.sent()
    assert wait_until(lambda: _value(shops, PREPAID) == 250, FLOW_WAIT_S)


def test_a_sale_made_at_one_store_is_refunded_at_the_other(shops: Chain) -> None:
    a, b = shops.stores
    a.serve(PREPAID)
    assert a.till.terminal.issue("prepaid", 5_000)["approved"]
    a.sent()
    assert wait_until(lambda: _known(shops, PREPAID), FLOW_WAIT_S)
    assert _shows(b, PREPAID, "value_minor", 5_000)
    a.serve(PREPAID)
    sale = _sold(a, a.till.terminal.purchase(2_000))
    a.sent()
    assert _shows(b, PREPAID, "value_minor", 3_000)
    b.serve(PREPAID)
    refund = b.till.terminal.refund(sale, 2_000)
    assert refund["approved"], refund
    b.sent()
    assert wait_until(lambda: _value(shops, PREPAID) == 5_000, FLOW_WAIT_S)
    assert _shows(a, PREPAID, "value_minor", 5_000)


def test_a_tier_reached_at_one_store_is_the_customers_tier_at_the_other(
        shops: Chain) -> None:
    a, b = shops.stores
    a.serve(VIP)
    assert a.till.terminal.issue("vip", 0)["approved"]
    a.sent()
    assert wait_until(lambda: _known(shops, VIP), FLOW_WAIT_S)
    assert _shows(b, VIP, "tier", "member")
    a.serve(VIP)
    assert a.till.terminal.purchase(60_000, pay_from_card=False)["approved"]
    a.sent()
    assert _shows(a, VIP, "tier", "gold")
    assert _shows(b, VIP, "tier", "gold")


SAVER = "04d1d2d3d4d5d6"


def test_discount_tracking_adds_up_the_spend_of_both_stores(shops: Chain) -> None:
    """saver: 100.00 of spend within 30 days earns 10 % off for 30 days. 60.00 at A and
    50.00 at B reach it at B; both stores then give it: 20.00 costs 18.00 at A."""
    a, b = shops.stores
    a.serve(SAVER)
    assert a.till.terminal.issue("saver", 0)["approved"]
    a.serve(SAVER)
    assert a.till.terminal.purchase(6_000, pay_from_card=False)["approved"]
    a.sent()
    assert wait_until(lambda: _known(shops, SAVER), FLOW_WAIT_S)
    assert _shows(b, SAVER, "discount_pct", 0)
    b.serve(SAVER)
    earned = b.till.terminal.purchase(5_000, pay_from_card=False)
    assert earned["approved"] and earned["txn"].get("discount_minor") is None
    b.sent()
    assert _shows(b, SAVER, "discount_pct", 10)
    assert _shows(a, SAVER, "discount_pct", 10)
    a.serve(SAVER)
    discounted = a.till.terminal.purchase(2_000, pay_from_card=False)
    assert discounted["approved"] and discounted["txn"]["discount_minor"] == 200


def test_a_store_restarted_applies_each_change_of_the_other_once(shops: Chain) -> None:
    a, b = shops.stores
    a.serve(PREPAID)
    assert a.till.terminal.issue("prepaid", 1_000)["approved"]
    a.sent()
    assert wait_until(lambda: _known(shops, PREPAID), FLOW_WAIT_S)
    assert _shows(b, PREPAID, "value_minor", 1_000)
    a.serve(PREPAID)
    assert a.till.terminal.topup(2_000)["approved"]  # 2,100 with the bonus
    a.sent()
    assert _shows(b, PREPAID, "value_minor", 3_100)
    b.gateway.stop()
    a.serve(PREPAID)
    assert a.till.terminal.topup(1_000)["approved"]  # 1,050, while B is down
    a.sent()
    b.gateway = b.new_gateway()
    b.gateway.start()
    assert _shows(b, PREPAID, "value_minor", 4_150)
    time.sleep(3 * FEED_POLL_S)  # more reads of the feed change nothing
    assert _look(b, PREPAID)["value_minor"] == 4_150
    assert b.gateway.feed.applied == 1


# -- SUN read counters: the ledger is their authority (issue 14) ---------------------------
SUN_GIFT = bytes.fromhex("04d1d2d3d4d5d6")
SUN_PREPAID = bytes.fromhex("04e1e2e3e4e5e6")


class SunChain:
    """Two stores whose gateways prove every tap by its SUN, and the chain's cards."""

    def __init__(self, shops: Chain, masters: Any, keys: CardKeys) -> None:
        self.shops = shops
        self.masters = masters
        self.authenticator = CardAuthenticator(keys)

    def card(self, uid: bytes) -> Ntag424Card:
        """A new card, personalized as the chain's technician does (AN10922 keys, SUN on)."""
        card = Ntag424Card(uid)
        personalize(card.apdu, self.masters, "https://tilltap.example/c", secrets.token_bytes)
        return card

    def counter(self, card: Ntag424Card, outcome: dict[str, Any]) -> int:
        """The read counter of the tap an approved operation was made on."""
        assert outcome["approved"], outcome
        counter = self.authenticator.read_counter({"card": card.uid.hex(),
                                                   "sun": outcome["txn"]["sun"]})
        assert counter is not None
        return counter


@pytest.fixture
def sun_shops(chain_ledger_dsn: str, store_broker: StoreBroker, second_broker: StoreBroker,
              tmp_path: Path) -> Iterator[SunChain]:
    masters = new_master_keys(b"two-stores")
    keys = CardKeys(masters.master(1), masters.master(2), masters.system_id)
    with chain(chain_ledger_dsn, (store_broker, second_broker), tmp_path,
               card_keys=keys) as two:
        yield SunChain(two, masters, keys)


def _copied(card: Ntag424Card) -> Ntag424Card:
    """A clone of the card as it is now: its next read repeats the card's next read."""
    return Ntag424Card.from_state(card.state())


def _highest_at(store: Store, card: Ntag424Card) -> int:
    """The highest read counter the store's gateway holds for the card (0: none)."""
    with store.gateway.cards.lock:
        entry = store.gateway.cards.cards.get(card.uid.hex()) or {}
        return int(entry.get("sun_counter") or 0)


@pytest.mark.parametrize("first", ["A", "B"])
def test_a_sun_read_accepted_at_one_store_is_refused_when_replayed_at_the_other(
        sun_shops: SunChain, first: str) -> None:
    a, b = sun_shops.shops.stores
    accepting, replaying = (a, b) if first == "A" else (b, a)
    card = sun_shops.card(SUN_GIFT)
    a.serve(card)
    assert a.till.terminal.issue("gift", 5_000)["approved"]
    a.sent()
    assert wait_until(lambda: _known(sun_shops.shops, card.uid.hex()), FLOW_WAIT_S)
    clone = _copied(card)  # skimmed: the customer's next tap, read by someone else
    accepting.serve(card)
    assert accepting.till.terminal.purchase(1_000)["approved"]
    replaying.serve(clone)
    replayed = replaying.till.terminal.purchase(1_000)
    assert (replayed["approved"], replayed.get("reason")) == (False, "card_replayed")
    replaying.serve(card)  # the customer's own next tap is new at every store
    assert replaying.till.terminal.purchase(500)["approved"]


def test_a_store_cut_off_from_the_ledger_refuses_a_read_its_feed_brought_from_the_other(
        sun_shops: SunChain, chain_ledger_dsn: str) -> None:
    """A top-up at A holds nothing at the ledger: its tap reaches the ledger with its
    record, and B from the card feed. Standing in, B refuses that read replayed, and still
    takes the card's own next tap."""
    shops = sun_shops.shops
    a, b = shops.stores
    card = sun_shops.card(SUN_PREPAID)
    uid = card.uid.hex()
    a.serve(card)
    assert a.till.terminal.issue("prepaid", 1_000)["approved"]
    a.sent()
    assert wait_until(lambda: _known(shops, uid), FLOW_WAIT_S)
    b.serve(card)
    assert b.till.terminal.inquiry()["approved"]  # B takes the card on from the ledger
    clone = _copied(card)
    a.serve(card)
    topped_up = sun_shops.counter(card, a.till.terminal.topup(2_000))
    a.sent()
    assert wait_until(lambda: shops.client.card(uid)["sun_counter"] == topped_up, FLOW_WAIT_S)
    assert wait_until(lambda: _highest_at(b, card) == topped_up, FEED_WAIT_S)
    port = int(shops.ledger.url.rsplit(":", 1)[1].rstrip("/"))
    shops.ledger.stop()  # B (and A) cut off from the ledger
    try:
        b.serve(clone)
        replayed = b.till.terminal.purchase(500)
        assert (replayed["approved"], replayed.get("reason")) == (False, "card_replayed")
        b.serve(card)
        stood_in = b.till.terminal.purchase(500)
        assert stood_in["approved"] and stood_in["txn"]["auth_mode"] == txn.AUTH_STAND_IN
        b.sent()
    finally:
        shops.ledger = serve(chain_ledger_dsn, port=port)


EXPIRING_GIFT = "04f1f2f3f4f5f6"
YEAR_AND_MORE_S = 400 * 86_400  # past the demo gift card's 365 days


def test_a_lapse_seen_by_two_stores_at_once_is_breakage_once(
        shops: Chain, caplog: pytest.LogCaptureFixture) -> None:
    """Both stores serve the gift card; a year later both sweep expiry before either has
    read the other's: the card lapses once at the ledger (its value to breakage, not twice)."""
    caplog.set_level(logging.INFO, logger="gateway.settle")
    a, b = shops.stores
    a.serve(EXPIRING_GIFT)
    assert a.till.terminal.issue("gift", 5_000)["approved"]
    a.sent()
    assert wait_until(lambda: _known(shops, EXPIRING_GIFT), FLOW_WAIT_S)
    b.serve(EXPIRING_GIFT)
    assert b.till.terminal.purchase(1_000)["approved"]
    b.sent()
    assert _shows(a, EXPIRING_GIFT, "value_minor", 4_000)
    later_s = time.time() + YEAR_AND_MORE_S
    assert a.gateway.sweep_expiry(later_s) == 1
    assert b.gateway.sweep_expiry(later_s) == 1  # it has not seen A's yet
    for store in (a, b):
        store.gateway.settle(now_s=later_s)
    assert wait_until(lambda: _value(shops, EXPIRING_GIFT) == 0, FLOW_WAIT_S)
    time.sleep(FEED_POLL_S * 5)  # both posts have long been judged: the value stays at 0
    assert _value(shops, EXPIRING_GIFT) == 0
    refused = [row for row in shops.client.report("refused")["rows"]
               if EXPIRING_GIFT in row["detail"]]
    assert [row["reason"] for row in refused] == ["expire_exceeds_balance"]
    # Nothing for a person to do: said once as a lapse posted elsewhere, not as an alarm.
    events = [getattr(record, "event", None) for record in caplog.records]
    assert events.count("lapse_posted_elsewhere") == 1
    assert not [record for record in caplog.records if getattr(record, "event", None) == "alarm"
                and getattr(record, "reason", None) == "expire_exceeds_balance"]
