"""The program engine: one card, one operation, pure and deterministic (CPython and MicroPython).

    state, effects = engine.apply(state, program, op, now_day)

`program` is a validated program (protocol.programs), `now_day` an integer day chosen by the
caller (days since an epoch the deployment picks), never earlier than the card's last day.
`state` is the card's plain-data state (None before issue); it is never changed in place:
apply returns a new state, or the same object when the operation is declined. Two copies of
a state given the same operations therefore agree exactly (terminal and gateway).

Operations (`op` dicts; amounts are integers in minor units, floats/bools/negatives refused):
    {"op": "issue", "id", "card", "value_minor"?}        sell/activate a card (gift: value > 0)
    {"op": "topup", "id", "amount_minor", "pay"?}        prepaid only; pay "card" is declined
    {"op": "purchase", "id", "amount_minor", "pay"?, "redeem_points"?,  pay "card" | "other"
     "happened"?, "discount_minor"?,     a sale that happened at the counter (engine_sale)
     "points_earned"?, "minute"?,        the minute of its UTC day, 0..1439 (offers by hour)
     "birthday"?,                        the customer's "MM-DD" (birthday-week offers)
     "grants"?}                          true: may use the card's targeted offer grants
                                         (an online sale: TARGETED_OFFER_GRANTED)
    {"op": "refund", "id"?, "of", "amount_minor"?}       of = the id of an issue/topup/purchase
    {"op": "void", "id"?, "of"}                          refund of all that is left of a sale
    {"op": "cashout", "id"?, "amount_minor"?}            only if the program allows cash-out
    {"op": "reward", "id", "item", "amount_minor"?}      a catalogue item for points
                                                         (engine_reward), refunded as a sale
    {"op": "tick"}                                       let time pass: expiry, downgrades
    {"op": "rank", "id", "level", "period"}              tiers by rank: the card's level for
                                                         the next period (engine_rank)
    {"op": "grant", "id", "offer", "uses", "last_day"}   a targeted offer issued to the card
                                                         (engine_promotions)

Effects, a dict: op, card, program, version (the program the operation was computed with),
day, legs, and per op the amounts it moved (see docs/programs.md), or `declined`: a reason
code, with no legs and no change. Legs are `[account, unit, amount, cause]`, debit positive,
written in pairs so every operation balances in every unit; accounts are card_value,
card_points, merchant_settlement, promotion_expense, cash_clearing and breakage.

Every operation first lets time pass (expiry of gift value and of points lots, tier
downgrades and membership upgrades, discount ends, sales older than refund_window_days
forgotten), then acts, then expires again what a refund put back already expired.

A card's value is below zero only after a purchase that happened at the counter took more
than it held (`happened`, engine_sale): negative value never expires as breakage and cannot
be cashed out; top-ups and refunds fill it up again. The state is plain JSON data (dicts
with text keys, lists, ints, texts, None): it survives json.dumps/json.loads unchanged.
"""

from protocol import engine_points as points
from protocol import engine_promotions, engine_rank
from protocol import engine_reward as reward
from protocol import engine_sale as sale
from protocol import engine_spend as spend
from protocol.accounts import BREAKAGE, CARD_VALUE, CASH_CLEARING, PROMOTION_EXPENSE
from protocol.engine_legs import (
    CHANGED_SALES,
    add_to,
    move,
    note_sale,
    read_amount,
    read_id,
    value_terms,
    working_copy,
)
from protocol.errors import ValidationError
from protocol.money import percent_of
from protocol.reasons import (
    AMOUNT_INVALID,
    CARD_EXISTS,
    CARD_UNKNOWN,
    CASH_OUT_NOT_ALLOWED,
    INSUFFICIENT_VALUE,
    KIND_UNKNOWN,
    OPERATION_NOT_IN_PROGRAM,
    PROGRAM_MISMATCH,
    TIME_INVALID,
    TOPUP_FROM_OWN_CARD,
)


