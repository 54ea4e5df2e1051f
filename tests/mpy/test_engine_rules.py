"""Rules easy to get wrong, on both interpreters (issue 18): the refund window's last day is
in; the last day a discount is reported to run is a day it gives; a refund's parts add up
to the refund (largest remainder) and all refunds of a sale to the sale; a cash-out pays
what was loaded, never the bonus; a split tender puts on the card what it holds; a reward
takes its points oldest first and earns none; promotions by hour, first purchase and
birthday week (29 February on the 28th in other years).
Programs are those of tests/vectors/program_scenarios.json."""

from engine_steps import accepted, issued

from mpytest import load_json
from protocol import engine, engine_adopt, engine_offline
from protocol.programs import days_of_date, validate_program, validate_programs

PROGRAMS = validate_programs(load_json("program_scenarios.json")["programs"])
COFFEE = PROGRAMS["coffee"]  # refund_window_days = 120
SAVER = PROGRAMS["saver"]  # 100.00 EUR in 30 days: 10 % off (half_up) for 30 days
CLUB = PROGRAMS["club"]  # earns 2 % (half_even), a point is worth 0.01 EUR
WALLET = PROGRAMS["wallet"]  # prepaid, 10 % top-up bonus (down), cash_out = true


def purchase(sale_id, amount_minor):
    return {"op": "purchase", "id": sale_id, "amount_minor": amount_minor, "pay": "other"}


def refund(sale_id, amount_minor, refund_id=None):
    return {"op": "refund", "id": refund_id or "r-" + sale_id, "of": sale_id,
            "amount_minor": amount_minor}


def back(effects):
    """What a refund gave back, in minor units: card, other tender and points' value."""
    return effects["card_minor"] + effects["other_minor"] + effects["redeem_minor"]


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


def test_a_refunds_parts_add_up_to_it_and_all_refunds_to_the_sale():
    """30.00 paid with 300 points (3.00) and 27.00 in cash. Refunding 10.01: exactly
    2700 * 1001 / 3000 = 900.9 in cash and 100.1 in points; rounded down 900 + 100 = 1000,
    and the 1 left goes to the larger remainder, the cash: 901 + 100 points (each rounded
    on its own, 901 + 101 = 1002 came back before). The rest, 19.99: 1799 + 200 points."""
    state = issued(CLUB)
    state, earned = accepted(state, CLUB, purchase("earn", 15000), 0)
    assert earned["points_earned"] == 300  # 2 % of 150.00 in points of 0.01
    sale = dict(purchase("p", 3000), redeem_points=300)
    state, paid = accepted(state, CLUB, sale, 0)
    assert (paid["redeem_minor"], paid["other_minor"]) == (300, 2700)
    state, first = accepted(state, CLUB, refund("p", 1001, "r1"), 1)
    assert (first["other_minor"], first["points_restored"], first["redeem_minor"]) == \
        (901, 100, 100)
    assert back(first) == 1001
    _, rest = accepted(state, CLUB, refund("p", 1999, "r2"), 2)
    assert (rest["other_minor"], rest["points_restored"]) == (1799, 200)
    assert back(first) + back(rest) == 3000


def test_points_come_back_whole_and_the_fraction_of_a_point_goes_to_the_cash():
    """Coffee points are worth 0.10 EUR. 10.00 paid with 5 points (0.50) and 9.50 in cash;
    a refund of 3.33 is 316.35 in cash and 1.665 points exactly: 1 point (0.10) comes back,
    and the rest, 3.23, in cash. The remaining 6.67: 4 points and 6.27; 5 and 9.50 in all."""
    coffee_points = 25  # 50.00 at 5 % in points of 0.10 (rounded down)
    state = issued(COFFEE)
    state, earned = accepted(state, COFFEE, purchase("earn", 5000), 0)
    assert earned["points_earned"] == coffee_points
    state, _ = accepted(state, COFFEE, dict(purchase("p", 1000), redeem_points=5), 0)
    state, first = accepted(state, COFFEE, refund("p", 333, "r1"), 1)
    assert (first["other_minor"], first["points_restored"]) == (323, 1)
    assert back(first) == 333
    _, rest = accepted(state, COFFEE, refund("p", 667, "r2"), 1)
    assert (rest["other_minor"], rest["points_restored"]) == (627, 4)
    assert first["other_minor"] + rest["other_minor"] == 950


