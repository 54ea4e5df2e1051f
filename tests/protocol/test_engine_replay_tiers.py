"""A tier by visits or by length of membership, rebuilt from the ledger's list of a card's
transactions (protocol/engine_replay.py) as the engine that took them built it: a gateway
taking the card on and the ledger's `card show` see the tier the counters saw.
Programs `frequent` and `longtime` of examples/programs.toml (docs/programs.md)."""

from __future__ import annotations

from typing import Any

from protocol import engine
from protocol.engine_replay import described, replay
from tests.support import REPO_ROOT
from tests.support.engine_history import DAY0, posted
from tools.programs import load_programs

PROGRAMS = load_programs(REPO_ROOT / "examples" / "programs.toml")
FREQUENT = PROGRAMS["frequent"]  # purchases on 4 days in 30: 5 % off; 14 days below: down
LONGTIME = PROGRAMS["longtime"]  # a year since issue: 2 % off, 1.5 x points

# (txn_id, day, price, discount given): two on DAY0 are one visit; B-2 on DAY0 + 15 is the
# fourth visit (frequent at once), B-3 that day gets 5 % off 10.00.
SALES = [("A-2", DAY0, 1000, 0), ("A-3", DAY0, 500, 0), ("B-1", DAY0 + 5, 1000, 0),
         ("A-4", DAY0 + 10, 1000, 0), ("B-2", DAY0 + 15, 2000, 0), ("B-3", DAY0 + 15, 1000, 50)]


def _history(sales: list[tuple[str, int, int, int]]) -> list[dict[str, Any]]:
    return [posted("A-1", "issue", DAY0, program="frequent")] + [
        posted(txn_id, "purchase", day, price, discount_minor=discount)
        for txn_id, day, price, discount in sales]


def _at_the_counters(refund_of: str | None = None) -> dict[str, Any]:
    """The card as the engine built it sale by sale (what the stores' gateways held)."""
    state, _ = engine.apply(None, FREQUENT, {"op": "issue", "id": "A-1", "card": "C1"}, DAY0)
    for txn_id, day, price, _discount in SALES:
        state, effects = engine.apply(state, FREQUENT, {"op": "purchase", "id": txn_id,
                                                        "amount_minor": price}, day)
        assert "declined" not in effects
    if refund_of is not None:
        state, _ = engine.apply(state, FREQUENT, {"op": "refund", "id": "R-1", "of": refund_of},
                                DAY0 + 16)
    state, _ = engine.apply(state, FREQUENT, {"op": "tick"}, DAY0 + 20)
    return state


def test_a_replay_rebuilds_the_tier_by_visits_and_the_visits_behind_it() -> None:
    state, reason = replay("C1", FREQUENT, _history(SALES), DAY0 + 20, 0, 0)
    assert reason is None and state is not None
    counters = _at_the_counters()
    assert state["tier"] == counters["tier"] == "frequent"
    assert state["tier_visits"] == counters["tier_visits"] == [
        [DAY0, 2], [DAY0 + 5, 1], [DAY0 + 10, 1], [DAY0 + 15, 2]]
    view = described(state, FREQUENT, DAY0 + 20)
    assert (view["tier_visits"], view["tier_spend_minor"]) == (4, None)
    assert view["discount"]["pct"] == 5


def test_a_replayed_refund_of_a_whole_purchase_takes_its_visit_back() -> None:
    """A-4 refunded on DAY0 + 16: DAY0 + 10 is no visit any more (3 of 4): down to the tier
    held before A-4 (guest), as at the counter."""
    refund = posted("R-1", "refund", DAY0 + 16, 1000, ref="A-4")
    state, reason = replay("C1", FREQUENT, [*_history(SALES), refund], DAY0 + 20, 0, 0)
    assert reason is None and state is not None
    counters = _at_the_counters(refund_of="A-4")
    assert state["tier"] == counters["tier"] == "guest"
    assert state["tier_visits"] == counters["tier_visits"]
    assert described(state, FREQUENT, DAY0 + 20)["tier_visits"] == 3


def test_a_replay_counts_membership_from_the_card_s_issue_in_the_books() -> None:
    """Issued on DAY0; 100.00 then earns 100 points. A year on, loyal: 2.00 off 100.00 and
    98 * 1.5 = 147 points, as posted."""
    history = [posted("L-1", "issue", DAY0, program="longtime"),
               posted("L-2", "purchase", DAY0, 10000, points=100)]
    young, _ = replay("C2", LONGTIME, history, DAY0 + 364, 0, 100)
    assert young is not None and young["tier"] == "new"
    history.append(posted("L-3", "purchase", DAY0 + 365, 10000, points=147,
                          discount_minor=200))
    state, reason = replay("C2", LONGTIME, history, DAY0 + 400, 0, 247)
    assert reason is None and state is not None
    assert (state["issued_day"], state["tier"]) == (DAY0, "loyal")
    assert described(state, LONGTIME, DAY0 + 400)["discount"]["pct"] == 2
