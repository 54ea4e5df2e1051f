"""SQL of each card's program-engine state, kept by the ledger beside its books.

A ledger given the chain's programs (`tilltap ledger serve --programs FILE`) keeps, per card,
the engine state the gateways' engine would have for it (tier and its spend, discount window,
points lots with their earn days, the sales a refund may name): one `card_engine_states` row,
changed in the transaction of every batch that posts the card (`apply_posted`, called by
`Books._post` after the plan is written), under the card's row lock the batch already holds
(posting_sql.read_view locks a batch's cards in card order): a batch's state and its entries
commit or roll back together, and two batches of one card take turns while batches of other
cards post side by side. `version` counts the changes (each posted transaction, a
replacement): it only rises.

Where the state comes from:

    an issue posted while the ledger has programs   the engine's own issue, then each
                                                    transaction's op (engine_replay.advanced)
                                                    in posting order, each on its own day
                                                    or, posted late, on the state's
    a card with no row (posted before the ledger    built once by the replay of its posted
    had programs, or posted before its issue)       transactions in terminal-time order
                                                    (adopt_sql, engine_replay), in the
                                                    batch that next posts it
    a card that replaced another                    the old card's state, moved by the
                                                    replacement's transaction (`move`)

The books stay the authority on value and points: after a batch each changed state must end
at its card's value and points in the books. When it does not (REPLAY_DISAGREES), or the
engine declines a posted transaction (REPLAY_DECLINED: the program changed since, say), the
state is dropped: the row keeps the reason, no state, and an alarm is recorded
(ENGINE_DROPPED_ALARM) once; the batch posts all the same. A dropped or never-built state is
built again only when the ledger is given another version of the card's program (a restart
with a fixed programs file); until then the card's answers fall back to the replay on
request (ledger/card_engine.py).

A state is "as of" its day (the last transaction's, or the replacement's): reading it for
today lets time pass in a copy (`ledger.card_engine`), never stored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ledger import adopt_sql, card_engine, posting_sql
from ledger.db import Session
from ledger.model import KIND_ISSUE, Txn
from ledger.schema import ALARM_COLUMNS, ENGINE_STATE_COLUMNS, OFFER_USE_COLUMNS
from protocol import engine, engine_replay
from protocol.engine_replay import REPLAY_DECLINED, REPLAY_DISAGREES

Programs = dict[str, dict[str, Any]]

ENGINE_DROPPED_ALARM = "engine_state_dropped"
"""The alarm of a card whose kept engine state was dropped (its reason in the detail)."""
ALARMED_REASONS = (REPLAY_DECLINED, REPLAY_DISAGREES)
"""Reasons that mean the engine and the books part ways (alarmed); the others (a history
too long to replay, one that does not start with the card's issue) are known limits."""
_COLUMNS = ", ".join(ENGINE_STATE_COLUMNS)


@dataclass(frozen=True, slots=True)
class StoredEngine:
    """One card_engine_states row, its state decoded (None: none kept, `reason` says why)."""

    card: str
    program: str
    program_version: int
    state: dict[str, Any] | None
    reason: str | None
    version: int
    through_txn_id: str | None
    day: int | None
    updated_at: int


def read(session: Session, cards: list[str]) -> dict[str, StoredEngine]:
    """The kept rows of these cards (a card without one is left out)."""
    rows = session.fetch_in(f"SELECT {_COLUMNS} FROM card_engine_states WHERE {{match}}",
                            "card", cards)
    return {row[0]: _stored(row) for row in rows}


def apply_posted(session: Session, programs: Programs, batch_id: str, gateway_id: str,
                 txns: list[Txn], now: int) -> list[tuple[str, str]]:
    """Bring the engine state of every card the batch posted in a known program up to date
    with its posted `txns` (in batch order), in the batch's transaction; the (card, reason)
    of the states dropped now, each alarmed in the same transaction."""
    by_card: dict[str, list[Txn]] = {}
    for txn in txns:
        by_card.setdefault(txn.card, []).append(txn)
    if not by_card:
        return []
    program_of = {card: program for card, program in session.fetch_in(
        "SELECT card, program FROM cards WHERE {match}", "card", sorted(by_card))}
    cards = sorted(card for card in by_card if (program_of.get(card) or "") in programs)
    if not cards:
        return []
    kept = read(session, cards)
    balances = posting_sql.read_balances(session, cards)
    dropped, rows, uses = [], [], []
    for card in cards:
        program = programs[program_of[card]]
        before = kept.get(card)
        applied: list[tuple[str, dict[str, Any]]] = []
        state, reason, through = _advance(session, card, program, before, by_card[card],
                                          gateway_id, balances[card], applied)
        if state is not None:
            uses.extend(_offer_uses(card, program, applied, by_card[card], now))
        version = (0 if before is None else before.version) + len(by_card[card])
        rows.append(StoredEngine(card, program["id"], program["version"], state, reason,
                                 version, through, None if state is None else state["day"],
                                 now))
        if reason in ALARMED_REASONS and (before is None or before.state is not None
                                          or _rebuilt(before, program)):
            dropped.append((card, reason))
    _write(session, kept, rows)
    session.bulk_insert("offer_uses", OFFER_USE_COLUMNS, uses)
    session.bulk_insert("alarms", ALARM_COLUMNS, (
        (now, ENGINE_DROPPED_ALARM,
         f"card {card[:64]}: engine state dropped ({reason}) by batch {batch_id[:64]};"
         " its value and points stand in the books")
        for card, reason in dropped))
    return dropped


def _advance(session: Session, card: str, program: dict[str, Any],
             before: StoredEngine | None, txns: list[Txn], gateway_id: str,
             balance: tuple[int, int], applied: list[tuple[str, dict[str, Any]]],
             ) -> tuple[dict[str, Any] | None, str | None, str]:
    """(the card's state after `txns`, None) or (None, why none is kept), and the last
    transaction in it; `applied` gets each of `txns`' (txn_id, effects) when it was applied
    to a kept state (not when the state was built from the card's whole history)."""
    posted = [_posted(txn, gateway_id) for txn in txns]
    if before is not None and not _rebuilt(before, program):
        if before.state is None:
            return None, before.reason, txns[-1].txn_id  # dropped before: stays so
        state, reason = engine_replay.advanced(card, program, before.state, posted, applied)
        return (*_checked(state, reason, program, balance), txns[-1].txn_id)
    if txns[0].kind == KIND_ISSUE:  # issued now: the engine's own issue starts it
        state, reason = engine_replay.advanced(card, program, None, posted, applied)
        state, reason = _checked(state, reason, program, balance)
        if state is not None:
            return state, None, txns[-1].txn_id
    # Never kept (or issued after something else of the card was posted): its history,
    # this batch included, replayed in the order of its terminal times.
    history = adopt_sql.card_transactions(session, card)
    state, reason = engine_replay.replay(card, program, history, 0, *balance)
    return state, reason, history[-1]["txn_id"] if history else txns[-1].txn_id


def _checked(state: dict[str, Any] | None, reason: str | None, program: dict[str, Any],
             balance: tuple[int, int]) -> tuple[dict[str, Any] | None, str | None]:
    """The state if it ends at the books' (value, points), else (None, REPLAY_DISAGREES)."""
    if state is not None:
        summary = engine.summary(state, program, state["day"])
        if (summary["value_minor"], summary["points"]) != balance:
            return None, REPLAY_DISAGREES
    return state, reason


def _rebuilt(before: StoredEngine, program: dict[str, Any]) -> bool:
    """A row computed with another program (or version) than the ledger has now: a state
    never kept, or dropped, is built again; a kept one goes on under the new terms, as the
    gateways' copies do."""
    if before.state is not None:
        return before.program != program["id"]
    return (before.program, before.program_version) != (program["id"], program["version"])


def move(session: Session, programs: Programs | None, old: str, new: str, value_minor: int,
         points: int, transfer_txn_id: str, now: int) -> None:
    """A replacement's part (ledger/replace_sql.py, in its transaction, both cards locked):
    the old card's kept state becomes the new card's (`card_engine.replaced`); the old card
    keeps an empty one. An old card never kept has its state built first (its history
    replayed: call this before the transfer is written); without a state for the old card
    the new card keeps none either (REPLAY_NOT_ISSUED, as a replay of its history says)."""
    kept = read(session, [old, new])
    before_old, before_new = kept.get(old), kept.get(new)
    rows = session.fetch("SELECT program FROM cards WHERE card = ?", (old,))
    program = None if programs is None or not rows else programs.get(rows[0][0] or "")
    if program is None:
        if before_new is not None:
            _write(session, kept, [StoredEngine(
                new, before_new.program, before_new.program_version, None,
                engine_replay.REPLAY_NOT_ISSUED, before_new.version + 1, None, None, now)])
        return
    state, reason = (None, None) if before_old is None else (before_old.state,
                                                             before_old.reason)
    if before_old is None or _rebuilt(before_old, program):
        # Never kept (posted before the ledger had programs): built now, once, as a batch
        # would build it, from the old card's history (the transfer is not in it yet).
        history = adopt_sql.card_transactions(session, old)
        state, reason = engine_replay.replay(old, program, history, 0,
                                             *posting_sql.read_balances(session, [old])[old])
    version_new = 1 if before_new is None else before_new.version + 1
    moved = left = None
    if state is not None:
        moved, left = card_engine.replaced(state, program, new, value_minor, points)
    through = transfer_txn_id
    _write(session, kept, [
        StoredEngine(old, program["id"], program["version"], left, reason,
                     (0 if before_old is None else before_old.version) + 1, through,
                     None if left is None else left["day"], now),
        StoredEngine(new, program["id"], program["version"], moved,
                     engine_replay.REPLAY_NOT_ISSUED if moved is None else None, version_new,
                     through, None if moved is None else moved["day"], now)])


def _offer_uses(card: str, program: dict[str, Any], applied: list[tuple[str, dict[str, Any]]],
                txns: list[Txn], now: int) -> list[tuple[Any, ...]]:
    """The offer_uses rows of the targeted offers the card's posted purchases took a use of
    (engine_promotions GRANT_USED_PER_PURCHASE), as the ledger's engine applied them: what
    the targeted offers report counts (ledger/offers.py)."""
    targeted = {offer["id"] for offer in (program.get("promotions") or {}).get("offers", ())
                if offer.get("targeted")}
    if not targeted:
        return []
    amounts = {txn.txn_id: txn.amount_minor for txn in txns}
    return [(txn_id, offer_id, card, program["id"], amounts[txn_id], now)
            for txn_id, effects in applied for offer_id in effects.get("promotions", ())
            if offer_id in targeted and txn_id in amounts]


def _posted(txn: Txn, gateway_id: str) -> dict[str, Any]:
    """A posted transaction in the terms of a replay (adopt_sql.ADOPT_FIELDS)."""
    return {"txn_id": txn.txn_id, "kind": txn.kind, "time": txn.time, "gateway_id": gateway_id,
            "amount_minor": txn.amount_minor, "card_value_minor": txn.card_value_minor,
            "bonus_minor": txn.bonus_minor, "points": txn.points,
            "ref_txn_id": txn.ref_txn_id, "program": txn.program,
            "discount_minor": txn.discount_minor, "redeem_points": txn.redeem_points,
            "reward": txn.reward, "grants": txn.grants, "auth": txn.auth,
            "card_op": txn.card_op}


def _write(session: Session, kept: dict[str, StoredEngine], rows: list[StoredEngine]) -> None:
    """Replace the cards' rows (`kept`: those there now) by `rows`: the kept ones deleted,
    all inserted, two statements for a batch of any size (one UPDATE per card would cost a
    round trip each). The cards' rows are locked: no one else writes these; a card issued by
    two batches at once collides on the primary key, and the loser runs again whole."""
    there = [row.card for row in rows if row.card in kept]
    if there:
        session.fetch_in("DELETE FROM card_engine_states WHERE {match} RETURNING card", "card",
                         there)
    session.bulk_insert("card_engine_states", ENGINE_STATE_COLUMNS, (
        (row.card, row.program, row.program_version,
         None if row.state is None else json.dumps(row.state, separators=(",", ":"),
                                                   sort_keys=True),
         row.reason, row.version, row.through_txn_id, row.day, row.updated_at)
        for row in rows))


def _stored(row: tuple[Any, ...]) -> StoredEngine:
    card, program, program_version, state, reason, version, through, day, updated_at = row
    return StoredEngine(card, program, int(program_version),
                        None if state is None else json.loads(state), reason, int(version),
                        through, None if day is None else int(day), int(updated_at))
