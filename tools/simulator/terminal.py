"""A simulated counter terminal: firmware modules + host seams, one per thread."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from firmware.hal import NullDisplay, SystemClock
from firmware.journal import Journal
from firmware.storage import FileStorage
from firmware.terminal import Terminal
from firmware.uplink import Uplink
from tools.simulator.cards import EmulatedReader
from tools.simulator.paho_net import PahoNet


class SeededRandom:
    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def u32(self) -> int:
        return self._rng.getrandbits(32)


class SimulatedTerminal:
    def __init__(self, config: dict[str, Any], journal_dir: Path, broker_host: str,
                 broker_port: int, seed: int = 0) -> None:
        self.config = config
        self.clock = SystemClock()
        self.reader = EmulatedReader()
        self.display = NullDisplay()
        self.net = PahoNet(broker_host, broker_port)
        storage = FileStorage(str(journal_dir / f"{config['terminal']}.journal"))
        self.journal = Journal(storage)
        self.uplink = Uplink(config, self.journal, self.net, self.clock, SeededRandom(seed))
        self.terminal = Terminal(config, self.journal, self.uplink, self.clock, self.reader,
                                 self.display)

    def tap(self, card: str | None) -> EmulatedReader:
        self.reader.present(card)
        return self.reader

    def service(self, timeout_ms: int = 0) -> None:
        self.terminal.service(timeout_ms)

    def drain(self, deadline_s: float) -> bool:
        """Service the uplink until every journaled record is acked, or the deadline passes."""
        import time

        while self.journal.depth and time.monotonic() < deadline_s:
            self.service(50)
        return self.journal.depth == 0

    def close(self) -> None:
        self.net.disconnect()
