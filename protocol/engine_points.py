"""Loyalty points on a card: lots by earn day, oldest first, owed points, breakage on expiry.

A card's points are `lots`, each `[earn_day, points, source]` (source: the id of the purchase
that earned them; a lot is never changed in place but replaced, so a working copy of the
state may share the others with the state it came from), kept in earn-day order, plus
`points_owed`: points a refund took back after the customer had already spent them. Points
credited later pay what is owed first, so a card with points owed has no lots.

    balance = sum of the lots - points_owed

Named rules:
    POINTS_EARNED   paid_minor * earn_bp * multiplier_bp / (10000 * 10000 * minor_per_point),
                    rounded once by the program's earn_rounding
    REDEEM_VALUE    points * minor_per_point, where minor_per_point = 10**exponent /
                    points_per_unit (validation makes this a whole number)
    OLDEST_FIRST    redemption and expiry take the lots with the earliest earn day first
    EXPIRY          a lot expires on earn_day + expiry_days: its points go to breakage
"""

from protocol import money
from protocol.accounts import BREAKAGE, CARD_POINTS, PROMOTION_EXPENSE
from protocol.engine_legs import move, own_sale

PTS = money.POINTS_UNIT


def balance(state):
    total = 0
    for lot in state["lots"]:
        total += lot[1]
    return total - state["points_owed"]


def minor_per_point(program):
    scale = 10 ** money.exponent(program["currency"])
    return scale // program["points"]["points_per_unit"]


def earned(program, paid_minor, multiplier_bp):
    terms = program["points"]
    if terms is None:
        return 0
    unit = money.BASIS_POINTS_PER_UNIT
    return money.divide(
        paid_minor * terms["earn_bp"] * multiplier_bp,
        unit * unit * minor_per_point(program),
        terms["earn_rounding"],
    )


def credit(state, points, earn_day, source, fresh=False):
    """Put points on the card: pay what is owed first, the rest into the source's lot.

    `fresh`: the source is a new sale (no lot of it exists: a lot's sale is remembered as
    long as its earn day is in the refund window, and sale ids are never used twice), so the
    lots need not be looked through.
    """
    paid = min(points, state["points_owed"])
    state["points_owed"] -= paid
    rest = points - paid
    if not rest:
        return
    lots = state["lots"]
    for index, lot in enumerate([] if fresh else lots):
        if lot[2] == source and lot[0] == earn_day:
            lots[index] = [lot[0], lot[1] + rest, lot[2]]  # a new lot: the old may be shared
            return
    position = len(lots)
    while position > 0 and lots[position - 1][0] > earn_day:
        position -= 1
    lots.insert(position, [earn_day, rest, source])


def redeem(state, points):
    """Take points oldest first; the pieces taken, [[source, earn_day, points], ...]."""
    assert points == 0 or balance(state) >= points
    lots = state["lots"]
    pieces = []
    while points:
        lot = lots[0]
        taken = min(points, lot[1])
        pieces.append([lot[2], lot[0], taken])
        lot = lots[0] = [lot[0], lot[1] - taken, lot[2]]
        points -= taken
        if not lot[1]:
            lots.pop(0)
    return pieces


def restore(state, pieces, start, stop):
    """Give back redeemed points start..stop, counted from the last piece taken backwards.

    Each comes back to the lot it was taken from, with its own earn day: a refund never makes
    points younger (an already expired lot expires again after the operation).
    """
    offset = 0
    for index in range(len(pieces) - 1, -1, -1):
        source, earn_day, points = pieces[index]
        overlap = min(stop, offset + points) - max(start, offset)
        if overlap > 0:
            credit(state, overlap, earn_day, source)
        offset += points


def expire(state, program, now, legs, sales):
    """Expire every lot whose earn_day + expiry_days <= now, oldest first; returns the points.

    Each expired point moves from card_points to breakage; the purchase that earned it (when
    still remembered) counts it, so a later refund of that purchase reverses the breakage
    instead of taking other points.
    """
    terms = program["points"]
    if terms is None or terms["expiry_days"] is None:
        return 0
    lots = state["lots"]
    expired = 0
    while lots and lots[0][0] + terms["expiry_days"] <= now:
        earn_day, points, source = lots.pop(0)
        expired += points
        sale = own_sale(state, source) if source in sales else None
        if sale is not None:
            sale["points_expired"] += points
    move(legs, CARD_POINTS, BREAKAGE, PTS, expired, "expire")
    return expired


def take_back(state, sale, sale_id, points, legs):
    """Take back `points` a refunded purchase earned, never more, in this order:

    1. what is left of the purchase's own lot;
    2. its points that expired (the breakage is reversed; the card is not touched);
    3. other lots, newest first (the customer spent the purchase's points);
    4. the rest is owed, paid off by the next points the card receives.
    """
    lots = state["lots"]
    from_card = 0
    for index in range(len(lots)):
        if lots[index][2] == sale_id:
            lot = lots[index]
            from_card = min(points, lot[1])
            lots[index] = [lot[0], lot[1] - from_card, lot[2]]
            if not lots[index][1]:
                lots.pop(index)
            break
    from_breakage = min(points - from_card, sale["points_expired"] - sale["expired_reclaimed"])
    sale["expired_reclaimed"] += from_breakage
    rest = points - from_card - from_breakage
    while rest and lots:
        lot = lots[-1]
        taken = min(rest, lot[1])
        lot = lots[-1] = [lot[0], lot[1] - taken, lot[2]]
        rest -= taken
        from_card += taken
        if not lot[1]:
            lots.pop()
    state["points_owed"] += rest
    from_card += rest
    move(legs, CARD_POINTS, PROMOTION_EXPENSE, PTS, from_card, "earn")
    move(legs, BREAKAGE, PROMOTION_EXPENSE, PTS, from_breakage, "earn")
