"""The gateway as its own process (`python -m tools.gateway_run`), for tests that kill it or
watch it stop."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from tests.support import REPO_ROOT
from tests.support.store_broker import StoreBroker
from tools.mosquitto import MosquittoBroker

READY_TIMEOUT_S = 20.0


def start_gateway(broker: MosquittoBroker, workdir: Path, *extra: str,
                  stderr: int = subprocess.DEVNULL) -> subprocess.Popen[str]:
    """Start it on `workdir`'s gateway.db, terminals.json and programs.json; return once it
    says it is ready. On a StoreBroker it logs in with its provisioned login over TLS."""
    if isinstance(broker, StoreBroker):
        extra = ("--broker-login", str(broker.gateway_login_path), "--broker-ca", broker.ca,
                 *extra)
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.gateway_run", "--broker-port", str(broker.port),
         "--db", str(workdir / "gateway.db"), "--terminals", str(workdir / "terminals.json"),
         "--programs", str(workdir / "programs.json"), *extra],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=stderr, text=True)
    assert process.stdout is not None
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.stdout.readline().strip() == "gateway ready":
            return process
    process.kill()
    raise AssertionError("gateway did not start")
