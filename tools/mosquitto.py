"""A private Mosquitto broker for one test or one test session.

Each broker gets its own free loopback port, config, log file and (optionally) persistence
folder in a temporary directory, so tests never touch a system broker and may kill or restart
theirs. `restart()` keeps the port, so clients can reconnect to the same address.

    with MosquittoBroker() as broker:
        client.connect(broker.host, broker.port)

Exceptions: `MosquittoError` (RuntimeError) when the binary is missing or the broker does not
come up; its message carries the tail of the broker's log.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

HOST = "127.0.0.1"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
PORT_POLL_INTERVAL_S = 0.02
START_ATTEMPTS_MAX = 3  # a freshly picked free port can be taken before the broker binds it
LOG_TAIL_LINES = 30
# Nothing of protocol v1 is larger than a configuration (CONFIG_BYTES_MAX, 8 KiB) plus its
# topic and MQTT header: the broker drops bigger packets (and their sender) before anyone
# has to hold them (docs/protocol.md section 4).
PACKET_BYTES_MAX = 16_384
SYSTEM_BINARY_DIRECTORIES = ("/usr/sbin", "/usr/local/sbin", "/usr/bin")


class MosquittoError(RuntimeError):
    """The broker binary is missing, or the broker did not start or stop as asked."""


def find_mosquitto() -> str:
    """Path of the mosquitto binary; raises MosquittoError naming the fix when there is none."""
    search_path = os.pathsep.join([os.environ.get("PATH", ""), *SYSTEM_BINARY_DIRECTORIES])
    binary = shutil.which("mosquitto", path=search_path)
    if binary is None:
        raise MosquittoError(
            "mosquitto is not installed: run `scripts/bootstrap.sh` (or `make test`), which "
            "installs the Debian package `mosquitto`"
        )
    return binary


def pick_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def port_accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=PORT_POLL_INTERVAL_S * 10):
            return True
    except OSError:
        return False


class MosquittoBroker:
    """A private mosquitto process; a context manager, or start()/stop() by hand.

    persistence: False (nothing kept), True (a folder in the broker's temp dir, kept across
    restart()), or a folder of the caller's. Messages are written there on a clean stop();
    kill() loses what was not yet saved, as a crash would.
    extra_config: more mosquitto.conf lines, appended as given.
    """

    def __init__(
        self,
        persistence: bool | Path = False,
        extra_config: tuple[str, ...] | list[str] = (),
    ) -> None:
        self._directory = Path(tempfile.mkdtemp(prefix="tilltap-mosquitto-"))
        self.config_path = self._directory / "mosquitto.conf"
        self.log_path = self._directory / "mosquitto.log"
        self.persistence_directory: Path | None
        if persistence is True:
            self.persistence_directory = self._directory / "persistence"
        elif persistence is False:
            self.persistence_directory = None
        else:
            self.persistence_directory = Path(persistence)
        self._extra_config = list(extra_config)
        self._process: subprocess.Popen[bytes] | None = None
        self.host = HOST
        self.port = 0
        atexit.register(self.close)

    # -- addresses ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    # -- life cycle --------------------------------------------------------------------------
    def start(self) -> MosquittoBroker:
        """Start the broker and wait until its port accepts connections."""
        if self.running:
            raise MosquittoError(f"mosquitto already running (pid {self.pid})")
        binary = find_mosquitto()
        keep_port = self.port != 0
        for attempt in range(1, START_ATTEMPTS_MAX + 1):
            if not keep_port:
                self.port = pick_free_port()
            self._write_config()
            if self._launch(binary, final_attempt=keep_port or attempt == START_ATTEMPTS_MAX):
                return self
        raise AssertionError("unreachable: the final attempt raises")

    def stop(self) -> None:
        """Stop cleanly (SIGTERM by PID, then wait); a no-op when not running."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """Stop abruptly (SIGKILL by PID, then wait), as a crash or power loss would."""
        self._end(signal.SIGKILL)

    def restart(self) -> MosquittoBroker:
        """Stop (if running) and start again on the same port, with the same persistence."""
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop and remove the temp dir (the caller's persistence folder is kept)."""
        self.kill()
        self._process = None
        shutil.rmtree(self._directory, ignore_errors=True)
        atexit.unregister(self.close)

    def __enter__(self) -> MosquittoBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
        self.close()

    # -- diagnostics -------------------------------------------------------------------------
    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log written)"
        return "\n".join(text.splitlines()[-lines:])

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<MosquittoBroker {self.url} {state}>"

    # -- internals ---------------------------------------------------------------------------
    def _write_config(self) -> None:
        lines = [
            f"listener {self.port} {HOST}",
            "allow_anonymous true",
            # Started as root, mosquitto would switch to user `mosquitto`, which cannot write
            # our temp dir; naming the current user keeps it as it is.
            f"user {pwd.getpwuid(os.geteuid()).pw_name}",
            "max_queued_messages 1000000",
            "max_inflight_messages 0",
            f"max_packet_size {PACKET_BYTES_MAX}",
            f"log_dest file {self.log_path}",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        ]
        if self.persistence_directory is None:
            lines.append("persistence false")
        else:
            self.persistence_directory.mkdir(parents=True, exist_ok=True)
            lines += ["persistence true", f"persistence_location {self.persistence_directory}/"]
        lines += self._extra_config
        self.config_path.write_text("\n".join(lines) + "\n")

    def _launch(self, binary: str, final_attempt: bool) -> bool:
        """Start the process; True once the port accepts, False to retry on another port."""
        self._process = subprocess.Popen(
            [binary, "-c", str(self.config_path)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if port_accepts(self.port):
                return True
            exit_code = self._process.poll()
            if exit_code is not None:
                self._process = None
                if final_attempt:
                    raise MosquittoError(
                        f"mosquitto exited with status {exit_code} on port {self.port}; "
                        f"log {self.log_path}:\n{self.log_tail()}"
                    )
                return False
            time.sleep(PORT_POLL_INTERVAL_S)
        self.kill()
        raise MosquittoError(
            f"mosquitto did not accept on {self.url} within {START_TIMEOUT_S} s; "
            f"log {self.log_path}:\n{self.log_tail()}"
        )

    def _end(self, signal_number: int) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            os.kill(process.pid, signal_number)
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait(timeout=STOP_TIMEOUT_S)
        self._process = None
