"""`tilltap terminal status` end to end (issue 20 item 5, docs/protocol.md section 5.10): a
real gateway process (`gateway run --metrics-port`) on a real Mosquitto asks a simulated
terminal (tools/simulator, the firmware's own code over paho) for its signed diag answer,
and the CLI prints it; a registered terminal that is not connected gives no answer (exit 1),
an unknown one is the technician's mistake (exit 2)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from gateway.registry import TerminalRegistry
from tests.support import REPO_ROOT
from tests.support.gateway_process import start_gateway_with_metrics
from tools.demo import DEMO_PROGRAMS
from tools.mosquitto import MosquittoBroker
from tools.simulator.terminal import SimulatedTerminal

GIFT = "04e0e1e2e3e4e5"
CLI_TIMEOUT_S = 60.0
DRAIN_S = 10.0
SERVICE_MS = 50
LABEL_CHARS = 19  # tools/terminal_status.py pads labels to 18 and a space


def _status(base: str, terminal: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.cli", "terminal", "status", terminal,
         "--gateway-url", base, *extra],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=CLI_TIMEOUT_S)


def test_terminal_status_shows_the_signed_answer_of_a_running_terminal(
    private_mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    registry = TerminalRegistry()
    key = os.urandom(32)
    registry.add("T1", "M1", key)
    registry.add("T2", "M1", os.urandom(32))  # registered, never connects
    registry.save(tmp_path / "terminals.json")
    (tmp_path / "programs.json").write_text(json.dumps(DEMO_PROGRAMS))
    gateway, base = start_gateway_with_metrics(private_mosquitto, tmp_path)
    config = {"terminal": "T1", "merchant": "M1", "key": key, "currency": "EUR",
              "programs": DEMO_PROGRAMS}
    sim = SimulatedTerminal(config, tmp_path, private_mosquitto.host, private_mosquitto.port)
    stop = threading.Event()

    def idle_loop() -> None:  # the counter's loop between customers: app.step with no key
        while not stop.is_set():
            sim.service(SERVICE_MS)

    counter = threading.Thread(target=idle_loop, name="counter-loop", daemon=True)
    try:
        sim.service(0)
        sim.tap(GIFT)
        assert sim.terminal.issue("gift", 10_000)["approved"]
        sim.tap(None)
        assert sim.terminal.purchase(500)["reason"] == "card_absent"  # a decline
        assert sim.drain(time.monotonic() + DRAIN_S)
        counter.start()  # the counter's idle loop, between customers, from here on

        shown = _status(base, "T1")
        assert shown.returncode == 0, shown.stderr
        # One field a line: its label padded to LABEL_CHARS, then the value.
        lines = {line[:LABEL_CHARS].strip(): line[LABEL_CHARS:].strip()
                 for line in shown.stdout.splitlines()}
        assert lines["terminal"] == "T1" and lines["firmware"] == "0.1.0"
        assert lines["config version"] == str(sim.settings.version) != "0"
        assert lines["journal depth"] == "0" and lines["refused records"] == "0"
        assert lines["free heap (bytes)"] == "not reported"  # CPython has no gc.mem_free
        assert lines["last errors"] == "card_absent"
        assert lines["uptime"].endswith("s")
        assert sim.uplink.stats["diag_answered"] == 1

        silent = _status(base, "T2", "--wait-s", "1")
        assert silent.returncode == 1 and silent.stdout == ""
        assert silent.stderr.strip() == ("tilltap terminal status: terminal T2 did not answer "
                                         "within 1 s (offline, or in a sale the whole time)")

        unknown = _status(base, "T9")
        assert unknown.returncode == 2
        assert unknown.stderr.strip() == ("tilltap terminal status: terminal T9 is not "
                                          "registered at the gateway")
    finally:
        stop.set()
        if counter.is_alive():
            counter.join(DRAIN_S)
        sim.close()
        gateway.terminate()
        gateway.wait(timeout=30)
