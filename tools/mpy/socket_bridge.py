"""The CPython end of tools/mpy/socket_seam.py: real TCP sockets for real MicroPython.

    bridge = SocketBridge()
    reply = bridge.answer("sock.read", {"id": 1, "n": 4, "timeout_s": 5})   # hex, or None

MicroPython's socket calls arrive as `sock.*` requests on the `--rpc` pipe; each is carried
out on a real socket here, with MicroPython's semantics (see socket_seam.py). A failure is an
OSError with an errno, sent back so MicroPython raises OSError(errno).

Faults a test may cause: `cut()` closes every connection (the broker's end sees a reset);
the board's side then reads end of stream or gets ECONNRESET, as after a Wi-Fi loss.

`published` and `delivered` list the MQTT PUBLISH packets (topic, payload) MicroPython wrote
and read, decoded from the bytes that crossed the bridge.

    run_with_sockets(script, libs, hooks)   runs a script on MicroPython with this bridge;
                                            `step(name, ...)` in the script calls hooks[name]
"""

from __future__ import annotations

import contextlib
import errno
import json
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.mpy.runner import REPO_ROOT, RUNNER_PATH, node_binary
from tools.mpy.umqtt_package import umqtt_directory

# On a board a blocking socket without a timeout waits for ever; here such a wait ends with
# ETIMEDOUT after this long, so a test cannot hang (no firmware path relies on it).
UNBOUNDED_WAIT_CAP_S = 60.0
CONNECT_TIMEOUT_S = 10.0
RECV_CHUNK_BYTES = 4096
READ_AHEAD_BYTES = 4096  # sent along with a read if already arrived (socket_seam.py keeps it)
SCRIPT_TIMEOUT_S = 120.0
_PUBLISH = 0x30


def socket_seam_libs() -> dict[str, Path]:
    """--lib mounts a script needs to run the board's MQTT client over the bridge."""
    seam = REPO_ROOT / "tools" / "mpy" / "socket_seam.py"
    return {
        "protocol": REPO_ROOT / "protocol",
        "firmware": REPO_ROOT / "firmware",
        "host_seams.py": REPO_ROOT / "tools" / "mpy" / "host_seams.py",
        "socket.py": seam,
        "usocket.py": seam,  # umqtt.simple 1.3.x imports usocket
        "umqtt": umqtt_directory(),
    }


class MqttSniffer:
    """Splits one direction of an MQTT byte stream into packets; keeps the PUBLISHes."""

    def __init__(self, sink: list[tuple[str, bytes]]) -> None:
        self.sink = sink
        self.buffer = bytearray()
        self.packet_types: list[int] = []

    def feed(self, data: bytes) -> None:
        self.buffer += data
        while True:
            parsed = self._one_packet()
            if parsed is None:
                return
            header, body, used = parsed
            del self.buffer[:used]
            self.packet_types.append(header & 0xF0)
            if header & 0xF0 == _PUBLISH:
                topic_length = int.from_bytes(body[:2], "big")
                topic = bytes(body[2:2 + topic_length]).decode("utf-8", "replace")
                start = 2 + topic_length + (2 if header & 0x06 else 0)
                self.sink.append((topic, bytes(body[start:])))

    def _one_packet(self) -> tuple[int, bytes, int] | None:
        if len(self.buffer) < 2:
            return None
        length, shift, index = 0, 0, 1
        while True:
            if index >= len(self.buffer):
                return None
            byte = self.buffer[index]
            length |= (byte & 0x7F) << shift
            index += 1
            if not byte & 0x80:
                break
            shift += 7
        if len(self.buffer) < index + length:
            return None
        return self.buffer[0], bytes(self.buffer[index:index + length]), index + length


@dataclass
class _Link:
    sock: socket.socket | None = None
    out: MqttSniffer | None = None
    into: MqttSniffer | None = None


