"""Tiers by rank in the chain: the `rank` operation (protocol.programs TIER_BASIS_RANK).

A card's engine knows only its own history; its rank is the chain's. So the ledger ranks
the program's cards by qualifying spend at each period's end (ledger/rank.py) and posts to
each card one operation, with no money:

    {"op": "rank", "id", "level", "period"}    the card's level for the next period

`period` is the number of the period ranked (0, 1, ...: ledger/rank.py period_of). Every
copy of the engine (ledger, gateway, terminal) applies the same operation, so they agree
on the tier. A period is ranked once per card (named rule RANK_PERIOD_ONCE): a `rank` for a
period not after the card's last one is declined, so running the ranking twice changes
nothing.
"""

from protocol.engine_legs import read_id
from protocol.errors import ValidationError
from protocol.programs import TIER_BASIS_RANK
from protocol.reasons import FIELD_INVALID, OPERATION_NOT_IN_PROGRAM, TIME_INVALID


def rank(state, program, op, now, effects):
    tiers = program["tiers"]
    if tiers is None or tiers.get("basis") != TIER_BASIS_RANK:
        raise ValidationError(OPERATION_NOT_IN_PROGRAM, "program has no tiers by rank")
    read_id(op, "id")
    level = op.get("level")
    if level not in [entry["name"] for entry in tiers["levels"]]:
        raise ValidationError(FIELD_INVALID, "level is not a level of the program")
    period = op.get("period")
    if not isinstance(period, int) or isinstance(period, bool) or period < 0:
        raise ValidationError(FIELD_INVALID, "period is an integer >= 0")
    last = state.get("rank_period")
    if last is not None and period <= last:
        raise ValidationError(TIME_INVALID, "period %d already ranked (last %d)" % (
            period, last))
    state["rank_period"] = period
    state["tier"] = level
    state["tier_below_since"] = None
    effects["level"] = level
    effects["period"] = period
