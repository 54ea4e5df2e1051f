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
    targeted              only for a card the office granted the offer to (op "grant",
                          rule TARGETED_OFFER_GRANTED), on a sale that may use grants

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
birthday offer), whether it may use the card's grants (op "grants": true on an online
sale, priced where the grants are kept). Named rule BIRTHDAY_WEEK: the seven days
starting on the birthday's month-day in the sale's year (or in the year before, for a week
that runs into January); a 29 February birthday falls on 28 February in other years
(BIRTHDAY_FEB_29_ON_28).
Named rule TARGETED_OFFER_GRANTED: a targeted offer applies only to a sale whose op says
`grants: true` and whose card holds a grant of it (state "grants": {offer: [uses left,
last day]}) with a use left and a last day not past; the `grant` operation puts it there
(the office issues it: to a list of cards, or to a segment of customers it turns into
cards), every copy of the engine applying the same grant. A purchase that gets it takes one
use (GRANT_USED_PER_PURCHASE); a refund does not give the use back. A segment is not an
engine condition.
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


GRANT_USES_MAX = 100  # uses of one grant: an offer is a treat, not a standing discount


def read_grants_flag(op):
    """The op's `grants`: may this sale use the card's grants? True: an online sale, priced
    by a copy of the engine that keeps the grants; a list of offer ids: a posted sale
    replayed, which got those offers at its counter (GRANTS_AS_POSTED: it may use only
    those, so a grant that arrived after it was priced keeps its use). Absent: no."""
    flag = op.get("grants", False)
    if flag is True or flag is False:
        return flag
    if isinstance(flag, list) and all(isinstance(offer, str) for offer in flag):
        return flag
    raise ValidationError(FIELD_INVALID, "grants must be true, false or a list of offer ids")


def granted(state, op, now):
    """The ids of the targeted offers a sale may use (rule TARGETED_OFFER_GRANTED): the
    card's grants with a use left whose last day is not past, when the op says the sale may
    use them (`grants`: all of them, or those it lists); else None."""
    flag = read_grants_flag(op)
    if flag is False:
        return None
    grants = state.get("grants") or {}
    return [offer_id for offer_id, (uses, last_day) in grants.items()
            if uses > 0 and now <= last_day and (flag is True or offer_id in flag)]


def sale_terms(state, op, now=None):
    """What the offers look at in an op and the card's state, beyond the day and tier:
    {"minute", "first_purchase", "birthday", "offers"}. A state without `purchases`
    (taken on from balances, or kept before it was counted) has an unknown past: not a
    first purchase. `now`: the sale's day, for the grants' last days (None: no grants)."""
    return {"minute": read_minute(op), "first_purchase": state.get("purchases") == 0,
            "birthday": read_birthday(op),
            "offers": None if now is None else granted(state, op, now)}


def use_grants(state, program, ids):
    """Rule GRANT_USED_PER_PURCHASE: a purchase takes one use of each targeted offer it got;
    a grant with no use left is forgotten (so is one past its last day, by `grant`)."""
    grants = state.get("grants")
    if not grants:
        return
    for offer in program["promotions"]["offers"]:
        if offer.get("targeted") and offer["id"] in ids and offer["id"] in grants:
            uses, last_day = grants[offer["id"]]
            if uses <= 1:
                del grants[offer["id"]]
            else:
                grants[offer["id"]] = [uses - 1, last_day]
    if not grants:
        del state["grants"]  # a card's state stays as small as it was before any grant


def grant(state, program, op, now, effects):
    """The `grant` operation (no money): the office issues a targeted offer to the card,
    {"op": "grant", "id", "offer", "uses", "last_day"}: `uses` purchases (1..GRANT_USES_MAX)
    up to engine day `last_day` (not before the grant's day) may get it. Rule GRANT_REPLACES:
    a new grant of the same offer replaces the card's earlier one (the office issued it
    again: its uses and last day now). Grants past their last day are forgotten here."""
    section = program.get("promotions")
    targeted = [offer["id"] for offer in (section or {}).get("offers", ())
                if offer.get("targeted")]
    offer_id = op.get("offer")
    if offer_id not in targeted:
        raise ValidationError(FIELD_INVALID, "offer is not a targeted offer of the program")
    uses, last_day = op.get("uses"), op.get("last_day")
    if (not isinstance(uses, int) or isinstance(uses, bool)
            or not 1 <= uses <= GRANT_USES_MAX):
        raise ValidationError(FIELD_INVALID, "uses must be an integer in 1..%d" % (
            GRANT_USES_MAX))
    if not isinstance(last_day, int) or isinstance(last_day, bool) or last_day < now:
        raise ValidationError(FIELD_INVALID, "last_day must be a day not before the grant's")
    kept = {key: value for key, value in (state.get("grants") or {}).items()
            if value[1] >= now}
    kept[offer_id] = [uses, last_day]
    state["grants"] = kept
    effects.update({"offer": offer_id, "uses": uses, "last_day": last_day})


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
    if offer.get("targeted"):  # TARGETED_OFFER_GRANTED
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
