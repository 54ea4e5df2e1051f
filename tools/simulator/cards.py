"""Emulated cards on an emulated reader: the Reader seam for the simulator.

A card here is its 7-byte UID as lowercase hex. (Secure NTAG 424 DNA messaging with SUN
evidence is a later step; until then a UID identifies a card only in the simulator.)
"""

from __future__ import annotations

import random


def make_uid(rng: random.Random) -> str:
    """A 7-byte UID with the NXP manufacturer byte 0x04 first, as NTAG 424 DNA tags have."""
    return "04" + "".join(f"{rng.randrange(256):02x}" for _ in range(6))


class EmulatedReader:
    def __init__(self) -> None:
        self.card: str | None = None
        self.reads = 0

    def present(self, card: str | None) -> None:
        self.card = card

    def read_card(self, timeout_ms: int) -> str | None:
        self.reads += 1
        return self.card
