"""The store's lease: which of its gateway processes is the active one (issue 14 item 6).

A store may run two gateway processes on one database file (same host, or a volume both
mount): one *active*, which serves the broker and writes the store, and one *standby*,
which waits. The lease is a row in that database,

    lease(name, holder, epoch, expires_at)

taken by a process when it is free, expired, or held by a process of this host that no
longer exists (so a restart after SIGKILL does not wait out the lease). Each take raises
the epoch by one, in one write transaction, so two processes never hold the same epoch.
The holder renews it every LEASE_RENEW_FRACTION of the lease; a standby looks every
STANDBY_POLL_S, with a read, and tries to take it only when it may.

Fencing: every write transaction of the store checks, inside that transaction, that the
lease's epoch is still its own (`fence`, called by gateway/store.py `transaction`). SQLite
serialises writers, so once a standby's take has committed, no write of the old holder can
commit after it: a holder paused past its lease (SIGSTOP, a stalled disk, a VM frozen)
finds, the moment it resumes and tries to write, that it is no longer the active one, and
stops. The same check runs before every MQTT (re)connect (`confirm`): an old holder never
takes the broker session back from the new one.

Why a lease in the store and not an OS file lock: a lock held by a hung process is never
given up, and file locks over a shared network volume are unreliable; the lease expires,
and the epoch check needs nothing but SQLite's own write lock. Why not MQTT shared
subscriptions: two live consumers would each keep sequences, chains and holds of their
own; the store would have two writers.

Exceptions::

    LeaseLost   another process took the lease: this one must not write or serve again;
                `on_lost` (by default `stop_process`: one log line, exit EXIT_LEASE_LOST)
                is called before it is raised
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from gateway.stage import OnDeath, thread

LEASE_NAME = "gateway"
LEASE_S = 10.0  # `gateway run --lease-s`: a standby takes over this long after the last renewal
LEASE_S_MIN = 1.0  # shorter leases would be renewed too often to leave room for a slow commit
LEASE_RENEW_FRACTION = 0.3  # the holder renews after this fraction of its lease has passed
STANDBY_POLL_S = 0.5  # a standby reads the lease this often
LEASE_BUSY_TIMEOUT_MS = 1_000  # a take or renewal waits this long for SQLite's write lock
LEASE_JOIN_S = 5.0
EXIT_LEASE_LOST = 75  # sysexits EX_TEMPFAIL: started again, the process is a standby

_SCHEMA = """
CREATE TABLE IF NOT EXISTS lease (
    name TEXT PRIMARY KEY,
    holder TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    expires_at REAL NOT NULL
)
"""

log = logging.getLogger(__name__)


class LeaseLost(Exception):
    """Another process took the lease: nothing this one writes may commit any more."""

    def __init__(self, epoch: int, holder: str | None, now_epoch: int | None) -> None:
        super().__init__(f"lease lost: epoch {epoch} is over, the lease is now epoch "
                         f"{now_epoch} of {holder}")
        self.epoch = epoch
        self.holder = holder
        self.now_epoch = now_epoch


def stop_process(error: LeaseLost) -> None:
    """One line, then the process ends at once: none of its threads may act again, and an
    open store transaction is rolled back by the process ending."""
    log.critical("%s: this gateway stops", error)
    logging.shutdown()
    os._exit(EXIT_LEASE_LOST)


def _pid_namespace() -> str:
    """Two processes see each other's pids only in one pid namespace (not across
    containers): the holder's liveness is checked only there."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return "unknown"


def this_host() -> str:
    """The host and pid namespace part of a holder's name."""
    return f"{socket.gethostname()} {_pid_namespace()}"


