"""One card, two stores: what a chain's customer expects (issue 14).

Two stores, each with its broker as deployed and its own gateway, and one ledger: on a real
PostgreSQL database, and on the single-store SQLite ledger (tests/support/two_stores.py).
The tills are the firmware's own; the cards emulated. Each test states one expectation.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.errors import NotFound
from tests.support.postgres import postgres_server, temporary_database
from tests.support.stack import wait_until
from tests.support.store_broker import StoreBroker
from tests.support.two_stores import FEED_POLL_S, Chain, Store, chain
from tools.mosquitto import MosquittoError

GIFT = "04a1a2a3a4a5a6"
FLOW_WAIT_S = 5.0  # far above the stores' POST_WITHIN_S (0.2 s), far below a settlement


@pytest.fixture(scope="module")
def pg_admin() -> Iterator[str]:
    with postgres_server() as dsn:
        yield dsn


@pytest.fixture(params=["postgres", "sqlite"])
def ledger_dsn(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite://{tmp_path / 'ledger.db'}"
        return
    with temporary_database(request.getfixturevalue("pg_admin")) as dsn:
        yield dsn


@pytest.fixture
def second_broker() -> Iterator[StoreBroker]:
    broker = StoreBroker()
    try:
        broker.start()
    except MosquittoError as error:
        broker.close()
        pytest.fail(str(error), pytrace=False)
    yield broker
    broker.stop()
    broker.close()


@pytest.fixture
def shops(ledger_dsn: str, store_broker: StoreBroker, second_broker: StoreBroker,
          tmp_path: Path) -> Iterator[Chain]:
    with chain(ledger_dsn, (store_broker, second_broker), tmp_path) as two:
        yield two


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
