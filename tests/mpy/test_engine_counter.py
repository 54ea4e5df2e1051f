"""Purchases that already happened at the counter (`happened`) and the counter's own discount
(`discount_minor`), re-applied by the engine, on both interpreters. Programs are those of
tests/vectors/program_scenarios.json (the same as examples/programs.toml)."""

import json

from engine_steps import accepted, issued

from mpytest import load_json
from protocol import engine
from protocol.programs import validate_programs

PROGRAMS = validate_programs(load_json("program_scenarios.json")["programs"])
WALLET = PROGRAMS["wallet"]  # prepaid, 10 % top-up bonus, cash-out allowed
GIFT = PROGRAMS["gift"]  # value expires 365 days after the sale
CLUB = PROGRAMS["club"]  # 2 % in points (half_even), 1 point = 0.01 EUR, prepaid
SAVER = PROGRAMS["saver"]  # 100.00 EUR in 30 days: 10 % off (half_up) for 30 days
VIP = PROGRAMS["vip"]  # 1 % in points, silver x1.5 and 5 % off, gold x2 and 10 % off
COFFEE = PROGRAMS["coffee"]  # points only: no card value to pay with


def purchase(sale_id, amount_minor, pay="other", **keys):
    op = {"op": "purchase", "id": sale_id, "amount_minor": amount_minor, "pay": pay}
    op.update(keys)
    return op


# -- happened -------------------------------------------------------------------------------


def test_a_purchase_that_happened_overdraws_the_card_and_reports_the_overdraft():
    state = issued(WALLET, 1000)
    state, effects = accepted(state, WALLET, purchase("p", 1500, "card", happened=True), 1)
    assert effects["card_minor"] == 1500 and effects["overdraft_minor"] == 500
    assert effects["legs"] == [["card_value", "EUR", 1500, "spend"],
                               ["merchant_settlement", "EUR", -1500, "spend"]]
    assert engine.summary(state, WALLET, 1)["value_minor"] == -500


def test_the_same_purchase_online_is_declined_for_insufficient_value():
    state = issued(WALLET, 1000)
    _, effects = engine.apply(state, WALLET, purchase("p", 1500, "card"), 1)
    assert effects["declined"] == "insufficient_value"


def test_the_overdraft_is_all_of_card_minor_once_the_value_is_below_zero_and_none_within_it():
    state = issued(WALLET, 1000)
    state, effects = accepted(state, WALLET, purchase("a", 400, "card", happened=True), 1)
    assert effects["overdraft_minor"] == 0 and state["value_minor"] == 600
    state, effects = accepted(state, WALLET, purchase("b", 700, "card", happened=True), 1)
    assert effects["overdraft_minor"] == 100
    state, effects = accepted(state, WALLET, purchase("c", 200, "card", happened=True), 1)
    assert effects["overdraft_minor"] == 200 and state["value_minor"] == -300
    _, effects = accepted(state, WALLET, purchase("d", 200, "other", happened=True), 1)
    assert effects["overdraft_minor"] == 0 and effects["card_minor"] == 0


def test_a_card_below_zero_cannot_be_cashed_out_and_a_top_up_or_refund_fills_it_again():
    state = issued(WALLET, 1000)
    state, _ = accepted(state, WALLET, purchase("p", 1500, "card", happened=True), 1)
    for op in ({"op": "cashout"}, {"op": "cashout", "amount_minor": 100}):
        assert engine.apply(state, WALLET, op, 2)[1]["declined"] == "insufficient_value"
    topped, effects = accepted(state, WALLET, {"op": "topup", "id": "t", "amount_minor": 1000}, 2)
    assert effects["bonus_minor"] == 100 and topped["value_minor"] == 600
    refunded, effects = accepted(state, WALLET, {"op": "refund", "of": "p",
                                                 "amount_minor": 600}, 2)
    assert effects["card_minor"] == 600 and refunded["value_minor"] == 100
    voided, _ = accepted(state, WALLET, {"op": "void", "of": "p"}, 2)
    assert voided["value_minor"] == 1000


