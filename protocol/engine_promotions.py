"""Promotions: offers that change a purchase's terms for some sales, some cards (pure).

A program's `promotions` section (docs/programs.md) lists offers, each with conditions, all
of which must hold (a condition not given holds for every sale):

    first_day, last_day   the window, both days in (days since 1970-01-01: the engine's days)
    weekdays              the sale's weekday
    hours                 [from, until) hour ranges of the sale's day (`minute`)

Days, weekdays and hours are UTC's unless the section gives the shop's clock
(`utc_offset_minutes`, `dst`: protocol/local_time.py); then they, and the birthday week, are
the shop's day and minute of the sale (named rule OFFER_SHOP_TIME); a sale without its
minute is judged on its UTC day (OFFER_UTC_DAY_WITHOUT_MINUTE).
    tiers                 the card's tier
    first_purchase        the card's first purchase (the card has made none before)
    birthday_week         the customer's birthday week (`birthday`, rule BIRTHDAY_WEEK)
    targeted              only for a customer the office issued the offer to (op "offers",
                          rule TARGETED_OFFER_NAMED)

and what it gives: an earn multiplier, bonus points on a paid purchase, a percent off. On a
purchase, the offers that apply are combined by the section's `combine` rule:

    best    the one with the highest priority (ties: the one listed first)   named BEST_OFFER
    stack   all of them: multipliers multiply (each product rounded down to a whole basis
            point), bonus points add up, the largest percent off        named STACKED_OFFERS

A promotion's percent off competes with the card's other discounts (engine_spend.discount_of):
it applies only when larger than all of them, and discounts never add up.

What a sale is, beyond its day, comes with it (`sale_terms`): the minute of its UTC day
(op "minute", 0..1439; absent: no offer with hours applies), whether the card bought before
(the state's `purchases`), the customer's birthday as "MM-DD" (op "birthday"; absent: no
birthday offer). Named rule BIRTHDAY_WEEK: the seven days starting on the birthday's
month-day in the sale's year (or in the year before, for a week that runs into January);
a 29 February birthday falls on 28 February in other years (BIRTHDAY_FEB_29_ON_28).
Named rule TARGETED_OFFER_NAMED: a targeted offer applies only when the op's "offers" (the
ids of the targeted offers the card's customer was issued and has uses left, as the
authority that keeps the grants says) names it; absent: no targeted offer. A segment is not
an engine condition: the office turns a segment into grants when it issues the offer.
"""

from protocol import local_time
from protocol.errors import ValidationError
from protocol.reasons import FIELD_INVALID

MULTIPLIER_ONE_BP = 10000
COMBINE_BEST = "best"
COMBINE_STACK = "stack"
_NO_OFFER = {"ids": [], "earn_multiplier_bp": MULTIPLIER_ONE_BP, "bonus_points": 0,
             "discount_pct": 0}
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MINUTES_PER_DAY = 1440
BIRTHDAY_WEEK_DAYS = 7
_MONTH_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def weekday(day):
    """The weekday name of a day counted from 1970-01-01 (a Thursday)."""
    return WEEKDAYS[(day + 3) % 7]


def read_minute(op):
    """The op's minute of the sale's UTC day, or None (not given)."""
    minute = op.get("minute")
    if minute is None:
        return None
    if (not isinstance(minute, int) or isinstance(minute, bool)
            or not 0 <= minute < MINUTES_PER_DAY):
        raise ValidationError(FIELD_INVALID, "minute must be an integer in 0..1439")
    return minute


def read_birthday(op):
    """The op's birthday as (month, day), or None (not given)."""
    text = op.get("birthday")
    if text is None:
        return None
    if (not isinstance(text, str) or len(text) != 5 or text[2] != "-"
            or not text[:2].isdigit() or not text[3:].isdigit()):
        raise ValidationError(FIELD_INVALID, "birthday must be MM-DD")
    month, day = int(text[:2]), int(text[3:])
    if not 1 <= month <= 12 or not 1 <= day <= _MONTH_DAYS[month - 1]:
        raise ValidationError(FIELD_INVALID, "birthday must be MM-DD")
    return month, day


OFFERS_NAMED_MAX = 16  # op "offers": as many as a program has offers (programs.OFFERS_MAX)