def test_a_sale_paid_in_points_alone_is_refunded_in_whole_points():
    """10.00 paid with 100 coffee points: 3.35 is not a number of points (amount_invalid,
    nothing changes); 3.30 gives 33 of them back."""
    state = issued(COFFEE)
    state, _ = accepted(state, COFFEE, purchase("earn", 20000), 0)  # earns 100
    state, _ = accepted(state, COFFEE, dict(purchase("p", 1000), redeem_points=100), 0)
    after, declined = engine.apply(state, COFFEE, refund("p", 335), 1)
    assert declined["declined"] == "amount_invalid" and after is state
    _, effects = accepted(state, COFFEE, refund("p", 330), 1)
    assert (effects["points_restored"], effects["redeem_minor"]) == (33, 330)


def topped_up(amount_minor):
    state = issued(WALLET)
    state, _ = accepted(state, WALLET, {"op": "topup", "id": "t", "amount_minor": amount_minor}, 0)
    return state


def spend(state, sale_id, amount_minor):
    op = {"op": "purchase", "id": sale_id, "amount_minor": amount_minor, "pay": "card"}
    return accepted(state, WALLET, op, 0)


def cash_out(state, amount_minor=None):
    op = {"op": "cashout", "id": "c"}
    if amount_minor is not None:
        op["amount_minor"] = amount_minor
    return engine.apply(state, WALLET, op, 0)


def test_a_cash_out_pays_what_was_loaded_and_forfeits_the_bonus():
    """100.00 loaded + 10.00 bonus; 40.00 spent (from what was loaded, BONUS_SPENT_LAST):
    60.00 is cash, the 10.00 bonus is not; cashing out pays 60.00 and forfeits the bonus."""
    state, _ = spend(topped_up(10000), "p", 4000)
    assert state["value_minor"] == 7000
    same, declined = cash_out(state, 7000)
    assert declined["declined"] == "insufficient_value" and same is state
    after, effects = cash_out(state)
    assert (effects["amount_minor"], effects["bonus_forfeited"]) == (6000, 1000)
    assert effects["legs"] == [["card_value", "EUR", 6000, "cash_out"],
                               ["cash_clearing", "EUR", -6000, "cash_out"],
                               ["card_value", "EUR", 1000, "expire"],
                               ["breakage", "EUR", -1000, "expire"]]
    assert after["value_minor"] == 0


def test_a_partial_cash_out_keeps_the_bonus_on_the_card():
    after, effects = cash_out(topped_up(10000), 3000)
    assert (effects["amount_minor"], effects["bonus_forfeited"]) == (3000, 0)
    assert after["value_minor"] == 8000
    _, rest = cash_out(after)
    assert (rest["amount_minor"], rest["bonus_forfeited"]) == (7000, 1000)


def test_a_card_holding_only_bonus_cashes_out_nothing():
    """105.00 spent of 110.00: the 5.00 left is bonus (what was loaded went first)."""
    state, _ = spend(topped_up(10000), "p", 10500)
    _, declined = cash_out(state)
    assert declined["declined"] == "insufficient_value"


def test_refunding_a_sale_that_spent_bonus_gives_the_bonus_back():
    """The 105.00 sale took 100.00 loaded and 5.00 bonus; refunded, the card holds 100.00 to
    cash out and its 10.00 bonus again."""
    state, _ = spend(topped_up(10000), "p", 10500)
    state, _ = accepted(state, WALLET, {"op": "refund", "id": "r", "of": "p"}, 0)
    _, effects = cash_out(state)
    assert (effects["amount_minor"], effects["bonus_forfeited"]) == (10000, 1000)


