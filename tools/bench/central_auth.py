"""Central authorization: holds placed at the ledger by concurrent gateways while batches post.

    ledger:   two `python -m ledger.server` processes on one fresh PostgreSQL database,
              one taking the holds and one the batches (gateways run with
              `--ledger-hold-url`; the batch one at BATCH_LEDGER_NICENESS), with one
              gateway login per gateway (the deployment's logins, over loopback); the
              same with one process taking both is measured at ONE_LEDGER_GATEWAYS for
              comparison ("_one_ledger" metrics)
    holds:    G gateways (threads of this process), each with its own `LedgerClient` and
              token, placing holds one after the other as its authorize stage does
              (`POST /v1/holds`, to the hold process), mostly on its own cards and one in
              SHARED_HOLD_EVERY on a card it shares with its neighbour gateway (a card used
              in two stores)
    batches:  G settlement posters (threads of a child process, so building and encoding
              batches costs the ledgers' processes nothing), one per gateway and under its
              login, each posting batches of BATCH_TXNS purchases and top-ups back to back
              (to the batch process): on its own cards, and SHARED_TXNS_PER_BATCH on the two
              shared cards it uses
    baseline: the same G gateways placing holds on the idle ledger, just before the batches

for G in GATEWAY_COUNTS. Holds live HOLD_TTL_S and expire (the ledger's sweep marks them), so
the cards never run out of value and the open holds per card stay few, as when a gateway's
sales settle. A refused or unanswered hold is counted (a note), never timed. Latency is the
client's: from the call to the decoded answer (a new TCP connection each, as the gateway's
urllib client makes).

PostgreSQL is the server settlement's bench uses (TILLTAP_BENCH_PG_DSN, else
postgres@127.0.0.1:5432); without one the section is skipped with a note.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ledger.auth import Login, dump_logins, new_login
from ledger.client import LedgerClient
from ledger.errors import LedgerError
from tools.bench.run import Metric, Section
from tools.bench.settlement import (
    PG_ADMIN_DSN_ENV,
    fresh_database,
    postgres_admin_dsn,
    postgres_problem,
)

GATEWAY_COUNTS = (1, 4, 16)
ONE_LEDGER_GATEWAYS = (16,)
"""Levels also measured with holds and batches on one ledger process (the deployment before
`--ledger-hold-url`), so the table shows what the split buys in the same run."""
FULL_MEASURE_S = 10.0
QUICK_MEASURE_S = 3.0
"""How long holds are timed in each phase (idle, then while batches post)."""
BATCH_WARMUP_S = 1.0
"""Batches post this long before holds are timed, so every poster is inside a batch."""
CARDS_PER_GATEWAY = 50
HOLDS_PER_GATEWAY_PER_S = 10
"""Paced phases: holds each gateway places per second (a busy store's authorizations)."""
SHARED_HOLD_EVERY = 50
"""One hold in this many is on a card the gateway shares with its neighbour."""
BATCH_TXNS = 200
"""Transactions per settlement batch: five minutes of a busy store."""
SHARED_TXNS_PER_BATCH = 2
CARD_VALUE_MINOR = 10**11
"""Value on every card: far more than a run's holds and purchases take."""
HOLD_TTL_S = 2
"""Life of a bench hold: short, so each card's open holds stay few (the sweep expires them)."""
BATCH_LEDGER_NICENESS = 10
"""The batch ledger runs this much below the hold ledger's CPU priority (`nice -n 10`, as
docs/ledger.md advises when both share a machine): batches can wait, a customer cannot."""
SERVER_START_TIMEOUT_S = 30.0
POSTERS_STOP_TIMEOUT_S = 120.0
"""How long the batch posters may take to finish the batch each is in when told to stop."""
P99_GOAL_MS = 50.0
GOAL_GATEWAYS = 16
MERCHANT = "M1"


def gateway_id(number: int) -> str:
    return f"g{number:02d}"


def own_card(gateway: int, index: int) -> str:
    return f"{gateway_id(gateway)}-C{index:03d}"


def shared_card(gateway: int) -> str:
    """The card gateway `gateway` shares with gateway `gateway + 1` (a ring)."""
    return f"S{gateway:02d}"


def shared_cards(gateway: int, gateways: int) -> tuple[str, str]:
    """The two shared cards a gateway uses: its own ring card and its neighbour's."""
    return shared_card(gateway), shared_card((gateway - 1) % gateways)


def terminal_of(gateway: int) -> str:
    return f"{gateway_id(gateway)}T1"


# -- the ledger process -----------------------------------------------------------------------
@dataclass
class LedgerProcess:
    """`python -m ledger.server` with its logins; `stop()` ends it by its pid."""

    process: subprocess.Popen[str]
    url: str
    tokens: dict[int, str]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def write_logins(gateways: int, workdir: Path) -> tuple[Path, dict[int, str]]:
    """One gateway login per gateway in a logins file; their tokens by gateway number."""
    logins: dict[str, Login] = {}
    tokens: dict[int, str] = {}
    for number in range(gateways):
        name = gateway_id(number)
        login, token = new_login(name, "gateway", name, (f"{name}T*",), (MERCHANT,))
        logins[name], tokens[number] = login, token
    logins_file = workdir / "logins.json"
    logins_file.write_text(dump_logins(logins))
    return logins_file, tokens


def start_ledger(dsn: str, logins_file: Path, tokens: dict[int, str], workdir: Path,
                 name: str, niceness: int = 0) -> LedgerProcess:
    """Start one ledger server process on the books at `dsn` with the logins file, `niceness`
    below the usual CPU priority."""
    log_path = workdir / f"{name}.log"
    log_file = log_path.open("w")
    lowered = ["nice", "-n", str(niceness)] if niceness else []
    process = subprocess.Popen(
        [*lowered, sys.executable, "-m", "ledger.server", "--dsn", dsn, "--port", "0",
         "--logins", str(logins_file)],
        stdout=subprocess.PIPE, stderr=log_file, text=True, env=dict(os.environ))
    log_file.close()
    assert process.stdout is not None
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    url = process.stdout.readline().strip()
    if not url.startswith("http") or time.monotonic() > deadline:
        process.kill()
        raise RuntimeError(f"the ledger did not start: {log_path.read_text()}")
    return LedgerProcess(process, url, tokens)


# -- workload -----------------------------------------------------------------------------------
def txn(gateway: int, seq: int, kind: str, card: str, amount_minor: int,
        now_s: int) -> dict[str, Any]:
    terminal = terminal_of(gateway)
    bonus = 0
    return {"txn_id": f"{terminal}-{seq}", "terminal": terminal, "seq": seq,
            "merchant": MERCHANT, "time": now_s, "kind": kind, "card": card,
            "currency": "EUR", "amount_minor": amount_minor,
            "card_value_minor": amount_minor + bonus, "bonus_minor": bonus, "points": 0,
            "ref_txn_id": None, "program": "prepaid" if kind == "issue" else None,
            "digest": f"{gateway:08x}{seq:056x}", "auth": "online"}


def opening_batch(gateway: int, gateways: int, now_s: int) -> dict[str, Any]:
    """Issue the gateway's own cards and the ring card it is home to."""
    cards = [own_card(gateway, index) for index in range(CARDS_PER_GATEWAY)]
    cards.append(shared_card(gateway))
    transactions = [txn(gateway, seq, "issue", card, CARD_VALUE_MINOR, now_s)
                    for seq, card in enumerate(cards, start=1)]
    return {"batch_id": f"{gateway_id(gateway)}-open", "gateway_id": gateway_id(gateway),
            "created": now_s, "transactions": transactions}


class BatchMaker:
    """One gateway's settlement batches: purchases and top-ups on its cards, a few shared."""

    def __init__(self, gateway: int, gateways: int, now_s: int) -> None:
        self.gateway, self.gateways, self.now_s = gateway, gateways, now_s
        self.seq = CARDS_PER_GATEWAY + 1  # after the opening batch's issues
        self.number = 0

    def next(self) -> dict[str, Any]:
        self.number += 1
        transactions = []
        shared = shared_cards(self.gateway, self.gateways)
        for index in range(BATCH_TXNS):
            self.seq += 1
            if index < SHARED_TXNS_PER_BATCH:
                card = shared[index % len(shared)]
            else:
                card = own_card(self.gateway, (self.seq * 7) % CARDS_PER_GATEWAY)
            kind = "topup" if self.seq % 4 == 0 else "purchase"
            amount = 100 + (self.seq * 7919) % 4900
            transactions.append(txn(self.gateway, self.seq, kind, card, amount, self.now_s))
        return {"batch_id": f"{gateway_id(self.gateway)}-b{self.number:06d}",
                "gateway_id": gateway_id(self.gateway), "created": self.now_s,
                "transactions": transactions}


def post_batches(url: str, tokens: dict[int, str], gateways: int, now_s: int,
                 started: EventType, stop: EventType, result: Any) -> None:
    """The child process: one poster thread per gateway until `stop`; txns posted to `result`."""
    posted = [0] * gateways
    failures = [0] * gateways
    begun = time.monotonic()

    def poster(gateway: int) -> None:
        client = LedgerClient(url, token=tokens[gateway])
        maker = BatchMaker(gateway, gateways, now_s)
        while not stop.is_set():
            document = maker.next()
            try:
                answer = client.post_batch(document)
                posted[gateway] += int(answer["posted"])
            except LedgerError:
                failures[gateway] += 1

    threads = [threading.Thread(target=poster, args=(g,), daemon=True) for g in range(gateways)]
    for thread in threads:
        thread.start()
    started.set()
    for thread in threads:
        thread.join()
    result.put((sum(posted), sum(failures), time.monotonic() - begun))


# -- holds ------------------------------------------------------------------------------------
@dataclass
class HoldRun:
    """What the hold clients saw in one phase."""

    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    shared_latencies_ms: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def holds_per_s(self) -> float:
        return len(self.latencies_ms) / self.seconds


def place_holds(url: str, tokens: dict[int, str], gateways: int, measure_s: float,
                phase: str, paced: bool) -> HoldRun:
    """G gateways placing holds for `measure_s` seconds: `paced`, each HOLDS_PER_GATEWAY_PER_S
    on a fixed schedule, timed from when each was due (a stall is counted in full by the
    holds it delayed, not hidden); else each the next as soon as the last is answered."""
    run = HoldRun(measure_s)
    lock = threading.Lock()
    begun = time.perf_counter()
    deadline = begun + measure_s
    interval_s = 1.0 / HOLDS_PER_GATEWAY_PER_S

    def gateway_loop(gateway: int) -> None:
        client = LedgerClient(url, token=tokens[gateway])
        shared = shared_cards(gateway, gateways)
        mine: list[float] = []
        mine_shared: list[float] = []
        failed: dict[str, int] = {}
        number = 0
        # Gateways start spread over one interval, as stores' customers do not tap in step.
        due = begun + interval_s * gateway / gateways
        while True:
            now = time.perf_counter()
            if paced:
                if due > now:
                    time.sleep(due - now)
                started, due = due, due + interval_s
            else:
                started = now
            if started >= deadline:
                break
            number += 1
            on_shared = number % SHARED_HOLD_EVERY == 0
            card = (shared[number % 2] if on_shared
                    else own_card(gateway, number % CARDS_PER_GATEWAY))
            try:
                client.place_hold(f"{gateway_id(gateway)}-{phase}-{number}", card, "EUR",
                                  100 + number % 900, HOLD_TTL_S, terminal_of(gateway),
                                  MERCHANT)
            except LedgerError as error:
                failed[error.reason] = failed.get(error.reason, 0) + 1
                continue
            elapsed_ms = (time.perf_counter() - started) * 1000
            (mine_shared if on_shared else mine).append(elapsed_ms)
        with lock:
            run.latencies_ms += mine + mine_shared
            run.shared_latencies_ms += mine_shared
            for reason, count in failed.items():
                run.failures[reason] = run.failures.get(reason, 0) + count

    threads = [threading.Thread(target=gateway_loop, args=(g,)) for g in range(gateways)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    run.seconds = max(measure_s, time.perf_counter() - begun)
    return run


def percentile(values: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(round(fraction * len(ordered))) - 1))]


