"""A card the engine never saw, taken on with the balances another system gives for it.

A card registered centrally (personalized at a technician's desk) or issued at another store
reaches a gateway with balances and no history here. `adopt` starts its engine state from
those balances:

    state = adopt(card, program, now_day, value_minor, points)

Its points form one lot earned on `now_day` (named rule ADOPTED_POINTS_LOT: their real earn
days are unknown here, so they expire `expiry_days` after the card was adopted, never
sooner); negative points (owed after a refund elsewhere) are carried as owed. The history
before adoption stays where it was posted: a sale made elsewhere cannot be refunded here.
"""

from protocol import engine, engine_points

ADOPTED_SOURCE = "adopted"


def adopt(card, program, now_day, value_minor, points):
    state = engine._new_state(card, program, now_day)
    state["value_minor"] = value_minor
    state["purchases"] = None  # its past is not known here: never a first purchase
    if points > 0:
        engine_points.credit(state, points, now_day, ADOPTED_SOURCE)
    elif points < 0:
        state["points_owed"] = -points
    return state
