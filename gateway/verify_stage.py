"""The verify stage's thread: uplinks in, verified records out to the writer.

A record that fails verification never reaches the writer: it is counted by reason and its
claimed terminal gets an unsigned notice. A full writer queue drops the record and counts
it (`dropped.ingest`); the terminal resends it because no ack came.
"""

from __future__ import annotations

import queue
import time

from gateway.acks import AckOut
from gateway.stage import Stage
from gateway.stats import Stats
from gateway.verify import Verified, Verifier, claimed_terminal
from protocol.errors import ProtocolError

Uplink = tuple[str, bytes]


class VerifyStage(Stage[Uplink]):
    name = "gateway-verify"

    def __init__(self, verifier: Verifier, stats: Stats, inbox: queue.Queue[Uplink | None],
                 outbox: queue.Queue[Verified | None], notices: queue.Queue[AckOut | None]) -> None:
        super().__init__(inbox)
        self.verifier = verifier
        self.stats = stats
        self.outbox = outbox
        self.notices = notices

    def handle(self, item: Uplink) -> None:
        topic, payload = item
        self.stats.add("received")
        try:
            verified = self.verifier.transaction(topic, payload, time.time())
        except ProtocolError as error:
            self.stats.rejected(error.reason)
            claimed = claimed_terminal(topic)
            if claimed is not None:
                self.notices.put(AckOut(claimed[0], claimed[1], notice_reason=error.reason))
            return
        try:
            self.outbox.put(verified, timeout=1.0)
        except queue.Full:
            self.stats.add("dropped.ingest")