GIFT = PROGRAMS["gift"]


def test_a_split_tender_puts_on_the_card_what_it_holds_and_the_rest_on_other_tender():
    """A gift card of 30.00 and 50.00 of goods: paid by the card alone it is declined; split,
    the card pays 30.00 and other tender 20.00. Half refunded goes back in proportion:
    15.00 onto the card, 10.00 in cash."""
    state = issued(GIFT, 3000)
    _, declined = engine.apply(state, GIFT, dict(purchase("p", 5000), pay="card"), 0)
    assert declined["declined"] == "insufficient_value"
    state, effects = accepted(state, GIFT, dict(purchase("p", 5000), pay="split"), 0)
    assert (effects["card_minor"], effects["other_minor"]) == (3000, 2000)
    assert state["value_minor"] == 0
    state, back = accepted(state, GIFT, refund("p", 2500), 0)
    assert (back["card_minor"], back["other_minor"]) == (1500, 1000)
    assert state["value_minor"] == 1500


def test_a_split_takes_at_most_the_card_part_asked_and_exactly_what_happened():
    state = issued(GIFT, 3000)
    _, capped = accepted(state, GIFT, dict(purchase("a", 5000), pay="split", card_minor=1000), 0)
    assert (capped["card_minor"], capped["other_minor"]) == (1000, 4000)
    # At the counter the card took 40.00 (its last known value was higher): taken as it
    # happened, 10.00 beyond what it held is overdraft.
    happened = dict(purchase("b", 5000), pay="split", card_minor=4000, happened=True)
    after, effects = accepted(state, GIFT, happened, 0)
    assert (effects["card_minor"], effects["overdraft_minor"]) == (4000, 1000)
    assert after["value_minor"] == -1000
    for bad, reason in ((dict(purchase("c", 500), pay="split", card_minor=600),
                         "amount_invalid"),
                        (dict(purchase("d", 500), pay="card", card_minor=100), "field_invalid"),
                        (dict(purchase("e", 500), pay="cheque"), "field_invalid")):
        _, effects = engine.apply(state, GIFT, bad, 0)
        assert effects["declined"] == reason, bad


def bakery(rule="at_least", tier_pct=0):
    """Points at 1 %, and 10 % off a sale of 100.00 (by `rule`); a tier giving `tier_pct`."""
    return validate_program("bakery", {
        "version": 1, "currency": "EUR", "points": {"earn_bp": 100, "points_per_unit": 100},
        "volume": {"threshold_minor": 10000, "discount_pct": 10, "threshold_rule": rule},
        "tiers": {"window_days": 30, "downgrade": "period_end", "downgrade_days": 30,
                  "levels": [{"name": "all", "spend_minor": 0, "discount_pct": tier_pct}]}})


def test_a_sale_that_reaches_the_price_gets_the_volume_discount_on_itself():
    """100.00 at least: 10.00 off, points on the 90.00 paid (0.90 -> 90 points of 0.01).
    99.99 gets nothing. Above: 100.00 gets nothing, 100.01 gets 10.00 (10.001 rounded down)."""
    program = bakery()
    state = issued(program)
    state, reached = accepted(state, program, purchase("a", 10000), 0)
    assert (reached["discount_minor"], reached["discount_pct"], reached["points_earned"]) == (
        1000, 10, 90)
    _, short = accepted(state, program, purchase("b", 9999), 0)
    assert short["discount_minor"] == 0
    above = bakery("above")
    state = issued(above)
    _, at = accepted(state, above, purchase("c", 10000), 0)
    _, beyond = accepted(state, above, purchase("d", 10001), 0)
    assert (at["discount_minor"], beyond["discount_minor"]) == (0, 1000)


