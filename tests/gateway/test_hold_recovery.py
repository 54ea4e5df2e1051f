"""A restarted gateway recovers every hold its earlier run left: held again until its original
time if its record may still come, posted by a record that named it, voided at the ledger
otherwise, through the void queue, and marked ended in the store once the ledger took it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from gateway import authorizations, hold_recovery
from gateway.cards import CardBook
from gateway.ledger_holds import LedgerHolds
from gateway.local_holds import LocalHolds
from gateway.store import STATUS_ACCEPTED, STATUS_REJECTED, GatewayStore, StoredRecord
from ledger.errors import LedgerUnavailable
from protocol import txn
from protocol.programs import validate_programs

TTL_S = 60.0
CARD = "04a1"
EXPECT = {"card_value_minor": 500, "bonus_minor": 0, "points": 0, "discount_minor": 0,
          "redeem_points": 0, "redeem_minor": 0, "version": 1}


def _keep(store: GatewayStore, auth_id: str, seq: int, given_at: float,
          auth_mode: int = txn.AUTH_ONLINE) -> None:
    op = {"op": "purchase", "id": f"T1-{seq}", "amount_minor": 500, "pay": "card",
          "redeem_points": 0, "discount_minor": 0}
    authorizations.keep(store, auth_id, "T1", CARD, EXPECT, auth_mode, 500, op,
                        f"gw1-{auth_id}", given_at)


def _record(store: GatewayStore, seq: int, auth_id: str, status: str,
            posts: str | None) -> None:
    fields: dict[str, Any] = {"terminal": "T1", "seq": seq, "auth_id": auth_id, "card": CARD}
    if posts is not None:
        fields["ledger_hold_id"] = posts
    store.commit([StoredRecord("T1", seq, f"T1-{seq}", bytes(32), b"r", fields, status,
                               None if status == STATUS_ACCEPTED else "rule_mismatch")],
                 {}, {}, {})


class FlakyLedger:
    def __init__(self) -> None:
        self.up = False
        self.voided: list[str] = []

    def place_hold(self, *args: Any) -> dict[str, Any]:
        raise AssertionError("recovery places no hold")

    def void_hold(self, hold_id: str) -> dict[str, Any]:
        if not self.up:
            raise LedgerUnavailable("down")
        self.voided.append(hold_id)
        return {"hold_id": hold_id, "status": "voided"}


def test_every_hold_of_the_last_run_is_held_again_posted_or_voided(tmp_path: Path) -> None:
    now = time.time()
    store = GatewayStore(str(tmp_path / "gw.db"))
    _keep(store, "a1-1", 1, now - 10)  # its record came and named the hold: posted
    _record(store, 1, "a1-1", STATUS_ACCEPTED, "gw1-a1-1")
    _keep(store, "a1-2", 2, now - 10)  # its record was refused: void
    _record(store, 2, "a1-2", STATUS_REJECTED, None)
    _keep(store, "a1-3", 3, now - 10)  # no record yet, time left: held again
    _keep(store, "a1-4", 4, now - TTL_S - 1)  # no record, time up: void
    _keep(store, "a1-5", 5, now - 5, txn.AUTH_STAND_IN)  # stand-in: held; maybe-hold voided
    _keep(store, "a1-6", 6, now - 1)  # its record came at another seq than it named
    _record(store, 9, "a1-6", STATUS_ACCEPTED, "gw1-a1-6")
    store.close()

    store = GatewayStore(str(tmp_path / "gw.db"))
    holds = LocalHolds(TTL_S, epoch=2, ledger=True)
    recovery = hold_recovery.recover(store, holds, now, TTL_S)
    assert recovery.ended == ["gw1-a1-1", "gw1-a1-6"]
    assert recovery.void == ["gw1-a1-4", "gw1-a1-2", "gw1-a1-5"]
    assert [h["auth_id"] for h in recovery.restored] == ["a1-3", "a1-5"]  # oldest first
    held = holds.get("a1-3")
    assert held is not None and held.ledger_hold_id == "gw1-a1-3"
    assert (held.card, held.value_minor, held.expect) == (CARD, 500, EXPECT)
    assert abs(held.expires_s - (now - 10 + TTL_S)) < 1e-3  # its original time, not a new one
    assert holds.for_sale("T1-3") == "a1-3"
    stand_in = holds.get("a1-5")
    assert stand_in is not None and stand_in.stand_in and stand_in.ledger_hold_id is None
    assert holds.held_minor(CARD) == 1000

    # Time passes: the restored hold lapses and goes to the void queue like any other.
    holds.expire(now + TTL_S)
    assert holds.take_lapsed() == ["gw1-a1-3"]
    store.close()


def test_voids_wait_for_the_ledger_and_a_voided_hold_is_not_recovered_again(
        tmp_path: Path) -> None:
    now = time.time()
    store = GatewayStore(str(tmp_path / "gw.db"))
    _keep(store, "a1-1", 1, now - TTL_S - 1)
    cards = CardBook(validate_programs({"programs": {"gift": {"version": 1, "currency": "EUR",
                                                              "gift": {}}}}),
                     ledger=True, hold_ttl_s=TTL_S,
                     auth_epoch=2)
    ledger = FlakyLedger()
    holds = LedgerHolds("gw1", cards, ledger,
                        on_voided=lambda ids: authorizations.end_holds(store, ids))
    recovery = hold_recovery.recover(store, cards.holds, now, TTL_S)
    holds.queue_voids(recovery.void)  # queued only: start-up does not wait for the ledger
    assert holds.sweep(now) == 0  # the ledger is down: it waits in the queue
    assert holds.pending_voids() == ["gw1-a1-1"]
    assert authorizations.open_holds(store, now - TTL_S)[0]["auth_id"] == "a1-1"
    ledger.up = True
    assert holds.sweep(now + 5) == 1
    assert ledger.voided == ["gw1-a1-1"] and holds.pending_voids() == []
    assert authorizations.open_holds(store, now - TTL_S) == []
    assert hold_recovery.recover(store, LocalHolds(TTL_S), now, TTL_S).void == []
    store.close()


def test_a_hold_intended_but_never_given_is_voided_at_the_next_start(tmp_path: Path) -> None:
    """Killed (or its store failing) after the ledger was asked and before the approval was
    kept: the intent is all the store has, and the ledger's hold is voided, not left to its
    ttl; an intent whose approval was then kept is the approval."""
    now = time.time()
    store = GatewayStore(str(tmp_path / "gw.db"))
    authorizations.intend(store, "a1-7", "T1", CARD, "gw1-a1-7")
    authorizations.intend(store, "a1-8", "T1", CARD, "gw1-a1-8")
    _keep(store, "a1-8", 8, now - 1)  # given: the approval replaces its intent
    store.close()
    store = GatewayStore(str(tmp_path / "gw.db"))
    recovery = hold_recovery.recover(store, LocalHolds(TTL_S, epoch=2, ledger=True), now,
                                     TTL_S)
    assert recovery.void == ["gw1-a1-7"]
    assert [h["auth_id"] for h in recovery.restored] == ["a1-8"]
    store.close()
