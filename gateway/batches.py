"""Settlement batches in the gateway's store: opened, read, closed.

`open_batch` assigns all unbatched accepted records to a new batch id in one transaction;
the batch is re-sent with the same id and content until the ledger confirms; only then is
it closed as settled (or refused). A crash between the two re-sends the same batch, which
the ledger recognises as a duplicate (gateway/settle.py).

Quarantine: a record the ledger refused stands alone in a batch closed as refused, whose
detail is the ledger's reason (`gateway.store_reports.quarantined`, `tilltap gateway
refusals`). `close_posted` puts there the transactions the ledger refused one by one in a
batch it posted; `split_batch` and `close_batch` lead there a batch the ledger refused whole.
"""

from __future__ import annotations

import json
import time
from typing import Any

from gateway.store import (
    BATCH_OPEN,
    BATCH_REFUSED,
    BATCH_SETTLED,
    BATCH_SPLIT,
    SETTLE_BATCH_TXN_MAX,
    STATUS_ACCEPTED,
    GatewayStore,
)


def open_batch(store: GatewayStore, gateway_id: str) -> str | None:
    """Assign unbatched accepted records to a new batch; None when there are none."""
    with store.transaction() as db:
        (count,) = db.execute(
            "SELECT COUNT(*) FROM records WHERE status = ? AND batch_id IS NULL",
            (STATUS_ACCEPTED,),
        ).fetchone()
        if count == 0:
            return None
        (last,) = db.execute("SELECT COALESCE(MAX(number), 0) FROM batches").fetchone()
        number = last + 1
        batch_id = f"{gateway_id}-{number:06d}"
        db.execute(
            "UPDATE records SET batch_id = ? WHERE rowid IN (SELECT rowid FROM records"
            " WHERE status = ? AND batch_id IS NULL ORDER BY rowid LIMIT ?)",
            (batch_id, STATUS_ACCEPTED, SETTLE_BATCH_TXN_MAX),
        )
        db.execute(
            "INSERT INTO batches (batch_id, number, status, txn_count, created_at)"
            " VALUES (?,?,?,?,?)",
            (batch_id, number, BATCH_OPEN, min(count, SETTLE_BATCH_TXN_MAX), time.time()),
        )
    return batch_id

def open_batches(store: GatewayStore) -> list[str]:
    rows = store.read("SELECT batch_id FROM batches WHERE status = ? ORDER BY number",
                      (BATCH_OPEN,))
    return [r[0] for r in rows]

def batch_records(store: GatewayStore, batch_id: str) -> list[tuple[dict[str, Any], str]]:
    """(fields, digest hex) of a batch's records, in journal order."""
    rows = store.read("SELECT fields, digest FROM records WHERE batch_id = ? ORDER BY rowid",
                      (batch_id,))
    return [(json.loads(text), bytes(digest).hex()) for text, digest in rows]

def batch_created(store: GatewayStore, batch_id: str) -> int:
    ((created,),) = store.read("SELECT created_at FROM batches WHERE batch_id = ?", (batch_id,))
    return int(created)

def close_batch(store: GatewayStore, batch_id: str, status: str,
                detail: str | None = None) -> None:
    with store.transaction() as db:
        db.execute(
            "UPDATE batches SET status = ?, settled_at = ?, detail = ? WHERE batch_id = ?",
            (status, time.time(), detail, batch_id),
        )


def close_posted(store: GatewayStore, gateway_id: str, batch_id: str,
                 refused: dict[str, tuple[str, str]]) -> list[str]:
    """Close a batch the ledger posted, in one store transaction, after moving each record it
    refused (`refused`: txn_id -> the ledger's reason and detail) alone into a new batch
    closed as refused: the quarantine a person works through. Returns the new batch ids."""
    now = time.time()
    quarantine = []
    with store.transaction() as db:
        (last,) = db.execute("SELECT COALESCE(MAX(number), 0) FROM batches").fetchone()
        for number, (txn_id, (reason, detail)) in enumerate(refused.items(), start=last + 1):
            new_id = f"{gateway_id}-{number:06d}"
            moved = db.execute("UPDATE records SET batch_id = ? WHERE batch_id = ? AND"
                               " txn_id = ?", (new_id, batch_id, txn_id)).rowcount
            assert moved == 1, "settle checked that the ledger named a record of this batch"
            db.execute("INSERT INTO batches (batch_id, number, status, txn_count, created_at,"
                       " settled_at, detail) VALUES (?,?,?,?,?,?,?)",
                       (new_id, number, BATCH_REFUSED, 1, now, now,
                        f"{reason}: {detail} (in ledger batch {batch_id})"))
            quarantine.append(new_id)
        db.execute("UPDATE batches SET status = ?, settled_at = ?, detail = ? WHERE"
                   " batch_id = ?", (BATCH_SETTLED, now,
                                     " ".join(quarantine) if quarantine else None, batch_id))
    return quarantine


def split_batch(store: GatewayStore, gateway_id: str, batch_id: str) -> list[str]:
    """A batch the ledger refused whole (its envelope: too large, say), cut in two: its
    records (in journal order) move to two new open batches and it is closed as split.
    Returns the new ids, or [] for a batch of one record (that record is the one the
    ledger refuses: it stays, to be refused)."""
    with store.transaction() as db:
        rows = [row[0] for row in db.execute(
            "SELECT rowid FROM records WHERE batch_id = ? ORDER BY rowid", (batch_id,))]
        if len(rows) < 2:
            return []
        (last,) = db.execute("SELECT COALESCE(MAX(number), 0) FROM batches").fetchone()
        halves = (rows[: len(rows) // 2], rows[len(rows) // 2 :])
        new_ids = []
        for number, part in enumerate(halves, start=last + 1):
            new_id = f"{gateway_id}-{number:06d}"
            db.executemany("UPDATE records SET batch_id = ? WHERE rowid = ?",
                           [(new_id, rowid) for rowid in part])
            db.execute("INSERT INTO batches (batch_id, number, status, txn_count, created_at)"
                       " VALUES (?,?,?,?,?)", (new_id, number, BATCH_OPEN, len(part),
                                               time.time()))
            new_ids.append(new_id)
        db.execute("UPDATE batches SET status = ?, settled_at = ?, detail = ? WHERE"
                   " batch_id = ?", (BATCH_SPLIT, time.time(), " ".join(new_ids), batch_id))
    return new_ids
