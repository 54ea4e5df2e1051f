"""Card program rules, computed the same way by the terminal and (authoritatively) the gateway.

A program is a plain dict, so it can travel as signed configuration:

    {"id": "gift", "currency": "EUR",
     "holds_value": True,          # the card carries spendable value
     "earns_points": False,        # purchases earn loyalty points
     "points_per_unit_bp": 10000,  # points per whole currency unit paid, in basis points
     "points_rounding": "down",    # named rule from protocol.money
     "topup_allowed": False,
     "topup_bonus_bp": 0,          # top-up bonus in basis points of the amount paid
     "bonus_rounding": "down"}

Named rules:
    POINTS_EARNED      points = amount_minor * points_per_unit_bp / (10000 * 10**exponent),
                       rounded by points_rounding (default: down, never a fraction unearned)
    TOPUP_BONUS        bonus = amount_minor * topup_bonus_bp / 10000, rounded by bonus_rounding
    REFUND_REVERSAL    a refund returns at most what the purchase took from the card, and takes
                       back points in proportion: after refunding r of an amount a that earned
                       p points, the points still held are floor(p * (a - r) / a); a full refund
                       takes back exactly p, partial refunds never take back more in total.
"""

from protocol import money
from protocol.errors import ValidationError
from protocol.reasons import AMOUNT_INVALID, PROGRAM_UNKNOWN, REFUND_EXCEEDS_ORIGINAL

PROGRAM_DEFAULTS = {
    "holds_value": False,
    "earns_points": False,
    "points_per_unit_bp": 0,
    "points_rounding": money.ROUND_DOWN,
    "topup_allowed": False,
    "topup_bonus_bp": 0,
    "bonus_rounding": money.ROUND_DOWN,
}


def program(programs, program_id):
    """Look a program up, with defaults filled in; ValidationError if not configured."""
    found = programs.get(program_id) if program_id is not None else None
    if found is None:
        raise ValidationError(PROGRAM_UNKNOWN, "program %r" % (program_id,))
    merged = dict(PROGRAM_DEFAULTS)
    merged.update(found)
    return merged


def points_earned(prog, amount_minor):
    if not prog["earns_points"]:
        return 0
    scale = money.BASIS_POINTS_PER_UNIT * 10 ** money.exponent(prog["currency"])
    return money.divide(amount_minor * prog["points_per_unit_bp"], scale, prog["points_rounding"])


def topup_bonus(prog, amount_minor):
    return money.percent_of(amount_minor, prog["topup_bonus_bp"], prog["bonus_rounding"])


def refund_reversal(original, refunded_before, refund_amount_minor):
    """What a refund of `refund_amount_minor` takes back from an original purchase.

    `original` has amount_minor, card_value_minor and points; `refunded_before` has the sums
    of amount_minor, card_value_minor and points of earlier refunds of it. Returns
    (card_value_minor, points) for this refund; raises refund_exceeds_original.
    """
    amount = original["amount_minor"]
    refunded_after = refunded_before["amount_minor"] + refund_amount_minor
    if refund_amount_minor <= 0:
        raise ValidationError(AMOUNT_INVALID, "refund amount must be positive")
    if refunded_after > amount:
        raise ValidationError(REFUND_EXCEEDS_ORIGINAL, "refund beyond the purchase amount")
    # The card part comes back in the proportion of the amount refunded. Computing what the
    # card *keeps* (rounded down) and subtracting what earlier refunds returned makes the sum
    # of all partial refunds exactly the original card part, never more.
    kept_value = money.divide(
        original["card_value_minor"] * (amount - refunded_after), amount, money.ROUND_DOWN
    )
    card_value = original["card_value_minor"] - kept_value - refunded_before["card_value_minor"]
    kept_points = money.divide(
        original["points"] * (amount - refunded_after), amount, money.ROUND_DOWN
    )
    points = original["points"] - kept_points - refunded_before["points"]
    assert card_value >= 0 and points >= 0, "reversal must never be negative"
    return card_value, points