def test_a_purchase_that_happened_on_an_expired_gift_card_is_taken_and_nothing_expires_below_zero():
    # Sold day 0 with 50.00, expired day 365: the purchase on day 370 first posts the
    # 50.00 breakage, then overdraws the card by all of its 12.00.
    state = issued(GIFT, 5000)
    _, effects = engine.apply(state, GIFT, purchase("p", 1200, "card"), 370)
    assert effects["declined"] == "card_expired"
    state, effects = accepted(state, GIFT, purchase("p", 1200, "card", happened=True), 370)
    assert effects["value_expired"] == 5000 and effects["overdraft_minor"] == 1200
    assert state["value_minor"] == -1200
    later, effects = accepted(state, GIFT, {"op": "tick"}, 800)
    assert effects["legs"] == [] and later["value_minor"] == -1200
    refunded, effects = accepted(state, GIFT, {"op": "refund", "of": "p", "amount_minor": 200}, 371)
    assert effects["card_minor"] == 200 and refunded["value_minor"] == -1000
    voided, effects = accepted(state, GIFT, {"op": "void", "of": "p"}, 371)
    assert voided["value_minor"] == 0 and "value_expired" not in effects


def test_happened_is_only_the_boolean_true():
    state = issued(WALLET, 1000)
    for value in (False, 1, "true", None, [True]):
        _, effects = engine.apply(state, WALLET, purchase("p", 100, "card", happened=value), 1)
        assert effects["declined"] == "field_invalid", value


def test_happened_still_declines_what_the_counter_knows():
    _, effects = engine.apply(issued(COFFEE), COFFEE, purchase("p", 100, "card", happened=True), 1)
    assert effects["declined"] == "operation_not_in_program"
    _, effects = engine.apply(issued(WALLET, 1000), WALLET,
                              purchase("sale", 100, "card", happened=True), 1)
    assert effects["declined"] == "field_invalid"  # the id is already used on the card


# -- discount_minor -------------------------------------------------------------------------


def saver_with_discount():
    """A saver card whose 100.00 purchase on day 0 earned 10 % off through day 29."""
    state, effects = accepted(issued(SAVER), SAVER, purchase("earn", 10000), 0)
    assert effects["discount_until_day"] == 29
    return state


def test_a_larger_discount_given_at_the_counter_replaces_the_computed_one():
    # Computed: 10 % of 10.05 = 1.005, half_up 1.01. The counter gave 3.00.
    state = saver_with_discount()
    _, effects = accepted(state, SAVER, purchase("p", 1005), 1)
    assert effects["discount_minor"] == 101 and effects["other_minor"] == 904
    _, effects = accepted(state, SAVER, purchase("p", 1005, discount_minor=300), 1)
    assert effects["discount_minor"] == 300 and effects["discount_pct"] == 10
    assert effects["other_minor"] == 705


def test_a_smaller_discount_given_at_the_counter_replaces_the_computed_one():
    state = saver_with_discount()
    _, effects = accepted(state, SAVER, purchase("p", 1005, discount_minor=0), 1)
    assert effects["discount_minor"] == 0 and effects["discount_pct"] == 10
    assert effects["other_minor"] == 1005


def test_a_discount_above_the_amount_or_not_an_amount_is_refused():
    state = saver_with_discount()
    for value in (1006, -1, 1.5, True, "300"):
        _, effects = engine.apply(state, SAVER, purchase("p", 1005, discount_minor=value), 1)
        assert effects["declined"] == "amount_invalid", value
    _, effects = accepted(state, SAVER, purchase("p", 1005, discount_minor=1005), 1)
    assert effects["other_minor"] == 0 and effects["points_earned"] == 0


