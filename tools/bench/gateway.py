"""Gateway ingest: signed transactions through a private Mosquitto, against raw paho QoS 1.

Both sides use the same shape, one process per role, so neither shares an interpreter lock
with its load (the machine has two cores):

    raw:      publisher child --QoS 1--> mosquitto --QoS 1--> subscriber (this process)
    gateway:  terminals child --QoS 1--> mosquitto --> Gateway (this process): verify,
              sequence/dedupe, rules, SQLite commit --signed acks--> mosquitto --> child

The terminals child pre-builds every terminal's sealed, chained records before the clock
starts, publishes them round-robin over one MQTT 3.1.1 connection with at most WINDOW_RECORDS
not yet acknowledged, and stops the clock at the ack that covers the last record (acks are
verified with each terminal's key). The raw publisher sends payloads of the same mean size
on the same topics with at most WINDOW_RECORDS without a PUBACK; its clock stops at the
subscriber's last message. Both clocks are CLOCK_MONOTONIC, shared by all processes.

Also measured: CPU per transaction of each process, each gateway stage alone (one thread,
no MQTT) and a cProfile of the stages, so a missed goal says where the time goes.
"""

from __future__ import annotations

import cProfile
import gc
import math
import multiprocessing
import os
import pstats
import queue
import socket
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from gateway import authorizations
from gateway.acks import AckOut, AckStage
from gateway.cards import CardBook, record_till_amounts
from gateway.ingest import COMMIT_BATCH_MAX, IngestStage
from gateway.registry import TerminalRegistry
from gateway.service import Gateway
from gateway.stats import Stats
from gateway.store import GatewayStore
from gateway.verify import Verified, Verifier
from protocol import engine_points, messages, money, sealed, topics, txn
from tools.bench.run import Metric, Section, size_label
from tools.demo import DEMO_PROGRAMS
from tools.mosquitto import MosquittoBroker

MERCHANT = "M1"
TERMINALS = 100
WINDOW_RECORDS = 2_000  # published but not yet acknowledged, per publisher
QUICK_SIZES = (10_000, 100_000)
FULL_SIZES = (10_000, 100_000, 1_000_000)
HEADLINE_SIZE = 100_000  # the size compared with raw (the largest size if fewer)
QUICK_RAW_MESSAGES = 20_000
FULL_RAW_MESSAGES = 50_000
PROFILE_RECORDS = 3_000
PROFILE_TERMINALS = 10
PROFILE_TOP_FUNCTIONS = 6
PARALLEL_BUILD_MIN_RECORDS = 50_000  # below this, building in one process is quicker
ISSUE_VALUE_MINOR = 10**9
STALL_TIMEOUT_S = 30.0  # no progress this long: the run is broken, not slow
SLOWEST_RATE_PER_S = 200  # a run slower than this is broken: bounds the wait for a child
CHILD_READY_TIMEOUT_S = 300.0  # building 1M sealed records takes a while
CHILD_EXIT_TIMEOUT_S = 10.0
SUBSCRIBE_TIMEOUT_S = 10.0
SUBSCRIBE_SETTLE_S = 0.3  # the gateway subscribes in on_connect; let its SUBACK land
KEEPALIVE_S = 60

_PROGRAMS_ISSUED = ("gift", "prepaid", "loyalty")
# Each terminal's customers: this many cards of each program, taken in turn. A card carries
# its program history (sales within the refund window, points lots), so a handful of cards
# taking every sale would measure one card's history, not the gateway: real counters see
# many cards, each a few times a day. (tests/gateway covers a card with thousands of sales.)
CARDS_PER_PROGRAM = 8
_ISSUES = len(_PROGRAMS_ISSUED) * CARDS_PER_PROGRAM
_PREPAID = DEMO_PROGRAMS["prepaid"]
_LOYALTY = DEMO_PROGRAMS["loyalty"]
_NO_MULTIPLIER_BP = 10_000


class BenchError(RuntimeError):
    """A measurement could not complete (stalled, refused records, a child failed)."""


# -- workload -------------------------------------------------------------------------------
def terminal_ids(count: int) -> list[str]:
    return [f"T{index:04d}" for index in range(1, count + 1)]


