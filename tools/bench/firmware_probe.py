# mypy: disable-error-code="attr-defined,name-defined"
# (MicroPython-only script: gc.mem_alloc, time.ticks_us; ROUNDS_TEXT is prepended by the bench)
"""Runs on real MicroPython: cost of one terminal transaction against one bare HMAC-SHA256.

Prints one JSON line. The transaction path is what a terminal does after the authorization
answer: build the fields, seal them (deterministic CBOR + COSE_Mac0), journal the record.
Peak heap is measured with the collector disabled, so every byte the path allocates stays
allocated: the figure is an upper bound of the heap high-water mark of one transaction.
Times are CPU time where the port can tell it (the WebAssembly port under Node: the
process's user + system microseconds, which other work on a loaded host does not inflate as
it does wall time; its ticks_us counts whole milliseconds), else time.ticks_us. Each is the best
of BATCHES batches, and the HMAC runs HMAC_ROUNDS_PER_ROUND times as often as the path (it
costs about a twentieth as much), so both batches last long enough to measure.
"""

import gc
import json
import time

from firmware.journal import Journal
from firmware.storage import FileStorage
from protocol import txn
from protocol.hmac256 import hmac_sha256

ROUNDS = int(ROUNDS_TEXT)  # noqa: F821 (set by the bench before this file)
BATCHES = 3
HMAC_ROUNDS_PER_ROUND = 20
KEY = bytes(range(32))


def fields(seq, prev):
    return {
        "terminal": "T1", "seq": seq, "prev": prev, "time": 1763900000, "merchant": "M1",
        "card": "04aabbccddeeff", "kind": txn.KIND_PURCHASE, "currency": "EUR",
        "amount_minor": 1250, "card_value_minor": 1250, "bonus_minor": 0, "points": 12,
        "auth_mode": txn.AUTH_ONLINE, "auth_id": "a1",
    }


def one_transaction(journal):
    record = txn.seal(KEY, fields(journal.last_seq + 1, journal.last_digest))
    journal.append_txn(journal.last_seq + 1, record)
    journal.ack_through(journal.last_seq)  # keep the journal small, as acks would
    return record


try:
    import js

    def elapsed_us(start):
        usage = js.process.cpuUsage()
        return usage.user + usage.system - start

    def start_us():
        return elapsed_us(0)
except ImportError:  # a board: wall time

    def elapsed_us(start):
        return time.ticks_diff(time.ticks_us(), start)

    def start_us():
        return time.ticks_us()


def best_us(step, rounds):
    """The least mean time of one `step()` over BATCHES batches of `rounds` calls."""
    best = None
    for _ in range(BATCHES):
        start = start_us()
        for _ in range(rounds):
            step()
        mean = elapsed_us(start) / rounds
        best = mean if best is None else min(best, mean)
    return best


journal = Journal(FileStorage("/bench.journal"))
record = one_transaction(journal)

gc.collect()
gc.disable()
before = gc.mem_alloc()
one_transaction(journal)
peak = gc.mem_alloc() - before
gc.enable()
gc.collect()

txn_us = best_us(lambda: one_transaction(journal), ROUNDS)
payload_bytes = record  # the same number of bytes the transaction path MACs and writes
hmac_us = best_us(lambda: hmac_sha256(KEY, payload_bytes), ROUNDS * HMAC_ROUNDS_PER_ROUND)

print(json.dumps({"peak_heap_bytes": peak, "txn_us": txn_us, "hmac_us": hmac_us,
                  "record_bytes": len(record), "rounds": ROUNDS}))
