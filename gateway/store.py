"""The gateway's durable journal: SQLite in WAL mode, one commit per batch of records.

What is here is what the gateway has promised: a record is acknowledged to its terminal only
after the transaction holding it has committed. The store keeps

    records      every sealed record accepted or rejected in sequence (status, reason), with
                 its decoded fields as JSON and the settlement batch it went out in; or
                 parked (acked, waiting for the record it depends on: gateway/parked.py)
                 until it is accepted or rejected, rewritten then as the newest row so
                 settlement, in row order, posts it after its antecedent
    chain        per terminal: the highest contiguous seq and the digest of that record
    cards        per card: its program, balances and the program engine's state (JSON)
    card_sales   per card, the sales it remembers for refunds, one row each, so a commit
                 writes the few that changed and not a busy card's whole history
    batches      settlement batches: open (built, not yet confirmed by the ledger), settled,
                 or refused
    counters     rejection counts per reason, so statistics survive a restart
    authorizations  every approval given, with the amounts its record must carry, so a
                 record that comes after a restart is checked against it, and the hold it
                 placed (value, engine operation, ledger hold id) until that hold has ended,
                 so a restart recovers it (gateway/authorizations.py, hold_recovery.py)
    lease        which of the store's gateway processes is the active one, written by
                 gateway/lease.py; every write transaction here checks it (`fence`)

A commit that fails is rolled back and raises StoreUnavailable; `health` (store_health.py)
then says the store is unavailable, since when and why, until a commit succeeds.

The settlement batches are read and written by gateway/batches.py, and what a person reads
(exposure, refusals, totals) by gateway/store_reports.py, through `transaction` and `read`.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from gateway.store_health import StoreHealth, StoreUnavailable, is_store_fault

BUSY_TIMEOUT_MS = 10_000  # a writer's wait for SQLite's write lock (another process's)
SETTLE_BATCH_TXN_MAX = 200_000

STATUS_ACCEPTED = "accepted"
STATUS_REJECTED = "rejected"
STATUS_PARKED = "parked"  # acked, waiting for its antecedent (gateway/parked.py)
BATCH_OPEN = "open"
BATCH_SETTLED = "settled"
BATCH_REFUSED = "refused"
BATCH_SPLIT = "split"  # refused by the ledger, its records moved to two smaller batches

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    terminal TEXT NOT NULL,
    seq INTEGER NOT NULL,
    txn_id TEXT NOT NULL UNIQUE,
    digest BLOB NOT NULL,
    record BLOB NOT NULL,
    fields TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    batch_id TEXT,
    received_at REAL NOT NULL,
    PRIMARY KEY (terminal, seq)
);
CREATE INDEX IF NOT EXISTS records_unbatched ON records (status, batch_id);
CREATE TABLE IF NOT EXISTS chain (
    terminal TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    digest BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS cards (
    card TEXT PRIMARY KEY,
    program TEXT NOT NULL,
    currency TEXT NOT NULL,
    value_minor INTEGER NOT NULL,
    points INTEGER NOT NULL,
    sun_counter INTEGER,
    merchant TEXT,
    state TEXT,
    sun_seen TEXT,
    feed TEXT
);
CREATE TABLE IF NOT EXISTS card_sales (
    card TEXT NOT NULL,
    sale_id TEXT NOT NULL,
    sale TEXT NOT NULL,
    PRIMARY KEY (card, sale_id)
);
CREATE TABLE IF NOT EXISTS hotlist (
    card TEXT PRIMARY KEY,
    blocked_at REAL NOT NULL,
    reason TEXT NOT NULL,
    config_version INTEGER
);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    number INTEGER NOT NULL UNIQUE,
    status TEXT NOT NULL,
    txn_count INTEGER NOT NULL,
    created_at REAL NOT NULL,
    settled_at REAL,
    detail TEXT
);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS authorizations (
    auth_id TEXT PRIMARY KEY,
    terminal TEXT NOT NULL,
    card TEXT NOT NULL,
    expect TEXT NOT NULL,
    auth_mode INTEGER NOT NULL,
    given_at REAL NOT NULL,
    held_minor INTEGER NOT NULL DEFAULT 0,
    op TEXT,
    ledger_hold_id TEXT,
    hold_ended_at REAL,
    used_by TEXT
);
"""
_AUTHORIZATION_HOLD_COLUMNS = (("held_minor", "INTEGER NOT NULL DEFAULT 0"), ("op", "TEXT"),
                               ("ledger_hold_id", "TEXT"), ("hold_ended_at", "REAL"),
                               ("used_by", "TEXT"))
