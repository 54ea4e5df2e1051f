"""A lost card replaced at the ledger, over real brokers, gateways and ledger (issue 17
item 3): two stores as deployed (tests/support/two_stores.py), one ledger on PostgreSQL and
on SQLite. Points earned at store A (with their earn days), a tier reached and value loaded;
the card replaced at the ledger (the CLI's client, POST /v1/cards/OLD/replace); at store B
the new card spends the value, redeems the points and shows the tier, and the old card is
refused online at both stores; the trial balance stays zero. And a sale of the old card
made offline while it was replaced: kept, alarmed, reported as exposure."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware.terminal import AUTH_TIMEOUT_MS
from protocol import txn
from tests.support.stack import wait_until
from tests.support.store_broker import StoreBroker
from tests.support.two_stores import Chain, Store, chain
from tools.card_ledger import CardClient

VIP = "04f1f2f3f4f5f6"  # program vip: points, tiers (no value)
VIP_NEW = "04f1f2f3f4f5f7"
CLUB = "04a9a8a7a6a5a4"  # program club: prepaid value and points
CLUB_NEW = "04a9a8a7a6a5a3"
WAIT_S = 10.0  # a posted change reaches the ledger and the other store far within this
GIFT = "04b9b8b7b6b5b4"
GIFT_NEW = "04b9b8b7b6b5b3"
OFFLINE_LIMITS = {"txn_minor_max": 5_000, "card_offline_minor_max": 5_000,
                  "terminal_offline_minor_max": 20_000, "offline_s_max": 600,
                  "offline_txn_max": 10}
OFFLINE_WAIT_MS = 300  # a till whose gateway is down gives up waiting this soon


def _look(store: Store, card: str) -> dict[str, Any]:
    store.serve(card)
    outcome = store.till.terminal.inquiry()
    assert outcome["approved"], outcome
    response: dict[str, Any] = outcome["response"]
    return response


def test_a_lost_card_replaced_carries_points_with_their_days_tier_and_value_to_the_other_store(
        shops: Chain) -> None:
    a, b = shops.stores
    replacer = CardClient(shops.ledger.url)
    # -- at A: a VIP card earns points and reaches gold; B has seen it (an inquiry) ---------
    a.serve(VIP)
    assert a.till.terminal.issue("vip", 0)["approved"]
    a.sent()
    assert wait_until(lambda: bool(shops.card(VIP)), WAIT_S)
    assert _look(b, VIP).get("tier") == "member"  # B takes the card on from the ledger
    a.serve(VIP)
    assert a.till.terminal.purchase(60_000, pay_from_card=False)["approved"]
    a.sent()
    assert wait_until(lambda: _look(a, VIP).get("tier") == "gold", WAIT_S)
    assert wait_until(lambda: _look(b, VIP).get("tier") == "gold", WAIT_S)
    assert wait_until(lambda: shops.card(VIP).get("points", 0) > 0, WAIT_S)
    points = shops.card(VIP)["points"]
    lots = a.entry(VIP)["state"]["lots"]
    assert sum(lot[1] for lot in lots) == points
    # -- the card is lost: replaced at the ledger -------------------------------------------
    done = replacer.replace_card(VIP, VIP_NEW, "lost on the train")
    assert (done["points"], done["value_minor"]) == (points, 0)
    for store in (a, b):  # each gateway moved the card's state: lots with their days, tier
        assert wait_until(lambda s=store: s.entry(VIP_NEW).get("points") == points, WAIT_S)
        moved = store.entry(VIP_NEW)["state"]
        assert moved["lots"] == lots and moved["tier"] == "gold"
        assert store.entry(VIP)["points"] == 0
    assert _look(b, VIP_NEW).get("tier") == "gold"
    b.serve(VIP_NEW)
    redeemed = b.till.terminal.purchase(10_000, pay_from_card=False, redeem_points=points)
    assert redeemed["approved"], redeemed
    assert redeemed["txn"]["redeem_points"] == points
    b.sent()
    assert wait_until(lambda: shops.card(VIP_NEW)["points"] < points, WAIT_S)
    for store in (a, b):  # the old card: blocked at the ledger, refused online everywhere
        assert wait_until(lambda s=store: s.refuses_blocked(VIP), WAIT_S)
    # -- a club card with value and points: replaced, spent at B -------------------------------
    a.serve(CLUB)
    assert a.till.terminal.issue("club", 5_000)["approved"]
    a.serve(CLUB)
    assert a.till.terminal.purchase(2_000)["approved"]
    a.sent()
    assert wait_until(lambda: shops.card(CLUB).get("value_minor") == 3_000, WAIT_S)
    club_points = shops.card(CLUB)["points"]
    assert club_points > 0
    done = replacer.replace_card(CLUB, CLUB_NEW, "card snapped")
    assert (done["value_minor"], done["points"]) == (3_000, club_points)
    assert wait_until(lambda: a.entry(CLUB_NEW).get("value_minor") == 3_000, WAIT_S)
    assert not b.entry(CLUB)["state"]  # B never saw CLUB: it takes CLUB_NEW on at its first tap
    assert _look(b, CLUB_NEW)["value_minor"] == 3_000
    b.serve(CLUB_NEW)
    spent = b.till.terminal.purchase(3_000, redeem_points=club_points)
    assert spent["approved"], spent
    b.sent()
    paid, earned = spent["txn"]["card_value_minor"], spent["txn"]["points"]
    assert spent["txn"]["redeem_points"] == club_points and 0 < paid < 3_000
    assert wait_until(lambda: (shops.card(CLUB_NEW)["value_minor"],
                               shops.card(CLUB_NEW)["points"]) == (3_000 - paid, earned),
                      WAIT_S)
    assert wait_until(lambda: a.refuses_blocked(CLUB), WAIT_S)
    assert wait_until(lambda: b.refuses_blocked(CLUB), WAIT_S)
    assert all(total == 0 for total in shops.client.trial_balance().values())
    assert shops.client.card(VIP)["block"]["reason"] == f"replaced by {VIP_NEW}"


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


def test_an_offline_sale_of_the_old_card_after_its_replacement_is_kept_as_exposure(
        offline_shops: Chain) -> None:
    """B's till, cut off while the card is replaced, sells on the old card offline: the
    sale is kept (it happened), alarmed at the ledger and in the exposure report; the new
    card keeps all it was given."""
    shops = offline_shops
    a, b = shops.stores
    a.serve(GIFT)
    assert a.till.terminal.issue("gift", 3_000)["approved"]
    a.sent()
    assert wait_until(lambda: bool(shops.card(GIFT)), WAIT_S)
    assert _look(b, GIFT)["value_minor"] == 3_000  # B's till last heard: 30.00
    b.gateway.stop()
    CardClient(shops.ledger.url).replace_card(GIFT, GIFT_NEW, "lost")
    b.till.terminal.auth_timeout_ms = OFFLINE_WAIT_MS
    b.serve(GIFT)
    sale = b.till.terminal.purchase(2_500)
    assert sale["approved"] and sale["txn"]["auth_mode"] == txn.AUTH_OFFLINE
    b.till.terminal.auth_timeout_ms = AUTH_TIMEOUT_MS
    b.gateway = b.new_gateway()
    b.gateway.start()
    b.sent()
    assert wait_until(lambda: shops.card(GIFT).get("value_minor") == -2_500, WAIT_S)
    assert shops.card(GIFT_NEW)["value_minor"] == 3_000
    alarms = [alarm for alarm in shops.client.alarms() if alarm["reason"] == "replaced_card_used"]
    assert len(alarms) == 1 and GIFT in alarms[0]["detail"]
    report = shops.client.report("exposure")
    assert [(row["card"], row["value_minor"]) for row in report["rows"]] == [(GIFT, -2_500)]
    assert report["summary"]["by_gateway"] == {"gwB": 2_500}
    assert all(total == 0 for total in shops.client.trial_balance().values())
