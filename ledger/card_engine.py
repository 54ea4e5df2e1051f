"""A card's program-engine state at the ledger: its tier, discount and points lots (pure).

The program engine runs at the gateways; the ledger keeps value and points and, given the
chain's programs (`tilltap ledger serve --programs FILE`, the gateways' file), each card's
engine state beside them, changed with every batch that posts the card
(ledger/engine_sql.py). A card's answer reads that kept state, as of its day, and lets time
pass to today in a copy (expiries, downgrades, a discount's end): nothing is stored by a
read. Where none is kept (the card is in no batch since the ledger has its programs, or its
state was dropped) a person's look-up replays the card's posted transactions on request
(ledger/adopt_sql.py, protocol/engine_replay.py); a gateway's does not. The answer is
reported only when it ends at the books' value and points; otherwise `engine` is None and
`engine_reason` says why, never a guess:

    no_programs            the ledger was started without --programs
    gateway_replays        asked by a gateway login, for a card whose state is not kept:
                           the gateway replays the transactions itself, so the ledger
                           spares its replay (about 0.26 ms of CPU per transaction, 0.26 s
                           for a card with ADOPT_CHANGES_MAX)
    program_unknown        the card's program is not in the ledger's programs file
    history_too_long       more transactions than a replay reads (ADOPT_CHANGES_MAX)
    not_issued_in_books    the history does not start with the card's issue (a card that
                           replaced another before the ledger kept states, say)
    replay_declined        the engine declined a posted transaction (programs changed)
    replay_disagrees       the state does not end at the books' value and points

`engine_version` is the kept state's version (it rises with each transaction posted on the
card, and with a replacement), None when the answer is not the kept state.

The ledger does not re-price a sale with it; a hold is judged by it beside the books
(`hold_terms`, hold_rules.check_engine: points past their expiry and expired value are not
held). Days are ISO dates (UTC), the engine's days (`*_day`) renamed `*_on`.
"""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

from ledger.hold_rules import EngineTerms
from protocol import engine, engine_adopt, engine_points, engine_replay
from protocol.engine_replay import DAY_S
from protocol.engine_sale import value_expired

if TYPE_CHECKING:
    from ledger.engine_sql import StoredEngine

NO_PROGRAMS = "no_programs"
GATEWAY_REPLAYS = "gateway_replays"
PROGRAM_UNKNOWN = "program_unknown"
SOURCE_KEPT = "kept"
SOURCE_REPLAYED = "replayed"
REPLACED_SOURCE = "replaced"
"""The lot of points a replacement moved beyond the old card's lots (as gateways name it)."""
EPOCH = date(1970, 1, 1)
REASON_TEXTS = {
    NO_PROGRAMS: "the ledger was started without programs (ledger serve --programs FILE)",
    PROGRAM_UNKNOWN: "the card's program is not in the ledger's programs file",
    GATEWAY_REPLAYS: "a gateway replays the card's transactions itself",
    engine_replay.REPLAY_NOT_LISTED: "the card has more transactions than a replay reads",
    engine_replay.REPLAY_NOT_ISSUED: "the card's history does not start with its issue "
                                     "(a card that replaced another, say)",
    engine_replay.REPLAY_DECLINED: "the engine declines one of the card's transactions "
                                   "(its program changed since?)",
    engine_replay.REPLAY_DISAGREES: "replaying the card's transactions does not end at the "
                                    "books' value and points",
}
"""Why a card is shown without its engine state, for a person (card show, the office)."""


def card_engine(detail: dict[str, Any], programs: dict[str, dict[str, Any]] | None,
                now_s: float, gateway: bool = False) -> dict[str, Any]:
    """{"engine": the card's engine state on the day of `now_s`, or None, "engine_reason":
    None, or why there is none, "engine_version": the kept state's version, or None}, from a
    card's detail (`Books.card_detail`: its program, value, points, transactions and kept
    state, "engine_state"). `gateway`: a gateway's look-up, never replayed here."""
    if programs is None:
        return _none(NO_PROGRAMS)
    program = programs.get(detail.get("program") or "")
    if program is None:
        return _none(PROGRAM_UNKNOWN)
    kept: StoredEngine | None = detail.get("engine_state")
    day = int(now_s) // DAY_S
    if kept is not None and kept.state is not None and kept.program == program["id"]:
        return {"engine": _described(today(kept.state, program, day), program, SOURCE_KEPT, 0),
                "engine_reason": None, "engine_version": kept.version}
    if gateway:
        return _none(GATEWAY_REPLAYS if kept is None else kept.reason or GATEWAY_REPLAYS)
    transactions = detail.get("transactions")
    state, reason = engine_replay.replay(detail["card"], program, transactions, day,
                                         detail["value_minor"], detail["points"])
    if state is None:
        return _none(reason)
    return {"engine": _described(state, program, SOURCE_REPLAYED, len(transactions or ())),
            "engine_reason": None, "engine_version": None}


