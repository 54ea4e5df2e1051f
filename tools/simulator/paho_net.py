"""The firmware's Net seam on CPython: paho-mqtt speaking MQTT 3.1.1, as umqtt does on boards.

The session is persistent (clean_session=False) like a board's, so acks published while the
terminal is disconnected wait for it at the broker. paho's network thread fills a bounded
inbox; `poll` drains it on the firmware's own schedule.
"""

from __future__ import annotations

import queue
import socket
import threading

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

INBOX_MAX = 1000
CONNECT_TIMEOUT_S = 5.0
KEEPALIVE_S = 30


class PahoNet:
    def __init__(self, host: str, port: int, login: tuple[str, str] | None = None,
                 ca_path: str | None = None) -> None:
        self.host = host
        self.port = port
        self.login = login  # (broker user, password), as provisioned for the board
        self.ca_path = ca_path  # TLS, trusting only the store's CA
        self.client: mqtt.Client | None = None
        self._inbox: queue.Queue[tuple[str, bytes]] = queue.Queue(INBOX_MAX)
        self._connack = threading.Event()
        self._closing = threading.Lock()  # one caller stops a client's loop, once
        self.dropped = 0

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.is_connected()

    def connect(self, client_id: str, will_topic: str, will_payload: bytes) -> None:
        self.disconnect()
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv311, clean_session=False)
        client.will_set(will_topic, will_payload, qos=1, retain=True)
        if self.login is not None:
            client.username_pw_set(*self.login)
        if self.ca_path is not None:
            client.tls_set(ca_certs=self.ca_path)
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        self._connack.clear()
        try:
            client.connect(self.host, self.port, KEEPALIVE_S)
        except OSError:
            raise
        client.loop_start()
        if not self._connack.wait(CONNECT_TIMEOUT_S):
            client.loop_stop()
            raise OSError("no CONNACK")
        self.client = client

    def _on_connect(self, client: mqtt.Client, *args: object) -> None:
        sock = client.socket()
        if isinstance(sock, socket.socket):  # small messages must not wait for delayed ACKs
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._connack.set()

    def _on_message(self, client: mqtt.Client, userdata: object,
                    message: mqtt.MQTTMessage) -> None:
        try:
            self._inbox.put_nowait((message.topic, bytes(message.payload)))
        except queue.Full:
            self.dropped += 1

    def subscribe(self, topic: str) -> None:
        if self.client is None:
            raise OSError("not connected")
        self.client.subscribe(topic, qos=1)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        if not self.connected:
            raise OSError("not connected")
        assert self.client is not None
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise OSError(f"publish failed rc={info.rc}")

    def poll(self, timeout_ms: int) -> list[tuple[str, bytes]]:
        out: list[tuple[str, bytes]] = []
        try:
            out.append(self._inbox.get(timeout=timeout_ms / 1000) if timeout_ms > 0
                       else self._inbox.get_nowait())
        except queue.Empty:
            return out
        while True:
            try:
                out.append(self._inbox.get_nowait())
            except queue.Empty:
                return out

    def disconnect(self) -> None:
        # Taken under a lock: a terminal's thread reconnecting and the demo closing it may
        # both get here (found by Ctrl-C mid-day: the second one met None).
        with self._closing:
            client, self.client = self.client, None
        if client is not None:
            client.disconnect()
            client.loop_stop()
