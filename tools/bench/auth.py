"""Authorization round trip: a terminal's signed request to its verified decision, against a
raw MQTT echo through the same kind of broker in the same run.

    gateway:  requester child --QoS 1 up/auth--> mosquitto --> Gateway (this process): verify,
              decide on the card book, place a hold, seal --QoS 1 down/auth--> child (verifies)
    raw:      requester child --QoS 1 up/auth--> mosquitto --> echo client (this process)
              --QoS 1 down/auth--> child

One request in flight at a time, from TERMINALS terminals in turn (purchase authorizations on
gift cards they issued first). The child stamps the time before publishing and again in its
MQTT thread once the answer is in (and, for the gateway, verified), so waking its main thread
is not counted. The first WARMUP_REQUESTS are not counted. Payload sizes of the echo are those
of a sealed request and response.
"""

from __future__ import annotations

import math
import os
import socket
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt

from gateway.registry import TerminalRegistry
from gateway.service import Gateway
from gateway.store import GatewayStore
from protocol import messages, sealed, topics, txn
from tools.bench.gateway import (
    CHILD_READY_TIMEOUT_S,
    MERCHANT,
    SUBSCRIBE_SETTLE_S,
    BenchError,
    TerminalAcks,
    build_chains,
    card_id,
    child_process,
    connect,
    disconnect,
    keep_load_approvals,
    receive,
    round_robin,
    set_nodelay,
    terminal_ids,
)
from tools.bench.run import Metric, Section
from tools.demo import DEMO_PROGRAMS
from tools.mosquitto import MosquittoBroker

TERMINALS = 10
QUICK_REQUESTS = 300
FULL_REQUESTS = 2_000
WARMUP_REQUESTS = 20
RESPONSE_TIMEOUT_S = 5.0
ISSUES_PER_TERMINAL = 3  # build_chain starts with the three card issues
REQUEST_ID_BYTES = 4  # the echo's request number, so a late answer is never miscounted
# Mosquitto leaves Nagle's algorithm on by default; with it every small QoS 1 exchange waits
# for delayed TCP acks (about 90 ms per round trip here, raw or not). A deployment that cares
# about authorization latency sets this, so both runs of this section do.
BROKER_CONFIG = ("set_tcp_nodelay true",)


def request_fields(terminal: str, request: int, now_s: int) -> dict[str, Any]:
    amount = 100 + (request * 7919) % 4900
    return {"terminal": terminal, "request": request, "time": now_s, "merchant": MERCHANT,
            "card": card_id(terminal, "gift"), "kind": txn.KIND_PURCHASE, "currency": "EUR",
            "amount_minor": amount, "card_value_minor": amount}


def sealed_requests(keys: dict[str, bytes], count: int, now_s: int) -> list[tuple[str, bytes]]:
    """(terminal, sealed request) in sending order: the terminals take turns."""
    terminals = list(keys)
    requests = []
    for request in range(1, count + 1):
        terminal = terminals[request % len(terminals)]
        fields = request_fields(terminal, request, now_s)
        requests.append((terminal, sealed.seal(keys[terminal], messages.TYPE_AUTH_REQUEST,
                                               fields)))
    return requests


def percentile(samples: list[float], fraction: float) -> float:
    """Nearest-rank percentile (no interpolation: p99 of 500 samples is the 5th largest)."""
    ordered = sorted(samples)
    return ordered[max(math.ceil(fraction * len(ordered)) - 1, 0)]


class _Answers:
    """The requester's MQTT thread: stamps the arrival of the answer to the current request."""

    def __init__(self, keys: dict[str, bytes] | None) -> None:
        self.keys = keys  # None: raw echo, nothing to verify
        self.current = 0
        self.arrived = threading.Event()
        self.arrived_s = 0.0
        self.approved = 0
        self.acks: TerminalAcks | None = TerminalAcks(keys) if keys is not None else None

    def on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        _, _, _, terminal, _, leaf = message.topic.split("/")
        if leaf != topics.LEAF_AUTH:
            if self.acks is not None:
                self.acks.on_message(client, userdata, message)
            return
        payload = bytes(message.payload)
        if self.keys is None:
            answered = int.from_bytes(payload[:REQUEST_ID_BYTES], "big")
        else:
            response = sealed.open_message(payload, messages.TYPE_AUTH_RESPONSE,
                                           self.keys[terminal])
            answered = response["request"]
            self.approved += bool(response["approved"])
        if answered == self.current:
            self.arrived_s = time.perf_counter()
            self.arrived.set()


