"""Emulated cards on an emulated reader: the Reader seam (firmware.hal) for the simulator.

A card here is its 7-byte UID as lowercase hex; the plain reader reads no SUN, so a tap is
(uid, None, None), or (None, None, "card_absent") with nothing on the reader. (The simulator's
sun mode runs the firmware's own PN532 reader over an emulated NTAG 424 DNA instead.)
"""

from __future__ import annotations

import random

from protocol.reasons import CARD_ABSENT


def make_uid(rng: random.Random) -> str:
    """A 7-byte UID with the NXP manufacturer byte 0x04 first, as NTAG 424 DNA tags have."""
    return "04" + "".join(f"{rng.randrange(256):02x}" for _ in range(6))


class EmulatedReader:
    def __init__(self) -> None:
        self.card: str | None = None
        self.reads = 0

    def present(self, card: str | None) -> None:
        self.card = card

    def read_card(self, timeout_ms: int) -> tuple[str | None, str | None, str | None]:
        """The card present now, at once: the tap is decided before the call, never waited for."""
        self.reads += 1
        if self.card is None:
            return None, None, CARD_ABSENT
        return self.card, None, None
