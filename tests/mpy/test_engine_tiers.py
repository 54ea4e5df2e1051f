"""Tiers by visits and by length of membership (issue 18), on both interpreters: a visit is a
day with a purchase (VISIT_PER_DAY), taken back by a refund of all of the purchase, never by
a part, nor counted for a reward; visits downgrade at a period's end as spend does; a
membership tier moves up with the days, in the offline snapshot too, and never down.
Programs are those of tests/vectors/program_scenarios.json (`frequent`: 4 visits in 30 days
for 5 % off, down after 14 days below; `longtime`: a year for 2 % off and 1.5 x points)."""

from engine_steps import accepted, issued

from mpytest import load_json
from protocol import engine, engine_offline
from protocol.programs import validate_program, validate_programs

PROGRAMS = validate_programs(load_json("program_scenarios.json")["programs"])
FREQUENT = PROGRAMS["frequent"]
LONGTIME = PROGRAMS["longtime"]
CHAINRANK = PROGRAMS["chainrank"]


def purchase(sale_id, amount_minor=1000):
    return {"op": "purchase", "id": sale_id, "amount_minor": amount_minor, "pay": "other"}


def visited(program, days):
    """A card of `program` with one purchase ("p<day>") on each of `days`."""
    state = issued(program)
    for day in days:
        state, _ = accepted(state, program, purchase("p%d" % day), day)
    return state


def test_a_refund_of_all_of_a_purchase_takes_its_visit_and_the_upgrade_it_made():
    state = visited(FREQUENT, (0, 5, 10, 15))
    assert state["tier"] == "frequent" and state["tier_visits"] == [[0, 1], [5, 1], [10, 1],
                                                                   [15, 1]]
    part, effects = accepted(state, FREQUENT, {"op": "refund", "id": "r1", "of": "p15",
                                               "amount_minor": 999}, 16)
    assert part["tier"] == "frequent" and "tier_change" not in effects  # a part: still a visit
    whole, effects = accepted(part, FREQUENT, {"op": "refund", "id": "r2", "of": "p15"}, 16)
    assert effects["tier_change"] == ["frequent", "guest"]  # the tier before that purchase
    assert whole["tier_visits"] == [[0, 1], [5, 1], [10, 1]]
    # A purchase on day 16 makes 4 visits again: frequent at once.
    _, effects = accepted(whole, FREQUENT, purchase("p16"), 16)
    assert effects["tier_change"] == ["guest", "frequent"]


def test_a_reward_is_no_visit():
    program = validate_program("r", {
        "version": 1, "currency": "EUR", "points": {"earn_bp": 1000, "points_per_unit": 100},
        "rewards": {"items": [{"id": "cake", "points": 10}]},
        "tiers": {"basis": "visits", "window_days": 30, "downgrade": "days_below",
                  "downgrade_days": 14,
                  "levels": [{"name": "guest", "min_visits": 0},
                             {"name": "two", "min_visits": 2}]}})
    state = visited(program, (0,))  # 10.00 paid earns 100 points
    state, _ = accepted(state, program, {"op": "reward", "id": "w", "item": "cake"}, 1)
    assert state["tier"] == "guest" and state["tier_visits"] == [[0, 1]]
    state, effects = accepted(state, program, {"op": "void", "id": "v", "of": "w"}, 1)
    assert state["tier_visits"] == [[0, 1]]  # its refund takes no visit either


def test_visits_are_counted_again_at_each_period_end():
    """Period of 30 days from the issue on day 0: on day 30 the window (days 1..30) holds the
    visits of days 20, 25, 28 (3 of 4): down; day 0's does not count any more."""
    program = validate_program("v", {
        "version": 1, "currency": "EUR",
        "tiers": {"basis": "visits", "window_days": 30, "downgrade": "period_end",
                  "downgrade_days": 30,
                  "levels": [{"name": "guest", "min_visits": 0},
                             {"name": "frequent", "min_visits": 4}]}})
    state = visited(program, (0, 20, 25, 28))
    assert state["tier"] == "frequent"
    held, _ = accepted(state, program, {"op": "tick"}, 29)
    assert held["tier"] == "frequent"
    down, effects = accepted(state, program, {"op": "tick"}, 30)
    assert effects["tier_change"] == ["frequent", "guest"]
    assert down["tier_visits"] == [[20, 1], [25, 1], [28, 1]]


def test_a_membership_tier_comes_with_the_days_online_and_in_the_offline_snapshot():
    state = issued(LONGTIME, day=100)
    assert engine_offline.snapshot(state, LONGTIME, 464) == {"tier": "new", "discount_pct": 0}
    assert engine_offline.snapshot(state, LONGTIME, 465) == {"tier": "loyal", "discount_pct": 2}
    later, effects = accepted(state, LONGTIME, purchase("a", 10000), 465)
    assert (later["tier"], effects["tier_change"]) == ("loyal", ["new", "loyal"])
    assert (effects["discount_minor"], effects["points_earned"]) == (200, 147)
    refunded, effects = accepted(later, LONGTIME, {"op": "void", "id": "v", "of": "a"}, 466)
    assert refunded["tier"] == "loyal" and "tier_change" not in effects  # never down
    assert engine.summary(refunded, LONGTIME, 466)["tier"] == "loyal"


# -- tiers by rank (protocol/engine_rank.py): `chainrank`, gold 10 % off and 2 x points ------


def test_a_ranked_level_reaches_the_offline_snapshot_and_quote_and_holds():
    state = issued(CHAINRANK)
    ranked, effects = accepted(state, CHAINRANK, {"op": "rank", "id": "rank-0",
                                                  "level": "gold", "period": 0}, 30)
    assert effects["tier_change"] == ["member", "gold"] and effects["legs"] == []
    # A year on the level holds (no window, no downgrade) and the terminal prices it:
    # 10 % off 50.00 = 5.00, 45.00 paid earns 45 * 2 = 90.
    snapshot = engine_offline.snapshot(ranked, CHAINRANK, 395)
    assert snapshot == {"tier": "gold", "discount_pct": 10}
    quote = engine_offline.quote(CHAINRANK, "gold", 10, False, 5000, "other")
    assert (quote["discount_minor"], quote["points_earned"]) == (500, 90)
    later, effects = accepted(ranked, CHAINRANK, purchase("a", 5000), 395)
    assert (effects["discount_minor"], effects["points_earned"]) == (500, 90)
    refunded, effects = accepted(later, CHAINRANK, {"op": "void", "id": "v", "of": "a"}, 396)
    assert refunded["tier"] == "gold"  # a refund does not undo the ranking's level


def test_a_period_is_ranked_once_and_only_in_a_rank_program():
    state, _ = accepted(issued(CHAINRANK), CHAINRANK, {"op": "rank", "id": "r",
                                                        "level": "silver", "period": 3}, 100)
    again, effects = engine.apply(state, CHAINRANK, {"op": "rank", "id": "r2",
                                                     "level": "gold", "period": 3}, 100)
    assert again is state and effects["declined"] == "time_invalid"
    other, effects = engine.apply(issued(LONGTIME), LONGTIME, {"op": "rank", "id": "r",
                                                                "level": "loyal", "period": 0}, 0)
    assert effects["declined"] == "operation_not_in_program"
