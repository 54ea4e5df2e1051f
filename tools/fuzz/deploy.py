"""The store the campaign attacks, set up as docs/security.md describes and run as processes.

Files are made by the code behind `tilltap`'s own commands: `terminal provision` (each
terminal's key, board config, registry entry, broker password and ACL; the attacker's
terminal is provisioned like any other), `gateway provision` (the gateway's broker login),
`store tls` and `ledger tls` (the CAs and certificates, with `tls`), the ledger's logins
(`ledger login add`: the gateway bound to its id, terminals and merchant; a reader for the
reconciliation), the card master keys (`card personalize --master-key`), the programs of the
demo and signed offline limits.

Then: a private Mosquitto with that password file and ACL and no anonymous login (TLS only,
with `tls`), the ledger as its own process (`tilltap ledger serve --logins`), and the gateway
as its own process (`tilltap gateway run` with its broker login, card keys, limits, a ledger
login, settling every second, writing its counters to `gateway-stats.json` as it stops).
Their output goes to files in the work folder, read at the end for tracebacks.

The broker's `use_username_as_clientid` is left off here, unlike `tilltap store
broker-config`: the campaign connects a second client with an honest terminal's login (to
publish unsigned junk on that terminal's topics) and it must not take over the terminal's
session (tests/e2e/test_broker_logins.py shows that option at work).

The gauntlet (tools/gauntlet) runs the same store with a few options: the ledger on
PostgreSQL (`ledger_dsn`), the broker's persistence on (it is stopped and killed), the
gateway's store in a folder of its own (a small tmpfs to fill), more gateway options, and
the processes started again after a fault on the same ports and files (`start_gateway`,
`start_ledger`, logs appended).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ledger.auth import dump_logins, new_login
from ledger.client import LedgerClient
from tools.cards import MasterKeys, new_master_keys, write_master_keys
from tools.demo import DEMO_PROGRAMS
from tools.mosquitto import MosquittoBroker
from tools.provision import (
    ProvisionRequest,
    provision,
    provision_gateway_login,
    write_atomically,
)
from tools.tls import make_server_tls, make_store_tls, mosquitto_lines

REPO_ROOT = Path(__file__).resolve().parents[2]
MERCHANT = "M1"
GATEWAY_ID = "gw1"
SYSTEM_ID = b"tilltap-fuzz"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0
POLL_S = 0.05
SETTLE_EVERY_S = 1.0
# Signed offline limits: small, so that a stolen key's offline claims meet every one of them.
OFFLINE_LIMITS = {"txn_minor_max": 2000, "card_offline_minor_max": 5000,
                  "terminal_offline_minor_max": 20_000, "offline_txn_max": 5,
                  "offline_s_max": 3600}


class DeployError(RuntimeError):
    """A part of the store did not come up."""


def terminal_config(workdir: Path, terminal: str, tls: bool) -> dict[str, Any]:
    """The board configuration `terminal provision` wrote into `workdir`, as the simulator
    takes it (also in a terminal's own process: tools/gauntlet/counter.py)."""
    board = json.loads((workdir / f"terminals/{terminal}/config.json").read_text())
    return dict(board, key=bytes.fromhex(board["key_hex"]), programs=DEMO_PROGRAMS,
                broker_ca=str(workdir / "store-tls/ca.pem") if tls else None)


def _wait_for_line(path: Path, process: subprocess.Popen[bytes], accept: Any,
                   what: str, offset: int = 0) -> str:
    """The first line of `path` past `offset` that `accept` takes, while `process` runs."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        with open(path, "rb") as file:
            file.seek(offset)
            text = file.read().decode(errors="replace")
        for line in text.splitlines():
            if accept(line.strip()):
                return line.strip()
        if process.poll() is not None:
            raise DeployError(f"{what} exited with {process.returncode}")
        time.sleep(POLL_S)
    process.kill()
    raise DeployError(f"{what} did not start within {START_TIMEOUT_S} s")


class Store:
    """Provisioned files and running processes; `close` stops whatever still runs."""

    def __init__(self, honest: list[str], attacker: str | None, tls: bool,
                 workdir: Path | None = None, *, ledger_dsn: str | None = None,
                 broker_persistence: bool = False, gateway_db_dir: Path | None = None,
                 gateway_options: tuple[str, ...] = (),
                 gateway_command: tuple[str, ...] = ("-m", "tools.cli", "gateway", "run"),
                 ) -> None:
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="tilltap-fuzz-"))
        self.ledger_dsn = ledger_dsn or f"sqlite://{self.workdir / 'ledger.db'}"
        self.broker_persistence = broker_persistence
        self.gateway_db = (gateway_db_dir or self.workdir) / "gateway.db"
        self.gateway_options = gateway_options
        self.gateway_command = gateway_command
        self.ledger_port = 0  # picked by the ledger's first start, kept by the next ones
        self.honest = honest
        self.attacker = attacker
        self.tls = tls
        self.masters: MasterKeys = new_master_keys(SYSTEM_ID)
        self.broker: MosquittoBroker | None = None
        self.ledger: subprocess.Popen[bytes] | None = None
        self.gateway: subprocess.Popen[bytes] | None = None
        self.ledger_url = ""
        self.gateway_exit: int | None = None
        self._provision()

    # -- files ----------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        return self.workdir / name

    def _provision(self) -> None:
        mosquitto = self.path("mosquitto")
        for terminal in [*self.honest, *([self.attacker] if self.attacker else [])]:
            provision(ProvisionRequest(merchant=MERCHANT, terminal=terminal,
                                       out_dir=self.path(f"terminals/{terminal}"),
                                       registry=self.path("terminals.json"),
                                       mosquitto_dir=mosquitto))
        provision_gateway_login(GATEWAY_ID, mosquitto, self.path("gateway-login.json"))
        if self.tls:
            make_store_tls(self.path("store-tls"), "127.0.0.1")
            make_server_tls(self.path("ledger-tls"), "127.0.0.1", "tilltap ledger CA", "ledger")
        gateway_login, gateway_token = new_login(GATEWAY_ID, "gateway", GATEWAY_ID, ("T*",),
                                                 (MERCHANT,))
        reader_login, reader_token = new_login("fuzz-reader", "reader")
        write_atomically(self.path("ledger-logins.json"), dump_logins(
            {GATEWAY_ID: gateway_login, "fuzz-reader": reader_login}))
        write_atomically(self.path("gw1.token"), gateway_token + "\n")
        write_atomically(self.path("reader.token"), reader_token + "\n")
        write_master_keys(self.path("card-masters.json"), self.masters)
        self.path("programs.json").write_text(json.dumps(DEMO_PROGRAMS))
        self.path("limits.json").write_text(json.dumps(OFFLINE_LIMITS))

    @property
    def broker_ca(self) -> str | None:
        return str(self.path("store-tls/ca.pem")) if self.tls else None

    @property
    def ledger_ca(self) -> str | None:
        return str(self.path("ledger-tls/ca.pem")) if self.tls else None

    def terminal_config(self, terminal: str) -> dict[str, Any]:
        """The board configuration `terminal provision` wrote, as the simulator takes it."""
        return terminal_config(self.workdir, terminal, self.tls)

    def reader(self) -> LedgerClient:
        token = self.path("reader.token").read_text().strip()
        return LedgerClient(self.ledger_url, 30, token=token, ca_file=self.ledger_ca)

    # -- processes ------------------------------------------------------------------------
    def start(self) -> None:
        mosquitto = self.path("mosquitto")
        lines = ["allow_anonymous false", f"password_file {mosquitto / 'passwd'}",
                 f"acl_file {mosquitto / 'acl'}"]
        if self.tls:
            lines = mosquitto_lines({name: str(self.path(f"store-tls/{name}"))
                                     for name in ("ca.pem", "broker.pem", "broker.key")}) + lines
        self.broker = MosquittoBroker(persistence=self.broker_persistence,
                                      extra_config=lines).start()
        self.start_ledger()
        self.start_gateway()

    def _spawn(self, name: str, arguments: list[str]) -> tuple[subprocess.Popen[bytes], int]:
        """The process, and where its output file stood when it started (logs are appended
        to: a restarted process writes after its predecessor)."""
        out_path = self.path(f"{name}.out")
        offset = out_path.stat().st_size if out_path.exists() else 0
        with open(out_path, "ab") as out, open(self.path(f"{name}.log"), "ab") as log:
            return subprocess.Popen([sys.executable, *arguments],
                                    cwd=REPO_ROOT, stdout=out, stderr=log,
                                    stdin=subprocess.DEVNULL), offset

    def start_ledger(self) -> None:
        """Start the ledger (again: on the port of its first start)."""
        arguments = ["-m", "tools.cli", "ledger", "serve", "--dsn", self.ledger_dsn,
                     "--logins", str(self.path("ledger-logins.json")),
                     "--port", str(self.ledger_port)]
        if self.tls:
            arguments += ["--tls-cert", str(self.path("ledger-tls/ledger.pem")),
                          "--tls-key", str(self.path("ledger-tls/ledger.key"))]
        self.ledger, offset = self._spawn("ledger", arguments)
        self.ledger_url = _wait_for_line(self.path("ledger.out"), self.ledger,
                                         lambda line: line.startswith("http"), "the ledger",
                                         offset)
        self.ledger_port = int(self.ledger_url.rstrip("/").rsplit(":", 1)[1])

    def start_gateway(self) -> None:
        """Start the gateway (again: on the same store) and wait until it says it is ready;
        DeployError if it exits first."""
        assert self.broker is not None
        arguments = [*self.gateway_command, "--id", GATEWAY_ID, "--broker-port",
                     str(self.broker.port), "--db", str(self.gateway_db),
                     "--terminals", str(self.path("terminals.json")),
                     "--programs", str(self.path("programs.json")),
                     "--limits", str(self.path("limits.json")),
                     "--card-keys", str(self.path("card-masters.json")),
                     "--broker-login", str(self.path("gateway-login.json")),
                     "--ledger-url", self.ledger_url,
                     "--ledger-token-file", str(self.path("gw1.token")),
                     "--settle-every-s", str(SETTLE_EVERY_S),
                     "--stats-out", str(self.path("gateway-stats.json")),
                     *self.gateway_options]
        if self.tls:
            arguments += ["--broker-ca", str(self.broker_ca), "--ledger-ca", str(self.ledger_ca)]
        self.gateway, offset = self._spawn("gateway", arguments)
        _wait_for_line(self.path("gateway.out"), self.gateway,
                       lambda line: line == "gateway ready", "the gateway", offset)

    def gateway_rss_kb(self) -> int | None:
        """The gateway process's resident memory now (Linux /proc), None if not running."""
        if not self.gateway_alive():
            return None
        assert self.gateway is not None
        try:
            status = Path(f"/proc/{self.gateway.pid}/status").read_text()
        except OSError:
            return None
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return None

    def gateway_alive(self) -> bool:
        return self.gateway is not None and self.gateway.poll() is None

    def ledger_alive(self) -> bool:
        return self.ledger is not None and self.ledger.poll() is None

    def stop_gateway(self) -> int | None:
        """SIGTERM, as an operator stops it: it drains, commits, acks and writes its
        counters. Its exit status (0; 70 if one of its threads had died), None if it had to
        be killed."""
        self.gateway_exit = _stop(self.gateway)
        return self.gateway_exit

    def stop_ledger(self) -> int | None:
        return _stop(self.ledger)

    def gateway_stats(self) -> dict[str, int]:
        path = self.path("gateway-stats.json")
        if not path.exists():
            return {}
        stats: dict[str, int] = json.loads(path.read_text())
        return stats

    def log_problems(self) -> dict[str, int]:
        """Tracebacks and dead threads the processes wrote, per process."""
        problems: dict[str, int] = {}
        for name in ("gateway", "ledger"):
            path = self.path(f"{name}.log")
            text = path.read_text(errors="replace") if path.exists() else ""
            problems[f"{name}.tracebacks"] = text.count("Traceback (most recent call last)")
            problems[f"{name}.dead_threads"] = text.count(" died (")
        return problems

    def close(self) -> None:
        for process in (self.gateway, self.ledger):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(STOP_TIMEOUT_S)
        if self.broker is not None:
            self.broker.close()


def _stop(process: subprocess.Popen[bytes] | None) -> int | None:
    if process is None:
        return None
    if process.poll() is not None:
        return process.returncode
    os.kill(process.pid, signal.SIGTERM)
    try:
        return process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT_S)
        return None
