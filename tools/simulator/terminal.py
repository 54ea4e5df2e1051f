"""A simulated counter terminal: firmware modules + host seams, one per thread.

The terminal is wired by the firmware's own `firmware.app.build_terminal`, as on a board:
the clock wrapped in SyncedClock, the journal and the signed settings on files (in
`journal_dir`, named after the terminal), the uplink, the state machine. Only the seams are
the host's: paho-mqtt for the network, the system clock, a seeded random, the reader.

Two kinds of card reader:
    plain  an `EmulatedReader` that returns the UID of the card "tapped" (a hex string)
    sun    the firmware's own PN532 driver and SUN reading, over an emulated PN532 chip in
           whose field the tapped card object (an emulated NTAG 424 DNA) is placed
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from firmware.app import build_terminal
from firmware.card_sun import on_card_read_sun
from firmware.hal import NullDisplay, SystemClock
from firmware.pn532 import Pn532
from firmware.reader import Pn532Reader
from tools.simulator.cards import EmulatedReader
from tools.simulator.paho_net import PahoNet
from tools.simulator.pn532_emulator import Pn532Emulator


class SeededRandom:
    def __init__(self, seed: int) -> None:
        self._rng = random.Random(seed)

    def u32(self) -> int:
        return self._rng.getrandbits(32)


class SimulatedTerminal:
    def __init__(self, config: dict[str, Any], journal_dir: Path, broker_host: str,
                 broker_port: int, seed: int = 0, sun: bool = False) -> None:
        self.config = config
        board_clock = SystemClock()
        self.pn532: Pn532Emulator | None = None
        self.reader: Any = EmulatedReader()
        if sun:
            self.pn532 = Pn532Emulator()
            self.reader = Pn532Reader(Pn532(self.pn532, board_clock), board_clock,
                                      on_card_read_sun)
        self.display = NullDisplay()
        login = ((config["broker_user"], config["broker_password"])
                 if config.get("broker_user") else None)
        self.net = PahoNet(broker_host, broker_port, login, config.get("broker_ca"))
        name = config["terminal"]
        self.terminal = build_terminal(config, self.net, board_clock, SeededRandom(seed),
                                       self.reader, self.display,
                                       journal_path=str(journal_dir / f"{name}.journal"),
                                       settings_path=str(journal_dir / f"{name}.settings"))
        self.clock = self.terminal.clock  # the SyncedClock: gateway time once it answered
        self.journal = self.terminal.journal
        self.uplink = self.terminal.uplink
        self.settings = self.terminal.settings

    def tap(self, card: Any) -> Any:
        """Put `card` on the reader: a UID string (plain) or a card object (sun)."""
        if self.pn532 is not None:
            if card is None:
                self.pn532.remove()
            else:
                self.pn532.present(card)
            return self.reader
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
