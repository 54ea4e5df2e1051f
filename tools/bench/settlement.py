"""Settlement: posting batches into the ledger, against a raw bulk insert of the same postings.

    ledger:  `Books.post_batch(document)` on a fresh database: validate every field, hash,
             plan the legs, then insert the batch, transactions, entries and cards rows in one
             transaction (SQLite WAL synchronous=FULL; PostgreSQL, COPY for the bulk rows)
    raw:     the entry rows the ledger writes for the same batch (computed before the clock by
             the ledger's own validate + plan) into a bare table of the same five columns, in
             one transaction: executemany on SQLite (same pragmas), COPY on PostgreSQL

A workload of more than BATCH_TXN_MAX transactions is posted as consecutive batches into the
same books. Only posting is timed, never building the documents, and garbage left by earlier
work is collected before each timed step. PostgreSQL is the server
named by TILLTAP_BENCH_PG_DSN (an admin URL), else postgres@127.0.0.1:5432; each measurement
gets a fresh database, dropped afterwards. If none answers, the PostgreSQL half is skipped
with a note (the goal then reads "not measured").
"""

from __future__ import annotations

import gc
import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ledger.books import open_books
from ledger.limits import BATCH_TXN_MAX
from ledger.plan import BooksView, EntryRow, plan_batch
from ledger.schema import ENTRY_COLUMNS
from ledger.validate import parse_batch
from tools.bench.run import Metric, Section, size_label

QUICK_SIZES = (10_000, 100_000)
FULL_SIZES = (10_000, 100_000, 1_000_000)
HEADLINE_SIZE = 100_000  # the size compared with raw (the largest size if fewer)
BREAKDOWN_TXNS = 10_000  # validate and plan timed alone on this many, to split the cost
BREAKDOWN_REPEATS = 3  # the pure steps are timed this often; the quickest counts
# A size is posted several times (fresh books each) and the run with the median time counts,
# so a ratio does not hang on one noisy run (disk flushes of other work on the machine): as
# many runs as fit in REPEAT_BUDGET_TXNS transactions, at most REPEATS_MAX. The raw insert is
# short, so it always gets REPEATS_MAX.
REPEAT_BUDGET_TXNS = 300_000
REPEATS_MAX = 3
TERMINALS = 100
TXNS_PER_CARD = 10
CARDS_MAX = 20_000
REFUND_EVERY = 100  # one transaction in REFUND_EVERY refunds the last gift card purchase
PROGRAMS = ("gift", "prepaid", "loyalty")
ISSUE_VALUE_MINOR = 10**9
ENGINES = ("sqlite", "postgresql")
PG_ADMIN_DSN_ENV = "TILLTAP_BENCH_PG_DSN"
PG_DEFAULT_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_CONNECT_TIMEOUT_S = 3
RAW_TABLE = ("CREATE TABLE entries (txn_id TEXT NOT NULL, account_kind TEXT NOT NULL,"
             " owner TEXT NOT NULL, unit TEXT NOT NULL, amount_minor BIGINT NOT NULL)")


