"""The board's MQTT client, for real: firmware/net_umqtt.py over micropython-lib's umqtt.simple
(the pinned PyPI release, tools/mpy/umqtt_package.py) on real MicroPython, its socket bridged
byte for byte to a real TCP connection to a real Mosquitto (tools/mpy/socket_bridge.py).

Each test runs a script on MicroPython that drives UmqttNet; `step(...)` lets CPython act at
a chosen point (publish to the board, restart the broker, slow the link down), and `report`
hands results back. A CPython paho client (tools/simulator/paho_net.PahoNet) is the peer.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from protocol import messages, sealed, txn
from tests.e2e import test_micropython_terminal as micropython_terminal
from tests.support.stack import running_stack, wait_until
from tools.mosquitto import MosquittoBroker
from tools.mpy.harness import MicroPythonTerminal
from tools.mpy.socket_bridge import ScriptRun, run_with_sockets
from tools.simulator.paho_net import PahoNet

PINGREQ = 0xC0
CONNECT = 0x10
SUBSCRIBE = 0x80
PUBACK = 0x40
DISCONNECT = 0xE0
PROXY_CHUNK_BYTES = 4096
PROXY_IDLE_POLL_S = 0.05

PRELUDE = """
import time
from host_seams import call
from firmware.net_umqtt import UmqttNet, is_timeout

def step(name, **arguments):
    return call("step", name=name, **arguments)

def report(**fields):
    call("report", **fields)

def poll_for(net, count, rounds=40):
    got = []
    for _ in range(rounds):
        got += net.poll(250)
        if len(got) >= count:
            break
    return got

def fails(action, *arguments):
    try:
        action(*arguments)
    except OSError as error:
        return error
    raise AssertionError("expected OSError from %r" % (action,))
"""


def run(script: str, hooks: dict[str, Any] | None = None) -> ScriptRun:
    result = run_with_sockets(PRELUDE + script, hooks)
    assert result.returncode == 0, result.stderr
    return result


@contextlib.contextmanager
def peer(broker: MosquittoBroker, *topics: str) -> Iterator[PahoNet]:
    net = PahoNet(broker.host, broker.port)
    net.connect("peer", "peer/status", b"gone")
    for topic in topics:
        net.subscribe(topic)
    try:
        yield net
    finally:
        net.disconnect()


def collect(net: PahoNet, into: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    into.extend(net.poll(100))
    return into


class DelayProxy:
    """A TCP relay between the board and Mosquitto that slows or silences the broker.

    `delay_s` holds each chunk from the broker that long (a slow or far broker); `stall()`
    stops everything both ways, closes included, without closing anything: a half-open link.
    """

    def __init__(self, broker: MosquittoBroker) -> None:
        self.upstream = (broker.host, broker.port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.delay_s = 0.0
        self.stalled = threading.Event()
        self.closed = threading.Event()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def stall(self) -> None:
        self.stalled.set()

    def close(self) -> None:
        self.closed.set()
        self.listener.close()
        for sock in self.sockets:
            sock.close()

    def _accept(self) -> None:
        while not self.closed.is_set():
            try:
                board, _ = self.listener.accept()
            except OSError:
                return
            broker = socket.create_connection(self.upstream)
            self.sockets += [board, broker]
            threading.Thread(target=self._pump, args=(board, broker, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(broker, board, True), daemon=True).start()

    def _hold_while_stalled(self) -> bool:
        """Wait while stalled; True when the proxy closed meanwhile."""
        while self.stalled.is_set() and not self.closed.is_set():
            time.sleep(PROXY_IDLE_POLL_S)
        return self.closed.is_set()

    def _pump(self, source: socket.socket, target: socket.socket, from_broker: bool) -> None:
        while True:
            try:
                data = source.recv(PROXY_CHUNK_BYTES)
            except OSError:
                data = b""
            if self._hold_while_stalled():
                return
            if not data:
                break
            if from_broker and self.delay_s:
                time.sleep(self.delay_s)
            try:
                target.sendall(data)
            except OSError:
                break
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def proxy(private_mosquitto: MosquittoBroker) -> Iterator[DelayProxy]:
    relay = DelayProxy(private_mosquitto)
    yield relay
    relay.close()


def test_connect_subscribe_and_publish_at_qos_1_with_a_real_broker(
        mosquitto: MosquittoBroker) -> None:
    heard: list[tuple[str, bytes]] = []
    with peer(mosquitto, "mp1/up", "mp1/status") as other:

        def send_down(count: int) -> None:
            for index in range(count):
                other.publish(f"mp1/down/{index}", bytes([index]) * 3)

        result = run(f"""