def card_id(terminal: str, program: str, number: int = 0) -> str:
    return f"{terminal}-{program}{number}"


def _fields(terminal: str, index: int, now_s: int) -> dict[str, Any]:
    """The index-th transaction of a terminal: its card issues, then a steady mix."""
    fields: dict[str, Any] = {"terminal": terminal, "seq": index + 1, "time": now_s,
                              "merchant": MERCHANT, "currency": "EUR", "bonus_minor": 0,
                              "points": 0, "auth_mode": txn.AUTH_ONLINE}
    if index < _ISSUES:
        program = _PROGRAMS_ISSUED[index % len(_PROGRAMS_ISSUED)]
        holds_value = program != "loyalty"
        value = ISSUE_VALUE_MINOR if holds_value else 0
        number = index // len(_PROGRAMS_ISSUED)
        fields.update(kind=txn.KIND_ISSUE, card=card_id(terminal, program, number),
                      program=program, amount_minor=value, card_value_minor=value)
        if value:
            fields["auth_id"] = load_auth_id(terminal, index)
        return fields
    amount = 100 + (index * 7919) % 4900
    step = (index - _ISSUES) % 4
    number = ((index - _ISSUES) // 4) % CARDS_PER_PROGRAM
    if step == 0:  # a gift card pays the whole sale
        fields.update(kind=txn.KIND_PURCHASE, card=card_id(terminal, "gift", number),
                      amount_minor=amount, card_value_minor=amount)
    elif step == 1:  # a prepaid top-up with its bonus
        terms = _PREPAID["prepaid"]
        bonus = money.percent_of(amount, terms["bonus_bp"], terms["bonus_rounding"])
        fields.update(kind=txn.KIND_TOPUP, card=card_id(terminal, "prepaid", number),
                      amount_minor=amount, bonus_minor=bonus, card_value_minor=amount + bonus,
                      auth_id=load_auth_id(terminal, index))
    elif step == 2:  # a loyalty card earns points on a sale paid otherwise
        fields.update(kind=txn.KIND_PURCHASE, card=card_id(terminal, "loyalty", number),
                      amount_minor=amount, card_value_minor=0,
                      points=engine_points.earned(_LOYALTY, amount, _NO_MULTIPLIER_BP))
    else:
        fields.update(kind=txn.KIND_PURCHASE, card=card_id(terminal, "prepaid", number),
                      amount_minor=amount, card_value_minor=amount)
    return fields


def load_auth_id(terminal: str, index: int) -> str:
    return f"bench-{terminal}-{index + 1}"


def keep_load_approvals(store: GatewayStore, counts: dict[str, int], now_s: int) -> None:
    """Value is loaded only under an approval the gateway gave (gateway/cards.py): the
    approvals of the workload's issues and top-ups, kept in the store before the clock as a
    gateway keeps what it approved before a restart. Their records then take the kept
    approval's path (one read per batch), not the in-memory hold's."""
    given = []
    for terminal, count in counts.items():
        for index in range(count):
            fields = _fields(terminal, index, now_s)
            if "auth_id" in fields:
                given.append((fields["auth_id"], terminal, fields["card"],
                              record_till_amounts(fields)))
    authorizations.keep_given(store, given)


def build_chain(terminal: str, key: bytes, count: int, now_s: int) -> list[bytes]:
    """A terminal's first `count` sealed records, each naming the digest of the one before."""
    records = []
    prev = txn.GENESIS_DIGEST
    for index in range(count):
        fields = _fields(terminal, index, now_s)
        fields["prev"] = prev
        record = txn.seal(key, fields)
        prev = txn.digest(record)
        records.append(record)
    return records


def _build_chain_job(job: tuple[str, bytes, int, int]) -> list[bytes]:
    return build_chain(*job)


def build_chains(keys: dict[str, bytes], counts: dict[str, int],
                 now_s: int) -> dict[str, list[bytes]]:
    """Every terminal's records; large loads are sealed on every core (before the clock)."""
    jobs = [(terminal, keys[terminal], counts[terminal], now_s) for terminal in keys]
    if sum(counts.values()) < PARALLEL_BUILD_MIN_RECORDS or (os.cpu_count() or 1) < 2:
        return {job[0]: _build_chain_job(job) for job in jobs}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=os.cpu_count(), mp_context=context) as pool:
        return {job[0]: chain for job, chain in zip(jobs, pool.map(_build_chain_job, jobs),
                                                     strict=True)}