def kept_today(kept: StoredEngine | None, programs: dict[str, dict[str, Any]] | None,
               now_s: float) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The card's kept state let pass to the day of `now_s`, and its program; None when no
    state is kept or its program is not among the ledger's."""
    if kept is None or kept.state is None or programs is None:
        return None
    program = programs.get(kept.program)
    if program is None:
        return None
    return today(kept.state, program, int(now_s) // DAY_S), program


def hold_snapshot(kept: StoredEngine | None, programs: dict[str, dict[str, Any]] | None,
                  now_s: float) -> dict[str, Any] | None:
    """What a hold's answer tells of the card's kept state today: {"version", "tier",
    "discount_pct" (off a purchase today), "discount_until" (the last day of the discount
    that spend earned, when that is what gives discount_pct; None: none, or the tier's)};
    None when no state is kept."""
    found = kept_today(kept, programs, now_s)
    if kept is None or found is None:
        return None
    state, program = found
    view = engine_replay.described(state, program, state["day"])
    discount = view["discount"]
    earned = discount["tracked_pct"] and discount["tracked_pct"] >= discount["pct"]
    return {"version": kept.version, "tier": view["tier"], "discount_pct": discount["pct"],
            "discount_until": _iso(discount["last_day"]) if earned else None}


def hold_terms(kept: StoredEngine | None, programs: dict[str, dict[str, Any]] | None,
               now_s: float) -> EngineTerms | None:
    """What the card's kept state allows a hold today (hold_rules.check_engine): its live
    points and whether its value has expired, time let pass to today; None when no state
    is kept (the books alone judge)."""
    found = kept_today(kept, programs, now_s)
    if found is None:
        return None
    state, _ = found
    # A grant past its last day is no use (engine_promotions.granted): only live ones count.
    uses = {offer: int(left) for offer, (left, last_day) in (state.get("grants") or {}).items()
            if last_day >= state["day"]}
    return EngineTerms(engine_points.balance(state), value_expired(state, state["day"]), uses)


def today(state: dict[str, Any], program: dict[str, Any], day: int) -> dict[str, Any]:
    """A kept state (as of its day) on `day`: time let pass in the engine (expiries,
    downgrades), the kept one unchanged."""
    ticked, effects = engine.apply(state, program, {"op": "tick"}, max(day, state["day"]))
    return state if "declined" in effects else ticked


def replaced(state: dict[str, Any], program: dict[str, Any], new: str, value_minor: int,
             points: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the new card's state, the old card's) after a replacement moved `value_minor` and
    `points` (the books' figures) from the old card to `new`, as a gateway moves its copy
    (gateway/card_states.py `replace`): the new card gets the old card's lots, tier, spend,
    discount and sales, renamed; points owed stay owed on the old card, which keeps what
    value the transfer did not move (none: it moves all) and nothing else."""
    moved = json.loads(json.dumps(state))  # plain JSON data (protocol/engine.py): a deep copy
    day = moved["day"]
    left = engine_adopt.adopt(state["card"], program, day, 0, 0)
    left["value_minor"] = moved["value_minor"] - value_minor
    left["points_owed"], moved["points_owed"] = moved["points_owed"], 0
    beyond = engine_points.balance(moved) - points
    if beyond > 0:  # lots beyond what the books moved: taken off
        engine_points.redeem(moved, beyond)
    elif beyond < 0:
        engine_points.credit(moved, -beyond, day, REPLACED_SOURCE)
    moved["card"] = new
    moved["value_minor"] = value_minor
    return moved, left


def _none(reason: str | None) -> dict[str, Any]:
    return {"engine": None, "engine_reason": reason, "engine_version": None}


def _described(state: dict[str, Any], program: dict[str, Any], source: str,
               replayed: int) -> dict[str, Any]:
    """The answer's "engine": the state described on its day, days as ISO dates."""
    view = engine_replay.described(state, program, state["day"])
    discount = view["discount"]
    return {
        "program": program["id"], "version": program["version"], "on": _iso(view["day"]),
        "source": source, "replayed": replayed,
        "tier": view["tier"], "tier_spend_minor": view["tier_spend_minor"],
        "tier_visits": view["tier_visits"],
        "discount": {"pct": discount["pct"], "tracked_pct": discount["tracked_pct"],
                     "last_on": _iso(discount["last_day"]),
                     "spend_minor": discount["spend_minor"],
                     "threshold_minor": discount["threshold_minor"]},
        "points_lots": [{"points": lot["points"], "earned_on": _iso(lot["earned_day"]),
                         "expires_on": _iso(lot["expires_day"])}
                        for lot in view["points_lots"]],
        "points_owed": view["points_owed"]}


def _iso(day: int | None) -> str | None:
    """The engine's day as an ISO date (UTC), None as None."""
    return None if day is None else (EPOCH + timedelta(days=day)).isoformat()