net = UmqttNet({mosquitto.host!r}, {mosquitto.port}, keepalive_s=60)
net.connect("mp1", "mp1/status", b"offline")
net.subscribe("mp1/down/#")
net.publish("mp1/up", b"hello from micropython")
net.publish("mp1/status", b"online", True)
step("send_down", count=3)
got = poll_for(net, 3)
report(got=[[topic, payload.hex()] for topic, payload in got], connected=net.connected)
net.disconnect()
""", {"send_down": send_down})
        assert wait_until(lambda: len(collect(other, heard)) >= 2)
    assert heard[:2] == [("mp1/up", b"hello from micropython"), ("mp1/status", b"online")]
    [outcome] = result.reports
    assert outcome["got"] == [[f"mp1/down/{i}", (bytes([i]) * 3).hex()] for i in range(3)]
    assert outcome["connected"]
    bridge = result.bridge
    # The broker saw the bytes MicroPython's umqtt.simple wrote, packet by packet.
    assert bridge.published == [("mp1/up", b"hello from micropython"),
                                ("mp1/status", b"online")]
    assert [topic for topic, _ in bridge.delivered] == [f"mp1/down/{i}" for i in range(3)]
    types = bridge.sent_packet_types
    assert types[:2] == [CONNECT, SUBSCRIBE] and types[-1] == DISCONNECT
    assert types.count(PUBACK) == 3  # each QoS 1 message the board took in was acknowledged
    assert bridge.connects == 1


def test_keepalive_pings_hold_an_idle_link_past_the_brokers_deadline(
        mosquitto: MosquittoBroker) -> None:
    # Mosquitto drops a client silent for 1.5 x keepalive (3 s here); the board idles 5 s.
    heard: list[tuple[str, bytes]] = []
    with peer(mosquitto, "mp2/up") as other:
        result = run(f"""
net = UmqttNet({mosquitto.host!r}, {mosquitto.port}, keepalive_s=2)
net.connect("mp2", "mp2/status", b"offline")
start = time.ticks_ms()
while time.ticks_diff(time.ticks_ms(), start) < 5000:
    assert net.poll(250) == []
net.publish("mp2/up", b"still here")
report(connected=net.connected)
""")
        assert wait_until(lambda: ("mp2/up", b"still here") in collect(other, heard))
    assert result.reports == [{"connected": True}]
    assert result.bridge.sent_packet_types.count(PINGREQ) >= 4  # one per keepalive / 2
    assert result.bridge.connects == 1  # the same connection throughout


def test_a_broker_restart_fails_the_link_and_the_board_reconnects(
        private_mosquitto: MosquittoBroker) -> None:
    broker = private_mosquitto
    heard: list[tuple[str, bytes]] = []
    peers: list[PahoNet] = []

    def restart() -> None:
        broker.restart()
        net = PahoNet(broker.host, broker.port)
        net.connect("peer", "peer/status", b"gone")
        net.subscribe("mp3/up")
        peers.append(net)

    result = run(f"""
net = UmqttNet({broker.host!r}, {broker.port}, socket_timeout_ms=3000)
net.connect("mp3", "mp3/status", b"offline")
net.publish("mp3/up", b"before")
step("restart")
error = fails(net.publish, "mp3/up", b"lost with the old broker")
report(error=str(error), connected=net.connected)
for attempt in range(20):
    try:
        net.connect("mp3", "mp3/status", b"offline")
        break
    except OSError:
        time.sleep_ms(250)
net.subscribe("mp3/down")
net.publish("mp3/up", b"after")
report(connected=net.connected)
""", {"restart": restart})
    try:
        assert wait_until(lambda: ("mp3/up", b"after") in collect(peers[0], heard))
    finally:
        for net in peers:
            net.disconnect()
    failed, healed = result.reports
    assert failed["connected"] is False and healed["connected"] is True
    assert result.bridge.connects == 2


def test_a_slow_broker_is_waited_for_and_a_stalled_one_is_given_up(
        private_mosquitto: MosquittoBroker, proxy: DelayProxy) -> None:
    heard: list[tuple[str, bytes]] = []

    def slow(seconds: float) -> None:
        proxy.delay_s = seconds

    wills_before_stall: list[int] = []

    def offline_wills() -> int:
        return collect(other, heard).count(("mp4/status", b"offline"))

    def stall() -> None:
        time.sleep(0.5)  # the will of the link the slow broker lost is out by now
        wills_before_stall.append(offline_wills())
        proxy.stall()

    with peer(private_mosquitto, "mp4/up", "mp4/status") as other:
        result = run(f"""
