"""A gateway whose commit fails does not live on half alive: its ingest thread dies, the
process stops (exit 70, saying why), and a restart acks what the terminal resends. The
commit fails for real: another process holds the store's write lock past the busy timeout."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path

from gateway.registry import TerminalRegistry
from gateway.stage import EXIT_THREAD_DIED
from gateway.store import BUSY_TIMEOUT_MS
from protocol import txn
from tests.support.gateway_process import start_gateway
from tests.support.stack import RawTerminal, wait_until
from tests.support.store_broker import StoreBroker
from tools.demo import DEMO_PROGRAMS
from tools.mosquitto import MosquittoBroker

CARD = "04a0a1a2a3a4a5"


def _start(broker: MosquittoBroker, workdir: Path) -> subprocess.Popen[str]:
    return start_gateway(broker, workdir, stderr=subprocess.PIPE)


def test_a_failed_commit_stops_the_gateway_and_a_restart_acks_the_resend(
    store_broker: StoreBroker, tmp_path: Path
) -> None:
    key = os.urandom(32)
    registry = TerminalRegistry()
    registry.add("T1", "M1", key)
    registry.save(tmp_path / "terminals.json")
    (tmp_path / "programs.json").write_text(json.dumps(DEMO_PROGRAMS))
    gateway = _start(store_broker, tmp_path)
    raw = RawTerminal(store_broker, "T1", key)
    blocker = sqlite3.connect(tmp_path / "gateway.db", isolation_level=None)
    try:
        raw.publish(raw.approved(txn.KIND_ISSUE, CARD, 5000, program="gift"))
        assert wait_until(lambda: raw.acked_through() == 1)
        blocker.execute("BEGIN EXCLUSIVE")  # the store cannot commit while this is held
        second = raw.record(txn.KIND_PURCHASE, CARD, 100)
        raw.publish(second)
        # The ingest thread waits out the busy timeout, its commit raises, the process ends.
        code = gateway.wait(timeout=BUSY_TIMEOUT_MS / 1000 + 30)
        assert code == EXIT_THREAD_DIED
        assert gateway.stderr is not None and "gateway-ingest died" in gateway.stderr.read()
        assert raw.acked_through() == 1  # never acked what was not committed
        blocker.execute("ROLLBACK")
        gateway = _start(store_broker, tmp_path)
        raw.publish(second)  # the terminal's resend
        assert wait_until(lambda: raw.acked_through() == 2)
    finally:
        blocker.close()
        raw.close()
        gateway.terminate()
        gateway.wait(timeout=30)
