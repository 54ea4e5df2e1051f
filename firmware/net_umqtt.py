"""The Net seam on a board: micropython-lib's `umqtt.simple` speaking MQTT 3.1.1.

    net = UmqttNet("192.0.2.10", 8883, ca=store_ca_pem)   # TLS, the store's CA pinned
    net = UmqttNet("192.0.2.10", 1883)                    # clear text: say so explicitly
    net.connect(client_id, will_topic, will_payload)   # last will: QoS 1, retained
    net.subscribe(topic)                               # QoS 1
    net.publish(topic, payload, retain=False)          # QoS 1: returns once the PUBACK is in
    for topic, payload in net.poll(timeout_ms): ...    # topic str, payload bytes

The session is persistent (clean_session=False), as in the simulator's PahoNet, so acks the
gateway publishes while the terminal is offline wait for it at the broker.

TLS: with `ca` (the store's CA from `tilltap store tls`, PEM text or DER bytes) the link is
TLS through the port's `ssl` module: an SSLContext(PROTOCOL_TLS_CLIENT) that trusts that CA
only, verify_mode CERT_REQUIRED, the broker's name checked against its certificate
(server_hostname). umqtt.simple from 1.4 on takes the context (`ssl=`); 1.3.x takes
`ssl=True` and `ssl_params` for the port's `ssl.wrap_socket`, given the same CA, mode and
name. A port without `ssl` raises TlsUnavailable here, at start: never a clear-text link
instead. Without `ca` the link is clear text (`tls` False), which the board's config must ask
for (firmware/boards: `"broker_tls": false`) and diag reports.

Errors: every failure of the link (socket errors, timeouts, a short read, a refused CONNECT,
a packet umqtt.simple cannot follow) is raised as OSError and leaves `connected` False; the
uplink then reconnects after its backoff. A failed link is closed without a DISCONNECT
packet, so the broker publishes the last will ("offline"); `disconnect()` on a healthy link
sends DISCONNECT.

    OSError                 raised by every method but `connected` and `disconnect`
      (from) OSError, IndexError, AssertionError, MQTTException inside umqtt.simple
    TlsUnavailable          at construction: TLS asked for, and the port has no `ssl`

What the uplink does about each OSError is firmware/net_errors.py's table, by port.

Versions: umqtt.simple from 1.3.4 on. Releases before the connect timeout (the one on PyPI,
and those frozen into older MicroPython images, which are imported ahead of a mip-installed
/lib copy) are detected at the first connect; with them the wait for CONNACK is bounded by
TCP only, every later read and write by SOCKET_TIMEOUT_MS as below.

Timeouts: umqtt.simple turns its socket back to blocking after every packet header, which on
MicroPython clears any timeout, so a half-open link would hang a publish forever. The client's
socket is wrapped so that "blocking" means "blocking for at most SOCKET_TIMEOUT_MS".
`poll(timeout_ms)` drains what is already there with `check_msg()`, then, if nothing came,
waits up to timeout_ms on the socket for one packet.

Bounds: at most INBOX_MAX messages wait between two polls. `poll` stops reading the socket
when the inbox is full (the rest waits in TCP and at the broker); a message that arrives
while a publish waits for its PUBACK and finds the inbox full is dropped and counted in
`dropped` (the uplink recovers: records are resent until an ack covers them).
"""

from firmware import net_errors
from firmware.hal import SystemClock

try:
    from micropython import const
except ImportError:

    def const(value):
        return value


INBOX_MAX = const(16)
SOCKET_TIMEOUT_MS = const(5000)
KEEPALIVE_S = const(120)
_LAST_WILL_QOS = const(1)
_QOS = const(1)
_PACKET_TYPE_MASK = const(0xF0)
_PACKET_TYPE_PUBLISH = const(0x30)
_CERT_REQUIRED = const(2)  # ssl.CERT_REQUIRED on MicroPython and CPython


class TlsUnavailable(Exception):
    """TLS is configured (a CA is given) but this port's firmware has no `ssl` module."""


def tls_context(ssl_module, ca):
    """A client context of the port's `ssl` that trusts `ca` (PEM text or DER bytes) only."""
    context = ssl_module.SSLContext(ssl_module.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=ca)
    context.verify_mode = ssl_module.CERT_REQUIRED
    return context


