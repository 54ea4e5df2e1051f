"""Qualifying spend: discount tracking and tiers (relationship pricing).

Qualifying spend is what a purchase paid with money (card value or other tender): the amount
less its discount and the value of the points redeemed.

Discount tracking: `progress` holds `[day, generation, amount]` entries; spend counts for
qualify_days days. When a purchase brings it to threshold_minor and no discount is running,
the discount starts: discount_pct off every later purchase before day + duration_days, and the
entries that earned it move to the discount's `basis` (the generation goes up, so each
purchase knows which side its spend is on). Spend during a discount counts towards the next
one, which a purchase after it ends can start. A refund takes its spend back from where it
is; a discount whose basis falls below the threshold is withdrawn and its basis goes back to
progress.

Tiers: `tier_spend` holds `[day, amount]`; spend counts for window_days days. A tier is the
highest level whose spend_minor the rolling spend reaches. Upgrades happen at once; downgrades
by the program's rule:
    period_end  at every downgrade_days-th day after issue, down to what the spend then earns
    days_below  after downgrade_days days in a row below the tier's spend_minor, down to what
                the spend then earns
A refund undoes the upgrade its spend held, never below the tier held before that purchase.

The discount of a purchase (named rule LARGER_PERCENT_TIER_ON_TIE, `discount_of`): the tracked
or the tier discount, whichever has the larger percent, rounded by its own rule; on equal
percents the tier's. A volume discount (a sale whose price reaches the program's `volume`
threshold) applies instead only when its percent is larger than both. The percent of the day,
the tier and the price therefore fix the discount.

A threshold is met by a figure at it or beyond it (`threshold_rule` "at_least"), or only by
one beyond it ("above"): named rule THRESHOLD_RULE, `meets`.
"""

from protocol import money

DOWNGRADE_PERIOD_END = "period_end"
DOWNGRADE_DAYS_BELOW = "days_below"
MULTIPLIER_ONE_BP = 10000


def spend_at(entries, window_days, day):
    """Rolling spend on `day`: entries of the window_days days ending with `day`."""
    total = 0
    for entry in entries:
        if day - window_days < entry[0] <= day:
            total += entry[-1]
    return total


def qualifying(levels, spend):
    index = 0
    for position in range(len(levels)):
        if spend >= levels[position]["spend_minor"]:
            index = position
    return index


def level_index(levels, name):
    for position in range(len(levels)):
        if levels[position]["name"] == name:
            return position
    return 0


def tier_level(state, program):
    tiers = program["tiers"]
    if tiers is None:
        return None
    return tiers["levels"][level_index(tiers["levels"], state["tier"])]


def earn_multiplier_bp(state, program):
    level = tier_level(state, program)
    return MULTIPLIER_ONE_BP if level is None else level["earn_multiplier_bp"]


def _tracked_pct(state, now):
    discount = state["discount"]
    return discount["pct"] if discount is not None and discount["until_day"] > now else 0


def tier_discount_pct(state, program):
    level = tier_level(state, program)
    return 0 if level is None else level["discount_pct"]


def discount_pct(state, program, now):
    """The percent off a purchase on `now`: the larger of the tracked and the tier discount."""
    return max(_tracked_pct(state, now), tier_discount_pct(state, program))


def meets(figure, threshold, rule):
    """Whether `figure` meets a threshold under its rule ("at_least" or "above")."""
    return figure > threshold if rule == "above" else figure >= threshold


def volume_pct(program, amount_minor):
    """The volume discount's percent for a sale of this price (0 when it does not qualify)."""
    terms = program.get("volume")
    if terms is None or not meets(amount_minor, terms["threshold_minor"],
                                  terms["threshold_rule"]):
        return 0
    return terms["discount_pct"]


def discount_for(state, program, now, amount_minor, offer_pct=0):
    """(pct, discount_minor) for a purchase: `discount_of` the card's discounts on `now`
    (`offer_pct`: the promotions', engine_promotions.terms)."""
    return discount_of(program, _tracked_pct(state, now), tier_discount_pct(state, program),
                       amount_minor, offer_pct)


def discount_of(program, tracked_pct, tier_pct, amount_minor, offer_pct=0):
    """(pct, discount_minor) by the rule LARGER_PERCENT_TIER_ON_TIE.

    The discount with the larger percent applies, rounded by its own rule: the tracked one by
    discount.discount_rounding, the tier's by tiers.discount_rounding. On equal percents the
    tier's applies (its rounding), so the percent and the tier alone, what an offline terminal
    knows (protocol.engine_offline), decide the discount exactly.
    """
    volume = volume_pct(program, amount_minor)
    if offer_pct > tracked_pct and offer_pct > tier_pct and offer_pct > volume:
        pct, rule = offer_pct, program["promotions"]["discount_rounding"]
    elif volume > tracked_pct and volume > tier_pct:
        pct, rule = volume, program["volume"]["discount_rounding"]
    elif tracked_pct > tier_pct:
        pct, rule = tracked_pct, program["discount"]["discount_rounding"]
    elif tier_pct:
        pct, rule = tier_pct, program["tiers"]["discount_rounding"]
    else:
        return 0, 0
    return pct, money.percent_of(amount_minor, pct * 100, rule)


# -- time passing ---------------------------------------------------------------------------


