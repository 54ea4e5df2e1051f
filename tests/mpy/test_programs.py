"""Program validation: plain dicts in, complete programs or a program_invalid naming the key out."""

from mpytest import expect_raises, load_json
from protocol.programs import ProgramInvalid, validate_program, validate_programs

DOCUMENT = load_json("program_scenarios.json")["programs"]


def table(**sections):
    base = {"version": 1, "currency": "EUR"}
    base.update(sections)
    return base


def refusal(program_table, program_id="p"):
    """The ProgramInvalid a program table raises: (key path, detail)."""
    document = {"programs": {program_id: program_table}}
    error = expect_raises(ProgramInvalid, validate_programs, document)
    assert error.reason == "program_invalid"
    return error.key_path, error.detail


def test_every_example_program_is_valid_and_complete():
    programs = validate_programs(DOCUMENT)
    assert sorted(programs) == ["bakery", "chainrank", "club", "coffee", "frequent", "gift",
                                "longtime", "regulars", "saver", "staff", "vip", "wallet"]
    for program in programs.values():
        # `company` only on a program with the section (staff): additive for old terminals
        keys = sorted(key for key in program if key != "company")
        assert keys == sorted(["id", "version", "currency", "name", "refund_window_days",
                               "points", "prepaid", "gift", "discount", "tiers",
                               "volume", "promotions", "rewards"])


def test_validating_a_validated_program_gives_it_back_unchanged():
    programs = validate_programs(DOCUMENT)
    assert validate_programs({"programs": programs}) == programs


def test_defaults_are_filled_in():
    program = validate_program("p", table(points={"earn_bp": 100}, prepaid={}))
    assert program["points"] == {"earn_bp": 100, "earn_rounding": "down", "points_per_unit": 1,
                                 "expiry_days": None}
    assert program["prepaid"] == {"bonus_bp": 0, "bonus_rounding": "down", "cash_out": False}
    assert program["refund_window_days"] == 90 and program["gift"] is None
    volume = validate_program("v", table(volume={"threshold_minor": 10000, "discount_pct": 10}))
    assert volume["volume"] == {"threshold_minor": 10000, "threshold_rule": "at_least",
                                "discount_pct": 10, "discount_rounding": "down"}


def test_a_threshold_rule_is_at_least_or_above():
    path, detail = refusal(table(volume={"threshold_minor": 100, "discount_pct": 10,
                                         "threshold_rule": "over"}))
    assert path == ("programs", "p", "volume", "threshold_rule")


def test_floats_bools_and_out_of_range_numbers_are_refused_by_key():
    for bad in (2.5, True, -1, 10001, "500"):
        path, detail = refusal(table(points={"earn_bp": bad}))
        assert path == ("programs", "p", "points", "earn_bp")
        assert "integer in 0..10000" in detail


def test_a_missing_key_names_its_table_and_the_key():
    path, detail = refusal(table(discount={"threshold_minor": 100, "qualify_days": 30,
                                           "discount_pct": 10}))
    assert path == ("programs", "p", "discount", "duration_days") and "missing" in detail


def test_unknown_keys_are_refused_so_typos_cannot_pass():
    path, detail = refusal(table(points={"earn_bp": 100, "expiry_day": 30}))
    assert path == ("programs", "p", "points", "expiry_day") and "unknown key" in detail
    assert refusal(dict(table(), kind="gift"))[0] == ("programs", "p", "kind")


def test_rounding_rules_are_the_four_named_ones():
    for rule in ("down", "half_up", "half_even", "up"):
        assert validate_program("p", table(points={"earn_bp": 1, "earn_rounding": rule}))
    path, detail = refusal(table(points={"earn_bp": 1, "earn_rounding": "nearest"}))
    assert path[-1] == "earn_rounding" and "half_even" in detail


def test_a_point_is_worth_whole_minor_units():
    assert validate_program("p", table(points={"earn_bp": 1, "points_per_unit": 25}))
    assert refusal(table(points={"earn_bp": 1, "points_per_unit": 3}))[0][-1] == "points_per_unit"
    jpy = {"version": 1, "currency": "JPY", "points": {"earn_bp": 1, "points_per_unit": 2}}
    assert refusal(jpy)[0][-1] == "points_per_unit"


def test_a_program_needs_a_section_and_is_prepaid_or_gift_not_both():
    assert refusal(table())[0] == ("programs", "p")
    assert refusal(table(prepaid={}, gift={}))[0] == ("programs", "p", "gift")


