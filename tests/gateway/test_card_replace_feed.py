"""gateway/card_feed.py and card_states.py: a card replaced at the ledger (a "transfer" in
its card feed) moves its engine state to the new card at every gateway serving it: points
lots with their earn days, tier and its spend, discount window, refundable sales; the old
card is left empty."""

from __future__ import annotations

from typing import Any

from gateway.card_feed import apply_changes
from gateway.card_states import DAY_S, CardStates
from protocol import engine_points
from protocol.programs import validate_programs
from tools.demo import DEMO_PROGRAMS

PROGRAMS = validate_programs({"programs": DEMO_PROGRAMS})
DAY = 20_000


def _change(n: int, kind: str, card: str = "C1", day: int = DAY, **terms: Any) -> dict[str, Any]:
    change = {"xid": 100 + n, "id": n, "gateway_id": "gwA", "txn_id": f"A1-{n}",
              "card": card, "terminal": "A1", "merchant": "MA", "kind": kind,
              "amount_minor": 0, "card_value_minor": 0, "bonus_minor": 0, "points": 0,
              "ref_txn_id": None, "program": "vip", "time": day * DAY_S + 3_600,
              "discount_minor": None, "redeem_points": None, "auth": "online",
              "sun_counter": None, "replaced_by": None}
    change.update(terms)
    return change


def _transfer(n: int, old: str, new: str, value_minor: int, points: int) -> list[dict[str, Any]]:
    """The feed's two changes of one replacement: the old card's, then the new card's."""
    terms = {"txn_id": f"XFER-{new}", "gateway_id": "DESK", "terminal": "DESK",
             "amount_minor": value_minor, "card_value_minor": value_minor, "points": points,
             "replaced_by": new, "day": DAY + 20}
    return [_change(n, "transfer", card=old, **terms),
            _change(n + 1, "transfer", card=new, **terms)]


def _vip_with_history() -> CardStates:
    """A VIP card taken on here, with two purchases elsewhere on two days: silver, two lots."""
    states = CardStates(PROGRAMS)
    states.adopt("C1", {"program": "vip", "currency": "EUR", "value_minor": 0, "points": 0,
                        "feed": None}, DAY * DAY_S)
    result = apply_changes(states, [
        _change(1, "purchase", amount_minor=15_000, points=150, day=DAY + 1),
        _change(2, "purchase", amount_minor=10_000, points=100, day=DAY + 5)], "gwB")
    assert result.applied == 2
    states.take_dirty()
    return states


def test_the_state_moves_to_the_new_card_with_its_lots_tier_and_sales() -> None:
    states = _vip_with_history()
    before = states.get("C1")["state"]
    assert before["tier"] == "silver" and len(before["lots"]) == 2
    points = engine_points.balance(before)
    result = apply_changes(states, _transfer(3, "C1", "N1", 0, points), "gwB")
    assert (result.replaced, result.not_served, result.applied) == (1, 1, 0)
    new, old = states.get("N1"), states.get("C1")
    assert new is not None and old is not None
    moved = new["state"]
    assert moved["card"] == "N1" and moved["tier"] == "silver"
    assert moved["lots"] == before["lots"]  # [earn_day, points, source] each
    assert [lot[0] for lot in moved["lots"]] == [DAY + 1, DAY + 5]
    assert moved["tier_spend"] == before["tier_spend"]
    assert set(moved["sales"]) == {"A1-1", "A1-2"}
    assert (new["points"], new["value_minor"], new["sun_counter"]) == (points, 0, None)
    assert (old["points"], old["value_minor"], old["state"]["sales"]) == (0, 0, {})
    assert old["state"]["lots"] == []
    dirty = states.take_dirty()
    assert set(dirty["N1"]["sales_changed"]) == {"A1-1", "A1-2"}
    assert dirty["C1"]["sales_changed"] == {"A1-1": None, "A1-2": None}  # forgotten there


def test_a_refund_of_a_sale_of_the_old_card_runs_on_the_new_card() -> None:
    states = _vip_with_history()
    points = engine_points.balance(states.get("C1")["state"])
    apply_changes(states, _transfer(3, "C1", "N1", 0, points), "gwB")
    result = apply_changes(states, [_change(5, "refund", card="N1", amount_minor=10_000,
                                            ref_txn_id="A1-2", day=DAY + 21)], "gwB")
    assert (result.applied, result.forced) == (1, 0)
    assert states.get("N1")["points"] < points


def test_the_books_decide_what_moves_and_the_rest_stays_on_the_old_card() -> None:
    """A sale here not yet posted when the card was replaced: the new card gets what the
    ledger moved; the old card keeps the difference (below zero: the exposure)."""
    states = CardStates(PROGRAMS)
    states.adopt("C1", {"program": "club", "currency": "EUR", "value_minor": 5_000,
                        "points": 40, "feed": None}, DAY * DAY_S)
    result = apply_changes(states, _transfer(1, "C1", "N1", 6_000, 30), "gwB")
    assert result.replaced == 1
    assert (states.get("N1")["value_minor"], states.get("N1")["points"]) == (6_000, 30)
    assert (states.get("C1")["value_minor"], states.get("C1")["points"]) == (-1_000, 0)


def test_a_store_not_serving_the_old_card_or_serving_the_new_one_moves_nothing() -> None:
    states = CardStates(PROGRAMS)
    result = apply_changes(states, _transfer(1, "C1", "N1", 100, 0), "gwB")
    assert (result.replaced, result.not_served) == (0, 2) and states.get("N1") is None
    # The new card was taken on from the ledger after the replacement (tapped here before
    # the feed brought it): the old card's state, lots and tier, replaces the adopted one.
    states = _vip_with_history()
    points = engine_points.balance(states.get("C1")["state"])
    states.adopt("N1", {"program": "vip", "currency": "EUR", "value_minor": 0,
                        "points": points, "feed": None, "sun_counter": 7}, (DAY + 20) * DAY_S)
    result = apply_changes(states, _transfer(3, "C1", "N1", 0, points), "gwB")
    assert result.replaced == 1
    assert states.get("N1")["state"]["tier"] == "silver"
    assert states.get("N1")["sun_counter"] == 7  # the new chip's reads stay known
    # ... unless it made a sale here since: its own state stands, the old card is emptied.
    states = _vip_with_history()
    states.adopt("N1", {"program": "vip", "currency": "EUR", "value_minor": 0,
                        "points": points, "feed": None}, (DAY + 20) * DAY_S)
    apply_changes(states, [_change(3, "purchase", card="N1", amount_minor=1_000, points=15,
                                   day=DAY + 20)], "gwB")
    used = states.get("N1")["state"]
    result = apply_changes(states, _transfer(4, "C1", "N1", 0, points), "gwB")
    assert (result.replaced, result.included) == (0, 1)
    assert states.get("N1")["state"] is used and states.get("C1")["points"] == 0
    # The old card taken on after the replacement (feed position past it): nothing moves.
    states = CardStates(PROGRAMS)
    states.adopt("C1", {"program": "vip", "currency": "EUR", "value_minor": 0, "points": 0,
                        "feed": {"horizon": 0, "through": 9, "known": []}}, DAY * DAY_S)
    result = apply_changes(states, _transfer(3, "C1", "N1", 0, 250), "gwB")
    assert result.included == 1 and states.get("N1") is None