def pass_time(state, program, now):
    """Downgrades due since the card's last day, then forget spend that no longer counts."""
    tiers = program["tiers"]
    if tiers is not None:
        if tiers["downgrade"] == DOWNGRADE_PERIOD_END:
            _period_end(state, tiers, now)
        else:
            _days_below(state, tiers, now)
        oldest = now - tiers["window_days"]
        state["tier_spend"] = [e for e in state["tier_spend"] if e[0] > oldest]
    terms = program["discount"]
    if state["discount"] is not None and state["discount"]["until_day"] <= now:
        state["discount"] = None
    if terms is not None:
        oldest = now - terms["qualify_days"]
        state["progress"] = [e for e in state["progress"] if e[0] > oldest]


def _period_end(state, tiers, now):
    periods = (now - state["issued_day"]) // tiers["downgrade_days"]
    boundary = state["issued_day"] + periods * tiers["downgrade_days"]
    if periods >= 1 and boundary > state["day"]:
        levels = tiers["levels"]
        spend = spend_at(state["tier_spend"], tiers["window_days"], boundary)
        index = min(level_index(levels, state["tier"]), qualifying(levels, spend))
        state["tier"] = levels[index]["name"]


def _days_below(state, tiers, now):
    """Walk the days since the card's last day on which spend fell (entries leaving the window)."""
    levels = tiers["levels"]
    window = tiers["window_days"]
    entries = state["tier_spend"]
    index = level_index(levels, state["tier"])
    below = state["tier_below_since"]
    drops = sorted(set(e[0] + window for e in entries if state["day"] < e[0] + window <= now))
    position = 0
    while True:
        next_drop = drops[position] if position < len(drops) else None
        due = None if below is None else below + tiers["downgrade_days"]
        if due is not None and due <= now and (next_drop is None or due <= next_drop):
            spend = spend_at(entries, window, due)
            index = min(index, qualifying(levels, spend))
            below = None if spend >= levels[index]["spend_minor"] else due
            continue
        if next_drop is None:
            break
        position += 1
        if below is None and spend_at(entries, window, next_drop) < levels[index]["spend_minor"]:
            below = next_drop
    state["tier"] = levels[index]["name"]
    state["tier_below_since"] = below


def after_operation(state, program, now):
    """days_below: note the first day the spend is below the tier (or clear it)."""
    tiers = program["tiers"]
    if tiers is None or tiers["downgrade"] != DOWNGRADE_DAYS_BELOW:
        return
    level = tier_level(state, program)
    if spend_at(state["tier_spend"], tiers["window_days"], now) >= level["spend_minor"]:
        state["tier_below_since"] = None
    elif state["tier_below_since"] is None:
        state["tier_below_since"] = now


# -- purchases and refunds ------------------------------------------------------------------


def _add(entries, key, amount):
    for entry in entries:
        if entry[:-1] == key:
            entry[-1] += amount
            return
    entries.append(key + [amount])


def _total(entries):
    total = 0
    for entry in entries:
        total += entry[-1]
    return total


def _take(entries, key, amount):
    """Take up to `amount` from the entry with `key`; returns what was taken."""
    for index in range(len(entries)):
        if entries[index][:-1] == key:
            taken = min(amount, entries[index][-1])
            entries[index][-1] -= taken
            if not entries[index][-1]:
                entries.pop(index)
            return taken
    return 0


def record(state, program, now, paid_minor, effects):
    """Count a purchase's qualifying spend: tier upgrade at once, discount when earned."""
    tiers = program["tiers"]
    if tiers is not None and paid_minor:
        _add(state["tier_spend"], [now], paid_minor)
        levels = tiers["levels"]
        spend = spend_at(state["tier_spend"], tiers["window_days"], now)
        if qualifying(levels, spend) > level_index(levels, state["tier"]):
            state["tier"] = levels[qualifying(levels, spend)]["name"]
            state["tier_below_since"] = None
    terms = program["discount"]
    if terms is not None and paid_minor:
        _add(state["progress"], [now, state["discount_gen"]], paid_minor)
        progress = spend_at(state["progress"], terms["qualify_days"], now)
        if state["discount"] is None and meets(progress, terms["threshold_minor"],
                                               terms.get("threshold_rule", "at_least")):
            until = now + terms["duration_days"]
            state["discount"] = {"pct": terms["discount_pct"], "until_day": until,
                                 "basis": state["progress"]}
            state["progress"] = []
            state["discount_gen"] += 1
            # The last day it applies (it ends at the start of `until`).
            effects["discount_until_day"] = until - 1


def reverse(state, program, now, sale, spend_minor, effects):
    """Take a refunded purchase's qualifying spend back from wherever it counts now."""
    tiers = program["tiers"]
    if tiers is not None and spend_minor:
        removed = _take(state["tier_spend"], [sale["day"]], spend_minor)
        levels = tiers["levels"]
        spend = spend_at(state["tier_spend"], tiers["window_days"], now)
        index = level_index(levels, state["tier"])
        without = qualifying(levels, spend)
        if without < index <= qualifying(levels, spend + removed):
            before = level_index(levels, sale["tier_before"])
            state["tier"] = levels[min(index, max(without, before))]["name"]
    terms = program["discount"]
    if terms is None or not spend_minor:
        return
    key = [sale["day"], sale["gen"]]
    if _take(state["progress"], key, spend_minor):
        return
    discount = state["discount"]
    if discount is not None and _take(discount["basis"], key, spend_minor):
        basis = discount["basis"]
        if not meets(_total(basis), terms["threshold_minor"],
                     terms.get("threshold_rule", "at_least")):
            for entry in basis:
                _add(state["progress"], entry[:-1], entry[-1])
            state["discount"] = None
            effects["discount_withdrawn_pct"] = discount["pct"]