def _requester_child(connection: Connection, config: dict[str, Any]) -> None:
    """Issue the cards (gateway mode), then send requests one at a time and time the answers."""
    keys: dict[str, bytes] = config["keys"]
    gateway_mode = config["mode"] == "gateway"
    answers = _Answers(keys if gateway_mode else None)
    client = connect(config["host"], config["port"], "bench-requester", False, answers.on_message,
                     f"{topics.ROOT}/{MERCHANT}/+/{topics.DOWN}/#", nodelay=True)
    total = WARMUP_REQUESTS + config["requests"]
    if gateway_mode:
        assert answers.acks is not None
        issues = round_robin(build_chains(keys, dict.fromkeys(keys, ISSUES_PER_TERMINAL),
                                          config["now_s"]), topics.LEAF_TXN)
        for topic, payload in issues:
            client.publish(topic, payload, qos=1)
        answers.acks.progress.wait_for(len(issues), "card issues")
        requests = sealed_requests(keys, total, config["now_s"])
    else:
        terminals = list(keys)
        padding = os.urandom(config["request_bytes"] - REQUEST_ID_BYTES)
        requests = [(terminals[i % len(terminals)], i.to_bytes(REQUEST_ID_BYTES, "big") + padding)
                    for i in range(1, total + 1)]
    connection.send(("ok", len(requests)))
    connection.recv()  # "go"
    latencies_s = []
    for number, (terminal, payload) in enumerate(requests, start=1):
        answers.current = number
        answers.arrived.clear()
        sent_s = time.perf_counter()
        client.publish(topics.up(MERCHANT, terminal, topics.LEAF_AUTH), payload, qos=1)
        if not answers.arrived.wait(RESPONSE_TIMEOUT_S):
            raise BenchError(f"no answer to request {number} within {RESPONSE_TIMEOUT_S} s")
        if number > WARMUP_REQUESTS:
            latencies_s.append(answers.arrived_s - sent_s)
    disconnect(client)
    connection.send(("ok", {"latencies_s": latencies_s, "approved": answers.approved}))


def _echo(host: str, port: int, response_bytes: int) -> mqtt.Client:
    """A raw client that answers every up/auth message on the terminal's down/auth topic."""
    padding = os.urandom(response_bytes - REQUEST_ID_BYTES)

    def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        merchant, terminal = message.topic.split("/")[2:4]
        reply = bytes(message.payload[:REQUEST_ID_BYTES]) + padding
        client.publish(topics.down(merchant, terminal, topics.LEAF_AUTH), reply, qos=1)

    return connect(host, port, "bench-echo", True, on_message,
                   f"{topics.ROOT}/{MERCHANT}/+/{topics.UP}/{topics.LEAF_AUTH}", nodelay=True)


def _run_requester(config: dict[str, Any]) -> dict[str, Any]:
    with child_process(_requester_child, config) as child:
        receive(child, CHILD_READY_TIMEOUT_S, "requester")
        child.send("go")
        result: dict[str, Any] = receive(
            child, RESPONSE_TIMEOUT_S * (config["requests"] + WARMUP_REQUESTS), "requester")
    return result


