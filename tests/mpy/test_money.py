"""Exact money: amount checks, ISO 4217 exponents and every named rounding rule."""

from mpytest import expect_raises
from protocol import money
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
