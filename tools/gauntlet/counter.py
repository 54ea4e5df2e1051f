"""One counter terminal as its own process: the firmware's modules under CPython, its journal,
settings and cards on disk, selling until it is told to stop (or killed).

    python -m tools.gauntlet.counter --workdir DIR --terminal T1 --seed N --incarnation K [--tls]

It is a `tools.simulator.SimulatedTerminal` in SUN mode (each tap read through the firmware's
PN532 driver from an emulated NTAG 424 DNA) with the board configuration `tilltap terminal
provision` wrote, connecting to the broker named in DIR/broker.json. Its customers do what
the demo's do (`tools.demo._one_operation`) on this terminal's own cards.

Files, in DIR/counters/ (each named after the terminal):

    T1.journal, T1.settings   the firmware's own (power-safe journal, signed configuration)
    T1.cards.json             the cards as personalized (the gauntlet writes it once)
    T1.counters.json          each card's SUN read counter after the last operation
    T1.approvals.jsonl        every record the terminal approved: a line written right
                              after the record is durable in the journal (the firmware's
                              approval), so the line can only be missing for a record that
                              is still in the journal: it is added at the next start
    T1.clock                  an offset in seconds added to the board's clock (a clock jump)

A card's read counter only goes up: after a kill its last operation may not have been saved,
so a restart moves every counter on by COUNTER_MARGIN (as a real card's own counter would
already be past it). Signals: SIGTERM stops after the customer at the counter; SIGUSR1 stops
selling and services the uplink until the journal is empty (exit 0; 3 if DRAIN_TIMEOUT_S
passed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from firmware.hal import SystemClock
from protocol import txn
from tools.demo import DEMO_PROGRAMS, DemoCard, Expected, _one_operation
from tools.fuzz.deploy import terminal_config
from tools.simulator.ntag424_card import Ntag424Card
from tools.simulator.terminal import SimulatedTerminal

COUNTER_MARGIN = 32
CUSTOMER_PAUSE_S = 0.1
DRAIN_TIMEOUT_S = 240.0
CLOCK_POLL_S = 0.5
EXIT_NOT_DRAINED = 3
LOGGED_FIELDS = ("terminal", "seq", "kind", "card", "amount_minor", "card_value_minor",
                 "points", "redeem_points", "auth_mode", "ref", "time")


def counters_dir(workdir: Path) -> Path:
    return workdir / "counters"


def approvals_path(workdir: Path, terminal: str) -> Path:
    return counters_dir(workdir) / f"{terminal}.approvals.jsonl"


def clock_path(workdir: Path, terminal: str) -> Path:
    return counters_dir(workdir) / f"{terminal}.clock"


def journal_path(workdir: Path, terminal: str) -> Path:
    return counters_dir(workdir) / f"{terminal}.journal"


def cards_path(workdir: Path, terminal: str) -> Path:
    return counters_dir(workdir) / f"{terminal}.cards.json"


def read_approvals(workdir: Path, terminal: str) -> list[dict[str, Any]]:
    path = approvals_path(workdir, terminal)
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    # A kill can cut the last line short: that record is still in the journal and is
    # written again whole at the next start.
    return [json.loads(line) for line in lines if line.endswith("}")]


class JumpingClock(SystemClock):
    """The board's clock plus an offset read from a file now and then (a clock jump)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset_s = 0
        self._checked = 0.0

    def now_s(self) -> int:
        now = time.monotonic()
        if now - self._checked > CLOCK_POLL_S:
            self._checked = now
            # No file, or one being written: the offset stays.
            with contextlib.suppress(OSError, ValueError):
                self.offset_s = int(self.path.read_text().strip() or 0)
        return super().now_s() + self.offset_s


