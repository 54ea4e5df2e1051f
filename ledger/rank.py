"""Tiers by rank in the chain: who is in which level for the next period (pure).

A program whose tiers have `basis = "rank"` (protocol/programs.py TIER_BASIS_RANK) gives each
level a `top_pct`: the share of the program's cards, by qualifying spend in the period, that
holds the level in the next period. The periods are the chain's, not a card's: period p is
the engine days [p * period_days, (p + 1) * period_days) (`period_of`). At a period's end the
program's cards are ranked here and each card gets its level by a `rank` operation (no money:
protocol/engine_rank.py), applied by every copy of the engine alike.

Named rules:
    RANK_COUNT_ROUNDED_UP  a level's count is top_pct of the ranked cards rounded up, as the
                           customer reports' value classes (ledger/customer_reports.py
                           class_sizes): the top 10 % of 15 cards is 2 cards (ceil 1.5), of
                           5 cards 1 card (ceil 0.5); a level of a non-empty ranking never
                           has nobody in reach.
    RANK_TIES_SHARE_LEVEL  cards with the same spend as the last card inside a level's count
                           hold the level too (equal spend, equal level: never split by
                           card id), so a level may hold more cards than its count.
    RANK_NEEDS_SPEND       a card with no qualifying spend in the period holds the first
                           level, whatever the counts (it still counts among the ranked).
The order reported is spend high to low, then card id (for reading only: a tie never
decides a level).
"""

from __future__ import annotations

from typing import Any

PERCENT_MAX = 100


def period_of(day: int, period_days: int) -> int:
    """The number of the chain's period that engine day `day` falls in."""
    return day // period_days


def period_days_of(period: int, period_days: int) -> tuple[int, int]:
    """The first and the last engine day of period `period`."""
    return period * period_days, (period + 1) * period_days - 1


def level_count(cards: int, top_pct: int) -> int:
    """How many of `cards` ranked cards a level of top_pct reaches (RANK_COUNT_ROUNDED_UP)."""
    return -(-cards * top_pct // PERCENT_MAX)


def ranked(spends: dict[str, int], levels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each card's level, given the qualifying spend (minor units) of every card of the
    program in the period (0 for none) and the program's levels (top_pct 100 first, then
    falling). Returns [{"card", "spend_minor", "position", "level"}] in rank order;
    `position` is 1-based, shared by equal spends."""
    order = sorted(spends.items(), key=lambda item: (-item[1], item[0]))
    # The lowest spend that reaches each level: the spend of the last card in its count.
    floors = []
    for level in levels[1:]:
        count = level_count(len(order), level["top_pct"])
        floors.append((level["name"], order[count - 1][1] if count else None))
    result = []
    position = 0
    previous = None
    for index, (card, spend) in enumerate(order):
        if spend != previous:
            position, previous = index + 1, spend
        name = levels[0]["name"]
        if spend > 0:  # RANK_NEEDS_SPEND
            for level_name, floor in floors:
                if floor is not None and spend >= floor:  # RANK_TIES_SHARE_LEVEL
                    name = level_name
        result.append({"card": card, "spend_minor": spend, "position": position,
                       "level": name})
    return result


def rank_ops(result: list[dict[str, Any]], period: int, held: dict[str, int | None],
             ) -> list[dict[str, Any]]:
    """The `rank` operations to post for `period`: one per card whose last ranked period
    (`held`, the kept state's `rank_period`) is before it. A card ranked for the period
    already gets none, so running the ranking twice changes nothing (RANK_PERIOD_ONCE)."""
    ops = []
    for row in result:
        last = held.get(row["card"])
        if last is not None and last >= period:
            continue
        ops.append({"op": "rank", "card": row["card"], "id": f"rank-{period}",
                    "level": row["level"], "period": period})
    return ops