def apply(state, program, op, now_day):
    """Apply one operation; returns (state, effects). See the module docstring."""
    assert isinstance(op, dict) and isinstance(program, dict)
    assert isinstance(now_day, int) and not isinstance(now_day, bool) and now_day >= 0
    kind = op.get("op")
    effects = {"op": kind, "card": op.get("card") if state is None else state["card"],
               "program": program["id"], "version": program["version"], "day": now_day,
               "legs": []}
    for key in ("id", "of"):
        if key in op:
            effects[key] = op[key]
    try:
        if kind == "issue":
            if state is not None:
                raise ValidationError(CARD_EXISTS, state["card"])
            working = _issue(program, op, now_day, effects)
        else:
            working = _operate(state, program, op, now_day, effects)
        _expire(working, program, now_day, effects)
        sale.keep_bonus_within_value(working)
        spend.after_operation(working, program, now_day)
    except ValidationError as error:
        declined = {"declined": error.reason, "legs": []}
        for key in ("op", "card", "program", "version", "day", "id", "of"):
            if key in effects:
                declined[key] = effects[key]
        return state, declined
    changed = working.pop(CHANGED_SALES, None)
    effects["sales_changed"] = sorted(working["sales"]) if changed is None else sorted(
        set(changed))
    if state is not None and state["tier"] != working["tier"]:
        effects["tier_change"] = [state["tier"], working["tier"]]
    return working, effects


def summary(state, program, now_day):
    """What a person reads off the card: value, points, tier and the discount of the day."""
    return {"value_minor": state["value_minor"], "points": points.balance(state),
            "tier": state["tier"], "discount_pct": spend.discount_pct(state, program, now_day)}


def _operate(state, program, op, now, effects):
    handler = HANDLERS.get(op.get("op"))
    if handler is None:
        raise ValidationError(KIND_UNKNOWN, str(op.get("op")))
    if state is None:
        raise ValidationError(CARD_UNKNOWN, str(op.get("card")))
    if state["program"] != program["id"]:
        raise ValidationError(PROGRAM_MISMATCH, state["program"])
    if now < state["day"]:
        raise ValidationError(TIME_INVALID, "day %d is before the card's day %d" % (
            now, state["day"]))
    working = working_copy(state)
    _pass_time(working, program, now, effects)
    handler(working, program, op, now, effects)
    return working


def _pass_time(state, program, now, effects):
    _expire(state, program, now, effects)
    spend.pass_time(state, program, now)
    window = program["refund_window_days"]
    sales = state["sales"]
    # The day of the oldest sale remembered: the sales are looked through only when one of
    # them leaves the refund window, not at every operation (a busy card has many). The
    # window's last day is in (named rule REFUND_WINDOW_LAST_DAY_IN): a shop advertising
    # 30-day returns takes back on day 30 a sale of day 0.
    oldest = state.get("sales_oldest_day")
    if oldest is None or oldest + window < now:
        for sale_id in [key for key in sales if sales[key]["day"] + window < now]:
            del sales[sale_id]
            note_sale(state, sale_id)
        days = [sale["day"] for sale in sales.values()]
        state["sales_oldest_day"] = min(days) if days else None
    state["day"] = now


def _expire(state, program, now, effects):
    legs = effects["legs"]
    if sale.value_expired(state, now) and state["value_minor"] > 0:
        move(legs, CARD_VALUE, BREAKAGE, program["currency"], state["value_minor"], "expire")
        add_to(effects, "value_expired", state["value_minor"])
        state["value_minor"] = 0
    add_to(effects, "points_expired", points.expire(state, program, now, legs, state["sales"]))


def _new_state(card, program, now):
    tiers = program["tiers"]
    gift = program["gift"]
    expires = None
    if gift is not None and gift["expiry_days"] is not None:
        expires = now + gift["expiry_days"]
    state = {
        "card": card, "program": program["id"], "issued_day": now, "day": now,
        "value_minor": 0, "value_expires_day": expires,
        "lots": [], "points_owed": 0,
        "tier": None if tiers is None else tiers["levels"][0]["name"],
        "tier_spend": [], "tier_below_since": None,
        "progress": [], "discount": None, "discount_gen": 0,
        "sales": {}, "sales_oldest_day": None,
        "purchases": 0,  # purchases made, for first-purchase offers (None: not known)
    }
    if tiers is not None and spend.tier_basis(tiers) == spend.TIER_BASIS_VISITS:
        state["tier_visits"] = []  # [day, purchases] (engine_spend VISIT_PER_DAY)
    return state


