"""The verify stage's thread: uplinks in, verified records out to the writer.

A record that fails verification never reaches the writer: it is counted by reason and its
claimed terminal gets an unsigned notice. A full writer queue drops the record and counts
it (`dropped.ingest`); the terminal resends it because no ack came.
"""

from __future__ import annotations

import queue
import threading
import time

from gateway.acks import AckOut
from gateway.stats import Stats
from gateway.verify import Verified, Verifier, claimed_terminal
from protocol.errors import ProtocolError

Uplink = tuple[str, bytes]


class VerifyStage:
    def __init__(self, verifier: Verifier, stats: Stats, inbox: queue.Queue[Uplink | None],
                 outbox: queue.Queue[Verified | None], notices: queue.Queue[AckOut | None]) -> None:
        self.verifier = verifier
        self.stats = stats
        self.inbox = inbox
        self.outbox = outbox
        self.notices = notices
        self._thread = threading.Thread(target=self._run, name="gateway-verify", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            item = self.inbox.get()
            if item is None:
                return
            self.handle(*item)

    def handle(self, topic: str, payload: bytes) -> None:
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