def test_discounts_never_add_up_the_largest_percent_applies():
    """A 10 % tier and the 10 % volume discount: the tier's alone (equal percents: the
    tier's); a 15 % tier: the tier's on any sale."""
    for tier_pct, expected in ((10, 1000), (15, 1500)):
        program = bakery(tier_pct=tier_pct)
        _, effects = accepted(issued(program), program, purchase("a", 10000), 0)
        assert effects["discount_minor"] == expected


def test_an_offline_quote_gives_the_volume_discount_as_the_engine_does():
    program = bakery()
    for amount in (9999, 10000, 25000):
        _, effects = accepted(issued(program), program, purchase("a", amount), 0)
        quote = engine_offline.quote(program, "all", 0, True, amount, "other")
        assert (quote["discount_minor"], quote["points_earned"]) == (
            effects["discount_minor"], effects["points_earned"])


def test_a_tracked_discount_above_its_threshold_needs_more_than_it():
    """saver with threshold_rule above: 100.00 in 30 days earns nothing, 100.01 earns it."""
    table = {"version": 1, "currency": "EUR", "discount": {
        "threshold_minor": 10000, "threshold_rule": "above", "qualify_days": 30,
        "discount_pct": 10, "duration_days": 30}}
    program = validate_program("strict", table)
    _, at = accepted(issued(program), program, purchase("a", 10000), 0)
    _, beyond = accepted(issued(program), program, purchase("a", 10001), 0)
    assert "discount_until_day" not in at and beyond["discount_until_day"] == 29


CHRISTMAS_EVE = 20811  # 2026-12-24, a Thursday, as days since 1970-01-01
SATURDAY_AFTER = CHRISTMAS_EVE + 2
SATURDAY_BEFORE = CHRISTMAS_EVE - 5
MONDAY_BEFORE = CHRISTMAS_EVE - 3


def cafe(combine):
    """5 % in points of 0.10 EUR (paid / 200); double points at weekends, 50 bonus points
    from Christmas Eve to Boxing Day (priority 1), 10 % off on Mondays."""
    return validate_program("cafe", {
        "version": 1, "currency": "EUR", "points": {"earn_bp": 500, "points_per_unit": 10},
        "promotions": {"combine": combine, "offers": [
            {"id": "weekend", "weekdays": ["sat", "sun"], "earn_multiplier_bp": 20000},
            {"id": "christmas", "first_day": "2026-12-24", "last_day": "2026-12-26",
             "bonus_points": 50, "priority": 1},
            {"id": "monday", "weekdays": ["mon"], "discount_pct": 10}]}})


def test_promotions_apply_by_day_and_weekday_and_the_best_one_wins():
    """40.00 earns 20 points. Saturday before: double, 40. Christmas Eve (a Thursday): 20 +
    50. Boxing Day, a Saturday: both apply; best is Christmas (priority 1): 70. Monday:
    10 % off, 36.00 paid, 18 points."""
    program = cafe("best")
    expected = ((SATURDAY_BEFORE, 40, 0, ["weekend"]), (CHRISTMAS_EVE, 70, 0, ["christmas"]),
                (SATURDAY_AFTER, 70, 0, ["christmas"]), (MONDAY_BEFORE, 18, 400, ["monday"]),
                (CHRISTMAS_EVE + 7, 20, 0, None))
    for day, points, discount, offers in expected:
        _, effects = accepted(issued(program, day=day), program, purchase("a", 4000), day)
        assert (effects["points_earned"], effects["discount_minor"],
                effects.get("promotions")) == (points, discount, offers), day


