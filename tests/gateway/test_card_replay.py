"""gateway/card_replay.py: a card taken on from the ledger's list of its transactions keeps
what balances alone lose (points lots and their earn days, spend towards a discount,
refundable sales), and is used only when it ends at the books' balances."""

from __future__ import annotations

from typing import Any

from gateway.card_replay import DAY_S, replayed
from protocol import engine, engine_offline
from tools.demo import DEMO_PROGRAMS

SAVER = DEMO_PROGRAMS["saver"]  # 100.00 in 30 days: 10 % off for 30 days
LOYALTY = DEMO_PROGRAMS["loyalty"]


def posted(txn_id: str, kind: str, day: int, amount: int = 0, card_value: int = 0,
           program: str | None = None, **terms: Any) -> dict[str, Any]:
    """A transaction as the ledger lists it (ledger/adopt_sql.py ADOPT_FIELDS)."""
    return {"txn_id": txn_id, "kind": kind, "time": day * DAY_S + 3600, "gateway_id": "gwA",
            "amount_minor": amount, "card_value_minor": card_value, "bonus_minor": 0,
            "points": terms.pop("points", 0), "ref_txn_id": terms.pop("ref", None),
            "program": program, "discount_minor": terms.pop("discount_minor", 0),
            "redeem_points": terms.pop("redeem_points", 0)}


def test_spend_made_elsewhere_counts_towards_the_discount_here() -> None:
    history = [posted("A-1", "issue", 10, program="saver"),
               posted("A-2", "purchase", 11, 6000)]
    state = replayed("C1", SAVER, history, 12, 0, 0)
    assert state is not None
    after, effects = engine.apply(state, SAVER, {"op": "purchase", "id": "B-1",
                                                 "amount_minor": 5000}, 12)
    assert effects["discount_until_day"] == 12 + 29
    assert engine_offline.snapshot(after, SAVER, 12)["discount_pct"] == 10


def test_points_keep_their_earn_days_and_a_sale_made_elsewhere_can_be_refunded_here() -> None:
    earned = LOYALTY["points"]["earn_bp"] * 5000 // 10_000 // (
        100 // LOYALTY["points"]["points_per_unit"])
    history = [posted("A-1", "issue", 100, program="loyalty"),
               posted("A-2", "purchase", 101, 5000, points=earned)]
    state = replayed("C2", LOYALTY, history, 150, 0, earned)
    assert state is not None
    assert [lot[0] for lot in state["lots"]] == [101]  # earned on day 101, not adopted on 150
    _, refund = engine.apply(state, LOYALTY, {"op": "refund", "id": "B-1", "of": "A-2",
                                              "amount_minor": 5000}, 150)
    assert refund["points_reversed"] == earned


def test_a_replay_that_does_not_end_at_the_books_is_not_used() -> None:
    history = [posted("A-1", "issue", 10, program="saver"),
               posted("A-2", "purchase", 11, 6000)]
    assert replayed("C1", SAVER, history, 12, 0, 0) is not None
    assert replayed("C1", SAVER, history, 12, 100, 0) is None  # the books say otherwise
    assert replayed("C1", SAVER, None, 12, 0, 0) is None  # too long to list
    assert replayed("C1", SAVER, history[1:], 12, 0, 0) is None  # never issued here
    assert replayed("C1", SAVER, [posted("A-1", "issue", 10, program="gift")], 12, 0, 0) is None
    declined = [posted("A-1", "issue", 10, program="saver"),
                posted("A-2", "refund", 11, 500, ref="A-9")]
    assert replayed("C1", SAVER, declined, 12, 0, 0) is None
