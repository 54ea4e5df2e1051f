"""Expire records: value and points that expired on a card with no operation that day.

The gateway's expiry sweep (`Gateway.sweep_expiry`, before every settlement) lets time pass
on idle cards with the program engine; what expired is written as a record of the gateway's
own, settled like any other (the ledger's breakage). Its terminal id is the gateway id with a
dot suffix, which no terminal id can have, so it never meets a terminal's chain.
"""

from __future__ import annotations

import hashlib
from typing import Any

from gateway.cards import EFFECTS_FIELD
from gateway.store import STATUS_ACCEPTED, StoredRecord, fields_to_json
from protocol import txn

EXPIRY_SEQ = "expiry.seq"  # store counter: the expire records the gateway wrote

def expire_record(gateway_id: str, seq: int, card: str, entry: dict[str, Any],
                  effects: dict[str, Any], now_s: float) -> StoredRecord:
    """The stored record of what expired on `card` (its card-book entry) at `now_s`."""
    terminal = txn.expiry_terminal(gateway_id)
    value = effects.get("value_expired", 0)
    points = effects.get("points_expired", 0)
    fields: dict[str, Any] = {
        "terminal": terminal, "seq": seq, "time": int(now_s),
        "merchant": entry["merchant"] or gateway_id, "card": card,
        "kind": txn.KIND_EXPIRE, "currency": entry["currency"], "amount_minor": value,
        "card_value_minor": value, "bonus_minor": 0, "points": points,
        "program": entry["program"], "auth_mode": txn.AUTH_ONLINE,
        EFFECTS_FIELD: {"card_value_minor": value, "bonus_minor": 0, "points": points,
                        "version": effects["version"], "legs": effects["legs"]},
    }
    # No sealed bytes: the digest is of the fields, so a record is still told from another.
    digest = hashlib.sha256(fields_to_json(fields).encode()).digest()
    return StoredRecord(terminal, seq, txn.txn_id(terminal, seq), digest, b"", fields,
                        STATUS_ACCEPTED, None)
