"""The hotlist: a blocked card is declined by the gateway, and by terminals even offline,
because the gateway pushes the hotlist in each terminal's signed, retained configuration."""

from __future__ import annotations

import time
from pathlib import Path

from protocol import txn
from tests.support.stack import RawTerminal, running_stack, wait_until
from tests.support.store_broker import StoreBroker
from tools.simulator.terminal import SimulatedTerminal

LIMITS = {"txn_minor_max": 5000, "card_offline_minor_max": 5000,
          "terminal_offline_minor_max": 5000, "offline_s_max": 600, "offline_txn_max": 5}
LOST, GOOD = "04a1a2a3a4a5a6", "04b1b2b3b4b5b6"


def test_a_blocked_card_is_declined_online_offline_and_at_the_gateway(
    store_broker: StoreBroker, tmp_path: Path
) -> None:
    with running_stack(store_broker, tmp_path, ["T1", "T2"], LIMITS) as stack:
        config = stack.terminal_config("T1")
        sim = SimulatedTerminal(config, tmp_path, store_broker.host, store_broker.port)
        terminal = sim.terminal
        terminal.auth_timeout_ms = 300
        try:
            assert wait_until(lambda: (sim.service(20), terminal.settings.version)[1] == 1)
            for card in (LOST, GOOD):
                sim.tap(card)
                assert terminal.issue("gift", 5000)["approved"]
            assert sim.drain(time.monotonic() + 10)

            stack.gateway.block_card(LOST)
            assert wait_until(lambda: (sim.service(20), terminal.settings.hotlist)[1] == (LOST,))
            assert terminal.settings.version == 2
            sim.tap(LOST)
            assert terminal.purchase(100)["reason"] == "card_blocked"

            # A terminal that ignores the hotlist is still refused by the gateway.
            raw = RawTerminal(store_broker, "T2", stack.keys["T2"])
            raw.publish(raw.record(txn.KIND_PURCHASE, LOST, 100))
            assert wait_until(lambda: stack.gateway.stats.rejections().get("card_blocked") == 1)
            # Offline: taken if sold under a configuration that did not carry the block yet,
            # refused once it names one that did, and a terminal never goes back to an older
            # one (or to naming none).
            offline = {"auth_mode": txn.AUTH_OFFLINE, "program": "gift", "version": 1}
            raw.publish(raw.record(txn.KIND_PURCHASE, LOST, 100, config_version=1, **offline))
            raw.publish(raw.record(txn.KIND_PURCHASE, LOST, 100, config_version=2, **offline))
            raw.publish(raw.record(txn.KIND_PURCHASE, GOOD, 100, **offline))
            assert wait_until(lambda: raw.acked_through() == 4)
            refused = {seq: reason for ack in raw.acks() for seq, reason in ack["rejected"]}
            assert refused == {1: "card_blocked", 3: "card_blocked", 4: "config_rollback"}
            raw.close()

            stack.gateway.stop()
            sim.tap(LOST)
            assert terminal.purchase(100)["reason"] == "card_blocked"  # offline too
            sim.tap(GOOD)
            assert terminal.purchase(100)["txn"]["auth_mode"] == txn.AUTH_OFFLINE

            # The hotlist survives a gateway restart, at the same configuration version.
            stack.gateway = stack.new_gateway()
            stack.gateway.start()
            assert stack.gateway.fleet.version == 2 and stack.gateway.fleet.hotlist == [LOST]
            assert sim.drain(time.monotonic() + 20)
        finally:
            sim.close()


def test_a_card_blocked_at_the_ledger_reaches_the_store_and_its_terminals(
    store_broker: StoreBroker, tmp_path: Path
) -> None:
    """Blocked in the back office (at the ledger, for every store): the store's gateway
    reads the ledger's feed of blocks, declines the card and pushes it to its terminals'
    signed configuration, so a terminal declines it offline too; unblocked the same way."""
    with running_stack(store_broker, tmp_path, ["T1"], LIMITS) as stack:
        config = stack.terminal_config("T1")
        sim = SimulatedTerminal(config, tmp_path, store_broker.host, store_broker.port)
        terminal = sim.terminal
        terminal.auth_timeout_ms = 300
        try:
            assert wait_until(lambda: (sim.service(20), terminal.settings.version)[1] == 1)
            sim.tap(LOST)
            assert terminal.issue("gift", 5000)["approved"]
            assert sim.drain(time.monotonic() + 10)
            stack.gateway.settle()  # the ledger knows the card once its issue settled

            stack.ledger_client.block_card(LOST, "reported stolen at another store")
            gateway = stack.gateway
            # Its own poll (every BLOCK_POLL_INTERVAL_S) may come first: either applies it.
            assert wait_until(lambda: (gateway.follow_blocks_once(),
                                       LOST in gateway.fleet.hotlist)[1])
            assert gateway.follow_blocks_once() == 0  # read once: the cursor is kept
            assert wait_until(lambda: (sim.service(20), terminal.settings.hotlist)[1] == (LOST,))
            sim.tap(LOST)
            assert terminal.purchase(100)["reason"] == "card_blocked"

            stack.ledger_client.unblock_card(LOST, "found")
            assert wait_until(lambda: (gateway.follow_blocks_once(),
                                       LOST not in gateway.fleet.hotlist)[1])
            assert wait_until(lambda: (sim.service(20), terminal.settings.hotlist)[1] == ())
            sim.tap(LOST)
            assert terminal.purchase(100)["approved"]
            assert sim.drain(time.monotonic() + 10)
        finally:
            sim.close()
