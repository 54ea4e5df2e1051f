"""The books: post settlement batches exactly once, and answer balance questions.

`Books` is a thin facade: validation (`ledger.validate`), rules (`ledger.plan`), SQL
(`ledger.store`, `ledger.reports`) live elsewhere; here are only the guarantees that tie
them together:

- one lock serializes every use of the single connection, so the object is thread-safe;
- a batch posts in ONE database transaction: all its transactions or none of them;
- a batch_id seen before with the same content is a success (``duplicate``), with other
  content a ``batch_conflict``; a reused txn_id is skipped or a ``txn_conflict``;
  conflicts are recorded as alarm rows and logged, and change nothing else;
- driver errors surface as `LedgerUnavailable` (the caller may retry the same batch).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ledger import reports, store
from ledger.db import Database, open_database
from ledger.errors import BatchConflict, LedgerUnavailable
from ledger.model import Batch, PostResult
from ledger.plan import plan_batch
from ledger.schema import create_schema
from ledger.validate import parse_batch

log = logging.getLogger(__name__)


class Books:
    """Double-entry books on one database connection; use `open_books` to get one."""

    def __init__(self, database: Database, clock: Callable[[], float] = time.time) -> None:
        self._database = database
        self._clock = clock
        self._lock = threading.Lock()
        with self._guard():
            create_schema(database)

    @property
    def dialect(self) -> str:
        """The database engine: "sqlite" or "postgresql"."""
        return self._database.dialect

    def post_batch(self, document: object) -> PostResult:
        """Validate and post a decoded settlement batch exactly once, atomically."""
        batch = parse_batch(document)
        with self._guard():
            try:
                with self._database.write_transaction():
                    return self._post(batch)
            except BatchConflict as conflict:
                self._raise_alarm(conflict.reason, f"batch {batch.batch_id}: {conflict.detail}")
                raise

    def _post(self, batch: Batch) -> PostResult:
        """Inside the write transaction: duplicate check, plan, write."""
        known_hash = store.find_batch_hash(self._database, batch.batch_id)
        if known_hash == batch.content_hash:
            return PostResult("duplicate", batch.batch_id, 0, len(batch.transactions))
        if known_hash is not None:
            raise BatchConflict(
                "batch_conflict",
                f"batch_id was posted before with different content (resent by {batch.gateway_id})",
            )
        plan = plan_batch(batch, store.read_view(self._database, batch))
        store.write_plan(self._database, batch, plan, int(self._clock()))
        return PostResult("posted", batch.batch_id, len(plan.txns), plan.already_posted)

    def _raise_alarm(self, reason: str, detail: str) -> None:
        """Log an alarm and record it in its own transaction (the batch's was rolled back)."""
        log.warning("ledger alarm %s: %s", reason, detail)
        with self._database.write_transaction():
            store.insert_alarm(self._database, int(self._clock()), reason, detail)

    def card_balance(self, card: str) -> dict[str, Any] | None:
        """{"card","currency","value_minor","points","program"} or None for an unknown card."""
        with self._guard():
            return reports.card_balance(self._database, card)

    def balances(self) -> list[dict[str, Any]]:
        """Every card's balance, ordered by card id."""
        with self._guard():
            return reports.balances(self._database)

    def terminal_totals(self) -> dict[str, dict[str, Any]]:
        """Per terminal: {"count": n, "by_kind": {kind: {count and sums}}} (see reports)."""
        with self._guard():
            return reports.terminal_totals(self._database)

    def trial_balance(self) -> dict[str, int]:
        """{unit: sum of entries}; every value is zero in healthy books."""
        with self._guard():
            return reports.trial_balance(self._database)

    def alarms(self) -> list[dict[str, Any]]:
        """Recorded alarms, oldest first: {"id","at","reason","detail"}."""
        with self._guard():
            return reports.alarms(self._database)

    def counts(self) -> dict[str, int]:
        """Rows per table, for operators and for tests proving that a rejection changed nothing."""
        with self._guard():
            return reports.counts(self._database)

    def ping(self) -> None:
        """Raise LedgerUnavailable unless the database answers a trivial query."""
        with self._guard():
            self._database.fetch("SELECT 1")

    def close(self) -> None:
        """Close the connection; the books are unusable afterwards."""
        with self._lock:
            self._database.close()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Hold the lock and turn driver errors into LedgerUnavailable."""
        with self._lock:
            try:
                yield
            except self._database.errors as error:
                log.error("ledger database error: %s", error)
                raise LedgerUnavailable(f"{type(error).__name__}: {error}") from error


def open_books(dsn: str) -> Books:
    """Open (and create if needed) the books a DSN names; see `ledger.db.open_database`."""
    database = open_database(dsn)
    try:
        return Books(database)
    except BaseException:
        database.close()
        raise
