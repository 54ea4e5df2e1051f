"""Purchases and their refunds (and voids) on one card, for protocol.engine.

A purchase of amount_minor (the price of the goods):
    discount_minor  the larger of the tracked and the tier discount, by its named rounding
    redeem_minor    redeem_points * minor_per_point, at most the amount after discount
    paid_minor      amount - discount - redeem value, paid by `pay`: "card" (card value),
                    "other" (cash or other tender, outside the closed loop: not posted), or
                    "split": the card pays what it holds (at most `card_minor` when given)
                    and other tender the rest (split tender)
    points_earned   on paid_minor, with the tier's earn multiplier

A purchase's promotions (engine_promotions) look at its day, the card's tier and count of
`purchases` (the first-purchase offer), and the op's "minute" and "birthday". A purchase
that happened elsewhere and is replayed from the books (engine_replay.posted_op) carries
`"points_earned"` with `happened`: the points the books gave it stand, whatever offers the
engine here would find (a birthday offer needs the birthday, which the books do not keep).

A purchase that already happened at the counter (offline, or approved by stand-in) is
re-applied with `"happened": True`: paid by card it is never declined for too little value
or an expired card, and the card's value may go below zero; `overdraft_minor` is the part of
card_minor beyond what the card held (0 when none). `"discount_minor"` (with or without
`happened`) is the discount the counter gave: it replaces the computed one (at most the
amount); discount_pct stays what the engine would give. A refund of a load (cash handed
back) that happened is likewise never declined for value the card no longer holds; its
`overdraft_minor` says how far below zero it took the card.

A refund names the sale (`of`) and an amount_minor of it (default: all that is left). What
the customer paid comes back to the tender that paid it, in proportion: the amount is split
over what is left of the card part, the other tender, the redeemed points' value and the
discount by largest remainder (`engine_legs.apportion`), so the parts add up to the refund
exactly and all refunds of a sale to the sale (the discount's part goes back to nobody;
points come back in whole points at the sale's rate). Earned points, bonus and qualifying
spend are reversed in the same proportion (`engine_legs.share`). Parts are recorded with the
sale, so a refund reverses what the sale did under its own program version, never more; the
refunded amounts of a sale never exceed its amount.
"""

from protocol import engine_company as company
from protocol import engine_points as points
from protocol import engine_promotions as promotions
from protocol import engine_spend as spend
from protocol.accounts import (
    CARD_POINTS,
    CARD_VALUE,
    CASH_CLEARING,
    MERCHANT_SETTLEMENT,
    PROMOTION_EXPENSE,
)
from protocol.engine_legs import (
    apportion,
    move,
    note_sale,
    own_sale,
    read_amount,
    read_id,
    share,
    value_terms,
)
from protocol.errors import ValidationError
from protocol.money import POINTS_UNIT
from protocol.reasons import (
    AMOUNT_INVALID,
    CARD_EXPIRED,
    FIELD_INVALID,
    INSUFFICIENT_POINTS,
    INSUFFICIENT_VALUE,
    OPERATION_NOT_IN_PROGRAM,
    REDEEM_EXCEEDS_AMOUNT,
    REFUND_EXCEEDS_ORIGINAL,
    REFUND_UNKNOWN_ORIGINAL,
)

PAY_CARD = "card"
PAY_OTHER = "other"
PAY_SPLIT = "split"  # the card pays what it can (up to `card_minor`), other tender the rest
KIND_ISSUE = "issue"
KIND_TOPUP = "topup"
KIND_PURCHASE = "purchase"


def new_sale_id(state, op):
    sale_id = read_id(op, "id")
    if sale_id in state["sales"]:
        raise ValidationError(FIELD_INVALID, "id already used on this card")
    return sale_id


def read_pay(op):
    pay = op.get("pay", PAY_OTHER)
    if pay != PAY_CARD and pay != PAY_OTHER and pay != PAY_SPLIT:
        raise ValidationError(FIELD_INVALID, "pay must be 'card', 'other' or 'split'")
    if "card_minor" in op and pay != PAY_SPLIT:
        raise ValidationError(FIELD_INVALID, "card_minor is for pay 'split' only")
    return pay


