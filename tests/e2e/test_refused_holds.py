"""A refused record ends its hold at once, at the gateway and at the ledger, also when the
gateway restarted between the authorization and the record; a record that arrives after a
restart within its hold's time posts its ledger hold (docs/protocol.md 5.3).

The terminal is the firmware's own (under CPython): it asks for the authorization as at the
counter, and the record it journals is made to differ from the answer (a discount the gift
program never gives: rule_mismatch; a time an hour ahead: time_invalid)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway import store_reports
from protocol import txn
from tests.support.stack import Stack, running_stack, wait_until
from tests.support.store_broker import StoreBroker
from tools.simulator.terminal import SimulatedTerminal

GIFT = "04c0c1c2c3c4c5"


def _authorize(sim: SimulatedTerminal, amount: int) -> dict[str, Any]:
    request = {"card": GIFT, "kind": txn.KIND_PURCHASE, "currency": "EUR",
               "amount_minor": amount, "card_value_minor": amount,
               "seq": sim.journal.last_seq + 1}
    response = sim.uplink.authorize(request, 3000)
    assert response is not None and response["approved"], response
    return response


def _discounted(fields: dict[str, Any]) -> None:
    fields["discount_minor"] = 1  # not what the gateway answered: rule_mismatch
    fields["card_value_minor"] -= 1


def _from_the_future(fields: dict[str, Any]) -> None:
    fields["time"] += 3600  # a clock an hour fast: time_invalid


def _journal(sim: SimulatedTerminal, amount: int, response: dict[str, Any],
             wrong: Callable[[dict[str, Any]], None] | None = None) -> int:
    fields = sim.terminal._build(txn.KIND_PURCHASE, GIFT, amount, amount, response, None)
    if wrong is not None:
        wrong(fields)
    sim.terminal._commit(fields)
    assert sim.drain(time.monotonic() + 10)
    seq: int = fields["seq"]
    return seq


def _restart(stack: Stack) -> None:
    stack.gateway.stop()
    stack.gateway = stack.new_gateway()
    stack.gateway.start()


def test_holds_end_when_their_records_are_refused_before_and_after_a_restart(
    store_broker: StoreBroker, tmp_path: Path
) -> None:
    with running_stack(store_broker, tmp_path, ["T1"]) as stack:
        config = stack.terminal_config("T1")
        sim = SimulatedTerminal(config, tmp_path, store_broker.host, store_broker.port)
        ledger = stack.ledger_client
        try:
            sim.service(0)
            sim.tap(GIFT)
            assert sim.terminal.issue("gift", 10_000)["approved"]
            assert sim.drain(time.monotonic() + 10)
            stack.gateway.settle()  # the ledger knows the card: purchases are held there

            def hold_status(response: dict[str, Any]) -> str:
                status: str = ledger.hold(f"gw1-{response['auth_id']}")["status"]
                return status

            # Refused in the same run: the local hold goes with the record's ingest, the
            # ledger hold right after, not when it would have lapsed.
            first = _authorize(sim, 1000)
            assert hold_status(first) == "open"
            seq = _journal(sim, 1000, first, _discounted)
            assert sim.uplink.refused_log[-1]["seq"] == seq
            assert sim.uplink.refused_log[-1]["reason"] == "rule_mismatch"
            assert first["auth_id"] not in stack.gateway.cards.holds
            assert wait_until(lambda: hold_status(first) == "voided")

            # Authorized, then the gateway restarts (its local holds are gone), then the
            # record comes and is refused: its ledger hold is voided by id.
            second = _authorize(sim, 2000)
            _restart(stack)
            _journal(sim, 2000, second, _from_the_future)
            assert wait_until(lambda: hold_status(second) == "voided")

            # The same, but the record is right: the restarted gateway held it again
            # (gateway/hold_recovery.py), so the record names its hold and settlement posts it.
            third = _authorize(sim, 3000)
            _restart(stack)
            _journal(sim, 3000, third)
            stack.gateway.settle()
            assert hold_status(third) == "posted"
            card = ledger.card(GIFT)
            assert (card["value_minor"], card["held_minor"]) == (7_000, 0)
            assert ledger.hold_totals().get("open", 0) == 0
            refused = {(r["seq"], r["reason"]) for r in store_reports.refusals(stack.gateway.store)}
            assert refused == {(2, "rule_mismatch"), (3, "time_invalid")}
            assert sim.journal.depth == 0 and sim.uplink.refused == 2
        finally:
            sim.close()
