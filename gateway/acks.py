"""The acknowledgement stage: signed acks after commits, unsigned notices for the untrusted.

An ack tells a terminal "every seq up to acked_through has its final answer here" and lists
the seqs in that range that were stored as refused, with reasons, and the records refused
as replays (seq and digest). It carries the gateway's clock and is sealed with the
terminal's key, so nobody else can make a terminal drop its journal or move its clock. A
message that failed before its MAC verified (unknown terminal, bad MAC, malformed) gets an
unsigned notice instead: the terminal shows and counts it, and changes nothing. A message
that verified but cannot be placed in a chain gets a sealed notice (docs/protocol.md 5.1).
"""

from __future__ import annotations

import queue
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from gateway.answered import Answered
from gateway.registry import TerminalRegistry
from gateway.stage import OnDeath, Stage, exit_process
from gateway.stats import Stats
from gateway.verify import SignedRefusal, claimed_terminal
from protocol import messages, sealed, topics
from protocol.errors import ProtocolError

Publish = Callable[[str, bytes], None]


class AckOut:
    """An acknowledgement to send, or (notice_reason set) a notice.

    A notice is sealed (`notice_sealed`) when it answers a message whose MAC verified, and
    names that message's seq when it had a readable one."""

    __slots__ = ("merchant", "terminal", "acked_through", "rejected", "replayed",
                 "notice_reason", "notice_sealed", "notice_seq")

    def __init__(self, merchant: str, terminal: str, notice_reason: str | None = None,
                 notice_sealed: bool = False, notice_seq: int | None = None) -> None:
        self.merchant = merchant
        self.terminal = terminal
        self.acked_through = 0
        self.rejected: list[tuple[int, str]] = []
        self.replayed: list[tuple[int, bytes]] = []
        self.notice_reason = notice_reason
        self.notice_sealed = notice_sealed
        self.notice_seq = notice_seq


def refusal_notice(topic: str, error: ProtocolError) -> AckOut | None:
    """The notice that answers an uplink refused before it reached the writer: sealed when
    its MAC verified (SignedRefusal), unsigned when it did not; None when its topic names no
    terminal to answer."""
    claimed = claimed_terminal(topic)
    if claimed is None:
        return None
    if isinstance(error, SignedRefusal):
        return AckOut(claimed[0], claimed[1], error.reason, True, error.seq)
    return AckOut(claimed[0], claimed[1], error.reason)


def ack_messages(out: AckOut, now_s: int) -> list[dict[str, Any]]:
    """The ack messages that say `out`: one, or more when it has more refusals or replays
    than one message carries (REJECTS_MAX, REPLAYED_MAX, so that it fits
    MESSAGE_BYTES_MAX). They go out in seq order, and each but the last acks only through
    the seq before the next one's first entry: a terminal drops a record only with the ack
    that says how it ended, so its refused log misses none."""
    entries = sorted([(seq, 0, reason) for seq, reason in out.rejected]
                     + [(seq, 1, digest) for seq, digest in out.replayed],
                     key=lambda entry: (entry[0], entry[1]))
    caps = (messages.REJECTS_MAX, messages.REPLAYED_MAX)
    chunks: list[list[tuple[int, int, Any]]] = [[]]
    counts = [0, 0]
    for entry in entries:
        if counts[entry[1]] == caps[entry[1]]:
            chunks.append([])
            counts = [0, 0]
        chunks[-1].append(entry)
        counts[entry[1]] += 1
    acks = []
    for index, chunk in enumerate(chunks):
        through = out.acked_through
        if index + 1 < len(chunks):
            through = min(through, chunks[index + 1][0][0] - 1)
        fields: dict[str, Any] = {
            "terminal": out.terminal, "time": now_s, "acked_through": max(through, 0),
            "rejected": [[seq, value] for seq, kind, value in chunk if kind == 0]}
        replayed = [[seq, value] for seq, kind, value in chunk if kind == 1]
        if replayed:
            fields["replayed"] = replayed
        acks.append(fields)
    return acks


NOTICE_BURST = 32  # notices a terminal may get at once
NOTICE_REFILL_PER_S = 1.0  # then one a second
NOTICE_TERMINALS_MAX = 10_000  # terminal ids (from topics: anyone may name one) remembered


class NoticeLimiter:
    """A token bucket per terminal topic: a flood of messages on one terminal's topics (a
    rogue client needs no key to send them) costs that terminal at most NOTICE_BURST
    notices and then one a second; the rest are counted, not sent (docs/protocol.md 5.1)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    def allow(self, terminal: str) -> bool:
        now = self.clock()
        tokens, at = self._buckets.pop(terminal, (float(NOTICE_BURST), now))
        tokens = min(float(NOTICE_BURST), tokens + (now - at) * NOTICE_REFILL_PER_S)
        allowed = tokens >= 1.0
        self._buckets[terminal] = (tokens - 1.0 if allowed else tokens, now)
        while len(self._buckets) > NOTICE_TERMINALS_MAX:
            self._buckets.popitem(last=False)
        return allowed


class AckStage(Stage[AckOut]):
    name = "gateway-acks"

    def __init__(self, registry: TerminalRegistry, publish: Publish, stats: Stats,
                 inbox: queue.Queue[AckOut | None], clock: Callable[[], float] = time.time,
                 on_death: OnDeath = exit_process, answered: Answered | None = None) -> None:
        """`answered`: where each ack is noted before it is sent (gateway/answered.py)."""
        super().__init__(inbox, on_death)
        self.answered = answered
        self.registry = registry
        self.publish = publish
        self.stats = stats
        self.clock = clock
        self.notice_limiter = NoticeLimiter()

    def handle(self, out: AckOut) -> None:
        if out.notice_reason is not None:
            if self.notice_limiter.allow(out.terminal):
                self._notice(out)
            else:
                self.stats.add("notices_suppressed")
            return
        try:
            key = self.registry.get(out.terminal).key
        except ProtocolError:
            self.stats.add("acks_unaddressable")
            return
        now_s = self.clock()
        for fields in ack_messages(out, int(now_s)):
            if self.answered is not None:
                self.answered.acked(out.terminal, fields["acked_through"], now_s)
            data = sealed.seal(key, messages.TYPE_ACK, fields)
            self.publish(topics.down(out.merchant, out.terminal, topics.LEAF_ACK), data)
            self.stats.add("acks_sent")

    def _notice(self, out: AckOut) -> None:
        fields = {"terminal": out.terminal, "reason": out.notice_reason, "seq": out.notice_seq}
        topic = topics.down(out.merchant, out.terminal, topics.LEAF_NOTICE)
        if out.notice_sealed:
            key = self.registry.get(out.terminal).key  # it verified: the terminal is known
            self.publish(topic, sealed.seal(key, messages.TYPE_NOTICE, fields))
            self.stats.add("notices_sealed")
        else:
            self.publish(topic, messages.encode(messages.TYPE_NOTICE, fields))
            self.stats.add("notices_sent")
