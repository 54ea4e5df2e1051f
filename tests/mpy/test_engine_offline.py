"""Offline quotes: the card snapshot a gateway answers with, and the price a terminal computes
from it alone, on both interpreters. Numbers are hand-computed for the `saver` and `vip`
programs of examples/programs.toml (the same as tests/vectors/program_scenarios.json)."""

from engine_steps import accepted, issued

from mpytest import expect_raises, load_json
from protocol.engine_offline import quote, snapshot
from protocol.errors import ValidationError
from protocol.programs import validate_program, validate_programs

PROGRAMS = validate_programs(load_json("program_scenarios.json")["programs"])
SAVER = PROGRAMS["saver"]  # 100.00 EUR in 30 days: 10 % off (half_up) for 30 days
VIP = PROGRAMS["vip"]  # 1 % in points (down), 1 point = 0.01 EUR; tier discounts round down
WALLET = PROGRAMS["wallet"]


def purchase(sale_id, amount_minor, pay="other"):
    return {"op": "purchase", "id": sale_id, "amount_minor": amount_minor, "pay": pay}


def amounts(discount, card, other, points, pct):
    return {"discount_minor": discount, "card_minor": card, "other_minor": other,
            "points_earned": points, "discount_pct": pct}


def test_saver_same_day_gives_the_tracked_discount_rounded_half_up():
    # 10 % of 10.05 = 1.005 -> 1.01 (half_up); of 10.04 = 1.004 -> 1.00.
    assert quote(SAVER, None, 10, True, 1005, "other") == amounts(101, 0, 904, 0, 10)
    assert quote(SAVER, None, 10, True, 1004, "other") == amounts(100, 0, 904, 0, 10)


def test_saver_on_a_later_day_gives_no_discount_as_the_tracked_one_may_have_ended():
    assert quote(SAVER, None, 10, False, 1005, "other") == amounts(0, 0, 1005, 0, 0)


def test_vip_silver_gives_its_discount_rounded_down_and_points_times_one_and_a_half():
    # 5 % of 123.45 = 6.1725 -> 6.17; paid 117.28; 1 % x1.5 = 1.5 % of 11728 = 175.92 -> 175.
    assert quote(VIP, "silver", 5, True, 12345, "other") == amounts(617, 0, 11728, 175, 5)


def test_vip_gold_keeps_its_tier_discount_on_a_later_day_and_earns_double():
    # 10 % of 123.45 = 12.345 -> 12.34; paid 111.11; 2 % of 11111 = 222.22 -> 222.
    assert quote(VIP, "gold", 10, False, 12345, "other") == amounts(1234, 0, 11111, 222, 10)


def test_vip_member_gets_no_discount_and_one_percent_in_points():
    assert quote(VIP, "member", 0, True, 12345, "other") == amounts(0, 0, 12345, 123, 0)


def test_pay_by_card_puts_what_is_paid_on_the_card():
    assert quote(WALLET, None, 0, True, 2500, "card") == amounts(0, 2500, 0, 0, 0)


def test_snapshot_reads_tier_and_discount_of_the_day():
    state = issued(VIP)
    assert snapshot(state, VIP, 0) == {"tier": "member", "discount_pct": 0}
    state, _ = accepted(state, VIP, purchase("p", 60000), 0)
    assert snapshot(state, VIP, 0) == {"tier": "silver", "discount_pct": 5}
    state, _ = accepted(issued(SAVER), SAVER, purchase("p", 10000), 0)
    assert snapshot(state, SAVER, 29) == {"tier": None, "discount_pct": 10}
    assert snapshot(state, SAVER, 30) == {"tier": None, "discount_pct": 0}


def test_snapshot_lets_time_pass_as_the_engine_would_so_downgrades_show():
    # Silver on 600.00 on day 0; the spend leaves the 365-day window on day 365, and 30
    # days below silver later (day 395) the card is a member again.
    state, _ = accepted(issued(VIP), VIP, purchase("p", 60000), 0)
    assert snapshot(state, VIP, 394)["tier"] == "silver"
    assert snapshot(state, VIP, 395) == {"tier": "member", "discount_pct": 0}
    assert state["tier"] == "silver"  # the state given is not changed


