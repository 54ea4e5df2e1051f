"""(d) The gateway killed (SIGKILL) and restarted mid-stream loses nothing and doubles nothing.

The gateway runs as its own process; simulated terminals keep selling while it is down
(authorizations then time out and are declined, which is correct). At the end every sale a
terminal approved is in the ledger exactly once.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from gateway.registry import TerminalRegistry
from ledger.client import LedgerClient
from ledger.server import serve
from protocol import txn
from tests.support import REPO_ROOT
from tests.support.gateway_process import start_gateway
from tests.support.stack import wait_until
from tools.demo import DEMO_PROGRAMS, Expected
from tools.mosquitto import MosquittoBroker
from tools.simulator.terminal import SimulatedTerminal

OPERATIONS_PER_TERMINAL = 60


def _start_gateway(broker: MosquittoBroker, workdir: Path,
                   ledger_url: str) -> subprocess.Popen[str]:
    return start_gateway(broker, workdir, "--ledger-url", ledger_url)


def _sell(sim: SimulatedTerminal, cards: list[str], expected: Expected,
          progress: list[int], errors: list[BaseException]) -> None:
    try:
        for number in range(OPERATIONS_PER_TERMINAL):
            sim.tap(cards[number % len(cards)])
            expected.record(sim.terminal.purchase(100 + number, pay_from_card=True))
            sim.service(0)
            progress.append(number)
    except BaseException as error:  # re-raised by the test's own thread
        errors.append(error)


def test_gateway_killed_mid_stream_loses_nothing_and_doubles_nothing(
    private_mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    registry = TerminalRegistry()
    configs: list[dict[str, Any]] = []
    for terminal in ("T1", "T2"):
        key = os.urandom(32)
        registry.add(terminal, "M1", key)
        configs.append({"terminal": terminal, "merchant": "M1", "key": key, "currency": "EUR",
                        "programs": DEMO_PROGRAMS})
    registry.save(tmp_path / "terminals.json")
    (tmp_path / "programs.json").write_text(json.dumps(DEMO_PROGRAMS))
    ledger = serve(f"sqlite:///{tmp_path / 'ledger.db'}")
    gateway = _start_gateway(private_mosquitto, tmp_path, ledger.url)
    sims = [SimulatedTerminal(c, tmp_path, private_mosquitto.host, private_mosquitto.port, i)
            for i, c in enumerate(configs)]
    try:
        expected = Expected()
        cards = [f"04c0c1c2c3c4c{i}" for i in range(4)]
        for card in cards:
            sims[0].tap(card)
            expected.record(sims[0].terminal.issue("gift", 100_000))
        progress: list[int] = []
        errors: list[BaseException] = []
        threads = [threading.Thread(target=_sell, args=(sim, cards, expected, progress, errors))
                   for sim in sims]
        for thread in threads:
            thread.start()
        assert wait_until(lambda: len(progress) >= OPERATIONS_PER_TERMINAL // 2 or bool(errors))
        assert not errors, errors
        gateway.send_signal(signal.SIGKILL)
        gateway.wait()
        time.sleep(0.5)
        gateway = _start_gateway(private_mosquitto, tmp_path, ledger.url)
        for thread in threads:
            thread.join()
        assert not errors, errors
        deadline = time.monotonic() + 30
        for sim in sims:
            assert sim.drain(deadline), f"{sim.config['terminal']} kept unacked records"
        gateway.send_signal(signal.SIGTERM)
        assert gateway.wait(20) == 0
        settled = subprocess.run(
            [sys.executable, "-m", "tools.cli", "gateway", "settle", "--db",
             str(tmp_path / "gateway.db"), "--ledger-url", ledger.url],
            cwd=REPO_ROOT, capture_output=True, text=True, check=True)
        assert json.loads(settled.stdout)["refused"] == []

        client = LedgerClient(ledger.url)
        totals = client.terminal_totals()
        for terminal, approved in expected.per_terminal.items():
            assert totals[terminal]["count"] == approved["count"], terminal
            posted = sum(k["amount_minor"] for k in totals[terminal]["by_kind"].values())
            assert posted == approved["amount_minor"], terminal
        for card, book in expected.cards.items():
            assert client.card(card)["value_minor"] == book["value"]
        approved_sales = expected.kinds.get(txn.KIND_NAMES[txn.KIND_PURCHASE], 0)
        assert approved_sales >= OPERATIONS_PER_TERMINAL  # the stream really flowed
    finally:
        for sim in sims:
            sim.close()
        if gateway.poll() is None:
            gateway.kill()
        ledger.stop()
