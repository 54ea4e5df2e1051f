"""Settlement never lets one bad record hold back the others: a batch the ledger refuses is
halved until the records it refuses stand alone (quarantined, listed for a person); every
other record posts, each exactly once."""

from __future__ import annotations

import queue
from pathlib import Path
from typing import Any

from gateway import store_reports
from gateway.acks import AckOut
from gateway.cards import CardBook
from gateway.ingest import IngestStage
from gateway.registry import TerminalRegistry
from gateway.settle import settle
from gateway.stats import Stats
from gateway.store import GatewayStore
from gateway.verify import Verifier
from ledger.errors import LedgerRejected
from protocol import topics, txn
from tools.demo import DEMO_PROGRAMS

KEY = bytes(range(32))
NOW_S = 1_764_000_000
POISON_MINOR = 666  # the amount this fake ledger refuses


class PickyLedger:
    """Takes a batch whole, or refuses it whole if any transaction is poisoned."""

    def __init__(self) -> None:
        self.posted: list[str] = []
        self.calls = 0

    def post_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        self.calls += 1
        txns = batch["transactions"]
        if any(t["amount_minor"] == POISON_MINOR for t in txns):
            raise LedgerRejected("amount_invalid", "a poisoned transaction")
        self.posted += [t["txn_id"] for t in txns]
        return {"status": "posted", "posted": len(txns)}


def test_a_refused_batch_is_halved_until_only_the_bad_records_are_left(tmp_path: Path) -> None:
    registry = TerminalRegistry()
    registry.add("T1", "M1", KEY)
    store = GatewayStore(str(tmp_path / "gw.db"))
    stage = IngestStage(store, CardBook(DEMO_PROGRAMS), Stats(), queue.Queue(),
                        queue.Queue[AckOut | None]())
    verifier = Verifier(registry)
    records, prev = [], txn.GENESIS_DIGEST
    amounts = [5000] + [100 + n for n in range(20)]
    amounts[6] = amounts[15] = POISON_MINOR
    for seq, amount in enumerate(amounts, start=1):
        fields = {"terminal": "T1", "seq": seq, "prev": prev, "time": NOW_S, "merchant": "M1",
                  "card": "04a1", "currency": "EUR", "amount_minor": amount,
                  "card_value_minor": amount, "bonus_minor": 0, "points": 0,
                  "auth_mode": txn.AUTH_ONLINE}
        if seq == 1:
            fields.update(kind=txn.KIND_ISSUE, program="gift")
        else:
            fields.update(kind=txn.KIND_PURCHASE)
        record = txn.seal(KEY, fields)
        records.append(verifier.transaction(topics.up("M1", "T1", topics.LEAF_TXN), record,
                                            NOW_S))
        prev = txn.digest(record)
    stage.process(records)
    ledger = PickyLedger()
    result = settle(store, "gw1", ledger)  # type: ignore[arg-type]
    assert sorted(ledger.posted) == sorted(f"T1-{seq}" for seq in range(1, 22)
                                           if seq not in (7, 16))
    assert len(result.refused) == 2 and result.split > 0
    assert ledger.calls < 21  # halving, not one post per record
    assert [row["txn_id"] for row in store_reports.quarantined(store)] == ["T1-7", "T1-16"]
    assert all("amount_invalid" in row["reason"] for row in store_reports.quarantined(store))
    again = settle(store, "gw1", ledger)  # type: ignore[arg-type]
    assert again.posted == 0 and ledger.posted.count("T1-2") == 1  # nothing twice
    store.close()
