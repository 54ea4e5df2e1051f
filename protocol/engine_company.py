"""Company cards: each card's spending limits (the program's `company` section).

The limits are on the card value a purchase takes (its card part, `card_minor`): cash or
other tender paid beside it is the customer's own and is not limited.
    purchase_max_minor  a purchase whose card part is above it is declined
                        `card_purchase_limit`
    day_max_minor       the card's spend of the sale's day (`company_day`: [day, spent])
                        may reach it, never pass it: else `card_day_limit`
A purchase that happened at the counter (`happened`) is never declined; it counts.
Named rule COMPANY_DAY_REFUND_SAME_DAY: a refund's card part gives the day's allowance back
only when the sale is of the card's current spend day; an earlier day is over.
"""

from protocol.errors import ValidationError
from protocol.reasons import CARD_DAY_LIMIT, CARD_PURCHASE_LIMIT


def day_spent(state, now):
    """The card's spend of day `now` (0 on a new day)."""
    entry = state.get("company_day")
    return entry[1] if entry is not None and entry[0] == now else 0


def check(state, program, card_minor, now, happened):
    """Decline a card part over the card's limits (nothing for a sale that happened)."""
    limits = program.get("company")
    if limits is None or happened or not card_minor:
        return
    most = limits["purchase_max_minor"]
    if most is not None and card_minor > most:
        raise ValidationError(CARD_PURCHASE_LIMIT, "at most %d per purchase" % most)
    day_most = limits["day_max_minor"]
    if day_most is not None and day_spent(state, now) + card_minor > day_most:
        raise ValidationError(CARD_DAY_LIMIT, "%d of %d spent today" % (
            day_spent(state, now), day_most))


def count(state, program, card_minor, now):
    """Add a purchase's card part to the card's spend of the day."""
    if program.get("company") is None or not card_minor:
        return
    state["company_day"] = [now, day_spent(state, now) + card_minor]


def give_back(state, sale, card_minor):
    """COMPANY_DAY_REFUND_SAME_DAY."""
    entry = state.get("company_day")
    if entry is not None and card_minor and entry[0] == sale["day"]:
        state["company_day"] = [entry[0], max(0, entry[1] - card_minor)]


def check_offline(program, card_minor):
    """What a terminal decides offline (engine_offline.quote): the per-purchase limit. It does
    not know the card's spend of the day (named rule COMPANY_DAY_LIMIT_ONLINE); see
    docs/programs.md "Company cards" for the bound on it."""
    limits = program.get("company")
    if limits is None or limits["purchase_max_minor"] is None:
        return
    if card_minor > limits["purchase_max_minor"]:
        raise ValidationError(CARD_PURCHASE_LIMIT, "at most %d per purchase" % (
            limits["purchase_max_minor"]))
