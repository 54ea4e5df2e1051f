"""Every approval the gateway gave, kept durably with the amounts its record must carry.

An online record names its authorization (`auth_id`). While the authorization's local hold
lives, the card book checks the record against it; after a restart, or once the hold has
expired, the record is checked against what is kept here: the amounts the gateway answered
must be the record's (`rule_mismatch`), and a record naming an authorization the gateway
never gave is refused (`auth_unknown`). So a stolen terminal key cannot invent "approved
before the restart" sales.

An approval is kept (committed) before its answer is sent, so no terminal holds an approval
the gateway could forget. With it goes the hold it placed: the value held, the engine
operation, and the ledger hold id when the ledger holds it (or may: a stand-in approval whose
hold call went unanswered). A ledger hold may hold points only (a sale paid otherwise that
redeems points): its held value here is 0, its points are the answer's redeem_points
(`expect`), and it is kept and recovered by its ledger hold id all the same. A ledger hold
stays open here until it is known to have ended: voided at the ledger (`end_holds`, from the
void sweep) or named by its record (found when the gateway starts); a restarted gateway
recovers the others (gateway/hold_recovery.py).

Rows older than KEEP_S are dropped when the gateway starts: a terminal sends an online
record as soon as it is approved, and its journal resends it until it is answered, well
within that time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from gateway.store import GatewayStore
from protocol import txn

KEEP_S = 30 * 86_400


def keep(store: GatewayStore, auth_id: str, terminal: str, card: str,
         expect: dict[str, int], auth_mode: int, held_minor: int = 0,
         op: dict[str, Any] | None = None, ledger_hold_id: str | None = None,
         given_at: float | None = None, wait_ms: int | None = None) -> None:
    """`auth_mode`: 1 online, 3 stand-in (the gateway stood in for the ledger); `held_minor`,
    `op`: the local hold; `ledger_hold_id`: the ledger's hold, if it holds (or may hold) the
    value; `given_at`: when the hold was placed (now); `wait_ms`: the longest wait for the
    store (GatewayStore.transaction). StoreUnavailable if it could not be kept: then it
    must not be given. The op's `birthday` (a birthday-week offer's, from the gateway's
    memory: gateway/enrol.py) is never written: the store keeps no customer's data."""
    if op is not None and "birthday" in op:
        op = {key: value for key, value in op.items() if key != "birthday"}
    with store.transaction(wait_ms) as db:
        db.execute("INSERT OR REPLACE INTO authorizations (auth_id, terminal, card, expect,"
                   " auth_mode, given_at, held_minor, op, ledger_hold_id)"
                   " VALUES (?,?,?,?,?,?,?,?,?)",
                   (auth_id, terminal, card, json.dumps(expect, sort_keys=True), auth_mode,
                    time.time() if given_at is None else given_at, held_minor,
                    None if op is None else json.dumps(op, sort_keys=True), ledger_hold_id))


def intend(store: GatewayStore, auth_id: str, terminal: str, card: str, ledger_hold_id: str,
           wait_ms: int | None = None) -> None:
    """Before a hold is asked of the ledger: keep that it may be placed, as an approval not
    given yet (no amounts, nothing held here). Keeping the approval replaces it; a gateway
    stopped before that (killed, or its store failing) finds it at its next start and voids
    the ledger's hold (gateway/hold_recovery.py: nothing held here, so void). StoreUnavailable
    if it could not be kept: then the hold must not be asked."""
    keep(store, auth_id, terminal, card, {}, txn.AUTH_ONLINE, 0, None, ledger_hold_id,
         wait_ms=wait_ms)


def keep_given(store: GatewayStore,
               given: Iterable[tuple[str, str, str, dict[str, int]]]) -> None:
    """Keep many online approvals at once ((auth_id, terminal, card, expect)), placing no
    hold: what a gateway that approved them before a restart finds (the bench's loads)."""
    now = time.time()
    with store.transaction() as db:
        db.executemany("INSERT OR REPLACE INTO authorizations (auth_id, terminal, card, expect,"
                       " auth_mode, given_at, held_minor, op, ledger_hold_id)"
                       " VALUES (?,?,?,?,?,?,0,NULL,NULL)",
                       [(auth_id, terminal, card, json.dumps(expect, sort_keys=True),
                         txn.AUTH_ONLINE, now) for auth_id, terminal, card, expect in given])


def end_holds(store: GatewayStore, ledger_hold_ids: Iterable[str]) -> None:
    """These ledger holds have ended (voided, or named by their records): no restart needs
    to recover them."""
    now = time.time()
    with store.transaction() as db:
        db.executemany("UPDATE authorizations SET hold_ended_at = ? WHERE ledger_hold_id = ?"
                       " AND hold_ended_at IS NULL", [(now, hold_id) for hold_id in
                                                      ledger_hold_ids])


def open_holds(store: GatewayStore, placed_after_s: float) -> list[dict[str, Any]]:
    """Holds an earlier run may have left open, oldest first: every ledger hold not known to
    have ended, and local holds placed after `placed_after_s` (older ones have expired).
    Each: {"auth_id", "terminal", "card", "expect", "auth_mode", "given_at", "held_minor",
    "op", "ledger_hold_id"}."""
    rows = store.read(
        "SELECT auth_id, terminal, card, expect, auth_mode, given_at, held_minor, op,"
        " ledger_hold_id FROM authorizations WHERE hold_ended_at IS NULL AND"
        " (ledger_hold_id IS NOT NULL OR (held_minor > 0 AND given_at > ?))"
        " ORDER BY given_at, auth_id", (placed_after_s,))
    return [{"auth_id": auth_id, "terminal": terminal, "card": card,
             "expect": json.loads(expect), "auth_mode": auth_mode, "given_at": given_at,
             "held_minor": held_minor, "op": None if op is None else json.loads(op),
             "ledger_hold_id": hold_id}
            for auth_id, terminal, card, expect, auth_mode, given_at, held_minor, op, hold_id
            in rows]


def recall(store: GatewayStore, auth_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """{auth_id: {"terminal", "card", "expect", "auth_mode", "op", "used_by"}} of those kept
    ("op": the engine operation approved, None when none was kept, e.g. an issue; "used_by":
    the txn id of the accepted record that named it, None while none has)."""
    wanted = sorted(set(auth_ids))
    if not wanted:
        return {}
    rows = store.read(
        "SELECT auth_id, terminal, card, expect, auth_mode, op, used_by FROM authorizations"
        f" WHERE auth_id IN ({','.join('?' * len(wanted))})", tuple(wanted))
    return {auth_id: {"terminal": terminal, "card": card, "expect": json.loads(expect),
                      "auth_mode": auth_mode, "op": None if op is None else json.loads(op),
                      "used_by": used_by}
            for auth_id, terminal, card, expect, auth_mode, op, used_by in rows}


def prune(store: GatewayStore, now_s: float | None = None) -> None:
    cutoff = (time.time() if now_s is None else now_s) - KEEP_S
    with store.transaction() as db:
        db.execute("DELETE FROM authorizations WHERE given_at < ?", (cutoff,))
