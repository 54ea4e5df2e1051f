"""Tiers by rank: the ranking's counts, ties and periods, computed by hand (ledger/rank.py)."""

from __future__ import annotations

from ledger.rank import level_count, period_days_of, period_of, rank_ops, ranked
from protocol import engine
from protocol.programs import validate_programs

LEVELS = [{"name": "member", "top_pct": 100}, {"name": "silver", "top_pct": 30},
          {"name": "gold", "top_pct": 10}]


def levels_of(spends: dict[str, int]) -> dict[str, str]:
    return {row["card"]: row["level"] for row in ranked(spends, LEVELS)}


def test_a_level_count_is_rounded_up() -> None:
    # RANK_COUNT_ROUNDED_UP: 10 % of 15 = 1.5 -> 2; of 5 = 0.5 -> 1; of 10 = 1;
    # 30 % of 15 = 4.5 -> 5.
    assert [level_count(15, 10), level_count(5, 10), level_count(10, 10),
            level_count(15, 30), level_count(0, 10)] == [2, 1, 1, 5, 0]


def test_fifteen_cards_give_two_gold_and_three_more_silver() -> None:
    # Spends 1500, 1400, ..., 100 (card c15 spent most). Gold: the top ceil(1.5) = 2 cards;
    # silver: the top ceil(4.5) = 5, so the 3 after gold; the other 10 members.
    spends = {f"c{n:02d}": n * 100 for n in range(1, 16)}
    levels = levels_of(spends)
    assert [card for card in sorted(levels) if levels[card] == "gold"] == ["c14", "c15"]
    assert [card for card in sorted(levels) if levels[card] == "silver"] == [
        "c11", "c12", "c13"]
    assert sum(1 for level in levels.values() if level == "member") == 10


def test_a_tie_at_the_edge_shares_the_level() -> None:
    # RANK_TIES_SHARE_LEVEL: 10 cards, gold count 1; a and b both spent 900: both gold.
    # Silver count 3: the third card (c, 500) and d, tied with it at 500, are silver.
    spends = {"a": 900, "b": 900, "c": 500, "d": 500, "e": 100, "f": 100, "g": 90, "h": 80,
              "i": 70, "j": 60}
    result = ranked(spends, LEVELS)
    assert [(row["card"], row["position"], row["level"]) for row in result[:5]] == [
        ("a", 1, "gold"), ("b", 1, "gold"), ("c", 3, "silver"), ("d", 3, "silver"),
        ("e", 5, "member")]


def test_a_card_without_spend_stays_a_member() -> None:
    # RANK_NEEDS_SPEND: 3 cards, gold count ceil(0.3) = 1, silver ceil(0.9) = 1; all spent
    # nothing: nobody is lifted, though all three are tied at the top.
    assert levels_of({"a": 0, "b": 0, "c": 0}) == {"a": "member", "b": "member", "c": "member"}
    assert levels_of({"a": 0, "b": 5, "c": 0}) == {"a": "member", "b": "gold", "c": "member"}


def test_periods_are_the_chains() -> None:
    assert [period_of(0, 30), period_of(29, 30), period_of(30, 30)] == [0, 0, 1]
    assert period_days_of(2, 30) == (60, 89)


def test_a_second_run_posts_nothing() -> None:
    result = ranked({"a": 900, "b": 100}, LEVELS)
    first = rank_ops(result, 4, {"a": 3, "b": None})
    # 2 cards: gold ceil(0.2) = 1, silver ceil(0.6) = 1: a is gold, b a member.
    assert first == [
        {"op": "rank", "card": "a", "id": "rank-4", "level": "gold", "period": 4},
        {"op": "rank", "card": "b", "id": "rank-4", "level": "member", "period": 4}]
    # RANK_PERIOD_ONCE: both cards ranked for period 4 already.
    assert rank_ops(result, 4, {"a": 4, "b": 4}) == []


PROGRAM = validate_programs({"programs": {"p": {
    "version": 1, "currency": "EUR", "points": {"earn_bp": 100, "points_per_unit": 100},
    "tiers": {"basis": "rank", "period_days": 30, "levels": [
        {"name": "member", "top_pct": 100}, {"name": "silver", "top_pct": 30},
        {"name": "gold", "top_pct": 10, "earn_multiplier_bp": 20000, "discount_pct": 10}]}}}})["p"]


def test_the_ranking_reaches_the_engine_and_holds_through_time() -> None:
    state, _ = engine.apply(None, PROGRAM, {"op": "issue", "card": "a"}, 0)
    ops = rank_ops(ranked({"a": 900, "b": 100}, LEVELS), 0, {"a": None})
    state, effects = engine.apply(state, PROGRAM, dict(ops[0]), 30)
    assert effects["tier_change"] == ["member", "gold"] and effects["legs"] == []
    # 200 days on, no downgrade: 10 % off 50.00 = 5.00; 45.00 paid earns 45 * 2 = 90.
    state, effects = engine.apply(state, PROGRAM, {"op": "purchase", "id": "s1",
                                                   "amount_minor": 5000}, 230)
    assert (effects["discount_minor"], effects["points_earned"], state["tier"]) == (
        500, 90, "gold")
    # The same op again is declined and changes nothing.
    again, effects = engine.apply(state, PROGRAM, dict(ops[0]), 230)
    assert again is state and effects["declined"] == "time_invalid"
