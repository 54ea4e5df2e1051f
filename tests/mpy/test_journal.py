"""The terminal journal: durable append, ack, compaction, torn writes and corruption.
Runs on CPython and real MicroPython against the in-memory storage fake."""

import hashlib

from firmware.crc32 import crc32, crc32_portable
from firmware.journal import TYPE_TXN, Journal, JournalFull, encode_record
from firmware.storage import MemoryStorage, PowerCut
from mpytest import expect_raises


def record(seq):
    return ("sealed-record-%04d" % seq).encode() * 3


def test_crc32_check_value():
    assert crc32(b"123456789") == 0xCBF43926
    assert crc32_portable(b"123456789") == 0xCBF43926


def test_appended_records_survive_a_reopen_until_acked():
    storage = MemoryStorage()
    journal = Journal(storage)
    for seq in range(1, 6):
        journal.append_txn(seq, record(seq))
    assert journal.ack_through(3) == 3
    reopened = Journal(storage)
    assert [seq for seq, _ in reopened.pending] == [4, 5]
    assert reopened.last_seq == 5
    assert reopened.last_digest == hashlib.sha256(record(5)).digest()


def test_ack_beyond_the_last_record_frees_only_what_exists():
    journal = Journal(MemoryStorage())
    journal.append_txn(1, record(1))
    assert journal.ack_through(99) == 1
    assert journal.acked_through == 1
    journal.append_txn(2, record(2))
    assert [seq for seq, _ in journal.pending] == [2]


def _history():
    """A run of appends and acks; returns (storage bytes, [(end offset, seqs durable, acked)])."""
    storage = MemoryStorage()
    journal = Journal(storage)
    marks = []
    for seq in range(1, 9):
        journal.append_txn(seq, record(seq))
        marks.append((len(storage.data), seq, journal.acked_through))
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
        seqs = [seq for seq, _ in journal.pending]
        assert seqs == list(range(acked + 1, durable_seq + 1)), (cut, seqs)
        for seq, body in journal.pending:
            assert body == record(seq)
        assert journal.corrupt_records == 0


def test_recovered_journal_accepts_new_records_after_a_torn_tail():
    data, _ = _history()
    storage = MemoryStorage(data[:-5])
    journal = Journal(storage)
    assert journal.torn_bytes > 0
    journal.append_txn(journal.last_seq + 1, record(journal.last_seq + 1))
    again = Journal(storage)
    assert again.last_seq == journal.last_seq and again.torn_bytes == 0


def test_corrupt_record_in_the_middle_is_skipped_counted_and_not_trusted():
    storage = MemoryStorage()
    journal = Journal(storage)
    for seq in range(1, 4):
        journal.append_txn(seq, record(seq))
    data = bytearray(storage.data)
    data[20] ^= 0xFF  # inside record 1's body: its CRC no longer matches
    reopened = Journal(MemoryStorage(bytes(data)))
    assert reopened.corrupt_records >= 1
    # Records 2 and 3 no longer continue a chain from a trusted record 1: not trusted either.
    assert reopened.pending == [] and reopened.last_seq == 0


def test_full_journal_refuses_new_records_and_keeps_unsent_ones():
    journal = Journal(MemoryStorage(), bytes_max=400)
    seq = 0
    while True:
        try:
            journal.append_txn(seq + 1, record(seq + 1))
        except JournalFull as error:
            assert error.reason == "journal_full"
            break
        seq += 1
    assert seq >= 3 and [s for s, _ in journal.pending] == list(range(1, seq + 1))
    journal.ack_through(seq)
    journal.append_txn(seq + 1, record(seq + 1))  # compaction made room
    assert [s for s, _ in journal.pending] == [seq + 1]


def test_compaction_keeps_the_chain_head_and_pending_records():
    storage = MemoryStorage()
    journal = Journal(storage)
    for seq in range(1, 6):
        journal.append_txn(seq, record(seq))
    journal.ack_through(4)
    journal.compact()
    reopened = Journal(storage)
    assert reopened.acked_through == 4
    assert reopened.acked_digest == hashlib.sha256(record(4)).digest()
    assert [s for s, _ in reopened.pending] == [5]
    assert reopened.last_digest == hashlib.sha256(record(5)).digest()


def test_records_that_skip_a_sequence_number_are_not_trusted():
    data = encode_record(TYPE_TXN, b"\x00\x00\x00\x01" + record(1))
    data += encode_record(TYPE_TXN, b"\x00\x00\x00\x03" + record(3))
    journal = Journal(MemoryStorage(data))
    assert journal.last_seq == 1 and journal.corrupt_records == 1
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
    assert [s for s, _ in reopened.pending] == [3, 4] and reopened.last_seq == 4


def test_power_cut_inside_an_append_loses_only_that_unacknowledged_record():
    storage = MemoryStorage()
    journal = Journal(storage)
    journal.append_txn(1, record(1))
    storage.cut_after_bytes = 7
    expect_raises(PowerCut, journal.append_txn, 2, record(2))
    reopened = Journal(MemoryStorage(bytes(storage.data)))
    assert [s for s, _ in reopened.pending] == [1] and reopened.torn_bytes == 7
