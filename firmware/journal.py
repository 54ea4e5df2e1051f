"""Power-safe append-only journal of sealed transactions, on flash or a host file.

A transaction is journaled before it is first sent and leaves the journal only after the
gateway's signed acknowledgement covers its sequence number (not after a PUBACK: the broker
holding a message is not the gateway having stored it).

Format 2. Frames (all integers big-endian):

    0  magic 0xA5
    1  type   1 = TXN  (seq u32 + sealed record)
              2 = ACK  (acked_through u32: every seq <= this is stored by the gateway)
              3 = CHAIN (seq u32 + digest 32: format 1's head, read only to migrate)
              4 = MARK (seq u32 + digest 32: this seq is taken and the chain holds this
                        digest there; written after every TXN, in the same append)
              5 = HEAD (format u8 + acked_through u32 + its digest 32; written twice)
    2  body length u16
    4  CRC-32 (IEEE) over type, length and body
    8  body

A file is two HEADs, then per seq in order either TXN + MARK (a record) or MARK + MARK (a
seq whose record was lost), with ACKs between; appends add TXN + MARK or an ACK.

Recovery reads frames in order. A frame whose magic, length or CRC is wrong is either a
torn tail (no valid frame follows: dropped, as a power cut mid-append leaves it) or damage
(a valid frame follows: skipped, counted in `corrupt_records`, and reading resumes at that
frame). Every intact frame is trusted, so one damaged frame costs only itself:

- a TXN is lost only if its own frame is damaged; its MARK still names its seq and digest,
  so `last_seq` never moves back and the next record chains from the lost one's digest;
- a seq that only a MARK names is **lost**: kept in `lost` (seq -> digest) until an ack
  covers it, written as MARK + MARK by compaction, and handed to the uplink as a sealed
  lost notice (docs/protocol.md section 5.9) through `seal_lost`, so the gateway closes
  its gap instead of waiting for the record forever;
- seqs skipped with no frame at all (more than one damaged frame) are lost too: the one
  just before an intact TXN with that TXN's `prev`, the others with an unknown digest
  (32 zero bytes); in a file without a head, what precedes the first frame was acknowledged
  (compaction keeps nothing else);
- a damaged HEAD leaves its copy; a damaged ACK or MARK behind an intact TXN loses nothing
  (an ack that is lost again only makes records resend: the gateway answers duplicates).

After damage, or on a format 1 file (no HEAD: migrated, its frames mean the same), the
journal is rewritten before anything is appended. A HEAD of a newer format is refused
(JournalFormatUnknown) and the file left as it is.

Compaction writes the live state to a new file and renames it over the old one; rename is
atomic on littlefs and POSIX, so a power cut leaves one or the other. It copies at most
JOURNAL_BYTES_MAX, so its cost is bounded.

    ProtocolError
    +-- JournalFull            no room for another unsent record
    +-- JournalFormatUnknown   written by a newer firmware; left untouched
"""

import hashlib
import struct

from firmware.crc32 import crc32
from protocol.errors import ProtocolError
from protocol.reasons import JOURNAL_FORMAT_UNKNOWN, JOURNAL_FULL

try:
    from micropython import const
except ImportError:

    def const(value):
        return value


FORMAT_VERSION = const(2)
JOURNAL_BYTES_MAX = const(65536)
COMPACT_AFTER_BYTES = const(16384)
RECORD_BODY_BYTES_MAX = const(1100)
GAP_SEQS_MAX = const(1024)  # more seqs than a full journal can hold: a gap beyond is not trusted
_HEADER_BYTES = const(8)
_MARK_BYTES = const(44)  # header 8 + seq 4 + digest 32
_HEAD_BYTES = const(45)
_MAGIC = const(0xA5)
TYPE_TXN = const(1)
TYPE_ACK = const(2)
TYPE_CHAIN = const(3)
TYPE_MARK = const(4)
TYPE_HEAD = const(5)
# Body length by type (index): 0 for a TXN, which holds a seq and a non-empty record.
_BODY_BYTES = (0, 0, 4, 36, 36, 37)
_GENESIS = bytes(32)
UNKNOWN_DIGEST = bytes(32)


class JournalFull(ProtocolError):
    """No room for another unsent record; the terminal must go online before selling."""

    def __init__(self, detail=""):
        super().__init__(JOURNAL_FULL, detail)


class JournalFormatUnknown(ProtocolError):
    """The journal was written by a newer firmware; it is neither read nor rewritten."""

    def __init__(self, detail=""):
        super().__init__(JOURNAL_FORMAT_UNKNOWN, detail)


