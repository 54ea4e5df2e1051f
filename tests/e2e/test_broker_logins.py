"""A store set up as docs/security.md says: the broker speaks only TLS with the store's own
certificate and has no anonymous listener; the gateway logs in with its own provisioned
login, each terminal with its own, both pinning the store's CA; a sale goes through; a
client without TLS, one trusting another CA, an anonymous one, a terminal posing as another
and a terminal publishing configuration are stopped at the broker."""

from __future__ import annotations

import json
import ssl
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.registry import TerminalRegistry
from gateway.service import Gateway
from tests.support.stack import wait_until
from tools.cli import main
from tools.demo import DEMO_PROGRAMS
from tools.mosquitto import MosquittoBroker
from tools.simulator.terminal import SimulatedTerminal
from tools.tls import mosquitto_lines

CARD = "04b0b1b2b3b4b5"
WAIT_S = 10.0


def _connect(broker: MosquittoBroker, client_id: str, login: tuple[str, str] | None,
             ca: str | None) -> tuple[mqtt.Client, list[Any]]:
    """A raw client; its CONNACK reason (or nothing) lands in the returned list."""
    answers: list[Any] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv311)
    if login is not None:
        client.username_pw_set(*login)
    if ca is not None:
        client.tls_set(ca_certs=ca)
    client.on_connect = lambda c, u, f, reason, p: answers.append(reason)
    client.connect(broker.host, broker.port)
    client.loop_start()
    wait_until(lambda: bool(answers), WAIT_S)
    return client, answers


def _refused_at_the_handshake(broker: MosquittoBroker, ca: str | None) -> bool:
    """True when a client cannot get a CONNACK: no TLS, or a CA that did not sign the
    broker's certificate (the TLS handshake fails)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="outsider",
                         protocol=mqtt.MQTTv311)
    if ca is not None:
        client.tls_set(ca_certs=ca)
    answers: list[Any] = []
    client.on_connect = lambda c, u, f, reason, p: answers.append(reason)
    try:
        client.connect(broker.host, broker.port)
    except (OSError, ssl.SSLError):
        return True
    client.loop_start()
    answered = wait_until(lambda: bool(answers), 2.0)
    client.loop_stop()
    return not answered


def test_a_store_with_tls_and_logins_only_sells_and_stops_everyone_else(
    tmp_path: Path
) -> None:
    mosquitto = tmp_path / "mosquitto"
    for terminal in ("T1", "T2"):
        assert main(["terminal", "provision", "--merchant", "M1", "--terminal", terminal,
                     "--out", str(tmp_path / terminal), "--registry",
                     str(tmp_path / "registry.json"), "--mosquitto-dir", str(mosquitto)]) == 0
    assert main(["gateway", "provision", "--id", "gw1", "--mosquitto-dir", str(mosquitto),
                 "--out", str(tmp_path / "gateway-login.json")]) == 0
    login = json.loads((tmp_path / "gateway-login.json").read_text())
    assert main(["store", "tls", "--out", str(tmp_path / "tls"), "--host", "127.0.0.1"]) == 0
    assert main(["store", "tls", "--out", str(tmp_path / "other"), "--host", "127.0.0.1"]) == 0
    ca = str(tmp_path / "tls" / "ca.pem")
    tls = mosquitto_lines({name: str(tmp_path / "tls" / name)
                           for name in ("ca.pem", "broker.pem", "broker.key")})
    extra = [*tls, "allow_anonymous false", f"password_file {mosquitto / 'passwd'}",
             f"acl_file {mosquitto / 'acl'}", "use_username_as_clientid true"]
    with MosquittoBroker(extra_config=extra) as broker:
        gateway = Gateway("gw1", broker.host, broker.port, str(tmp_path / "gw.db"),
                          TerminalRegistry.load(tmp_path / "registry.json"), DEMO_PROGRAMS,
                          broker_login=(login["user"], login["password"]), broker_ca=ca)
        gateway.start()
        board = json.loads((tmp_path / "T1" / "config.json").read_text())
        config = dict(board, key=bytes.fromhex(board["key_hex"]), programs=DEMO_PROGRAMS,
                      broker_ca=ca)
        sim = SimulatedTerminal(config, tmp_path, broker.host, broker.port)
        try:
            sim.tap(CARD)
            assert sim.terminal.issue("gift", 5000)["approved"]
            assert sim.drain(time.monotonic() + WAIT_S)
            sim.tap(CARD)
            assert sim.terminal.purchase(1200)["approved"]
            assert sim.drain(time.monotonic() + WAIT_S)
            assert gateway.stats.snapshot()["accepted"] == 2

            assert _refused_at_the_handshake(broker, None)  # no TLS
            assert _refused_at_the_handshake(broker, str(tmp_path / "other" / "ca.pem"))
            anonymous, refused = _connect(broker, "anyone", None, ca)
            assert refused and refused[0].is_failure
            anonymous.loop_stop()
            # T2's login naming itself T1: the broker makes its client id its user name, so
            # T1's session stays up; and no terminal may write a downlink (a forged,
            # retained configuration for T1 is dropped).
            t2 = json.loads((tmp_path / "T2" / "config.json").read_text())
            poser, answers = _connect(broker, "T1", (t2["broker_user"], t2["broker_password"]),
                                      ca)
            assert answers and not answers[0].is_failure
            poser.publish("tilltap/v1/M1/T1/down/config", b"forged", qos=1, retain=True)
            # A barrier instead of a sleep: the broker handles one client's messages in
            # order, so once the poser's next message (to its own uplink, which it may write)
            # reaches the gateway, the forged one has been routed to T1 or dropped.
            received = gateway.stats.snapshot().get("received", 0)
            poser.publish("tilltap/v1/M1/T2/up/txn", b"after the forgery", qos=1)
            assert wait_until(lambda: gateway.stats.snapshot().get("received", 0) > received)
            sim.service(100)
            assert sim.net.connected
            # A forged configuration that reached T1 would count as a bad downlink.
            assert sim.uplink.stats["bad_downlinks"] == 0
            poser.loop_stop()
            poser.disconnect()
            sim.tap(CARD)
            assert sim.terminal.purchase(300)["approved"]
            assert sim.drain(time.monotonic() + WAIT_S)
        finally:
            sim.close()
            gateway.stop()
