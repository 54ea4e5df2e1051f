"""`--ledger-hold-url`: a gateway sends its holds to one ledger process and its batches to
another, both on the same books (docs/ledger.md "Concurrency"): an online sale is held at
the hold ledger, settled through the batch ledger, which posts that hold; with the hold
ledger stopped the gateway stands in while its batches still post."""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path

from gateway.service import Gateway
from ledger.client import LedgerClient
from ledger.server import LedgerServer, serve
from protocol import txn
from tests.support.stack import Stack
from tests.support.store_broker import StoreBroker, broker_ca, gateway_login
from tools.demo import DEMO_PROGRAMS
from tools.simulator.terminal import SimulatedTerminal

GIFT = "04a0a1a2a3a4a5"
DRAIN_S = 10.0
REQUEST_COUNT = re.compile(r"^tilltap_ledger_http_requests_total\{([^}]*)\} ([0-9.e+]+)$")
LABEL = re.compile(r'(\w+)="([^"]*)"')


def requests_served(ledger: LedgerServer) -> dict[tuple[str, str], int]:
    """What one ledger process answered, by (method, route), read from its GET /metrics."""
    with urllib.request.urlopen(f"{ledger.url}/metrics") as answer:
        text = answer.read().decode()
    served: dict[tuple[str, str], int] = {}
    for line in text.splitlines():
        found = REQUEST_COUNT.match(line)
        if found is None:
            continue
        labels = dict(LABEL.findall(found[1]))
        if labels["status"].startswith("2"):
            key = (labels["method"], labels["route"])
            served[key] = served.get(key, 0) + int(float(found[2]))
    return served


class SplitStack(Stack):
    """The stack's store with a second ledger process, on the same books, for its holds."""

    def new_gateway(self) -> Gateway:
        self.hold_ledger = serve(f"sqlite:///{self.workdir / 'ledger.db'}")
        return Gateway("gw1", self.broker.host, self.broker.port,
                       str(self.workdir / "gateway.db"), self.registry, DEMO_PROGRAMS,
                       self.ledger.url, broker_login=gateway_login(self.broker),
                       broker_ca=broker_ca(self.broker), ledger_hold_url=self.hold_ledger.url)


def test_holds_go_to_the_hold_ledger_and_batches_to_the_other_on_the_same_books(
    store_broker: StoreBroker, tmp_path: Path
) -> None:
    stack = SplitStack(store_broker, tmp_path, ["T1"])
    batches, holds = stack.ledger, stack.hold_ledger
    holds_running = True
    stack.gateway.start()
    try:
        sim = SimulatedTerminal(stack.terminal_config("T1"), tmp_path, store_broker.host,
                                store_broker.port)
        terminal = sim.terminal
        sim.service(0)
        sim.tap(GIFT)
        assert terminal.issue("gift", 20_000)["approved"]
        assert sim.drain(time.monotonic() + DRAIN_S)
        assert stack.gateway.settle().posted == 1

        sim.tap(GIFT)
        sale = terminal.purchase(1500)
        assert sale["approved"] and sale["txn"]["auth_mode"] == txn.AUTH_ONLINE
        hold_id = f"gw1-{sale['txn']['auth_id']}"
        # Placed through the hold ledger, seen by the batch ledger: one set of books.
        assert LedgerClient(batches.url).hold(hold_id)["status"] == "open"
        assert sim.drain(time.monotonic() + DRAIN_S)
        stack.gateway.settle()
        assert LedgerClient(holds.url).hold(hold_id)["status"] == "posted"

        at_holds, at_batches = requests_served(holds), requests_served(batches)
        assert at_holds.get(("POST", "/v1/holds")) == 1
        assert ("POST", "/v1/batches") not in at_holds
        assert at_batches.get(("POST", "/v1/batches"), 0) >= 2
        assert ("POST", "/v1/holds") not in at_batches

        # The hold ledger stops: authorizations stand in, settlement still reaches the books.
        holds.stop()
        holds_running = False
        sim.tap(GIFT)
        stood_in = terminal.purchase(1000)
        assert stood_in["approved"] and stood_in["txn"]["auth_mode"] == txn.AUTH_STAND_IN
        assert sim.drain(time.monotonic() + DRAIN_S)
        stack.gateway.settle()
        card = LedgerClient(batches.url).card(GIFT)
        assert (card["value_minor"], card["held_minor"]) == (20_000 - 1500 - 1000, 0)
    finally:
        stack.gateway.stop()
        batches.stop()
        if holds_running:
            holds.stop()
