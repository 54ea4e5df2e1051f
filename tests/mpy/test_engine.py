"""The program engine: hand-computed scenarios and the rules around them, on both interpreters."""

import json

from engine_steps import issued

from mpytest import load_json
from protocol import engine
from protocol.engine_legs import copy_state, share
from protocol.programs import validate_programs

SCENARIOS = load_json("program_scenarios.json")
PROGRAMS = validate_programs(SCENARIOS["programs"])


def json_round_trip(value):
    """value through json.dumps and json.loads: what a card's state is after storage."""
    return json.loads(json.dumps(value))


def run_ops(ops, round_trip=False):
    """Run `tilltap programs simulate` lines through the engine (the same rules as
    tools/programs.py, written again here so MicroPython runs them): (effects, cards, states).
    With round_trip, every card's state goes through JSON before each operation."""
    day = 0
    cards = {}
    op_cards = []
    results = []
    for index in range(len(ops)):
        if round_trip:
            cards = {card: json_round_trip(cards[card]) for card in cards}
        op = ops[index]
        if op["op"] == "advance":
            op_cards.append(None)
            day += op["days"]
            changed = {}
            for card in sorted(cards):
                state = cards[card]
                cards[card], effects = engine.apply(state, PROGRAMS[state["program"]],
                                                    {"op": "tick"}, day)
                if effects["legs"] or "tier_change" in effects:
                    changed[card] = effects
            results.append({"op": "advance", "days": op["days"], "day": day, "cards": changed})
            continue
        card = op_cards[op["of"]] if "of" in op else op["card"]
        op_cards.append(card)
        state = cards.get(card) if card is not None else None
        program_id = state["program"] if state is not None else op.get("program")
        if card is None or program_id is None or program_id not in PROGRAMS:
            reason = "refund_unknown_original" if card is None else (
                "card_unknown" if program_id is None else "program_unknown")
            results.append({"op": op["op"], "day": day, "declined": reason, "legs": []})
            continue
        fields = {key: op[key] for key in op if key != "program"}
        fields["id"] = str(index)
        if "of" in op:
            fields["of"] = str(op["of"])
        new_state, effects = engine.apply(state, PROGRAMS[program_id], fields, day)
        if new_state is not None:
            cards[card] = new_state
        effects.pop("id", None)
        if "of" in op:
            effects["of"] = op["of"]
        results.append(effects)
    summaries = {card: engine.summary(cards[card], PROGRAMS[cards[card]["program"]], day)
                 for card in cards}
    return results, summaries, cards


