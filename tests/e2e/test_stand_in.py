"""Two-phase money end to end: an online purchase holds its card value at the ledger and the
settlement posts that hold; value topped up today is spent at once; with the ledger stopped
the gateway stands in within its limits, says so in the transaction, and the ledger records
the sale as stand-in once it is back on the same books."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from ledger.server import serve
from protocol import txn
from tests.support.stack import running_stack
from tests.support.store_broker import StoreBroker
from tools.simulator.terminal import SimulatedTerminal

GIFT, PREPAID = "04a0a1a2a3a4a5", "04b0b1b2b3b4b5"


def test_holds_are_posted_by_settlement_and_the_gateway_stands_in_for_a_stopped_ledger(
    store_broker: StoreBroker, tmp_path: Path
) -> None:
    with running_stack(store_broker, tmp_path, ["T1"]) as stack:
        config = stack.terminal_config("T1")
        sim = SimulatedTerminal(config, tmp_path, store_broker.host, store_broker.port)
        terminal = sim.terminal
        ledger = stack.ledger_client
        try:
            sim.service(0)

            def sell(card: str, amount: int) -> dict:
                sim.tap(card)
                outcome: dict = terminal.purchase(amount)
                return outcome

            sim.tap(GIFT)
            assert terminal.issue("gift", 20_000)["approved"]
            sim.tap(PREPAID)
            assert terminal.issue("prepaid", 1000)["approved"]
            assert sim.drain(time.monotonic() + 10)
            assert stack.gateway.settle().posted == 2  # the ledger now knows both cards

            # Online: the ledger holds the sale's card value until settlement posts it.
            sale = sell(GIFT, 1500)
            assert sale["approved"] and sale["txn"]["auth_mode"] == txn.AUTH_ONLINE
            hold_id = f"gw1-{sale['txn']['auth_id']}"
            hold = ledger.hold(hold_id)
            assert (hold["status"], hold["amount_minor"], hold["card"]) == ("open", 1500, GIFT)
            card = ledger.card(GIFT)
            assert (card["value_minor"], card["held_minor"]) == (20_000, 1500)
            assert sim.drain(time.monotonic() + 10)
            stack.gateway.settle()
            posted = ledger.hold(hold_id)
            assert posted["status"] == "posted" and posted["posted_minor"] == 1500
            assert posted["posted_txn_id"] == f"T1-{sale['txn']['seq']}"
            card = ledger.card(GIFT)
            assert (card["value_minor"], card["held_minor"]) == (18_500, 0)

            # Topped up today, spent at once: the ledger is told first, then holds it all.
            sim.tap(PREPAID)
            assert terminal.topup(3000)["approved"]  # + 150 bonus, not settled yet
            assert sim.drain(time.monotonic() + 10)
            spend = sell(PREPAID, 4000)
            assert spend["approved"] and spend["txn"]["auth_mode"] == txn.AUTH_ONLINE
            assert ledger.hold(f"gw1-{spend['txn']['auth_id']}")["amount_minor"] == 4000
            assert ledger.card(PREPAID)["available_minor"] == 1000 + 3150 - 4000

            # The ledger stops: the gateway stands in, within its limits, and says so.
            port = stack.ledger.port
            stack.ledger.stop()
            stood_in = sell(GIFT, 2000)
            assert stood_in["approved"] and stood_in["txn"]["auth_mode"] == txn.AUTH_STAND_IN
            assert sell(GIFT, 6000)["reason"] == "stand_in_limit"  # over 5000 at once
            assert sell(GIFT, 4000)["approved"]  # 6000 stood in for this card
            assert sell(GIFT, 4500)["reason"] == "stand_in_limit"  # 10500 over 10000
            assert sim.drain(time.monotonic() + 10)

            # The ledger comes back on the same books; the stand-in sales settle as such.
            stack.ledger = serve(f"sqlite:///{tmp_path / 'ledger.db'}", port=port)
            stack.gateway.settle()
            card = ledger.card(GIFT)
            assert (card["value_minor"], card["held_minor"]) == (18_500 - 6000, 0)
            assert ledger.card(PREPAID)["value_minor"] == 1000 + 3150 - 4000
            with sqlite3.connect(tmp_path / "ledger.db") as books:
                auth = dict(books.execute("SELECT txn_id, auth FROM transactions"
                                          " WHERE kind = 'purchase'").fetchall())
            assert auth == {f"T1-{sale['txn']['seq']}": "online",
                            f"T1-{spend['txn']['seq']}": "online",
                            f"T1-{stood_in['txn']['seq']}": "stand_in",
                            f"T1-{stood_in['txn']['seq'] + 1}": "stand_in"}
            assert ledger.hold_totals()["posted"] == 2
            assert ledger.trial_balance() and not any(ledger.trial_balance().values())
        finally:
            sim.close()
