"""A card's program-engine state at the ledger: its tier, discount and points lots (pure).

The program engine runs at the gateways; the ledger keeps value and points. Given the
chain's programs (`tilltap ledger serve --programs FILE`, the gateways' file), the ledger
works out the rest on request, the way a gateway taking the card on does: it replays the
card's posted transactions (ledger/adopt_sql.py) through the engine for the card's program
up to today (protocol/engine_replay.py). The answer is reported only when the replay ends at
the books' value and points; otherwise `engine` is None and `engine_reason` says why, never
a guess:

    no_programs            the ledger was started without --programs
    gateway_replays        asked by a gateway login: the gateway replays the transactions
                           itself, so the ledger spares its replay (about 0.26 ms of CPU per
                           transaction, 0.26 s for a card with ADOPT_CHANGES_MAX)
    program_unknown        the card's program is not in the ledger's programs file
    history_too_long       more transactions than a replay reads (ADOPT_CHANGES_MAX)
    not_issued_in_books    the history does not start with the card's issue (a card that
                           replaced another, say)
    replay_declined        the engine declined a posted transaction (programs changed)
    replay_disagrees       the replay does not end at the books' value and points

It is a report: the ledger does not authorize with it or re-price a sale. Days are ISO dates
(UTC), the engine's days (`*_day`) renamed `*_on`.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from protocol import engine_replay
from protocol.engine_replay import DAY_S

NO_PROGRAMS = "no_programs"
GATEWAY_REPLAYS = "gateway_replays"
PROGRAM_UNKNOWN = "program_unknown"
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


def for_gateway() -> dict[str, Any]:
    """The answer's engine fields for a gateway's look-up: no replay (GATEWAY_REPLAYS)."""
    return {"engine": None, "engine_reason": GATEWAY_REPLAYS}


def card_engine(detail: dict[str, Any], programs: dict[str, dict[str, Any]] | None,
                now_s: float) -> dict[str, Any]:
    """{"engine": the card's engine state on the day of `now_s`, or None, "engine_reason":
    None, or why there is none}, from a card's detail (`Books.card_detail`: its program,
    value, points and transactions)."""
    if programs is None:
        return {"engine": None, "engine_reason": NO_PROGRAMS}
    program = programs.get(detail.get("program") or "")
    if program is None:
        return {"engine": None, "engine_reason": PROGRAM_UNKNOWN}
    transactions = detail.get("transactions")
    state, reason = engine_replay.replay(detail["card"], program, transactions,
                                         int(now_s) // DAY_S, detail["value_minor"],
                                         detail["points"])
    if state is None:
        return {"engine": None, "engine_reason": reason}
    view = engine_replay.described(state, program, state["day"])
    discount = view["discount"]
    return {"engine": {
        "program": program["id"], "version": program["version"], "on": _iso(view["day"]),
        "replayed": len(transactions or ()),
        "tier": view["tier"], "tier_spend_minor": view["tier_spend_minor"],
        "discount": {"pct": discount["pct"], "tracked_pct": discount["tracked_pct"],
                     "last_on": _iso(discount["last_day"]),
                     "spend_minor": discount["spend_minor"],
                     "threshold_minor": discount["threshold_minor"]},
        "points_lots": [{"points": lot["points"], "earned_on": _iso(lot["earned_day"]),
                         "expires_on": _iso(lot["expires_day"])}
                        for lot in view["points_lots"]],
        "points_owed": view["points_owed"]}, "engine_reason": None}


def _iso(day: int | None) -> str | None:
    """The engine's day as an ISO date (UTC), None as None."""
    return None if day is None else (EPOCH + timedelta(days=day)).isoformat()
