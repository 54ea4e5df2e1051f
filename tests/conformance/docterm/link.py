"""MQTT for the docs-only terminal (docs/protocol.md section 4), on paho-mqtt.

MQTT 3.1.1, clean session off (acks wait at the broker while the terminal is away), the
terminal id as the client id (a session is found again by it), QoS 1, a sealed "offline"
status as the last will. It subscribes to its own `down/#` on every connect, paho's own
reconnects included, which is also what makes the broker send the retained configuration
again; `sessions` counts the subscriptions granted, so the terminal's thread sees each
(re)connect and does the rest of section 4's sequence (its "online" status, then its
unanswered records). Downlinks land in a bounded queue that the terminal's own thread reads;
what does not fit is counted (`discarded`), never blocks paho's thread.
"""

from __future__ import annotations

import queue
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

ROOT = "tilltap/v1"
INBOX_MAX = 1024
CONNECT_WAIT_S = 10.0
KEEPALIVE_S = 30
QOS = 1


def up_topic(merchant: str, terminal: str, leaf: str) -> str:
    return f"{ROOT}/{merchant}/{terminal}/up/{leaf}"


def down_topic(merchant: str, terminal: str, leaf: str) -> str:
    return f"{ROOT}/{merchant}/{terminal}/down/{leaf}"


class LinkError(RuntimeError):
    pass


class MqttLink:
    def __init__(self, host: str, port: int, merchant: str, terminal: str) -> None:
        self.host, self.port = host, port
        self.merchant, self.terminal = merchant, terminal
        self.inbox: queue.Queue[tuple[str, bytes]] = queue.Queue(INBOX_MAX)
        self.discarded = 0
        self.sessions = 0  # subscriptions granted: one per (re)connect
        self._subscribed = threading.Event()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=terminal,
                                  clean_session=False, protocol=mqtt.MQTTv311)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.connected = False

    def leaf_of(self, topic: str) -> str | None:
        prefix = down_topic(self.merchant, self.terminal, "")
        return topic[len(prefix):] if topic.startswith(prefix) else None

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object,
                    reason_code: object, properties: object) -> None:
        client.subscribe(down_topic(self.merchant, self.terminal, "#"), qos=QOS)

    def _on_subscribe(self, client: mqtt.Client, userdata: object, mid: int,
                      reason_codes: object, properties: object) -> None:
        self.connected = True
        self.sessions += 1
        self._subscribed.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object,
                       reason_code: object, properties: object) -> None:
        self.connected = False  # known disconnected: authorizations are decided at once

    def _on_message(self, client: mqtt.Client, userdata: object,
                    message: mqtt.MQTTMessage) -> None:
        try:
            self.inbox.put_nowait((message.topic, bytes(message.payload)))
        except queue.Full:
            self.discarded += 1

    def connect(self, will: bytes) -> None:
        """Connect (the will is the sealed "offline" status) and wait for the subscription."""
        self._subscribed.clear()
        self.client.will_set(up_topic(self.merchant, self.terminal, "status"), will,
                             qos=QOS, retain=True)
        self.client.connect(self.host, self.port, keepalive=KEEPALIVE_S)
        self.client.loop_start()
        if not self._subscribed.wait(CONNECT_WAIT_S):
            raise LinkError(f"no SUBACK from {self.host}:{self.port}")

    def disconnect(self) -> None:
        self.connected = False
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, leaf: str, payload: bytes, retain: bool = False) -> None:
        assert self.connected, "publish while disconnected: the journal keeps it instead"
        self.client.publish(up_topic(self.merchant, self.terminal, leaf), payload, qos=QOS,
                            retain=retain)

    def publish_to(self, topic: str, payload: bytes) -> None:
        """Publish on any topic: only tests use it, to send what no terminal would."""
        self.client.publish(topic, payload, qos=QOS)
