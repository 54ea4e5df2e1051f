"""The board's Net seam over umqtt.simple, driven through a fake MQTTClient that records calls.
Runs on CPython and real MicroPython.

The fake follows umqtt.simple's behaviour where UmqttNet depends on it: the callback gets
(topic bytes, message bytes); check_msg() returns None when nothing is waiting and the packet
type after handling a PUBLISH; wait_msg() reads with the socket's timeout and switches the
socket back to blocking; publish at QoS 1 may deliver incoming PUBLISHes while it waits for
its PUBACK.
"""

import errno

from firmware.net_umqtt import INBOX_MAX, SOCKET_TIMEOUT_MS, TimedSocket, UmqttNet
from mpytest import expect_raises

PUBLISH = 0x30
PUBLISH_QOS_1 = 0x32
WILL_TOPIC = "tt/v1/m1/t1/up/status"
WILL = b"sealed-offline-status"


class FakeMQTTException(Exception):
    pass


class FakeSocket:
    def __init__(self):
        self.timeouts = []  # every settimeout / setblocking, in order
        self.closed = False

    def settimeout(self, seconds):
        self.timeouts.append(seconds)

    def setblocking(self, flag):
        self.timeouts.append("blocking" if flag else "nonblocking")

    def close(self):
        self.closed = True


class FakeClient:
    """Records what UmqttNet asks of umqtt.simple's MQTTClient; scripted failures."""

    instances = []

    def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0):
        self.client_id = client_id
        self.server, self.port, self.user, self.password = server, port, user, password
        self.keepalive = keepalive
        self.calls = []
        self.cb = None
        self.sock = self.raw = None
        self.waiting = []  # (topic, message) the broker has sent and not yet read
        self.fail = {}  # method name -> exception to raise
        self.during_publish = []  # PUBLISHes the broker interleaves before our PUBACK
        FakeClient.instances.append(self)

    def _maybe_fail(self, name):
        if name in self.fail:
            raise self.fail[name]

    def set_callback(self, callback):
        self.cb = callback

    def set_last_will(self, topic, msg, retain=False, qos=0):
        self.calls.append(("will", topic, msg, retain, qos))

    def connect(self, clean_session=True, timeout=None):
        self.calls.append(("connect", clean_session, timeout))
        self._maybe_fail("connect")
        self.raw = FakeSocket()  # what UmqttNet wraps in a TimedSocket
        self.sock = self.raw
        return True

    def publish(self, topic, msg, retain=False, qos=0):
        self.calls.append(("publish", topic, msg, retain, qos))
        self._maybe_fail("publish")
        for topic_in, message in self.during_publish:
            self.cb(topic_in, message)
        self.during_publish = []

    def subscribe(self, topic, qos=0):
        self.calls.append(("subscribe", topic, qos))
        self._maybe_fail("subscribe")

    def ping(self):
        self.calls.append(("ping",))
        self._maybe_fail("ping")

    def check_msg(self):
        self.sock.setblocking(False)
        return self.wait_msg()

    def wait_msg(self):
        self._maybe_fail("wait_msg")
        blocking = self.raw.timeouts[-1] != "nonblocking"
        if not self.waiting:
            if blocking:
                self.calls.append(("waited", self.raw.timeouts[-1]))
                raise OSError(errno.ETIMEDOUT)
            self.sock.setblocking(True)
            return None
        self.sock.setblocking(True)
        topic, message = self.waiting.pop(0)
        self.cb(topic, message)
        return PUBLISH_QOS_1

    def disconnect(self):
        self.calls.append(("disconnect",))
        self._maybe_fail("disconnect")
        self.sock.close()


class FakeClock:
    def __init__(self):
        self.now_ms = 1000

    def ticks_ms(self):
        return self.now_ms

    def ticks_diff(self, a, b):
        return a - b


def connected_net(**kwargs):
    net = UmqttNet("broker.example", 1883, client_factory=FakeClient,
                   client_error=FakeMQTTException, clock=kwargs.pop("clock", FakeClock()),
                   **kwargs)
    net.connect("t1", WILL_TOPIC, WILL)
    return net, FakeClient.instances[-1]


