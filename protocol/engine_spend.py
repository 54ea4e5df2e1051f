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

Tiers rest on the program's `basis` (`tier_figure`), each level's threshold under its key
(protocol.programs TIER_THRESHOLD_KEYS):
    spend            `tier_spend` holds `[day, amount]`: qualifying spend of the last
                     window_days days, against spend_minor
    visits           `tier_visits` holds `[day, purchases]`: the days of the last window_days
                     with a purchase, against min_visits. Named rule VISIT_PER_DAY: a visit is
                     a day on which the card made a purchase, however many and however paid
                     (any store: the card feed and a replay run them too); a reward
                     redemption is none (REWARD_PRICE_FIXED), and a purchase refunded or
                     voided in whole stops counting (its day still does while another
                     purchase of that day stands)
    membership_days  the days since the card's issue (`issued_day`), against min_member_days
A tier is the highest level whose threshold the figure reaches. Upgrades happen at once (by
a purchase; for membership_days as the days pass); downgrades of spend and visits by the
program's rule:
    period_end  at every downgrade_days-th day after issue, down to what the figure then earns
    days_below  after downgrade_days days in a row below the tier's threshold, down to what
                the figure then earns
A refund undoes the upgrade its spend (its visit) held, never below the tier held before that
purchase. Membership only grows: its tier is what the days earn, never downgraded.

The discount of a purchase (named rule LARGER_PERCENT_TIER_ON_TIE, `discount_of`): the tracked
or the tier discount, whichever has the larger percent, rounded by its own rule; on equal
percents the tier's. A volume discount (a sale whose price reaches the program's `volume`
threshold) applies instead only when its percent is larger than both. The percent of the day,
the tier and the price therefore fix the discount.

