"""gateway/card_feed.py: which of the ledger's card changes a gateway applies, and how."""

from __future__ import annotations

from typing import Any

from gateway.card_feed import apply_changes, included
from gateway.card_states import CardStates
from protocol.engine_replay import posted_op
from protocol.programs import validate_programs
from tests.support import REPO_ROOT
from tools.demo import DEMO_PROGRAMS
from tools.programs import load_programs

PROGRAMS = validate_programs({"programs": DEMO_PROGRAMS})
DAY_S = 86_400
NOW_S = 20_000 * DAY_S


def _change(n: int, kind: str, card: str = "C1", gateway: str = "gwA",
            **terms: Any) -> dict[str, Any]:
    change = {"xid": 100 + n, "id": n, "gateway_id": gateway, "txn_id": f"A1-{n}",
              "card": card, "terminal": "A1", "merchant": "MA", "kind": kind,
              "amount_minor": 0, "card_value_minor": 0, "bonus_minor": 0, "points": 0,
              "ref_txn_id": None, "program": "prepaid", "time": NOW_S,
              "discount_minor": None, "redeem_points": None, "auth": "online"}
    change.update(terms)
    return change


def _served(value_minor: int = 1_000, program: str = "prepaid",
            feed: dict[str, Any] | None = None) -> CardStates:
    """A store serving card C1, taken on from the ledger with `value_minor`."""
    states = CardStates(PROGRAMS)
    states.adopt("C1", {"program": program, "currency": "EUR", "value_minor": value_minor,
                        "points": 0, "feed": feed}, NOW_S)
    return states


def test_a_top_up_and_a_purchase_elsewhere_move_the_value_here() -> None:
    states = _served()
    result = apply_changes(states, [
        _change(1, "topup", amount_minor=2_000, card_value_minor=2_100, bonus_minor=100),
        _change(2, "purchase", amount_minor=500, card_value_minor=500)], "gwB")
    assert result.applied == 2 and result.forced == 0
    assert states.get("C1")["value_minor"] == 1_000 + 2_100 - 500  # the 5 % bonus
    assert "A1-2" in states.get("C1")["state"]["sales"]  # refundable here
    assert "C1" in states.take_dirty()


def test_own_changes_unserved_cards_and_changes_already_taken_on_are_skipped() -> None:
    states = _served(feed={"horizon": 103, "through": 0, "known": ["A1-7"]})
    result = apply_changes(states, [
        _change(1, "topup", gateway="gwB", amount_minor=10),  # this store's own
        _change(2, "topup", card="C2", amount_minor=10),  # a card not served here
        _change(3, "issue", amount_minor=10),  # an issue elsewhere: not run here
        _change(2, "topup", amount_minor=10) | {"txn_id": "A1-2b"},  # xid 102 < horizon
        _change(7, "topup", amount_minor=10),  # named as known
        _change(8, "topup", amount_minor=100)], "gwB")
    assert (result.own, result.not_served, result.included, result.applied) == (1, 2, 2, 1)
    assert states.get("C1")["value_minor"] == 1_000 + 105


def test_a_change_the_engine_declines_here_moves_value_and_points_as_posted() -> None:
    states = _served(value_minor=0, program="loyalty")
    result = apply_changes(states, [
        _change(1, "refund", program="loyalty", amount_minor=300, card_value_minor=0,
                points=3, ref_txn_id="A1-0")], "gwB")  # a sale this store never saw
    assert result.forced == 1
    assert states.get("C1")["points"] == -3  # owed, as the books have it


def test_the_position_a_card_was_taken_on_with() -> None:
    change = _change(5, "topup")
    assert not included(None, change)
    assert included({"horizon": 106, "through": 0, "known": []}, change)
    assert included({"horizon": 0, "through": 5, "known": []}, change)
    assert included({"horizon": 0, "through": 0, "known": ["A1-5"]}, change)
    assert not included({"horizon": 105, "through": 4, "known": ["A1-4"]}, change)


def test_each_kind_runs_as_the_operation_it_was() -> None:
    assert posted_op(_change(1, "purchase", amount_minor=900, card_value_minor=800,
                              discount_minor=100, redeem_points=0))["happened"] is True
    assert posted_op(_change(1, "refund", ref_txn_id="A1-0", amount_minor=5))["of"] == "A1-0"
    assert posted_op(_change(1, "expire")) is None
    assert posted_op(_change(1, "issue")) is None


def test_visits_made_at_other_stores_count_towards_a_tier_by_visits() -> None:
    """`frequent` of examples/programs.toml: purchases on 4 days within 30 days make the
    tier; two on one day are one visit (VISIT_PER_DAY)."""
    frequent = load_programs(REPO_ROOT / "examples" / "programs.toml")["frequent"]
    states = CardStates({"frequent": frequent})
    states.adopt("C1", {"program": "frequent", "currency": "EUR", "value_minor": 0,
                        "points": 0, "feed": None}, NOW_S)
    day = NOW_S // DAY_S
    elsewhere = [_change(n, "purchase", program="frequent", amount_minor=1_000,
                         time=NOW_S + days * DAY_S) for n, days in enumerate((0, 0, 5, 10), 1)]
    assert apply_changes(states, elsewhere, "gwB").applied == 4
    state = states.get("C1")["state"]
    assert state["tier"] == "guest"
    assert state["tier_visits"] == [[day, 2], [day + 5, 1], [day + 10, 1]]
    fourth = _change(5, "purchase", program="frequent", amount_minor=1_000,
                     time=NOW_S + 15 * DAY_S)
    assert apply_changes(states, [fourth], "gwB").applied == 1
    assert states.get("C1")["state"]["tier"] == "frequent"