def split_evenly(total: int, terminals: Sequence[str]) -> dict[str, int]:
    share, extra = divmod(total, len(terminals))
    return {t: share + (1 if index < extra else 0) for index, t in enumerate(terminals)}


def round_robin(chains: dict[str, list[bytes]], leaf: str) -> list[tuple[str, bytes]]:
    """(topic, payload) in publishing order: one record of each terminal in turn."""
    queues = [(topics.up(MERCHANT, t, leaf), chain) for t, chain in chains.items()]
    longest = max((len(chain) for _, chain in queues), default=0)
    return [(topic, chain[i]) for i in range(longest) for topic, chain in queues
            if i < len(chain)]


def mean_record_bytes(sample_records: int = 40) -> int:
    chain = build_chain("T0001", bytes(32), sample_records, int(time.time()))
    return round(sum(len(r) for r in chain) / len(chain))


# -- processes and clients --------------------------------------------------------------------
@contextmanager
def child_process(target: Callable[[Connection, dict[str, Any]], None],
                  config: dict[str, Any]) -> Iterator[Connection]:
    """Run `target(connection, config)` in a fresh interpreter; yield our end of the pipe."""
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(target=_child_main, args=(target, theirs, config),
                              name=f"bench-{target.__name__.strip('_')}")
    process.start()
    theirs.close()
    try:
        yield ours
    finally:
        ours.close()
        process.join(CHILD_EXIT_TIMEOUT_S)
        if process.is_alive():
            process.terminate()
            process.join(CHILD_EXIT_TIMEOUT_S)


def _child_main(target: Callable[[Connection, dict[str, Any]], None], connection: Connection,
                config: dict[str, Any]) -> None:
    try:
        target(connection, config)
    except Exception as error:  # reported to the parent, which raises it as BenchError
        connection.send(("error", f"{type(error).__name__}: {error}\n{traceback.format_exc()}"))


def receive(connection: Connection, timeout_s: float, what: str) -> Any:
    """The child's next ("ok", body); BenchError if it failed, died or stayed silent."""
    if not connection.poll(timeout_s):
        raise BenchError(f"{what}: no answer within {timeout_s:.0f} s")
    try:
        kind, body = connection.recv()
    except EOFError:
        raise BenchError(f"{what}: the child process died") from None
    if kind != "ok":
        raise BenchError(f"{what}: {body}")
    return body


def run_timeout_s(count: int) -> float:
    return STALL_TIMEOUT_S + count / SLOWEST_RATE_PER_S


def connect(host: str, port: int, client_id: str, mqtt5: bool,
            on_message: Callable[[mqtt.Client, Any, mqtt.MQTTMessage], None] | None = None,
            subscription: str | None = None, nodelay: bool = False) -> mqtt.Client:
    """A connected paho client with its loop thread running (and subscribed, if asked).

    nodelay: turn Nagle's algorithm off on the client's socket (paho leaves it on).
    """
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         protocol=mqtt.MQTTv5 if mqtt5 else mqtt.MQTTv311)
    client.max_inflight_messages_set(WINDOW_RECORDS)
    client.max_queued_messages_set(0)
    if on_message is not None:
        client.on_message = on_message
    subscribed = threading.Event()
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect(host, port, KEEPALIVE_S)
    if nodelay:
        set_nodelay(client)
    client.loop_start()
    if subscription is not None:
        client.subscribe(subscription, qos=1)
        if not subscribed.wait(SUBSCRIBE_TIMEOUT_S):
            raise BenchError(f"no SUBACK for {subscription} from {host}:{port}")
    return client


