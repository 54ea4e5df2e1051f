"""A store in a box for end-to-end tests: ledger (HTTP, SQLite) + gateway on a real broker.

The gateway runs in-process here; test (d) runs it as its own process to kill it. On a
StoreBroker (tests/support/store_broker.py, the deployed configuration) the gateway, the
terminals' configurations and RawTerminal log in with their own logins over TLS, pinning the
store's CA; on a plain MosquittoBroker they connect anonymously in clear text.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway.registry import TerminalRegistry
from gateway.service import Gateway
from ledger.client import LedgerClient
from ledger.server import LedgerServer, serve
from protocol import cbor, cose, messages, sealed, topics, txn
from tests.support.store_broker import StoreBroker, broker_ca, gateway_login, terminal_login
from tools.demo import DEMO_PROGRAMS
from tools.mosquitto import MosquittoBroker

WAIT_S = 20.0


class Stack:
    def __init__(self, broker: MosquittoBroker, workdir: Path, terminals: list[str],
                 limits: dict[str, int] | None = None) -> None:
        self.broker = broker
        self.workdir = workdir
        self.keys = {t: os.urandom(32) for t in terminals}
        self.registry = TerminalRegistry()
        for terminal, key in self.keys.items():
            self.registry.add(terminal, "M1", key)
        if isinstance(broker, StoreBroker):  # their logins, in one reload of the broker
            broker.terminal_logins("M1", terminals)
        self.ledger: LedgerServer = serve(f"sqlite:///{workdir / 'ledger.db'}")
        self.ledger_client = LedgerClient(self.ledger.url)
        self.limits = limits
        self.gateway = self.new_gateway()

    def terminal_config(self, terminal: str) -> dict[str, Any]:
        """What a terminal of this stack is provisioned with (firmware/app.py's config)."""
        config: dict[str, Any] = {"terminal": terminal, "merchant": "M1",
                                  "key": self.keys[terminal], "currency": "EUR",
                                  "programs": DEMO_PROGRAMS}
        login = terminal_login(self.broker, "M1", terminal)
        if login is not None:  # as `tilltap terminal provision` writes it for the board
            config.update(broker_user=login[0], broker_password=login[1],
                          broker_ca=broker_ca(self.broker))
        return config

    def new_gateway(self) -> Gateway:
        """A gateway on this stack's store (a restart is stop() and a new one)."""
        return Gateway("gw1", self.broker.host, self.broker.port,
                       str(self.workdir / "gateway.db"), self.registry, DEMO_PROGRAMS,
                       self.ledger.url, limits=self.limits,
                       broker_login=gateway_login(self.broker), broker_ca=broker_ca(self.broker))

    def close(self) -> None:
        self.gateway.stop()
        self.ledger.stop()


@contextmanager
def running_stack(broker: MosquittoBroker, workdir: Path, terminals: list[str],
                  limits: dict[str, int] | None = None) -> Iterator[Stack]:
    stack = Stack(broker, workdir, terminals, limits)
    stack.gateway.start()
    try:
        yield stack
    finally:
        stack.close()


APPROVAL_REQUEST_BASE = 1_000_000


def sealed_by_hand(key: bytes, kid: str, message_type: int, fields: dict[str, Any],
                   extra_keys: dict[Any, Any] | None = None) -> bytes:
    """`fields` under their schema keys, MACed under `key`, with none of the encoder's checks
    (what a stolen key, or a broken encoder, can send); None values left out."""
    names = {name: number for number, name, _, _ in messages.SCHEMAS[message_type]}
    item: dict[Any, Any] = {messages.K_TYPE: message_type, messages.K_VERSION: 1}
    item.update({names[name]: value for name, value in fields.items() if value is not None})
    item.update(extra_keys or {})
    return cose.create(key, cbor.encode(item), kid.encode())


class RawTerminal:
    """Signs records itself and talks raw MQTT: the attacker's and the duplicator's tool.

    On a StoreBroker it logs in as `terminal` over TLS: a stolen key comes with that
    terminal's broker login at most, so the ACL confines it to its own topics."""

    def __init__(self, broker: MosquittoBroker, terminal: str, key: bytes,
                 merchant: str = "M1") -> None:
        self.terminal = terminal
        self.key = key
        self.merchant = merchant
        self.prev = txn.GENESIS_DIGEST
        self.seq = 0
        self.downlinks: list[tuple[str, bytes]] = []
        # Authorization request ids `approval` uses: far above the small ids tests choose.
        self._requests = APPROVAL_REQUEST_BASE
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"raw-{terminal}",
                                  protocol=mqtt.MQTTv311)
        self.client.on_message = self._on_message
        login = terminal_login(broker, merchant, terminal)
        if login is not None:
            self.client.username_pw_set(*login)
            self.client.tls_set(ca_certs=broker_ca(broker))
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *args: subscribed.set()
        self.client.connect(broker.host, broker.port)
        self.client.subscribe(topics.terminal_subscription(merchant, terminal), qos=1)
        self.client.loop_start()
        # Its downlinks are routed to it from the SUBACK on (a refused login gets none).
        assert subscribed.wait(WAIT_S), f"{terminal} could not subscribe on {broker!r}"

    def _on_message(self, client: mqtt.Client, userdata: object,
                    message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.downlinks.append((message.topic, bytes(message.payload)))

    def record(self, kind: int, card: str, amount: int, **extra: Any) -> bytes:
        """The next sealed record of this terminal's chain."""
        self.seq += 1
        fields = {"terminal": self.terminal, "seq": self.seq, "prev": self.prev,
                  "time": int(time.time()), "merchant": self.merchant, "card": card,
                  "kind": kind, "currency": "EUR", "amount_minor": amount,
                  "card_value_minor": amount, "bonus_minor": 0, "points": 0,
                  "auth_mode": txn.AUTH_ONLINE}
        fields.update(extra)
        record = txn.seal(self.key, fields)
        self.prev = txn.digest(record)
        return record

    def approval(self, kind: int, card: str, amount: int, **extra: Any) -> str:
        """Ask the gateway, as a till does before an issue or top-up (value is loaded only
        as the gateway approved it), for the next seq; the approval's auth id."""
        self._requests += 1
        request_id = self._requests
        fields = {"terminal": self.terminal, "request": request_id, "seq": self.seq + 1,
                  "time": int(time.time()), "merchant": self.merchant, "card": card,
                  "kind": kind, "currency": "EUR", "amount_minor": amount,
                  "card_value_minor": 0}
        fields.update({k: v for k, v in extra.items() if k in ("program", "sun")})
        self.publish(sealed.seal(self.key, messages.TYPE_AUTH_REQUEST, fields),
                     leaf=topics.LEAF_AUTH)
        assert wait_until(lambda: request_id in self.auth_answers()), "no answer"
        answer = self.auth_answers()[request_id]
        assert answer["approved"], answer
        return str(answer["auth_id"])

    def approved(self, kind: int, card: str, amount: int, **extra: Any) -> bytes:
        """The next record of an issue or top-up the gateway approved for it."""
        auth_id = self.approval(kind, card, amount, **extra)
        return self.record(kind, card, amount, auth_id=auth_id, **extra)

    def auth_answers(self) -> dict[int, dict[str, Any]]:
        with self._lock:
            items = list(self.downlinks)
        answers = [sealed.open_message(payload, messages.TYPE_AUTH_RESPONSE, self.key)
                   for topic, payload in items if topic.endswith("/" + topics.LEAF_AUTH)]
        return {answer["request"]: answer for answer in answers}

    def send_by_hand(self, fields: dict[str, Any],
                     extra_keys: dict[Any, Any] | None = None) -> int:
        """Seal `fields` as this terminal's next record by hand (`sealed_by_hand`), chain
        it and publish it; its seq."""
        record = sealed_by_hand(self.key, self.terminal, messages.TYPE_TXN, fields, extra_keys)
        self.seq, self.prev = fields["seq"], txn.digest(record)
        self.publish(record)
        return self.seq

    def publish(self, payload: bytes, leaf: str = topics.LEAF_TXN,
                terminal: str | None = None) -> None:
        topic = topics.up(self.merchant, terminal or self.terminal, leaf)
        self.client.publish(topic, payload, qos=1).wait_for_publish(WAIT_S)

    def acks(self) -> list[dict[str, Any]]:
        with self._lock:
            items = list(self.downlinks)
        return [sealed.open_message(p, messages.TYPE_ACK, self.key)
                for t, p in items if t.endswith("/ack")]

    def notices(self) -> list[dict[str, Any]]:
        """Notices, each with "signed": whether it was sealed under this terminal's key."""
        with self._lock:
            items = list(self.downlinks)
        found = []
        for topic, payload in items:
            if not topic.endswith("/notice"):
                continue
            if payload[:1] == b"\xd1":
                notice = sealed.open_message(payload, messages.TYPE_NOTICE, self.key)
                found.append(dict(notice, signed=True))
            else:
                found.append(dict(messages.decode(payload, messages.TYPE_NOTICE), signed=False))
        return found

    def replayed(self) -> set[tuple[int, bytes]]:
        return {(seq, digest) for a in self.acks() for seq, digest in a.get("replayed", ())}

    def acked_through(self) -> int:
        return max((a["acked_through"] for a in self.acks()), default=0)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def wait_until(condition: Callable[[], bool], timeout_s: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()