def gateway_round_trips(requests: int, terminals: int = TERMINALS,
                        force_nodelay: bool = False) -> tuple[list[float], bool]:
    """Seconds from each signed request to its verified decision, through the gateway; and
    whether the gateway's own MQTT socket had Nagle's algorithm off (as shipped).

    force_nodelay: turn Nagle off on the gateway's socket from here, to measure what that
    changes (the gateway's code is not touched).
    """
    keys = {t: os.urandom(32) for t in terminal_ids(terminals)}
    registry = TerminalRegistry()
    for terminal, key in keys.items():
        registry.add(terminal, MERCHANT, key)
    with (MosquittoBroker(extra_config=BROKER_CONFIG) as broker,
          tempfile.TemporaryDirectory(prefix="tilltap-bench-") as tmp):
        now_s = int(time.time())
        prepared = GatewayStore(str(Path(tmp) / "gateway.db"))
        try:  # the card issues' approvals (value is loaded only under one)
            keep_load_approvals(prepared, dict.fromkeys(keys, ISSUES_PER_TERMINAL), now_s)
        finally:
            prepared.close()
        gateway = Gateway("bench", broker.host, broker.port, str(Path(tmp) / "gateway.db"),
                          registry, DEMO_PROGRAMS)
        gateway.start()
        try:
            shipped_nodelay = has_nodelay(gateway.mqtt.client)
            if force_nodelay:
                set_nodelay(gateway.mqtt.client)
            time.sleep(SUBSCRIBE_SETTLE_S)
            result = _run_requester({"host": broker.host, "port": broker.port, "keys": keys,
                                     "mode": "gateway", "requests": requests,
                                     "now_s": now_s})
        finally:
            gateway.stop()
    if result["approved"] != requests + WARMUP_REQUESTS:
        raise BenchError(f"only {result['approved']} of {requests + WARMUP_REQUESTS}"
                         " authorizations were approved")
    latencies: list[float] = result["latencies_s"]
    return latencies, shipped_nodelay


def has_nodelay(client: mqtt.Client) -> bool:
    sock = client.socket()
    assert isinstance(sock, socket.socket), "connected over plain TCP"
    return bool(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))


def echo_round_trips(requests: int, request_bytes: int, response_bytes: int,
                     terminals: int = TERMINALS) -> list[float]:
    """Seconds from each raw request to its echo, QoS 1 both ways, through Mosquitto."""
    keys = dict.fromkeys(terminal_ids(terminals), b"")
    with MosquittoBroker(extra_config=BROKER_CONFIG) as broker:
        echo = _echo(broker.host, broker.port, response_bytes)
        try:
            result = _run_requester({"host": broker.host, "port": broker.port, "keys": keys,
                                     "mode": "raw", "requests": requests,
                                     "request_bytes": request_bytes})
        finally:
            disconnect(echo)
    latencies: list[float] = result["latencies_s"]
    return latencies


def message_sizes() -> tuple[int, int]:
    """Bytes of a sealed authorization request and of its (approved) response."""
    key = bytes(32)
    request = sealed.seal(key, messages.TYPE_AUTH_REQUEST,
                          request_fields("T0001", 1, int(time.time())))
    response = sealed.seal(key, messages.TYPE_AUTH_RESPONSE, {
        "terminal": "T0001", "time": int(time.time()), "request": 1, "approved": True,
        "program": "gift",
        "currency": "EUR", "auth_id": "a1", "value_minor": 999_999_000, "points_balance": 0})
    return len(request), len(response)


def measure(quick: bool) -> Section:
    return measure_requests(QUICK_REQUESTS if quick else FULL_REQUESTS)


def measure_requests(requests: int, terminals: int = TERMINALS) -> Section:
    request_bytes, response_bytes = message_sizes()
    raw = echo_round_trips(requests, request_bytes, response_bytes, terminals)
    through_gateway, shipped_nodelay = gateway_round_trips(requests, terminals)
    section = Section("authorization")
    for name, fraction in (("p50", 0.50), ("p99", 0.99)):
        section.metrics.append(Metric.against(
            f"auth.round_trip_{name}_ms", percentile(through_gateway, fraction) * 1e3,
            percentile(raw, fraction) * 1e3, "ms", len(through_gateway)))
    section.notes.append(
        f"one request in flight, {terminals} terminals in turn, purchase authorizations that"
        f" each place a hold; raw: an echo client answering {request_bytes} B requests with"
        f" {response_bytes} B, QoS 1 both ways; broker and bench clients with TCP_NODELAY;"
        f" worst round trip {max(through_gateway) * 1e3:.1f} ms (raw {max(raw) * 1e3:.1f} ms)")
    if not shipped_nodelay:
        with_nodelay, _ = gateway_round_trips(requests, terminals, force_nodelay=True)
        section.notes.append(
            "where the time goes: the gateway's MQTT socket keeps Nagle's algorithm on"
            " (gateway/mqtt.py does not set TCP_NODELAY, paho does not either), so each answer"
            " waits for the broker's delayed TCP ack (~40 ms); with TCP_NODELAY set on that"
            f" socket, measured in this run: p50 {percentile(with_nodelay, 0.5) * 1e3:.2f} ms,"
            f" p99 {percentile(with_nodelay, 0.99) * 1e3:.2f} ms")
    return section
