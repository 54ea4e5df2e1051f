"""The terminal journal: durable append, ack, compaction, torn writes and damage.
Runs on CPython and real MicroPython against the in-memory storage fake."""

import hashlib
import struct

from firmware.crc32 import crc32, crc32_portable
from firmware.journal import (
    FORMAT_VERSION,
    TYPE_ACK,
    TYPE_CHAIN,
    TYPE_HEAD,
    TYPE_MARK,
    TYPE_TXN,
    UNKNOWN_DIGEST,
    Journal,
    JournalFormatUnknown,
    JournalFull,
    encode_record,
)
from firmware.storage import MemoryStorage, PowerCut
from mpytest import IS_MICROPYTHON, expect_raises
from protocol import txn

KEY = bytes(range(32))


def record(seq):
    return ("sealed-record-%04d" % seq).encode() * 3


def digest(data):
    return hashlib.sha256(data).digest()


def notice(seq, lost_digest):
    """What the test's `seal_lost` makes: easy to recognise in `pending`."""
    return ("lost-%d-" % seq).encode() + lost_digest


def seqs(journal):
    return [seq for seq, _ in journal.pending]


def txn_frame(seq, body):
    return encode_record(TYPE_TXN, struct.pack(">I", seq) + body)


def mark_frame(seq, chained):
    return encode_record(TYPE_MARK, struct.pack(">I", seq) + chained)


def test_crc32_check_value():
    assert crc32(b"123456789") == 0xCBF43926
    assert crc32_portable(b"123456789") == 0xCBF43926


def test_crc32_runs_on_from_a_prefix_as_over_the_whole_on_both_paths():
    data = bytes(range(256)) + b"sealed-record" * 7
    for cut in (0, 1, 3, 100, len(data)):
        whole = crc32_portable(data)
        assert crc32(data[cut:], crc32(data[:cut])) == whole
        assert crc32_portable(data[cut:], crc32_portable(data[:cut])) == whole
        assert crc32(data[:cut]) == crc32_portable(data[:cut])


def test_a_frame_is_magic_type_length_crc_of_both_then_body():
    for record_type, body in ((TYPE_ACK, b"\x00\x00\x00\x07"), (TYPE_TXN, record(1) * 5)):
        head = struct.pack(">BH", record_type, len(body))
        crc = struct.pack(">I", crc32_portable(head + body))
        assert encode_record(record_type, body) == b"\xa5" + head + crc + body


def test_appended_records_survive_a_reopen_until_acked():
    storage = MemoryStorage()
    journal = Journal(storage)
    for seq in range(1, 6):
        journal.append_txn(seq, record(seq))
    assert journal.ack_through(3) == 3
    reopened = Journal(storage)
    assert seqs(reopened) == [4, 5]
    assert reopened.last_seq == 5
    assert reopened.last_digest == digest(record(5))
    assert reopened.lost == {} and reopened.corrupt_records == 0


def test_a_journal_file_starts_with_two_heads_of_this_format_once_written():
    storage = MemoryStorage()
    journal = Journal(storage)
    assert bytes(storage.data) == b""  # nothing is written before the first record
    journal.append_txn(1, record(1))
    head = encode_record(TYPE_HEAD, struct.pack(">BI", FORMAT_VERSION, 0) + bytes(32))
    assert bytes(storage.data) == (head + head + txn_frame(1, record(1))
                                   + mark_frame(1, digest(record(1))))


def test_ack_beyond_the_last_record_frees_only_what_exists():
    journal = Journal(MemoryStorage())
    journal.append_txn(1, record(1))
    assert journal.ack_through(99) == 1
    assert journal.acked_through == 1
    journal.append_txn(2, record(2))
    assert seqs(journal) == [2]


def _history():
    """Appends and acks; returns (storage bytes, [(end of a TXN frame, seq, acked through)]).

    A record is durable once its TXN frame is whole: the MARK behind it (same append) only
    backs it up."""
    storage = MemoryStorage()
    journal = Journal(storage)
    marks = []
    for seq in range(1, 9):
        journal.append_txn(seq, record(seq))
        txn_end = len(storage.data) - len(mark_frame(seq, bytes(32)))
        marks.append((txn_end, seq, journal.acked_through))
        if seq % 3 == 0:
            journal.ack_through(seq - 1)
            marks.append((len(storage.data), seq, journal.acked_through))
    return bytes(storage.data), marks