def _issue(program, op, now, effects):
    card = read_id(op, "card")
    value = read_amount(op, "value_minor", 0)
    if program["gift"] is not None and not value:
        raise ValidationError(AMOUNT_INVALID, "a gift card is sold with a value")
    if value and value_terms(program) is None:
        raise ValidationError(OPERATION_NOT_IN_PROGRAM, "program holds no value")
    state = _new_state(card, program, now)
    if value:
        sale_id = read_id(op, "id")
        state["value_minor"] = value
        move(effects["legs"], CASH_CLEARING, CARD_VALUE, program["currency"], value, "load")
        sale.record_load(state, program, sale_id, sale.KIND_ISSUE, value, 0, now)
    effects["value_minor"] = value
    return state


def _topup(state, program, op, now, effects):
    sale_id = sale.new_sale_id(state, op)
    amount = read_amount(op, "amount_minor")
    if program["prepaid"] is None:
        raise ValidationError(OPERATION_NOT_IN_PROGRAM, "program takes no top-ups")
    if sale.read_pay(op) == sale.PAY_CARD:
        raise ValidationError(TOPUP_FROM_OWN_CARD, "")
    if not amount:
        raise ValidationError(AMOUNT_INVALID, "a top-up has a positive amount")
    terms = program["prepaid"]
    bonus = percent_of(amount, terms["bonus_bp"], terms["bonus_rounding"])
    state["value_minor"] += amount + bonus
    if bonus:
        state["bonus_left"] = state.get("bonus_left", 0) + bonus
    legs = effects["legs"]
    move(legs, CASH_CLEARING, CARD_VALUE, program["currency"], amount, "load")
    move(legs, PROMOTION_EXPENSE, CARD_VALUE, program["currency"], bonus, "bonus")
    sale.record_load(state, program, sale_id, sale.KIND_TOPUP, amount, bonus, now)
    effects.update({"amount_minor": amount, "bonus_minor": bonus})


def _cash_out(state, program, op, now, effects):
    """Pay out in cash what the customer loaded, never the bonus (promotional value is not
    cash): at most the value less the unspent bonus (`bonus_left`, engine_sale rule
    BONUS_SPENT_LAST). A cash-out that leaves nothing loaded on the card forfeits the unspent
    bonus to breakage (named rule BONUS_FORFEIT_ON_CASH_OUT; a leg of cause "expire")."""
    terms = value_terms(program)
    if terms is None or not terms["cash_out"]:
        raise ValidationError(CASH_OUT_NOT_ALLOWED, "")
    bonus_left = state.get("bonus_left", 0)
    cashable = max(0, state["value_minor"] - bonus_left)
    amount = read_amount(op, "amount_minor", cashable)
    happened = sale.read_happened(op)  # paid out at the counter already: never declined
    if not happened and (amount > cashable or not cashable):
        raise ValidationError(INSUFFICIENT_VALUE, "the bonus on the card is not paid in cash"
                              if amount <= state["value_minor"] else "")
    if not amount:
        raise ValidationError(AMOUNT_INVALID, "a cash-out has a positive amount")
    effects["overdraft_minor"] = sale.overdraft_of(state, amount)
    state["value_minor"] -= amount
    legs = effects["legs"]
    move(legs, CARD_VALUE, CASH_CLEARING, program["currency"], amount, "cash_out")
    forfeited = 0
    if bonus_left and state["value_minor"] <= bonus_left:
        forfeited = max(0, state["value_minor"])
        state["value_minor"] -= forfeited
        state["bonus_left"] = 0
        move(legs, CARD_VALUE, BREAKAGE, program["currency"], forfeited, "expire")
    effects["amount_minor"] = amount
    effects["bonus_forfeited"] = forfeited


def _tick(state, program, op, now, effects):
    """Time passing is all a tick does (done before every operation)."""


HANDLERS = {
    "topup": _topup,
    "purchase": sale.purchase,
    "refund": sale.refund,
    "void": sale.void,
    "cashout": _cash_out,
    "reward": reward.reward,
    "tick": _tick,
    "rank": engine_rank.rank,
    "grant": engine_promotions.grant,
}
