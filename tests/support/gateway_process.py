"""The gateway as its own process (`python -m tools.gateway_run`), for tests that kill it or
watch it stop."""

from __future__ import annotations

import subprocess
import sys
import threading
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
    return _start(broker, workdir, extra, stderr)[0]


def start_gateway_with_metrics(broker: MosquittoBroker, workdir: Path, *extra: str,
                               stderr: int = subprocess.DEVNULL
                               ) -> tuple[subprocess.Popen[str], str]:
    """As `start_gateway`, serving /metrics and /health on a free port: it and their base
    URL (what `--metrics-port 0` printed)."""
    process, said = _start(broker, workdir, ("--metrics-port", "0", *extra), stderr)
    urls = [line.split()[1] for line in said if line.startswith("metrics ")]
    assert urls, f"the gateway did not say where its metrics are: {said}"
    return process, urls[0].removesuffix("/metrics")


def start_standby(broker: MosquittoBroker, workdir: Path, *extra: str,
                  stderr: int = subprocess.DEVNULL) -> tuple[subprocess.Popen[str], list[str]]:
    """A second gateway on the same store, started while another holds its lease: returned
    once it says it is a standby, with the list of the lines it prints from then on (kept by
    a thread of its own: "gateway ready" once it has taken over)."""
    process, said = _start(broker, workdir, extra, stderr, until="gateway standby")
    later: list[str] = []

    def keep() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            later.append(line.strip())

    threading.Thread(target=keep, name=f"standby-{process.pid}-stdout", daemon=True).start()
    return process, later


def _start(broker: MosquittoBroker, workdir: Path, extra: tuple[str, ...], stderr: int,
           until: str = "gateway ready") -> tuple[subprocess.Popen[str], list[str]]:
    """The started process and the lines it printed before `until`."""
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
    said: list[str] = []
    while time.monotonic() < deadline:
        line = process.stdout.readline().strip()
        if line == until:
            return process, said
        said.append(line)
    process.kill()
    raise AssertionError("gateway did not start")
