"""The ledger as its own process, as a store deploys it: `tilltap ledger serve` with a logins
file and its own TLS certificate (tools/tls.py), for end-to-end tests that need the real
ledger API (logins, roles, HTTPS with its CA pinned) rather than the in-process server.

    with running_ledger(workdir, {"gw1": ("gateway", ...)}) as ledger:
        client = ledger.client("office")   # pinned to ledger.ca, with that login's token

Logins are made by `ledger.auth.new_login`, the code behind `tilltap ledger login add`.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ledger.auth import Login, dump_logins, new_login, new_operator
from ledger.client import LedgerClient
from tests.support import REPO_ROOT
from tools.tls import make_server_tls

HOST = "127.0.0.1"
STOP_TIMEOUT_S = 30.0
CLIENT_TIMEOUT_S = 10.0


@dataclass
class LedgerProcess:
    url: str
    ca: str
    tokens: dict[str, str] = field(default_factory=dict)

    def client(self, login: str) -> LedgerClient:
        """A client logged in as `login`, trusting only the ledger's own CA."""
        return LedgerClient(self.url, CLIENT_TIMEOUT_S, token=self.tokens[login], ca_file=self.ca)


@dataclass(frozen=True)
class LoginSpec:
    """What `tilltap ledger login add` is given for one login."""

    role: str
    gateway: str | None = None
    terminals: tuple[str, ...] = ()
    merchants: tuple[str, ...] = ()
    register_value_minor_max: int = 0
    password: str | None = None  # an operator (clerk, manager) who signs in to the back office


@contextmanager
def running_ledger(workdir: Path, logins: dict[str, LoginSpec]) -> Iterator[LedgerProcess]:
    """`tilltap ledger serve` on SQLite in `workdir`, over TLS, with exactly `logins`."""
    tls = workdir / "ledger-tls"
    make_server_tls(tls, HOST, "tilltap ledger CA", "ledger")
    made: dict[str, Login] = {}
    tokens: dict[str, str] = {}
    for name, spec in logins.items():
        if spec.password is not None:
            made[name] = new_operator(name, spec.role, spec.password)
            continue
        made[name], tokens[name] = new_login(name, spec.role, spec.gateway, spec.terminals,
                                             spec.merchants, spec.register_value_minor_max)
    logins_path = workdir / "ledger-logins.json"
    logins_path.write_text(dump_logins(made))
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.cli", "ledger", "serve", "--dsn",
         f"sqlite://{workdir / 'ledger.db'}", "--logins", str(logins_path),
         "--tls-cert", str(tls / "ledger.pem"), "--tls-key", str(tls / "ledger.key")],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("https://"), f"the ledger did not start over TLS: {url!r}"
        yield LedgerProcess(url, str(tls / "ca.pem"), tokens)
    finally:
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
