"""Whether the gateway's store can commit: one flag every writer sets, every reader trusts.

The store promises what the gateway says to terminals: an ack only after its record's commit,
an approval only after it is kept (gateway/authorizations.py). When a commit fails (another
process holds the write lock past the wait, the disk is full, an I/O error) the store is
*unavailable* from that moment until the next commit that succeeds. Meanwhile:

- the authorization stage approves nothing: it answers every request, signed, with
  `host_unavailable`, so the terminal declines or, for a purchase, sells offline within its
  signed limits; one request per STORE_RETRY_S is decided as usual, and its commit is the
  probe that ends the episode (gateway/authorize.py);
- an ingest commit that fails still ends the process (exit 70, gateway/stage.py): the
  sequencer and card book in memory are ahead of the store, a restart re-reads the store,
  and the terminals resend what was not acked;
- `snapshot()` says so (`tilltap gateway run --health-out`): the status, since when, the
  error, the episodes so far.

One ALARM line is logged when an episode begins and one line when it ends, never one per
failed commit. Thread-safe; nothing is logged or written under its lock.

Exceptions::

    StoreUnavailable   a commit did not happen (the store rolled it back); `reason` is
                       protocol.reasons.HOST_UNAVAILABLE, what a terminal is told
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any

from protocol.reasons import HOST_UNAVAILABLE

STORE_RETRY_S = 1.0
"""While the store is unavailable, the authorization stage tries one commit this often."""

STATUS_OK = "ok"
STATUS_UNAVAILABLE = "store_unavailable"

# SQLite primary result codes that say the store cannot commit now (rather than that the SQL
# or the data is wrong, which is a programmer error and is not caught here).
_FAULT_CODES = frozenset({
    5,   # SQLITE_BUSY: another connection holds the write lock past the wait
    6,   # SQLITE_LOCKED
    7,   # SQLITE_NOMEM
    8,   # SQLITE_READONLY: the file or its folder became read-only
    10,  # SQLITE_IOERR
    11,  # SQLITE_CORRUPT
    13,  # SQLITE_FULL: the disk (or the file size limit) is full
    14,  # SQLITE_CANTOPEN: the WAL or journal cannot be created
    15,  # SQLITE_PROTOCOL
    26,  # SQLITE_NOTADB
})

log = logging.getLogger(__name__)


class StoreUnavailable(Exception):
    """A commit failed and was rolled back: nothing of it is durable."""

    reason = HOST_UNAVAILABLE

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def is_store_fault(error: BaseException) -> bool:
    """True for errors that say the store cannot commit now (lock, disk, I/O)."""
    if isinstance(error, OSError):
        return True
    if not isinstance(error, sqlite3.DatabaseError) or isinstance(
            error, (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.DataError)):
        return False
    code = getattr(error, "sqlite_errorcode", None)
    if code is None:  # raised by the module, not by SQLite: trust its class
        return isinstance(error, sqlite3.OperationalError)
    return code & 0xFF in _FAULT_CODES


class StoreHealth:
    def __init__(self, clock: Callable[[], float] = time.time,
                 retry_s: float = STORE_RETRY_S) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._retry_s = retry_s
        self._since_s: float | None = None  # when the current episode began
        self._error = ""
        self._last_try_s = 0.0
        self.episodes = 0

    def failed(self, error: BaseException | str) -> None:
        """A commit failed: begins an episode (one ALARM) or continues it."""
        now = self._clock()
        text = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        with self._lock:
            begins = self._since_s is None
            if begins:
                self._since_s = now
                self.episodes += 1
            self._error = text
            self._last_try_s = now
        if begins:
            log.critical("ALARM the store cannot commit (%s): authorizations answer %s until"
                         " a commit succeeds", text, HOST_UNAVAILABLE)

    def committed(self) -> None:
        """A commit succeeded: ends the episode, if one was going on."""
        with self._lock:
            since_s, self._since_s = self._since_s, None
        if since_s is not None:
            log.warning("the store commits again, after %.1f s unavailable",
                        self._clock() - since_s)

    def available(self) -> bool:
        with self._lock:
            return self._since_s is None

    def may_try(self) -> bool:
        """May a writer that can answer otherwise (authorization) try a commit now? Always
        while the store is available; while it is not, once per `retry_s`."""
        now = self._clock()
        with self._lock:
            if self._since_s is None:
                return True
            if now - self._last_try_s < self._retry_s:
                return False
            self._last_try_s = now
            return True

    def snapshot(self) -> dict[str, Any]:
        """{"status": "ok" | "store_unavailable", "episodes"} and, while unavailable,
        "since" (Unix time), "error"."""
        with self._lock:
            if self._since_s is None:
                return {"status": STATUS_OK, "episodes": self.episodes}
            return {"status": STATUS_UNAVAILABLE, "since": self._since_s, "error": self._error,
                    "episodes": self.episodes}