def test_points_and_qualifying_spend_count_what_was_paid_after_the_counters_discount():
    # vip member: no computed discount. The counter gave 10.00 off 100.00: 90.00 paid,
    # 1 % of it is 90 points; 90.00 counts towards silver (500.00).
    state = issued(VIP)
    state, effects = accepted(state, VIP, purchase("p", 10000, discount_minor=1000), 0)
    assert effects["points_earned"] == 90 and state["tier_spend"] == [[0, 9000]]
    state, effects = accepted(state, VIP, {"op": "refund", "of": "p", "amount_minor": 5000}, 1)
    assert effects["other_minor"] == 4500 and effects["points_reversed"] == 45
    assert state["tier_spend"] == [[0, 4500]]


def test_happened_and_the_counters_discount_together():
    # club: 30.00 less 5.00 off = 25.00 from a card holding 10.00: 15.00 overdraft;
    # 2 % of 25.00 = 50 points.
    state = issued(CLUB, 1000)
    state, effects = accepted(state, CLUB, purchase("p", 3000, "card", happened=True,
                                                    discount_minor=500), 3)
    assert (effects["discount_minor"], effects["card_minor"], effects["overdraft_minor"],
            effects["points_earned"]) == (500, 2500, 1500, 50)
    assert engine.summary(state, CLUB, 3) == {"value_minor": -1500, "points": 50,
                                              "tier": None, "discount_pct": 0}
    state, effects = accepted(state, CLUB, {"op": "void", "of": "p"}, 4)
    assert effects["card_minor"] == 2500 and effects["points_reversed"] == 50
    assert engine.summary(state, CLUB, 4)["value_minor"] == 1000


def test_an_overdrawn_state_survives_a_json_round_trip_and_goes_on_alike():
    state = issued(CLUB, 1000)
    state, _ = accepted(state, CLUB, purchase("p", 3000, "card", happened=True,
                                              discount_minor=500), 3)
    state, _ = accepted(state, CLUB, purchase("q", 800, "other", redeem_points=20), 4)
    copied = json.loads(json.dumps(state))
    assert copied == state
    for op, day in ((purchase("r", 400, "card", happened=True), 5),
                    ({"op": "refund", "of": "q", "amount_minor": 300}, 6),
                    ({"op": "topup", "id": "t", "amount_minor": 2000}, 7),
                    ({"op": "void", "of": "p"}, 8), ({"op": "tick"}, 800)):
        state, effects = engine.apply(state, CLUB, op, day)
        copied, copied_effects = engine.apply(copied, CLUB, op, day)
        assert copied_effects == effects and copied == state


def test_a_refund_of_a_load_or_a_cash_out_that_happened_may_overdraw():
    from protocol import engine
    from protocol.programs import validate_programs

    program = validate_programs({"programs": {"w": {
        "version": 1, "currency": "EUR", "prepaid": {"bonus_bp": 1000, "cash_out": True}}}})["w"]
    state, _ = engine.apply(None, program, {"op": "issue", "id": "i", "card": "c"}, 1)
    state, _ = engine.apply(state, program, {"op": "topup", "id": "t", "amount_minor": 1000}, 1)
    state, _ = engine.apply(state, program, {"op": "purchase", "id": "p", "amount_minor": 800,
                                             "pay": "card"}, 1)
    # 300 left; giving the 1000 top-up back (1100 with its bonus) is declined ...
    _, declined = engine.apply(state, program, {"op": "void", "of": "t"}, 1)
    assert declined["declined"] == "insufficient_value"
    # ... unless the cash was already handed back at the counter: 800 below zero.
    after, effects = engine.apply(state, program, {"op": "void", "of": "t", "happened": True}, 1)
    assert after["value_minor"] == -800 and effects["overdraft_minor"] == 800
    assert sum(leg[2] for leg in effects["legs"]) == 0
    paid, cashed = engine.apply(state, program, {"op": "cashout", "id": "x",
                                                 "amount_minor": 500, "happened": True}, 1)
    assert paid["value_minor"] == -200 and cashed["overdraft_minor"] == 200
    _, refused = engine.apply(state, program, {"op": "cashout", "id": "x",
                                               "amount_minor": 500}, 1)
    assert refused["declined"] == "insufficient_value"
