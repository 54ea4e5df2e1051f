"""Socket errors by port (firmware/net_errors.py) and what the uplink does about each, and the
board link's TLS settings (firmware/net_umqtt.py). Runs on CPython and real MicroPython.

Each errno is injected where a board's socket raises it: the fake umqtt.simple client of
test_net_umqtt raises OSError(errno) from connect or publish, UmqttNet passes it on, and the
uplink's next connect attempt, counters and reason codes show the decision.
"""

from test_net_umqtt import FakeClient, FakeClock, FakeMQTTException

from firmware import net_errors
from firmware.backoff import RECONNECT_BASE_MS, RECONNECT_CAP_MS
from firmware.hal import SyncedClock
from firmware.journal import Journal
from firmware.net_umqtt import TlsUnavailable, UmqttNet, is_timeout
from firmware.storage import MemoryStorage
from firmware.uplink import Uplink
from mpytest import expect_raises
from protocol import reasons

# (errno as the port raises it, what it means, the decision), straight from each port's table
ESP32_CASES = ((11, "EAGAIN", net_errors.RETRY), (116, "ETIMEDOUT", net_errors.RETRY),
               (104, "ECONNRESET", net_errors.RECONNECT), (128, "ENOTCONN", net_errors.RECONNECT),
               (113, "ECONNABORTED", net_errors.BACK_OFF),
               (111, "ECONNREFUSED", net_errors.BACK_OFF),
               (118, "EHOSTUNREACH", net_errors.BACK_OFF), (12, "ENOMEM", net_errors.BACK_OFF),
               (-202, "EAI_FAIL", net_errors.BACK_OFF))
RP2_CASES = ((11, "EAGAIN", net_errors.RETRY), (110, "ETIMEDOUT", net_errors.RETRY),
             (104, "ECONNRESET", net_errors.RECONNECT), (107, "ENOTCONN", net_errors.RECONNECT),
             (32, "EPIPE", net_errors.RECONNECT), (103, "ECONNABORTED", net_errors.BACK_OFF),
             (111, "ECONNREFUSED", net_errors.BACK_OFF),
             (113, "EHOSTUNREACH", net_errors.BACK_OFF), (12, "ENOMEM", net_errors.BACK_OFF),
             (-2, "name lookup", net_errors.BACK_OFF))
TLS_CASES = ((-1, "umqtt end of stream", net_errors.RECONNECT),
             (-0x7280, "MBEDTLS_ERR_SSL_CONN_EOF", net_errors.RECONNECT),
             (-0x7F00, "MBEDTLS_ERR_SSL_ALLOC_FAILED", net_errors.BACK_OFF),
             (-0x2700, "MBEDTLS_ERR_X509_CERT_VERIFY_FAILED", net_errors.GIVE_UP),
             (-0x7780, "MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE", net_errors.GIVE_UP))
KEY = bytes(range(32))
CA_PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_each_port_reads_its_own_errno_numbers():
    for cases, table in ((ESP32_CASES, net_errors.ESP32), (RP2_CASES, net_errors.RP2)):
        for number, name, expected in cases + TLS_CASES:
            assert net_errors.decision(OSError(number), table) == expected, (number, name)


def test_the_same_number_means_different_things_on_esp32_and_rp2():
    # 113 is ECONNABORTED on the ESP32 and EHOSTUNREACH on the Pico W; 110 is ETIMEDOUT only
    # on the Pico W (the ESP32's is 116), so a Pico W's timeout read with the ESP32's table
    # would be taken for a broken link.
    assert net_errors.decision(110, net_errors.RP2) == net_errors.RETRY
    assert net_errors.decision(110, net_errors.ESP32) == net_errors.RECONNECT
    assert net_errors.port_table("esp32") is net_errors.ESP32
    assert net_errors.port_table("rp2") is net_errors.RP2


def test_an_unknown_number_or_a_message_only_error_reconnects():
    assert net_errors.decision(OSError(9999)) == net_errors.RECONNECT
    assert net_errors.decision(OSError("MQTT not connected")) == net_errors.RECONNECT
    assert net_errors.decision(OSError()) == net_errors.RECONNECT


def test_only_a_timeout_is_a_quiet_poll():
    assert is_timeout(OSError(110)) and is_timeout(OSError(11))
    assert not is_timeout(OSError(104)) and not is_timeout(OSError(-0x2700))


class FixedRandom:
    def u32(self):
        return RECONNECT_BASE_MS  # the first backoff step draws its ceiling (u32 % (500 + 1))


class BoardClock(FakeClock):
    def now_s(self):
        return 1_700_000_000


def uplink_over(client_failure):
    """An Uplink on UmqttNet on the fake client, whose connect raises `client_failure`."""
    clock = BoardClock()

    class Client(FakeClient):
        def connect(self, clean_session=True, timeout=None):
            raise client_failure

    net = UmqttNet("broker", 1883, client_factory=Client, client_error=FakeMQTTException,
                   clock=clock)
    config = {"terminal": "T1", "merchant": "M1", "key": KEY}
    uplink = Uplink(config, Journal(MemoryStorage()), net, SyncedClock(clock), FixedRandom())
    return uplink, clock


def next_attempt_in_ms(uplink, clock):
    return uplink._next_attempt_ms - clock.ticks_ms()


