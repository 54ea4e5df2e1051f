"""One card, two stores, one of them cut off: what it may still approve, and what the center
does with an overdraft (issue 14 item 5; docs/protocol.md 5.3 and 5.4).

A till cut off from its gateway spends a card at most down to the value of its last answer
for it; a gateway cut off from the ledger stands in on its card book, which the ledger's
card feed keeps up to date with the other store; points are only ever redeemed against the
ledger's count. What is still overdrawn is blocked by the center for every store and shown
in its exposure report. Same harness as test_two_stores.py, on PostgreSQL and on SQLite.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware.terminal import AUTH_TIMEOUT_MS
from ledger.errors import NotFound
from ledger.server import serve
from protocol import txn
from tests.support.stack import wait_until
from tests.support.store_broker import StoreBroker
from tests.support.two_stores import Chain, Store, chain

GIFT, PREPAID, LOYAL = "04e1e2e3e4e5e6", "04e7e8e9eaebec", "04edeeeff0f1f2"
OFFLINE_LIMITS = {"txn_minor_max": 5_000, "card_offline_minor_max": 5_000,
                  "terminal_offline_minor_max": 20_000, "offline_s_max": 600,
                  "offline_txn_max": 10}
OFFLINE_WAIT_MS = 300  # a till whose gateway is down gives up waiting this soon
FEED_WAIT_S = 10.0  # a change posted at one store is applied at the other within this


@pytest.fixture
def offline_shops(chain_ledger_dsn: str, store_broker: StoreBroker,
                  second_broker: StoreBroker, tmp_path: Path) -> Iterator[Chain]:
    """The chain with offline limits in every till's signed configuration."""
    with chain(chain_ledger_dsn, (store_broker, second_broker), tmp_path,
               OFFLINE_LIMITS) as two:
        for store in two.stores:
            assert wait_until(lambda s=store: (s.till.service(20),
                                               s.till.settings.limits)[1] == OFFLINE_LIMITS)
        yield two


def _look(store: Store, card: str) -> dict[str, Any]:
    """The card as the store's till shows it online; {"reason"} while it is declined (a card
    the store will only know once the other store's records reached the ledger)."""
    store.serve(card)
    outcome = store.till.terminal.inquiry()
    response: dict[str, Any] = outcome["response"] or {"reason": outcome["reason"]}
    return response


def _shows(store: Store, card: str, key: str, expected: Any) -> bool:
    return wait_until(lambda: _look(store, card).get(key) == expected, FEED_WAIT_S)


def _at_ledger(shops: Chain, card: str, key: str) -> Any:
    try:
        return shops.client.card(card)[key]
    except NotFound:
        return None


def _issue(store: Store, card: str, program: str, value_minor: int) -> None:
    store.serve(card)
    assert store.till.terminal.issue(program, value_minor)["approved"]
    store.sent()


def test_a_till_cut_off_spends_no_more_than_it_last_heard_and_the_overdraft_is_blocked(
        offline_shops: Chain) -> None:
    shops = offline_shops
    a, b = shops.stores
    _issue(a, GIFT, "gift", 3_000)
    assert _shows(b, GIFT, "value_minor", 3_000)  # B's till last heard: 30.00
    a.serve(GIFT)
    assert a.till.terminal.purchase(2_000)["approved"]
    a.sent()
    b.gateway.stop()
    b.till.terminal.auth_timeout_ms = OFFLINE_WAIT_MS
    b.serve(GIFT)
    assert b.till.terminal.purchase(3_001)["reason"] == "insufficient_value"
    b.serve(GIFT)
    sale = b.till.terminal.purchase(2_500)  # within what B heard; A spent 20.00 meanwhile
    assert sale["approved"] and sale["txn"]["auth_mode"] == txn.AUTH_OFFLINE
    b.serve(GIFT)
    assert b.till.terminal.purchase(501)["reason"] == "insufficient_value"
    b.till.terminal.auth_timeout_ms = AUTH_TIMEOUT_MS
    b.gateway = b.new_gateway()
    b.gateway.start()
    b.sent()
    # At the center: overdrawn by 15.00, blocked for every store, and reported.
    assert wait_until(lambda: _at_ledger(shops, GIFT, "value_minor") == -1_500, FEED_WAIT_S)
    assert shops.client.card(GIFT)["blocked"] is True
    report = shops.client.report("exposure")
    assert [(row["card"], row["value_minor"], row["blocked"]) for row in report["rows"]] == [
        (GIFT, -1_500, True)]
    # Per store and terminal: what each sold on the card with no hold at the center.
    assert report["summary"]["by_gateway"] == {"gwB": 2_500}
    assert [(sale["terminal"], sale["card"]) for sale in report["summary"]["sales"]] == [
        ("B1", GIFT)]
    # The block reaches A's gateway and, in its signed configuration, A's till: the card is
    # refused there, online and offline.
    assert wait_until(lambda: (a.till.service(20), GIFT in a.till.settings.hotlist)[1],
                      FEED_WAIT_S)
    a.serve(GIFT)
    assert a.till.terminal.purchase(100, pay_from_card=False)["reason"] == "card_blocked"


def test_a_store_cut_off_from_the_center_stands_in_on_what_the_other_store_did(
        shops: Chain, chain_ledger_dsn: str) -> None:
    a, b = shops.stores
    _issue(a, GIFT, "gift", 3_000)
    _issue(a, PREPAID, "prepaid", 2_000)
    a.serve(GIFT)
    assert a.till.terminal.purchase(3_000)["approved"]  # spent to zero at A
    a.sent()
    assert _shows(b, GIFT, "value_minor", 0)  # B's card book has it from the card feed
    assert _shows(b, PREPAID, "value_minor", 2_000)
    port = shops.ledger.port
    shops.ledger.stop()
    try:
        b.serve(GIFT)
        assert b.till.terminal.purchase(100)["reason"] == "insufficient_value"
        b.serve(PREPAID)
        stood_in = b.till.terminal.purchase(500)
        assert stood_in["approved"], stood_in
        assert stood_in["response"]["auth_mode"] == txn.AUTH_STAND_IN
        b.sent()
    finally:
        shops.ledger = serve(chain_ledger_dsn, port=port)
    assert wait_until(lambda: _at_ledger(shops, PREPAID, "value_minor") == 1_500, FEED_WAIT_S)
    assert _at_ledger(shops, GIFT, "value_minor") == 0
    assert shops.client.report("exposure")["rows"] == []


def test_points_redeemed_at_one_store_cannot_be_redeemed_again_at_the_other(
        shops: Chain) -> None:
    a, b = shops.stores
    _issue(a, LOYAL, "loyalty", 0)
    a.serve(LOYAL)
    assert a.till.terminal.purchase(20_000, pay_from_card=False)["approved"]  # 200 points
    a.sent()
    assert _shows(b, LOYAL, "points_balance", 200)
    b.serve(LOYAL)
    redeemed = b.till.terminal.purchase(5_000, pay_from_card=False, redeem_points=150)
    assert redeemed["approved"], redeemed
    b.sent()
    a.serve(LOYAL)  # the customer tries the same 150 points at A
    again = a.till.terminal.purchase(5_000, pay_from_card=False, redeem_points=150)
    assert (again["approved"], again["reason"]) == (False, "insufficient_points")
    # 200 - 150, and 48 earned on the 48.50 paid at B: never below zero.
    assert wait_until(lambda: _at_ledger(shops, LOYAL, "points") == 98, FEED_WAIT_S)