def set_nodelay(client: mqtt.Client) -> None:
    """TCP_NODELAY on a connected client's socket: small messages leave at once."""
    sock = client.socket()
    assert isinstance(sock, socket.socket), "connect first (plain TCP)"
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def disconnect(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


class Progress:
    """A count that other threads advance, and a wait on it that fails when it stalls.

    Only a waiter's target wakes it (not every step), so a publisher waiting for its window
    to drain is woken once per refill rather than once per acknowledgement.
    """

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.done = 0
        self.last_s = time.monotonic()
        self._wake_at = math.inf

    def advance(self, n: int = 1) -> None:
        with self.condition:
            self.done += n
            self.last_s = time.monotonic()
            if self.done >= self._wake_at:
                self.condition.notify_all()

    def wait_for(self, target: int, what: str) -> None:
        """Block until done >= target; BenchError after STALL_TIMEOUT_S without progress."""
        with self.condition:
            self._wake_at = target
            try:
                while self.done < target:
                    self.condition.wait(STALL_TIMEOUT_S / 10)
                    if time.monotonic() - self.last_s > STALL_TIMEOUT_S:
                        raise BenchError(f"{what}: stalled at {self.done} of {target}")
            finally:
                self._wake_at = math.inf


def publish_windowed(client: mqtt.Client, order: Sequence[tuple[str, bytes]],
                     progress: Progress, what: str) -> float:
    """Publish QoS 1 with at most WINDOW_RECORDS beyond `progress`; return the start time.

    A full window is refilled when half of it has drained.
    """
    with progress.condition:
        progress.last_s = time.monotonic()
    started_s = time.monotonic()
    for published, (topic, payload) in enumerate(order):
        if published - progress.done >= WINDOW_RECORDS:
            progress.wait_for(published - WINDOW_RECORDS // 2, what)
        client.publish(topic, payload, qos=1)
    return started_s


class TerminalAcks:
    """The terminals' side of acknowledgements: acked_through per terminal, verified."""

    def __init__(self, keys: dict[str, bytes]) -> None:
        self.keys = keys
        self.acked_through = dict.fromkeys(keys, 0)
        self.progress = Progress()
        self.acks = 0
        self.rejected = 0
        self.notices = 0

    def on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        _, _, _, terminal, _, leaf = message.topic.split("/")
        if leaf == topics.LEAF_NOTICE:
            self.notices += 1
            return
        if leaf != topics.LEAF_ACK:
            return
        ack = sealed.open_message(bytes(message.payload), messages.TYPE_ACK, self.keys[terminal])
        self.acks += 1
        self.rejected += len(ack["rejected"])
        gained = ack["acked_through"] - self.acked_through[terminal]
        if gained > 0:
            self.acked_through[terminal] = ack["acked_through"]
            self.progress.advance(gained)


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def resident_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


# -- children ---------------------------------------------------------------------------------
def _terminals_child(connection: Connection, config: dict[str, Any]) -> None:
    """Build the terminals' records, say ready, publish on "go", report when all are acked."""
    keys: dict[str, bytes] = config["keys"]
    chains = build_chains(keys, config["counts"], config["now_s"])
    order = round_robin(chains, topics.LEAF_TXN)
    del chains
    acks = TerminalAcks(keys)
    client = connect(config["host"], config["port"], "bench-terminals", False, acks.on_message,
                     f"{topics.ROOT}/{MERCHANT}/+/{topics.DOWN}/#")
    connection.send(("ok", len(order)))
    connection.recv()  # "go"
    cpu_s = time.process_time()
    started_s = publish_windowed(client, order, acks.progress, "terminals")
    acks.progress.wait_for(len(order), "terminals waiting for acks")
    result = {"started_s": started_s, "finished_s": acks.progress.last_s,
              "cpu_s": time.process_time() - cpu_s, "acks": acks.acks,
              "rejected": acks.rejected, "notices": acks.notices}
    disconnect(client)
    connection.send(("ok", result))


def _raw_publisher_child(connection: Connection, config: dict[str, Any]) -> None:
    """Publish `messages` random payloads round-robin on the terminals' topics, QoS 1."""
    chains = {t: [os.urandom(config["payload_bytes"])] * n for t, n in config["counts"].items()}
    order = round_robin(chains, topics.LEAF_TXN)
    pubacks = Progress()
    client = connect(config["host"], config["port"], "bench-raw-publisher", False)
    client.on_publish = lambda *_: pubacks.advance()
    connection.send(("ok", len(order)))
    connection.recv()  # "go"
    cpu_s = time.process_time()
    started_s = publish_windowed(client, order, pubacks, "raw publisher")
    pubacks.wait_for(len(order), "raw publisher waiting for PUBACKs")
    result = {"started_s": started_s, "cpu_s": time.process_time() - cpu_s}
    disconnect(client)
    connection.send(("ok", result))


# -- runs -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Run:
    """One timed run: how many, how long, and the CPU each process spent on it."""

    count: int
    seconds: float
    consumer_cpu_s: float  # the gateway, or the raw subscriber (this process)
    producer_cpu_s: float  # the terminals child, or the raw publisher child
    broker_cpu_s: float
    rss_growth_bytes: int = 0
    acks: int = 0

    @property
    def rate(self) -> float:
        return self.count / self.seconds

    def per_item_us(self, cpu_s: float) -> float:
        return cpu_s / self.count * 1e6


def raw_run(count: int, payload_bytes: int, terminals: int = TERMINALS) -> Run:
    """Raw paho QoS 1: publisher child -> Mosquitto -> subscriber here; messages per second."""
    counts = split_evenly(count, terminal_ids(terminals))
    with MosquittoBroker() as broker:
        received = Progress()
        finished: list[float] = []

        def on_message(client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
            received.advance()
            if received.done == count:
                finished.append(time.monotonic())

        subscriber = connect(broker.host, broker.port, "bench-raw-subscriber", True, on_message,
                             topics.gateway_subscription(MERCHANT))
        config = {"host": broker.host, "port": broker.port, "counts": counts,
                  "payload_bytes": payload_bytes}
        try:
            with child_process(_raw_publisher_child, config) as child:
                receive(child, CHILD_READY_TIMEOUT_S, "raw publisher")
                gc.collect()
                cpu_s, broker_s = time.process_time(), process_cpu_s(_pid(broker))
                child.send("go")
                result = receive(child, run_timeout_s(count), "raw publisher")
                received.wait_for(count, "raw subscriber")
                cpu_s = time.process_time() - cpu_s
                broker_s = process_cpu_s(_pid(broker)) - broker_s
        finally:
            disconnect(subscriber)
    return Run(count, finished[0] - result["started_s"], cpu_s, result["cpu_s"], broker_s)


def ingest_run(count: int, terminals: int = TERMINALS) -> Run:
    """Signed transactions through the gateway, all acknowledged; transactions per second."""
    keys = {t: os.urandom(32) for t in terminal_ids(terminals)}
    counts = split_evenly(count, list(keys))
    registry = TerminalRegistry()
    for terminal, key in keys.items():
        registry.add(terminal, MERCHANT, key)
    with MosquittoBroker() as broker, tempfile.TemporaryDirectory(prefix="tilltap-bench-") as tmp:
        config = {"host": broker.host, "port": broker.port, "keys": keys, "counts": counts,
                  "now_s": int(time.time())}
        with child_process(_terminals_child, config) as child:
            receive(child, CHILD_READY_TIMEOUT_S, "terminals")
            prepared = GatewayStore(str(Path(tmp) / "gateway.db"))
            try:
                keep_load_approvals(prepared, counts, int(str(config["now_s"])))
            finally:
                prepared.close()
            gateway = Gateway("bench", broker.host, broker.port, str(Path(tmp) / "gateway.db"),
                              registry, DEMO_PROGRAMS)
            gateway.start()
            try:
                time.sleep(SUBSCRIBE_SETTLE_S)
                gc.collect()
                rss = resident_bytes()
                cpu_s, broker_s = time.process_time(), process_cpu_s(_pid(broker))
                child.send("go")
                result = receive(child, run_timeout_s(count), "terminals")
                cpu_s = time.process_time() - cpu_s
                broker_s = process_cpu_s(_pid(broker)) - broker_s
                rss = resident_bytes() - rss
                stats = gateway.stats.snapshot()
            finally:
                gateway.stop()
    if stats.get("accepted", 0) != count or result["rejected"] or result["notices"]:
        raise BenchError(f"the gateway did not accept every record: {stats}, terminals saw"
                         f" {result['rejected']} refusals, {result['notices']} notices")
    return Run(count, result["finished_s"] - result["started_s"], cpu_s, result["cpu_s"],
               broker_s, rss, result["acks"])


def _pid(broker: MosquittoBroker) -> int:
    assert broker.pid is not None, "the broker is running"
    return broker.pid


# -- where the time goes ------------------------------------------------------------------------
@dataclass(frozen=True)
class StageCosts:
    """CPU per transaction of each gateway stage, run alone in one thread without MQTT."""

    verify_us: float
    ingest_us: float
    ack_us: float
    top_functions: list[str]


def _run_stages(records: list[tuple[str, bytes]], registry: TerminalRegistry,
                workdir: Path, timings: dict[str, float], counts: dict[str, int],
                now_s: int) -> None:
    verifier, stats = Verifier(registry), Stats()
    store = GatewayStore(str(workdir / f"stages-{len(timings)}.db"))
    keep_load_approvals(store, counts, now_s)
    acks: queue.Queue[AckOut | None] = queue.Queue()
    ingest = IngestStage(store, CardBook(DEMO_PROGRAMS), stats, queue.Queue(), acks)
    ack_stage = AckStage(registry, lambda topic, payload: None, stats, queue.Queue())
    try:
        started = time.perf_counter()
        arrived_s = time.time()
        verified: list[Verified] = [verifier.transaction(t, p, arrived_s) for t, p in records]
        timings["verify"] = timings.get("verify", 0.0) + time.perf_counter() - started
        started = time.perf_counter()
        for first in range(0, len(verified), COMMIT_BATCH_MAX):
            ingest.process(verified[first:first + COMMIT_BATCH_MAX])
        timings["ingest"] = timings.get("ingest", 0.0) + time.perf_counter() - started
        started = time.perf_counter()
        while not acks.empty():
            out = acks.get_nowait()
            assert out is not None
            ack_stage.handle(out)
        timings["ack"] = timings.get("ack", 0.0) + time.perf_counter() - started
    finally:
        store.close()
    assert stats.snapshot().get("accepted") == len(records), stats.snapshot()


def stage_costs(count: int = PROFILE_RECORDS, terminals: int = PROFILE_TERMINALS) -> StageCosts:
    """Time verify, ingest (sequence, rules, commit) and acks alone; then cProfile them."""
    keys = {t: os.urandom(32) for t in terminal_ids(terminals)}
    registry = TerminalRegistry()
    for terminal, key in keys.items():
        registry.add(terminal, MERCHANT, key)
    counts, now_s = split_evenly(count, list(keys)), int(time.time())
    chains = build_chains(keys, counts, now_s)
    records = round_robin(chains, topics.LEAF_TXN)
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="tilltap-bench-") as tmp:
        _run_stages(records, registry, Path(tmp), timings, counts, now_s)
        profile = cProfile.Profile()
        profile.runcall(_run_stages, records, registry, Path(tmp), {"profiled": 0.0}, counts,
                        now_s)
    return StageCosts(timings["verify"] / count * 1e6, timings["ingest"] / count * 1e6,
                      timings["ack"] / count * 1e6, top_functions(profile))


def top_functions(profile: cProfile.Profile, limit: int = PROFILE_TOP_FUNCTIONS) -> list[str]:
    """The functions with the most own time, as "module.function share%"."""
    stats: dict[tuple[str, int, str], tuple[Any, ...]] = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in stats.values()) or 1.0
    ranked = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:limit]
    named = []
    for (filename, _, function), entry in ranked:
        module = Path(filename).stem if filename != "~" else ""
        name = f"{module}.{function}" if module else function.strip("<>")
        named.append(f"{name} {entry[2] / total:.0%}")
    return named


