"""Honest terminals trading through the campaign, as in the demo's business day.

Each runs the firmware's own modules (tools/simulator, SUN mode: every tap is read through
the firmware's PN532 driver from an emulated NTAG 424 DNA personalized by the store) with its
provisioned key and broker login, on a thread of its own, a customer every CUSTOMER_PAUSE_S,
until the campaign ends. What they approve goes into the demo's `Expected`, the first leg of
the reconciliation. What each customer does is the demo's counter (`tools.demo`).
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Any

from tools.cards import MasterKeys
from tools.demo import DEMO_PROGRAMS, DemoCard, Expected, _one_operation
from tools.personalize import personalize
from tools.simulator.cards import make_uid
from tools.simulator.ntag424_card import Ntag424Card
from tools.simulator.terminal import SimulatedTerminal

CARD_URL_PREFIX = "https://tilltap.example/c"
CARDS_PER_PROGRAM = 4
DRAIN_TIMEOUT_S = 120.0
# A customer at each counter every so often, not as fast as a thread can go: the counters
# share the campaign's process (and its interpreter lock) with the hostile clients.
CUSTOMER_PAUSE_S = 0.05
OPENING_VALUES = (2000, 5000, 10_000)


class HonestCounters:
    """The honest terminals, their cards and what they approved."""

    def __init__(self, configs: list[dict[str, Any]], journal_dir: Path, host: str, port: int,
                 masters: MasterKeys, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.expected = Expected()
        self.sims = [SimulatedTerminal(config, journal_dir, host, port, seed + number, sun=True)
                     for number, config in enumerate(configs)]
        self.masters = masters
        self.cards: dict[str, DemoCard] = {}
        self.errors: list[BaseException] = []
        self._operations = [0] * len(self.sims)  # per terminal, each written by its thread
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def terminals(self) -> list[str]:
        return [sim.config["terminal"] for sim in self.sims]

    def open(self) -> None:
        """Personalize the customers' cards and sell them at the counters."""
        for sim in self.sims:
            sim.service(0)
        names = list(DEMO_PROGRAMS)
        blanks: list[DemoCard] = []
        while len(blanks) < CARDS_PER_PROGRAM * len(names):
            uid = make_uid(self.rng)
            if uid in {card.uid for card in blanks}:
                continue
            chip = Ntag424Card(bytes.fromhex(uid), random=self.rng.randbytes)
            personalize(chip.apdu, self.masters, CARD_URL_PREFIX, self.rng.randbytes)
            blanks.append(DemoCard(uid, names[len(blanks) % len(names)], chip))
        for index, card in enumerate(blanks):
            program = DEMO_PROGRAMS[card.program]
            value = (self.rng.choice(OPENING_VALUES)
                     if program["gift"] is not None or program["prepaid"] is not None else 0)
            sim = self.sims[index % len(self.sims)]
            sim.tap(card.card)
            outcome = sim.terminal.issue(card.program, value)
            self.expected.record(outcome)
            if outcome["approved"]:
                self.cards[card.uid] = card
        if not self.drain():
            raise RuntimeError("the honest terminals' cards were not all acknowledged")

    def start(self) -> None:
        for number, sim in enumerate(self.sims):
            thread = threading.Thread(target=self._trade, args=(number, sim,
                                                                self.seed * 100 + number),
                                      name=f"honest-{sim.config['terminal']}", daemon=True)
            self._threads.append(thread)
            thread.start()

    @property
    def operations(self) -> int:
        return sum(self._operations)

    def _trade(self, number: int, sim: SimulatedTerminal, seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not self._stop.wait(CUSTOMER_PAUSE_S):
                _one_operation(sim, self.cards, self.expected, rng)
                sim.service(0)
                self._operations[number] += 1
        except BaseException as error:  # reported by the campaign, never swallowed
            self.errors.append(error)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def drain(self, timeout_s: float = DRAIN_TIMEOUT_S) -> bool:
        """Service every terminal until its journal is empty (every record acked)."""
        deadline = time.monotonic() + timeout_s
        return all(sim.drain(deadline) for sim in self.sims)

    def probe(self) -> bool:
        """Is the gateway answering? One more customer at the first counter: a balance
        inquiry (an authorization round trip) and a small sale in cash (a record to ack)."""
        sim = self.sims[0]
        card = next(card for card in self.cards.values() if card.program == "loyalty")
        with card.lock:
            sim.tap(card.card)
            inquiry = sim.terminal.inquiry()
            sim.tap(card.card)
            sale = sim.terminal.purchase(100, pay_from_card=False)
        self.expected.record(inquiry)
        self.expected.record(sale)
        return bool(inquiry["approved"] and sale["approved"] and self.drain())

    def close(self) -> None:
        for sim in self.sims:
            sim.close()
