"""Offline acceptance: within the signed limits a terminal sells while the gateway is down;
past a limit it declines with a reason the cashier can read; the offline sales settle when
the gateway is back, and any overdraft is reported as exposure per card and per terminal."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from protocol import txn
from tests.support.stack import running_stack, wait_until
from tools.cli import main
from tools.mosquitto import MosquittoBroker
from tools.simulator.terminal import SimulatedTerminal

LIMITS = {"txn_minor_max": 2000, "card_offline_minor_max": 3000,
          "terminal_offline_minor_max": 5000, "offline_s_max": 600, "offline_txn_max": 5}
CARD_A, CARD_B, STRANGER = "04f0f1f2f3f4f5", "04f6f7f8f9fafb", "04fcfdfeff0001"


def test_offline_sales_within_limits_settle_later_and_overdraft_is_exposure(
    private_mosquitto: MosquittoBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_stack(private_mosquitto, tmp_path, ["T1"], LIMITS) as stack:
        config = stack.terminal_config("T1")
        sim = SimulatedTerminal(config, tmp_path, private_mosquitto.host, private_mosquitto.port)
        terminal = sim.terminal
        terminal.auth_timeout_ms = 300
        try:
            sim.service(0)
            # The retained, sealed configuration arrives and carries the limits.
            assert wait_until(lambda: (sim.service(20), terminal.settings.version)[1] == 1)
            assert terminal.settings.limits == LIMITS
            for card, value in ((CARD_A, 2500), (CARD_B, 10_000)):
                sim.tap(card)
                assert terminal.issue("gift", value)["approved"]
            assert sim.drain(time.monotonic() + 10)

            stack.gateway.stop()  # the store's gateway goes down; the broker stays up

            def sell(card: str, amount: int) -> str | None:
                sim.tap(card)
                outcome = terminal.purchase(amount)
                if outcome["approved"]:
                    assert outcome["txn"]["auth_mode"] == txn.AUTH_OFFLINE
                    return None
                return str(outcome["reason"])

            assert sell(CARD_A, 2000) is None
            assert sell(CARD_A, 2000) == "offline_card_limit"
            assert sell(CARD_B, 2500) == "offline_amount_limit"
            assert sell(CARD_B, 1500) is None
            assert sell(STRANGER, 100) == "offline_card_unknown"
            assert sell(CARD_A, 900) is None  # card A: 2900 of 3000; A holds only 2500
            assert sell(CARD_B, 700) == "offline_terminal_limit"  # 4400 + 700 > 5000
            sim.tap(CARD_B)
            assert terminal.topup(1000)["reason"] == "host_unavailable"
            assert terminal.journal.depth == 3

            stack.gateway = stack.new_gateway()
            stack.gateway.start()
            assert sim.drain(time.monotonic() + 20)
            stack.gateway.settle()
            assert stack.ledger_client.card(CARD_A)["value_minor"] == 2500 - 2900
            assert stack.ledger_client.card(CARD_B)["value_minor"] == 10_000 - 1500
            exposure = stack.gateway.snapshot()["exposure"]
            assert exposure == {"cards": {CARD_A: 400}, "terminals": {"T1": 400}}
            by_kind = stack.ledger_client.terminal_totals()["T1"]["by_kind"]
            assert by_kind["purchase"]["count"] == 3
            # Kept with the records: a restarted gateway, and the operator's command, see it.
            stack.gateway.stop()
            stack.gateway = stack.new_gateway()
            stack.gateway.start()
            assert stack.gateway.snapshot()["exposure"] == exposure
            assert main(["gateway", "exposure", "--db", str(tmp_path / "gateway.db")]) == 0
            assert capsys.readouterr().out == (
                f"scope,id,exposure_minor\ncard,{CARD_A},400\nterminal,T1,400\n")
        finally:
            sim.close()