def process_gone(pid: int) -> bool:
    """True when no process `pid` runs (or only its zombie, killed and not yet reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # another user's process: it exists
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False  # not Linux, or gone this instant: the lease's expiry decides
    return stat.rsplit(")", 1)[-1].split()[:1] in (["Z"], ["X"])


def holder_gone(holder: str, host: str) -> bool:
    """Is `holder` a process of this host (and pid namespace) that no longer exists?"""
    parts = holder.rsplit(" ", 2)
    if len(parts) != 3 or parts[0] != host or not parts[1].isdigit():
        return False  # another host's: only the expiry tells
    return process_gone(int(parts[1]))


class Lease:
    """This process's claim on the store's lease. Thread-safe.

    `clock`: the wall clock, time.time by default (every process of the store compares
    its own with the others'); `on_lost`: called with the LeaseLost before it is raised."""

    def __init__(self, path: str, lease_s: float = LEASE_S,
                 on_lost: Callable[[LeaseLost], None] = stop_process,
                 clock: Callable[[], float] | None = None, name: str = LEASE_NAME) -> None:
        assert lease_s >= LEASE_S_MIN, lease_s
        self.lease_s = lease_s
        self.name = name
        self.host = this_host()
        # Unique per claim, so two claims in one process are told apart too.
        self.holder = f"{self.host} {os.getpid()} {secrets.token_hex(4)}"
        self.epoch: int | None = None
        self._on_lost = on_lost
        # time.time as it is now, not at import: a clock hook (tools/gauntlet) moves it too.
        self._clock = clock or time.time
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute(f"PRAGMA busy_timeout={LEASE_BUSY_TIMEOUT_MS}")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)

    # -- taking it ------------------------------------------------------------------------
    def _row(self) -> tuple[str, int, float] | None:
        row = self._db.execute("SELECT holder, epoch, expires_at FROM lease WHERE name = ?",
                               (self.name,)).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def _may_take(self, row: tuple[str, int, float] | None) -> bool:
        return (row is None or row[2] <= self._clock()
                or holder_gone(row[0], self.host))

    def try_take(self) -> bool:
        """Take the lease if it is free, expired or its holder is gone; True if taken.
        A write lock held past LEASE_BUSY_TIMEOUT_MS: not taken now (False)."""
        with self._lock:
            assert self.epoch is None, "taken already"
            if not self._may_take(self._row()):  # a read: writers are not held up
                return False
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as error:  # busy: the next poll tries again
                log.debug("lease not tried: %s", error)
                return False
            try:
                row = self._row()  # again, under the write lock: another may have won
                if not self._may_take(row):
                    self._db.execute("ROLLBACK")
                    return False
                epoch = 1 if row is None else row[1] + 1
                self._db.execute(
                    "INSERT INTO lease (name, holder, epoch, expires_at) VALUES (?,?,?,?)"
                    " ON CONFLICT(name) DO UPDATE SET holder = excluded.holder,"
                    " epoch = excluded.epoch, expires_at = excluded.expires_at",
                    (self.name, self.holder, epoch, self._clock() + self.lease_s))
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self.epoch = epoch
        log.info("active: lease taken (epoch %d)", epoch)
        return True

    def wait(self, stop: threading.Event, on_standby: Callable[[], None] = lambda: None
             ) -> bool:
        """Take the lease, waiting as a standby for as long as it takes; False if `stop`
        was set first. `on_standby` is called once, when the wait begins."""
        if self.try_take():
            return True
        with self._lock:
            row = self._row()
        log.info("standby: waiting for the lease (held by %s, epoch %s)",
                 *(row[:2] if row else ("nobody", "-")))
        on_standby()
        while not stop.wait(STANDBY_POLL_S):
            if self.try_take():
                return True
        return False

    # -- holding it -----------------------------------------------------------------------
    def keep(self, on_death: OnDeath) -> None:
        """Renew the lease every LEASE_RENEW_FRACTION of it, on a thread of its own, until
        `release`."""
        assert self.epoch is not None and self._keeper is None
        self._keeper = thread("gateway-lease", self._renew_loop, on_death)
        self._keeper.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.lease_s * LEASE_RENEW_FRACTION):
            self.renew()

    def renew(self) -> bool:
        """Extend the lease by `lease_s` from now; False if the write lock or the disk kept
        it from committing (it is tried again at the next turn: while its epoch is its
        own, a late renewal is still good). LeaseLost if another took it."""
        assert self.epoch is not None
        with self._lock:
            try:
                renewed = self._db.execute(
                    "UPDATE lease SET expires_at = ? WHERE name = ? AND epoch = ?",
                    (self._clock() + self.lease_s, self.name, self.epoch)).rowcount
                row = None if renewed else self._row()
            except sqlite3.OperationalError as error:
                log.warning("lease not renewed this turn: %s", error)
                return False
        if not renewed:
            self._lost(row)
        return True

    def fence(self, db: sqlite3.Connection) -> None:
        """Inside a write transaction of `db` (the store's): LeaseLost unless the lease is
        still this epoch, so the transaction does not commit."""
        assert self.epoch is not None, "the store is written only under the lease"
        row = db.execute("SELECT holder, epoch FROM lease WHERE name = ?",
                         (self.name,)).fetchone()
        if row is None or row[1] != self.epoch:
            self._lost(row)

    def confirm(self) -> None:
        """LeaseLost unless the lease is still this epoch (before a broker connect)."""
        assert self.epoch is not None
        with self._lock:
            row = self._row()
        if row is None or row[1] != self.epoch:
            self._lost(row)

    def _lost(self, row: tuple[str, int] | tuple[str, int, float] | None) -> None:
        assert self.epoch is not None
        error = LeaseLost(self.epoch, None if row is None else row[0],
                          None if row is None else row[1])
        self._on_lost(error)
        raise error

    # -- giving it up ---------------------------------------------------------------------
    def release(self) -> None:
        """Stop renewing and let the lease go at once (a standby need not wait out its
        expiry); only if it is still this epoch. Then close."""
        self._stop.set()
        if self._keeper is not None:
            self._keeper.join(LEASE_JOIN_S)
        with self._lock:
            if self.epoch is not None:
                try:
                    self._db.execute("UPDATE lease SET expires_at = 0 WHERE name = ? AND"
                                     " epoch = ?", (self.name, self.epoch))
                except sqlite3.OperationalError as error:  # it expires on its own
                    log.warning("lease not released: %s", error)
            self._db.close()

    def close(self) -> None:
        """Close without releasing (a standby that stops, or a test)."""
        self._stop.set()
        with self._lock:
            self._db.close()