# -- one level ----------------------------------------------------------------------------------
@dataclass
class LevelResult:
    gateways: int
    split: bool
    """Holds and batches on separate ledger processes (else one process takes both)."""
    idle: HoldRun
    idle_peak: HoldRun
    loaded: HoldRun
    loaded_peak: HoldRun
    batch_txns_per_s: float
    batch_txns: int
    batch_failures: int


def measure_level(gateways: int, measure_s: float, split: bool = True) -> LevelResult:
    """Holds paced and at their peak on the idle ledger, then the same while every gateway
    posts batches, on fresh books. `split`: holds go to one ledger process and batches to
    another on the same database, else both to one."""
    now_s = int(time.time())
    with fresh_database("postgresql") as dsn, \
            tempfile.TemporaryDirectory(prefix="tilltap-bench-central-") as tmp:
        logins_file, tokens = write_logins(gateways, Path(tmp))
        ledgers = [start_ledger(dsn, logins_file, tokens, Path(tmp), "ledger-batches",
                                BATCH_LEDGER_NICENESS if split else 0)]
        try:
            if split:
                ledgers.append(start_ledger(dsn, logins_file, tokens, Path(tmp), "ledger-holds"))
            batch_url, url = ledgers[0].url, ledgers[-1].url
            for gateway in range(gateways):
                client = LedgerClient(batch_url, token=tokens[gateway])
                client.post_batch(opening_batch(gateway, gateways, now_s))
            place_holds(url, tokens, gateways, min(measure_s, 1.0), "warm", paced=False)
            idle = place_holds(url, tokens, gateways, measure_s, "idle", paced=True)
            idle_peak = place_holds(url, tokens, gateways, measure_s, "idlepeak", paced=False)
            context = multiprocessing.get_context("spawn")
            started, stop, result = context.Event(), context.Event(), context.Queue()
            posters = context.Process(
                target=post_batches,
                args=(batch_url, tokens, gateways, now_s, started, stop, result))
            posters.start()
            try:
                started.wait(SERVER_START_TIMEOUT_S)
                time.sleep(BATCH_WARMUP_S)
                loaded = place_holds(url, tokens, gateways, measure_s, "busy", paced=True)
                loaded_peak = place_holds(url, tokens, gateways, measure_s, "busypeak",
                                          paced=False)
                stop.set()
                posted, failures, posting_s = result.get(timeout=POSTERS_STOP_TIMEOUT_S)
            finally:
                stop.set()
                posters.join(POSTERS_STOP_TIMEOUT_S)
                if posters.is_alive():
                    posters.kill()
        finally:
            for ledger in ledgers:
                ledger.stop()
    return LevelResult(gateways, split, idle, idle_peak, loaded, loaded_peak, posted / posting_s,
                       posted, failures)


