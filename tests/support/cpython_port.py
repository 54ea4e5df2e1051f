"""A board's socket and ssl modules played on CPython, so the board's own MQTT client
(firmware/net_umqtt.py over micropython-lib's umqtt.simple) runs here on real TCP and real
TLS (CPython's OpenSSL), with MicroPython's semantics where the client depends on them:

    read(n)     blocking: n bytes, fewer only at end of stream; OSError(ETIMEDOUT) on timeout
                non-blocking: what is there, or None
    write(b, n) the first n bytes of b
    ssl.SSLContext(PROTOCOL_TLS_CLIENT), load_verify_locations(cadata=PEM or DER),
    verify_mode, wrap_socket(sock, server_hostname=...), and the legacy ssl.wrap_socket(sock,
    cert_reqs=, cadata=, server_hostname=) umqtt.simple 1.3.x calls as `ussl`
    a refused certificate is OSError(-0x2700, "MBEDTLS_ERR_X509_CERT_VERIFY_FAILED"), as
    MicroPython's mbedTLS binding raises it

    modules = port_modules()          # {"usocket": ..., "ussl": ..., "ssl": ..., ...}
    with board_port(monkeypatch): from umqtt.simple import MQTTClient
"""

from __future__ import annotations

import binascii
import contextlib
import errno
import socket
import ssl
import struct
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest

from tools.mpy.umqtt_package import UMQTT_PACKAGE_DIRECTORY

CONNECT_TIMEOUT_S = 10.0
UNBOUNDED_WAIT_CAP_S = 60.0  # a blocking read without a timeout still ends here (tests)
CERT_NONE, CERT_REQUIRED = 0, 2
PROTOCOL_TLS_CLIENT = 16
MBEDTLS_ERR_X509_CERT_VERIFY_FAILED = -0x2700


class BoardSocket:
    """A socket as MicroPython's: read/write streams, settimeout, setblocking."""

    def __init__(self, af: int = socket.AF_INET, kind: int = socket.SOCK_STREAM,
                 proto: int = 0, sock: socket.socket | None = None) -> None:
        self.sock = sock
        self.timeout_s: float | None = None

    def connect(self, address: tuple[str, int]) -> None:
        try:
            self.sock = socket.create_connection(address, timeout=self.timeout_s or
                                                 CONNECT_TIMEOUT_S)
        except TimeoutError:
            raise OSError(errno.ETIMEDOUT, "connect timed out") from None

    def settimeout(self, seconds: float | None) -> None:
        self.timeout_s = seconds

    def setblocking(self, flag: bool) -> None:
        self.timeout_s = None if flag else 0

    def read(self, n: int) -> bytes | None:
        assert self.sock is not None
        if self.timeout_s == 0:
            self.sock.settimeout(0)
            try:
                return self.sock.recv(n)
            except (BlockingIOError, ssl.SSLWantReadError):
                return None
        self.sock.settimeout(UNBOUNDED_WAIT_CAP_S if self.timeout_s is None else self.timeout_s)
        data = b""
        while len(data) < n:
            try:
                chunk = self.sock.recv(n - len(data))
            except TimeoutError:
                raise OSError(errno.ETIMEDOUT, "read timed out") from None
            if not chunk:
                return data
            data += chunk
        return data

    def write(self, data: bytes | str, n: int | None = None) -> int:
        assert self.sock is not None
        if isinstance(data, str):  # a board's socket writes a str as its UTF-8 bytes
            data = data.encode()
        data = bytes(data if n is None else data[:n])
        self.sock.settimeout(UNBOUNDED_WAIT_CAP_S if self.timeout_s is None else
                             self.timeout_s or None)
        try:
            self.sock.sendall(data)
        except TimeoutError:
            raise OSError(errno.ETIMEDOUT, "write timed out") from None
        return len(data)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


