"""The terminal's chain and journal (docs/protocol.md sections 3.3 and 5.1), pure.

    seal -> append(record)      seq = last seq + 1, prev = SHA-256 of the last sealed record;
                                journaled before the first send, kept until a signed ack
    apply_ack(ack)              steps 1-5 of section 5.1 (step 1, the MAC, is the caller's)
    due(now)                    what to (re)send: from the oldest unanswered seq at most 32,
                                at once when the oldest was not sent on this connection
                                (section 5.1: on (re)connect), else when it has had no ack
                                for 3 s

Besides what the docs ask, `history` keeps every record this terminal sealed with its outcome
("accepted" or the refusal reason, None while unanswered), so a test can reconcile it with
the ledger.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass
from typing import Any

GENESIS_DIGEST = bytes(32)
RESEND_AFTER_S = 3.0
RESEND_BATCH_MAX = 32
REFUSED_LOG_MAX = 8
ACCEPTED = "accepted"
SEQ_REPLAYED = "seq_replayed"


def digest(record: bytes) -> bytes:
    return hashlib.sha256(record).digest()


@dataclass
class Entry:
    seq: int
    record: bytes
    fields: dict[str, Any]
    digest: bytes
    sent_at_s: float | None = None
    outcome: str | None = None


@dataclass(frozen=True)
class RefusedEntry:
    """What the refused log keeps of a record (section 5.1 step 2)."""

    seq: int
    reason: str
    kind: int
    amount_minor: int
    card: str
    time: int


class Journal:
    def __init__(self) -> None:
        self.last_seq = 0
        self.last_digest = GENESIS_DIGEST
        self.entries: dict[int, Entry] = {}
        self.refused_log: deque[RefusedEntry] = deque(maxlen=REFUSED_LOG_MAX)
        self.refused_count = 0
        self.history: list[Entry] = []  # every record sealed, in order

    @property
    def depth(self) -> int:
        return len(self.entries)

    @property
    def outcomes(self) -> dict[int, str]:
        """seq -> outcome of the last record sealed under it that has one."""
        return {e.seq: e.outcome for e in self.history if e.outcome is not None}

    def latest(self, seq: int) -> Entry | None:
        return next((e for e in reversed(self.history) if e.seq == seq), None)

    def append(self, record: bytes, fields: dict[str, Any]) -> Entry:
        """Journal a sealed record; the chain moves on from it, whatever its answer."""
        entry = Entry(fields["seq"], record, fields, digest(record))
        assert entry.seq not in self.entries, "a held seq is never sealed again"
        self.entries[entry.seq] = entry
        self.history.append(entry)
        self.last_seq, self.last_digest = entry.seq, entry.digest
        return entry

    def _note_refused(self, seq: int, reason: str, digest_: bytes | None = None) -> bool:
        """Steps 2 and 3: note a held record in the refused log (once); it stays in the
        journal until step 4. True when it was held (with that digest, for a replay)."""
        entry = self.entries.get(seq)
        if entry is None or (digest_ is not None and entry.digest != digest_):
            return False
        if entry.outcome is None:
            fields = entry.fields
            self.refused_log.append(RefusedEntry(seq, reason, fields["kind"],
                                                 fields["amount_minor"], fields["card"],
                                                 fields["time"]))
            self.refused_count += 1
            entry.outcome = reason
        return True

    def apply_ack(self, ack: dict[str, Any]) -> bool:
        """Steps 2-4 of section 5.1 on a verified ack; True when it answered a record this
        terminal had sent (step 5: step 4 dropped one, or step 3 matched; the caller may
        then take the gateway's time).

        A rejected seq this terminal no longer holds was answered before (a resend's ack):
        nothing to note. The gateway splits a batch with more refusals than one ack carries
        so that no ack drops a record before the ack that names it (section 5.1)."""
        for seq, reason in ack["rejected"]:
            self._note_refused(seq, reason)
        fresh = False
        for seq, replayed_digest in ack.get("replayed", []):
            fresh = self._note_refused(seq, SEQ_REPLAYED, replayed_digest) or fresh
        for seq in [s for s in self.entries if s <= ack["acked_through"]]:
            entry = self.entries.pop(seq)
            if entry.outcome is None:
                entry.outcome = ACCEPTED
            fresh = True
        return fresh

    def due(self, now_s: float) -> list[Entry]:
        """Records to publish now: from the oldest unanswered seq, at most 32, when the oldest
        was not sent since the last (re)connect or has had no ack for 3 s."""
        ordered = [self.entries[s] for s in sorted(self.entries)]
        if not ordered:
            return []
        oldest = ordered[0]
        if oldest.sent_at_s is not None and now_s - oldest.sent_at_s < RESEND_AFTER_S:
            return []
        out = ordered[:RESEND_BATCH_MAX]
        for entry in out:
            entry.sent_at_s = now_s
        return out

    def forget_sends(self) -> None:
        """On (re)connect the unanswered records go out again at once (section 5.1)."""
        for entry in self.entries.values():
            entry.sent_at_s = None
