"""What a terminal needs to price a purchase offline, and the price it computes from it.

A terminal offline holds no card state, only what the gateway's last online answer for the
card said. The gateway puts into every authorization answer

    snapshot(state, program, now_day) -> {"tier": level name or None, "discount_pct": int}

the card's tier and the percent off a purchase on now_day (engine_spend.discount_pct: the
larger of the tracked and the tier discount). From it the terminal prices a purchase without
point redemption:

    quote(program, tier, discount_pct, same_day, amount_minor, pay)
        -> {"discount_minor", "card_minor", "other_minor", "points_earned", "discount_pct",
            "promotions"?: the ids of the offers it got, as engine.apply's effects name them}

same_day is True when the purchase falls on the day the snapshot was taken for: the discount
is then `discount_pct`. On a later day a tracked discount may have ended, so only the tier's
own discount applies. The discount follows the engine's rule LARGER_PERCENT_TIER_ON_TIE
(engine_spend.discount_of): a percent above the tier's is the tracked discount, rounded by
discount.discount_rounding; otherwise the tier's, rounded by tiers.discount_rounding (on
equal percents the tier's rounding). Points are engine_points.earned on what is paid, with
the tier's earn multiplier. So on the same day the quote is exactly what engine.apply gives
for that purchase (tests/protocol/test_engine_properties.py), and the gateway, re-applying
the record with `"happened": True` and the quote's discount_minor, posts exactly the quoted
amounts. A later day's quote is the counter's best knowledge; the record then says what it
gave, and the gateway's engine recomputes the points on the card's real tier.

A quote declines nothing a terminal could not check itself; bad input raises
protocol.errors.ValidationError:
    amount_invalid            amount_minor not a positive integer (floats, bools refused)
    field_invalid             pay not "card"/"other"; same_day not a bool; discount_pct not an
                              integer in 0..100, or above the tier's in a program without
                              discount tracking; tier not a level of the program
    operation_not_in_program  pay "card" in a program that holds no value
snapshot raises program_mismatch and time_invalid as engine.apply would.
"""

from protocol import engine_company as company
from protocol import engine_points as points
from protocol import engine_promotions as promotions
from protocol import engine_spend as spend
from protocol.engine_legs import value_terms, working_copy
from protocol.engine_sale import PAY_CARD, PAY_OTHER
from protocol.errors import ValidationError
from protocol.money import is_amount
from protocol.reasons import (
    AMOUNT_INVALID,
    FIELD_INVALID,
    OPERATION_NOT_IN_PROGRAM,
    PROGRAM_MISMATCH,
    TIME_INVALID,
)

DISCOUNT_PCT_MAX = 100


def snapshot(state, program, now_day):
    """The card's tier and discount percent on now_day, after the time passing up to it."""
    if state["program"] != program["id"]:
        raise ValidationError(PROGRAM_MISMATCH, state["program"])
    if now_day < state["day"]:
        raise ValidationError(TIME_INVALID, "day %d is before the card's day %d" % (
            now_day, state["day"]))
    if now_day > state["day"]:  # downgrades and discount ends due by now_day, as apply would
        state = working_copy(state)
        spend.pass_time(state, program, now_day)
    return {"tier": state["tier"], "discount_pct": spend.discount_pct(state, program, now_day)}


def quote(program, tier, discount_pct, same_day, amount_minor, pay, day=None, minute=None):
    """The amounts of a purchase (no redemption) priced from a snapshot; see the module doc.
    `day`: the sale's day, for the program's promotions (None: none apply); `minute`: of
    its UTC day, for offers by hour (None: none of those). A terminal knows neither the
    customer's birthday nor whether the card bought before: no birthday-week or
    first-purchase offer is quoted; nor the customer's grants: no targeted offer either
    (named rule OFFLINE_NO_TARGETED_OFFER)."""
    if not is_amount(amount_minor) or not amount_minor:
        raise ValidationError(AMOUNT_INVALID, "amount_minor must be a positive integer")
    if pay != PAY_CARD and pay != PAY_OTHER:
        raise ValidationError(FIELD_INVALID, "pay must be 'card' or 'other'")
    if same_day is not True and same_day is not False:
        raise ValidationError(FIELD_INVALID, "same_day must be true or false")
    if (not isinstance(discount_pct, int) or isinstance(discount_pct, bool)
            or not 0 <= discount_pct <= DISCOUNT_PCT_MAX):
        raise ValidationError(FIELD_INVALID, "discount_pct must be an integer in 0..100")
    level = _level(program, tier)
    tier_pct = 0 if level is None else level["discount_pct"]
    if discount_pct > tier_pct and program["discount"] is None:
        raise ValidationError(FIELD_INVALID, "discount_pct above the tier's, no discount tracking")
    if pay == PAY_CARD and value_terms(program) is None:
        raise ValidationError(OPERATION_NOT_IN_PROGRAM, "program holds no value")
    tracked_pct = discount_pct if same_day else 0
    offer = None
    if day is not None:
        offer = promotions.terms(program, tier, day, {"minute": minute, "first_purchase": False,
                                                      "birthday": None,
                                                      "offers": None})
    pct, discount = spend.discount_of(program, tracked_pct, tier_pct, amount_minor,
                                      0 if offer is None else offer["discount_pct"])
    paid = amount_minor - discount
    card_minor = paid if pay == PAY_CARD else 0
    company.check_offline(program, card_minor)
    multiplier = spend.MULTIPLIER_ONE_BP if level is None else level["earn_multiplier_bp"]
    earned = 0
    if offer is None:
        earned = points.earned(program, paid, multiplier)
    else:
        earned = points.earned(program, paid, multiplier * offer["earn_multiplier_bp"]
                               // promotions.MULTIPLIER_ONE_BP)
        if paid and program["points"] is not None:
            earned += offer["bonus_points"]
    quoted = {"discount_minor": discount, "card_minor": card_minor,
              "other_minor": paid - card_minor,
              "points_earned": earned, "discount_pct": pct}
    if offer is not None and offer["ids"]:
        quoted["promotions"] = offer["ids"]
    return quoted


def _level(program, tier):
    """The program's level named `tier` (None for a program without tiers)."""
    tiers = program["tiers"]
    if tiers is None:
        if tier is not None:
            raise ValidationError(FIELD_INVALID, "tier given for a program without tiers")
        return None
    for level in tiers["levels"]:
        if level["name"] == tier:
            return level
    raise ValidationError(FIELD_INVALID, "tier is not a level of the program")