def test_connect_sets_a_retained_qos_1_will_before_connecting_with_a_persistent_session():
    net, client = connected_net(keepalive_s=90)
    assert client.calls[0] == ("will", WILL_TOPIC.encode(), WILL, True, 1)
    assert client.calls[1] == ("connect", False, SOCKET_TIMEOUT_MS / 1000)
    assert (client.client_id, client.server, client.port) == ("t1", "broker.example", 1883)
    assert client.keepalive == 90
    assert net.connected and net.session_present


def test_publish_and_subscribe_use_qos_1():
    net, client = connected_net()
    net.subscribe("tt/v1/m1/t1/down/+")
    net.publish("tt/v1/m1/t1/up/txn", b"record")
    net.publish(WILL_TOPIC, b"online", True)
    assert client.calls[2:] == [
        ("subscribe", b"tt/v1/m1/t1/down/+", 1),
        ("publish", b"tt/v1/m1/t1/up/txn", b"record", False, 1),
        ("publish", WILL_TOPIC.encode(), b"online", True, 1),
    ]


def test_poll_returns_waiting_messages_as_str_topic_and_bytes_without_waiting():
    net, client = connected_net()
    client.waiting = [(b"tt/v1/m1/t1/down/ack", b"\x01\x02"), (b"tt/v1/m1/t1/down/auth", b"a")]
    assert net.poll(500) == [("tt/v1/m1/t1/down/ack", b"\x01\x02"),
                             ("tt/v1/m1/t1/down/auth", b"a")]
    assert not [call for call in client.calls if call[0] == "waited"]
    assert net.poll(0) == []


def test_poll_with_nothing_waiting_waits_on_the_socket_timeout_then_restores_it():
    net, client = connected_net()
    assert net.poll(250) == []
    assert ("waited", 0.25) in client.calls
    assert client.raw.timeouts[-1] == SOCKET_TIMEOUT_MS / 1000
    assert net.connected


def test_poll_zero_never_waits():
    net, client = connected_net()
    assert net.poll(0) == []
    assert not [call for call in client.calls if call[0] == "waited"]


def test_blocking_on_the_wrapped_socket_means_blocking_up_to_the_io_timeout():
    raw = FakeSocket()
    wrapped = TimedSocket(raw, 5.0)
    wrapped.setblocking(False)
    wrapped.setblocking(True)
    assert raw.timeouts == [5.0, "nonblocking", 5.0]


def test_messages_arriving_while_a_publish_waits_for_its_puback_are_kept():
    net, client = connected_net()
    client.during_publish = [(b"tt/v1/m1/t1/down/ack", b"ack")]
    net.publish("tt/v1/m1/t1/up/txn", b"record")
    assert net.poll(0) == [("tt/v1/m1/t1/down/ack", b"ack")]


def test_the_inbox_is_bounded_and_what_it_cannot_hold_is_counted():
    net, client = connected_net()
    client.during_publish = [(b"t/down/ack", b"%d" % n) for n in range(INBOX_MAX + 3)]
    net.publish("t/up/txn", b"record")
    assert net.dropped == 3
    assert len(net.poll(0)) == INBOX_MAX


def test_a_topic_that_is_not_utf8_is_dropped_and_counted():
    net, client = connected_net()
    client.waiting = [(b"t/down/\xff", b"x"), (b"t/down/ack", b"y")]
    assert net.poll(0) == [("t/down/ack", b"y")]
    assert net.dropped == 1 and net.connected


def test_poll_stops_reading_when_the_inbox_is_full_and_leaves_the_rest_at_the_broker():
    net, client = connected_net()
    client.waiting = [(b"t/down/ack", b"%d" % n) for n in range(INBOX_MAX + 2)]
    assert len(net.poll(0)) == INBOX_MAX
    assert len(client.waiting) == 2
    rest = [("t/down/ack", b"%d" % INBOX_MAX), ("t/down/ack", b"%d" % (INBOX_MAX + 1))]
    assert net.poll(0) == rest
    assert net.dropped == 0