@dataclass
class SocketBridge:
    published: list[tuple[str, bytes]] = field(default_factory=list)  # MicroPython -> broker
    delivered: list[tuple[str, bytes]] = field(default_factory=list)  # broker -> MicroPython
    connects: int = 0  # TCP connections MicroPython opened
    sent_packet_types: list[int] = field(default_factory=list)  # MQTT packet types it wrote
    _links: dict[int, _Link] = field(default_factory=dict)
    _next_id: int = 1
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, method: str, request: dict[str, Any]) -> Any:
        if method == "sock.open":
            with self._lock:
                link_id, self._next_id = self._next_id, self._next_id + 1
                self._links[link_id] = _Link()
            return link_id
        link = self._links.get(request["id"])
        if link is None:
            raise OSError(errno.EBADF, "no such socket")
        if method == "sock.close":
            self._close(request["id"])
            return None
        if method == "sock.connect":
            return self._connect(link, request)
        sock = link.sock
        if sock is None:
            raise OSError(errno.ENOTCONN, "socket not connected")
        timeout_s = request["timeout_s"]
        if method == "sock.write":
            data = bytes.fromhex(request["hex"])
            self._settimeout(sock, timeout_s)
            try:
                sock.sendall(data)
            except TimeoutError:
                raise OSError(errno.ETIMEDOUT, "write timed out") from None
            assert link.out is not None
            link.out.feed(data)
            return len(data)
        if method in ("sock.read", "sock.recv"):
            received = self._read(sock, request["n"], timeout_s, whole=method == "sock.read")
            if received is not None:
                received += self._arrived(sock)
                assert link.into is not None
                link.into.feed(received)
            return None if received is None else received.hex()
        raise OSError(errno.EINVAL, f"unknown socket method {method!r}")

    def cut(self) -> None:
        """Close every connection MicroPython has, as a lost Wi-Fi link would end them."""
        with self._lock:
            links = list(self._links.values())
        for link in links:
            if link.sock is not None:
                with contextlib.suppress(OSError):  # already gone: nothing to cut
                    link.sock.shutdown(socket.SHUT_RDWR)

    def close_all(self) -> None:
        for link_id in list(self._links):
            self._close(link_id)

    # -- inside ---------------------------------------------------------------------------
    def _connect(self, link: _Link, request: dict[str, Any]) -> None:
        timeout_s = request["timeout_s"]
        try:
            sock = socket.create_connection(
                (request["host"], request["port"]),
                timeout=timeout_s if timeout_s else CONNECT_TIMEOUT_S)
        except TimeoutError:
            raise OSError(errno.ETIMEDOUT, "connect timed out") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link.sock = sock
        link.out = MqttSniffer(self.published)
        link.into = MqttSniffer(self.delivered)
        self.sent_packet_types = link.out.packet_types
        self.connects += 1

    def _close(self, link_id: int) -> None:
        with self._lock:
            link = self._links.pop(link_id, None)
        if link is not None and link.sock is not None:
            link.sock.close()

    @staticmethod
    def _settimeout(sock: socket.socket, timeout_s: float | None) -> None:
        sock.settimeout(UNBOUNDED_WAIT_CAP_S if timeout_s is None else timeout_s)

    @staticmethod
    def _arrived(sock: socket.socket) -> bytes:
        """What has arrived beyond a read, without waiting (the seam keeps it)."""
        sock.setblocking(False)
        try:
            return sock.recv(READ_AHEAD_BYTES)
        except OSError:  # nothing more (BlockingIOError) or the link is gone: the next read says
            return b""

    def _read(self, sock: socket.socket, n: int, timeout_s: float | None,
              whole: bool) -> bytes | None:
        if timeout_s == 0:  # non-blocking: what is there, or None
            sock.setblocking(False)
            try:
                return sock.recv(n)
            except BlockingIOError:
                return None
        self._settimeout(sock, timeout_s)
        limit_s = UNBOUNDED_WAIT_CAP_S if timeout_s is None else timeout_s
        deadline = time.monotonic() + limit_s
        data = b""
        while len(data) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise OSError(errno.ETIMEDOUT, "read timed out")
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(min(n - len(data), RECV_CHUNK_BYTES))
            except TimeoutError:
                raise OSError(errno.ETIMEDOUT, "read timed out") from None
            if not chunk:  # end of stream: what came, or b""
                return data
            data += chunk
            if not whole:
                return data
        return data


@dataclass
class ScriptRun:
    returncode: int
    stderr: str
    reports: list[dict[str, Any]]
    bridge: SocketBridge


def run_with_sockets(script: str, hooks: dict[str, Callable[..., Any]] | None = None,
                     heap_bytes: int | None = None,
                     timeout_s: float = SCRIPT_TIMEOUT_S) -> ScriptRun:
    """Run `script` on MicroPython with the socket seam and umqtt.simple mounted.

    In the script, `from host_seams import call`: call("step", name=NAME, **kw) runs
    hooks[NAME](**kw) here and returns its (JSON) result; call("report", **kw) is kept in
    ScriptRun.reports. MicroPython's own print goes to stderr.
    """
    hooks = hooks or {}
    bridge = SocketBridge()
    reports: list[dict[str, Any]] = []
    stderr: list[str] = []
    with tempfile.TemporaryDirectory() as folder:
        script_path = Path(folder) / "main.py"
        script_path.write_text(script)
        arguments = [node_binary(), str(RUNNER_PATH), "--rpc"]
        if heap_bytes is not None:
            arguments += ["--heap", str(heap_bytes)]
        for name, path in socket_seam_libs().items():
            arguments += ["--lib", f"{name}={path}"]
        arguments += ["--script", str(script_path)]
        process = subprocess.Popen(arguments, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT)
        drain = threading.Thread(target=lambda: stderr.extend(process.stderr or []),
                                 daemon=True)
        drain.start()
        watchdog = threading.Timer(timeout_s, process.kill)  # a stuck script ends, and fails
        watchdog.start()
        try:
            serve(process, bridge, hooks, reports)
            process.wait()
        finally:
            watchdog.cancel()
            if process.poll() is None:
                process.kill()
                process.wait()
            bridge.close_all()
        drain.join(5)
    return ScriptRun(process.returncode, "".join(stderr), reports, bridge)


def serve(process: subprocess.Popen[str], bridge: SocketBridge,
          hooks: dict[str, Callable[..., Any]], reports: list[dict[str, Any]]) -> None:
    """Answer MicroPython's requests until it exits: sockets, steps and reports."""
    assert process.stdout is not None and process.stdin is not None
    for line in process.stdout:
        request = json.loads(line)
        method = request.pop("m")
        try:
            if method.startswith("sock."):
                reply: dict[str, Any] = {"r": bridge.answer(method, request)}
            elif method == "step":
                reply = {"r": hooks[request.pop("name")](**request)}
            elif method == "report":
                reports.append(request)
                reply = {"r": None}
            else:
                raise OSError(f"unknown seam method {method!r}")
        except OSError as error:
            reply = error_reply(error)
        try:
            process.stdin.write(json.dumps(reply) + "\n")
            process.stdin.flush()
        except BrokenPipeError:
            return


def error_reply(error: OSError) -> dict[str, Any]:
    """An OSError for the pipe: with its errno, MicroPython raises OSError(errno)."""
    if isinstance(error.errno, int):
        return {"errno": error.errno, "error": error.strerror or str(error)}
    if isinstance(error, TimeoutError):
        return {"errno": errno.ETIMEDOUT, "error": str(error)}
    if isinstance(error, ConnectionError):
        return {"errno": errno.ECONNRESET, "error": str(error)}
    return {"error": str(error) or type(error).__name__}
