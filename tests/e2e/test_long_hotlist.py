"""A store with more blocked cards than one configuration carries (issue 13: 201 stopped the
gateway from starting), on the broker as a store deploys it (TLS only, logins, ACL): the
gateway starts, every terminal gets a signed configuration with the most recently blocked
cards that fit, and the gateway itself declines every blocked card online, those left out of
the configuration too."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from gateway.service import CONFIG_VERSION
from gateway.store import GatewayStore
from protocol import messages, sealed, topics, txn
from tests.support.stack import RawTerminal, running_stack, wait_until
from tests.support.store_broker import StoreBroker
from tools.simulator.terminal import SimulatedTerminal

LOST, GOOD = "04a7a7a7a7a7a7", "04b7b7b7b7b7b7"
CONFIG_TOPIC = "tilltap/v1/M1/T2/down/config"


def _blocked(number: int) -> str:
    return f"04{number:012x}"


def _configs(raw: RawTerminal) -> list[dict[str, Any]]:
    """The signed configurations `raw` received (retained, then each change), oldest first."""
    with raw._lock:
        payloads = [payload for topic, payload in raw.downlinks if topic == CONFIG_TOPIC]
    return [sealed.open_message(p, messages.TYPE_CONFIG, raw.key) for p in payloads]


def _serviced(sim: SimulatedTerminal) -> Any:
    """The terminal's settings once it has handled what reached it within 20 ms."""
    sim.service(20)
    return sim.terminal.settings


@pytest.mark.parametrize("blocked", [201, 1000])
def test_a_store_with_more_blocked_cards_than_a_configuration_carries_starts_and_declines_them(
    store_broker: StoreBroker, tmp_path: Path, blocked: int
) -> None:
    store = GatewayStore(str(tmp_path / "gateway.db"))  # blocked before the gateway starts
    for number in range(blocked):
        store.block(_blocked(number), "reported lost")
    store.close()
    with running_stack(store_broker, tmp_path, ["T1", "T2"]) as stack:
        assert len(stack.gateway.cards.hotlist) == blocked
        sim = SimulatedTerminal(stack.terminal_config("T1"), tmp_path, store_broker.host,
                                store_broker.port)
        terminal = sim.terminal
        raw = RawTerminal(store_broker, "T2", stack.keys["T2"])
        try:
            # The firmware takes the configuration: the newest blocks that fit, not the oldest.
            assert wait_until(lambda: _serviced(sim).version == 1)
            carried = set(terminal.settings.hotlist)
            assert 0 < len(carried) <= messages.HOTLIST_MAX
            assert _blocked(blocked - 1) in carried and _blocked(0) not in carried
            assert carried == {_blocked(n) for n in range(blocked - len(carried), blocked)}
            assert stack.gateway.fleet.hotlist_left_out == blocked - len(carried)
            assert wait_until(lambda: bool(_configs(raw)))
            assert set(_configs(raw)[-1]["hotlist"]) == carried

            for card in (LOST, GOOD):
                sim.tap(card)
                assert terminal.issue("gift", 5000)["approved"]
            assert sim.drain(time.monotonic() + 10)
            stack.gateway.block_card(LOST)  # the newest block goes out to every terminal
            assert wait_until(lambda: LOST in _serviced(sim).hotlist)
            assert terminal.settings.version == 2
            assert wait_until(lambda: LOST in _configs(raw)[-1]["hotlist"])
            sim.tap(LOST)
            assert terminal.purchase(100)["reason"] == "card_blocked"

            # Online, the gateway declines a blocked card whether the configuration carries
            # it or not, and sells the others.
            for request, card in enumerate((LOST, _blocked(0)), start=1):
                raw.publish(sealed.seal(raw.key, messages.TYPE_AUTH_REQUEST, {
                    "terminal": "T2", "request": request, "time": int(time.time()),
                    "merchant": "M1", "card": card, "kind": txn.KIND_PURCHASE,
                    "currency": "EUR", "amount_minor": 100, "card_value_minor": 100}),
                    leaf=topics.LEAF_AUTH)
            assert wait_until(lambda: set(raw.auth_answers()) >= {1, 2})
            assert [(raw.auth_answers()[n]["approved"], raw.auth_answers()[n].get("reason"))
                    for n in (1, 2)] == [(False, "card_blocked")] * 2
            raw.publish(raw.record(txn.KIND_PURCHASE, LOST, 100))  # ignoring the hotlist
            sim.tap(GOOD)
            assert terminal.purchase(700)["approved"]
            assert sim.drain(time.monotonic() + 10)
            assert wait_until(lambda: raw.acked_through() == 1)
            assert [ack["rejected"] for ack in raw.acks() if ack["rejected"]] == [
                [[1, "card_blocked"]]]
            stack.gateway.settle()
            assert stack.ledger_client.card(LOST)["value_minor"] == 5000
            assert stack.ledger_client.card(GOOD)["value_minor"] == 5000 - 700
        finally:
            raw.close()
            sim.close()


def test_a_card_this_store_served_stays_in_its_terminals_hotlist_behind_a_chains_long_list(
    store_broker: StoreBroker, tmp_path: Path
) -> None:
    """A chain blocks 1,000 cards after one this store sold: the store's terminals still get
    that one (it is the one they could sell offline), and decline it offline."""
    with running_stack(store_broker, tmp_path, ["T1"]) as stack:
        sim = SimulatedTerminal(stack.terminal_config("T1"), tmp_path, store_broker.host,
                                store_broker.port)
        try:
            sim.tap(LOST)
            assert sim.terminal.issue("gift", 5000)["approved"]  # the till knows the card
            assert sim.drain(time.monotonic() + 10)
            stack.gateway.block_card(LOST)
            stack.gateway.stop()
            store = GatewayStore(str(tmp_path / "gateway.db"))
            for number in range(1000):  # blocked later, elsewhere in the chain
                store.block(_blocked(number), "reported lost", 3)
            store.add_counters({CONFIG_VERSION: 1})  # as Gateway.block_card does
            store.close()
            stack.gateway = stack.new_gateway()
            stack.gateway.start()
            assert wait_until(lambda: _serviced(sim).version == 3)
            assert LOST in sim.terminal.settings.hotlist
            assert _blocked(0) not in sim.terminal.settings.hotlist  # the oldest left out
            stack.gateway.stop()  # the store's network is down: the till is on its own
            sim.tap(LOST)
            assert sim.terminal.purchase(100)["reason"] == "card_blocked"
            stack.gateway = stack.new_gateway()  # back: the stack closes a running one
            stack.gateway.start()
        finally:
            sim.close()
