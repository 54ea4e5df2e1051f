"""Power-safe append-only journal of sealed transactions, on flash or a host file.

A transaction is journaled before it is first sent and leaves the journal only after the
gateway's signed acknowledgement covers its sequence number (not after a PUBACK: the broker
holding a message is not the gateway having stored it).

Record layout (all integers big-endian):

    0  magic 0xA5
    1  type   1 = TXN (seq u32 + sealed record)
              2 = ACK (acked_through u32: every seq <= this is stored by the gateway)
              3 = CHAIN (seq u32 + digest 32: the chain head, written first by compaction)
    2  body length u16
    4  CRC-32 (IEEE) over type, length and body
    8  body

Recovery reads records in order. A record whose magic, length or CRC is wrong is either a
torn tail (nothing valid follows: dropped) or corruption in the middle (a valid record
follows: skipped and counted in `corrupt_records`, never trusted). Either way the recovered
journal is rewritten so the damage is gone before anything is appended.

Compaction writes the live state (CHAIN, unacknowledged TXNs, ACK) to a new file and renames
it over the old one; rename is atomic on littlefs and POSIX, so a power cut leaves one or the
other. It copies at most JOURNAL_BYTES_MAX, so its cost is bounded.
"""

import hashlib
import struct

from firmware.crc32 import crc32
from protocol.errors import ProtocolError
from protocol.reasons import JOURNAL_FULL

try:
    from micropython import const
except ImportError:

    def const(value):
        return value


JOURNAL_BYTES_MAX = const(65536)
COMPACT_AFTER_BYTES = const(16384)
RECORD_BODY_BYTES_MAX = const(1100)
_HEADER_BYTES = const(8)
_MAGIC = const(0xA5)
TYPE_TXN = const(1)
TYPE_ACK = const(2)
TYPE_CHAIN = const(3)
_GENESIS = bytes(32)


class JournalFull(ProtocolError):
    """No room for another unsent record; the terminal must go online before selling."""

    def __init__(self, detail=""):
        super().__init__(JOURNAL_FULL, detail)


def encode_record(record_type, body):
    assert len(body) <= RECORD_BODY_BYTES_MAX, "journal record body too large"
    head = struct.pack(">BH", record_type, len(body))
    return bytes((_MAGIC,)) + head + struct.pack(">I", crc32(head + body)) + body


def _parse_at(data, offset):
    """Return (type, body, next_offset) for a valid record at offset, else None."""
    if offset + _HEADER_BYTES > len(data) or data[offset] != _MAGIC:
        return None
    record_type, length = struct.unpack(">BH", data[offset + 1 : offset + 4])
    end = offset + _HEADER_BYTES + length
    if record_type not in (TYPE_TXN, TYPE_ACK, TYPE_CHAIN) or length > RECORD_BODY_BYTES_MAX:
        return None
    if end > len(data):
        return None
    body = bytes(data[offset + _HEADER_BYTES : end])
    (stored_crc,) = struct.unpack(">I", data[offset + 4 : offset + 8])
    if crc32(bytes(data[offset + 1 : offset + 4]) + body) != stored_crc:
        return None
    return record_type, body, end


class Journal:
    """The terminal's durable state: pending records, the chain head, the next sequence."""

    def __init__(self, storage, bytes_max=JOURNAL_BYTES_MAX):
        self.storage = storage
        self.bytes_max = bytes_max
        self.pending = []  # [(seq, record bytes)] not yet acknowledged, in seq order
        self.last_seq = 0
        self.last_digest = _GENESIS
        self.acked_through = 0
        self.acked_digest = _GENESIS  # digest of the record numbered acked_through
        self.corrupt_records = 0
        self.torn_bytes = 0
        self.size = 0
        self._recover()

    # -- recovery -------------------------------------------------------------------------
    def _recover(self):
        data = self.storage.read_all()
        offset = 0
        damaged = False
        while offset < len(data):
            parsed = _parse_at(data, offset)
            if parsed is None:
                damaged = True
                resume = self._next_valid(data, offset + 1)
                if resume is None:
                    self.torn_bytes = len(data) - offset
                    break
                self.corrupt_records += 1
                offset = resume
                continue
            record_type, body, offset = parsed
            self._apply(record_type, body)
        self.size = len(data)
        if damaged:
            self.compact()

    @staticmethod
    def _next_valid(data, start):
        for offset in range(start, len(data)):
            if data[offset] == _MAGIC and _parse_at(data, offset) is not None:
                return offset
        return None

    def _apply(self, record_type, body):
        if record_type == TYPE_TXN:
            (seq,) = struct.unpack(">I", body[:4])
            if seq != self.last_seq + 1:
                # Never trust a record that does not continue the chain it claims to.
                self.corrupt_records += 1
                return
            record = body[4:]
            self.last_seq = seq
            self.last_digest = hashlib.sha256(record).digest()
            if seq > self.acked_through:
                self.pending.append((seq, record))
        elif record_type == TYPE_ACK:
            (through,) = struct.unpack(">I", body)
            self._drop_through(through)
        else:
            seq = struct.unpack(">I", body[:4])[0]
            self.last_seq = self.acked_through = seq
            self.last_digest = self.acked_digest = body[4:36]

    def _drop_through(self, through):
        if through > self.acked_through:
            self.acked_through = min(through, self.last_seq)
        kept = []
        for seq, record in self.pending:
            if seq <= self.acked_through:
                self.acked_digest = hashlib.sha256(record).digest()
            else:
                kept.append((seq, record))
        self.pending = kept

    # -- writing --------------------------------------------------------------------------
    def _append(self, record_type, body):
        encoded = encode_record(record_type, body)
        self.storage.append(encoded)
        self.size += len(encoded)

    def append_txn(self, seq, record):
        """Make a sealed record durable; raises JournalFull rather than overwrite unsent data."""
        assert seq == self.last_seq + 1, "sequence numbers are consecutive"
        needed = _HEADER_BYTES + 4 + len(record)
        if self.size + needed > self.bytes_max:
            self.compact()
            if self.size + needed > self.bytes_max:
                raise JournalFull("%d unsent records" % len(self.pending))
        self._append(TYPE_TXN, struct.pack(">I", seq) + record)
        self.last_seq = seq
        self.last_digest = hashlib.sha256(record).digest()
        self.pending.append((seq, record))

    def ack_through(self, seq):
        """Record that the gateway durably holds every seq <= `seq`; returns records freed."""
        seq = min(seq, self.last_seq)
        if seq <= self.acked_through:
            return 0
        before = len(self.pending)
        self._append(TYPE_ACK, struct.pack(">I", seq))
        self._drop_through(seq)
        if self.size > COMPACT_AFTER_BYTES and self.size > 2 * self._live_bytes():
            self.compact()
        return before - len(self.pending)

    def _live_bytes(self):
        live = 2 * _HEADER_BYTES + 4 + 36
        for _, record in self.pending:
            live += _HEADER_BYTES + 4 + len(record)
        return live

    def compact(self):
        """Rewrite only the live state; atomic replace, bounded by JOURNAL_BYTES_MAX."""
        chain = struct.pack(">I", self.acked_through) + self.acked_digest
        parts = [encode_record(TYPE_CHAIN, chain)]
        for seq, record in self.pending:
            parts.append(encode_record(TYPE_TXN, struct.pack(">I", seq) + record))
        data = b"".join(parts)
        self.storage.replace(data)
        self.size = len(data)

    @property
    def depth(self):
        return len(self.pending)
