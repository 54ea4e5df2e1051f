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
    with running_stack(private_mosquitto, tmp_path, ["T1", "T2"], LIMITS) as stack:
        sims = [SimulatedTerminal(stack.terminal_config(name), tmp_path, private_mosquitto.host,
                                  private_mosquitto.port, seed)
                for seed, name in enumerate(("T1", "T2"))]
        first, second = (sim.terminal for sim in sims)
        try:
            for sim in sims:
                sim.terminal.auth_timeout_ms = 300
                sim.service(0)
                # The retained, sealed configuration arrives and carries the limits.
                assert wait_until(lambda s=sim: (s.service(20), s.settings.version)[1] == 1)
                assert sim.settings.limits == LIMITS
            for card, value in ((CARD_A, 2500), (CARD_B, 10_000)):
                sims[0].tap(card)
                assert first.issue("gift", value)["approved"]
            assert sims[0].drain(time.monotonic() + 10)
            sims[1].tap(CARD_A)
            assert second.inquiry()["response"]["value_minor"] == 2500  # T2 has seen card A

            stack.gateway.stop()  # the store's gateway goes down; the broker stays up

            def sell(sim: SimulatedTerminal, card: str, amount: int) -> str | None:
                sim.tap(card)
                outcome = sim.terminal.purchase(amount)
                if outcome["approved"]:
                    assert outcome["txn"]["auth_mode"] == txn.AUTH_OFFLINE
                    return None
                return str(outcome["reason"])

            till = sims[0]
            assert sell(till, CARD_A, 2000) is None
            assert sell(till, CARD_A, 2000) == "offline_card_limit"
            assert sell(till, CARD_B, 2500) == "offline_amount_limit"
            assert sell(till, CARD_B, 1500) is None
            assert sell(till, STRANGER, 100) == "offline_card_unknown"
            # Within the card's offline total (2900 of 3000) but beyond its value: the bound.
            assert sell(till, CARD_A, 900) == "insufficient_value"
            assert sell(till, CARD_A, 500) is None  # card A spent to zero at T1
            assert sell(till, CARD_B, 1001) == "offline_terminal_limit"  # 4000 + 1001
            till.tap(CARD_B)
            assert first.topup(1000)["reason"] == "host_unavailable"
            assert first.journal.depth == 3
            # T2 cannot know what T1 spent: its bound is its own last answer. The overdraft
            # this allows (at most min(2500, card_offline_minor_max) per terminal that saw
            # the card, docs/protocol.md 5.4) is what exposure reports.
            assert sell(sims[1], CARD_A, 900) is None

            stack.gateway = stack.new_gateway()
            stack.gateway.start()
            for sim in sims:
                assert sim.drain(time.monotonic() + 20)
            stack.gateway.settle()
            assert stack.ledger_client.card(CARD_A)["value_minor"] == 2500 - 3400
            assert stack.ledger_client.card(CARD_B)["value_minor"] == 10_000 - 1500
            exposure = stack.gateway.snapshot()["exposure"]
            assert exposure == {"cards": {CARD_A: 900}, "terminals": {"T2": 900}}
            # The center blocks the overdrawn card for every store.
            assert stack.ledger_client.card(CARD_A)["blocked"] is True
            by_kind = stack.ledger_client.terminal_totals()["T1"]["by_kind"]
            assert by_kind["purchase"]["count"] == 3
            # Kept with the records: a restarted gateway, and the operator's command, see it.
            stack.gateway.stop()
            stack.gateway = stack.new_gateway()
            stack.gateway.start()
            assert stack.gateway.snapshot()["exposure"] == exposure
            assert main(["gateway", "exposure", "--db", str(tmp_path / "gateway.db")]) == 0
            assert capsys.readouterr().out == (
                f"scope,id,exposure_minor\ncard,{CARD_A},900\nterminal,T2,900\n")
        finally:
            for sim in sims:
                sim.close()