def test_a_socket_error_is_an_oserror_and_closes_the_link_without_disconnect():
    for method in ("publish", "subscribe", "wait_msg"):
        net, client = connected_net()
        client.fail[method] = OSError(errno.ECONNRESET)
        if method == "publish":
            error = expect_raises(OSError, net.publish, "t/up/txn", b"x")
        elif method == "subscribe":
            error = expect_raises(OSError, net.subscribe, "t/down/+")
        else:
            error = expect_raises(OSError, net.poll, 100)
        assert error.args[0] == errno.ECONNRESET, method
        assert not net.connected, method
        assert client.raw.closed, method
        assert ("disconnect",) not in client.calls, method


def test_short_reads_protocol_asserts_and_refusals_become_oserror():
    for failure in (IndexError("index out of range"), AssertionError(), FakeMQTTException(5)):
        net, client = connected_net()
        client.fail["wait_msg"] = failure
        error = expect_raises(OSError, net.poll, 100)
        assert "MQTT link failed" in str(error)
        assert not net.connected


class RefusingClient(FakeClient):
    def connect(self, clean_session=True, timeout=None):
        self.fail["connect"] = FakeMQTTException(5)  # CONNACK 5: not authorized
        return FakeClient.connect(self, clean_session, timeout)


def test_a_refused_connect_is_an_oserror_and_leaves_the_net_disconnected():
    net = UmqttNet("broker.example", client_factory=RefusingClient,
                   client_error=FakeMQTTException, clock=FakeClock())
    error = expect_raises(OSError, net.connect, "t1", WILL_TOPIC, WILL)
    assert "MQTT link failed" in str(error)
    assert not net.connected
    expect_raises(OSError, net.publish, "t/up/txn", b"x")


def test_an_unexpected_packet_type_means_the_stream_is_lost():
    net, client = connected_net()
    client.waiting = [(b"t/down/ack", b"x")]

    def stray_puback():
        client.sock.setblocking(True)
        return 0x40

    client.check_msg = stray_puback
    error = expect_raises(OSError, net.poll, 0)
    assert "0x40" in str(error)
    assert not net.connected


def test_messages_received_before_a_failure_are_returned_after_reconnecting():
    net, client = connected_net()
    client.during_publish = [(b"t/down/ack", b"kept")]
    client.fail["wait_msg"] = OSError(errno.ECONNRESET)
    net.publish("t/up/txn", b"record")
    expect_raises(OSError, net.poll, 0)
    net.connect("t1", WILL_TOPIC, WILL)
    assert net.poll(0) == [("t/down/ack", b"kept")]


def test_operations_while_disconnected_raise_oserror():
    net = UmqttNet("broker.example", client_factory=FakeClient, clock=FakeClock())
    assert not net.connected
    expect_raises(OSError, net.publish, "t/up/txn", b"x")
    expect_raises(OSError, net.subscribe, "t/down/+")
    expect_raises(OSError, net.poll, 0)
    net.disconnect()  # nothing to do, no error


def test_disconnect_on_a_healthy_link_sends_disconnect():
    net, client = connected_net()
    net.disconnect()
    assert client.calls[-1] == ("disconnect",)
    assert not net.connected and client.raw.closed


def test_disconnect_on_a_failing_link_still_closes_the_socket():
    net, client = connected_net()
    client.fail["disconnect"] = OSError(errno.ECONNRESET)
    net.disconnect()
    assert not net.connected and client.raw.closed


def test_reconnect_closes_the_previous_socket():
    net, first = connected_net()
    net.connect("t1", WILL_TOPIC, WILL)
    assert first.raw.closed
    assert FakeClient.instances[-1] is not first and net.connected


def test_an_idle_link_is_pinged_at_half_the_keepalive():
    clock = FakeClock()
    net, client = connected_net(keepalive_s=60, clock=clock)
    clock.now_ms += 29999
    net.poll(0)
    assert ("ping",) not in client.calls
    clock.now_ms += 1
    net.poll(0)
    assert client.calls.count(("ping",)) == 1
    clock.now_ms += 1000
    net.poll(0)
    assert client.calls.count(("ping",)) == 1


def test_a_user_without_a_password_is_refused_up_front():
    error = expect_raises(ValueError, UmqttNet, "broker.example", 1883, "user", None,
                          client_factory=FakeClient)
    assert "password" in str(error)