def test_stacked_promotions_add_up_and_an_offline_quote_gives_them():
    """Stacked on Boxing Day: double points (40) and the 50 bonus: 90."""
    program = cafe("stack")
    _, effects = accepted(issued(program, day=SATURDAY_AFTER), program, purchase("a", 4000),
                          SATURDAY_AFTER)
    assert (effects["points_earned"], effects["promotions"]) == (90, ["weekend", "christmas"])
    for day in (SATURDAY_BEFORE, CHRISTMAS_EVE, SATURDAY_AFTER, MONDAY_BEFORE):
        _, online = accepted(issued(program, day=day), program, purchase("a", 4000), day)
        quote = engine_offline.quote(program, None, 0, True, 4000, "other", day)
        assert (quote["points_earned"], quote["discount_minor"]) == (
            online["points_earned"], online["discount_minor"]), day


def test_a_reward_takes_its_points_oldest_first_earns_none_and_comes_back_whole():
    """coffee's mug: 50 points (worth 50 * 0.10 = 5.00) and 2.50 in cash, so its amount is
    7.50. Points of day 0 (100) go before those of day 10 (20); 3.00 of it refunded gives
    back 300 * 500 / 750 = 200 minor = 20 points and 300 * 250 / 750 = 100 in cash."""
    state = issued(COFFEE)
    state, _ = accepted(state, COFFEE, purchase("p1", 20000), 0)  # 100 points, day 0
    state, _ = accepted(state, COFFEE, purchase("p2", 4000), 10)  # 20 points, day 10
    state, effects = accepted(state, COFFEE, {"op": "reward", "id": "m", "item": "mug"}, 10)
    assert (effects["amount_minor"], effects["points_redeemed"], effects["redeem_minor"],
            effects["other_minor"], effects["points_earned"]) == (750, 50, 500, 250, 0)
    assert [lot[:2] for lot in state["lots"]] == [[0, 50], [10, 20]]
    state, back_effects = accepted(state, COFFEE, refund("m", 300), 11)
    assert (back_effects["points_restored"], back_effects["other_minor"]) == (20, 100)
    assert [lot[:2] for lot in state["lots"]] == [[0, 70], [10, 20]]
    for op, reason in (({"op": "reward", "id": "x", "item": "hat"}, "reward_unknown"),
                       ({"op": "reward", "id": "y", "item": "mug", "amount_minor": 700},
                        "amount_invalid")):
        _, declined = engine.apply(state, COFFEE, op, 11)
        assert declined["declined"] == reason
    _, declined = engine.apply(issued(CLUB), CLUB, {"op": "reward", "id": "z", "item": "mug"}, 0)
    assert declined["declined"] == "operation_not_in_program"  # club has no catalogue


def occasions():
    """Stacked: double points 07:00-10:00 UTC, 100 bonus points on a card's first purchase,
    20 % off in the customer's birthday week. 40.00 earns 20 points."""
    return validate_program("occasions", {
        "version": 1, "currency": "EUR", "points": {"earn_bp": 500, "points_per_unit": 10},
        "promotions": {"combine": "stack", "offers": [
            {"id": "early", "name": "Early bird", "hours": [[7, 10]],
             "earn_multiplier_bp": 20000},
            {"id": "welcome", "first_purchase": True, "bonus_points": 100},
            {"id": "birthday", "name": "Happy birthday", "birthday_week": True,
             "discount_pct": 20}]}})


def at(sale_id, minute=None, birthday=None):
    op = purchase(sale_id, 4000)
    if minute is not None:
        op["minute"] = minute
    if birthday is not None:
        op["birthday"] = birthday
    return op