def test_snapshot_refuses_another_program_or_an_earlier_day():
    state = issued(VIP, day=5)
    assert expect_raises(ValidationError, snapshot, state, SAVER, 5).reason == "program_mismatch"
    assert expect_raises(ValidationError, snapshot, state, VIP, 4).reason == "time_invalid"


def test_a_quote_is_what_the_engine_then_gives_for_the_same_purchase():
    state, _ = accepted(issued(VIP), VIP, purchase("p", 60000), 0)
    seen = snapshot(state, VIP, 3)
    quoted = quote(VIP, seen["tier"], seen["discount_pct"], True, 12345, "other")
    _, effects = accepted(state, VIP, purchase("q", 12345), 3)
    assert {key: effects[key] for key in quoted} == quoted


def test_equal_percents_take_the_tiers_rounding():
    # Tracked 5 % rounds up, the tier's 5 % rounds down: on 10.10 the tier's 0.505 -> 0.50
    # applies (rule LARGER_PERCENT_TIER_ON_TIE), never the tracked 0.51.
    program = validate_program("both", {
        "version": 1, "currency": "EUR",
        "discount": {"threshold_minor": 1000, "qualify_days": 30, "discount_pct": 5,
                     "duration_days": 30, "discount_rounding": "up"},
        "tiers": {"window_days": 90, "downgrade": "period_end", "downgrade_days": 90,
                  "discount_rounding": "down",
                  "levels": [{"name": "base", "spend_minor": 0},
                             {"name": "gold", "spend_minor": 1000, "discount_pct": 5}]}})
    state, effects = accepted(issued(program), program, purchase("p", 1000), 0)
    assert effects["discount_until_day"] == 29 and state["tier"] == "gold"
    assert snapshot(state, program, 1) == {"tier": "gold", "discount_pct": 5}
    _, effects = accepted(state, program, purchase("q", 1010), 1)
    assert effects["discount_minor"] == 50
    assert quote(program, "gold", 5, True, 1010, "other")["discount_minor"] == 50


def test_the_larger_percent_applies_even_where_the_smaller_rounds_to_more():
    # Tracked 10 % rounds down, the tier's 5 % up: on 0.01 the 10 % gives 0.00 (not 0.01).
    program = validate_program("small", {
        "version": 1, "currency": "EUR",
        "discount": {"threshold_minor": 1000, "qualify_days": 30, "discount_pct": 10,
                     "duration_days": 30, "discount_rounding": "down"},
        "tiers": {"window_days": 90, "downgrade": "period_end", "downgrade_days": 90,
                  "discount_rounding": "up",
                  "levels": [{"name": "base", "spend_minor": 0},
                             {"name": "gold", "spend_minor": 1000, "discount_pct": 5}]}})
    state, _ = accepted(issued(program), program, purchase("p", 1000), 0)
    _, effects = accepted(state, program, purchase("q", 1), 1)
    assert (effects["discount_pct"], effects["discount_minor"]) == (10, 0)
    assert quote(program, "gold", 10, True, 1, "other") == amounts(0, 0, 1, 0, 10)
    assert quote(program, "gold", 10, False, 1, "other") == amounts(1, 0, 0, 0, 5)


def test_amounts_are_checked_as_the_engine_checks_them():
    for amount in (0, -1, 1.5, True, "100", None, 10**12 + 1):
        error = expect_raises(ValidationError, quote, VIP, "member", 0, True, amount, "other")
        assert error.reason == "amount_invalid", amount


def test_other_bad_input_is_field_invalid():
    for args in ((VIP, "member", 0, True, 100, "cash"),  # pay
                 (VIP, "member", 0, 1, 100, "other"),  # same_day
                 (VIP, "member", -1, True, 100, "other"),  # discount_pct
                 (VIP, "member", 101, True, 100, "other"),
                 (VIP, "member", True, True, 100, "other"),
                 (VIP, "member", 6, True, 100, "other"),  # above the tier's: no tracking
                 (VIP, "platinum", 0, True, 100, "other"),  # tier
                 (VIP, None, 0, True, 100, "other"),
                 (SAVER, "member", 0, True, 100, "other")):
        assert expect_raises(ValidationError, quote, *args).reason == "field_invalid", args


def test_paying_by_card_in_a_program_without_value_is_refused_as_the_engine_would():
    error = expect_raises(ValidationError, quote, VIP, "member", 0, True, 100, "card")
    assert error.reason == "operation_not_in_program"
