"""A chain in a box: two stores, each its own broker and gateway, settling with one ledger.

Each store is deployed as a store is (tests/support/store_broker.py: TLS, logins, ACL);
its gateway runs in-process with its own id and SQLite store; the one ledger serves both
over HTTP from the DSN given (a real PostgreSQL database, or a SQLite file for the
single-store ledger). Counter terminals are the firmware's own under CPython
(tools/simulator/terminal.py), one per store, tapping the same emulated cards:

    with chain(dsn, (broker_a, broker_b), tmp_path) as shops:
        a, b = shops.stores
        a.till.tap(CARD); a.till.terminal.issue("gift", 5_000)
        b.till.tap(CARD); b.till.terminal.purchase(1_000)

Records flow to the ledger within POST_WITHIN_S of their commit (issue 14 item 3); each
gateway applies the other's from the ledger's card feed, and its blocks, every FEED_POLL_S
(item 4).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from gateway.card_auth import CardKeys
from gateway.enrol import GREETING_REFRESH_S
from gateway.registry import TerminalRegistry
from gateway.service import Gateway
from ledger.client import LedgerClient
from ledger.errors import NotFound
from ledger.personal_crypto import CustomerKey
from ledger.server import LedgerServer, serve
from tests.support.store_broker import StoreBroker, broker_ca, gateway_login, terminal_login
from tools.demo import DEMO_PROGRAMS
from tools.simulator.terminal import SimulatedTerminal

POST_WITHIN_S = 0.2  # records reach the ledger this soon after a gateway's commit
FEED_POLL_S = 0.2  # each gateway reads the ledger's card feed this often
DRAIN_S = 10.0  # a till's journal sent and acked within this


class Store:
    """One store: its broker, its gateway (id `gw<name>`), one till `<name>1`."""

    def __init__(self, name: str, broker: StoreBroker, ledger_url: str,
                 workdir: Path, limits: dict[str, int] | None = None,
                 card_keys: CardKeys | None = None) -> None:
        self.name = name
        self.limits = limits  # the tills' offline limits (None: no offline sales)
        self.card_keys = card_keys  # the gateway checks every tap's SUN (None: cards by UID)
        self.merchant = f"M{name}"
        self.broker = broker
        self.ledger_url = ledger_url
        self.workdir = workdir
        self.till_id = f"{name}1"
        self.greeting_refresh_s = GREETING_REFRESH_S  # a test may shorten it, then restart
        self.key = os.urandom(32)
        self.registry = TerminalRegistry()
        self.registry.add(self.till_id, self.merchant, self.key)
        broker.terminal_logins(self.merchant, [self.till_id])
        self.gateway = self.new_gateway()
        self.gateway.start()
        self.till = SimulatedTerminal(self.till_config(), workdir, broker.host, broker.port,
                                      sun=card_keys is not None)

    @property
    def gateway_id(self) -> str:
        return f"gw{self.name}"

    def new_gateway(self) -> Gateway:
        """This store's gateway on its own store file (a restart is stop() and a new one)."""
        return Gateway(self.gateway_id, self.broker.host, self.broker.port,
                       str(self.workdir / "gateway.db"), self.registry, DEMO_PROGRAMS,
                       self.ledger_url, post_within_s=POST_WITHIN_S,
                       feed_poll_s=FEED_POLL_S, block_poll_s=FEED_POLL_S,
                       limits=self.limits, card_keys=self.card_keys,
                       broker_login=gateway_login(self.broker),
                       broker_ca=broker_ca(self.broker),
                       greeting_refresh_s=self.greeting_refresh_s)

    def till_config(self) -> dict[str, Any]:
        """What the till is provisioned with (firmware/app.py's config)."""
        config: dict[str, Any] = {"terminal": self.till_id, "merchant": self.merchant,
                                  "key": self.key, "currency": "EUR",
                                  "programs": DEMO_PROGRAMS}
        login = terminal_login(self.broker, self.merchant, self.till_id)
        if login is not None:
            config.update(broker_user=login[0], broker_password=login[1],
                          broker_ca=broker_ca(self.broker))
        return config

    def serve(self, card: Any) -> None:
        """The cashier taps `card`: the till reads it and is ready for an operation (a UID,
        or with card keys an emulated NTAG 424 DNA, read through the till's PN532)."""
        self.till.service(0)
        self.till.tap(card)

    def entry(self, card: str) -> dict[str, Any]:
        """The card as this store's gateway holds it (a copy; empty when not served)."""
        with self.gateway.cards.lock:
            entry = self.gateway.cards.cards.get(card) or {}
            return {key: value for key, value in entry.items() if key != "state"} | {
                "state": dict(entry.get("state") or {})}

    def refuses_blocked(self, card: str) -> bool:
        """A purchase of `card` at this store's till is declined card_blocked."""
        self.serve(card)
        outcome = self.till.terminal.purchase(100, pay_from_card=False)
        return not outcome["approved"] and outcome["reason"] == "card_blocked"

    def sent(self) -> None:
        """Wait until everything the till journaled is acked by its gateway."""
        assert self.till.drain(time.monotonic() + DRAIN_S), f"store {self.name}: not drained"

    def close(self) -> None:
        self.till.close()
        self.gateway.stop()


class Chain:
    def __init__(self, ledger: LedgerServer, stores: list[Store]) -> None:
        self.ledger = ledger
        self.client = LedgerClient(ledger.url)
        self.stores = stores

    def card(self, card: str) -> dict[str, Any]:
        """The card at the ledger: value, points, block ({} while the ledger does not know
        it)."""
        try:
            answer: dict[str, Any] = self.client.card(card)
        except NotFound:
            return {}
        return answer


@contextmanager
def chain(dsn: str, brokers: tuple[StoreBroker, StoreBroker],
          workdir: Path, limits: dict[str, int] | None = None,
          card_keys: CardKeys | None = None,
          customer_key: CustomerKey | None = None,
          programs: dict[str, dict[str, Any]] | None = None) -> Iterator[Chain]:
    """Two stores, A and B, on one ledger serving `dsn`; `limits`: the tills' offline
    limits (none by default: a till that gets no answer declines); `card_keys`: the
    chain's card masters, every tap proved by its SUN (none: plain cards by UID);
    `customer_key`: the ledger's, for customers (none: it keeps none); `programs`: the
    ledger's (`ledger serve --programs`: it keeps the cards' engine states; none: it
    keeps none)."""
    with ExitStack() as stack:
        ledger = serve(dsn, customer_key=customer_key, programs=programs)
        # The chain's ledger when it ends: a test may stop it and serve again (same port).
        stack.callback(lambda: shops.ledger.stop())
        stores = []
        for name, broker in zip("AB", brokers, strict=True):
            folder = workdir / name
            folder.mkdir()
            store = Store(name, broker, ledger.url, folder, limits, card_keys)
            stack.callback(store.close)
            stores.append(store)
        shops = Chain(ledger, stores)
        yield shops