def test_ids_currencies_and_versions_are_checked():
    assert refusal(table(points={"earn_bp": 1}), "bad id")[0] == ("programs", "bad id")
    assert refusal(dict(table(points={"earn_bp": 1}), currency="XYZ"))[0][-1] == "currency"
    assert refusal(dict(table(points={"earn_bp": 1}), version=0))[0][-1] == "version"
    assert refusal(dict(table(points={"earn_bp": 1}), id="other"))[0][-1] == "id"


def tiers(levels, **extra):
    section = {"window_days": 90, "downgrade": "period_end", "downgrade_days": 90,
               "levels": levels}
    section.update(extra)
    return table(tiers=section)


def test_tier_levels_start_at_zero_rise_strictly_and_have_unique_names():
    base = {"name": "base", "spend_minor": 0}
    assert refusal(tiers([{"name": "base", "spend_minor": 5}]))[0][-2:] == (0, "spend_minor")
    step = {"name": "up", "spend_minor": 0}
    assert refusal(tiers([base, step]))[0][-2:] == (1, "spend_minor")
    twin = {"name": "base", "spend_minor": 10}
    assert refusal(tiers([base, twin]))[0][-2:] == (1, "name")
    assert refusal(tiers([]))[0][-1] == "levels"
    assert refusal(tiers([base], downgrade="never"))[0][-1] == "downgrade"


def test_a_tier_basis_is_spend_visits_or_membership_days_each_with_its_own_threshold():
    spend = validate_program("p", tiers([{"name": "base", "spend_minor": 0}]))["tiers"]
    assert spend["basis"] == "spend" and spend["levels"][0]["spend_minor"] == 0
    visits = validate_program("p", tiers([{"name": "base", "min_visits": 0},
                                          {"name": "regular", "min_visits": 90}],
                                         basis="visits"))["tiers"]
    assert [level["min_visits"] for level in visits["levels"]] == [0, 90]
    assert "spend_minor" not in visits["levels"][0]
    member = {"basis": "membership_days",
              "levels": [{"name": "new", "min_member_days": 0},
                         {"name": "loyal", "min_member_days": 365}]}
    program = validate_program("p", table(tiers=member))
    assert (program["tiers"]["window_days"], program["tiers"]["downgrade"]) == (None, None)
    assert validate_program("p", program) == program
    # Rank: top_pct from 100 (everyone), strictly falling; a period, no window or downgrade.
    rank = {"basis": "rank", "period_days": 30,
            "levels": [{"name": "member", "top_pct": 100}, {"name": "gold", "top_pct": 10}]}
    program = validate_program("p", table(tiers=rank))
    assert (program["tiers"]["period_days"], program["tiers"]["window_days"]) == (30, None)
    assert [level["top_pct"] for level in program["tiers"]["levels"]] == [100, 10]
    assert validate_program("p", program) == program
    path, detail = refusal(tiers([{"name": "base", "spend_minor": 0}], basis="rank"))
    assert path[-1] == "window_days" and "ranking" in detail


def test_a_level_has_the_threshold_of_its_basis_and_visits_fit_the_window():
    path, detail = refusal(tiers([{"name": "base", "spend_minor": 0}], basis="visits"))
    assert path[-2:] == (0, "spend_minor") and "min_visits" in detail
    path, _ = refusal(tiers([{"name": "base"}], basis="visits"))
    assert path[-2:] == (0, "min_visits")
    many = [{"name": "base", "min_visits": 0}, {"name": "daily", "min_visits": 91}]
    path, detail = refusal(tiers(many, basis="visits"))  # 90 days hold at most 90 visits
    assert path[-2:] == (1, "min_visits") and "0..90" in detail
    rising = [{"name": "base", "min_member_days": 0}, {"name": "old", "min_member_days": 0}]
    assert refusal(table(tiers={"basis": "membership_days", "levels": rising}))[0][-2:] == (
        1, "min_member_days")
    path, detail = refusal(tiers([{"name": "new", "min_member_days": 0}],
                                 basis="membership_days"))
    assert path[-1] == "window_days" and "only grow" in detail


def test_an_earn_multiplier_needs_points_to_multiply():
    levels = [{"name": "base", "spend_minor": 0, "earn_multiplier_bp": 20000}]
    path, detail = refusal(tiers(levels))
    assert path == ("programs", "p", "tiers", "levels", 0, "earn_multiplier_bp")
    assert "points" in detail


def test_a_document_holds_only_programs_and_at_least_one():
    assert expect_raises(ProgramInvalid, validate_programs, {"programs": {}}).key_path == (
        "programs",)
    error = expect_raises(ProgramInvalid, validate_programs, {"programs": {}, "extra": 1})
    assert error.key_path == ("extra",)
    error = expect_raises(ProgramInvalid, validate_programs, {"programs": {"p": "gift"}})
    assert error.key_path == ("programs", "p") and "table" in error.detail
