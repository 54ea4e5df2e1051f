"""Holds after a restart: every hold an earlier run placed is kept or ended, none left open.

A gateway killed between an authorization and its record loses its local holds, but not the
approvals: each is kept in the store with its hold (gateway/authorizations.py). When the
gateway starts, before any stage runs, `recover` looks at every hold not known to have
ended and decides (`plan`, pure)::

    its record came before the restart, naming the ledger hold   -> ended: settlement posts it
    its record came, not naming it (refused, another sale)       -> void at the ledger
    no record yet, its local time (placed + hold_ttl_s) not up   -> a local hold again, until
                                                                    its original time; its
                                                                    record posts the ledger
                                                                    hold as before the restart
    no record, its time up                                       -> void at the ledger
    a stand-in approval's possible ledger hold                   -> void (a stand-in record
                                                                    never posts a hold)

Voids go on the void queue (gateway/ledger_holds.py): start-up never waits for the ledger;
the sweep voids them while the ledger answers, and tries again every VOID_SWEEP_INTERVAL_S
while it does not. A void the ledger took is marked ended in the store, so the next start
does not ask again; a restored hold that expires unused is voided the same way.

Bound: a ledger hold placed before a restart is voided by max(placed + hold_ttl_s, start) +
VOID_SWEEP_INTERVAL_S, once the ledger answers (docs/architecture.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from gateway import authorizations
from gateway.local_holds import Hold, LocalHolds
from gateway.store import STATUS_ACCEPTED, GatewayStore
from protocol import txn

LOOKUP_CHUNK_MAX = 500  # ids per SQL IN (...), well below SQLite's variable limit
CLOCK_STEP_MARGIN_S = 300.0  # records may carry a slightly earlier time than their approval


@dataclass(slots=True)
class Recovery:
    """What `plan` decided, by auth id and ledger hold id."""

    restored: list[dict[str, Any]] = field(default_factory=list)  # kept holds, oldest first
    void: list[str] = field(default_factory=list)  # ledger hold ids no record will post
    ended: list[str] = field(default_factory=list)  # ledger hold ids their records post


def sale_id(kept: dict[str, Any]) -> str | None:
    """The txn id the request said the sale would take, if it said."""
    op = kept.get("op") or {}
    sale = op.get("id")
    return sale if isinstance(sale, str) and ":" not in sale else None


def plan(kept: list[dict[str, Any]], came: dict[str, str | None], now_s: float,
         hold_ttl_s: float) -> Recovery:
    """`kept`: authorizations.open_holds, oldest first; `came`: auth id -> the ledger hold id
    its stored record posts (None: its record came and posts none), for those whose record
    came."""
    recovery = Recovery()
    for hold in kept:
        auth_id, hold_id = hold["auth_id"], hold["ledger_hold_id"]
        stand_in = hold["auth_mode"] == txn.AUTH_STAND_IN
        if auth_id in came:
            if hold_id is not None and came[auth_id] == hold_id and not stand_in:
                recovery.ended.append(hold_id)
            elif hold_id is not None:
                recovery.void.append(hold_id)
            continue
        # A hold of points only holds no value here but points at the ledger: restored too,
        # so its record still posts it (the answer's redeem_points are the points held).
        holds_points = bool((hold["expect"] or {}).get("redeem_points"))
        # A given approval (its amounts kept: an intent has none) whose ledger hold holds no
        # value and no points took targeted offers' uses alone: restored too, so its record
        # posts it (a void gives the uses back before the sale spends them).
        holds_offers = (hold_id is not None and bool(hold["expect"]) and not stand_in
                        and not hold["held_minor"] and not holds_points)
        if hold["given_at"] + hold_ttl_s > now_s and (
                hold["held_minor"] > 0 or holds_points or holds_offers):
            recovery.restored.append(hold)
            if stand_in and hold_id is not None:
                recovery.void.append(hold_id)
        elif hold_id is not None:
            recovery.void.append(hold_id)
    return recovery


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), LOOKUP_CHUNK_MAX):
        yield items[start:start + LOOKUP_CHUNK_MAX]


def records_came(store: GatewayStore, kept: Iterable[dict[str, Any]]) -> dict[str, str | None]:
    """For each kept hold whose record is stored: the ledger hold id it posts, or None.

    First by the sale id the request named (indexed: a record at that seq under another auth
    id ended the hold too); the rest by auth id among the records stored since they were
    placed, newest first, so only the last moments before the restart are read."""
    came: dict[str, str | None] = {}
    by_sale = {sale: hold["auth_id"] for hold in kept if (sale := sale_id(hold)) is not None}
    for chunk in _chunks(sorted(by_sale)):
        rows = store.read(f"SELECT txn_id, status, fields FROM records WHERE txn_id IN"
                          f" ({','.join('?' * len(chunk))})", tuple(chunk))
        for txn_id, status, fields_json in rows:
            auth_id = by_sale[txn_id]
            fields = json.loads(fields_json)
            came[auth_id] = (fields.get("ledger_hold_id")
                             if status == STATUS_ACCEPTED and fields.get("auth_id") == auth_id
                             else None)
    rest = {hold["auth_id"]: hold["given_at"] for hold in kept if hold["auth_id"] not in came}
    if not rest:
        return came
    since_s = min(rest.values()) - CLOCK_STEP_MARGIN_S
    for status, fields_json in store.records_since(since_s):
        fields = json.loads(fields_json)
        auth_id = fields.get("auth_id")
        if auth_id in rest and auth_id not in came:
            came[auth_id] = fields.get("ledger_hold_id") if status == STATUS_ACCEPTED else None
    return came


def restore(holds: LocalHolds, kept: dict[str, Any], hold_ttl_s: float) -> None:
    """One kept hold as a local hold again, until its original time is up."""
    hold = Hold(kept["card"], kept["held_minor"], kept["given_at"] + hold_ttl_s, False,
                kept["expect"], kept["op"])
    if kept["auth_mode"] == txn.AUTH_STAND_IN:
        hold.stand_in = True  # its possible ledger hold is voided, never posted
    else:
        hold.ledger_hold_id = kept["ledger_hold_id"]
    holds.restore(kept["auth_id"], hold, sale_id(kept))


def recover(store: GatewayStore, holds: LocalHolds, now_s: float,
            hold_ttl_s: float) -> Recovery:
    """Read what an earlier run left, restore its live local holds and mark the ledger
    holds its records post as ended; returns the plan, whose `void` the caller queues."""
    kept = authorizations.open_holds(store, now_s - hold_ttl_s - CLOCK_STEP_MARGIN_S)
    recovery = plan(kept, records_came(store, kept), now_s, hold_ttl_s)
    for hold in recovery.restored:
        restore(holds, hold, hold_ttl_s)
    if recovery.ended:
        authorizations.end_holds(store, recovery.ended)
    return recovery