def test_an_offer_by_hours_applies_from_its_first_hour_until_its_last_and_needs_the_minute():
    """First purchase at noon: 20 + 100 welcome. Then 07:00 and 09:59: double, 40; 10:00 and
    no minute given: 20. An offline quote at 08:00 gives the double, without the welcome."""
    program = occasions()
    state, effects = accepted(issued(program), program, at("a", 720), 0)
    assert (effects["points_earned"], effects["promotions"]) == (120, ["welcome"])
    for sale_id, minute, points, offers in (("b", 420, 40, ["early"]), ("c", 599, 40, ["early"]),
                                            ("d", 600, 20, None), ("e", None, 20, None)):
        state, effects = accepted(state, program, at(sale_id, minute), 0)
        assert (effects["points_earned"], effects.get("promotions")) == (points, offers), minute
    quote = engine_offline.quote(program, None, 0, True, 4000, "other", 0, 480)
    assert (quote["points_earned"], quote["promotions"]) == (40, ["early"])
    assert "promotions" not in engine_offline.quote(program, None, 0, True, 4000, "other", 0)
    _, declined = engine.apply(state, program, at("f", 1440), 0)
    assert declined["declined"] == "field_invalid"


def test_the_first_purchase_offer_is_for_a_card_that_never_bought_even_if_refunded():
    """A refunded first purchase still counts; a card taken on from balances has an unknown
    past: no welcome."""
    program = occasions()
    state, effects = accepted(issued(program), program, at("a"), 0)
    assert effects["points_earned"] == 120
    state, _ = accepted(state, program, refund("a", 4000), 0)
    _, effects = accepted(state, program, at("b"), 0)
    assert (effects["points_earned"], effects.get("promotions")) == (20, None)
    adopted = engine_adopt.adopt("C1", program, 0, 0, 0)
    _, effects = accepted(adopted, program, at("c"), 0)
    assert effects["points_earned"] == 20


def test_the_birthday_week_is_seven_days_from_the_birthday_and_29_february_falls_on_28th():
    """Birthday 30 December: 2026-12-30 .. 2027-01-05 (20 % off: 8.00 of 40.00, 16 points
    on 32.00 paid). 29 February: from 28 February in 2027, from 29 February in 2028."""
    program = occasions()
    state, _ = accepted(issued(program), program, at("first"), 0)
    cases = (("12-30", "2026-12-29", 0), ("12-30", "2026-12-30", 800),
             ("12-30", "2027-01-05", 800), ("12-30", "2027-01-06", 0),
             ("02-29", "2027-02-27", 0), ("02-29", "2027-02-28", 800),
             ("02-29", "2027-03-06", 800), ("02-29", "2027-03-07", 0),
             ("02-29", "2028-02-28", 0), ("02-29", "2028-02-29", 800),
             ("02-29", "2028-03-06", 800), ("02-29", "2028-03-07", 0))
    for birthday, date, discount in cases:
        day = days_of_date(date)
        _, effects = accepted(state, program, at("s", birthday=birthday), day)
        assert effects["discount_minor"] == discount, (birthday, date)
        assert effects["points_earned"] == (16 if discount else 20)
        assert effects.get("promotions") == (["birthday"] if discount else None)
    _, effects = accepted(state, program, at("s"), days_of_date("2026-12-30"))
    assert effects["discount_minor"] == 0  # no birthday given: no birthday offer
    for wrong in ("02-30", "2-28", "1990-02-28", 229, "13-01"):
        _, declined = engine.apply(state, program, at("s", birthday=wrong), 0)
        assert declined["declined"] == "field_invalid", wrong


