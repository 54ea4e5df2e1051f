"""Exact money: amount checks, ISO 4217 exponents and every named rounding rule."""

from mpytest import expect_raises
from protocol import money, rules
from protocol.errors import ValidationError


def test_amounts_are_integers_in_range_never_floats_bools_or_negatives():
    assert money.check_amount(0) == 0
    assert money.check_amount(money.AMOUNT_MINOR_MAX) == money.AMOUNT_MINOR_MAX
    for bad in (1.0, True, -1, money.AMOUNT_MINOR_MAX + 1, "5", None):
        assert expect_raises(ValidationError, money.check_amount, bad).reason == "amount_invalid"


def test_currency_codes_are_known_iso_4217_alphabetic_codes():
    assert money.exponent("EUR") == 2 and money.exponent("JPY") == 0
    assert money.exponent("KWD") == 3
    assert money.exponent("CLF") == 4 and money.exponent("ZWG") == 2 and money.exponent("AED") == 2
    assert money.exponent_or_none("BYNB") is None and money.exponent_or_none("N B") is None
    for bad in ("eur", "XYZ", "EU", 978):
        error = expect_raises(ValidationError, money.check_currency, bad)
        assert error.reason == "currency_unknown"


def test_round_down_truncates_toward_zero():
    assert money.divide(29, 10, money.ROUND_DOWN) == 2
    assert money.divide(-29, 10, money.ROUND_DOWN) == -2


def test_round_up_goes_away_from_zero():
    assert money.divide(21, 10, money.ROUND_UP) == 3
    assert money.divide(20, 10, money.ROUND_UP) == 2
    assert money.divide(-21, 10, money.ROUND_UP) == -3


def test_round_half_up_sends_ties_away_from_zero():
    assert money.divide(25, 10, money.ROUND_HALF_UP) == 3
    assert money.divide(24, 10, money.ROUND_HALF_UP) == 2
    assert money.divide(-25, 10, money.ROUND_HALF_UP) == -3


def test_round_half_even_sends_ties_to_the_even_neighbour():
    assert money.divide(25, 10, money.ROUND_HALF_EVEN) == 2
    assert money.divide(35, 10, money.ROUND_HALF_EVEN) == 4
    assert money.divide(26, 10, money.ROUND_HALF_EVEN) == 3


def test_percent_of_uses_basis_points():
    assert money.percent_of(1999, 500, money.ROUND_DOWN) == 99  # 5 % of 19.99 = 0.9995
    assert money.percent_of(1999, 500, money.ROUND_HALF_UP) == 100


def test_format_minor_uses_the_currency_exponent():
    assert money.format_minor(1250, "EUR") == "12.50 EUR"
    assert money.format_minor(-5, "EUR") == "-0.05 EUR"
    assert money.format_minor(1250, "JPY") == "1250 JPY"
    assert money.format_minor(1, "KWD") == "0.001 KWD"


LOYALTY = {"id": "loyalty", "currency": "EUR", "earns_points": True,
           "points_per_unit_bp": 10000, "points_rounding": "down"}


def test_points_earned_is_one_point_per_whole_unit_rounded_down():
    prog = rules.program({"loyalty": LOYALTY}, "loyalty")
    assert rules.points_earned(prog, 1999) == 19
    assert rules.points_earned(prog, 99) == 0


def test_topup_bonus_is_a_named_percentage():
    prog = rules.program({"p": {"id": "p", "currency": "EUR", "topup_bonus_bp": 500}}, "p")
    assert rules.topup_bonus(prog, 2500) == 125


def test_partial_refunds_never_reverse_more_than_the_purchase():
    original = {"amount_minor": 1000, "card_value_minor": 999, "points": 7}
    refunded = {"amount_minor": 0, "card_value_minor": 0, "points": 0}
    total_value = total_points = 0
    for part in (333, 333, 334):
        value, points = rules.refund_reversal(original, refunded, part)
        refunded["amount_minor"] += part
        refunded["card_value_minor"] += value
        refunded["points"] += points
        total_value += value
        total_points += points
    assert (total_value, total_points) == (999, 7)
    error = expect_raises(ValidationError, rules.refund_reversal, original, refunded, 1)
    assert error.reason == "refund_exceeds_original"


def test_unknown_program_is_refused():
    assert expect_raises(ValidationError, rules.program, {}, "nope").reason == "program_unknown"