class BoardSslContext:
    """MicroPython's ssl.SSLContext on CPython's."""

    def __init__(self, protocol: int) -> None:
        assert protocol == PROTOCOL_TLS_CLIENT, "a terminal is only ever a TLS client"
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        # MicroPython's context starts as CERT_NONE (CPython's would verify by default), so
        # a client that forgot verify_mode would be caught here too.
        self.context.check_hostname = False
        self.context.verify_mode = ssl.CERT_NONE

    def load_verify_locations(self, cafile: str | None = None,
                              cadata: str | bytes | None = None) -> None:
        self.context.load_verify_locations(cafile=cafile, cadata=cadata)

    @property
    def verify_mode(self) -> int:
        return CERT_REQUIRED if self.context.verify_mode == ssl.CERT_REQUIRED else CERT_NONE

    @verify_mode.setter
    def verify_mode(self, mode: int) -> None:
        if mode == CERT_REQUIRED:  # mbedTLS then checks the name given as server_hostname
            self.context.verify_mode = ssl.CERT_REQUIRED
            self.context.check_hostname = True
        else:
            self.context.check_hostname = False
            self.context.verify_mode = ssl.CERT_NONE

    def wrap_socket(self, sock: BoardSocket, server_hostname: str | None = None) -> BoardSocket:
        assert sock.sock is not None
        try:
            wrapped = self.context.wrap_socket(sock.sock, server_hostname=server_hostname)
        except ssl.SSLCertVerificationError:
            sock.close()
            raise OSError(MBEDTLS_ERR_X509_CERT_VERIFY_FAILED,
                          "MBEDTLS_ERR_X509_CERT_VERIFY_FAILED") from None
        board = BoardSocket(sock=wrapped)
        board.timeout_s = sock.timeout_s
        return board


def legacy_wrap_socket(sock: BoardSocket, server_side: bool = False, key: Any = None,
                       cert: Any = None, cert_reqs: int = CERT_NONE,
                       cadata: str | bytes | None = None, server_hostname: str | None = None,
                       do_handshake: bool = True) -> BoardSocket:
    """ssl.wrap_socket as MicroPython keeps it for older callers (umqtt.simple 1.3.x)."""
    context = BoardSslContext(PROTOCOL_TLS_CLIENT)
    if cadata:
        context.load_verify_locations(cadata=cadata)
    context.verify_mode = cert_reqs
    return context.wrap_socket(sock, server_hostname=server_hostname)


def port_modules() -> dict[str, types.ModuleType]:
    usocket = types.ModuleType("usocket")
    usocket.socket = BoardSocket  # type: ignore[attr-defined]
    usocket.getaddrinfo = socket.getaddrinfo  # type: ignore[attr-defined]
    board_ssl = types.ModuleType("ssl")
    for name, value in (("SSLContext", BoardSslContext), ("wrap_socket", legacy_wrap_socket),
                        ("PROTOCOL_TLS_CLIENT", PROTOCOL_TLS_CLIENT),
                        ("CERT_REQUIRED", CERT_REQUIRED), ("CERT_NONE", CERT_NONE)):
        setattr(board_ssl, name, value)
    return {"usocket": usocket, "ussl": board_ssl, "ustruct": struct, "ubinascii": binascii,
            "board_ssl": board_ssl}


@contextlib.contextmanager
def board_port(monkeypatch: pytest.MonkeyPatch) -> Iterator[types.ModuleType]:
    """umqtt.simple (the pinned 1.3.4) importable on CPython over these modules; yields the
    board's ssl module (pass it to UmqttNet as ssl_module)."""
    modules = port_modules()
    for name in ("usocket", "ussl", "ustruct", "ubinascii"):
        monkeypatch.setitem(sys.modules, name, modules[name])
    monkeypatch.syspath_prepend(str(UMQTT_PACKAGE_DIRECTORY))
    for name in ("umqtt", "umqtt.simple"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    try:
        yield modules["board_ssl"]
    finally:
        for name in ("umqtt", "umqtt.simple"):
            sys.modules.pop(name, None)