def test_every_errno_injected_at_connect_sets_the_next_attempt_as_its_table_says():
    for number, name, expected in RP2_CASES + TLS_CASES:  # this port's numbers (not ESP32)
        uplink, clock = uplink_over(OSError(number))
        uplink.service(0)
        waited = next_attempt_in_ms(uplink, clock)
        if expected == net_errors.GIVE_UP:
            assert waited == RECONNECT_CAP_MS, name
            assert uplink.stats["link_refused"] == 1, name
            assert uplink.errors == [reasons.BROKER_UNTRUSTED], name
        else:
            assert waited == RECONNECT_BASE_MS, name  # the first backoff step, drawn at its top
            assert uplink.stats["link_refused"] == 0, name
            assert uplink.errors == [reasons.HOST_UNAVAILABLE], name
        assert uplink.stats["connect_failures"] == 1 and not uplink.net.connected, name


def test_a_refused_certificate_waits_for_the_cap_every_time_and_is_counted_each_time():
    uplink, clock = uplink_over(OSError(-0x2700, "MBEDTLS_ERR_X509_CERT_VERIFY_FAILED"))
    for attempt in range(1, 4):
        uplink.service(0)
        assert next_attempt_in_ms(uplink, clock) == RECONNECT_CAP_MS
        clock.now_ms += RECONNECT_CAP_MS
        assert uplink.stats["link_refused"] == attempt
    assert uplink.backoff.failures == 0  # the growing backoff is for a broker out of reach


def test_a_link_lost_mid_publish_is_decided_by_the_same_table():
    clock = BoardClock()
    net = UmqttNet("broker", 1883, client_factory=FakeClient, client_error=FakeMQTTException,
                   clock=clock)
    config = {"terminal": "T1", "merchant": "M1", "key": KEY}
    uplink = Uplink(config, Journal(MemoryStorage()), net, SyncedClock(clock), FixedRandom())
    uplink.service(0)
    assert uplink.net.connected
    FakeClient.instances[-1].fail["publish"] = OSError(-0x2700)
    assert not uplink.send_new(1, b"record")
    assert next_attempt_in_ms(uplink, clock) == RECONNECT_CAP_MS
    assert uplink.stats["link_refused"] == 1 and not uplink.net.connected


# -- TLS settings ------------------------------------------------------------------------
class FakeContext:
    def __init__(self, protocol):
        self.protocol = protocol
        self.cadata = None
        self.verify_mode = None
        self.wrapped = []

    def load_verify_locations(self, cafile=None, cadata=None):
        self.cadata = cadata

    def wrap_socket(self, sock, server_hostname=None):
        self.wrapped.append(server_hostname)
        return sock


class FakeSsl:
    PROTOCOL_TLS_CLIENT = 16
    CERT_REQUIRED = 2
    SSLContext = FakeContext


class ContextClient(FakeClient):
    """umqtt.simple from 1.4 on: `ssl` is a context whose wrap_socket connect calls."""

    def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0,
                 ssl=None):
        FakeClient.__init__(self, client_id, server, port, user, password, keepalive)
        self.ssl = ssl

    def connect(self, clean_session=True, timeout=None):
        result = FakeClient.connect(self, clean_session, timeout)
        if self.ssl:
            self.sock = self.ssl.wrap_socket(self.sock, server_hostname=self.server)
        return result


class LegacyClient(FakeClient):
    """umqtt.simple 1.3.x: `ssl` is a flag and `ssl_params` go to ssl.wrap_socket."""

    def __init__(self, client_id, server, port=0, user=None, password=None, keepalive=0,
                 ssl=False, ssl_params=None):
        FakeClient.__init__(self, client_id, server, port, user, password, keepalive)
        self.ssl, self.ssl_params = ssl, ssl_params or {}


def test_a_ca_makes_a_verifying_context_that_trusts_it_and_checks_the_brokers_name():
    net = UmqttNet("broker.shop", 8883, client_factory=ContextClient,
                   client_error=FakeMQTTException, clock=FakeClock(), ca=CA_PEM,
                   ssl_module=FakeSsl)
    net.connect("T1", "will", b"offline")
    client = FakeClient.instances[-1]
    context = client.ssl
    assert net.tls and context.protocol == FakeSsl.PROTOCOL_TLS_CLIENT
    assert context.cadata == CA_PEM and context.verify_mode == FakeSsl.CERT_REQUIRED
    assert context.wrapped == ["broker.shop"]


def test_umqtt_1_3_gets_the_same_ca_mode_and_name_as_wrap_socket_parameters():
    net = UmqttNet("broker.shop", 8883, client_factory=LegacyClient,
                   client_error=FakeMQTTException, clock=FakeClock(), ca=CA_PEM,
                   ssl_module=FakeSsl)
    net.connect("T1", "will", b"offline")
    client = FakeClient.instances[-1]
    assert client.ssl is True
    assert client.ssl_params == {"cadata": CA_PEM, "cert_reqs": 2,
                                 "server_hostname": "broker.shop"}


def test_without_a_ca_the_link_is_clear_text_and_says_so():
    net = UmqttNet("broker", 1883, client_factory=FakeClient, client_error=FakeMQTTException,
                   clock=FakeClock())
    net.connect("T1", "will", b"offline")
    assert net.tls is False and not hasattr(FakeClient.instances[-1], "ssl")


def test_a_ca_on_a_port_without_ssl_is_a_typed_error_at_start():
    try:
        import ssl  # noqa: F401 (only whether the port has it)
    except ImportError:  # real MicroPython here: its WebAssembly port has no ssl
        error = expect_raises(TlsUnavailable, lambda: UmqttNet(
            "broker", 8883, client_factory=FakeClient, clock=FakeClock(), ca=CA_PEM))
        assert "no ssl module" in str(error)
        return
    # CPython has ssl; the CPython test of this case hides it (tests/e2e/test_board_tls.py)
