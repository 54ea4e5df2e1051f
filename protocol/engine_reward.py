"""Rewards: an item of the program's catalogue handed over at the counter for points (pure).

    {"op": "reward", "id", "item", "amount_minor"?, "happened"?}

The program's `rewards` section (protocol/programs.py) lists items, each with its price in
points and an optional co-payment (`copay_minor`) the customer pays in other tender. A
redemption takes the item's points from the card, oldest lots first as any points
redemption does, and posts as one: the points' worth (points * minor_per_point) goes from
promotion_expense to the merchant (cause "redeem"); the co-payment is other tender, outside
the closed loop, and posts nothing.

The item's price is fixed by the catalogue, so a redemption earns no points, counts as no
qualifying spend, takes no discount and gets no promotion (named rule REWARD_PRICE_FIXED).
Its `amount_minor` is the points' worth plus the co-payment; an op may name it (a record
does), and one that differs is `amount_invalid` (the catalogue changed since the counter
priced it). It is kept as a purchase of the card (`reward` names the item), so a refund or
void of it gives the points back to the lots they came from and the co-payment back in
cash, in proportion (engine_sale's LARGEST_REMAINDER; points only whole).

Declines: `operation_not_in_program` (the program has no rewards), `reward_unknown` (no such
item), `insufficient_points` (the card holds fewer than the item's points; `happened` does
not lift it: points are only redeemed online, where the gateway held them).
"""

from protocol import engine_points as points
from protocol import engine_sale as sale
from protocol.accounts import CARD_POINTS, MERCHANT_SETTLEMENT, PROMOTION_EXPENSE
from protocol.engine_legs import move, note_sale, read_amount, read_id
from protocol.errors import ValidationError
from protocol.money import POINTS_UNIT
from protocol.reasons import (
    AMOUNT_INVALID,
    INSUFFICIENT_POINTS,
    OPERATION_NOT_IN_PROGRAM,
    REWARD_UNKNOWN,
)


def item_of(program, item_id):
    """The catalogue's item `item_id`, or None."""
    catalogue = program.get("rewards")
    for item in (catalogue or {}).get("items", ()):
        if item["id"] == item_id:
            return item
    return None


def price_minor(program, item):
    """What a redemption of `item` is worth: its points' worth plus its co-payment."""
    return item["points"] * points.minor_per_point(program) + item["copay_minor"]


def reward(state, program, op, now, effects):
    sale_id = sale.new_sale_id(state, op)
    item_id = read_id(op, "item")
    sale.read_happened(op)  # accepted; it lifts no decline here (module docstring)
    if not program.get("rewards"):
        raise ValidationError(OPERATION_NOT_IN_PROGRAM, "program has no rewards")
    item = item_of(program, item_id)
    if item is None:
        raise ValidationError(REWARD_UNKNOWN, item_id)
    taken = item["points"]
    worth = taken * points.minor_per_point(program)
    amount = worth + item["copay_minor"]
    if "amount_minor" in op and read_amount(op, "amount_minor") != amount:
        raise ValidationError(AMOUNT_INVALID, "the item's price is %d" % amount)
    if points.balance(state) < taken:
        raise ValidationError(INSUFFICIENT_POINTS, "")
    # Nothing below declines: the card changes from here on.
    legs = effects["legs"]
    pieces = points.redeem(state, taken)
    move(legs, CARD_POINTS, PROMOTION_EXPENSE, POINTS_UNIT, taken, "redeem")
    move(legs, PROMOTION_EXPENSE, MERCHANT_SETTLEMENT, program["currency"], worth, "redeem")
    note_sale(state, sale_id)
    # Kept as a purchase paid in points and other tender, so engine_sale refunds it.
    state["sales"][sale_id] = {
        "kind": sale.KIND_PURCHASE, "day": now, "version": program["version"],
        "amount_minor": amount, "refunded_minor": 0,
        "card_minor": 0, "other_minor": item["copay_minor"],
        "discount_minor": 0, "points_redeemed": taken, "redeem_minor": worth,
        "pieces": pieces, "points_earned": 0, "spend_minor": 0,
        "points_expired": 0, "expired_reclaimed": 0,
        "gen": state["discount_gen"], "tier_before": state["tier"], "reward": item_id,
    }
    effects.update({
        "item": item_id, "amount_minor": amount, "discount_pct": 0, "discount_minor": 0,
        "points_redeemed": taken, "redeem_minor": worth, "card_minor": 0,
        "other_minor": item["copay_minor"], "points_earned": 0, "overdraft_minor": 0,
    })
