"""Approvals kept in the gateway's store: recalled by auth id after a restart, pruned when
older than KEEP_S."""

from __future__ import annotations

import time
from pathlib import Path

from gateway import authorizations
from gateway.store import GatewayStore


def test_an_approval_is_recalled_after_a_restart_and_pruned_when_old(tmp_path: Path) -> None:
    store = GatewayStore(str(tmp_path / "gw.db"))
    expect = {"card_value_minor": 900, "bonus_minor": 0, "points": 0, "discount_minor": 0,
              "redeem_points": 0, "redeem_minor": 0, "version": 1}
    op = {"op": "purchase", "id": "T1-5", "amount_minor": 900, "pay": "card",
          "redeem_points": 0}
    authorizations.keep(store, "a3-17", "T1", "04a1", expect, 3, 900, op)
    authorizations.keep(store, "a1-2", "T1", "04a2", expect, 1)  # an issue: no operation kept
    store.close()
    reopened = GatewayStore(str(tmp_path / "gw.db"))
    assert authorizations.recall(reopened, ["a3-17", "a3-18", "a1-2"]) == {
        "a3-17": {"terminal": "T1", "card": "04a1", "expect": expect, "auth_mode": 3, "op": op,
                  "used_by": None},
        "a1-2": {"terminal": "T1", "card": "04a2", "expect": expect, "auth_mode": 1,
                 "op": None, "used_by": None}}
    authorizations.prune(reopened)  # young: kept
    assert "a3-17" in authorizations.recall(reopened, ["a3-17"])

    authorizations.prune(reopened, time.time() + authorizations.KEEP_S + 1)
    assert authorizations.recall(reopened, ["a3-17"]) == {}
    reopened.close()