net = UmqttNet("127.0.0.1", {proxy.port}, keepalive_s=2, socket_timeout_ms=2000)
step("slow", seconds=0.5)   # every answer of the broker 0.5 s late: within the timeout
net.connect("mp4", "mp4/status", b"offline")
net.subscribe("mp4/down")
net.publish("mp4/up", b"slow but sure")
report(connected=net.connected)
step("slow", seconds=3.0)   # later than the 2 s socket timeout
error = fails(net.publish, "mp4/up", b"too slow")
report(timeout=is_timeout(error), connected=net.connected)
step("slow", seconds=0.0)
net.connect("mp4", "mp4/status", b"offline")
net.publish("mp4/up", b"healed")
step("stall")               # half-open: nothing arrives, nothing is refused
error = fails(net.publish, "mp4/up", b"into the void")
report(timeout=is_timeout(error), connected=net.connected)
""", {"slow": slow, "stall": stall})
        # The broker hears nothing from the half-open link for 1.5 x keepalive: the will.
        assert wait_until(lambda: offline_wills() > wills_before_stall[0], timeout_s=15)
    ok, slow_failed, stalled = result.reports
    assert ok == {"connected": True}
    assert slow_failed == {"timeout": True, "connected": False}
    assert stalled == {"timeout": True, "connected": False}
    published = [payload for topic, payload in heard if topic == "mp4/up"]
    assert published[0] == b"slow but sure" and b"healed" in published
    assert b"into the void" not in published


def test_the_micropython_sale_suite_passes_through_the_boards_own_mqtt_client(
        private_mosquitto: MosquittoBroker, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """tests/e2e/test_micropython_terminal.py, word for word, with the terminal's network
    being UmqttNet over umqtt.simple on MicroPython instead of the harness's paho client."""
    monkeypatch.setattr(micropython_terminal, "MicroPythonTerminal",
                        functools.partial(MicroPythonTerminal, net="umqtt"))
    micropython_terminal.test_transactions_made_on_real_micropython_are_posted_in_the_ledger(
        private_mosquitto, tmp_path)


def test_a_lost_link_mid_day_heals_and_every_sale_is_acknowledged(
        private_mosquitto: MosquittoBroker, tmp_path: Path) -> None:
    card = "04a1a2a3a4a5a6"
    with running_stack(private_mosquitto, tmp_path, ["MPU1"]) as stack, \
            MicroPythonTerminal(stack.terminal_config("MPU1"), private_mosquitto.host,
                                private_mosquitto.port, net="umqtt") as terminal:
        assert terminal.command({"op": "issue", "program": "gift", "value_minor": 10000},
                                card=card)["approved"], terminal.stderr()
        sockets = terminal.sockets
        assert sockets is not None
        for amount in (100, 200, 300):
            connects = sockets.connects
            terminal.drop_connection()  # the board's TCP link dies at its next socket call
            # Idle, the firmware polls, finds the link dead and connects again by itself.
            assert wait_until(lambda: sockets.connects > connects, timeout_s=30), (  # noqa: B023
                terminal.stderr())
            sale = terminal.command({"op": "purchase", "amount_minor": amount, "pay": "card"},
                                    card=card)
            assert sale["approved"] and sale["txn"]["auth_mode"] == txn.AUTH_ONLINE, sale
        assert wait_until(lambda: stack.gateway.stats.snapshot().get("accepted") == 4,
                          timeout_s=60)

        def acked_through() -> int:
            acks = [sealed.open_message(payload, messages.TYPE_ACK, stack.keys["MPU1"])
                    for topic, payload in list(terminal.delivered) if topic.endswith("/ack")]
            return max((ack["acked_through"] for ack in acks), default=0)

        assert wait_until(lambda: acked_through() == 4)  # read off the board's own socket
        final = terminal.stop()
        stack.gateway.settle()
        assert stack.ledger_client.card(card)["value_minor"] == 10000 - 600
    assert final["journal_depth"] == 0 and final["uplink"]["acked"] == 4
    assert final["uplink"]["connects"] == 4  # the first, and one after each lost link


def test_a_refused_connect_reaches_micropython_as_its_errno_and_the_table_backs_off() -> None:
    # Nothing listens on the port: the host's ECONNREFUSED crosses the socket seam as
    # OSError(111), the number the Pico W's port raises, and firmware/net_errors.py decides.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    result = run(f"""
from firmware import net_errors
net = UmqttNet("127.0.0.1", {closed_port})
error = fails(net.connect, "mp1", "mp1/status", b"offline")
report(errno=error.args[0], decision=net_errors.decision(error),
       back_off=net_errors.BACK_OFF, connected=net.connected)
""")
    [outcome] = result.reports
    assert outcome["errno"] == 111
    assert outcome["decision"] == outcome["back_off"] and not outcome["connected"]
