"""A company's shared budget end to end (issue 18 item 6): two stores as deployed
(tests/support/two_stores.py), one ledger on PostgreSQL and on SQLite. Company ACME has two
gift cards and 50.00 EUR a day, set up with `tilltap company`; each card buys at its own
store, together they reach the budget, and the next purchase of either is declined
``company_budget`` at the till, while a card of no company still buys; `tilltap company
show` then reports spent, held and available adding up to the budget. Amounts by hand."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware.terminal import AUTH_TIMEOUT_MS
from protocol import txn
from tests.support.stack import wait_until
from tests.support.store_broker import StoreBroker
from tests.support.two_stores import Chain, Store, chain
from tools.cli import main

ONE, TWO, OTHER = "04c1c2c3c4c5c1", "04c1c2c3c4c5c2", "04c1c2c3c4c5c9"
WAIT_S = 10.0  # a settled record reaches the ledger far within this
BUDGET_MINOR = 5_000
OFFLINE_LIMITS = {"txn_minor_max": 5_000, "card_offline_minor_max": 3_000,
                  "terminal_offline_minor_max": 20_000, "offline_s_max": 600,
                  "offline_txn_max": 10}
OFFLINE_WAIT_MS = 300  # a till whose gateway is down gives up waiting this soon


def company(argv: list[str], url: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """Run `tilltap company ARGV` against the chain's (open) ledger: its JSON answer."""
    capsys.readouterr()
    status = main(["company", *argv, "--ledger-url", url])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    return dict(json.loads(captured.out))


def buy(store: Store, card: str, amount_minor: int) -> dict[str, Any]:
    store.serve(card)
    outcome: dict[str, Any] = store.till.terminal.purchase(amount_minor)
    return outcome