# -- the section --------------------------------------------------------------------------------
def measure(quick: bool) -> Section:
    return measure_levels(GATEWAY_COUNTS, QUICK_MEASURE_S if quick else FULL_MEASURE_S,
                          ONE_LEDGER_GATEWAYS)


def measure_levels(levels: Sequence[int], measure_s: float,
                   one_ledger_levels: Sequence[int] = ()) -> Section:
    """`levels` with holds and batches on separate ledger processes, then
    `one_ledger_levels` with both on one."""
    section = Section("central authorization")
    problem = postgres_problem()
    if problem is not None:
        section.notes.append(f"PostgreSQL at {urlsplit(postgres_admin_dsn()).netloc} does not"
                             f" answer ({problem}): skipped; set {PG_ADMIN_DSN_ENV}")
        return section
    for gateways, split in [(g, True) for g in levels] + [(g, False) for g in one_ledger_levels]:
        print(f"bench: central authorization, {gateways} gateways"
              f" ({'hold and batch ledgers' if split else 'one ledger'}) ...", file=sys.stderr,
              flush=True)
        result = measure_level(gateways, measure_s, split)
        add_level(section, result)
    return section


def add_level(section: Section, result: LevelResult) -> None:
    """Per level: peak holds/s, paced p50 and p99 while batches post (baselines: the same on
    the idle ledger) and the batches' own rate."""
    label = f"@{result.gateways}gw" + ("" if result.split else "_one_ledger")
    idle, loaded = result.idle, result.loaded
    section.metrics += [
        Metric.against(f"central_auth.holds_per_s{label}", result.loaded_peak.holds_per_s,
                       result.idle_peak.holds_per_s, "holds/s",
                       len(result.loaded_peak.latencies_ms)),
        Metric.against(f"central_auth.hold_p50_ms{label}", percentile(loaded.latencies_ms, 0.5),
                       percentile(idle.latencies_ms, 0.5), "ms", len(loaded.latencies_ms)),
        Metric.against(f"central_auth.hold_p99_ms{label}",
                       percentile(loaded.latencies_ms, 0.99),
                       percentile(idle.latencies_ms, 0.99), "ms", len(loaded.latencies_ms)),
        Metric.against(f"central_auth.batch_post_rate{label}", result.batch_txns_per_s, None,
                       "txn/s", result.batch_txns),
    ]
    shared = loaded.shared_latencies_ms
    peak = result.loaded_peak.latencies_ms
    section.notes.append(
        f"{result.gateways} gateways{'' if result.split else ' on one ledger process'},"
        f" {HOLDS_PER_GATEWAY_PER_S} holds/s each"
        f" ({loaded.holds_per_s:.3g} holds/s placed) while batches of {BATCH_TXNS} post back"
        f" to back (each batch names all of its gateway's cards, so a hold waits for its own"
        f" gateway's batch in progress): holds on a card shared with a neighbour (1 in"
        f" {SHARED_HOLD_EVERY}) p50 {percentile(shared, 0.5):.3g} ms, max"
        f" {max(shared, default=0.0):.3g} ms (n {len(shared)}); at the peak (each gateway's next"
        f" hold as soon as the last is answered) p50 {percentile(peak, 0.5):.3g} ms, p99"
        f" {percentile(peak, 0.99):.3g} ms")
    failures = {**{f"idle {k}": v for k, v in idle.failures.items()},
                **{f"loaded {k}": v for k, v in loaded.failures.items()},
                **{f"peak {k}": v for k, v in result.loaded_peak.failures.items()}}
    if failures or result.batch_failures:
        section.notes.append(f"{label}: holds not placed {failures},"
                             f" batches not posted {result.batch_failures}")
