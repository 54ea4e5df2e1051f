"""A private Mosquitto configured exactly as a store deploys it, for the attack tests.

Its configuration is the file `tilltap store broker-config` writes (tools/broker_config.py),
used as it is but for the listener line (the test's broker listens on a free loopback port of
its own, as tests/e2e/test_deployment.py does): TLS only with the store's own CA and
certificate (`tilltap store tls`, tools/tls.py), no anonymous login, the password file and ACL,
each client id bound to its login (`use_username_as_clientid`), packets over
PACKET_BYTES_MAX dropped, persistence on. The gateway's login is made by `tilltap gateway
provision`'s code; each terminal's by the same lines `tilltap terminal provision` writes
(its password entry and ACL block, tools/provision.py), added when a test first names the
terminal: the broker is then told to read its files again (SIGHUP), as an operator does.

The terminal's key stays the test's own (tests/support/stack.py makes it): a broker login
is only the right to connect and to use the terminal's topics, never a signing key.

    broker = StoreBroker().start()
    user, password = broker.terminal_login("M1", "T1")
    client.username_pw_set(user, password); client.tls_set(ca_certs=broker.ca)

The helpers `terminal_login`, `gateway_login` and `broker_ca` answer None for a plain
(anonymous, clear-text) MosquittoBroker, so the same test code runs on either.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from tools.broker_config import write_broker_config
from tools.mosquitto import HOST, MosquittoBroker, MosquittoError
from tools.provision import (
    ACL_FILE,
    BROKER_PASSWORD_BYTES,
    PASSWORD_FILE,
    PUBLIC_MODE,
    acl_block,
    password_entry,
    provision_gateway_login,
    with_acl_block,
    with_password,
    write_atomically,
)
from tools.tls import make_store_tls

GATEWAY_ID = "gw1"
# How long a SIGHUP may take before the broker lets a login it was just given in; Mosquitto
# reads its files again between two passes of its main loop, well under a second.
RELOAD_TIMEOUT_S = 10.0
READY_TIMEOUT_S = 10.0  # from its port accepting to its first CONNACK
# A login no broker knows: its refusal (a CONNACK all the same) shows the broker's main loop
# runs, without pushing off a client of a real login (use_username_as_clientid).
PROBE_LOGIN = ("tilltap-probe", "no password")
RELOAD_POLL_INTERVAL_S = 0.05
CONNACK_TIMEOUT_S = 2.0


class StoreBroker(MosquittoBroker):
    """A MosquittoBroker on the deployed configuration; `ca`, `gateway_login_path`, and
    `terminal_login()` for its clients. stop()/kill()/restart() as the base class."""

    def __init__(self) -> None:
        self.files = Path(tempfile.mkdtemp(prefix="tilltap-store-broker-"))
        self.mosquitto_dir = self.files / "mosquitto"
        self.tls_dir = self.files / "store-tls"
        self.gateway_login_path = self.files / "gateway-login.json"
        make_store_tls(self.tls_dir, HOST)
        provision_gateway_login(GATEWAY_ID, self.mosquitto_dir, self.gateway_login_path)
        generated = self.files / "mosquitto.conf"
        write_broker_config(generated, self.mosquitto_dir, self.tls_dir, bind=HOST)
        lines = [line for line in generated.read_text().splitlines()
                 if not line.startswith("listener ")]
        assert "allow_anonymous false" in lines and "use_username_as_clientid true" in lines
        self._logins: dict[str, tuple[str, str]] = {}
        self._logins_lock = threading.Lock()
        super().__init__(extra_config=lines)

    def start(self) -> StoreBroker:
        """Start, and return once the broker answers a CONNECT: only then has Mosquitto set
        up its signal handlers (it listens before), so a SIGHUP cannot end it."""
        super().start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while connack(self, PROBE_LOGIN, self.ca) is None:
            if time.monotonic() > deadline or not self.running:
                raise MosquittoError(f"the broker answered no CONNECT; "
                                     f"log {self.log_path}:\n{self.log_tail()}")
            time.sleep(RELOAD_POLL_INTERVAL_S)
        return self

    @property
    def ca(self) -> str:
        """The store CA every client pins."""
        return str(self.tls_dir / "ca.pem")

    @property
    def gateway_login(self) -> tuple[str, str]:
        login = json.loads(self.gateway_login_path.read_text())
        return login["user"], login["password"]

    def terminal_login(self, merchant: str, terminal: str) -> tuple[str, str]:
        """The broker login of `terminal` (user = the terminal id, confined by the ACL to its
        own topics), made on first use."""
        return self.terminal_logins(merchant, [terminal])[terminal]

    def terminal_logins(self, merchant: str, terminals: list[str]) -> dict[str, tuple[str, str]]:
        """Logins for all of `terminals`, the missing ones added in one reload."""
        with self._logins_lock:
            missing = [t for t in terminals if t not in self._logins]
            if missing:
                self._add_logins(merchant, missing)
            return {terminal: self._logins[terminal] for terminal in terminals}

    def _add_logins(self, merchant: str, terminals: list[str]) -> None:
        password_path = self.mosquitto_dir / PASSWORD_FILE
        acl_path = self.mosquitto_dir / ACL_FILE
        passwords, acl = _lines(password_path), _lines(acl_path)
        added = {}
        for terminal in terminals:
            password = secrets.token_urlsafe(BROKER_PASSWORD_BYTES)
            passwords = with_password(passwords, terminal, password_entry(terminal, password))
            acl = with_acl_block(acl, terminal, acl_block(merchant, terminal))
            added[terminal] = (terminal, password)
        write_atomically(password_path, "\n".join(passwords) + "\n")
        write_atomically(acl_path, "\n".join(acl) + "\n", PUBLIC_MODE)
        if self.running:
            self._reload(*added[terminals[-1]])
        self._logins.update(added)

    def _reload(self, user: str, password: str) -> None:
        """SIGHUP, then wait until the broker lets the newest login in."""
        assert self.pid is not None
        os.kill(self.pid, signal.SIGHUP)
        deadline = time.monotonic() + RELOAD_TIMEOUT_S
        while time.monotonic() < deadline and self.running:
            if connack(self, (user, password), self.ca) == 0:
                return
            time.sleep(RELOAD_POLL_INTERVAL_S)
        raise MosquittoError(f"the broker did not take login {user} after SIGHUP; "
                             f"log {self.log_path}:\n{self.log_tail()}")

    def close(self) -> None:
        super().close()
        shutil.rmtree(self.files, ignore_errors=True)


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def connack(broker: MosquittoBroker, login: tuple[str, str] | None, ca: str | None,
            client_id: str = "") -> int | None:
    """The CONNACK reason code a client with `login` and `ca` gets (0: accepted), None when
    none comes (no TLS to a TLS port, a handshake that failed). The client then leaves."""
    answers: list[int] = []
    got = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv311)
    if login is not None:
        client.username_pw_set(*login)
    if ca is not None:
        client.tls_set(ca_certs=ca)

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                   properties: Any) -> None:
        answers.append(reason.value)
        got.set()

    client.on_connect = on_connect
    try:
        client.connect(broker.host, broker.port)
    except OSError:
        return None
    client.loop_start()
    got.wait(CONNACK_TIMEOUT_S)
    client.disconnect()
    client.loop_stop()
    return answers[0] if answers else None


def terminal_login(broker: MosquittoBroker, merchant: str,
                   terminal: str) -> tuple[str, str] | None:
    """A terminal's broker login on a store broker; None on an anonymous one."""
    if isinstance(broker, StoreBroker):
        return broker.terminal_login(merchant, terminal)
    return None


def gateway_login(broker: MosquittoBroker) -> tuple[str, str] | None:
    return broker.gateway_login if isinstance(broker, StoreBroker) else None


def broker_ca(broker: MosquittoBroker) -> str | None:
    """The CA a client pins to reach `broker` over TLS; None when it speaks clear text."""
    return broker.ca if isinstance(broker, StoreBroker) else None