# -- workload -------------------------------------------------------------------------------
class Workload:
    """Settlement batches as a gateway sends them: cards issued first, then a steady mix."""

    def __init__(self, count: int, now_s: int | None = None) -> None:
        self.count = count
        self.now_s = int(time.time()) if now_s is None else now_s
        self.cards = [f"C{index:06d}" for index in range(min(max(count // TXNS_PER_CARD, 3),
                                                               CARDS_MAX))]
        self._seq = dict.fromkeys((f"T{index:04d}" for index in range(1, TERMINALS + 1)), 0)
        self._terminals = list(self._seq)
        self._last_gift: dict[str, Any] | None = None
        self._made = 0

    def batches(self) -> Iterator[dict[str, Any]]:
        """The documents to post, in order, each of at most BATCH_TXN_MAX transactions."""
        number = 0
        while self._made < self.count:
            number += 1
            size = min(BATCH_TXN_MAX, self.count - self._made)
            yield {"batch_id": f"bench-{number:06d}", "gateway_id": "bench",
                   "created": self.now_s, "transactions": [self._next() for _ in range(size)]}

    def _next(self) -> dict[str, Any]:
        index = self._made
        self._made += 1
        terminal = self._terminals[index % TERMINALS]
        self._seq[terminal] += 1
        document = {"txn_id": f"{terminal}-{self._seq[terminal]}", "terminal": terminal,
                    "seq": self._seq[terminal], "merchant": "M1", "time": self.now_s,
                    "currency": "EUR", "bonus_minor": 0, "points": 0, "ref_txn_id": None,
                    "program": None, "digest": f"{index:064x}", "auth": "online"}
        card = self.cards[index % len(self.cards)]
        program = PROGRAMS[(index % len(self.cards)) % len(PROGRAMS)]
        amount = 100 + (index * 7919) % 4900
        if index < len(self.cards):
            value = 0 if program == "loyalty" else ISSUE_VALUE_MINOR
            document.update(kind="issue", card=card, program=program, amount_minor=value,
                            card_value_minor=value)
        elif index % REFUND_EVERY == 0 and self._last_gift is not None:
            original, self._last_gift = self._last_gift, None
            document.update(kind="refund", card=original["card"],
                            ref_txn_id=original["txn_id"], amount_minor=original["amount_minor"],
                            card_value_minor=original["card_value_minor"])
        elif program == "gift":
            document.update(kind="purchase", card=card, amount_minor=amount,
                            card_value_minor=amount)
            self._last_gift = document
        elif program == "prepaid" and (index // len(self.cards)) % 2 == 0:
            bonus = amount * 500 // 10_000
            document.update(kind="topup", card=card, amount_minor=amount, bonus_minor=bonus,
                            card_value_minor=amount + bonus)
        elif program == "prepaid":
            document.update(kind="purchase", card=card, amount_minor=amount,
                            card_value_minor=amount)
        else:
            document.update(kind="purchase", card=card, amount_minor=amount,
                            card_value_minor=0, points=amount // 100)
        return document


def entry_rows(document: dict[str, Any]) -> list[EntryRow]:
    """The entries the ledger writes for a batch posted into empty books (its own code)."""
    return plan_batch(parse_batch(document), BooksView({}, {}, {})).entries


# -- databases --------------------------------------------------------------------------------
def postgres_admin_dsn() -> str:
    return os.environ.get(PG_ADMIN_DSN_ENV, PG_DEFAULT_ADMIN_DSN)


def postgres_problem() -> str | None:
    """None if the PostgreSQL admin DSN answers, else why not (for the skip note)."""
    try:
        import psycopg
    except ImportError:
        return "psycopg 3 is not installed (pip install 'psycopg[binary]')"
    try:
        with psycopg.connect(postgres_admin_dsn(), autocommit=True,
                             connect_timeout=PG_CONNECT_TIMEOUT_S) as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as error:
        return f"{type(error).__name__}: {str(error).strip()}"
    return None


@contextmanager
def fresh_database(engine: str) -> Iterator[str]:
    """The DSN of a new, empty database of `engine`, removed afterwards."""
    if engine == "sqlite":
        with tempfile.TemporaryDirectory(prefix="tilltap-bench-") as tmp:
            yield f"sqlite:///{Path(tmp) / 'ledger.db'}"
        return
    import psycopg

    admin = postgres_admin_dsn()
    name = f"tilltap_bench_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True, connect_timeout=PG_CONNECT_TIMEOUT_S) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(admin)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin, autocommit=True, connect_timeout=PG_CONNECT_TIMEOUT_S) as c:
            c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# -- runs -------------------------------------------------------------------------------------
def ledger_seconds(engine: str, count: int) -> list[float]:
    """Seconds to post each batch of `count` transactions (BATCH_TXN_MAX at most per batch),
    one after the other into the same fresh books."""
    seconds = []
    with fresh_database(engine) as dsn:
        books = open_books(dsn)
        try:
            for document in Workload(count).batches():
                gc.collect()  # earlier garbage is not this batch's cost
                started = time.perf_counter()
                result = books.post_batch(document)
                seconds.append(time.perf_counter() - started)
                assert result.posted == len(document["transactions"]), result
        finally:
            books.close()
    return seconds


def raw_seconds(engine: str, count: int) -> float:
    """Seconds to bulk-insert the same entry rows into a bare table, one transaction per
    batch; the median of REPEATS_MAX runs, each into a fresh database."""
    insert = _raw_sqlite if engine == "sqlite" else _raw_postgres
    rows = [entry_rows(document) for document in Workload(count).batches()]
    runs = []
    for _ in range(REPEATS_MAX):
        with fresh_database(engine) as dsn:
            runs.append(sum(insert(dsn, batch_rows) for batch_rows in rows))
    return sorted(runs)[len(runs) // 2]


def _raw_sqlite(dsn: str, rows: list[EntryRow]) -> float:
    connection = sqlite3.connect(dsn.removeprefix("sqlite://"), isolation_level=None)
    try:
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute(RAW_TABLE.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS"))
        marks = ",".join("?" * len(ENTRY_COLUMNS))
        gc.collect()
        started = time.perf_counter()
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(
            f"INSERT INTO entries ({','.join(ENTRY_COLUMNS)}) VALUES ({marks})", rows)
        connection.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        connection.close()


def _raw_postgres(dsn: str, rows: list[EntryRow]) -> float:
    import psycopg

    with psycopg.connect(dsn, autocommit=True, connect_timeout=PG_CONNECT_TIMEOUT_S) as c:
        c.execute(RAW_TABLE.replace("CREATE TABLE", "CREATE TABLE IF NOT EXISTS"))
        gc.collect()
        started = time.perf_counter()
        with c.transaction(), c.cursor() as cursor, cursor.copy(
                f"COPY entries ({','.join(ENTRY_COLUMNS)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return time.perf_counter() - started


@dataclass(frozen=True)
class Breakdown:
    """Microseconds per transaction of the ledger's pure steps, timed alone."""

    validate_us: float
    plan_us: float


def breakdown(count: int = BREAKDOWN_TXNS) -> Breakdown:
    """Validate (with hashing) and plan timed alone, the quickest of BREAKDOWN_REPEATS."""
    document = next(Workload(count).batches())
    validate_s, plan_s = [], []
    for _ in range(BREAKDOWN_REPEATS):
        gc.collect()
        started = time.perf_counter()
        batch = parse_batch(document)
        validated = time.perf_counter()
        plan_batch(batch, BooksView({}, {}, {}))
        validate_s.append(validated - started)
        plan_s.append(time.perf_counter() - validated)
    return Breakdown(min(validate_s) / count * 1e6, min(plan_s) / count * 1e6)


def median_ledger_seconds(engine: str, count: int) -> list[float]:
    """ledger_seconds of the run with the median total, of as many runs as the budget allows."""
    repeats = max(1, min(REPEATS_MAX, REPEAT_BUDGET_TXNS // count))
    runs = sorted((ledger_seconds(engine, count) for _ in range(repeats)), key=sum)
    return runs[len(runs) // 2]


# -- the section --------------------------------------------------------------------------------
def measure(quick: bool) -> Section:
    return measure_sizes(QUICK_SIZES if quick else FULL_SIZES)


def measure_sizes(sizes: Sequence[int], engines: Sequence[str] = ENGINES,
                  breakdown_txns: int = BREAKDOWN_TXNS) -> Section:
    section = Section("settlement")
    headline = max((s for s in sizes if s <= HEADLINE_SIZE), default=max(sizes))
    split = breakdown(min(breakdown_txns, headline))
    for engine in engines:
        if engine == "postgresql":
            problem = postgres_problem()
            if problem is not None:
                section.notes.append(f"PostgreSQL at {urlsplit(postgres_admin_dsn()).netloc}"
                                     f" does not answer ({problem}): skipped; set"
                                     f" {PG_ADMIN_DSN_ENV} to an admin URL")
                continue
        _measure_engine(section, engine, sizes, headline, split)
    return section


def _measure_engine(section: Section, engine: str, sizes: Sequence[int], headline: int,
                    split: Breakdown) -> None:
    batches = {size: median_ledger_seconds(engine, size) for size in sorted(sizes)}
    seconds = {size: sum(batch_seconds) for size, batch_seconds in batches.items()}
    raw_s = raw_seconds(engine, headline)

    def per_txn_us(size: int) -> float:
        return seconds[size] / size * 1e6

    section.metrics.append(Metric.against(f"settle.{engine}.post_rate",
                                          headline / seconds[headline], headline / raw_s,
                                          "txn/s", headline))
    smallest = min(sizes)
    for size in sorted(sizes):
        section.metrics.append(Metric.against(
            f"settle.{engine}.post_us_per_txn@{size_label(size)}", per_txn_us(size),
            None if size == smallest else per_txn_us(smallest), "us/txn", size))
    post_us, raw_us = per_txn_us(headline), raw_s / headline * 1e6
    sql_us = max(post_us - split.validate_us - split.plan_us, 0.0)
    raw_kind = "COPY" if engine == "postgresql" else "executemany"
    section.notes.append(
        f"where the time goes ({engine}, {headline:,} transactions): posting takes"
        f" {post_us:.1f} us per transaction = validate + hash {split.validate_us:.1f}"
        f" + plan {split.plan_us:.1f} + SQL {sql_us:.1f} (batch, transactions, entries and"
        f" cards rows, the entries index); the raw {raw_kind} of the same entry rows takes"
        f" {raw_us:.1f} us")
    largest = max(sizes)
    if len(batches[largest]) > 1:
        section.notes.append(
            f"{engine}, {largest:,} transactions posted as {len(batches[largest])} batches into"
            " the same books, us per transaction batch by batch (the books grow): "
            + ", ".join(f"{s / min(BATCH_TXN_MAX, largest - i * BATCH_TXN_MAX) * 1e6:.1f}"
                        for i, s in enumerate(batches[largest])))