def test_two_cards_at_two_stores_share_a_budget_and_the_next_sale_is_declined(
        shops: Chain, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = shops.stores
    url = shops.ledger.url
    # 80.00 on each company card (one sold at each store) and on a card of no company.
    for store, card in ((a, ONE), (b, TWO), (a, OTHER)):
        store.serve(card)
        assert store.till.terminal.issue("gift", 8_000)["approved"]
    a.sent()
    b.sent()
    for card in (ONE, TWO, OTHER):  # the ledger must know a card before it joins a company
        assert wait_until(lambda c=card: shops.card(c).get("value_minor") == 8_000, WAIT_S)
    created = company(["create", "ACME", "--name", "Acme Ltd", "--currency", "EUR",
                       "--budget-minor", str(BUDGET_MINOR), "--period", "day"], url, capsys)
    assert created["outcome"] == "created"
    for card in (ONE, TWO):
        assert company(["add-card", "ACME", card], url, capsys)["changed"] is True

    # 30.00 at A on one card, 20.00 at B on the other: 30.00 + 20.00 = 50.00, the budget.
    assert buy(a, ONE, 3_000)["approved"]
    assert buy(b, TWO, 2_000)["approved"]
    # One cent more on either card, at either store, passes it; each card alone still
    # holds 50.00 and 60.00 of its own value, so it is the company's budget that declines.
    for store, card in ((b, TWO), (a, ONE), (b, ONE)):
        declined = buy(store, card, 1)
        assert (declined["approved"], declined.get("reason")) == (False, "company_budget")
    # A card of no company is not held to it.
    assert buy(a, OTHER, 4_000)["approved"]
    a.sent()
    b.sent()

    # Settled, the holds became spend: 3000 + 2000 = 5000 spent, nothing held, 0 left.
    def shown() -> dict[str, Any]:
        return company(["show", "ACME"], url, capsys)

    assert wait_until(lambda: shown()["spent_minor"] == BUDGET_MINOR, WAIT_S)
    report = shown()
    assert (report["spent_minor"], report["held_minor"], report["available_minor"]) == (
        5_000, 0, 0)
    assert report["budget_minor"] == BUDGET_MINOR == (
        report["spent_minor"] + report["held_minor"] + report["available_minor"])
    assert {card["card"]: card["spent_minor"] for card in report["cards"]} == {
        ONE: 3_000, TWO: 2_000}
    # OTHER's sale is no company's: it may reach the books after the company's two.
    assert wait_until(lambda: (shops.card(ONE)["value_minor"], shops.card(TWO)["value_minor"],
                               shops.card(OTHER)["value_minor"]) == (5_000, 6_000, 4_000),
                      WAIT_S)

    # Raised to 60.00, 10.00 more may be spent, at B on the card sold at A.
    company(["create", "ACME", "--name", "Acme Ltd", "--currency", "EUR", "--budget-minor",
             "6000", "--period", "day"], url, capsys)
    assert buy(b, ONE, 1_000)["approved"]
    assert buy(a, TWO, 1)["reason"] == "company_budget"
    assert all(total == 0 for total in shops.client.trial_balance().values())


@pytest.fixture
def offline_shops(chain_ledger_dsn: str, store_broker: StoreBroker,
                  second_broker: StoreBroker, tmp_path: Path) -> Iterator[Chain]:
    """The chain with offline limits in every till's signed configuration: 30.00 a card."""
    with chain(chain_ledger_dsn, (store_broker, second_broker), tmp_path,
               OFFLINE_LIMITS) as two:
        for store in two.stores:
            assert wait_until(lambda s=store: (s.till.service(20),
                                               s.till.settings.limits)[1] == OFFLINE_LIMITS)
        yield two


def test_an_offline_sale_passes_the_budget_by_at_most_the_card_offline_limit(
        offline_shops: Chain, capsys: pytest.CaptureFixture[str]) -> None:
    """Online, ONE spends the whole 50.00; B's till, cut off from its gateway, sells 30.00
    more on TWO offline (its card_offline_minor_max): the ledger posts it as it happened, so
    spent is 8000 and available -3000, beyond the budget by exactly the offline limit; back
    online, every sale of the company's cards is declined company_budget."""
    shops = offline_shops
    a, b = shops.stores
    url = shops.ledger.url
    for store, card in ((a, ONE), (b, TWO)):
        store.serve(card)
        assert store.till.terminal.issue("gift", 8_000)["approved"]
    a.sent()
    b.sent()
    for card in (ONE, TWO):
        assert wait_until(lambda c=card: shops.card(c).get("value_minor") == 8_000, WAIT_S)
    company(["create", "ACME", "--name", "Acme Ltd", "--currency", "EUR", "--budget-minor",
             str(BUDGET_MINOR), "--period", "day"], url, capsys)
    for card in (ONE, TWO):
        company(["add-card", "ACME", card], url, capsys)
    assert buy(a, ONE, BUDGET_MINOR)["approved"]
    assert buy(b, TWO, 1)["reason"] == "company_budget"  # B's till has seen TWO online
    b.gateway.stop()
    b.till.terminal.auth_timeout_ms = OFFLINE_WAIT_MS
    assert buy(b, TWO, 3_001)["reason"] == "offline_card_limit"
    sale = buy(b, TWO, 3_000)
    assert sale["approved"] and sale["txn"]["auth_mode"] == txn.AUTH_OFFLINE
    b.till.terminal.auth_timeout_ms = AUTH_TIMEOUT_MS
    b.gateway = b.new_gateway()
    b.gateway.start()
    a.sent()
    b.sent()
    assert wait_until(lambda: company(["show", "ACME"], url, capsys)["spent_minor"] == 8_000,
                      WAIT_S)
    shown = company(["show", "ACME"], url, capsys)
    assert (shown["held_minor"], shown["available_minor"]) == (0, -3_000)
    assert -shown["available_minor"] == OFFLINE_LIMITS["card_offline_minor_max"]
    for store, card in ((a, TWO), (b, ONE)):
        assert buy(store, card, 1)["reason"] == "company_budget"