def encode_record(record_type, body):
    assert len(body) <= RECORD_BODY_BYTES_MAX, "journal record body too large"
    head = struct.pack(">BH", record_type, len(body))
    # The CRC runs on from the head's into the body: no copy of head + body to checksum.
    crc = crc32(body, crc32(head))
    return struct.pack(">BBHI", _MAGIC, record_type, len(body), crc) + body


def _parse_at(data, offset):
    """Return (type, body, next_offset) for a valid frame at offset, else None."""
    if offset + _HEADER_BYTES > len(data) or data[offset] != _MAGIC:
        return None
    record_type, length = struct.unpack(">BH", data[offset + 1 : offset + 4])
    end = offset + _HEADER_BYTES + length
    if not TYPE_TXN <= record_type <= TYPE_HEAD or length > RECORD_BODY_BYTES_MAX:
        return None
    expected = _BODY_BYTES[record_type]
    if end > len(data) or (length != expected if expected else length <= 4):
        return None
    body = bytes(data[offset + _HEADER_BYTES : end])
    (stored_crc,) = struct.unpack(">I", data[offset + 4 : offset + 8])
    if crc32(bytes(data[offset + 1 : offset + 4]) + body) != stored_crc:
        return None
    return record_type, body, end


def _prev_of(record):
    """The `prev` a sealed record names: the digest of the seq before it, or unknown."""
    from protocol import cose, messages  # only after damage: most boots never need it

    try:
        return messages.decode(cose.parse(record).payload, messages.TYPE_TXN)["prev"]
    except ProtocolError:
        return UNKNOWN_DIGEST


def _seq_bytes(seq):
    return struct.pack(">I", seq)


