"""(b) Every transaction published twice and out of order is posted exactly once."""

from __future__ import annotations

import random
from pathlib import Path

from protocol import txn
from tests.support.stack import RawTerminal, running_stack, wait_until
from tests.support.store_broker import StoreBroker

PURCHASES = 30


def test_each_record_sent_twice_in_shuffled_order_is_posted_once(
    store_broker: StoreBroker, tmp_path: Path
) -> None:
    with running_stack(store_broker, tmp_path, ["T1"]) as stack:
        raw = RawTerminal(store_broker, "T1", stack.keys["T1"])
        card = "04a0a1a2a3a4a5"
        records = [raw.approved(txn.KIND_ISSUE, card, 10_000, program="gift")]
        records += [raw.record(txn.KIND_PURCHASE, card, 100 + i) for i in range(PURCHASES)]
        doubled = records * 2
        random.Random(7).shuffle(doubled)
        for record in doubled:
            raw.publish(record)
        assert wait_until(lambda: raw.acked_through() == len(records)), raw.acked_through()
        assert wait_until(lambda: stack.gateway.stats.snapshot().get("duplicates", 0)
                          == len(records)), stack.gateway.stats.snapshot()
        settled = stack.gateway.settle()
        assert settled.posted == len(records)
        totals = stack.ledger_client.terminal_totals()["T1"]
        assert totals["count"] == len(records)
        spent = sum(100 + i for i in range(PURCHASES))
        assert stack.ledger_client.card(card)["value_minor"] == 10_000 - spent
        # Settling again posts nothing new.
        assert stack.gateway.settle().posted == 0
        assert stack.ledger_client.terminal_totals()["T1"]["count"] == len(records)
        raw.close()
