"""Every reason a record can be refused for after its MAC verified: the signed ack names its
seq with that reason, the seq is consumed, and the terminal's next record is accepted
(docs/protocol.md section 5.1, rows 7-9). One terminal, one chain, over Mosquitto."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway import store_reports
from protocol import txn
from tests.support.stack import RawTerminal, running_stack, wait_until
from tests.support.store_broker import StoreBroker
from tools import cli

GIFT, LOYALTY = "04a0a1a2a3a4a5", "04b0b1b2b3b4b5"


class Chain:
    """Records of one terminal, sealed as given (right or wrong), chained by digest."""

    def __init__(self, raw: RawTerminal) -> None:
        self.raw = raw

    def fields(self, kind: int, card: str, amount: int, **extra: Any) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "terminal": "T1", "seq": self.raw.seq + 1, "prev": self.raw.prev,
            "time": int(time.time()), "merchant": "M1", "card": card, "kind": kind,
            "currency": "EUR", "amount_minor": amount, "card_value_minor": 0,
            "bonus_minor": 0, "points": 0, "auth_mode": txn.AUTH_ONLINE}
        fields.update(extra)
        return {name: value for name, value in fields.items() if value is not None}

    def send(self, fields: dict[str, Any], extra_keys: dict[int, Any] | None = None) -> int:
        return self.raw.send_by_hand(fields, extra_keys)


def test_each_refusal_is_acked_with_its_seq_and_the_next_record_is_accepted(
    store_broker: StoreBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_stack(store_broker, tmp_path, ["T1"]) as stack:
        raw = RawTerminal(store_broker, "T1", stack.keys["T1"])
        chain = Chain(raw)
        issue = chain.fields(txn.KIND_ISSUE, GIFT, 5000, card_value_minor=5000, program="gift",
                             auth_id=raw.approval(txn.KIND_ISSUE, GIFT, 5000, program="gift"))
        chain.send(issue)
        chain.send(chain.fields(txn.KIND_ISSUE, LOYALTY, 0, program="loyalty"))
        assert wait_until(lambda: raw.acked_through() == 2)
        now = int(time.time())
        purchase = txn.KIND_PURCHASE
        f = chain.fields
        # Each case is built when its turn comes: its seq and prev follow what went before.
        cases: list[tuple[str, Callable[[], dict[str, Any]], dict[int, Any] | None]] = [
            ("field_invalid", lambda: f(purchase, GIFT, 100), {99: 1}),
            ("field_missing", lambda: {k: v for k, v in f(purchase, GIFT, 100).items()
                                       if k != "card"}, None),
            ("currency_unknown", lambda: f(purchase, GIFT, 100, currency="XXZ"), None),
            ("amount_invalid", lambda: f(purchase, GIFT, 100, card_value_minor=200), None),
            ("kind_unknown", lambda: f(9, GIFT, 100), None),
            ("topic_mismatch", lambda: f(purchase, GIFT, 100, merchant="M9"), None),
            ("time_invalid", lambda: f(purchase, GIFT, 100, time=now + 3600), None),
            ("chain_broken", lambda: f(purchase, GIFT, 100, prev=b"\x07" * 32), None),
            ("rule_mismatch", lambda: f(purchase, LOYALTY, 1000, points=999), None),
            ("card_unknown", lambda: f(purchase, "04ffffffffffff", 100,
                                       card_value_minor=100), None),
            ("card_exists", lambda: f(txn.KIND_ISSUE, GIFT, 0, program="gift"), None),
            ("program_unknown", lambda: f(txn.KIND_ISSUE, "04eeeeeeeeeeee", 0,
                                          program="nosuch"), None),
            ("currency_mismatch", lambda: f(purchase, GIFT, 100, currency="USD",
                                            card_value_minor=100), None),
            ("refund_unknown_original", lambda: f(txn.KIND_REFUND, GIFT, 100,
                                                  ref="T1-999"), None),
            ("cash_out_not_allowed", lambda: f(txn.KIND_CASHOUT, GIFT, 100,
                                               card_value_minor=100), None),
            ("insufficient_points", lambda: f(purchase, LOYALTY, 1000, redeem_points=500,
                                              redeem_minor=500), None),
            # An approval "from before a restart" that was never given: a stolen key's door.
            ("auth_unknown", lambda: f(purchase, GIFT, 100, card_value_minor=100,
                                       auth_id="a0-12345"), None),
            ("auth_unknown", lambda: f(purchase, GIFT, 100, card_value_minor=100,
                                       auth_mode=txn.AUTH_STAND_IN), None),  # no stand-in
            # What no terminal keeping its signed rules does alone (its limits here are 0).
            ("offline_kind_invalid", lambda: f(txn.KIND_TOPUP, GIFT, 100, card_value_minor=100,
                                               auth_mode=txn.AUTH_OFFLINE), None),
            ("offline_amount_limit", lambda: f(purchase, GIFT, 100, card_value_minor=100,
                                               auth_mode=txn.AUTH_OFFLINE), None),
            ("redeem_needs_online", lambda: f(purchase, LOYALTY, 1000, redeem_points=10,
                                              redeem_minor=10, auth_mode=txn.AUTH_OFFLINE),
             None),
        ]
        expected: set[tuple[int, str]] = set()
        for reason, build, extra_keys in cases:
            expected.add((chain.send(build(), extra_keys), reason))
            # The next record follows the refused one (its digest), whatever it was.
            good = chain.send(chain.fields(purchase, GIFT, 10, card_value_minor=10))
            assert wait_until(lambda good=good: raw.acked_through() == good), (reason, good)

        def rejected() -> set[tuple[int, str]]:
            return {(seq, reason) for ack in raw.acks() for seq, reason in ack["rejected"]}

        assert wait_until(lambda: rejected() == expected), rejected() ^ expected
        assert not raw.notices()  # all of them signed acks, no notice
        refused = store_reports.refusals(stack.gateway.store)
        assert {(r["seq"], r["reason"]) for r in refused} == expected
        # The report a person reads, from the gateway's file while it runs.
        assert cli.main(["gateway", "refusals", "--db", str(tmp_path / "gateway.db"),
                         "--format", "json"]) == 0
        rows = json.loads(capsys.readouterr().out)["rows"]
        assert {(row["txn_id"], row["reason"]) for row in rows} == {
            (f"T1-{seq}", reason) for seq, reason in expected}
        assert cli.main(["gateway", "refusals", "--db", str(tmp_path / "gateway.db")]) == 0
        csv = capsys.readouterr().out.splitlines()
        assert csv[0].startswith("txn_id,terminal,seq,reason") and len(csv) == 1 + len(cases)
        stack.gateway.settle()
        assert stack.ledger_client.card(GIFT)["value_minor"] == 5000 - 10 * len(cases)
        assert stack.ledger_client.terminal_totals()["T1"]["count"] == 2 + len(cases)
        raw.close()