A threshold is met by a figure at it or beyond it (`threshold_rule` "at_least"), or only by
one beyond it ("above"): named rule THRESHOLD_RULE, `meets`.
"""

from protocol import money
from protocol.programs import (
    TIER_BASIS_MEMBER_DAYS,
    TIER_BASIS_RANK,
    TIER_BASIS_SPEND,
    TIER_BASIS_VISITS,
    TIER_THRESHOLD_KEYS,
)

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


def visits_at(entries, window_days, day):
    """Visits on `day`: the days with a purchase among the window_days days ending with it
    (VISIT_PER_DAY; an entry is dropped when its day's purchases are all refunded)."""
    count = 0
    for entry in entries:
        if day - window_days < entry[0] <= day:
            count += 1
    return count


def tier_basis(tiers):
    return tiers.get("basis") or TIER_BASIS_SPEND


def tier_figure(state, tiers, day):
    """What the card's tier rests on, on `day`: its rolling spend, its visits in the window or
    its days since issue (the tiers' basis)."""
    rule = tier_basis(tiers)
    if rule == TIER_BASIS_MEMBER_DAYS:
        return day - state["issued_day"]
    if rule == TIER_BASIS_VISITS:
        return visits_at(state.get("tier_visits") or [], tiers["window_days"], day)
    return spend_at(state["tier_spend"], tiers["window_days"], day)


def threshold(tiers, index):
    """The figure that reaches level `index` (its spend_minor, min_visits or min_member_days)."""
    return tiers["levels"][index][TIER_THRESHOLD_KEYS[tier_basis(tiers)]]


def qualifying(tiers, figure):
    """The highest level `figure` reaches."""
    index = 0
    for position in range(len(tiers["levels"])):
        if figure >= threshold(tiers, position):
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
    """Downgrades due since the card's last day (membership: the tier its days earn), then
    forget spend and visits that no longer count."""
    tiers = program["tiers"]
    if tiers is not None and tier_basis(tiers) == TIER_BASIS_MEMBER_DAYS:
        state["tier"] = tiers["levels"][qualifying(tiers, tier_figure(state, tiers, now))]["name"]
    elif tiers is not None and tier_basis(tiers) != TIER_BASIS_RANK:  # rank: engine_rank
        if tiers["downgrade"] == DOWNGRADE_PERIOD_END:
            _period_end(state, tiers, now)
        else:
            _days_below(state, tiers, now)
        oldest = now - tiers["window_days"]
        state["tier_spend"] = [e for e in state["tier_spend"] if e[0] > oldest]
        if state.get("tier_visits"):
            state["tier_visits"] = [e for e in state["tier_visits"] if e[0] > oldest]
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
        figure = tier_figure(state, tiers, boundary)
        index = min(level_index(levels, state["tier"]), qualifying(tiers, figure))
        state["tier"] = levels[index]["name"]


def _days_below(state, tiers, now):
    """Walk the days since the card's last day on which the figure fell (entries leaving the
    window)."""
    levels = tiers["levels"]
    window = tiers["window_days"]
    entries = _entries(state, tiers)
    index = level_index(levels, state["tier"])
    below = state["tier_below_since"]
    drops = sorted(set(e[0] + window for e in entries if state["day"] < e[0] + window <= now))
    position = 0
    while True:
        next_drop = drops[position] if position < len(drops) else None
        due = None if below is None else below + tiers["downgrade_days"]
        if due is not None and due <= now and (next_drop is None or due <= next_drop):
            figure = tier_figure(state, tiers, due)
            index = min(index, qualifying(tiers, figure))
            below = None if figure >= threshold(tiers, index) else due
            continue
        if next_drop is None:
            break
        position += 1
        if below is None and tier_figure(state, tiers, next_drop) < threshold(tiers, index):
            below = next_drop
    state["tier"] = levels[index]["name"]
    state["tier_below_since"] = below


def after_operation(state, program, now):
    """days_below: note the first day the figure is below the tier (or clear it)."""
    tiers = program["tiers"]
    if tiers is None or tiers["downgrade"] != DOWNGRADE_DAYS_BELOW:
        return
    index = level_index(tiers["levels"], state["tier"])
    if tier_figure(state, tiers, now) >= threshold(tiers, index):
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


def _entries(state, tiers):
    """The entries a rolling tier counts: `tier_spend`, or `tier_visits` (kept only on cards
    of a visits program: a card issued before it started gets it with its first visit)."""
    if tier_basis(tiers) != TIER_BASIS_VISITS:
        return state["tier_spend"]
    if "tier_visits" not in state:
        state["tier_visits"] = []
    return state["tier_visits"]


def record(state, program, now, paid_minor, effects, sale=None):
    """Count a purchase (`sale`, its record) and its qualifying spend: tier upgrade at once,
    discount when earned."""
    tiers = program["tiers"]
    rule = None if tiers is None else tier_basis(tiers)
    if rule == TIER_BASIS_VISITS and sale is not None:
        _add(_entries(state, tiers), [now], 1)
        sale["visit"] = True  # a refund of all of it takes the visit back
    if rule == TIER_BASIS_SPEND and paid_minor:
        _add(state["tier_spend"], [now], paid_minor)
    if rule is not None and rule not in (TIER_BASIS_MEMBER_DAYS, TIER_BASIS_RANK):
        levels = tiers["levels"]
        index = qualifying(tiers, tier_figure(state, tiers, now))
        if index > level_index(levels, state["tier"]):
            state["tier"] = levels[index]["name"]
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


def reverse(state, program, now, sale, spend_minor, effects, whole=False):
    """Take a refunded purchase's qualifying spend back from wherever it counts now, and its
    visit when the refund leaves nothing of the sale (`whole`)."""
    tiers = program["tiers"]
    if tiers is not None and tier_basis(tiers) != TIER_BASIS_RANK:  # rank: set by the ledger
        with_it = tier_figure(state, tiers, now)
        rule = tier_basis(tiers)
        if rule == TIER_BASIS_SPEND and spend_minor:
            _take(state["tier_spend"], [sale["day"]], spend_minor)
        elif rule == TIER_BASIS_VISITS and whole and sale.get("visit"):
            _take(_entries(state, tiers), [sale["day"]], 1)
        levels = tiers["levels"]
        index = level_index(levels, state["tier"])
        without = qualifying(tiers, tier_figure(state, tiers, now))
        if without < index <= qualifying(tiers, with_it):
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