def mismatches(expected, actual, where):
    """Keys of `expected` that `actual` lacks or holds otherwise; an advance's cards exactly."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        found = []
        for key in expected:
            if key not in actual:
                found.append("%s.%s missing" % (where, key))
            else:
                found.extend(mismatches(expected[key], actual[key], where + "." + key))
        if where.endswith(".cards") and sorted(expected) != sorted(actual):
            found.append("%s: cards %r, expected %r" % (where, sorted(actual), sorted(expected)))
        return found
    if expected != actual or type(expected) is not type(actual):
        return ["%s: %r, expected %r" % (where, actual, expected)]
    return []


def all_effects(results):
    for effects in results:
        if effects["op"] == "advance":
            for card in effects["cards"]:
                yield effects["cards"][card]
        else:
            yield effects


def test_every_scenario_gives_the_hand_computed_effects_and_card_states():
    for scenario in SCENARIOS["scenarios"]:
        assert len(scenario["effects"]) == len(scenario["ops"]), scenario["name"]
        results, summaries, _ = run_ops(scenario["ops"])
        found = []
        for index in range(len(results)):
            expected = scenario["effects"][index]
            assert "legs" in expected or "cards" in expected, (scenario["name"], index)
            found.extend(mismatches(expected, results[index], "op%d" % index))
        found.extend(mismatches(scenario["cards"], summaries, "final.cards"))
        assert not found, scenario["name"] + ": " + "; ".join(found)


def test_every_scenario_covers_a_program_kind_and_all_kinds_are_covered():
    used = set()
    for scenario in SCENARIOS["scenarios"]:
        assert scenario["comment"], scenario["name"]
        for op in scenario["ops"]:
            if op["op"] == "issue" and op["program"] in PROGRAMS:
                program = PROGRAMS[op["program"]]
                used.update(key for key in ("points", "prepaid", "gift", "discount", "tiers")
                            if program[key] is not None)
                if program["points"] and program["prepaid"]:
                    used.add("points+prepaid")
                tiers = program["tiers"]
                if tiers:
                    used.add(tiers["basis"])  # spend, visits, membership_days, rank
                    if tiers["downgrade"] is not None:  # membership, rank: no downgrade
                        used.add(tiers["downgrade"])
    assert used == {"points", "prepaid", "gift", "discount", "tiers", "points+prepaid",
                    "period_end", "days_below", "spend", "visits", "membership_days",
                    "rank"}


def test_every_operation_of_every_scenario_balances_in_every_unit():
    for scenario in SCENARIOS["scenarios"]:
        results, _, _ = run_ops(scenario["ops"])
        for effects in all_effects(results):
            totals = {}
            for _account, unit, amount, cause in effects["legs"]:
                assert isinstance(amount, int) and amount != 0 and cause
                totals[unit] = totals.get(unit, 0) + amount
            assert all(total == 0 for total in totals.values()), (scenario["name"], effects)


def test_card_value_and_points_always_equal_what_the_legs_posted():
    for scenario in SCENARIOS["scenarios"]:
        results, summaries, _ = run_ops(scenario["ops"])
        posted = {}
        for effects in all_effects(results):
            for account, _unit, amount, _cause in effects["legs"]:
                if account in ("card_value", "card_points") and "card" in effects:
                    key = (effects["card"], account)
                    posted[key] = posted.get(key, 0) - amount
        for card in summaries:
            assert posted.get((card, "card_value"), 0) == summaries[card]["value_minor"]
            assert posted.get((card, "card_points"), 0) == summaries[card]["points"]


WALLET = PROGRAMS["wallet"]
COFFEE = PROGRAMS["coffee"]


def test_a_declined_operation_returns_the_same_state_object_with_no_legs():
    state = issued(WALLET, 1000)
    new_state, effects = engine.apply(state, WALLET, {"op": "purchase", "id": "p",
                                                      "amount_minor": 5000, "pay": "card"}, 3)
    assert new_state is state
    assert effects["declined"] == "insufficient_value" and effects["legs"] == []
    assert effects["program"] == "wallet" and effects["version"] == 1 and effects["day"] == 3


def test_apply_never_changes_the_state_it_is_given():
    state = issued(COFFEE)
    before = copy_state(state)
    new_state, _ = engine.apply(state, COFFEE, {"op": "purchase", "id": "p",
                                                "amount_minor": 5000}, 200)
    assert state == before and new_state != before


def test_two_copies_of_a_state_given_the_same_operation_agree_exactly():
    state = issued(WALLET, 5000)
    op = {"op": "topup", "id": "t", "amount_minor": 2505}
    assert engine.apply(copy_state(state), WALLET, op, 7) == engine.apply(state, WALLET, op, 7)


def test_time_never_runs_backwards_for_a_card():
    state = issued(WALLET, 5000, day=10)
    _, effects = engine.apply(state, WALLET, {"op": "tick"}, 9)
    assert effects["declined"] == "time_invalid"


def test_a_card_is_only_run_under_its_own_program():
    state = issued(WALLET, 5000)
    _, effects = engine.apply(state, COFFEE, {"op": "tick"}, 1)
    assert effects["declined"] == "program_mismatch"


def test_unknown_operations_and_reused_ids_are_declined():
    state = issued(WALLET, 5000)
    assert engine.apply(state, WALLET, {"op": "borrow"}, 0)[1]["declined"] == "kind_unknown"
    op = {"op": "topup", "id": "sale", "amount_minor": 100}
    assert engine.apply(state, WALLET, op, 0)[1]["declined"] == "field_invalid"
    op = {"op": "topup", "amount_minor": 100}
    assert engine.apply(state, WALLET, op, 0)[1]["declined"] == "field_missing"


def test_a_points_only_card_is_issued_without_value():
    op = {"op": "issue", "id": "i", "card": "T1", "value_minor": 100}
    assert engine.apply(None, COFFEE, op, 0)[1]["declined"] == "operation_not_in_program"


def test_a_void_takes_no_amount():
    state = issued(WALLET, 5000)
    op = {"op": "void", "of": "sale", "amount_minor": 100}
    assert engine.apply(state, WALLET, op, 0)[1]["declined"] == "field_invalid"


def test_cash_out_defaults_to_the_whole_value_and_refuses_an_empty_card():
    state, effects = engine.apply(issued(WALLET, 5000), WALLET, {"op": "cashout"}, 1)
    assert effects["amount_minor"] == 5000 and state["value_minor"] == 0
    assert engine.apply(state, WALLET, {"op": "cashout"}, 1)[1]["declined"] == "insufficient_value"


def test_restored_points_keep_their_earn_day_so_a_late_refund_cannot_renew_them():
    # Day 0 earns 20 (lot day 0, expiry 90); day 80 redeems them; the refund on day 95
    # puts them back in the day-0 lot, already expired: the same refund posts the breakage.
    state = issued(COFFEE)
    state, _ = engine.apply(state, COFFEE, {"op": "purchase", "id": "a", "amount_minor": 4000}, 0)
    state, _ = engine.apply(state, COFFEE, {"op": "purchase", "id": "b", "amount_minor": 1000,
                                            "redeem_points": 20}, 80)
    state, effects = engine.apply(state, COFFEE, {"op": "void", "of": "b"}, 95)
    assert effects["points_restored"] == 20 and effects["points_expired"] == 20
    assert ["breakage", "PTS", -20, "expire"] in effects["legs"]
    assert engine.summary(state, COFFEE, 95)["points"] == 0


def test_refund_shares_of_any_split_sum_to_exactly_the_whole():
    for total, amount, parts in ((7, 1000, (333, 333, 334)), (999, 1000, (1, 998, 1)),
                                 (5, 3, (1, 1, 1)), (0, 10, (5, 5))):
        refunded = taken = 0
        for part in parts:
            taken += share(total, amount, refunded, refunded + part)
            refunded += part
        assert taken == total


def test_the_summary_reads_value_points_tier_and_discount():
    state = issued(PROGRAMS["vip"])
    summary = engine.summary(state, PROGRAMS["vip"], 0)
    assert summary == {"value_minor": 0, "points": 0, "tier": "member", "discount_pct": 0}


def test_a_card_state_is_plain_json_data_that_survives_a_round_trip_unchanged():
    for scenario in SCENARIOS["scenarios"]:
        _, _, states = run_ops(scenario["ops"])
        for card in states:
            assert json_round_trip(states[card]) == states[card], scenario["name"]


def test_states_read_back_from_json_give_the_same_effects_as_the_originals():
    for scenario in SCENARIOS["scenarios"]:
        results, summaries, states = run_ops(scenario["ops"])
        assert run_ops(scenario["ops"], round_trip=True) == (results, summaries, states), (
            scenario["name"])
