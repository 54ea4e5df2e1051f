"""The ledger API's per-request cost (issue 19 item 3): a card look-up over a kept-alive
connection against one raw `SELECT` round trip through psycopg, in the same run.

One ledger server process (`python -m ledger.server`, as `tilltap ledger serve` runs it) on
a fresh PostgreSQL database with one opened card; this process asks it one request at a
time through `ledger/client.py` (a kept-alive connection, as a gateway asks), after a warm-up:

    health          GET /v1/health: the HTTP path and one trivial query (the floor)
    reader look-up  GET /v1/cards/<card> by a reader login: the card's balance, block, last
                    stores, feed position, transactions, SUN counter and engine state, read in
                    one read transaction
    gateway look-up the same by the card's gateway: it also notes that the gateway serves the
                    card (a write, committed first) and adds the counter's greeting

Baseline: `SELECT * FROM cards WHERE card = %s` on a kept psycopg connection (autocommit),
one at a time: the least one round trip to the database costs from Python. The goal of
issue 19 is a look-up's p50 within 2x of it (`tools/bench/run.py`).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ledger.auth import dump_logins, new_login
from ledger.client import LedgerClient
from tools.bench.central_auth import (
    gateway_id,
    opening_batch,
    own_card,
    percentile,
    start_ledger,
)
from tools.bench.run import Metric, Section
from tools.bench.settlement import (
    PG_ADMIN_DSN_ENV,
    fresh_database,
    postgres_admin_dsn,
    postgres_problem,
)

FULL_REQUESTS = 3000
QUICK_REQUESTS = 600
WARMUP_REQUESTS = 200
READER = "bench-reader"


def timed(call: Callable[[], Any], count: int) -> list[float]:
    """Milliseconds of each of `count` calls, one after the other, after a warm-up."""
    for _ in range(WARMUP_REQUESTS):
        call()
    times = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times


def write_logins(workdir: Path) -> tuple[Path, dict[int, str], str]:
    """The card's gateway login (tokens[0], as central_auth's) and a reader's token."""
    name = gateway_id(0)
    gateway, gateway_token = new_login(name, "gateway", name, (f"{name}T*",), ("M1",))
    reader, reader_token = new_login(READER, "reader")
    logins_file = workdir / "logins.json"
    logins_file.write_text(dump_logins({name: gateway, READER: reader}))
    return logins_file, {0: gateway_token}, reader_token


def measure(quick: bool) -> Section:
    return measure_requests(QUICK_REQUESTS if quick else FULL_REQUESTS)


def measure_requests(count: int) -> Section:
    section = Section("ledger API")
    problem = postgres_problem()
    if problem is not None:
        section.notes.append(f"PostgreSQL at {urlsplit(postgres_admin_dsn()).netloc} does not"
                             f" answer ({problem}): skipped; set {PG_ADMIN_DSN_ENV}")
        return section
    import psycopg

    card = own_card(0, 0)
    with fresh_database("postgresql") as dsn, \
            tempfile.TemporaryDirectory(prefix="tilltap-bench-api-") as tmp:
        logins_file, tokens, reader_token = write_logins(Path(tmp))
        ledger = start_ledger(dsn, logins_file, tokens, Path(tmp), "ledger-api")
        try:
            gateway = LedgerClient(ledger.url, token=tokens[0])
            gateway.post_batch(opening_batch(0, 1, int(time.time())))
            reader = LedgerClient(ledger.url, token=reader_token)
            health = timed(reader.health, count)
            reader_lookup = timed(lambda: reader.card(card), count)
            gateway_lookup = timed(lambda: gateway.card(card), count)
            gateway.close()
            reader.close()
        finally:
            ledger.stop()
        with psycopg.connect(dsn, autocommit=True) as connection:
            raw = timed(lambda: connection.execute(
                "SELECT * FROM cards WHERE card = %s", (card,)).fetchone(), count)
    raw_p50, raw_p99 = percentile(raw, 0.5), percentile(raw, 0.99)
    for name, times in (("health", health), ("card_lookup_reader", reader_lookup),
                        ("card_lookup_gateway", gateway_lookup)):
        section.metrics.append(Metric.against(f"ledger_api.{name}_p50_ms",
                                              percentile(times, 0.5), raw_p50, "ms", count))
        section.metrics.append(Metric.against(f"ledger_api.{name}_p99_ms",
                                              percentile(times, 0.99), raw_p99, "ms", count))
    section.notes.append(
        f"one request at a time on a kept-alive connection to one ledger process"
        f" (http.server, a thread per connection) on PostgreSQL; baseline: one single-row"
        f" SELECT through psycopg, p50 {raw_p50:.3g} ms. A look-up reads seven parts of the"
        f" card in one read transaction (a gateway's also writes that it serves the card and"
        f" reads the customer's greeting): its cost over health is those round trips.")
    return section
