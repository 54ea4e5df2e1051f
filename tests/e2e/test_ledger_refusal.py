"""One transaction the ledger refuses never blocks the others (issue 13: one bad record
blocked settlement for good), end to end and outside the fuzz campaign: the broker as a
store deploys it (TLS only, logins, ACL), the gateway logging in to it, and the ledger as its
own process (`tilltap ledger serve` with logins, over TLS with its CA pinned).

The gateway cannot know of what the ledger refuses here: while a card sold at the counter
waits to be settled, a technician registers the same card at the ledger in another currency
(`PUT /v1/cards`, a `cards` login). Settlement posts every other transaction of the batch;
the card's issue and sale are refused with their reasons, quarantined at the gateway
(`tilltap gateway refusals`, refused_by ledger) and kept in the ledger's quarantine; the
books reconcile, and the next sale settles as usual."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from gateway import store_reports
from gateway.registry import TerminalRegistry
from gateway.service import Gateway
from protocol import txn
from tests.support.ledger_process import LoginSpec, running_ledger
from tests.support.stack import RawTerminal, wait_until
from tests.support.store_broker import StoreBroker
from tools import cli
from tools.demo import DEMO_PROGRAMS

GIFT, DESK = "04d8d8d8d8d8d8", "04e8e8e8e8e8e8"
LOGINS = {
    "gw1": LoginSpec("gateway", gateway="gw1", terminals=("T1",), merchants=("M1",)),
    "office": LoginSpec("reader"),
    "tech": LoginSpec("cards", register_value_minor_max=10_000),
}


def _reason(row: dict[str, Any]) -> str:
    return str(row["reason"]).split(":", 1)[0]


def test_a_transaction_the_ledger_refuses_is_quarantined_and_the_rest_of_its_batch_posts(
    store_broker: StoreBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = os.urandom(32)
    registry = TerminalRegistry()
    registry.add("T1", "M1", key)
    store_broker.terminal_login("M1", "T1")
    with running_ledger(tmp_path, LOGINS) as ledger:
        gateway = Gateway("gw1", store_broker.host, store_broker.port,
                          str(tmp_path / "gateway.db"), registry, DEMO_PROGRAMS, ledger.url,
                          broker_login=store_broker.gateway_login, broker_ca=store_broker.ca,
                          ledger_token=ledger.tokens["gw1"], ledger_ca=ledger.ca)
        gateway.start()
        raw = RawTerminal(store_broker, "T1", key)
        try:
            raw.publish(raw.approved(txn.KIND_ISSUE, GIFT, 10_000, program="gift"))  # T1-1
            raw.publish(raw.record(txn.KIND_PURCHASE, GIFT, 300))  # T1-2
            raw.publish(raw.approved(txn.KIND_ISSUE, DESK, 5000, program="gift"))  # T1-3
            raw.publish(raw.record(txn.KIND_PURCHASE, DESK, 200))  # T1-4
            raw.publish(raw.record(txn.KIND_PURCHASE, GIFT, 400))  # T1-5
            assert wait_until(lambda: raw.acked_through() == 5)
            assert not [ack for ack in raw.acks() if ack["rejected"]]  # all taken here

            # Meanwhile, at the technician's desk: the same card, in dollars.
            ledger.client("tech").register_card(DESK, "gift", "USD", "M1", 5000)

            result = gateway.settle()
            refused = {"T1-3": "currency_mismatch", "T1-4": "currency_mismatch"}
            assert dict(result.refused) == refused
            assert result.posted == 3 and result.pending == []
            quarantined = store_reports.quarantined(gateway.store)
            # Kept as the ledger's "reason: detail" (tests/gateway/test_settle.py).
            assert {row["txn_id"]: _reason(row) for row in quarantined} == refused
            office = ledger.client("office")
            assert {row["txn_id"]: row["reason"] for row in office.refused_transactions()} == (
                refused)

            # The report a person works through, from the gateway's file while it runs.
            assert cli.main(["gateway", "refusals", "--db", str(tmp_path / "gateway.db"),
                             "--format", "json"]) == 0
            rows = json.loads(capsys.readouterr().out)["rows"]
            assert {(row["txn_id"], _reason(row), row["refused_by"]) for row in rows} == {
                (txn_id, reason, "ledger") for txn_id, reason in refused.items()}

            # The books reconcile: accepted at the gateway = posted + quarantined.
            accepted = store_reports.totals_by_terminal(gateway.store)["T1"]
            posted = office.terminal_totals()["T1"]
            assert accepted["count"] == posted["count"] + len(refused) == 5
            assert office.card(GIFT)["value_minor"] == 10_000 - 300 - 400
            desk = office.card(DESK)
            assert (desk["currency"], desk["value_minor"]) == ("USD", 5000)  # as registered
            assert not any(office.trial_balance().values())

            # Settlement goes on: the next sale posts, the quarantined ones are not resent.
            raw.publish(raw.record(txn.KIND_PURCHASE, GIFT, 500))
            assert wait_until(lambda: raw.acked_through() == 6)
            after = gateway.settle()
            assert (after.posted, after.refused, after.pending) == (1, [], [])
            assert office.card(GIFT)["value_minor"] == 10_000 - 300 - 400 - 500
            assert len(office.refused_transactions()) == len(refused)
        finally:
            raw.close()
            gateway.stop()