def _port_ssl():
    try:
        import ssl
    except ImportError:
        raise TlsUnavailable("TLS is configured (broker_ca_pem) but this MicroPython has no "
                             "ssl module: use a firmware image with ssl") from None
    return ssl


class _NeverRaised(Exception):
    """Stands in for the client library's own exception when a test supplies the client."""


class TimedSocket:
    """The client's socket, where "blocking" means "blocking for at most timeout_s".

    umqtt.simple calls setblocking(True) after reading each packet header; on MicroPython
    that clears the timeout. Here it restores the timeout instead.
    """

    def __init__(self, sock, timeout_s):
        self.sock = sock
        self.timeout_s = timeout_s
        sock.settimeout(timeout_s)

    def setblocking(self, flag):
        if flag:
            self.sock.settimeout(self.timeout_s)
        else:
            self.sock.setblocking(False)

    def settimeout(self, seconds):
        self.sock.settimeout(seconds)

    def read(self, *args):
        return self.sock.read(*args)

    def write(self, *args):
        return self.sock.write(*args)

    def close(self):
        self.sock.close()


def is_timeout(error):
    """True when an OSError is a socket timeout (nothing arrived), not a broken link."""
    return net_errors.decision(error) == net_errors.RETRY


def _encoded(text):
    # umqtt.simple prefixes a string with len(s): characters, not bytes. Send bytes.
    return text.encode() if isinstance(text, str) else text


