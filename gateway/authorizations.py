"""Every approval the gateway gave, kept durably with the amounts its record must carry.

An online record names its authorization (`auth_id`). While the authorization's local hold
lives, the card book checks the record against it; after a restart, or once the hold has
expired, the record is checked against what is kept here: the amounts the gateway answered
must be the record's (`rule_mismatch`), and a record naming an authorization the gateway
never gave is refused (`auth_unknown`). So a stolen terminal key cannot invent "approved
before the restart" sales.

An approval is kept (committed) before its answer is sent, so no terminal holds an approval
the gateway could forget. Rows older than KEEP_S are dropped when the gateway starts: a
terminal sends an online record as soon as it is approved, and its journal resends it until
it is answered, well within that time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from gateway.store import GatewayStore

KEEP_S = 30 * 86_400


def keep(store: GatewayStore, auth_id: str, terminal: str, card: str,
         expect: dict[str, int], auth_mode: int) -> None:
    """`auth_mode`: 1 online, 3 stand-in (the gateway stood in for the ledger)."""
    with store.transaction() as db:
        db.execute("INSERT OR REPLACE INTO authorizations (auth_id, terminal, card, expect,"
                   " auth_mode, given_at) VALUES (?,?,?,?,?,?)",
                   (auth_id, terminal, card, json.dumps(expect, sort_keys=True), auth_mode,
                    time.time()))


def recall(store: GatewayStore, auth_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """{auth_id: {"terminal", "card", "expect", "auth_mode"}} of those kept."""
    wanted = sorted(set(auth_ids))
    if not wanted:
        return {}
    rows = store.read(
        "SELECT auth_id, terminal, card, expect, auth_mode FROM authorizations"
        f" WHERE auth_id IN ({','.join('?' * len(wanted))})", tuple(wanted))
    return {auth_id: {"terminal": terminal, "card": card, "expect": json.loads(expect),
                      "auth_mode": auth_mode}
            for auth_id, terminal, card, expect, auth_mode in rows}


def prune(store: GatewayStore, now_s: float | None = None) -> None:
    cutoff = (time.time() if now_s is None else now_s) - KEEP_S
    with store.transaction() as db:
        db.execute("DELETE FROM authorizations WHERE given_at < ?", (cutoff,))
