"""Reward redemptions in the books: the item kept on the transaction, posted as a points
redemption by the engine's legs, and the `rewards` report per item, computed by hand.

The history (coffee of examples/programs.toml: a point is worth 0.10 EUR; the mug takes 50
points worth 5.00 and 2.50 in cash, the espresso 20 points worth 2.00):

    R1 issued (day 0); buys 200.00 in cash, 100 points (0); a mug (1); a mug (2); the first
    mug voided (3); an espresso (4)
    R2 issued (0); buys 100.00, 50 points (0); a mug (1); 3.00 of it refunded (2): 20 points
    worth 2.00 and 1.00 in cash come back (largest remainder, points whole)

By hand, per item: mug redeemed 3 (R1 twice, R2 once), refunded 2 (R1's void, R2's part);
points 50 + 50 - 50 + 50 - 20 = 80, worth 800, co-payments 250 * 3 - 250 - 100 = 400.
espresso: redeemed 1, refunded 0, points 20, worth 200, co-payment 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ledger import Books, open_books
from protocol import engine, engine_replay
from tests.ledger.builders import assert_txn_refused, at, batch, issue, purchase, refund
from tests.support import REPO_ROOT
from tools.programs import load_programs

COFFEE = load_programs(REPO_ROOT / "examples" / "programs.toml")["coffee"]
START_S = at("2025-03-01", hour=0)
DAY_S = 86_400


def _history() -> list[dict[str, Any]]:
    """The module docstring's operations through the engine, as the gateway settles them."""
    states: dict[str, Any] = {}
    ids: dict[str, str] = {}
    txns: list[dict[str, Any]] = []
    ops = [
        ("R1", 0, {"op": "issue", "id": "i1", "card": "R1"}),
        ("R1", 0, {"op": "purchase", "id": "p1", "amount_minor": 20_000}),
        ("R1", 1, {"op": "reward", "id": "m1", "item": "mug"}),
        ("R1", 2, {"op": "reward", "id": "m2", "item": "mug"}),
        ("R1", 3, {"op": "void", "id": "v1", "of": "m1"}),
        ("R1", 4, {"op": "reward", "id": "e1", "item": "espresso"}),
        ("R2", 0, {"op": "issue", "id": "i2", "card": "R2"}),
        ("R2", 0, {"op": "purchase", "id": "p2", "amount_minor": 10_000}),
        ("R2", 1, {"op": "reward", "id": "m3", "item": "mug"}),
        ("R2", 2, {"op": "refund", "id": "f2", "of": "m3", "amount_minor": 300}),
    ]
    for card, day, op in ops:
        states[card], effects = engine.apply(states.get(card), COFFEE, op, day)
        assert "declined" not in effects, effects
        txn_id = ids[op["id"]] = f"T1-{len(txns) + 1}"
        common = {"time": START_S + day * DAY_S, "version": effects["version"],
                  "legs": effects["legs"]}
        if op["op"] == "issue":
            txns.append(issue(txn_id, card, 0, program="coffee", **common))
        elif op["op"] in ("purchase", "reward"):
            extra = {"reward": effects["item"]} if op["op"] == "reward" else {}
            txns.append(purchase(txn_id, card, 0, effects["points_earned"],
                                 effects["amount_minor"], discount_minor=0,
                                 redeem_points=effects["points_redeemed"], **extra, **common))
        else:
            txns.append(refund(txn_id, ids[op["of"]], card, 0, effects["points_reversed"],
                               amount_minor=effects["amount_minor"],
                               redeem_points=effects["points_restored"], **common))
    return txns


HISTORY = _history()


@pytest.fixture
def books(dsn: str) -> Iterator[Books]:
    opened = open_books(dsn)
    assert opened.post_batch(batch("gw1-1", *HISTORY)).posted == len(HISTORY)
    yield opened
    opened.close()


def test_the_rewards_report_counts_each_item_net_of_its_refunds(books: Books) -> None:
    report = books.report("rewards", {"as_of": "2025-03-31", "window_days": "31"}).to_json()
    assert report["columns"] == ["program", "item", "currency", "redeemed", "refunded",
                                 "points", "points_worth_minor", "copay_minor"]
    assert report["rows"] == [
        {"program": "coffee", "item": "espresso", "currency": "EUR", "redeemed": 1,
         "refunded": 0, "points": 20, "points_worth_minor": 200, "copay_minor": 0},
        {"program": "coffee", "item": "mug", "currency": "EUR", "redeemed": 3, "refunded": 2,
         "points": 80, "points_worth_minor": 800, "copay_minor": 400},
    ]
    # The cards' points are the engine's: R1 100 - 50 - 50 + 50 - 20 = 30, R2 50 - 50 + 20.
    assert [books.card_balance(card)["points"] for card in ("R1", "R2")] == [30, 20]
    # Out of the window (the day before the history), nothing.
    before = books.report("rewards", {"as_of": "2025-02-28", "window_days": "30"}).to_json()
    assert before["rows"] == []


@pytest.mark.parametrize("bad", [
    dict(refund("T1-90", "T1-3", "R1", 0, 0, amount_minor=100), reward="mug"),
    purchase("T1-91", "R1", 0, 0, 100, reward="mug"),
], ids=["on-a-refund", "without-points-redeemed"])
def test_a_reward_is_only_a_purchase_redeeming_points(books: Books, bad: dict[str, Any]) -> None:
    assert_txn_refused(books, batch("gw1-2", bad), "field_invalid")


def test_a_card_with_rewards_replays_from_its_listed_history_to_the_books(books: Books) -> None:
    """A store taking the card on (or reading it in the feed) runs each redemption as one:
    as a plain purchase redeeming points it would earn points on the co-payment, and the
    replay would not end at the books' points."""
    for card in ("R1", "R2"):
        detail = books.card_detail(card)
        assert detail is not None
        state, reason = engine_replay.replay(card, COFFEE, detail["transactions"],
                                             START_S // DAY_S + 5, detail["value_minor"],
                                             detail["points"])
        assert (reason, state is not None) == (None, True), card
    assert [posted["reward"] for posted in detail["transactions"]] == [None, None, "mug", None]
