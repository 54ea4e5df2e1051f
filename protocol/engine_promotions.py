"""Promotions: offers that change a purchase's terms on some days, for some tiers (pure).

A program's `promotions` section (docs/programs.md) lists offers, each with a window (first
and last day, inclusive, as days since 1970-01-01: what the engine's days count), weekdays
and tiers it is for (none listed: every one), and what it gives: an earn multiplier, bonus
points on a paid purchase, a percent off. On a purchase, the offers whose window, weekday
and tier match apply, combined by the section's `combine` rule:

    best    the one with the highest priority (ties: the one listed first)   named BEST_OFFER
    stack   all of them: multipliers multiply (each product rounded down to a whole basis
            point), bonus points add up, the largest percent off        named STACKED_OFFERS

A promotion's percent off competes with the card's other discounts (engine_spend.discount_of):
it applies only when larger than all of them, and discounts never add up. Everything an offer
looks at (the day, the weekday, the tier) is known to a terminal offline, so an offline quote
gives it exactly (protocol.engine_offline).
"""

MULTIPLIER_ONE_BP = 10000
COMBINE_BEST = "best"
COMBINE_STACK = "stack"
_NO_OFFER = {"ids": [], "earn_multiplier_bp": MULTIPLIER_ONE_BP, "bonus_points": 0,
             "discount_pct": 0}
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def weekday(day):
    """The weekday name of a day counted from 1970-01-01 (a Thursday)."""
    return WEEKDAYS[(day + 3) % 7]


def _applies(offer, tier, day):
    if offer["first_day"] is not None and day < offer["first_day"]:
        return False
    if offer["last_day"] is not None and day > offer["last_day"]:
        return False
    if offer["weekdays"] and weekday(day) not in offer["weekdays"]:
        return False
    return not offer["tiers"] or tier in offer["tiers"]


def terms(program, tier, day):
    """What the offers of `day` give a card of `tier`: {"ids", "earn_multiplier_bp",
    "bonus_points", "discount_pct"} (ids in the program's order)."""
    section = program.get("promotions")
    if section is None:
        return _NO_OFFER
    offers = [offer for offer in section["offers"] if _applies(offer, tier, day)]
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