def test_a_targeted_offer_applies_only_to_a_granted_card_online_and_its_uses_run_out():
    """Rule TARGETED_OFFER_GRANTED: 15 % off for the cards granted "winback". Before any
    grant, 40.00 online: nothing off, 20 points (5 %, 10 points a euro). Granted 2 uses up to
    day 3: 40.00 online gets 6.00 off, 34.00 paid earns 17 points; a sale that may not use
    grants (offline, applied later) gets nothing and takes no use; the second online sale
    takes the last use (GRANT_USED_PER_PURCHASE) and the third gets nothing. Granted again
    (GRANT_REPLACES) 1 use up to day 5: day 6 is past it. An offline quote never gives it
    (OFFLINE_NO_TARGETED_OFFER)."""
    program = validate_program("winback", {
        "version": 1, "currency": "EUR", "points": {"earn_bp": 500, "points_per_unit": 10},
        "promotions": {"offers": [{"id": "winback", "targeted": True, "discount_pct": 15},
                                  {"id": "all", "bonus_points": 1}]}})
    state = issued(program)

    def online(sale_id, day):
        op = purchase(sale_id, 4000)
        op["grants"] = True
        return accepted(state, program, op, day)

    state, effects = online("a", 0)
    assert (effects["discount_minor"], effects["points_earned"]) == (0, 21)
    grant = {"op": "grant", "id": "g1", "offer": "winback", "uses": 2, "last_day": 3}
    state, effects = accepted(state, program, grant, 0)
    assert (effects["offer"], effects["uses"], effects["last_day"]) == ("winback", 2, 3)
    assert state["grants"] == {"winback": [2, 3]}
    state, effects = online("b", 1)
    assert (effects["discount_minor"], effects["points_earned"], effects["promotions"]) == (
        600, 17, ["winback"])
    assert state["grants"] == {"winback": [1, 3]}
    state, effects = accepted(state, program, purchase("c", 4000), 1)  # no grants: offline
    assert (effects["discount_minor"], effects["promotions"]) == (0, ["all"])
    assert state["grants"] == {"winback": [1, 3]}
    state, effects = online("d", 3)
    assert effects["discount_minor"] == 600 and "grants" not in state
    state, effects = online("e", 3)
    assert effects["discount_minor"] == 0
    state, _ = accepted(state, program, dict(grant, id="g2", uses=1, last_day=5), 4)
    state, effects = online("f", 6)
    assert effects["discount_minor"] == 0 and state["grants"] == {"winback": [1, 5]}
    quote = engine_offline.quote(program, None, 0, True, 4000, "other", 0, 480)
    assert (quote["discount_minor"], quote.get("promotions")) == (0, ["all"])
    for wrong in ({"offer": "all"}, {"offer": "nope"}, {"uses": 0}, {"uses": 101},
                  {"uses": True}, {"last_day": 5}, {"last_day": "7"}):
        _, declined = engine.apply(state, program, dict(grant, id="g3", **wrong), 6)
        assert declined["declined"] == "field_invalid", wrong
    op = purchase("g", 4000)
    op["grants"] = "yes"
    _, declined = engine.apply(state, program, op, 6)
    assert declined["declined"] == "field_invalid"


def test_a_replayed_sale_takes_a_use_only_of_the_offers_it_got():
    """Rule GRANTS_AS_POSTED: a posted sale replayed with the offers its gateway says it got
    ("grants": a list) takes a use of those alone. Granted "winback" with one use: a sale
    that says it got none (priced before the grant reached its store) takes no use and gets
    nothing off, one that says "winback" takes it, and a list of offers of no grant gives
    nothing. A list of anything but texts is field_invalid."""
    program = validate_program("winback", {
        "version": 1, "currency": "EUR", "points": {"earn_bp": 500, "points_per_unit": 10},
        "promotions": {"offers": [{"id": "winback", "targeted": True, "discount_pct": 15}]}})
    state = issued(program)
    grant = {"op": "grant", "id": "g1", "offer": "winback", "uses": 1, "last_day": 3}
    state, _ = accepted(state, program, grant, 0)

    def replayed(sale_id, got):
        op = purchase(sale_id, 4000)
        op["grants"] = got
        return accepted(state, program, op, 1)

    state, effects = replayed("a", [])
    assert effects["discount_minor"] == 0 and state["grants"] == {"winback": [1, 3]}
    state, effects = replayed("b", ["other"])
    assert effects["discount_minor"] == 0 and state["grants"] == {"winback": [1, 3]}
    state, effects = replayed("c", ["winback"])
    assert effects["discount_minor"] == 600 and "grants" not in state
    op = purchase("d", 4000)
    op["grants"] = [1]
    _, declined = engine.apply(state, program, op, 1)
    assert declined["declined"] == "field_invalid"