class Journal:
    """The terminal's durable state: pending records, the chain head, the next sequence.

    `seal_lost(seq, digest) -> bytes` makes the sealed lost notice for a lost seq; with it,
    `pending` holds that notice in the lost record's place, so it is sent and resent like a
    record until an ack covers it. Without it, lost seqs are only listed in `lost`."""

    def __init__(self, storage, seal_lost=None, bytes_max=JOURNAL_BYTES_MAX):
        self.storage = storage
        self.bytes_max = bytes_max
        self.pending = []  # [(seq, record bytes)] not yet acknowledged, in seq order
        # seq -> digest: seqs whose record was lost, not yet acknowledged
        self.lost = {}  # type: dict[int, bytes]
        self.last_seq = 0
        self.last_digest = _GENESIS
        self.acked_through = 0
        self.acked_digest = _GENESIS  # digest of the record numbered acked_through
        self.corrupt_records = 0
        self.torn_bytes = 0
        self.size = 0
        self.format = 0  # of the head read: 0 none, 1 CHAIN, 2 HEAD
        self._recover()
        if seal_lost is not None:
            for seq in self.lost:
                self.pending.append((seq, seal_lost(seq, self.lost[seq])))
            self.pending.sort()

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
        if damaged or (data and self.format != FORMAT_VERSION):
            self.compact()

    @staticmethod
    def _next_valid(data, start):
        for offset in range(start, len(data)):
            if data[offset] == _MAGIC and _parse_at(data, offset) is not None:
                return offset
        return None

    def _apply(self, record_type, body):
        if record_type == TYPE_ACK:
            self._drop_through(struct.unpack(">I", body)[0])
        elif record_type in (TYPE_TXN, TYPE_MARK):
            self._take(record_type, struct.unpack(">I", body[:4])[0], body[4:])
        else:
            if record_type == TYPE_HEAD:
                if body[0] > FORMAT_VERSION:
                    raise JournalFormatUnknown("format %d" % body[0])
                body = body[1:]
            self.format = FORMAT_VERSION if record_type == TYPE_HEAD else 1
            seq = struct.unpack(">I", body[:4])[0]
            if seq > self.acked_through:
                self.acked_through, self.acked_digest = seq, body[4:36]
            if seq > self.last_seq:
                self.last_seq, self.last_digest = seq, body[4:36]

    def _take(self, record_type, seq, rest):
        """A TXN (rest = record) or MARK (rest = digest) naming `seq`."""
        if seq <= self.last_seq:
            # A MARK behind its TXN, the second MARK of a lost seq; a TXN here was never
            # written by this journal: not trusted.
            if record_type == TYPE_TXN:
                self.corrupt_records += 1
            return
        digest = hashlib.sha256(rest).digest() if record_type == TYPE_TXN else rest
        if seq > self.last_seq + 1:
            if self.format == 0 and self.last_seq == 0:
                # No head: compaction kept nothing before this frame but acknowledged seqs.
                self.acked_through = seq - 1
            elif seq - self.last_seq > GAP_SEQS_MAX:
                self.corrupt_records += 1
                return
            else:
                for missing in range(self.last_seq + 1, seq - 1):
                    self.lost[missing] = UNKNOWN_DIGEST
                before = UNKNOWN_DIGEST
                if record_type == TYPE_TXN:
                    before = _prev_of(rest)
                self.lost[seq - 1] = before
        self.last_seq, self.last_digest = seq, digest
        if record_type == TYPE_MARK:
            self.lost[seq] = digest  # its TXN is gone: this seq is lost
        elif seq > self.acked_through:
            self.pending.append((seq, rest))

    def _drop_through(self, through):
        if through > self.acked_through:
            self.acked_through = min(through, self.last_seq)
        through = self.acked_through
        newest = 0
        kept = []
        for seq, record in self.pending:
            if seq > through:
                kept.append((seq, record))
            elif seq > newest:
                newest, self.acked_digest = seq, self._digest(seq, record)
        self.pending = kept
        for seq in list(self.lost) if self.lost else ():
            if seq <= through:
                if seq > newest:
                    newest, self.acked_digest = seq, self.lost[seq]
                del self.lost[seq]

    def _digest(self, seq, record):
        """The digest the chain holds at `seq`: a lost seq's, else its record's."""
        digest = self.lost.get(seq)
        if digest is None:
            digest = hashlib.sha256(record).digest()
        return digest

    # -- writing --------------------------------------------------------------------------
    def _head(self):
        head = encode_record(TYPE_HEAD, struct.pack(">BI", FORMAT_VERSION, self.acked_through)
                             + self.acked_digest)
        return head + head

    def _append(self, encoded):
        if self.size == 0:
            encoded = self._head() + encoded  # a new file starts with its heads
        self.storage.append(encoded)
        self.size += len(encoded)

    def append_txn(self, seq, record):
        """Make a sealed record durable; raises JournalFull rather than overwrite unsent data."""
        assert seq == self.last_seq + 1, "sequence numbers are consecutive"
        digest = hashlib.sha256(record).digest()
        encoded = encode_record(TYPE_TXN, _seq_bytes(seq) + record)
        encoded += encode_record(TYPE_MARK, _seq_bytes(seq) + digest)
        if max(self.size, 2 * _HEAD_BYTES) + len(encoded) > self.bytes_max:
            self.compact()
            if self.size + len(encoded) > self.bytes_max:
                raise JournalFull("%d unsent records" % len(self.pending))
        self._append(encoded)
        self.last_seq = seq
        self.last_digest = digest
        self.pending.append((seq, record))

    def ack_through(self, seq):
        """Record that the gateway durably holds every seq <= `seq`; returns records freed."""
        seq = min(seq, self.last_seq)
        if seq <= self.acked_through:
            return 0
        before = len(self.pending)
        self._append(encode_record(TYPE_ACK, _seq_bytes(seq)))
        self._drop_through(seq)
        if self.size > COMPACT_AFTER_BYTES and self.size > 2 * self._live_bytes():
            self.compact()
        return before - len(self.pending)

    def _live_bytes(self):
        live = 2 * _HEAD_BYTES + 2 * _MARK_BYTES * len(self.lost)
        for seq, record in self.pending:
            if seq not in self.lost:
                live += _HEADER_BYTES + 4 + len(record) + _MARK_BYTES
        return live

    def compact(self):
        """Rewrite only the live state; atomic replace, bounded by JOURNAL_BYTES_MAX."""
        entries = [(seq, None) for seq in self.lost]
        for seq, record in self.pending:
            if seq not in self.lost:
                entries.append((seq, record))
        entries.sort()  # seqs are unique: only they are compared
        parts = [self._head()]
        for seq, record in entries:
            if record is None:
                mark = encode_record(TYPE_MARK, _seq_bytes(seq) + self.lost[seq])
                parts.append(mark + mark)
            else:
                parts.append(encode_record(TYPE_TXN, _seq_bytes(seq) + record))
                parts.append(encode_record(TYPE_MARK, _seq_bytes(seq)
                                           + hashlib.sha256(record).digest()))
        data = b"".join(parts)
        self.storage.replace(data)
        self.size = len(data)
        self.format = FORMAT_VERSION

    @property
    def depth(self):
        return len(self.pending)
