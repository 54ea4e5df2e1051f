"""What a person reads from a gateway's store: exposure, refusals, totals, batches.

Read-only queries over `GatewayStore.read`; the store itself keeps only what the gateway
writes and loads back.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.store import (
    BATCH_OPEN,
    BATCH_REFUSED,
    STATUS_ACCEPTED,
    STATUS_REJECTED,
    GatewayStore,
)

REFUSAL_COLUMNS = ("txn_id", "terminal", "seq", "reason", "kind", "card", "amount_minor",
                   "card_value_minor", "auth_mode", "auth_id", "time", "received_at")


def exposure(store: GatewayStore) -> tuple[dict[str, int], dict[str, int]]:
    """Value sales took beyond what their cards held (the engine's `overdraft_minor` kept
    with each accepted record), per card and per terminal: durable, so a restart does not
    forget the merchant's risk."""
    rows = store.read(
        "SELECT terminal, json_extract(fields, '$.card'),"
        " json_extract(fields, '$.effects.overdraft_minor') FROM records"
        " WHERE status = ? AND json_extract(fields, '$.effects.overdraft_minor') > 0",
        (STATUS_ACCEPTED,))
    by_card: dict[str, int] = {}
    by_terminal: dict[str, int] = {}
    for terminal, card, overdraft in rows:
        by_card[card] = by_card.get(card, 0) + overdraft
        by_terminal[terminal] = by_terminal.get(terminal, 0) + overdraft
    return by_card, by_terminal


def refusals(store: GatewayStore) -> list[dict[str, Any]]:
    """Every record stored as refused, oldest first: the report a person works through (the
    sale happened at the counter but is not in the books). Fields a record could not give
    (it broke the schema) are None."""
    rows = store.read(
        "SELECT txn_id, terminal, seq, reason, json_extract(fields, '$.kind'),"
        " json_extract(fields, '$.card'), json_extract(fields, '$.amount_minor'),"
        " json_extract(fields, '$.card_value_minor'),"
        " json_extract(fields, '$.auth_mode'), json_extract(fields, '$.auth_id'),"
        " json_extract(fields, '$.time'), received_at"
        " FROM records WHERE status = ? ORDER BY received_at, terminal, seq",
        (STATUS_REJECTED,))
    return [dict(zip(REFUSAL_COLUMNS, row, strict=True)) for row in rows]


def quarantined(store: GatewayStore) -> list[dict[str, Any]]:
    """Records accepted here that the ledger refused (each alone in a refused batch): sales
    in the gateway's books that are not in the ledger's, with the ledger's reason."""
    rows = store.read(
        "SELECT r.txn_id, r.terminal, r.seq, b.detail, json_extract(r.fields, '$.kind'),"
        " json_extract(r.fields, '$.card'), json_extract(r.fields, '$.amount_minor'),"
        " json_extract(r.fields, '$.card_value_minor'), json_extract(r.fields, '$.auth_mode'),"
        " json_extract(r.fields, '$.auth_id'), json_extract(r.fields, '$.time'), r.received_at"
        " FROM records r JOIN batches b ON r.batch_id = b.batch_id WHERE b.status = ?"
        " ORDER BY r.rowid", (BATCH_REFUSED,))
    return [dict(zip(REFUSAL_COLUMNS, row, strict=True)) for row in rows]


def totals_by_terminal(store: GatewayStore) -> dict[str, dict[str, Any]]:
    """Accepted records per terminal: count and sums, for reconciliation."""
    totals: dict[str, dict[str, Any]] = {}
    rows = store.read("SELECT terminal, fields FROM records WHERE status = ?", (STATUS_ACCEPTED,))
    for terminal, text in rows:
        fields = json.loads(text)
        entry = totals.setdefault(terminal, {"count": 0, "amount_minor": 0, "seqs": []})
        entry["count"] += 1
        entry["amount_minor"] += fields["amount_minor"]
        entry["seqs"].append(fields["seq"])
    return totals


def batch_summary(store: GatewayStore) -> dict[str, int]:
    """Settlement batches by status."""
    return dict(store.read("SELECT status, COUNT(*) FROM batches GROUP BY status"))


def unsettled_since(store: GatewayStore) -> float | None:
    """When the oldest accepted record the ledger has not confirmed was received (None:
    all settled): unbatched, or in a batch still open. Both reads use records_unbatched."""
    rows = store.read(
        "SELECT MIN(received_at) FROM records WHERE status = ? AND (batch_id IS NULL OR"
        " batch_id IN (SELECT batch_id FROM batches WHERE status = ?))",
        (STATUS_ACCEPTED, BATCH_OPEN))
    oldest = rows[0][0] if rows else None
    return None if oldest is None else float(oldest)
