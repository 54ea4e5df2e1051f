"""Find or start the machine's one pcscd, share it, and stop it only if tilltap started it.

pcscd always serves `/run/pcscd/pcscd.comm` (or `$PCSCLITE_CSOCK_NAME`), so a machine has one,
shared by every test run and tool. `use_pcscd()`:

1. under an exclusive start lock, reuses a pcscd whose socket answers a connect, or starts
   `pcscd --foreground` in its own session (its log goes to `PcscDaemon.log_path`), records
   it in `tilltap-pcscd.pid` (PID and kernel start time) and waits until the socket answers;
2. holds a shared "users" lock while the caller uses it.

`PcscDaemon.release()` drops the shared lock; if no other user holds it (an exclusive
try-lock succeeds) and the running daemon is the one recorded, it stops it (SIGTERM, then
SIGKILL after a bound). So a daemon tilltap started lives exactly as long as some tilltap
process uses it, even when the starter finishes before the others (the last user stops it);
a daemon someone else started (systemd, a developer) is never recorded, never stopped.

Errors are `tools.transports.ReaderUnavailable` (reason `reader_unavailable`) with the fix in
the detail.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import IO

from tools.transports import ReaderUnavailable

SOCKET_PATH_DEFAULT = "/run/pcscd/pcscd.comm"
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0
LOCK_WAIT_S = 60.0
SOCKET_CONNECT_TIMEOUT_S = 1.0
POLL_INTERVAL_S = 0.05
LOG_TAIL_BYTES_MAX = 2000

INSTALL_FIX = (
    "apt-get install -y pcscd vsmartcard-vpcd libpcsclite-dev swig (or run scripts/bootstrap.sh)"
)


def socket_path() -> str:
    return os.environ.get("PCSCLITE_CSOCK_NAME", SOCKET_PATH_DEFAULT)


def socket_answers(path: str | None = None, timeout_s: float = SOCKET_CONNECT_TIMEOUT_S) -> bool:
    """True when a pcscd accepts connections on its socket (a stale file refuses them)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(timeout_s)
    try:
        probe.connect(path or socket_path())
    except OSError:
        return False
    finally:
        probe.close()
    return True


def find_pcscd() -> str | None:
    return shutil.which("pcscd") or next(
        (p for p in ("/usr/sbin/pcscd", "/sbin/pcscd") if os.access(p, os.X_OK)), None
    )


