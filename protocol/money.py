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

# The bounds of every amount and points figure on every tier: a terminal's record, the
# program engine's legs, the gateway's check at ingest and the ledger's validation all use
# these two names, so the gateway never accepts what the ledger would refuse.
AMOUNT_MINOR_MAX = 10**12
# Points are posted as legs like money and checked with `is_amount` (the gateway's engine
# results, the ledger's legs in any unit): one bound for both, written once.
POINTS_MAX = AMOUNT_MINOR_MAX
BASIS_POINTS_PER_UNIT = 10000
POINTS_UNIT = "PTS"

ROUND_DOWN = "down"
ROUND_HALF_UP = "half_up"
ROUND_HALF_EVEN = "half_even"
ROUND_UP = "up"
ROUNDING_RULES = (ROUND_DOWN, ROUND_HALF_UP, ROUND_HALF_EVEN, ROUND_UP)

# ISO 4217 list one (current codes): alphabetic code -> minor unit exponent. Kept as strings
# rather than a dict so a board holds them in flash, not in RAM.
_EXPONENT_0 = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_EXPONENT_3 = "BHD IQD JOD KWD LYD OMR TND"
_EXPONENT_4 = "CLF UYW"
_EXPONENT_2 = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP BYN"
    " BZD CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS"
    " GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR"
    " LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD"
    " PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN"
    " SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD UYU UZS VES WST XCD XCG YER ZAR ZMW"
    " ZWG"
)
EXPONENT_TABLES = ((0, _EXPONENT_0), (2, _EXPONENT_2), (3, _EXPONENT_3), (4, _EXPONENT_4))


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


def exponent_or_none(code):
    """The minor-unit exponent of an ISO 4217 code, or None when the code is unknown."""
    if not isinstance(code, str) or len(code) != 3:
        return None
    for char in code:
        if not "A" <= char <= "Z":
            return None
    # Three capitals can only match a whole space-separated entry: no allocation per lookup.
    for places, codes in EXPONENT_TABLES:
        if code in codes:
            return places
    return None


def exponent(code):
    places = exponent_or_none(code)
    if places is None:
        raise ValidationError(CURRENCY_UNKNOWN, "not a known ISO 4217 code: %r" % (code,))
    return places


def check_currency(code):
    exponent(code)
    return code


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
