"""The card feed at chain scale: many stores' gateways reading it while the chain posts.

Every gateway reads the ledger's card feed (GET /v1/changes?for=, ledger/feed_sql.py) every
`--feed-poll-s` to learn what other stores did with the cards it serves: the feed is
filtered at the ledger to those (unfiltered, every read returned every change of the chain,
and the ledger's cost grew with stores x changes).

    ledger:   one `python -m ledger.server` process on a fresh PostgreSQL database (the
              central_auth section's), POSTING_GATEWAYS + READER_LOGINS gateway logins
    posting:  POSTING_GATEWAYS threads, each posting a small batch every POST_EVERY_S (as
              gateways with `--post-within-s` do), together CHAIN_TXNS_PER_S purchases on
              their own cards: the peak of a chain of 1,000 stores with 3 tills, one card
              sale per till per minute
    reading:  S simulated stores, each with its own cursor (started at "end", as a new
              gateway starts) and CARDS_SERVED_PER_STORE of the chain's cards it serves
              (so each card is served by S x CARDS_SERVED_PER_STORE / the chain's cards
              stores: 10 of 1,000; with fewer stores each serves more, so every card is
              served somewhere), each due every P seconds on a fixed schedule, served by
              READER_THREADS threads with a kept-alive connection each (a reader login
              each, naming the store it reads for)
    baseline: the same reads (same cursors, same schedule) through `Books.card_changes`
              in this process, the call GET /v1/changes makes: the feed's SQL through the
              ledger's connection pool, so the ratio is the HTTP server and JSON on top

For (S, P) in LEVELS. Reported per level: reads/s done against asked (a ledger that cannot
keep up falls behind its schedule and does fewer), read latency p50/p99 timed from when each
read was due (a read that waits for a busy thread counts its wait), rows per read, and the
feed's lag: from the end of the batch post that made a change to the read that saw it.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ledger.auth import dump_logins, new_login, parse_logins
from ledger.books import Books, open_books
from ledger.client import LedgerClient
from ledger.errors import LedgerError
from ledger.feed_sql import parse_cursor
from tools.bench.central_auth import (
    LedgerProcess,
    gateway_id,
    own_card,
    percentile,
    start_ledger,
    txn,
    write_logins,
)
from tools.bench.run import Metric, Section
from tools.bench.settlement import (
    PG_ADMIN_DSN_ENV,
    fresh_database,
    postgres_admin_dsn,
    postgres_problem,
)

LEVELS = ((100, 1.0), (1000, 5.0), (1000, 1.0))
"""(stores, seconds between each store's reads): a region at `--feed-poll-s 1`, the chain at
the 5 s docs/deployment.md advises for it, and the chain at 1 s (asks 1,000 reads/s)."""
FULL_MEASURE_S = 20.0
QUICK_MEASURE_S = 10.0
"""How long reads are timed at each level (at least two rounds of every store's reads)."""
CHAIN_TXNS_PER_S = 50
"""1,000 stores x 3 tills x one card sale a minute."""
POSTING_GATEWAYS = 10
POST_EVERY_S = 1.0
CARDS_PER_POSTER = 20
READER_THREADS = 16
READER_LOGINS = READER_THREADS
CARD_VALUE_MINOR = 10**11
CARDS_SERVED_PER_STORE = 2
"""Of the chain's POSTING_GATEWAYS x CARDS_PER_POSTER cards in use, those each store serves
(its customers' cards that are also used elsewhere)."""


def reader_token(tokens: dict[int, str], thread: int) -> str:
    """The login of reader thread `thread`: the logins after the posters'."""
    return tokens[POSTING_GATEWAYS + thread % READER_LOGINS]


def store_id(store: int) -> str:
    return f"s{store:04d}"


def served_cards(store: int, stores: int) -> list[str]:
    """The chain's cards `store` serves: CARDS_SERVED_PER_STORE in a row, round the chain (or
    more, when there are too few stores for every card to be served by one)."""
    chain = [own_card(poster, index) for poster in range(POSTING_GATEWAYS)
             for index in range(CARDS_PER_POSTER)]
    count = max(CARDS_SERVED_PER_STORE, -(-len(chain) // stores))
    return [chain[(store * count + offset) % len(chain)] for offset in range(count)]


def write_feed_logins(workdir: Path) -> tuple[Path, dict[int, str]]:
    """The posters' gateway logins (write_logins) and READER_LOGINS reader logins after them:
    a reader may read any store's filtered feed (GET /v1/changes?for=)."""
    logins_file, tokens = write_logins(POSTING_GATEWAYS, workdir)
    logins = parse_logins(json.loads(logins_file.read_text()))
    for number in range(POSTING_GATEWAYS, POSTING_GATEWAYS + READER_LOGINS):
        login, tokens[number] = new_login(f"reader{number}", "reader")
        logins[login.name] = login
    logins_file.write_text(dump_logins(logins))
    return logins_file, tokens


@dataclass
class Posting:
    """What the posters did: when each of their transactions was known posted."""

    posted_at: dict[str, float] = field(default_factory=dict)
    failures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def open_cards(url: str, tokens: dict[int, str], now_s: int) -> None:
    for poster in range(POSTING_GATEWAYS):
        transactions = [txn(poster, index + 1, "issue", own_card(poster, index),
                            CARD_VALUE_MINOR, now_s) for index in range(CARDS_PER_POSTER)]
        LedgerClient(url, token=tokens[poster]).post_batch(
            {"batch_id": f"{gateway_id(poster)}-open", "gateway_id": gateway_id(poster),
             "created": now_s, "transactions": transactions})


def post_steadily(url: str, tokens: dict[int, str], now_s: int, stop: threading.Event,
                  posting: Posting) -> list[threading.Thread]:
    """Start the posters: CHAIN_TXNS_PER_S purchases in all, a batch per poster each
    POST_EVERY_S."""
    per_batch = max(1, round(CHAIN_TXNS_PER_S * POST_EVERY_S / POSTING_GATEWAYS))

    def poster(number: int) -> None:
        name = gateway_id(number)
        client = LedgerClient(url, token=tokens[number])
        seq, batch = CARDS_PER_POSTER, 0
        due = time.monotonic() + POST_EVERY_S * number / POSTING_GATEWAYS
        while not stop.is_set():
            pause = due - time.monotonic()
            if pause > 0 and stop.wait(pause):
                break
            due += POST_EVERY_S
            batch += 1
            transactions = []
            for _ in range(per_batch):
                seq += 1
                card = own_card(number, seq % CARDS_PER_POSTER)
                transactions.append(txn(number, seq, "purchase", card, 100 + seq % 900, now_s))
            try:
                client.post_batch({"batch_id": f"{name}-b{batch:06d}", "gateway_id": name,
                                   "created": now_s, "transactions": transactions})
            except LedgerError:
                with posting.lock:
                    posting.failures += 1
                continue
            done = time.monotonic()
            with posting.lock:
                for document in transactions:
                    posting.posted_at[document["txn_id"]] = done

    threads = [threading.Thread(target=poster, args=(n,), daemon=True)
               for n in range(POSTING_GATEWAYS)]
    for thread in threads:
        thread.start()
    return threads


@dataclass
class ReadRun:
    """What the simulated stores saw in one phase."""

    asked: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    rows: int = 0
    lags_ms: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def reads_per_s(self) -> float:
        return len(self.latencies_ms) / self.seconds


Reader = Callable[[int, str], dict[str, Any]]
"""One store's feed read from a cursor: {"changes": [...], "next": cursor}."""


def read_on_schedule(make_reader: Callable[[int], Reader], start_cursor: str, stores: int,
                     poll_s: float, measure_s: float, posting: Posting | None) -> ReadRun:
    """`stores` cursors, each read every `poll_s` from its own start offset, by
    READER_THREADS threads (thread t serves stores t, t + T, ...), for `measure_s` seconds."""
    rounds = max(1, int(measure_s / poll_s))
    run = ReadRun(asked=stores * rounds, seconds=measure_s)
    lock = threading.Lock()
    begun = time.monotonic() + 0.2

    def thread_loop(thread: int) -> None:
        read = make_reader(thread)
        mine = list(range(thread, stores, READER_THREADS))
        cursors = {store: start_cursor for store in mine}
        schedule = sorted((begun + poll_s * (store / stores) + poll_s * round_, store)
                          for store in mine for round_ in range(rounds))
        latencies: list[float] = []
        lags: list[float] = []
        failed: dict[str, int] = {}
        rows = 0
        for due, store in schedule:
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            try:
                answer = read(store, cursors[store])
            except LedgerError as error:
                failed[error.reason] = failed.get(error.reason, 0) + 1
                continue
            seen = time.monotonic()
            latencies.append((seen - due) * 1000)
            cursors[store] = answer["next"]
            rows += len(answer["changes"])
            if posting is not None:
                with posting.lock:
                    posted = [posting.posted_at.get(c["txn_id"]) for c in answer["changes"]]
                lags += [max(0.0, seen - at) * 1000 for at in posted if at is not None]
        with lock:
            run.latencies_ms += latencies
            run.lags_ms += lags
            run.rows += rows
            for reason, count in failed.items():
                run.failures[reason] = run.failures.get(reason, 0) + count

    threads = [threading.Thread(target=thread_loop, args=(t,))
               for t in range(min(READER_THREADS, stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run.seconds = max(measure_s, time.monotonic() - begun)
    return run


def http_reader(url: str, tokens: dict[int, str]) -> Callable[[int], Reader]:
    def make(thread: int) -> Reader:
        client = LedgerClient(url, token=reader_token(tokens, thread))
        return lambda store, cursor: client.card_changes(cursor, serving=store_id(store))
    return make


def books_reader(books: Books) -> Callable[[int], Reader]:
    """Readers calling the same `Books.card_changes` the server's GET /v1/changes calls, in
    this process: the feed's SQL through the ledger's pool, without HTTP and JSON."""
    def make(thread: int) -> Reader:
        def read(store: int, cursor: str) -> dict[str, Any]:
            parsed = parse_cursor(cursor)
            assert parsed is not None, cursor  # the cursors are the feed's own
            return books.card_changes(parsed, served_by=store_id(store))
        return read
    return make


@dataclass
class LevelResult:
    stores: int
    poll_s: float
    http: ReadRun
    direct: ReadRun
    posted: int
    post_failures: int


def measure_level(stores: int, poll_s: float, measure_s: float) -> LevelResult:
    now_s = int(time.time())
    with fresh_database("postgresql") as dsn, \
            tempfile.TemporaryDirectory(prefix="tilltap-bench-feed-") as tmp:
        logins_file, tokens = write_feed_logins(Path(tmp))
        ledger: LedgerProcess = start_ledger(dsn, logins_file, tokens, Path(tmp), "ledger")
        try:
            open_cards(ledger.url, tokens, now_s)
            books = open_books(dsn)
            try:
                for store in range(stores):  # as each store's look-ups would have noted
                    books.serve(store_id(store), served_cards(store, stores))
            finally:
                books.close()
            first = LedgerClient(ledger.url, token=reader_token(tokens, 0))
            stop, posting = threading.Event(), Posting()
            posters = post_steadily(ledger.url, tokens, now_s, stop, posting)
            try:
                time.sleep(POST_EVERY_S)
                # Each phase starts at the feed's end then, as a new gateway does.
                http = read_on_schedule(http_reader(ledger.url, tokens),
                                        first.card_changes("end")["next"], stores, poll_s,
                                        measure_s, posting)
                books = open_books(dsn)
                try:
                    direct = read_on_schedule(books_reader(books),
                                           first.card_changes("end")["next"], stores, poll_s,
                                           measure_s, None)
                finally:
                    books.close()
            finally:
                stop.set()
                for thread in posters:
                    thread.join(30)
        finally:
            ledger.stop()
    return LevelResult(stores, poll_s, http, direct, len(posting.posted_at), posting.failures)


def measure(quick: bool) -> Section:
    return measure_levels(LEVELS, QUICK_MEASURE_S if quick else FULL_MEASURE_S)


def measure_levels(levels: Sequence[tuple[int, float]], measure_s: float) -> Section:
    section = Section("card feed")
    problem = postgres_problem()
    if problem is not None:
        section.notes.append(f"PostgreSQL at {urlsplit(postgres_admin_dsn()).netloc} does not"
                             f" answer ({problem}): skipped; set {PG_ADMIN_DSN_ENV}")
        return section
    for stores, poll_s in levels:
        print(f"bench: card feed, {stores} stores reading every {poll_s:g} s ...",
              file=sys.stderr, flush=True)
        add_level(section, measure_level(stores, poll_s, measure_s))
    return section


def add_level(section: Section, result: LevelResult) -> None:
    label = f"@{result.stores}stores_{result.poll_s:g}s"
    http, direct = result.http, result.direct
    asked_per_s = result.stores / result.poll_s
    section.metrics += [
        Metric.against(f"card_feed.reads_per_s{label}", http.reads_per_s, asked_per_s,
                       "reads/s", len(http.latencies_ms)),
        Metric.against(f"card_feed.read_p50_ms{label}", percentile(http.latencies_ms, 0.5),
                       percentile(direct.latencies_ms, 0.5), "ms", len(http.latencies_ms)),
        Metric.against(f"card_feed.read_p99_ms{label}", percentile(http.latencies_ms, 0.99),
                       percentile(direct.latencies_ms, 0.99), "ms", len(http.latencies_ms)),
        Metric.against(f"card_feed.lag_p99_ms{label}", percentile(http.lags_ms, 0.99), None,
                       "ms", len(http.lags_ms)),
    ]
    rows_per_read = http.rows / max(1, len(http.latencies_ms))
    section.notes.append(
        f"{result.stores} stores each reading every {result.poll_s:g} s ({asked_per_s:.3g} reads/s"
        f" asked) while {POSTING_GATEWAYS} gateways post {CHAIN_TXNS_PER_S} transactions/s"
        f" ({result.posted} posted, {result.post_failures} batches refused): {rows_per_read:.3g}"
        f" changes per read, {http.rows / http.seconds:,.0f} changes/s served; lag p50"
        f" {percentile(http.lags_ms, 0.5):.3g} ms; baseline: the same reads through Books"
        f" ({direct.reads_per_s:.3g} reads/s)")
    if http.failures or direct.failures:
        section.notes.append(f"{label}: reads refused {http.failures} (direct {direct.failures})")
