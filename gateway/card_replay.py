"""A card the gateway has not seen, rebuilt from the ledger's record of it (pure).

Balances alone lose what the program engine keeps beside them: points lots and their earn
days, qualifying spend towards a discount or a tier, the sales a refund may name. The
ledger's answer for a card it knows lists the card's posted transactions, oldest first
(ledger/adopt_sql.py); `replayed` runs them through the same engine, as the card feed does
for changes made at other stores (gateway/card_feed.py `foreign_op`: each as it happened),
then lets time pass to today. So a customer whose card was bought, charged and used at other
stores meets here the card they know: a discount earned by spend at two stores, a tier,
points that expire when they were earned to.

The result is used only if it ends where the ledger's books are (its value and points);
otherwise, or if any step is declined or the list is missing (too long), None: the caller
takes the card on from its balances (protocol/engine_adopt.py), as before.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from protocol import engine

DAY_S = 86_400


def replayed(card: str, program: dict[str, Any], transactions: Iterable[dict[str, Any]] | None,
             now_day: int, value_minor: int, points: int) -> dict[str, Any] | None:
    """The card's engine state after its transactions and until `now_day`, or None."""
    # Imported here: gateway.card_feed builds on gateway.card_states, which calls this.
    from gateway.card_feed import foreign_op

    if transactions is None:
        return None
    state: dict[str, Any] | None = None
    for posted in transactions:
        day = int(posted["time"]) // DAY_S
        if state is not None:
            day = max(day, state["day"])
        if posted["kind"] == "issue":
            if state is not None or posted.get("program") != program["id"]:
                return None
            op: dict[str, Any] | None = {"op": "issue", "id": posted["txn_id"], "card": card,
                                         "value_minor": int(posted["card_value_minor"])}
        elif state is None:
            return None  # not issued through the books (e.g. taken over from another card)
        else:
            op = foreign_op(posted)
        if op is None:
            continue  # an expiry: the engine lets time pass on its own
        state, effects = engine.apply(state, program, op, day)
        if "declined" in effects:
            return None
    if state is None:
        return None
    state, effects = engine.apply(state, program, {"op": "tick"}, max(now_day, state["day"]))
    summary = engine.summary(state, program, state["day"])
    if "declined" in effects or (summary["value_minor"], summary["points"]) != (
            value_minor, points):
        return None
    return state