# -- the section --------------------------------------------------------------------------------
def measure(quick: bool) -> Section:
    sizes = QUICK_SIZES if quick else FULL_SIZES
    return measure_sizes(sizes, QUICK_RAW_MESSAGES if quick else FULL_RAW_MESSAGES)


def measure_sizes(sizes: Sequence[int], raw_messages: int, terminals: int = TERMINALS,
                  profile_records: int = PROFILE_RECORDS) -> Section:
    """The gateway at each size (growth) with raw runs before, between and after, then the
    stage profile. The raw run of median rate is the baseline: the machine's load drifts
    (other work, thermal limits), and interleaving spreads the drift over both sides."""
    payload_bytes = mean_record_bytes()
    raws = [raw_run(raw_messages, payload_bytes, terminals)]
    runs = {}
    for size in sizes:
        runs[size] = ingest_run(size, terminals)
        raws.append(raw_run(raw_messages, payload_bytes, terminals))
    raw = sorted(raws, key=lambda r: r.rate)[len(raws) // 2]
    headline = runs[max((s for s in sizes if s <= HEADLINE_SIZE), default=max(sizes))]
    largest = runs[max(sizes)]
    costs = stage_costs(profile_records, min(terminals, PROFILE_TERMINALS))
    section = Section("gateway ingest")
    section.metrics.append(Metric.against("gateway.ingest_rate", headline.rate, raw.rate,
                                          "txn/s", headline.count))
    smallest_us = 1e6 / runs[min(sizes)].rate
    for size, run in sorted(runs.items()):
        baseline = None if size == min(sizes) else smallest_us
        section.metrics.append(Metric.against(f"gateway.ingest_us_per_txn@{size_label(size)}",
                                              1e6 / run.rate, baseline, "us/txn", size))
    gateway_cpu_us = headline.per_item_us(headline.consumer_cpu_s)
    raw_cpu_us = raw.per_item_us(raw.consumer_cpu_s)
    section.metrics += [
        Metric.against("gateway.process_cpu_us_per_txn", gateway_cpu_us, raw_cpu_us, "us/txn",
                       headline.count),
        Metric.against("gateway.broker_cpu_us_per_txn", headline.per_item_us(headline.broker_cpu_s),
                       raw.per_item_us(raw.broker_cpu_s), "us/txn", headline.count),
        Metric.against("gateway.terminals_cpu_us_per_txn",
                       headline.per_item_us(headline.producer_cpu_s),
                       raw.per_item_us(raw.producer_cpu_s), "us/txn", headline.count),
        Metric.against("gateway.stage_verify_us_per_txn", costs.verify_us, None, "us/txn",
                       profile_records),
        Metric.against("gateway.stage_ingest_us_per_txn", costs.ingest_us, None, "us/txn",
                       profile_records),
        Metric.against("gateway.stage_ack_us_per_txn", costs.ack_us, None, "us/txn",
                       profile_records),
        Metric.against("gateway.rss_growth_bytes_per_txn", largest.rss_growth_bytes / largest.count,
                       None, "B/txn", largest.count),
    ]
    stages_us = costs.verify_us + costs.ingest_us + costs.ack_us
    section.notes += [
        f"load: {terminals} terminals over one MQTT 3.1.1 connection, at most {WINDOW_RECORDS}"
        f" records unacknowledged; raw: one publisher, one subscriber, {raw_messages:,}"
        f" payloads of {payload_bytes} B (the mean sealed record) on the same topics, QoS 1;"
        f" raw rate {raw.rate:,.0f} msg/s, the median of "
        + ", ".join(f"{r.rate:,.0f}" for r in raws) + " (runs before, between and after)",
        f"where the time goes: the gateway process spends {gateway_cpu_us:.0f} us CPU per"
        f" transaction (raw subscriber: {raw_cpu_us:.0f} us per message) and, with the broker"
        f" and the terminals, shares 2 cores; of it the stages alone take verify"
        f" {costs.verify_us:.0f} + ingest {costs.ingest_us:.0f} + acks {costs.ack_us:.0f}"
        f" = {stages_us:.0f} us, the rest ({max(gateway_cpu_us - stages_us, 0):.0f} us) is"
        f" paho receive/PUBACK, queues and thread hand-offs; {headline.acks / headline.count:.2f}"
        f" acks per transaction",
        "top functions by own time (cProfile of the stages): " + ", ".join(costs.top_functions),
    ]
    return section
