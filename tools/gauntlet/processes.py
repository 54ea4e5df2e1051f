"""The gauntlet's processes: counter terminals, and the gateway under a supervisor.

`CounterProcess` starts `tools.gauntlet.counter` for one terminal and kills, stops, drains
and starts it again on the same journal. `GatewaySupervisor` does what systemd's
`Restart=always` would: whenever the gateway process ends (killed, or exit 70 because its
store could not commit, which is by design), it starts it again after RESTART_DELAY_S, on
the same store, backing off while starts fail (the store locked, the disk full).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from tools.fuzz.deploy import REPO_ROOT, DeployError, Store

RESTART_DELAY_S = 0.5
RESTART_BACKOFF_MAX_S = 4.0
STOP_TIMEOUT_S = 30.0
READY_TIMEOUT_S = 60.0
POLL_S = 0.05


class CounterProcess:
    """One terminal's process; `incarnation` counts its starts (each seeds its own random)."""

    def __init__(self, workdir: Path, terminal: str, seed: int, tls: bool) -> None:
        self.workdir = workdir
        self.terminal = terminal
        self.seed = seed
        self.tls = tls
        self.incarnation = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.exits: Counter[int] = Counter()

    @property
    def log_path(self) -> Path:
        return self.workdir / "counters" / f"{self.terminal}.log"

    def start(self) -> None:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        arguments = [sys.executable, "-m", "tools.gauntlet.counter", "--workdir",
                     str(self.workdir), "--terminal", self.terminal, "--seed", str(self.seed),
                     "--incarnation", str(self.incarnation)] + (["--tls"] if self.tls else [])
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(arguments, cwd=REPO_ROOT, stdout=log, stderr=log,
                                            stdin=subprocess.DEVNULL)
        self.incarnation += 1
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as file:
                file.seek(offset)
                if b" ready (pid" in file.read():
                    return
            if self.process.poll() is not None:
                raise DeployError(f"counter {self.terminal} exited with "
                                  f"{self.process.returncode} (log {self.log_path})")
            time.sleep(POLL_S)
        raise DeployError(f"counter {self.terminal} did not start")

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _wait(self) -> int | None:
        assert self.process is not None
        try:
            code = self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT_S)
            return None
        self.exits[code] += 1
        return code

    def kill(self) -> None:
        """SIGKILL: power pulled at whatever moment."""
        if self.alive:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self._wait()

    def stop(self) -> int | None:
        """SIGTERM: the customer at the counter is served, then it powers off."""
        if not self.alive:
            return None
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self._wait()

    def drain(self, timeout_s: float) -> int | None:
        """SIGUSR1: sell no more, send until every record is acked, exit (0: drained)."""
        if not self.alive:
            return None
        assert self.process is not None
        self.process.send_signal(signal.SIGUSR1)
        try:
            code = self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT_S)
            return None
        self.exits[code] += 1
        return code


class GatewaySupervisor:
    """Keeps the gateway running: starts it again whenever it ends, unless paused."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.starts = 0
        self.failed_starts = 0
        self.exits: Counter[str] = Counter()  # exit status (or signal) -> how often
        self._stop = threading.Event()
        self._lock = threading.Lock()  # the store's gateway handle: one hand at a time
        self._thread = threading.Thread(target=self._watch, name="gateway-supervisor",
                                        daemon=True)
        self._ready = threading.Event()

    def start(self) -> None:
        if self.store.gateway_alive():
            self.starts += 1
            self._ready.set()
        self._thread.start()

    @property
    def pid(self) -> int | None:
        with self._lock:
            gateway = self.store.gateway
            return gateway.pid if gateway is not None and gateway.poll() is None else None

    def ready(self, timeout_s: float) -> bool:
        """Wait until the gateway runs and said it is ready."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._ready.is_set() and self.store.gateway_alive():
                return True
            time.sleep(POLL_S)
        return False

    def kill(self) -> bool:
        """SIGKILL the running gateway (the supervisor starts it again); False if none ran."""
        with self._lock:
            gateway = self.store.gateway
            if gateway is None or gateway.poll() is not None or not self._ready.is_set():
                return False
            os.kill(gateway.pid, signal.SIGKILL)
            return True

    def _watch(self) -> None:
        backoff = RESTART_DELAY_S
        while not self._stop.is_set():
            gateway = self.store.gateway
            if gateway is not None and gateway.poll() is None:
                time.sleep(POLL_S)
                continue
            self._ready.clear()
            if gateway is not None:
                code = gateway.returncode
                self.exits["SIGKILL" if code == -signal.SIGKILL else str(code)] += 1
            if self._stop.wait(backoff):
                return
            with self._lock:
                try:
                    self.store.start_gateway()
                except DeployError:
                    self.failed_starts += 1
                    backoff = min(backoff * 2, RESTART_BACKOFF_MAX_S)
                    continue
                self.starts += 1
                self._ready.set()
                backoff = RESTART_DELAY_S

    def stop(self) -> int | None:
        """Stop supervising, then stop the gateway with SIGTERM; its exit status."""
        self._stop.set()
        self._thread.join()
        return self.store.stop_gateway()
