"""The board's MQTT link over TLS, for real on CPython: firmware/net_umqtt.py over the pinned
umqtt.simple, with a board's socket and ssl modules played on CPython's TCP and OpenSSL
(tests/support/cpython_port.py), against the store's broker as deployed (TLS only, logins,
ACL; tests/support/store_broker.py) and its CA from `tilltap store tls`.

Real MicroPython cannot run this: its WebAssembly port has no ssl module (docs/hardware.md,
"TLS"); tests/mpy/test_net_errors.py checks there that a configured CA is then refused at
start, and tools/mpy runs the clear-text link against Mosquitto.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from firmware import net_errors
from firmware.hal import SyncedClock
from firmware.journal import Journal
from firmware.net_umqtt import TlsUnavailable, UmqttNet
from firmware.storage import MemoryStorage
from firmware.uplink import Uplink
from protocol import reasons, topics
from tests.support.cpython_port import MBEDTLS_ERR_X509_CERT_VERIFY_FAILED, board_port
from tests.support.store_broker import StoreBroker
from tools.simulator.paho_net import PahoNet
from tools.tls import make_store_tls

MERCHANT, TERMINAL = "M1", "T1"
KEY = bytes(range(32))


class Clock:
    def ticks_ms(self) -> int:
        import time

        return int(time.monotonic() * 1000)

    def ticks_diff(self, a: int, b: int) -> int:
        return a - b

    def now_s(self) -> int:
        import time

        return int(time.time())


def board_net(broker: StoreBroker, ca_pem: str, board_ssl: object) -> UmqttNet:
    user, password = broker.terminal_login(MERCHANT, TERMINAL)
    return UmqttNet(broker.host, broker.port, user, password, clock=Clock(), ca=ca_pem,
                    ssl_module=board_ssl)


def test_the_board_connects_over_tls_pinning_the_store_ca_and_publishes(
        store_broker: StoreBroker, monkeypatch: pytest.MonkeyPatch) -> None:
    status_topic = topics.up(MERCHANT, TERMINAL, topics.LEAF_STATUS)
    gateway = PahoNet(store_broker.host, store_broker.port, store_broker.gateway_login,
                      store_broker.ca)
    gateway.connect("gw-probe", "probe/status", b"gone")
    gateway.subscribe(status_topic)
    try:
        with board_port(monkeypatch) as board_ssl:
            net = board_net(store_broker, Path(store_broker.ca).read_text(), board_ssl)
            net.connect(TERMINAL, status_topic, b"offline")
            net.publish(status_topic, b"online over tls")  # returns once the PUBACK is in
            assert net.tls and net.connected
            net.disconnect()
        received: list[tuple[str, bytes]] = []
        for _ in range(40):
            received += gateway.poll(100)
            if received:
                break
        assert (status_topic, b"online over tls") in received
    finally:
        gateway.disconnect()


def test_a_broker_whose_certificate_another_ca_signed_is_refused_and_given_up_on(
        store_broker: StoreBroker, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    make_store_tls(tmp_path, store_broker.host)  # a CA of another store, same address
    with board_port(monkeypatch) as board_ssl:
        net = board_net(store_broker, (tmp_path / "ca.pem").read_text(), board_ssl)
        with pytest.raises(OSError) as refused:
            net.connect(TERMINAL, "will", b"offline")
        assert refused.value.args[0] == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED
        assert net_errors.decision(refused.value) == net_errors.GIVE_UP
        assert not net.connected  # and no clear-text try after it

        config = {"terminal": TERMINAL, "merchant": MERCHANT, "key": KEY}
        uplink = Uplink(config, Journal(MemoryStorage()), net, SyncedClock(Clock()),
                        _Random())
        uplink.service(0)
        assert uplink.stats["link_refused"] == 1
        assert uplink.errors == [reasons.BROKER_UNTRUSTED]


class _Random:
    def u32(self) -> int:
        return 7


def test_a_ca_without_an_ssl_module_is_a_typed_error_not_a_clear_text_link(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ssl", None)  # a port built without ssl
    with pytest.raises(TlsUnavailable, match="no ssl module"):
        UmqttNet("127.0.0.1", 8883, clock=Clock(), client_factory=object,
                 ca="-----BEGIN CERTIFICATE-----\n")
