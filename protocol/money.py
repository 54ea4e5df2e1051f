"""Exact money: integer minor units plus an ISO 4217 alphabetic code; named rounding rules.

No float ever holds an amount. Where a rule divides (a percentage bonus, points per unit
spent), the caller names the rounding rule, and each rule is tested:

    ROUND_DOWN       towards zero: the customer never receives a fraction they did not earn
    ROUND_HALF_UP    nearest, ties away from zero (common retail practice)
    ROUND_HALF_EVEN  nearest, ties to even (banker's rounding; no bias over many operations)
    ROUND_UP         away from zero
"""

from protocol.errors import ValidationError
from protocol.reasons import AMOUNT_INVALID, CURRENCY_UNKNOWN

AMOUNT_MINOR_MAX = 10**12
BASIS_POINTS_PER_UNIT = 10000
POINTS_UNIT = "PTS"

ROUND_DOWN = "down"
ROUND_HALF_UP = "half_up"
ROUND_HALF_EVEN = "half_even"
ROUND_UP = "up"
ROUNDING_RULES = (ROUND_DOWN, ROUND_HALF_UP, ROUND_HALF_EVEN, ROUND_UP)

# ISO 4217 alphabetic code -> minor unit exponent (ISO 4217 list one, current edition).
CURRENCY_EXPONENTS = {
    "AUD": 2, "BHD": 3, "BRL": 2, "CAD": 2, "CHF": 2, "CLP": 0, "CNY": 2, "CZK": 2,
    "DKK": 2, "EUR": 2, "GBP": 2, "HKD": 2, "HUF": 2, "IDR": 2, "ILS": 2, "INR": 2,
    "ISK": 0, "JOD": 3, "JPY": 0, "KRW": 0, "KWD": 3, "MXN": 2, "NOK": 2, "NZD": 2,
    "OMR": 3, "PLN": 2, "RON": 2, "SEK": 2, "SGD": 2, "THB": 2, "TND": 3, "TRY": 2,
    "TWD": 2, "UAH": 2, "USD": 2, "VND": 0, "ZAR": 2,
}  # fmt: skip


def is_amount(value):
    """True for an int (not a bool) in 0..AMOUNT_MINOR_MAX."""
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and 0 <= value <= AMOUNT_MINOR_MAX
    )


def check_amount(value, name="amount_minor"):
    if not is_amount(value):
        raise ValidationError(AMOUNT_INVALID, name + " must be an integer in 0..AMOUNT_MINOR_MAX")
    return value


def check_currency(code):
    if not isinstance(code, str) or code not in CURRENCY_EXPONENTS:
        raise ValidationError(CURRENCY_UNKNOWN, "not a known ISO 4217 code: %r" % (code,))
    return code


def exponent(code):
    return CURRENCY_EXPONENTS[check_currency(code)]


def divide(numerator, denominator, rule):
    """numerator / denominator rounded to an integer by the named rule."""
    assert isinstance(numerator, int) and isinstance(denominator, int) and denominator > 0
    assert rule in ROUNDING_RULES, "unknown rounding rule"
    negative = numerator < 0
    quotient, remainder = divmod(abs(numerator), denominator)
    if remainder:
        twice = 2 * remainder
        tie_to_odd = twice == denominator and quotient % 2 == 1
        if (
            rule == ROUND_UP
            or (rule == ROUND_HALF_UP and twice >= denominator)
            or (rule == ROUND_HALF_EVEN and (twice > denominator or tie_to_odd))
        ):
            quotient += 1
    return -quotient if negative else quotient


def percent_of(amount_minor, basis_points, rule):
    """`basis_points`/100 percent of an amount (1 bp = 0.01 %), rounded by the named rule."""
    return divide(amount_minor * basis_points, BASIS_POINTS_PER_UNIT, rule)


def format_minor(amount_minor, code):
    """Human text such as '12.50 EUR' for receipts and reports; never parsed back."""
    places = exponent(code)
    sign = "-" if amount_minor < 0 else ""
    whole, part = divmod(abs(amount_minor), 10**places)
    if places == 0:
        return "%s%d %s" % (sign, whole, code)
    digits = ("0" * places + str(part))[-places:]
    return "%s%d.%s %s" % (sign, whole, digits, code)