class UmqttNet:
    def __init__(self, server, port=1883, user=None, password=None, keepalive_s=KEEPALIVE_S,
                 client_factory=None, client_error=None, clock=None,
                 socket_timeout_ms=SOCKET_TIMEOUT_MS, ca=None, ssl_module=None):
        if user is not None and password is None:
            raise ValueError("an MQTT user needs a password (umqtt.simple sends both)")
        self.ca = ca
        self.tls = ca is not None  # False: clear text, as the config asked (diag shows it)
        self._tls_context = None
        if ca is not None:
            self._ssl = ssl_module if ssl_module is not None else _port_ssl()
            self._tls_context = tls_context(self._ssl, ca)
        if client_factory is None:
            from umqtt.simple import MQTTClient, MQTTException

            client_factory, client_error = MQTTClient, MQTTException
        self.server = server
        self.port = port
        self.user = user
        self.password = password
        self.keepalive_s = keepalive_s
        self.socket_timeout_s = socket_timeout_ms / 1000
        self.clock = clock if clock is not None else SystemClock()
        self._client_factory = client_factory
        self._link_errors = (OSError, IndexError, AssertionError,
                             client_error if client_error is not None else _NeverRaised)
        self._client = None
        self._connect_takes_timeout = True  # False once the client library shows it does not
        self._inbox = []
        self._last_sent_ms = 0
        self.dropped = 0  # messages that found the inbox full (or had an undecodable topic)
        self.session_present = False  # the broker kept our session (and its queued acks)

    @property
    def connected(self):
        return self._client is not None

    # -- the Net seam ---------------------------------------------------------------------
    def connect(self, client_id, will_topic, will_payload):
        self._close()
        if self._tls_context is None:
            client = self._client_factory(
                client_id, self.server, port=self.port, user=self.user,
                password=self.password, keepalive=self.keepalive_s)
        else:
            client = self._client_factory(
                client_id, self.server, port=self.port, user=self.user,
                password=self.password, keepalive=self.keepalive_s, ssl=self._tls_context)
            self._pin_legacy_tls(client)
        client.set_callback(self._on_message)
        client.set_last_will(_encoded(will_topic), will_payload, retain=True, qos=_LAST_WILL_QOS)
        self._client = client
        try:
            self.session_present = bool(self._connect_client(client))
            client.sock = TimedSocket(client.sock, self.socket_timeout_s)
        except self._link_errors as error:
            self._fail(error)
        self._last_sent_ms = self.clock.ticks_ms()

    def publish(self, topic, payload, retain=False):
        client = self._require_client()
        try:
            client.publish(_encoded(topic), payload, retain=retain, qos=_QOS)
        except self._link_errors as error:
            self._fail(error)
        self._last_sent_ms = self.clock.ticks_ms()

    def subscribe(self, topic):
        client = self._require_client()
        try:
            client.subscribe(_encoded(topic), qos=_QOS)
        except self._link_errors as error:
            self._fail(error)
        self._last_sent_ms = self.clock.ticks_ms()

    def poll(self, timeout_ms):
        """Messages received since the last poll, waiting up to timeout_ms if there are none.

        Raises OSError when the link fails; messages received before the failure are kept
        and returned by the first poll after reconnecting.
        """
        client = self._require_client()
        try:
            self._ping_if_idle(client)
            self._drain(client)
            if not self._inbox and timeout_ms > 0:
                self._wait_for_packet(client, timeout_ms)
                self._drain(client)
        except self._link_errors as error:
            self._fail(error)
        messages = self._inbox
        self._inbox = []
        return messages

    def disconnect(self):
        """Leave cleanly (DISCONNECT: the broker does not publish the will)."""
        client = self._client
        if client is None:
            return
        self._client = None
        try:
            client.disconnect()
        except self._link_errors:
            self._close_socket(client)

    # -- inside ---------------------------------------------------------------------------
    def _on_message(self, topic, payload):
        if len(self._inbox) >= INBOX_MAX:
            self.dropped += 1
            return
        try:
            topic = bytes(topic).decode()
        except ValueError:  # UnicodeError: brokers refuse such topics; never crash the loop
            self.dropped += 1
            return
        self._inbox.append((topic, bytes(payload)))

    def _require_client(self):
        if self._client is None:
            raise OSError("MQTT not connected")
        return self._client

    def _pin_legacy_tls(self, client):
        """umqtt.simple 1.3.x ignores a context: it calls the port's ssl.wrap_socket with
        `ssl_params`, which get the same CA, mode and name, so it verifies as 1.4 does."""
        if hasattr(client, "ssl_params"):
            client.ssl = True
            client.ssl_params = {"cadata": self.ca, "cert_reqs": _CERT_REQUIRED,
                                 "server_hostname": self.server}

    def _connect_client(self, client):
        if self._connect_takes_timeout:
            try:
                return client.connect(clean_session=False, timeout=self.socket_timeout_s)
            except TypeError:
                # umqtt.simple before its connect took a timeout (frozen into older board
                # images, which run ahead of /lib): the call fails before any I/O.
                self._connect_takes_timeout = False
        return client.connect(clean_session=False)

    def _drain(self, client):
        """Hand every packet already received to the callback, until the inbox is full."""
        while len(self._inbox) < INBOX_MAX:
            waiting = len(self._inbox)
            packet_type = client.check_msg()
            # Nothing waiting, or a PINGRESP (handled inside); umqtt.simple before 1.4 also
            # returns None after a PUBLISH, which the inbox shows.
            if packet_type is None and len(self._inbox) == waiting:
                return
            self._expect_publish(packet_type)

    def _wait_for_packet(self, client, timeout_ms):
        client.sock.settimeout(timeout_ms / 1000)
        try:
            packet_type = client.wait_msg()
        except OSError as error:
            if is_timeout(error):
                return
            raise
        finally:
            client.sock.settimeout(self.socket_timeout_s)
        self._expect_publish(packet_type)

    def _expect_publish(self, packet_type):
        # umqtt.simple reads only PUBLISH bodies itself; after any other unexpected packet
        # the stream is out of step, and only a new connection puts it right.
        if packet_type is not None and packet_type & _PACKET_TYPE_MASK != _PACKET_TYPE_PUBLISH:
            raise OSError("unexpected MQTT packet 0x%02x" % packet_type)

    def _ping_if_idle(self, client):
        idle_ms = self.clock.ticks_diff(self.clock.ticks_ms(), self._last_sent_ms)
        if self.keepalive_s and idle_ms >= self.keepalive_s * 1000 // 2:
            client.ping()
            self._last_sent_ms = self.clock.ticks_ms()

    def _fail(self, error):
        """The link is gone: close it without DISCONNECT (the broker sends the will)."""
        self._close()
        if isinstance(error, OSError):
            raise error
        raise OSError("MQTT link failed: %r" % (error,))

    def _close(self):
        client = self._client
        self._client = None
        if client is not None:
            self._close_socket(client)

    def _close_socket(self, client):
        sock = getattr(client, "sock", None)
        if sock is None:
            return
        try:
            sock.close()
        except OSError:
            pass  # closing a socket that already failed: nothing left to release
