"""The deployment docs/security.md describes, brought up with the project's own commands and
nothing else: every party logs in, TLS on both hops, no anonymous listener anywhere.

    terminal ──TLS, own login──> Mosquitto (TLS only, passwords, ACL) <──TLS, login── gateway
    gateway ──HTTPS (ledger's CA pinned), gateway login──> ledger (logins file)
    back office ──HTTPS, reader login──> ledger

A sale goes through and settles; then a stranger without a login, the gateway's login
asking for what only the back office may see, a clear-text client and an anonymous MQTT
client get nothing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from ledger.client import LedgerClient, read_token
from ledger.errors import Forbidden, LedgerUnavailable, LoginRefused, NotFound
from tests.support import REPO_ROOT
from tests.support.gateway_process import start_gateway
from tests.support.stack import wait_until
from tools.cli import main
from tools.demo import DEMO_PROGRAMS
from tools.mosquitto import MosquittoBroker
from tools.simulator.terminal import SimulatedTerminal

CARD = "04c0c1c2c3c4c5"
SETTLED_WAIT_S = 30.0
START_WAIT_S = 30.0


def _provision(tmp: Path) -> None:
    """Every file the deployment needs, made by `tilltap` as an operator would."""
    mosquitto = tmp / "mosquitto"
    assert main(["terminal", "provision", "--merchant", "M1", "--terminal", "T1", "--out",
                 str(tmp / "T1"), "--registry", str(tmp / "terminals.json"),
                 "--mosquitto-dir", str(mosquitto)]) == 0
    assert main(["gateway", "provision", "--id", "gw1", "--mosquitto-dir", str(mosquitto),
                 "--out", str(tmp / "gateway-login.json")]) == 0
    assert main(["store", "tls", "--out", str(tmp / "store-tls"), "--host", "127.0.0.1"]) == 0
    assert main(["ledger", "tls", "--out", str(tmp / "ledger-tls"), "--host", "127.0.0.1"]) == 0
    logins = str(tmp / "ledger-logins.json")
    assert main(["ledger", "login", "add", "gw1", "--role", "gateway", "--gateway", "gw1",
                 "--terminal", "T1", "--merchant", "M1", "--logins", logins,
                 "--token-out", str(tmp / "gw1.token")]) == 0
    assert main(["ledger", "login", "add", "office", "--role", "reader", "--logins", logins,
                 "--token-out", str(tmp / "office.token")]) == 0
    assert main(["store", "broker-config", "--out", str(tmp / "mosquitto.conf"),
                 "--mosquitto-dir", str(mosquitto), "--tls-dir", str(tmp / "store-tls")]) == 0
    (tmp / "programs.json").write_text(json.dumps(DEMO_PROGRAMS))


def _start_ledger(tmp: Path) -> tuple[subprocess.Popen[str], str]:
    """`tilltap ledger serve` with its logins and certificate; returns it and its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.cli", "ledger", "serve", "--dsn",
         f"sqlite://{tmp / 'ledger.db'}", "--logins", str(tmp / "ledger-logins.json"),
         "--tls-cert", str(tmp / "ledger-tls" / "ledger.pem"),
         "--tls-key", str(tmp / "ledger-tls" / "ledger.key")],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    if not url.startswith("https://"):
        process.kill()
        pytest.fail(f"the ledger did not start over TLS: {url!r}")
    return process, url


def test_the_documented_deployment_sells_settles_and_lets_no_stranger_in(
    tmp_path: Path,
) -> None:
    _provision(tmp_path)
    ca = str(tmp_path / "store-tls" / "ca.pem")
    ledger_ca = str(tmp_path / "ledger-tls" / "ca.pem")
    # The generated configuration as it is, but for its listener line: the test's broker
    # listens on a free loopback port of its own.
    generated = (tmp_path / "mosquitto.conf").read_text().splitlines()
    broker_config = [line for line in generated if not line.startswith("listener ")]
    assert "allow_anonymous false" in broker_config
    ledger, url = _start_ledger(tmp_path)
    gateway = None
    sim = None
    try:
        with MosquittoBroker(extra_config=broker_config) as broker:
            gateway = start_gateway(
                broker, tmp_path, "--id", "gw1", "--broker-login",
                str(tmp_path / "gateway-login.json"), "--broker-ca", ca, "--ledger-url", url,
                "--ledger-token-file", str(tmp_path / "gw1.token"), "--ledger-ca", ledger_ca,
                "--settle-every-s", "1")
            board = json.loads((tmp_path / "T1" / "config.json").read_text())
            config = dict(board, key=bytes.fromhex(board["key_hex"]), programs=DEMO_PROGRAMS,
                          broker_ca=ca)
            sim = SimulatedTerminal(config, tmp_path, broker.host, broker.port)
            office = LedgerClient(url, 10, token=read_token(str(tmp_path / "office.token")),
                                  ca_file=ledger_ca)

            def settled(value_minor: int) -> bool:
                try:
                    return bool(office.card(CARD)["value_minor"] == value_minor)
                except NotFound:  # card_unknown until the first batch posts
                    return False

            sim.tap(CARD)
            assert sim.terminal.issue("gift", 5000)["approved"]
            assert sim.drain(time.monotonic() + START_WAIT_S)
            # The sale holds the card's value at the ledger, which knows the card once the
            # gateway's settlement (every second here) has posted its issue.
            assert wait_until(lambda: settled(5000), SETTLED_WAIT_S)
            sim.tap(CARD)
            answer = sim.terminal.purchase(1200)
            assert answer["approved"], answer
            assert sim.drain(time.monotonic() + START_WAIT_S)
            assert wait_until(lambda: settled(3800), SETTLED_WAIT_S)
            assert office.trial_balance() == {"EUR": 0}

            # Strangers: no login, the gateway's login beyond its role, no TLS, another CA.
            with pytest.raises(LoginRefused):
                LedgerClient(url, 10, ca_file=ledger_ca).balances()
            gateway_client = LedgerClient(url, 10, token=read_token(str(tmp_path / "gw1.token")),
                                          ca_file=ledger_ca)
            with pytest.raises(Forbidden):
                gateway_client.balances()
            with pytest.raises(LedgerUnavailable):
                LedgerClient(url, 10, ca_file=ca).health()  # the store's CA did not sign it
            anonymous = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="anyone",
                                    protocol=mqtt.MQTTv311)
            answers: list[object] = []
            anonymous.on_connect = lambda *args: answers.append(args)
            anonymous.connect(broker.host, broker.port)  # TCP only: the TLS port drops it
            anonymous.loop_start()
            assert not wait_until(lambda: bool(answers), 2.0)
            anonymous.loop_stop()
    finally:
        if sim is not None:
            sim.close()
        if gateway is not None:
            gateway.terminate()
            gateway.wait(timeout=30)
        ledger.terminate()
        ledger.wait(timeout=30)
