"""What the uplink does about a socket error, by the number the board's port raises.

    decision(error)                  one of RETRY, RECONNECT, BACK_OFF, GIVE_UP
    decision(error, net_errors.ESP32)  the same, reading the error as the ESP32 port raises it

A port puts its number in OSError.args[0]; the same condition has different numbers on
different ports, so each port has its own small table:

- ESP32: the port takes errno.h from ESP-IDF's newlib (`MICROPY_USE_INTERNAL_ERRNO (0)`,
  ports/esp32/mpconfigport.h), whose numbers are not Linux's: ETIMEDOUT 116, ECONNABORTED
  113, EHOSTUNREACH 118, ENOTCONN 128 (espressif/esp-idf issue 8546 lists them; "[Errno 113]
  ECONNABORTED" on MicroPython 1.23 for ESP32, thonny/thonny issue 3259). A failed name
  lookup is OSError(-202), lwIP's EAI_FAIL negated (cbrand/micropython-mdns issue 2).
- RP2 (Pico W): MicroPython's own errno numbers (py/mperrno.h), the Linux ones: ETIMEDOUT
  110, ECONNABORTED 103, EHOSTUNREACH 113, ENOTCONN 107. A failed name lookup is OSError(-2)
  (extmod/modlwip.c, lwip_getaddrinfo_cb; micropython/micropython issue 3352). The unix and
  WebAssembly ports and CPython on Linux use the same numbers, so the tests run this table.
- TLS on both: MicroPython's mbedTLS binding raises the mbedTLS code, negative, as args[0]
  (extmod/modtls_mbedtls.c; "OSError: (-9984, 'MBEDTLS_ERR_X509_CERT_VERIFY_FAILED')",
  micropython/micropython issue 10832). The codes are mbedTLS's (include/mbedtls/ssl.h,
  x509.h, net_sockets.h), the same on every port.

A number in no table is read as RECONNECT: the link is closed and tried again after the
backoff, which is what the uplink did for every error before this table.
"""

import sys

try:
    from micropython import const
except ImportError:

    def const(value):
        return value


RETRY = const(0)  # nothing arrived in time; the link is sound: wait again (a poll's timeout)
RECONNECT = const(1)  # this link is gone, the broker may be fine: reconnect after the backoff
BACK_OFF = const(2)  # the broker or the network is out of reach: back off, longer each time
GIVE_UP = const(3)  # trying again soon cannot mend it: counted, next try after the backoff cap

# Shared by both ports: mbedTLS codes (negative) and umqtt.simple's own end of stream.
_TLS_AND_MQTT = {
    -1: RECONNECT,  # umqtt.simple: the broker closed the stream (a read of b"")
    -0x0050: RECONNECT,  # MBEDTLS_ERR_NET_CONN_RESET: the peer reset the TLS connection
    -0x7280: RECONNECT,  # MBEDTLS_ERR_SSL_CONN_EOF: the connection ended mid-record
    -0x7880: RECONNECT,  # MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY: the broker closed the session
    -0x6800: BACK_OFF,  # MBEDTLS_ERR_SSL_TIMEOUT: the handshake's peer went quiet
    -0x7F00: BACK_OFF,  # MBEDTLS_ERR_SSL_ALLOC_FAILED: no heap for a session; a collection may
    -0x2700: GIVE_UP,  # MBEDTLS_ERR_X509_CERT_VERIFY_FAILED: not the store's CA (or wrong name)
    -0x7780: GIVE_UP,  # MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE: the broker refused our handshake
}

# ESP32 (ESP-IDF newlib errno.h).
ESP32 = {
    11: RETRY,  # EAGAIN: a read with a timeout found nothing (the ESP32's socket timeout)
    116: RETRY,  # ETIMEDOUT
    104: RECONNECT,  # ECONNRESET: the broker's end reset the link
    113: BACK_OFF,  # ECONNABORTED: lwIP gave up the connect or the link (host out of reach)
    128: RECONNECT,  # ENOTCONN: the link was already down
    111: BACK_OFF,  # ECONNREFUSED: nothing listens on the broker's port
    118: BACK_OFF,  # EHOSTUNREACH: no route to the broker (Wi-Fi up, broker's machine down)
    12: BACK_OFF,  # ENOMEM: lwIP had no buffers for the socket
    -202: BACK_OFF,  # EAI_FAIL from getaddrinfo: the broker's name did not resolve
}

# RP2 / Pico W (MicroPython's errno numbers, as Linux's), also unix, WebAssembly and CPython.
RP2 = {
    11: RETRY,  # EAGAIN: a non-blocking read found nothing
    110: RETRY,  # ETIMEDOUT: a read with a timeout found nothing
    104: RECONNECT,  # ECONNRESET
    103: BACK_OFF,  # ECONNABORTED: lwIP aborted the connect (ERR_ABRT) or the link
    107: RECONNECT,  # ENOTCONN
    32: RECONNECT,  # EPIPE: wrote to a link the broker had closed (CPython, unix)
    111: BACK_OFF,  # ECONNREFUSED
    113: BACK_OFF,  # EHOSTUNREACH
    12: BACK_OFF,  # ENOMEM
    -2: BACK_OFF,  # modlwip's getaddrinfo: the broker's name did not resolve
}

PORT_TABLES = {"esp32": ESP32}  # every other port: RP2's numbers


def port_table(platform=None):
    """The table of the port this runs on (sys.platform: "esp32", "rp2", "linux", ...)."""
    return PORT_TABLES.get(sys.platform if platform is None else platform, RP2)


_THIS_PORT = port_table()


def decision(error, table=None):
    """What to do about `error` (an OSError or a number); RECONNECT when it is not known."""
    code = error.args[0] if isinstance(error, OSError) and error.args else error
    if not isinstance(code, int):
        return RECONNECT  # a message only ("MQTT not connected", a refused CONNECT)
    known = _TLS_AND_MQTT.get(code)
    if known is not None:
        return known
    return (_THIS_PORT if table is None else table).get(code, RECONNECT)