def test_power_cut_at_every_byte_keeps_every_complete_record_in_order():
    data, marks = _history()
    for cut in range(len(data) + 1):
        journal = Journal(MemoryStorage(data[:cut]))
        durable_seq, acked = 0, 0
        for end, seq, acked_through in marks:
            if end <= cut:
                durable_seq, acked = seq, acked_through
        assert journal.last_seq == durable_seq, cut
        assert seqs(journal) == list(range(acked + 1, durable_seq + 1)), (cut, seqs(journal))
        for seq, body in journal.pending:
            assert body == record(seq)
        assert journal.corrupt_records == 0 and journal.lost == {}, cut


def test_recovered_journal_accepts_new_records_after_a_torn_tail():
    data, _ = _history()
    storage = MemoryStorage(data[:-5])
    journal = Journal(storage)
    assert journal.torn_bytes > 0
    journal.append_txn(journal.last_seq + 1, record(journal.last_seq + 1))
    again = Journal(storage)
    assert again.last_seq == journal.last_seq and again.torn_bytes == 0


# -- a flipped bit ------------------------------------------------------------------------
# The image: two heads (acked through 2), TXN + MARK for 3..8, an ACK through 3.
FLIP_LAST_SEQ = 8


def _flip_image():
    storage = MemoryStorage()
    journal = Journal(storage)
    for seq in range(1, 7):
        journal.append_txn(seq, record(seq))
    journal.ack_through(2)
    journal.compact()
    for seq in range(7, FLIP_LAST_SEQ + 1):
        journal.append_txn(seq, record(seq))
    journal.ack_through(3)
    return bytes(storage.data)


def _spans(image):
    """seq -> (start, end) of its TXN frame, and (start, end) of the ACK frame."""
    spans = {}
    for seq in range(3, FLIP_LAST_SEQ + 1):
        frame = txn_frame(seq, record(seq))
        start = image.find(frame)
        spans[seq] = (start, start + len(frame))
    ack = encode_record(TYPE_ACK, struct.pack(">I", 3))
    assert image.endswith(ack)
    return spans, (len(image) - len(ack), len(image))


def _wrong_after_flip(image, offset, bit, spans, ack_span):
    """What recovery got wrong with one bit flipped, or None: every record the flip did not
    touch must be pending, the touched one reported lost under its own digest (sealed in its
    place), last_seq and last_digest unchanged; the rewritten journal says the same."""
    data = bytearray(image)
    data[offset] ^= 1 << bit
    hit = [seq for seq, (start, end) in spans.items() if start <= offset < end]
    acked = 2 if ack_span[0] <= offset < ack_span[1] else 3
    expected = []
    for seq in range(acked + 1, FLIP_LAST_SEQ + 1):
        expected.append((seq, notice(seq, digest(record(seq))) if seq in hit else record(seq)))
    storage = MemoryStorage(bytes(data))
    for attempt in ("recovered", "reopened"):
        journal = Journal(storage, notice)
        if journal.pending != expected:
            return "%s: pending %s" % (attempt, seqs(journal))
        if journal.last_seq != FLIP_LAST_SEQ:
            return "%s: last_seq %d" % (attempt, journal.last_seq)
        if journal.last_digest != digest(record(FLIP_LAST_SEQ)):
            return attempt + ": last_digest"
        lost = [seq for seq in hit if seq > acked]
        if sorted(journal.lost) != lost:
            return "%s: lost %s" % (attempt, sorted(journal.lost))
    if journal.corrupt_records or journal.torn_bytes:
        return "the rewritten journal is still damaged"
    return None


