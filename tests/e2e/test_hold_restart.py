"""No hold outlives a gateway restart (issue 15, durable holds): the gateway, its own process,
is killed (SIGKILL) after approving four purchases and before their records arrive. Restarted,
it holds the approvals again: the two records that come post their ledger holds at
settlement, and the ledger holds of the two that never come are voided within the documented
bound (placed + hold_ttl_s + VOID_SWEEP_INTERVAL_S, docs/architecture.md), not a day later.
At the end the ledger holds nothing open and the card's available value is its value."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from gateway.ledger_holds import VOID_SWEEP_INTERVAL_S
from gateway.registry import TerminalRegistry
from ledger.client import LedgerClient
from ledger.errors import NotFound
from ledger.server import serve
from protocol import txn
from tests.support.gateway_process import start_gateway
from tests.support.stack import wait_until
from tools.demo import DEMO_PROGRAMS
from tools.mosquitto import MosquittoBroker
from tools.simulator.terminal import SimulatedTerminal

GIFT = "04d0d1d2d3d4d5"
HOLD_TTL_S = 8.0  # the shortest the gateway takes: over 3 x its ledger timeout (2 s)
BOUND_SLACK_S = 3.0  # a restart, one void call, the test's polling


def _gateway(broker: MosquittoBroker, workdir: Path, ledger_url: str) -> subprocess.Popen[str]:
    return start_gateway(broker, workdir, "--ledger-url", ledger_url, "--hold-ttl-s",
                         str(HOLD_TTL_S), "--settle-every-s", "1")


def _authorize(sim: SimulatedTerminal, amount: int, seq: int) -> dict[str, Any]:
    request = {"card": GIFT, "kind": txn.KIND_PURCHASE, "currency": "EUR",
               "amount_minor": amount, "card_value_minor": amount, "seq": seq}
    response = sim.uplink.authorize(request, 3000)
    assert response is not None and response["approved"], response
    assert response.get("auth_mode", txn.AUTH_ONLINE) == txn.AUTH_ONLINE
    return response


def _known(ledger: LedgerClient) -> bool:
    try:
        return ledger.card(GIFT)["value_minor"] == 10_000
    except NotFound:
        return False


def test_after_a_restart_every_hold_is_posted_by_its_record_or_voided_within_the_bound(
    private_mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    registry = TerminalRegistry()
    key = os.urandom(32)
    registry.add("T1", "M1", key)
    registry.save(tmp_path / "terminals.json")
    (tmp_path / "programs.json").write_text(json.dumps(DEMO_PROGRAMS))
    config = {"terminal": "T1", "merchant": "M1", "key": key, "currency": "EUR",
              "programs": DEMO_PROGRAMS}
    ledger_server = serve(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger = LedgerClient(ledger_server.url)
    gateway = _gateway(private_mosquitto, tmp_path, ledger_server.url)
    sim = SimulatedTerminal(config, tmp_path, private_mosquitto.host, private_mosquitto.port)
    try:
        sim.service(0)
        sim.tap(GIFT)
        assert sim.terminal.issue("gift", 10_000)["approved"]
        assert sim.drain(time.monotonic() + 10)
        assert wait_until(lambda: _known(ledger))  # settled: purchases are held there

        first = sim.journal.last_seq + 1
        authorized_at = time.time()
        coming = [(_authorize(sim, amount, first + n), amount)
                  for n, amount in enumerate((1000, 2000))]
        never = [_authorize(sim, amount, first + 2 + n) for n, amount in enumerate((1500, 2500))]
        assert ledger.card(GIFT)["held_minor"] == 7000

        gateway.send_signal(signal.SIGKILL)
        gateway.wait()
        for response, amount in coming:  # journaled while the gateway is down
            fields = sim.terminal._build(txn.KIND_PURCHASE, GIFT, amount, amount, response, None)
            sim.terminal._commit(fields)
        gateway = _gateway(private_mosquitto, tmp_path, ledger_server.url)
        assert sim.drain(time.monotonic() + 10)

        def status(response: dict[str, Any]) -> str:
            found: str = ledger.hold(f"gw1-{response['auth_id']}")["status"]
            return found

        # (a) The records that came after the restart post their holds at settlement.
        assert wait_until(lambda: all(status(r) == "posted" for r, _ in coming))
        # (b) The holds whose records never come are voided within the bound.
        bound_s = authorized_at + HOLD_TTL_S + VOID_SWEEP_INTERVAL_S + BOUND_SLACK_S
        assert wait_until(lambda: all(status(r) == "voided" for r in never),
                          max(bound_s - time.time(), 0.0)), [status(r) for r in never]
        assert ledger.hold_totals().get("open", 0) == 0
        card = ledger.card(GIFT)
        assert (card["value_minor"], card["held_minor"]) == (7000, 0)
        assert card["available_minor"] == card["value_minor"]
        assert sim.journal.depth == 0
        gateway.send_signal(signal.SIGTERM)
        assert gateway.wait(20) == 0
    finally:
        sim.close()
        if gateway.poll() is None:
            gateway.kill()
        ledger_server.stop()
