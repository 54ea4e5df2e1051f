"""The gateway's broker connection (paho-mqtt 2.x, MQTT 5).

The session is persistent (clean_start=False with a session expiry), so QoS 1 uplinks that
arrive while the gateway is down wait at the broker: records and status. Authorization
requests are subscribed at QoS 0, which the broker does not keep for an absent subscriber
(Mosquitto's `queue_qos0_messages` is off): a request that would have waited there is past
its terminal's wait (the terminal sold offline or declined), and answering it would only
hold value no sale will take (issue 14). paho acknowledges a PUBLISH when
`on_message` returns; durability comes from the application-level ack instead: a terminal
keeps a record until the gateway's signed ack covers it, and resends it otherwise.

A store's standby gateway (gateway/lease.py) connects with the same client id once it holds
the lease: the broker hands it the session, its subscriptions and the QoS 1 messages queued
in it, and disconnects an old holder still connected, which checks the lease before it
connects again (`before_connect`) and so never takes the session back.

`on_message` only routes: it puts (topic, payload) on a bounded queue per kind of uplink.
A full queue drops the message and counts it; the terminal resends it later.

The link logs its changes, once each (docs/deployment.md "Logs"): `broker_connected` at the
first CONNACK, `broker_lost` when the connection drops, `broker_back` at the CONNACK that
follows (paho reconnects on its own, with its backoff).
"""

from __future__ import annotations

import logging
import queue
import socket
import threading
import time
from collections.abc import Callable

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gateway.stage import OnDeath, exit_process
from gateway.stats import Stats
from protocol import topics

SESSION_EXPIRY_S = 24 * 3600
KEEPALIVE_S = 30
INFLIGHT_MAX = 1000
CONNECT_TIMEOUT_S = 10.0

Route = Callable[[str, bytes], bool]  # returns False when the message had to be dropped

log = logging.getLogger(__name__)


class MqttLink:
    def __init__(self, host: str, port: int, client_id: str, stats: Stats,
                 routes: dict[str, Route], merchant: str = "+", mqtt5: bool = True,
                 on_death: OnDeath = exit_process,
                 login: tuple[str, str] | None = None, ca_path: str | None = None,
                 before_connect: Callable[[], None] | None = None) -> None:
        """`before_connect()`: called before every connect and reconnect; it raises (or
        ends the process) when this process may no longer take the session, which a
        connect with its client id takes from whoever holds it (gateway/lease.py)."""
        self.on_death = on_death  # a route that raises: paho's thread would die with it
        self.before_connect = before_connect
        self.host = host
        self.port = port
        self.stats = stats
        self.routes = routes
        self.subscriptions = topics.gateway_subscriptions(merchant)
        self._connected = threading.Event()
        self._ever_connected = False  # paho's thread alone reads and writes these two
        self._lost = False
        self._stopping = False
        self.mqtt5 = mqtt5
        if mqtt5:
            self.client = mqtt.Client(
                CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
            )
        else:  # only for the embedded demo broker, which speaks 3.1.1 alone
            self.client = mqtt.Client(
                CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311,
                clean_session=False,
            )
        if login is not None:  # the gateway's own broker login (tilltap gateway provision)
            self.client.username_pw_set(*login)
        if ca_path is not None:  # TLS, trusting only the store's CA (tilltap store tls)
            self.client.tls_set(ca_certs=ca_path)
        self.client.max_inflight_messages_set(INFLIGHT_MAX)
        self.client.max_queued_messages_set(0)
        self.client.on_pre_connect = self._on_pre_connect
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    def start(self) -> None:
        if self.mqtt5:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = SESSION_EXPIRY_S
            self.client.connect(self.host, self.port, KEEPALIVE_S, clean_start=False,
                                properties=properties)
        else:
            self.client.connect(self.host, self.port, KEEPALIVE_S)
        self.client.loop_start()
        if not self._connected.wait(CONNECT_TIMEOUT_S):
            raise ConnectionError(f"no CONNACK from {self.host}:{self.port}")

    def stop(self) -> None:
        self._stopping = True  # the disconnect that follows is no lost broker
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            self.stats.add("publish_failed")

    def _on_pre_connect(self, client: mqtt.Client, userdata: object) -> None:
        if self.before_connect is None:
            return
        try:
            self.before_connect()
        except BaseException as error:  # noqa: BLE001 - paho's loop thread must not die alone
            self.on_death("gateway-mqtt", error)
            raise

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object,
                    reason_code: object, properties: object) -> None:
        # Without TCP_NODELAY every small answer (acks, authorizations) waits for the peer's
        # delayed ACK: about 40 ms per authorization round trip (measured by `make bench`).
        sock = client.socket()
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.subscribe(self.subscriptions)
        self.stats.add("mqtt_connects")
        self._connected.set()
        where = {"broker": f"{self.host}:{self.port}", "reason": str(reason_code)}
        if getattr(reason_code, "is_failure", False):  # a CONNACK refusing the login
            log.error("broker %s:%d refused the gateway: %s", self.host, self.port,
                      reason_code, extra={"event": "broker_refused", **where})
            return
        if self._lost:
            log.info("broker %s:%d back", self.host, self.port,
                     extra={"event": "broker_back", **where})
        elif not self._ever_connected:
            log.info("broker %s:%d connected", self.host, self.port,
                     extra={"event": "broker_connected", **where})
        self._ever_connected = True
        self._lost = False

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object,
                       reason_code: object, properties: object) -> None:
        self._connected.clear()
        self.stats.add("mqtt_disconnects")
        if self._stopping or self._lost:
            return
        self._lost = True
        log.warning("broker %s:%d lost (%s); reconnecting", self.host, self.port, reason_code,
                    extra={"event": "broker_lost", "broker": f"{self.host}:{self.port}",
                           "reason": str(reason_code)})

    def _on_message(self, client: mqtt.Client, userdata: object,
                    message: mqtt.MQTTMessage) -> None:
        try:
            self._route(message)
        except BaseException as error:  # noqa: BLE001 - paho's loop thread must not die alone
            self.on_death("gateway-mqtt", error)

    def _route(self, message: mqtt.MQTTMessage) -> None:
        topic = message.topic  # decoded from bytes on every read
        leaf = topic.rsplit("/", 1)[-1]
        route = self.routes.get(leaf)
        if route is None:
            self.stats.rejected("topic_invalid")
            return
        if not route(topic, bytes(message.payload)):
            self.stats.add("dropped." + leaf)


def queue_route(target: queue.Queue[tuple[str, bytes] | None]) -> Route:
    """A route that puts messages on a bounded queue without ever blocking paho's thread."""

    def route(topic: str, payload: bytes) -> bool:
        try:
            target.put_nowait((topic, payload))
        except queue.Full:
            return False
        return True

    return route


def timed_route(target: queue.Queue[tuple[str, bytes, float] | None]) -> Route:
    """`queue_route` with the time each message arrived (time.monotonic), for a stage that
    must not act on a message that waited too long."""

    def route(topic: str, payload: bytes) -> bool:
        try:
            target.put_nowait((topic, payload, time.monotonic()))
        except queue.Full:
            return False
        return True

    return route
