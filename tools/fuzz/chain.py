"""The attacker's picture of its own chain at the gateway (pure), from the rules of
docs/protocol.md section 5.1 alone.

A signed message on `up/txn` takes a seq of the chain only if it is *placeable*: at most
1024 bytes, a COSE_Mac0 whose kid is the terminal and whose MAC verifies, a deterministic
CBOR map of type 1 (or 8, a lost notice) and version 1 with a readable seq and prev (a lost
notice: its own schema). Then, by its seq against the head (rows 5-17):

    seq <= head        a resend or a replay: nothing moves
    seq == head + 1    placed (accepted or refused, either way the seq is consumed); the
                       head moves to its digest (a lost notice: the digest it names), and
                       held records that now follow are placed after it
    seq  > head + 1    held, at most AHEAD_MAX per terminal, until the gap fills

The model lets the attacker chain its next base record from the right digest without
waiting for every ack. The campaign checks it at each barrier against the head the
gateway's signed ack reports: a difference is counted (`resyncs`) and repaired, never
fatal: a record chained from a wrong digest is still placed (`chain_broken`) and the head
is known again from it.
"""

from __future__ import annotations

import hashlib

from protocol import cbor, cose, messages, txn
from protocol.errors import ProtocolError

AHEAD_MAX = 256  # docs/protocol.md section 5.1, row 12
MESSAGE_BYTES_MAX = 1024
_TYPES = (messages.TYPE_TXN, messages.TYPE_LOST)




def placeable(message: bytes, terminal: str, key: bytes) -> tuple[int, bytes, bool] | None:
    """(seq, digest the chain moves to, lost notice?) if the gateway will place or hold
    `message` (sent on this terminal's `up/txn`), else None (answered by a notice)."""
    if len(message) > MESSAGE_BYTES_MAX:
        return None
    try:
        mac0 = cose.parse(message)
        if mac0.kid != terminal.encode():
            return None
        item = cbor.decode(mac0.verify(key))
    except ProtocolError:
        return None
    if not isinstance(item, dict):
        return None
    kind = item.get(messages.K_TYPE)
    version = item.get(messages.K_VERSION)
    # CBOR true is not 1 (gateway/verify.py): both must be integers.
    if type(kind) is not int or kind not in _TYPES or type(version) is not int or version != 1:
        return None
    seq = item.get(3)
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        return None
    if kind == messages.TYPE_LOST:
        try:
            fields = messages.unpack(item, messages.TYPE_LOST)
        except ProtocolError:
            return None
        if fields["terminal"] != terminal:
            return None
        return seq, fields["digest"], True
    prev = item.get(4)
    if not (isinstance(prev, bytes) and len(prev) == 32):
        return None
    return seq, hashlib.sha256(message).digest(), False


class ChainModel:
    """The head (seq, digest) and the held seqs of one terminal, as the gateway sees them.
    `digest` is None after a resync: the next record's prev is a guess."""

    def __init__(self, terminal: str, key: bytes) -> None:
        self.terminal = terminal
        self.key = key
        self.seq = 0
        self.digest: bytes | None = txn.GENESIS_DIGEST
        self.ahead: dict[int, tuple[bytes, bool]] = {}
        self.placed = 0  # seqs this model saw taken
        self.held = 0

    def offer(self, message: bytes) -> int:
        """Account for `message` sent on `up/txn`; returns how many seqs it placed."""
        found = placeable(message, self.terminal, self.key)
        if found is None:
            return 0
        seq, digest, lost = found
        if seq <= self.seq:
            return 0
        if seq > self.seq + 1:
            waiting = self.ahead.get(seq)
            if waiting is None:
                if len(self.ahead) < AHEAD_MAX:
                    self.ahead[seq] = (digest, lost)
                    self.held += 1
            elif not lost and waiting[1] and waiting[0] == digest:
                self.ahead[seq] = (digest, False)  # the record its notice stood for
            return 0
        self.seq, self.digest = seq, digest
        placed = 1
        while self.seq + 1 in self.ahead:
            self.digest = self.ahead.pop(self.seq + 1)[0]
            self.seq += 1
            placed += 1
        self.placed += placed
        return placed

    def resync(self, head_seq: int) -> bool:
        """The gateway's signed ack says the head is `head_seq`: True if the model agreed,
        else take it (its digest unknown) and forget what was held below it."""
        if head_seq == self.seq:
            return True
        self.seq, self.digest = head_seq, None
        self.ahead = {seq: held for seq, held in self.ahead.items() if seq > head_seq}
        return False