_INDEXES = """
CREATE INDEX IF NOT EXISTS authorizations_open_holds ON authorizations (ledger_hold_id)
    WHERE hold_ended_at IS NULL;
"""


class StoredRecord:
    """One row to write: a record that passed or failed ingest, in sequence."""

    __slots__ = ("terminal", "seq", "txn_id", "digest", "record", "fields", "status", "reason")

    def __init__(
        self,
        terminal: str,
        seq: int,
        txn_id: str,
        digest: bytes,
        record: bytes,
        fields: dict[str, Any],
        status: str,
        reason: str | None,
    ) -> None:
        self.terminal = terminal
        self.seq = seq
        self.txn_id = txn_id
        self.digest = digest
        self.record = record
        self.fields = fields
        self.status = status
        self.reason = reason


# Built once: `json.dumps` with any option builds an encoder per call, and a commit encodes
# every record's fields and every changed card's state (a few each per record).
_COMPACT = json.JSONEncoder(separators=(",", ":")).encode
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode


def _compact(value: Any) -> str:
    return _COMPACT(value)


def _state_json(state: dict[str, Any]) -> str:
    """A card's engine state without its sales (rows of card_sales)."""
    return _COMPACT({key: value for key, value in state.items() if key != "sales"} | {
        "sales": {}})


def fields_to_json(fields: dict[str, Any]) -> str:
    """Record fields as canonical JSON (bytes as hex), for settlement and reports."""
    plain = {k: (v.hex() if isinstance(v, bytes) else v) for k, v in fields.items()}
    return _CANONICAL(plain)


def _fields_from_json(text: str) -> dict[str, Any]:
    """Record fields as `fields_to_json` wrote them, the chain digest bytes again."""
    fields: dict[str, Any] = json.loads(text)
    if isinstance(fields.get("prev"), str):
        fields["prev"] = bytes.fromhex(fields["prev"])
    return fields


