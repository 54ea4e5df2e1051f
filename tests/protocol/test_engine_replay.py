"""protocol/engine_replay.py: a card rebuilt from the ledger's list of its transactions keeps
what balances alone lose (points lots and their earn days, spend towards a discount, a tier,
refundable sales), is used only when it ends at the books' balances, and says why not."""

from __future__ import annotations

from protocol import engine, engine_offline
from protocol.engine_replay import described, replay, replayed
from tests.support import engine_history
from tests.support.engine_history import DAY0, LOTS, POINTS, TODAY, posted
from tools.demo import DEMO_PROGRAMS
from tools.programs import parse_programs

SAVER = DEMO_PROGRAMS["saver"]  # 100.00 in 30 days: 10 % off for 30 days
LOYALTY = DEMO_PROGRAMS["loyalty"]


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


def test_a_history_replayed_to_today_shows_its_tier_discount_and_points_lots() -> None:
    """The card of tests/support/engine_history.py, its figures computed by hand there."""
    program = parse_programs(engine_history.PROGRAM_TOML)["regular"]
    state, reason = replay("C1", program, engine_history.history(), TODAY, 0, POINTS)
    assert reason is None and state is not None
    assert described(state, program, TODAY) == {
        "day": TODAY, "value_minor": 0, "points": POINTS, "tier": "silver",
        "tier_spend_minor": 6000 + 5000 + 4500, "tier_visits": None,
        "discount": {"pct": 10, "tracked_pct": 10, "last_day": DAY0 + 39, "spend_minor": 4500,
                     "threshold_minor": 10000},
        "points_lots": [{"points": points, "earned_day": earned, "expires_day": expires}
                        for points, earned, expires in LOTS],
        "points_owed": 0}
    # Its discount over and its spend out of the 30 days, the tier's 5 % is what a purchase
    # gets; the first lot expired on DAY0 + 61.
    later, _ = engine.apply(state, program, {"op": "tick"}, DAY0 + 62)
    shown = described(later, program, DAY0 + 62)
    assert shown["discount"] == {"pct": 5, "tracked_pct": 0, "last_day": None, "spend_minor": 0,
                                 "threshold_minor": 10000}
    assert [lot["points"] for lot in shown["points_lots"]] == [50, 45]


def test_a_replay_that_cannot_be_used_says_why() -> None:
    program = parse_programs(engine_history.PROGRAM_TOML)["regular"]
    history = engine_history.history()
    assert replay("C1", program, history, TODAY, 0, POINTS + 1) == (None, "replay_disagrees")
    assert replay("C1", program, None, TODAY, 0, POINTS) == (None, "history_too_long")
    assert replay("C1", program, history[1:], TODAY, 0, POINTS) == (None, "not_issued_in_books")
    assert replay("C1", program, [], TODAY, 0, 0) == (None, "not_issued_in_books")
    refund_of_nothing = [*history, posted("T1-9", "refund", DAY0 + 21, 100, ref="T9-9")]
    assert replay("C1", program, refund_of_nothing, TODAY, 0, POINTS) == (
        None, "replay_declined")