class Counter:
    def __init__(self, workdir: Path, terminal: str, seed: int, incarnation: int,
                 tls: bool) -> None:
        self.workdir = workdir
        self.terminal = terminal
        self.rng = random.Random(seed * 1000 + incarnation)
        config = terminal_config(workdir, terminal, tls)
        self.key = config["key"]
        broker = json.loads((workdir / "broker.json").read_text())
        self.sim = SimulatedTerminal(config, counters_dir(workdir), broker["host"],
                                     broker["port"], seed * 1000 + incarnation, sun=True)
        self.sim.terminal.clock.clock = JumpingClock(clock_path(workdir, terminal))
        self.cards = self._load_cards()
        self.expected = Expected()
        self._log = open(approvals_path(workdir, terminal), "a")  # noqa: SIM115 (kept open)
        self._catch_up()
        original = self.sim.journal.append_txn

        def append_and_log(seq: int, record: bytes) -> None:
            original(seq, record)  # durable: the sale is approved
            self._write(seq, record, recovered=False)

        setattr(self.sim.journal, "append_txn", append_and_log)  # noqa: B010 (an instance hook)

    def _load_cards(self) -> dict[str, DemoCard]:
        saved = json.loads(cards_path(self.workdir, self.terminal).read_text())
        counters_file = counters_dir(self.workdir) / f"{self.terminal}.counters.json"
        counters = json.loads(counters_file.read_text()) if counters_file.exists() else {}
        cards = {}
        for entry in saved:
            chip = Ntag424Card.from_state(entry["state"], random=self.rng.randbytes)
            chip.sdm_read_counter = counters.get(entry["uid"], chip.sdm_read_counter) + (
                COUNTER_MARGIN if counters else 0)
            cards[entry["uid"]] = DemoCard(entry["uid"], entry["program"], chip)
        self.opening = {entry["uid"]: entry["value_minor"] for entry in saved}
        return cards

    def _save_counters(self) -> None:
        path = counters_dir(self.workdir) / f"{self.terminal}.counters.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps({uid: card.card.sdm_read_counter
                                         for uid, card in self.cards.items()}))
        temporary.replace(path)

    def _write(self, seq: int, record: bytes, recovered: bool) -> None:
        fields = txn.open_record(record, self.key)
        entry = {name: fields.get(name) for name in LOGGED_FIELDS}
        entry.update(txn_id=txn.txn_id(self.terminal, seq), digest=txn.digest(record).hex(),
                     recovered=recovered)
        self._log.write(json.dumps(entry) + "\n")
        self._log.flush()  # in the kernel: a SIGKILL cannot take it back
        self._remember(entry)

    def _remember(self, entry: dict[str, Any]) -> None:
        """What a later refund may name, and which cards are sold."""
        kind = entry["kind"]
        self.expected.kind_of[entry["txn_id"]] = kind
        if kind in (txn.KIND_PURCHASE, txn.KIND_TOPUP):
            self.expected.sales.append(entry)
        if kind == txn.KIND_ISSUE:
            self.issued.add(entry["card"])

    def _catch_up(self) -> None:
        """The approvals of earlier lives, and the records a kill left unlogged."""
        self.issued: set[str] = set()
        logged = set()
        for entry in read_approvals(self.workdir, self.terminal):
            logged.add(entry["seq"])
            self._remember(entry)
        journal = self.sim.journal
        for seq, record in journal.pending:
            if seq not in logged and seq not in journal.lost:
                self._write(seq, record, recovered=True)

    def _issue_one(self) -> bool:
        """Sell the next card not sold yet; False when every card is sold."""
        for uid, card in self.cards.items():
            if uid in self.issued:
                continue
            self.sim.tap(card.card)
            self.sim.terminal.issue(card.program, self.opening[uid])
            return True
        return False

    def sell(self, stop: threading.Event, drain: threading.Event) -> None:
        while not (stop.is_set() or drain.is_set()):
            if not self._issue_one():
                sold = {uid: card for uid, card in self.cards.items() if uid in self.issued}
                _one_operation(self.sim, sold, self.expected, self.rng)
            self._save_counters()
            self.sim.service(0)
            stop.wait(CUSTOMER_PAUSE_S)

    def drain(self) -> bool:
        return self.sim.drain(time.monotonic() + DRAIN_TIMEOUT_S)

    def close(self) -> None:
        self._log.close()
        self.sim.close()


def opening_value(program: str, rng: random.Random) -> int:
    rules = DEMO_PROGRAMS[program]
    if rules["gift"] is not None or rules["prepaid"] is not None:
        return rng.choice((20_000, 50_000, 100_000))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.gauntlet.counter")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--terminal", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--incarnation", type=int, default=0)
    parser.add_argument("--tls", action="store_true")
    args = parser.parse_args(argv)
    stop, drain = threading.Event(), threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGUSR1, lambda *_: drain.set())
    counter = Counter(args.workdir, args.terminal, args.seed, args.incarnation, args.tls)
    print(f"counter {args.terminal} ready (pid {os.getpid()})", flush=True)
    try:
        counter.sell(stop, drain)
        if drain.is_set() and not stop.is_set():
            drained = counter.drain()
            print(f"counter {args.terminal} {'drained' if drained else 'NOT drained'}",
                  flush=True)
            return 0 if drained else EXIT_NOT_DRAINED
        return 0
    finally:
        counter.close()


if __name__ == "__main__":
    sys.exit(main())
