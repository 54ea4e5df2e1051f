"""The verify stage's thread: uplinks in, verified records out to the writer.

A record that fails before its MAC verifies never reaches the writer: it is counted by reason
and its claimed terminal gets an unsigned notice. A record whose MAC verified goes on to be
sequenced even when it breaks a rule (it is stored as refused there); one whose own seq and
prev cannot be read gets a sealed notice. A full writer queue drops the record, counts it
(`dropped.ingest`) and says `queue_full`; the terminal resends it because no ack came.
"""

from __future__ import annotations

import queue
import time

from gateway.acks import AckOut, refusal_notice
from gateway.answered import Answered
from gateway.stage import OnDeath, Stage, exit_process
from gateway.stats import Stats
from gateway.verify import Verified, Verifier, claimed_terminal
from protocol.errors import ProtocolError
from protocol.reasons import QUEUE_FULL

Uplink = tuple[str, bytes]
# Under load the stage takes the records that arrive within this long in one wake (see
# Stage); a record waits COMMIT_WAIT_MS for its batch anyway (gateway/ingest.py).
GATHER_S = 0.001


class VerifyStage(Stage[Uplink]):
    name = "gateway-verify"
    gather_s = GATHER_S

    def __init__(self, verifier: Verifier, stats: Stats, inbox: queue.Queue[Uplink | None],
                 outbox: queue.Queue[Verified | None], notices: queue.Queue[AckOut | None],
                 on_death: OnDeath = exit_process, answered: Answered | None = None) -> None:
        """`answered`: what the gateway sent each terminal, read as each record arrives."""
        super().__init__(inbox, on_death)
        self.answered = answered
        self.verifier = verifier
        self.stats = stats
        self.outbox = outbox
        self.notices = notices

    def handle(self, item: Uplink) -> None:
        topic, payload = item
        self.stats.add("received")
        # Read first, as near its arrival as the gateway gets: whatever its terminal knew
        # when it made the record had been sent by then (gateway/answered.py).
        claimed = claimed_terminal(topic)
        told = (self.answered.told(claimed[1])
                if self.answered is not None and claimed is not None else None)
        try:
            verified = self.verifier.transaction(topic, payload, time.time(), told)
        except ProtocolError as error:
            self.stats.rejected(error.reason)
            notice = refusal_notice(topic, error)
            if notice is not None:
                self._notice(notice)
            return
        try:
            self.outbox.put(verified, timeout=1.0)
        except queue.Full:
            # Not stored: the terminal resends after RESEND_AFTER_MS; it is told why.
            self.stats.add("dropped.ingest")
            self._notice(AckOut(verified.merchant, verified.terminal, QUEUE_FULL, True,
                                verified.seq))

    def _notice(self, out: AckOut) -> None:
        try:
            self.notices.put_nowait(out)
        except queue.Full:
            self.stats.add("dropped.notice")