def read_offers(op):
    """The op's granted targeted offer ids (a list), or None (not given)."""
    named = op.get("offers")
    if named is None:
        return None
    if not isinstance(named, list) or len(named) > OFFERS_NAMED_MAX:
        raise ValidationError(FIELD_INVALID, "offers must be a list of up to 16 offer ids")
    for offer_id in named:
        if not isinstance(offer_id, str) or not 1 <= len(offer_id) <= 32:
            raise ValidationError(FIELD_INVALID, "offers must be a list of up to 16 offer ids")
    return named


def sale_terms(state, op):
    """What the offers look at in an op and the card's state, beyond the day and tier:
    {"minute", "first_purchase", "birthday", "offers"}. A state without `purchases`
    (taken on from balances, or kept before it was counted) has an unknown past: not a
    first purchase."""
    return {"minute": read_minute(op), "first_purchase": state.get("purchases") == 0,
            "birthday": read_birthday(op), "offers": read_offers(op)}


def _birthday_in(year, month, day):
    if month == 2 and day == 29 and not local_time.is_leap(year):
        day = 28  # BIRTHDAY_FEB_29_ON_28
    return local_time.month_start(year, month) + day - 1


def in_birthday_week(birthday, day):
    """Is `day` in the birthday week of `birthday` ((month, day))? Rule BIRTHDAY_WEEK."""
    year = local_time.year_of(day)
    for candidate in (year, year - 1):
        first = _birthday_in(candidate, birthday[0], birthday[1])
        if first <= day < first + BIRTHDAY_WEEK_DAYS:
            return True
    return False


def _applies(offer, tier, day, sale):
    if offer["first_day"] is not None and day < offer["first_day"]:
        return False
    if offer["last_day"] is not None and day > offer["last_day"]:
        return False
    if offer["weekdays"] and weekday(day) not in offer["weekdays"]:
        return False
    if offer["tiers"] and tier not in offer["tiers"]:
        return False
    hours = offer["hours"]
    if hours:
        minute = None if sale is None else sale["minute"]
        if minute is None:
            return False
        hit = False
        for first, until in hours:
            if first * 60 <= minute < until * 60:
                hit = True
        if not hit:
            return False
    if offer.get("targeted"):  # TARGETED_OFFER_NAMED
        named = None if sale is None else sale.get("offers")
        if named is None or offer["id"] not in named:
            return False
    if offer["first_purchase"] and (sale is None or not sale["first_purchase"]):
        return False
    if offer["birthday_week"]:
        if sale is None or sale["birthday"] is None:
            return False
        return in_birthday_week(sale["birthday"], day)
    return True


def terms(program, tier, day, sale=None):
    """What the offers give a sale on `day` by a card of `tier`: {"ids",
    "earn_multiplier_bp", "bonus_points", "discount_pct"} (ids in the program's order).
    `sale`: `sale_terms` (None: offers with hours, first-purchase, birthday or targeted
    conditions do not apply)."""
    section = program.get("promotions")
    if section is None:
        return _NO_OFFER
    offset = section.get("utc_offset_minutes", 0)
    rule = section.get("dst", local_time.DST_NONE)
    if (offset or rule != local_time.DST_NONE) and sale is not None and (
            sale["minute"] is not None):
        # Rule OFFER_SHOP_TIME: dates, weekdays, hours and the birthday week are the shop's.
        # Without the sale's minute its UTC day stands (OFFER_UTC_DAY_WITHOUT_MINUTE).
        day, minute = local_time.local_day_minute(day, sale["minute"], offset, rule)
        sale = dict(sale)
        sale["minute"] = minute
    offers = [offer for offer in section["offers"] if _applies(offer, tier, day, sale)]
    if not offers:
        return _NO_OFFER
    if section["combine"] == COMBINE_BEST:
        chosen = offers[0]
        for offer in offers:
            if offer["priority"] > chosen["priority"]:
                chosen = offer
        offers = [chosen]
    multiplier = MULTIPLIER_ONE_BP
    bonus = 0
    pct = 0
    for offer in offers:
        multiplier = multiplier * offer["earn_multiplier_bp"] // MULTIPLIER_ONE_BP
        bonus += offer["bonus_points"]
        pct = max(pct, offer["discount_pct"])
    return {"ids": [offer["id"] for offer in offers], "earn_multiplier_bp": multiplier,
            "bonus_points": bonus, "discount_pct": pct}