class GatewayStore:
    def __init__(self, path: str,
                 fence: Callable[[sqlite3.Connection], None] | None = None) -> None:
        """`fence(db)`: called inside every write transaction, before its statements; it
        raises to stop one that must not commit (gateway/lease.py: another process took
        the store's lease)."""
        self.path = path
        self._fence = fence
        self.health = StoreHealth()  # can it commit? (gateway/store_health.py)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit survives power loss, which is what an acknowledgement promises.
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        self._db.executescript(_SCHEMA)
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        """A store written before the program engine lacks the card's engine state; one
        written before durable holds lacks the approvals' holds; one written before blocks
        named their configuration lacks that."""
        have = {row[1] for row in self._db.execute("PRAGMA table_info(cards)")}
        for column in ("merchant", "state", "sun_seen", "feed"):
            if column not in have:
                self._db.execute(f"ALTER TABLE cards ADD COLUMN {column} TEXT")
        have = {row[1] for row in self._db.execute("PRAGMA table_info(authorizations)")}
        for column, kind in _AUTHORIZATION_HOLD_COLUMNS:
            if column not in have:
                self._db.execute(f"ALTER TABLE authorizations ADD COLUMN {column} {kind}")
        if "config_version" not in {row[1] for row in self._db.execute(
                "PRAGMA table_info(hotlist)")}:  # written before blocks named their version
            self._db.execute("ALTER TABLE hotlist ADD COLUMN config_version INTEGER")
        self._db.executescript(_INDEXES)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def transaction(self, wait_ms: int | None = None) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE), under the store's lock.

        StoreUnavailable when it cannot commit (the write lock is held past the wait, the
        disk is full, an I/O error): it is rolled back, nothing of it is durable, and
        `health` says so until a commit succeeds (gateway/store_health.py). `wait_ms`: the
        longest wait, for the store's lock and then for SQLite's write lock, of a writer
        someone is waiting for (authorization); by default BUSY_TIMEOUT_MS for SQLite's,
        and as long as it takes for the store's."""
        if wait_ms is None:
            self._lock.acquire()
            deadline_s = None
        else:
            deadline_s = time.monotonic() + wait_ms / 1000
            if not self._lock.acquire(timeout=wait_ms / 1000):
                error = StoreUnavailable(f"another commit held the store over {wait_ms} ms")
                self.health.failed(error.detail)
                raise error
        try:
            if deadline_s is not None:  # what is left of the wait, for SQLite's write lock
                left_ms = max(1, int((deadline_s - time.monotonic()) * 1000))
                self._db.execute(f"PRAGMA busy_timeout={min(left_ms, BUSY_TIMEOUT_MS)}")
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    if self._fence is not None:
                        self._fence(self._db)
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    # A failed COMMIT may leave the transaction open (SQLITE_BUSY): end it,
                    # or every later BEGIN would fail.
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except BaseException as error:
                if not is_store_fault(error):
                    raise
                self.health.failed(error)
                raise StoreUnavailable(f"{type(error).__name__}: {error}") from error
            finally:
                if deadline_s is not None:
                    self._db.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        finally:
            self._lock.release()
        self.health.committed()

    # -- ingest ---------------------------------------------------------------------------
    def add_counters(self, counters: dict[str, int]) -> None:
        """Add to durable counters (they only add: to store a value, add its difference)."""
        self.commit([], {}, {}, counters)

    def commit(
        self,
        records: Iterable[StoredRecord],
        chain: dict[str, tuple[int, bytes]],
        cards: dict[str, dict[str, Any]],
        counters: dict[str, int],
        replaced: Iterable[StoredRecord] = (),
    ) -> None:
        """Write one batch of sequenced records and the state they produce, atomically.
        `replaced`: parked records (stored before, or in `records`) now accepted or rejected:
        each is written again as the newest row (its received time kept)."""
        now = time.time()

        def row(r: StoredRecord) -> tuple[Any, ...]:
            return (r.terminal, r.seq, r.txn_id, r.digest, r.record,
                    fields_to_json(r.fields), r.status, r.reason, now)

        with self.transaction() as db:
            db.executemany(
                "INSERT INTO records (terminal, seq, txn_id, digest, record, fields, status,"
                " reason, received_at) VALUES (?,?,?,?,?,?,?,?,?)",
                [row(r) for r in records],
            )
            for r in replaced:
                received = db.execute("SELECT received_at FROM records WHERE terminal = ? AND"
                                      " seq = ?", (r.terminal, r.seq)).fetchone()
                db.execute("DELETE FROM records WHERE terminal = ? AND seq = ?",
                           (r.terminal, r.seq))
                db.execute(
                    "INSERT INTO records (terminal, seq, txn_id, digest, record, fields,"
                    " status, reason, received_at) VALUES (?,?,?,?,?,?,?,?,?)",
                    row(r)[:-1] + (now if received is None else received[0],),
                )
            # An approval is used once: by the accepted record that names it (in the same
            # commit), so no later record can name it again (gateway/cards.py).
            db.executemany(
                "UPDATE authorizations SET used_by = ? WHERE auth_id = ? AND used_by IS NULL",
                [(r.txn_id, r.fields["auth_id"]) for r in (*records, *replaced)
                 if r.status == STATUS_ACCEPTED and r.fields.get("auth_id")])
            db.executemany(
                "INSERT INTO chain (terminal, seq, digest) VALUES (?,?,?) ON CONFLICT(terminal)"
                " DO UPDATE SET seq=excluded.seq, digest=excluded.digest",
                [(t, seq, digest) for t, (seq, digest) in chain.items()],
            )
            db.executemany(
                "INSERT INTO cards (card, program, currency, value_minor, points, sun_counter,"
                " merchant, state, sun_seen, feed) VALUES (?,?,?,?,?,?,?,?,?,?) ON"
                " CONFLICT(card) DO UPDATE SET value_minor=excluded.value_minor,"
                " points=excluded.points, sun_counter=excluded.sun_counter,"
                " merchant=excluded.merchant, state=excluded.state,"
                " sun_seen=excluded.sun_seen, feed=excluded.feed",
                [
                    (c, s["program"], s["currency"], s["value_minor"], s["points"],
                     s.get("sun_counter"), s.get("merchant"), _state_json(s["state"]),
                     json.dumps(s["sun_seen"]) if s.get("sun_seen") else "[]",
                     None if s.get("feed") is None else json.dumps(s["feed"]))
                    for c, s in cards.items()
                ],
            )
            # A card's sales are rows of their own: a commit writes the ones that changed.
            changed = [(c, sale_id, sale) for c, s in cards.items()
                       for sale_id, sale in s.get("sales_changed", {}).items()]
            db.executemany(
                "INSERT INTO card_sales (card, sale_id, sale) VALUES (?,?,?) ON CONFLICT"
                " (card, sale_id) DO UPDATE SET sale=excluded.sale",
                [(c, sale_id, _compact(sale)) for c, sale_id, sale in changed
                 if sale is not None])
            db.executemany(
                "DELETE FROM card_sales WHERE card = ? AND sale_id = ?",
                [(c, sale_id) for c, sale_id, sale in changed if sale is None])
            db.executemany(
                "INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name)"
                " DO UPDATE SET value = value + excluded.value",
                list(counters.items()),
            )

    # -- state loaded at start ------------------------------------------------------------
    def load_chain(self) -> dict[str, tuple[int, bytes]]:
        with self._lock:
            rows = self._db.execute("SELECT terminal, seq, digest FROM chain").fetchall()
        return {t: (seq, bytes(digest)) for t, seq, digest in rows}

    def load_cards(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT card, program, currency, value_minor, points, sun_counter, merchant,"
                " state, sun_seen, feed FROM cards WHERE state IS NOT NULL"
            ).fetchall()
            sales = self._db.execute("SELECT card, sale_id, sale FROM card_sales").fetchall()
        cards = {
            c: {"program": p, "currency": cur, "value_minor": v, "points": pts, "sun_counter": n,
                "merchant": m, "state": json.loads(state), "sun_seen": json.loads(seen or "[]"),
                "feed": None if feed is None else json.loads(feed)}
            for c, p, cur, v, pts, n, m, state, seen, feed in rows
        }
        for card, sale_id, sale in sales:
            cards[card]["state"]["sales"][sale_id] = json.loads(sale)
        return cards

    # -- hotlist --------------------------------------------------------------------------
    def block(self, card: str, reason: str, config_version: int | None = None) -> None:
        """`config_version`: the first terminal configuration that carries the block."""
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO hotlist (card, blocked_at, reason,"
                       " config_version) VALUES (?,?,?,?)",
                       (card, time.time(), reason, config_version))

    def unblock(self, card: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM hotlist WHERE card = ?", (card,))

    def hotlist_versions(self) -> dict[str, int | None]:
        """Each blocked card's first configuration version (None: blocked before it was
        kept)."""
        with self._lock:
            rows = self._db.execute("SELECT card, config_version FROM hotlist").fetchall()
        return {card: version for card, version in rows}

    def hotlist(self) -> list[str]:
        """The blocked cards, the earliest blocked first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT card FROM hotlist ORDER BY blocked_at, card").fetchall()
        return [r[0] for r in rows]

    def load_parked(self) -> list[tuple[StoredRecord, float]]:
        """The parked records, oldest first, each with when it was received."""
        rows = self.read(
            "SELECT terminal, seq, txn_id, digest, record, fields, reason, received_at"
            " FROM records WHERE status = ? ORDER BY rowid", (STATUS_PARKED,))
        return [(StoredRecord(terminal, seq, txn_id, bytes(digest), bytes(record),
                              _fields_from_json(fields), STATUS_PARKED, reason), received_at)
                for terminal, seq, txn_id, digest, record, fields, reason, received_at
                in rows]

    def lookup(self, terminal: str, seq: int) -> tuple[bytes, str, str | None] | None:
        """(digest, status, reason) of a stored record, to recognise resends."""
        with self._lock:
            row = self._db.execute(
                "SELECT digest, status, reason FROM records WHERE terminal = ? AND seq = ?",
                (terminal, seq),
            ).fetchone()
        return None if row is None else (bytes(row[0]), row[1], row[2])

    def read(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[Any]:
        """Rows of a read-only query (gateway/store_reports.py), under the store's lock."""
        with self._lock:
            return self._db.execute(sql, parameters).fetchall()

    def records_since(self, since_s: float) -> list[tuple[str, str]]:
        """(status, fields JSON) of the records received since `since_s`, newest first: read
        back from the newest, in the order stored, only as far as that."""
        rows: list[tuple[str, str]] = []
        with self._lock:
            cursor = self._db.execute(
                "SELECT received_at, status, fields FROM records ORDER BY rowid DESC")
            for received_at, status, fields in cursor:
                if received_at < since_s:
                    break
                rows.append((status, fields))
            cursor.close()
        return rows

    def counters(self) -> dict[str, int]:
        with self._lock:
            return dict(self._db.execute("SELECT name, value FROM counters").fetchall())