def test_a_flipped_bit_anywhere_loses_only_the_record_it_hit_and_reports_that_one():
    """Every bit of a multi-record image (heads, records, marks, an ack) on CPython; on
    MicroPython one bit per byte, the bit moving with the offset, so every byte and every
    bit position is hit (the whole test stays within a second there)."""
    image = _flip_image()
    spans, ack_span = _spans(image)
    cases = 0
    for offset in range(len(image)):
        bits = (offset % 8,) if IS_MICROPYTHON else range(8)
        for bit in bits:
            wrong = _wrong_after_flip(image, offset, bit, spans, ack_span)
            assert wrong is None, "byte %d bit %d: %s" % (offset, bit, wrong)
            cases += 1
    assert cases == len(image) * (1 if IS_MICROPYTHON else 8)


def test_a_record_lost_at_the_end_keeps_its_seq_and_the_next_record_chains_from_it():
    storage = MemoryStorage()
    journal = Journal(storage)
    for seq in range(1, 4):
        journal.append_txn(seq, record(seq))
    data = bytearray(storage.data)
    data[bytes(data).find(record(3)) + 5] ^= 0x10
    reopened = Journal(MemoryStorage(bytes(data)))
    assert reopened.lost == {3: digest(record(3))}
    assert seqs(reopened) == [1, 2]  # without a sealer the lost seq is only listed
    assert reopened.last_seq == 3 and reopened.last_digest == digest(record(3))
    reopened.append_txn(4, record(4))  # the next sale is 4, never a second 3


def test_a_lost_seq_stays_until_an_ack_covers_it_and_leaves_with_it():
    storage = MemoryStorage()
    journal = Journal(storage)
    for seq in range(1, 5):
        journal.append_txn(seq, record(seq))
    damaged = bytearray(storage.data)
    damaged[bytes(damaged).find(record(2)) + 1] ^= 0x01
    storage = MemoryStorage(bytes(damaged))
    journal = Journal(storage, notice)
    assert journal.corrupt_records == 1
    lost_notice = notice(2, digest(record(2)))
    assert journal.pending == [(1, record(1)), (2, lost_notice), (3, record(3)),
                               (4, record(4))]
    journal.append_txn(5, record(5))
    journal.compact()
    again = Journal(storage, notice)
    assert again.lost == {2: digest(record(2))} and again.corrupt_records == 0
    assert seqs(again) == [1, 2, 3, 4, 5]
    assert again.ack_through(2) == 2  # the record and the notice
    assert again.lost == {} and again.acked_digest == digest(record(2))
    assert seqs(Journal(storage, notice)) == [3, 4, 5]


def test_seqs_skipped_without_any_frame_are_lost_the_last_with_the_next_records_prev():
    fields = {"terminal": "T1", "merchant": "M1", "card": "04a1b2c3d4e5f6", "time": 1,
              "kind": txn.KIND_PURCHASE, "currency": "EUR", "amount_minor": 100,
              "card_value_minor": 100, "bonus_minor": 0, "points": 0,
              "auth_mode": txn.AUTH_OFFLINE}
    sealed, prev = [], txn.GENESIS_DIGEST
    for seq in range(1, 5):
        sealed.append(txn.seal(KEY, dict(fields, seq=seq, prev=prev)))
        prev = txn.digest(sealed[-1])
    head = encode_record(TYPE_HEAD, struct.pack(">BI", FORMAT_VERSION, 0) + bytes(32))
    # Records 2 and 3 are gone with their marks: two damaged stretches, more than one fault.
    data = head + head + txn_frame(1, sealed[0]) + mark_frame(1, txn.digest(sealed[0]))
    data += txn_frame(4, sealed[3]) + mark_frame(4, txn.digest(sealed[3]))
    journal = Journal(MemoryStorage(data))
    assert journal.lost == {2: UNKNOWN_DIGEST, 3: txn.digest(sealed[2])}
    assert seqs(journal) == [1, 4] and journal.last_seq == 4


def test_a_damaged_head_leaves_its_copy():
    storage = MemoryStorage()
    journal = Journal(storage)
    for seq in range(1, 4):
        journal.append_txn(seq, record(seq))
    journal.ack_through(3)
    journal.compact()  # two heads, nothing else
    for offset in range(len(storage.data)):
        data = bytearray(storage.data)
        data[offset] ^= 0x80
        reopened = Journal(MemoryStorage(bytes(data)))
        assert (reopened.last_seq, reopened.acked_through) == (3, 3), offset
        assert reopened.last_digest == digest(record(3)), offset