def _flock(handle: IO[bytes], operation: int, wait_s: float, what: str) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(handle, operation | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise ReaderUnavailable(
                    f"{what} ({handle.name}) still held after {wait_s:.0f} s by another process"
                ) from None
            time.sleep(POLL_INTERVAL_S)


class PcscDaemon:
    """A pcscd this process uses; `started` says whether this process started it.

    Its lock files and the log of a daemon it starts are `tilltap-pcscd-*` in `run_dir`
    (default: the temporary directory). `socket_file`, `command` and `run_dir` are for tests
    (a stand-in daemon on a private socket); the defaults are the real pcscd.
    """

    def __init__(
        self,
        socket_file: str | None = None,
        command: list[str] | None = None,
        run_dir: Path | None = None,
    ) -> None:
        self.socket_path = socket_file or socket_path()
        self.command = command
        self.run_dir = run_dir or Path(tempfile.gettempdir())
        self.started = False
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = self.run_dir / "tilltap-pcscd.log"
        self.record_path = self.run_dir / "tilltap-pcscd.pid"
        self.stopped = False  # True once release() stopped a daemon tilltap had started
        self._users: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def acquire(self, lock_wait_s: float = LOCK_WAIT_S) -> PcscDaemon:
        if self._users is not None:
            return self
        with open(self.run_dir / "tilltap-pcscd-start.lock", "ab") as start_lock:
            _flock(start_lock, fcntl.LOCK_EX, lock_wait_s, "the pcscd start lock")
            if not socket_answers(self.socket_path):
                self._start()
            # held until release(), hence no `with`
            users = open(self.run_dir / "tilltap-pcscd-users.lock", "ab")  # noqa: SIM115
            try:
                _flock(users, fcntl.LOCK_SH, lock_wait_s, "the pcscd users lock")
            except ReaderUnavailable:
                users.close()
                raise
            self._users = users
        return self

    def release(self, lock_wait_s: float = LOCK_WAIT_S) -> None:
        """Stop using the daemon; stop it if tilltap started it and nobody uses it now."""
        if self._users is None:
            return
        with open(self.run_dir / "tilltap-pcscd-start.lock", "ab") as start_lock:
            _flock(start_lock, fcntl.LOCK_EX, lock_wait_s, "the pcscd start lock")
            users, self._users = self._users, None
            try:
                fcntl.flock(users, fcntl.LOCK_UN)
                if self._alone(users):
                    self._stop_recorded()
            finally:
                users.close()

    @staticmethod
    def _alone(users: IO[bytes]) -> bool:
        try:
            fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    def _start(self) -> None:
        command = self.command
        if command is None:
            binary = find_pcscd()
            if binary is None:
                raise ReaderUnavailable(f"pcscd is not installed; {INSTALL_FIX}")
            command = [binary, "--foreground"]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C of this test run must not stop others' pcscd
            )
        self.started = True
        self.record_path.write_text(f"{self.process.pid} {_start_time(self.process.pid)}\n")
        deadline = time.monotonic() + START_TIMEOUT_S
        while not socket_answers(self.socket_path):
            if self.process.poll() is not None:
                self.started = False
                self.record_path.unlink(missing_ok=True)
                raise ReaderUnavailable(
                    f"pcscd exited with status {self.process.returncode} before its socket "
                    f"{self.socket_path} answered; its log:\n{self._log_tail()}\n"
                    "If another pcscd is hung, stop it by its PID (/run/pcscd/pcscd.pid) "
                    "and run again."
                )
            if time.monotonic() >= deadline:
                self._stop()
                raise ReaderUnavailable(
                    f"pcscd started but {self.socket_path} did not answer within "
                    f"{START_TIMEOUT_S:.0f} s; its log:\n{self._log_tail()}"
                )
            time.sleep(POLL_INTERVAL_S)

    def _stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT_S)
        self.stopped = True
        self.record_path.unlink(missing_ok=True)

    def _stop_recorded(self) -> None:
        """Stop the daemon a tilltap process started (this one or an earlier one), if alive."""
        try:
            pid_text, start_time = self.record_path.read_text().split()
            pid = int(pid_text)
        except (OSError, ValueError):
            return  # nothing recorded: not ours to stop
        if self.process is not None and self.process.pid == pid:
            self._stop()
            return
        if _start_time(pid) == start_time:  # the same process, not a reused PID
            _terminate(pid)
            self.stopped = True
        self.record_path.unlink(missing_ok=True)

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_bytes()[-LOG_TAIL_BYTES_MAX:].decode(errors="replace")
        except OSError as error:
            return f"(no log: {error})"

    def describe(self) -> str:
        if self.started:
            return f"pcscd pid {self.pid} started by this process (log {self.log_path})"
        return f"a running pcscd on {self.socket_path} (not ours: never stopped here)"

    def __enter__(self) -> PcscDaemon:
        return self.acquire()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def _proc_stat(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name (field 3, the state, first)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def _start_time(pid: int) -> str:
    fields = _proc_stat(pid)
    return fields[19] if fields else "gone"  # field 22: start time in clock ticks


def _terminate(pid: int) -> None:
    """SIGTERM a process that is not our child; SIGKILL after STOP_TIMEOUT_S."""
    for sig, wait_s in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, STOP_TIMEOUT_S)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            fields = _proc_stat(pid)
            if fields is None or fields[0] == "Z":  # gone, or dead and waiting for its parent
                return
            time.sleep(POLL_INTERVAL_S)


def use_pcscd(lock_wait_s: float = LOCK_WAIT_S) -> PcscDaemon:
    """A running pcscd, reused or started; call `.release()` (or use `with`) when done."""
    return PcscDaemon().acquire(lock_wait_s)
