"""Rules whose last day is easy to get wrong, on both interpreters (issue 18): the refund
window's last day is in, and the last day a discount is reported to run is a day it gives.
Programs are those of tests/vectors/program_scenarios.json."""

from engine_steps import accepted, issued

from mpytest import load_json
from protocol import engine
from protocol.programs import validate_programs

PROGRAMS = validate_programs(load_json("program_scenarios.json")["programs"])
COFFEE = PROGRAMS["coffee"]  # refund_window_days = 120
SAVER = PROGRAMS["saver"]  # 100.00 EUR in 30 days: 10 % off (half_up) for 30 days


def purchase(sale_id, amount_minor):
    return {"op": "purchase", "id": sale_id, "amount_minor": amount_minor, "pay": "other"}


def refund(sale_id, amount_minor):
    return {"op": "refund", "id": "r-" + sale_id, "of": sale_id, "amount_minor": amount_minor}


def test_a_sale_is_refunded_on_the_last_day_of_the_window():
    window = COFFEE["refund_window_days"]
    state = issued(COFFEE)
    state, _ = accepted(state, COFFEE, purchase("p", 4000), 0)
    _, effects = accepted(state, COFFEE, refund("p", 1000), window)
    assert effects["other_minor"] == 1000


def test_a_sale_is_not_refunded_the_day_after_the_window():
    window = COFFEE["refund_window_days"]
    state = issued(COFFEE)
    state, _ = accepted(state, COFFEE, purchase("p", 4000), 0)
    _, effects = engine.apply(state, COFFEE, refund("p", 1000), window + 1)
    assert effects["declined"] == "refund_unknown_original"


def test_the_reported_last_day_of_a_discount_gives_it_and_the_day_after_does_not():
    state = issued(SAVER)
    state, effects = accepted(state, SAVER, purchase("earn", 10000), 0)
    last = effects["discount_until_day"]
    assert last == SAVER["discount"]["duration_days"] - 1  # days 0..29: 30 days
    _, on_last = accepted(state, SAVER, purchase("a", 1000), last)
    assert on_last["discount_minor"] == 100
    _, after = accepted(state, SAVER, purchase("b", 1000), last + 1)
    assert after["discount_minor"] == 0
