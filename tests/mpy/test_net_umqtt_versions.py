"""UmqttNet with the older umqtt.simple API (1.3.x: connect takes no timeout, and check_msg
returns None after handling a PUBLISH), as frozen into older board images. Runs on CPython
and real MicroPython, over the recording fake of test_net_umqtt."""

from test_net_umqtt import WILL, WILL_TOPIC, FakeClient, FakeClock, FakeMQTTException

from firmware.net_umqtt import UmqttNet


class OldClient(FakeClient):
    """umqtt.simple 1.3.4's signatures and return values."""

    def connect(self, clean_session=True):
        return FakeClient.connect(self, clean_session, None)

    def wait_msg(self):
        packet_type = FakeClient.wait_msg(self)
        return None if packet_type == 0x32 else packet_type


def old_net():
    net = UmqttNet("broker.example", 1883, client_factory=OldClient,
                   client_error=FakeMQTTException, clock=FakeClock())
    net.connect("t1", WILL_TOPIC, WILL)
    return net, FakeClient.instances[-1]


def test_a_client_whose_connect_takes_no_timeout_is_connected_without_one_every_time():
    net, client = old_net()
    assert client.calls[1] == ("connect", False, None)
    assert net.connected and net.session_present
    net.connect("t1", WILL_TOPIC, WILL)  # a reconnect asks only the way that works
    assert FakeClient.instances[-1].calls[1] == ("connect", False, None)
    assert not net._connect_takes_timeout


def test_every_waiting_message_is_drained_though_check_msg_returns_none_after_each():
    net, client = old_net()
    client.waiting = [(b"tt/v1/m1/t1/down/ack", b"1"), (b"tt/v1/m1/t1/down/ack", b"2"),
                      (b"tt/v1/m1/t1/down/auth", b"3")]
    assert [payload for _, payload in net.poll(0)] == [b"1", b"2", b"3"]
    assert net.poll(0) == []
    assert net.connected
