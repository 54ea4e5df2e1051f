"""The acknowledgement stage: signed acks after commits, unsigned notices for the untrusted.

An ack tells a terminal "every seq up to acked_through is durable here" and lists the seqs in
that range that were refused, with reasons. It is sealed with the terminal's key so nobody
else can make a terminal drop its journal. A message that failed before its MAC verified
(unknown terminal, bad MAC, malformed) gets an unsigned notice instead: the terminal shows
and counts it, and changes nothing.
"""

from __future__ import annotations

import queue
from collections.abc import Callable

from gateway.registry import TerminalRegistry
from gateway.stage import Stage
from gateway.stats import Stats
from protocol import messages, sealed, topics
from protocol.errors import ProtocolError

Publish = Callable[[str, bytes], None]


class AckOut:
    """An acknowledgement to send, or (notice_reason set) an unsigned notice."""

    __slots__ = ("merchant", "terminal", "acked_through", "rejected", "notice_reason")

    def __init__(self, merchant: str, terminal: str, notice_reason: str | None = None) -> None:
        self.merchant = merchant
        self.terminal = terminal
        self.acked_through = 0
        self.rejected: list[tuple[int, str]] = []
        self.notice_reason = notice_reason


class AckStage(Stage[AckOut]):
    name = "gateway-acks"

    def __init__(self, registry: TerminalRegistry, publish: Publish, stats: Stats,
                 inbox: queue.Queue[AckOut | None]) -> None:
        super().__init__(inbox)
        self.registry = registry
        self.publish = publish
        self.stats = stats

    def handle(self, out: AckOut) -> None:
        if out.notice_reason is not None:
            payload = messages.encode(
                messages.TYPE_NOTICE, {"terminal": out.terminal, "reason": out.notice_reason}
            )
            self.publish(topics.down(out.merchant, out.terminal, topics.LEAF_NOTICE), payload)
            self.stats.add("notices_sent")
            return
        try:
            key = self.registry.get(out.terminal).key
        except ProtocolError:
            self.stats.add("acks_unaddressable")
            return
        # One ack message carries at most REJECTS_MAX refusals; split the rest.
        rejected = out.rejected or []
        while True:
            chunk = rejected[: messages.REJECTS_MAX]
            rejected = rejected[messages.REJECTS_MAX :]
            fields = {
                "terminal": out.terminal,
                "acked_through": out.acked_through,
                "rejected": [[seq, reason] for seq, reason in chunk],
            }
            data = sealed.seal(key, messages.TYPE_ACK, fields)
            self.publish(topics.down(out.merchant, out.terminal, topics.LEAF_ACK), data)
            self.stats.add("acks_sent")
            if not rejected:
                return