def value_expired(state, now):
    expires = state["value_expires_day"]
    return expires is not None and now >= expires


def overdraft_of(state, taken_minor):
    """The part of `taken_minor` beyond what the card holds (never below zero)."""
    return taken_minor - min(taken_minor, max(0, state["value_minor"]))


def read_happened(op):
    """True for a purchase that already happened at the counter (op "happened": True)."""
    if "happened" not in op:
        return False
    if op["happened"] is not True:
        raise ValidationError(FIELD_INVALID, "happened must be true when given")
    return True


def read_discount(op, computed, amount):
    """The discount of a purchase: the counter's `discount_minor` when given, else computed."""
    if "discount_minor" not in op:
        return computed
    given = read_amount(op, "discount_minor")
    if given > amount:
        raise ValidationError(AMOUNT_INVALID, "discount_minor is more than amount_minor")
    return given


def purchase(state, program, op, now, effects):
    sale_id = new_sale_id(state, op)
    amount = read_amount(op, "amount_minor")
    redeem = read_amount(op, "redeem_points", 0)
    pay = read_pay(op)
    happened = read_happened(op)
    if not amount:
        raise ValidationError(AMOUNT_INVALID, "a purchase has a positive amount")
    offer = promotions.terms(program, state["tier"], now, promotions.sale_terms(state, op, now))
    pct, computed = spend.discount_for(state, program, now, amount, offer["discount_pct"])
    discount = read_discount(op, computed, amount)
    due = amount - discount
    redeem_minor = 0
    if redeem:
        if program["points"] is None:
            raise ValidationError(OPERATION_NOT_IN_PROGRAM, "program has no points")
        redeem_minor = redeem * points.minor_per_point(program)
        if redeem_minor > due:
            raise ValidationError(REDEEM_EXCEEDS_AMOUNT, "")
        if points.balance(state) < redeem:
            raise ValidationError(INSUFFICIENT_POINTS, "")
    paid = due - redeem_minor
    card_minor = _card_part(state, op, pay, paid, happened)
    if pay != PAY_OTHER:
        if value_terms(program) is None:
            raise ValidationError(OPERATION_NOT_IN_PROGRAM, "program holds no value")
        if not happened and value_expired(state, now):
            raise ValidationError(CARD_EXPIRED, "")
        if not happened and card_minor and state["value_minor"] < card_minor:
            raise ValidationError(INSUFFICIENT_VALUE, "")
    company.check(state, program, card_minor, now, happened)
    overdraft = overdraft_of(state, card_minor)
    earned = points.earned(program, paid, spend.earn_multiplier_bp(state, program)
                           * offer["earn_multiplier_bp"] // promotions.MULTIPLIER_ONE_BP)
    if paid and program["points"] is not None:
        earned += offer["bonus_points"]
    if happened and "points_earned" in op:
        earned = read_amount(op, "points_earned")  # as the books posted it (elsewhere)
    # Nothing below declines: the card changes from here on.
    legs = effects["legs"]
    bonus_before = state.get("bonus_left", 0)
    state["value_minor"] -= card_minor
    company.count(state, program, card_minor, now)
    keep_bonus_within_value(state)
    bonus_used = bonus_before - state.get("bonus_left", 0)
    move(legs, CARD_VALUE, MERCHANT_SETTLEMENT, program["currency"], card_minor, "spend")
    pieces = points.redeem(state, redeem)
    move(legs, CARD_POINTS, PROMOTION_EXPENSE, POINTS_UNIT, redeem, "redeem")
    move(legs, PROMOTION_EXPENSE, MERCHANT_SETTLEMENT, program["currency"], redeem_minor, "redeem")
    points.credit(state, earned, now, sale_id, fresh=True)
    move(legs, PROMOTION_EXPENSE, CARD_POINTS, POINTS_UNIT, earned, "earn")
    note_sale(state, sale_id)
    if offer["ids"]:
        promotions.use_grants(state, program, offer["ids"])
    if state.get("purchases") is not None:  # unknown (None, absent) stays unknown
        state["purchases"] += 1
    state["sales"][sale_id] = {
        "kind": KIND_PURCHASE, "day": now, "version": program["version"],
        "amount_minor": amount, "refunded_minor": 0,
        "card_minor": card_minor, "other_minor": paid - card_minor,
        "discount_minor": discount, "points_redeemed": redeem, "redeem_minor": redeem_minor,
        "pieces": pieces,
        "points_earned": earned, "spend_minor": paid,
        "points_expired": 0, "expired_reclaimed": 0,
        "gen": state["discount_gen"], "tier_before": state["tier"],
    }
    if bonus_used:
        state["sales"][sale_id]["bonus_used"] = bonus_used
    spend.record(state, program, now, paid, effects, state["sales"][sale_id])
    effects.update({
        "amount_minor": amount, "discount_pct": pct, "discount_minor": discount,
        "points_redeemed": redeem, "redeem_minor": redeem_minor,
        "card_minor": card_minor, "other_minor": paid - card_minor, "points_earned": earned,
        "overdraft_minor": overdraft,
    })
    if offer["ids"]:
        effects["promotions"] = offer["ids"]


def keep_bonus_within_value(state):
    """The unspent bonus is at most the card's value (named rule BONUS_SPENT_LAST): value is
    spent from what the customer loaded first, and from the bonus only once that is gone, so
    a card keeps its bonus the longest (and cashes out only what was loaded, engine._cash_out).
    Kept only on cards that got a bonus (`bonus_left`)."""
    left = state.get("bonus_left")
    if left:
        state["bonus_left"] = min(left, max(0, state["value_minor"]))


def _card_part(state, op, pay, paid, happened):
    """What the card pays of `paid`: all of it (pay "card"), none (pay "other"), or for a
    split tender (pay "split") what the card holds, at most `card_minor` when given; the rest
    is other tender. A split that happened at the counter took exactly its `card_minor`."""
    if pay == PAY_CARD:
        return paid
    if pay == PAY_OTHER:
        return 0
    cap = read_amount(op, "card_minor", paid)
    if cap > paid:
        raise ValidationError(AMOUNT_INVALID, "card_minor is more than is due")
    if happened:
        return cap
    return min(cap, max(0, state["value_minor"]))


def record_load(state, program, sale_id, kind, amount, bonus, now):
    note_sale(state, sale_id)
    state["sales"][sale_id] = {
        "kind": kind, "day": now, "version": program["version"],
        "amount_minor": amount, "refunded_minor": 0, "bonus_minor": bonus,
    }


def void(state, program, op, now, effects):
    if "amount_minor" in op:
        raise ValidationError(FIELD_INVALID, "a void reverses the whole sale: no amount_minor")
    refund(state, program, op, now, effects)


def refund(state, program, op, now, effects):
    sale_id = read_id(op, "of")
    sale = own_sale(state, sale_id)  # this sale changes; the card's others stay shared
    if sale is None:
        raise ValidationError(REFUND_UNKNOWN_ORIGINAL, sale_id)
    left = sale["amount_minor"] - sale["refunded_minor"]
    amount = read_amount(op, "amount_minor", left)
    if not left or amount > left:
        raise ValidationError(REFUND_EXCEEDS_ORIGINAL, sale_id)
    if not amount:
        raise ValidationError(AMOUNT_INVALID, "a refund has a positive amount")
    happened = read_happened(op)
    before = sale["refunded_minor"]
    after = before + amount
    if sale["kind"] == KIND_PURCHASE:
        _refund_purchase(state, program, sale, sale_id, before, after, now, effects)
    else:
        _refund_load(state, program, sale, before, after, effects, happened)
    sale["refunded_minor"] = after
    effects["amount_minor"] = amount


def _refund_load(state, program, sale, before, after, effects, happened):
    """Undo (part of) an issue or a top-up: cash back, and the bonus in proportion."""
    cash = after - before
    bonus = share(sale["bonus_minor"], sale["amount_minor"], before, after)
    if not happened and state["value_minor"] < cash + bonus:
        raise ValidationError(INSUFFICIENT_VALUE, "the loaded value was spent")
    effects["overdraft_minor"] = overdraft_of(state, cash + bonus)
    state["value_minor"] -= cash + bonus
    if state.get("bonus_left"):
        state["bonus_left"] = max(0, state["bonus_left"] - bonus)
    legs = effects["legs"]
    move(legs, CARD_VALUE, CASH_CLEARING, program["currency"], cash, "load")
    move(legs, CARD_VALUE, PROMOTION_EXPENSE, program["currency"], bonus, "bonus")
    effects.update({"card_minor": cash + bonus, "other_minor": cash, "bonus_minor": bonus,
                    "points_restored": 0, "redeem_minor": 0, "points_reversed": 0})


def _refund_purchase(state, program, sale, sale_id, before, after, now, effects):
    amount = sale["amount_minor"]

    def part(key):
        return share(sale[key], amount, before, after)

    redeemed = sale["points_redeemed"]
    point_minor = sale["redeem_minor"] // redeemed if redeemed else 1  # the sale's own rate
    done = _refunded_parts(sale, before)
    left = [sale[key] - done[n] for n, key in enumerate(_PARTS)]
    discount_left = (amount - before) - left[0] - left[1] - left[2]
    shares = apportion(after - before, left + [max(0, discount_left)],
                       [1, 1, point_minor, 1])
    if shares is None:
        raise ValidationError(AMOUNT_INVALID, "this sale was paid in points worth %d each: "
                                              "refund a multiple of it" % point_minor)
    card_minor, other_minor, redeem_minor = shares[0], shares[1], shares[2]
    restored = redeem_minor // point_minor
    reversed_points = part("points_earned")
    legs = effects["legs"]
    state["value_minor"] += card_minor
    company.give_back(state, sale, card_minor)
    if sale.get("bonus_used"):  # the bonus the sale spent comes back as bonus
        state["bonus_left"] = state.get("bonus_left", 0) + part("bonus_used")
    move(legs, MERCHANT_SETTLEMENT, CARD_VALUE, program["currency"], card_minor, "spend")
    restored_before = done[2] // point_minor
    points.restore(state, sale["pieces"], restored_before, restored_before + restored)
    move(legs, PROMOTION_EXPENSE, CARD_POINTS, POINTS_UNIT, restored, "redeem")
    move(legs, MERCHANT_SETTLEMENT, PROMOTION_EXPENSE, program["currency"], redeem_minor, "redeem")
    points.take_back(state, sale, sale_id, reversed_points, legs)
    spend.reverse(state, program, now, sale, part("spend_minor"), effects, after == amount)
    sale["refunded_parts"] = [done[n] + shares[n] for n in range(len(_PARTS))]
    effects.update({"card_minor": card_minor, "other_minor": other_minor,
                    "bonus_minor": 0, "points_restored": restored, "redeem_minor": redeem_minor,
                    "points_reversed": reversed_points})


# The tenders a refund of a purchase gives back, in the sale's fields; its discount is the
# rest of the amount (given back to nobody). Ties of LARGEST_REMAINDER go in this order.
_PARTS = ("card_minor", "other_minor", "redeem_minor")


def _refunded_parts(sale, before):
    """What the sale's refunds so far gave back of each tender (`refunded_parts`); for a
    sale kept before that was recorded, what the old rule gave (each part's refunded share
    rounded up on its own, so together they may exceed `before` by a unit or two)."""
    done = sale.get("refunded_parts")
    if done is not None:
        return done
    amount = sale["amount_minor"]
    return [sale[key] - sale[key] * (amount - before) // amount for key in _PARTS]