def test_a_format_1_journal_is_read_and_rewritten_in_format_2():
    chain = encode_record(TYPE_CHAIN, struct.pack(">I", 4) + digest(record(4)))
    data = chain + txn_frame(5, record(5)) + txn_frame(6, record(6))
    data += encode_record(TYPE_ACK, struct.pack(">I", 5))
    storage = MemoryStorage(data)
    journal = Journal(storage)
    assert seqs(journal) == [6] and journal.last_seq == 6 and journal.lost == {}
    assert journal.acked_digest == digest(record(5)) and journal.format == FORMAT_VERSION
    assert bytes(storage.data).startswith(
        encode_record(TYPE_HEAD, struct.pack(">BI", FORMAT_VERSION, 5) + digest(record(5))))
    again = Journal(storage)
    assert seqs(again) == [6] and again.last_digest == digest(record(6))


def test_a_journal_of_a_newer_format_is_refused_and_left_untouched():
    head = encode_record(TYPE_HEAD, struct.pack(">BI", FORMAT_VERSION + 1, 0) + bytes(32))
    storage = MemoryStorage(head + head + b"anything")
    error = expect_raises(JournalFormatUnknown, Journal, storage)
    assert error.reason == "journal_format_unknown"
    assert bytes(storage.data) == head + head + b"anything"


def test_full_journal_refuses_new_records_and_keeps_unsent_ones():
    journal = Journal(MemoryStorage(), bytes_max=600)
    seq = 0
    while True:
        try:
            journal.append_txn(seq + 1, record(seq + 1))
        except JournalFull as error:
            assert error.reason == "journal_full"
            break
        seq += 1
    assert seq >= 3 and seqs(journal) == list(range(1, seq + 1))
    journal.ack_through(seq)
    journal.append_txn(seq + 1, record(seq + 1))  # compaction made room
    assert seqs(journal) == [seq + 1]


def test_compaction_keeps_the_chain_head_and_pending_records():
    storage = MemoryStorage()
    journal = Journal(storage)
    for seq in range(1, 6):
        journal.append_txn(seq, record(seq))
    journal.ack_through(4)
    journal.compact()
    reopened = Journal(storage)
    assert reopened.acked_through == 4
    assert reopened.acked_digest == digest(record(4))
    assert seqs(reopened) == [5]
    assert reopened.last_digest == digest(record(5))


def test_a_record_under_a_seq_already_taken_is_not_trusted():
    head = encode_record(TYPE_HEAD, struct.pack(">BI", FORMAT_VERSION, 0) + bytes(32))
    data = head + head + txn_frame(1, record(1)) + mark_frame(1, digest(record(1)))
    data += txn_frame(1, record(2))
    journal = Journal(MemoryStorage(data))
    assert journal.pending == [(1, record(1))] and journal.corrupt_records == 1
    expect_raises(AssertionError, journal.append_txn, 3, record(3))


def test_power_cut_during_compaction_leaves_the_old_journal_whole():
    storage = MemoryStorage()
    journal = Journal(storage)
    for seq in range(1, 5):
        journal.append_txn(seq, record(seq))
    journal.ack_through(2)
    before = bytes(storage.data)
    storage.cut_after_bytes = 10
    expect_raises(PowerCut, journal.compact)
    assert bytes(storage.data) == before
    reopened = Journal(MemoryStorage(before))
    assert seqs(reopened) == [3, 4] and reopened.last_seq == 4


def test_power_cut_inside_an_append_loses_only_that_unacknowledged_record():
    storage = MemoryStorage()
    journal = Journal(storage)
    journal.append_txn(1, record(1))
    storage.cut_after_bytes = 7
    expect_raises(PowerCut, journal.append_txn, 2, record(2))
    reopened = Journal(MemoryStorage(bytes(storage.data)))
    assert seqs(reopened) == [1] and reopened.torn_bytes == 7 and reopened.lost == {}
