"""Company cards (issue 18 item 6), on both interpreters: each card's per-purchase and daily
limits on the card value it spends, the day's spend counted per card and per sale day, a
refund of the same day giving the allowance back, a sale that happened never declined, the
offline quote declining what a terminal can decide (the per-purchase limit), and the
`company` section's validation. Values computed by hand; the `staff` program of
tests/vectors/program_scenarios.json (30.00 EUR a purchase, 50.00 EUR a day)."""

from engine_steps import accepted, issued

from mpytest import load_json
from protocol import engine, engine_offline
from protocol.errors import ValidationError
from protocol.programs import ProgramInvalid, validate_program, validate_programs

PROGRAMS = validate_programs(load_json("program_scenarios.json")["programs"])
STAFF = PROGRAMS["staff"]


def by_card(sale_id, amount_minor, **more):
    op = {"op": "purchase", "id": sale_id, "amount_minor": amount_minor, "pay": "card"}
    op.update(more)
    return op


def loaded(value_minor=20000):
    state = issued(STAFF)
    state, _ = accepted(state, STAFF, {"op": "topup", "id": "t", "amount_minor": value_minor}, 0)
    return state


def declined(state, op, day):
    after, effects = engine.apply(state, STAFF, op, day)
    assert after is state
    return effects.get("declined")


def test_a_purchase_above_the_per_purchase_limit_is_declined_and_at_it_approved():
    state = loaded()
    assert declined(state, by_card("p", 3001), 0) == "card_purchase_limit"
    state, effects = accepted(state, STAFF, by_card("p", 3000), 0)
    assert effects["card_minor"] == 3000 and state["value_minor"] == 17000


def test_the_day_may_reach_its_limit_never_pass_it_and_the_next_day_starts_at_zero():
    state = loaded()
    state, _ = accepted(state, STAFF, by_card("a", 3000), 0)
    state, _ = accepted(state, STAFF, by_card("b", 2000), 0)  # 50.00: at the limit
    assert state["company_day"] == [0, 5000]
    assert declined(state, by_card("c", 1), 0) == "card_day_limit"
    state, _ = accepted(state, STAFF, by_card("c", 3000), 1)
    assert state["company_day"] == [1, 3000]


def test_cash_beside_the_card_is_not_limited():
    state = loaded()
    state, _ = accepted(state, STAFF, by_card("a", 3000), 0)
    state, _ = accepted(state, STAFF, by_card("b", 2000), 0)
    state, effects = accepted(state, STAFF, {"op": "purchase", "id": "c", "amount_minor": 9000,
                                             "pay": "other"}, 0)
    assert effects["other_minor"] == 9000 and state["company_day"] == [0, 5000]


def test_a_split_tender_counts_only_its_card_part():
    # 20.00 spent, then 60.00 with at most 30.00 from the card: the day counts 50.00
    state = loaded()
    state, effects = accepted(state, STAFF, by_card("a", 2000), 0)
    op = {"op": "purchase", "id": "s", "amount_minor": 6000, "pay": "split", "card_minor": 3000}
    state, effects = accepted(state, STAFF, op, 0)
    assert (effects["card_minor"], effects["other_minor"]) == (3000, 3000)
    assert state["company_day"] == [0, 5000]


def test_a_refund_of_the_same_day_gives_the_allowance_back_an_earlier_day_does_not():
    state = loaded()
    state, _ = accepted(state, STAFF, by_card("a", 3000), 0)
    state, _ = accepted(state, STAFF, by_card("b", 2000), 0)
    state, _ = accepted(state, STAFF, {"op": "refund", "id": "r", "of": "b",
                                       "amount_minor": 800}, 0)
    assert state["company_day"] == [0, 4200]
    state, _ = accepted(state, STAFF, by_card("c", 1000), 1)
    state, _ = accepted(state, STAFF, {"op": "void", "id": "v", "of": "a"}, 1)
    assert state["company_day"] == [1, 1000]  # day 0 is over: COMPANY_DAY_REFUND_SAME_DAY


def test_a_sale_that_happened_is_never_declined_and_counts():
    state = loaded()
    state, effects = accepted(state, STAFF, by_card("a", 4000, happened=True), 0)
    state, _ = accepted(state, STAFF, by_card("b", 2500, happened=True), 0)
    assert state["company_day"] == [0, 6500] and state["value_minor"] == 13500
    assert declined(state, by_card("c", 1), 0) == "card_day_limit"


def test_each_card_has_its_own_day():
    one = loaded()
    two = loaded()
    one, _ = accepted(one, STAFF, by_card("a", 3000), 0)
    one, _ = accepted(one, STAFF, by_card("b", 2000), 0)
    two, effects = accepted(two, STAFF, by_card("a", 3000), 0)
    assert effects["card_minor"] == 3000 and two["company_day"] == [0, 3000]


def test_the_offline_quote_declines_above_the_per_purchase_limit():
    assert engine_offline.quote(STAFF, None, 0, True, 3000, "card")["card_minor"] == 3000
    try:
        engine_offline.quote(STAFF, None, 0, True, 3001, "card")
    except ValidationError as error:
        assert error.reason == "card_purchase_limit"
    else:
        raise AssertionError("quoted above the per-purchase limit")
    assert engine_offline.quote(STAFF, None, 0, True, 3001, "other")["other_minor"] == 3001


def test_a_program_without_the_section_has_no_company_key():
    assert "company" not in PROGRAMS["wallet"]
    assert validate_program("staff", STAFF) == STAFF  # validating again: unchanged


def _refused(table, dotted):
    try:
        validate_program("p", table)
    except ProgramInvalid as error:
        assert error.detail.startswith(dotted + ":"), error.detail
        return
    raise AssertionError("accepted " + repr(table))


def test_the_company_section_is_validated():
    base = {"version": 1, "currency": "EUR", "prepaid": {}}
    _refused({"version": 1, "currency": "EUR", "points": {"earn_bp": 100},
              "company": {"day_max_minor": 1}}, "p.company")
    _refused(dict(base, company={}), "p.company")
    _refused(dict(base, company={"day_max_minor": 0}), "p.company.day_max_minor")
    _refused(dict(base, company={"purchase_max_minor": 2.5}), "p.company.purchase_max_minor")
    _refused(dict(base, company={"week_max_minor": 1}), "p.company.week_max_minor")
    program = validate_program("p", dict(base, company={"day_max_minor": 100}))
    assert program["company"] == {"purchase_max_minor": None, "day_max_minor": 100}
