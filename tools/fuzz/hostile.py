"""The campaign's MQTT clients, and the unsigned hostile traffic they carry.

`Client` is one MQTT 3.1.1 connection with a broker login (and TLS when the broker has
it), publishing at QoS 1 with a bounded window: `flush` waits until the broker has taken
everything published so far, which bounds what the campaign holds in memory and keeps the
gateway's queues from filling. `OversizeSender` sends one packet past the broker's size limit
per connection (the broker drops the packet and closes the connection).

`unsigned_topic` picks a topic for an unsigned message on a terminal's login: its own
uplinks (which the ACL lets it write and the gateway reads), an uplink leaf or depth the
protocol does not have (the gateway refuses the topic), or a topic the ACL does not let it
write (the broker drops it, silently under MQTT 3.1.1).

`UnsignedTraffic` sends one unsigned message at a time, of a class drawn from its seed, on
the attacker's login or on an honest terminal's (tools/fuzz/junk.py makes the payloads).
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from protocol import cose, topics
from protocol.errors import ProtocolError
from tools.fuzz.junk import MESSAGE_BYTES_MAX, oversize_payload, unsigned_payload
from tools.fuzz.mutate import seal
from tools.mosquitto import PACKET_BYTES_MAX

CONNECT_TIMEOUT_S = 15.0
FLUSH_TIMEOUT_S = 60.0
KEEPALIVE_S = 60
INFLIGHT_MAX = 200
DISCONNECT_WAIT_S = 15.0
POLL_S = 0.01
# Shares of the unsigned messages.
OVERSIZE_ABOVE_SHARE = 0.002  # past the broker's packet limit: the broker drops the sender
OVERSIZE_BELOW_SHARE = 0.02  # past the gateway's 1024 bytes, under the broker's limit
FORGED_SHARE = 0.08  # a genuine payload MACed with a key that is not the terminal's
ATTACKER_LOGIN_SHARE = 0.35  # on the attacker's login, else on an honest terminal's

OnMessage = Callable[[str, bytes], None]


class ClientError(RuntimeError):
    """A campaign client could not connect (refused login, no broker)."""


class Client:
    def __init__(self, host: str, port: int, client_id: str, login: tuple[str, str],
                 ca_path: str | None, on_message: OnMessage | None = None,
                 subscription: str | None = None) -> None:
        self.host = host
        self.port = port
        self.subscription = subscription
        self._on_message_handler = on_message
        self._connected = threading.Event()
        self._refused: list[str] = []
        self._pending: list[mqtt.MQTTMessageInfo] = []
        self.disconnects = 0
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv311, clean_session=True)
        self.client.username_pw_set(*login)
        if ca_path is not None:
            self.client.tls_set(ca_certs=ca_path)
        self.client.max_inflight_messages_set(INFLIGHT_MAX)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    def connect(self) -> Client:
        self.client.connect(self.host, self.port, KEEPALIVE_S)
        self.client.loop_start()
        if not self._connected.wait(CONNECT_TIMEOUT_S) or self._refused:
            self.close()
            raise ClientError(f"no connection to {self.host}:{self.port}: {self._refused}")
        return self

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object,
                    reason: mqtt.ReasonCode, properties: object) -> None:
        if reason.is_failure:
            self._refused.append(str(reason))
        else:
            sock = client.socket()
            if isinstance(sock, socket.socket):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.subscription is not None:
                client.subscribe(self.subscription, qos=1)
        self._connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object,
                       reason: object, properties: object) -> None:
        self.disconnects += 1

    def _on_message(self, client: mqtt.Client, userdata: object,
                    message: mqtt.MQTTMessage) -> None:
        if self._on_message_handler is not None:
            self._on_message_handler(message.topic, bytes(message.payload))

    def publish(self, topic: str, payload: bytes) -> None:
        self._pending.append(self.client.publish(topic, payload, qos=1))

    def flush(self, timeout_s: float = FLUSH_TIMEOUT_S) -> int:
        """Wait until the broker acknowledged what was published; returns how many it did
        not within `timeout_s` (each waits in turn, so the wait is bounded by the last)."""
        missing = 0
        for info in self._pending:
            try:
                info.wait_for_publish(timeout_s)
            except (RuntimeError, ValueError):  # the connection went away meanwhile
                missing += 1
                continue
            if not info.is_published():
                missing += 1
        self._pending.clear()
        return missing

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class OversizeSender:
    """Publishes each packet above the broker's limit on a connection of its own: Mosquitto
    drops the packet and closes that connection (`max_packet_size`)."""

    def __init__(self, host: str, port: int, client_id: str, login: tuple[str, str],
                 ca_path: str | None) -> None:
        self.args = (host, port, client_id, login, ca_path)
        self.sent = 0
        self.closed_by_broker = 0

    def send(self, topic: str, payload: bytes) -> None:
        host, port, client_id, login, ca_path = self.args
        client = Client(host, port, f"{client_id}-{self.sent}", login, ca_path).connect()
        try:
            client.publish(topic, payload)
            self.sent += 1
            if _wait(lambda: client.disconnects > 0, DISCONNECT_WAIT_S):
                self.closed_by_broker += 1
        finally:
            client.close()


def _wait(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(POLL_S)
    return condition()


def unsigned_topic(rng: random.Random, merchant: str, terminal: str,
                   others: list[str]) -> tuple[str, str]:
    """(where, topic) for an unsigned message on `terminal`'s login: `where` is "uplink"
    (the gateway reads it), "bad_leaf" (a topic under the terminal's uplinks the gateway
    does not subscribe to: the broker delivers it to nobody) or "denied" (the broker's ACL
    drops it)."""
    roll = rng.random()
    if roll < 0.70:
        return "uplink", topics.up(merchant, terminal, topics.LEAF_TXN)
    if roll < 0.78:
        return "uplink", topics.up(merchant, terminal, topics.LEAF_AUTH)
    if roll < 0.82:
        return "uplink", topics.up(merchant, terminal, topics.LEAF_STATUS)
    base = f"{topics.ROOT}/{merchant}/{terminal}/{topics.UP}"
    if roll < 0.90:
        return "bad_leaf", rng.choice((f"{base}/foo", f"{base}/txn/txn", f"{base}/ack",
                                       f"{base}/config", f"{base}/", f"{base}/txn/"))
    other = rng.choice(others) if others else "T0"
    return "denied", rng.choice((
        topics.up(merchant, other, topics.LEAF_TXN),
        topics.down(merchant, terminal, topics.LEAF_ACK),
        topics.down(merchant, other, topics.LEAF_CONFIG),
        f"{topics.ROOT}/M9/{terminal}/{topics.UP}/txn",
        "tilltap/v2/x", "$SYS/broker/x", "x"))


def _payload_of(message: bytes) -> bytes:
    """The payload of a genuine signed message (its bytes, if it is not one)."""
    try:
        return bytes(cose.parse(message).payload)
    except ProtocolError:
        return message


class UnsignedTraffic:
    """Unsigned hostile messages on the attacker's login (`attacker_link`, whose recent
    signed messages are cut and spliced) and on each honest terminal's login."""

    def __init__(self, host: str, port: int, ca_path: str | None, merchant: str,
                 attacker: str, attacker_link: Client, attacker_login: tuple[str, str],
                 recent: Sequence[bytes], honest_logins: dict[str, tuple[str, str]],
                 seed: int, sent: Counter[str]) -> None:
        self.rng = random.Random(seed)
        self.merchant = merchant
        self.attacker = attacker
        self.attacker_link = attacker_link
        self.recent = recent
        self.sent = sent
        self.topics: Counter[str] = Counter()  # uplink, bad_leaf, denied
        self.honest = {terminal: Client(host, port, f"fuzz-{terminal}", login,
                                        ca_path).connect()
                       for terminal, login in honest_logins.items()}
        self.oversize = OversizeSender(host, port, f"fuzz-{attacker}-big", attacker_login,
                                       ca_path)

    @property
    def clients(self) -> list[Client]:
        return [self.attacker_link, *self.honest.values()]

    def one(self) -> None:
        rng = self.rng
        terminal = (self.attacker if rng.random() < ATTACKER_LOGIN_SHARE
                    else rng.choice(sorted(self.honest)))
        client = self.attacker_link if terminal == self.attacker else self.honest[terminal]
        others = [t for t in [*sorted(self.honest), self.attacker] if t != terminal]
        where, topic = unsigned_topic(rng, self.merchant, terminal, others)
        roll = rng.random()
        if roll < OVERSIZE_ABOVE_SHARE:
            size = rng.randrange(PACKET_BYTES_MAX + 1, 3 * PACKET_BYTES_MAX)
            self.oversize.send(topics.up(self.merchant, self.attacker, topics.LEAF_TXN),
                               oversize_payload(rng, size))
            self.sent["unsigned.oversize_past_broker"] += 1
            self.topics["uplink"] += 1
            return
        if roll < OVERSIZE_ABOVE_SHARE + OVERSIZE_BELOW_SHARE:
            size = rng.randrange(MESSAGE_BYTES_MAX + 1, PACKET_BYTES_MAX - 256)
            name, payload = "oversize", oversize_payload(rng, size)
        elif roll < OVERSIZE_ABOVE_SHARE + OVERSIZE_BELOW_SHARE + FORGED_SHARE:
            genuine = _payload_of(rng.choice(list(self.recent) or [b"\xa0"]))
            name, payload = "forged_mac", seal(rng.randbytes(32), genuine, terminal.encode())
        else:
            name, payload = unsigned_payload(rng, list(self.recent))
        client.publish(topic, payload)
        self.sent["unsigned." + name] += 1
        self.topics[where] += 1

    def flush(self) -> int:
        """Wait until the broker took what every client published; returns how many not."""
        return sum(client.flush() for client in self.clients)

    def close(self) -> None:
        for client in self.honest.values():
            client.close()
