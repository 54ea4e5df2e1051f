"""Run the terminal firmware on real MicroPython while CPython plays its peripherals.

    with MicroPythonTerminal(config, broker_host, broker_port) as terminal:
        outcome = terminal.command({"op": "purchase", "amount_minor": 1250}, card="04...")

Node runs MicroPython 1.27 (WebAssembly) with `tools/mpy/run.mjs --rpc`; the firmware's
`protocol/` and `firmware/` packages are copied into its /lib unchanged. Every seam call the
firmware makes (network, PN532 bus, keypad, wall clock, display) arrives here as one JSON
line and is answered from CPython: the network with paho-mqtt against a real broker, so the
gateway sees exactly the bytes real MicroPython code produced; the bus by an emulated PN532
holding the tapped card, so the firmware's own PN532 driver reads it.

With `net="umqtt"` the network is the board's own instead: firmware/net_umqtt.py over
micropython-lib's umqtt.simple on MicroPython, whose socket the harness bridges byte for
byte to a real TCP connection to the broker (tools/mpy/socket_bridge.py); `published` and
`delivered` are then decoded from the bytes that crossed the bridge.

Two faults a test may set while the firmware runs: `clock_skew_s`, seconds added to the wall
clock the board reads (an RTC that drifted or jumped), and `drop_connection()`, the broker
connection lost before the firmware's next poll (as a board's Wi-Fi would lose it).
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from types import TracebackType
from typing import Any

from tools.mpy.runner import REPO_ROOT, RUNNER_PATH, node_binary
from tools.mpy.socket_bridge import SocketBridge, error_reply, socket_seam_libs
from tools.simulator.paho_net import PahoNet
from tools.simulator.pn532_emulator import EchoCard, Pn532Emulator

COMMAND_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0


class HarnessError(RuntimeError):
    """MicroPython exited, or did not answer in time; carries its stderr."""


class MicroPythonTerminal:
    def __init__(self, config: dict[str, Any], broker_host: str, broker_port: int,
                 heap_bytes: int | None = None, net: str = "rpc") -> None:
        if net not in ("rpc", "umqtt"):
            raise ValueError(f"net is 'rpc' or 'umqtt', not {net!r}")
        self.config = dict(config)
        self.net = PahoNet(broker_host, broker_port)
        self.sockets: SocketBridge | None = None
        self.pn532 = Pn532Emulator()  # the board's NFC reader chip, with the tapped card
        self.display: list[str] = []
        self.published: list[tuple[str, bytes]] = []  # every uplink, as MicroPython made it
        self.delivered: list[tuple[str, bytes]] = []  # every downlink the firmware took in
        self.reports: queue.Queue[dict[str, Any]] = queue.Queue()
        self.stopped: dict[str, Any] | None = None
        self.clock_skew_s = 0  # added to the wall clock the board reads
        self._drop_connection = threading.Event()
        self._commands: queue.Queue[dict[str, Any]] = queue.Queue()
        self._stderr: list[str] = []
        libs = {"protocol": REPO_ROOT / "protocol", "firmware": REPO_ROOT / "firmware",
                "host_seams.py": REPO_ROOT / "tools" / "mpy" / "host_seams.py"}
        if net == "umqtt":
            self.sockets = SocketBridge()
            self.published = self.sockets.published
            self.delivered = self.sockets.delivered
            self.config.update(net="umqtt", broker_host=broker_host, broker_port=broker_port)
            libs.update(socket_seam_libs())
        arguments = [node_binary(), str(RUNNER_PATH), "--rpc"]
        for name, path in libs.items():
            arguments += ["--lib", f"{name}={path}"]
        arguments += ["--script", str(REPO_ROOT / "tools" / "mpy" / "terminal_main.py")]
        if heap_bytes is not None:
            arguments[3:3] = ["--heap", str(heap_bytes)]
        self.process = subprocess.Popen(arguments, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT)
        self._serve_thread = threading.Thread(target=self._serve, daemon=True)
        self._stderr_thread = threading.Thread(target=self._drain_stderr, daemon=True)
        self._serve_thread.start()
        self._stderr_thread.start()

    # -- the test's side ------------------------------------------------------------------
    def command(self, command: dict[str, Any], card: str | None = None) -> dict[str, Any]:
        """Key a command in with `card` on the reader; return the firmware's outcome."""
        if card is None:
            self.pn532.remove()
        else:
            self.pn532.present(EchoCard(uid=bytes.fromhex(card)))
        self._commands.put(command)
        try:
            report = self.reports.get(timeout=COMMAND_TIMEOUT_S)
        except queue.Empty:
            raise HarnessError("no outcome in time\n" + self.stderr()) from None
        outcome: dict[str, Any] = report["outcome"]
        return outcome

    def drop_connection(self) -> None:
        """Lose the broker connection before the firmware's next poll; it reconnects itself.

        Done on the seam's own thread, so no call of the firmware's is cut in half."""
        self._drop_connection.set()

    def stop(self) -> dict[str, Any]:
        """Ask the firmware loop to end; returns its final journal depth and statistics."""
        self._commands.put({"op": "stop"})
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise HarnessError("MicroPython did not stop\n" + self.stderr()) from None
        self._serve_thread.join(5)
        self._close_network()
        if self.process.returncode != 0 or self.stopped is None:
            raise HarnessError(f"MicroPython exited {self.process.returncode}\n" + self.stderr())
        return self.stopped

    def stderr(self) -> str:
        return "".join(self._stderr[-200:])

    def __enter__(self) -> MicroPythonTerminal:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._close_network()

    def _close_network(self) -> None:
        self.net.disconnect()
        if self.sockets is not None:
            self.sockets.close_all()

    # -- the firmware's side --------------------------------------------------------------
    def _drain_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._stderr.append(line)

    def _serve(self) -> None:
        assert self.process.stdout is not None and self.process.stdin is not None
        for line in self.process.stdout:
            request = json.loads(line)
            try:
                reply: dict[str, Any] = {"r": self._answer(request)}
            except OSError as error:
                reply = error_reply(error)
            try:
                self.process.stdin.write(json.dumps(reply) + "\n")
                self.process.stdin.flush()
            except BrokenPipeError:
                return

    def _answer(self, request: dict[str, Any]) -> Any:
        method = request["m"]
        if method == "config":
            plain = dict(self.config)
            plain["key_hex"] = plain.pop("key").hex()
            return plain
        if method == "clock.now_s":
            return int(time.time()) + self.clock_skew_s
        if method == "keypad.next":
            try:
                return self._commands.get(timeout=request["timeout_ms"] / 1000)
            except queue.Empty:
                return None
        if method.startswith("sock.") and self.sockets is not None:
            if self._drop_connection.is_set():  # the link dies between two socket calls
                self._drop_connection.clear()
                self.sockets.cut()
            return self.sockets.answer(method, request)
        if method.startswith("bus."):
            return self._answer_bus(method, request)
        if method == "display.show":
            self.display.append(request["text"])
            return None
        if method == "report":
            self.reports.put(request)
            return None
        if method == "stopped":
            self.stopped = request
            return None
        return self._answer_net(method, request)

    def _answer_bus(self, method: str, request: dict[str, Any]) -> Any:
        if method == "bus.write":
            self.pn532.write(bytes.fromhex(request["hex"]))
            return None
        if method == "bus.read":
            data: bytes = self.pn532.read(request["n"], request["timeout_ms"])
            return data.hex()
        if method == "bus.wait_ready":
            return self.pn532.wait_ready(request["timeout_ms"])
        self.pn532.wakeup()
        return None

    def _answer_net(self, method: str, request: dict[str, Any]) -> Any:
        if method == "net.connect":
            self.net.connect(request["client_id"], request["will_topic"],
                             bytes.fromhex(request["will_hex"]))
            return None
        if method == "net.publish":
            payload = bytes.fromhex(request["hex"])
            self.published.append((request["topic"], payload))
            self.net.publish(request["topic"], payload, request["retain"])
            return None
        if method == "net.subscribe":
            self.net.subscribe(request["topic"])
            return None
        if method == "net.poll":
            if self._drop_connection.is_set():
                self._drop_connection.clear()
                self.net.disconnect()
            messages = self.net.poll(request["timeout_ms"])
            self.delivered.extend(messages)
            return {"connected": self.net.connected,
                    "messages": [[topic, payload.hex()] for topic, payload in messages]}
        if method == "net.disconnect":
            self.net.disconnect()
            return None
        raise OSError(f"unknown seam method {method!r}")
