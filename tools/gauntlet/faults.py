"""The faults the gauntlet injects, each with its own heal, and the seeded plan of them.

Every fault is a function `(Stage, random.Random) -> dict` that breaks something, waits
while the terminals keep selling, puts it right and returns what it did (printed and kept
in the report). What "put right" means is what an operator or the machine would do: the
supervisor starts a killed gateway again; a stopped broker or ledger is started again; a
refusing database accepts again; the lock, the ballast file go away.

    gateway_kill_random          SIGKILL at a random moment
    gateway_kill_mid_commit      SIGKILL the instant its SQLite WAL file changes (a commit
                                 being written)
    gateway_kill_mid_settlement  SIGKILL the instant a settlement is under way: a batch open
                                 in its store (sent or about to be), or a batch new at the
                                 ledger (posted, its answer maybe not yet kept)
    broker_stop / broker_kill    Mosquitto stopped (SIGTERM) or killed (SIGKILL), started
                                 again on the same port and persistence folder
    ledger_hang / ledger_kill    the ledger process stopped (SIGSTOP: requests time out) or
                                 killed and started again on its port
    postgres_refusing            the ledger's database refuses connections (ALLOW_CONNECTIONS
                                 false, its sessions terminated)
    postgres_read_only           the ledger's database refuses writes (default_transaction_
                                 read_only on, its sessions terminated), then writable again
    store_locked                 another process holds the gateway store's write lock
                                 (BEGIN EXCLUSIVE) past the store's busy timeout: the gateway
                                 exits 70 by design and the supervisor starts it again
    disk_full                    the gateway's store folder (a tmpfs of its own) filled by a
                                 ballast file, then the ballast removed (root only)
    terminal_kill                a counter SIGKILLed and started again on its journal
    journal_flip                 with the broker stopped (the terminals selling offline), a
                                 counter powered off, one bit flipped in its journal (in an
                                 unsent record, or anywhere in the file), broker and counter
                                 started again
    terminal_clock_jump          a counter's board clock jumps forward (within the gateway's
                                 CLOCK_SKEW_MAX_S) or back (it stays: the terminal follows
                                 the gateway's clock from its next answer)
    gateway_clock_jump           the gateway's wall clock jumps forward or back, and back again
"""

from __future__ import annotations

import contextlib
import errno
import os
import random
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from firmware.journal import TYPE_ACK, TYPE_HEAD, TYPE_TXN, _parse_at
from gateway.store import BUSY_TIMEOUT_MS
from gateway.verify import CLOCK_SKEW_MAX_S
from tools.fuzz.deploy import Store
from tools.gauntlet.counter import clock_path, journal_path
from tools.gauntlet.processes import CounterProcess, GatewaySupervisor

TRIGGER_TIMEOUT_S = 15.0
TERMINAL_JUMP_MARGIN_S = 60  # a forward jump stays this far inside CLOCK_SKEW_MAX_S
WAL_POLL_S = 0.0005
SETTLE_POLL_S = 0.003
BALLAST_CHUNK_BYTES = 1 << 20
BALLAST_TAIL_CHUNK_BYTES = 4096
STORE_LOCK_EXTRA_S = 3.0
WAL_TRUNCATE_ATTEMPTS = 10
OFFLINE_BEFORE_FLIP_S = (6.0, 10.0)  # auth timeout 3 s: a sale or two offline per counter

GATEWAY_KILLS = ("gateway_kill_random", "gateway_kill_mid_commit",
                 "gateway_kill_mid_settlement")
OTHER_FAULTS = ("broker_stop", "broker_kill", "ledger_hang", "ledger_kill",
                "postgres_refusing", "postgres_read_only", "store_locked", "disk_full",
                "terminal_kill", "journal_flip", "terminal_clock_jump", "gateway_clock_jump")
EXTRA_FAULTS: tuple[str, ...] = ()  # none: every fault is in the default plan
POSTGRES_FAULTS = ("postgres_refusing", "postgres_read_only")


class LedgerDatabase(Protocol):
    """What the faults need of the ledger's database (tools/gauntlet/database.py)."""

    def batches(self) -> int: ...

    def refuse_connections(self, refuse: bool) -> None: ...

    def read_only(self, read_only: bool) -> None: ...


@dataclass
class Stage:
    """What the faults act on."""

    store: Store
    supervisor: GatewaySupervisor
    counters: list[CounterProcess]
    ledger_db: LedgerDatabase
    down_s: tuple[float, float]  # how long a part stays broken
    tmpfs: Path | None  # the gateway store's own tmpfs (disk_full), None when not root
    gateway_clock: Path
    log: Callable[[str], None]
    damaged: list[dict[str, Any]] = field(default_factory=list)  # journal flips

    def down(self, rng: random.Random) -> float:
        return round(rng.uniform(*self.down_s), 2)


# -- the gateway ------------------------------------------------------------------------------
def gateway_kill_random(stage: Stage, rng: random.Random) -> dict[str, Any]:
    stage.supervisor.ready(60)
    time.sleep(rng.uniform(0, 2))
    return {"killed": stage.supervisor.kill()}


def _kill_when(stage: Stage, changed: Callable[[], bool], poll_s: float) -> dict[str, Any]:
    started = time.monotonic()
    while time.monotonic() - started < TRIGGER_TIMEOUT_S:
        if changed():
            return {"killed": stage.supervisor.kill(), "triggered": True,
                    "after_s": round(time.monotonic() - started, 3)}
        time.sleep(poll_s)
    return {"killed": stage.supervisor.kill(), "triggered": False}


def gateway_kill_mid_commit(stage: Stage, rng: random.Random) -> dict[str, Any]:
    stage.supervisor.ready(60)
    wal = Path(f"{stage.store.gateway_db}-wal")

    def mark() -> tuple[int, int]:
        try:
            status = wal.stat()
        except FileNotFoundError:
            return (0, 0)
        return (status.st_size, status.st_mtime_ns)

    before = mark()
    return _kill_when(stage, lambda: mark() != before, WAL_POLL_S)


def gateway_kill_mid_settlement(stage: Stage, rng: random.Random) -> dict[str, Any]:
    stage.supervisor.ready(60)
    if rng.random() < 0.5:
        uri = f"file:{stage.store.gateway_db}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=5)) as db:
            def open_batch() -> bool:
                try:
                    row = db.execute("SELECT COUNT(*) FROM batches WHERE status = 'open'"
                                     ).fetchone()
                except sqlite3.OperationalError:
                    return False
                return bool(row[0])

            return {"at": "open batch in the gateway's store",
                    **_kill_when(stage, open_batch, SETTLE_POLL_S)}
    before = stage.ledger_db.batches()
    return {"at": "new batch at the ledger",
            **_kill_when(stage, lambda: stage.ledger_db.batches() > before, SETTLE_POLL_S)}


def store_locked(stage: Stage, rng: random.Random) -> dict[str, Any]:
    held_s = BUSY_TIMEOUT_MS / 1000 + STORE_LOCK_EXTRA_S + rng.uniform(0, 3)
    exits_before = sum(stage.supervisor.exits.values())
    blocker = sqlite3.connect(stage.store.gateway_db, timeout=30, isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        time.sleep(held_s)
        blocker.execute("ROLLBACK")
    finally:
        blocker.close()
    return {"held_s": round(held_s, 1),
            "gateway_exits": sum(stage.supervisor.exits.values()) - exits_before}


def disk_full(stage: Stage, rng: random.Random) -> dict[str, Any]:
    if stage.tmpfs is None:
        return {"skipped": "not root, or no tmpfs could be mounted for the gateway's store"}
    ballast = stage.tmpfs / "ballast"
    written = 0
    # SQLite reuses its WAL file's room after a checkpoint: empty it first (TRUNCATE), so
    # that the gateway's next commits must take new room, which the ballast has taken.
    truncated = False
    with contextlib.closing(sqlite3.connect(stage.store.gateway_db, timeout=10)) as db:
        for _ in range(WAL_TRUNCATE_ATTEMPTS):
            busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if not busy:
                truncated = True
                break
            time.sleep(0.2)
    exits_before = sum(stage.supervisor.exits.values())
    with open(ballast, "wb", buffering=0) as file:  # unbuffered: ENOSPC comes at write
        for chunk in (BALLAST_CHUNK_BYTES, BALLAST_TAIL_CHUNK_BYTES):
            try:
                while True:
                    written += file.write(bytes(chunk)) or 0
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
    held_s = stage.down(rng)
    time.sleep(held_s)
    ballast.unlink()
    return {"ballast_bytes": written, "held_s": held_s, "wal_truncated": truncated,
            "gateway_exits": sum(stage.supervisor.exits.values()) - exits_before}


def gateway_clock_jump(stage: Stage, rng: random.Random) -> dict[str, Any]:
    jump_s = rng.choice((-1, 1)) * rng.randrange(30, 600)
    held_s = stage.down(rng)
    stage.gateway_clock.write_text(str(jump_s))
    time.sleep(held_s)
    stage.gateway_clock.write_text("0")
    return {"jump_s": jump_s, "held_s": held_s}


# -- the broker and the ledger ------------------------------------------------------------------
def _broker_down(stage: Stage, rng: random.Random, kill: bool) -> dict[str, Any]:
    broker = stage.store.broker
    assert broker is not None
    down_s = stage.down(rng)
    if kill:
        broker.kill()
    else:
        broker.stop()
    time.sleep(down_s)
    broker.start()
    return {"down_s": down_s}


def broker_stop(stage: Stage, rng: random.Random) -> dict[str, Any]:
    return _broker_down(stage, rng, kill=False)


def broker_kill(stage: Stage, rng: random.Random) -> dict[str, Any]:
    return _broker_down(stage, rng, kill=True)


def ledger_hang(stage: Stage, rng: random.Random) -> dict[str, Any]:
    ledger = stage.store.ledger
    assert ledger is not None
    down_s = stage.down(rng)
    os.kill(ledger.pid, signal.SIGSTOP)
    try:
        time.sleep(down_s)
    finally:
        os.kill(ledger.pid, signal.SIGCONT)
    return {"stopped_s": down_s}


def ledger_kill(stage: Stage, rng: random.Random) -> dict[str, Any]:
    ledger = stage.store.ledger
    assert ledger is not None
    down_s = stage.down(rng)
    ledger.kill()
    ledger.wait()
    time.sleep(down_s)
    stage.store.start_ledger()
    return {"down_s": down_s}


def postgres_refusing(stage: Stage, rng: random.Random) -> dict[str, Any]:
    down_s = stage.down(rng)
    stage.ledger_db.refuse_connections(True)
    try:
        time.sleep(down_s)
    finally:
        stage.ledger_db.refuse_connections(False)
    return {"refusing_s": down_s}


def postgres_read_only(stage: Stage, rng: random.Random) -> dict[str, Any]:
    down_s = stage.down(rng)
    stage.ledger_db.read_only(True)
    try:
        time.sleep(down_s)
    finally:
        stage.ledger_db.read_only(False)
    return {"read_only_s": down_s}


# -- the terminals ------------------------------------------------------------------------------
def terminal_kill(stage: Stage, rng: random.Random) -> dict[str, Any]:
    counter = rng.choice(stage.counters)
    counter.kill()
    down_s = round(rng.uniform(0.2, 3.0), 2)
    time.sleep(down_s)
    counter.start()
    return {"terminal": counter.terminal, "down_s": down_s}


def _frames(data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """(offset, end, type, body) of each intact frame of a journal file."""
    offset = 0
    while offset < len(data):
        parsed = _parse_at(data, offset)
        if parsed is None:
            return
        record_type, body, end = parsed
        yield offset, end, record_type, bytes(body)
        offset = end


def flip_one_bit(path: Path, rng: random.Random) -> dict[str, Any]:
    """Flip one bit: inside an unacknowledged record's frame (three times in four, when
    there is one), else anywhere in the file. Which record it hit, if any."""
    data = bytearray(path.read_bytes())
    if not data:
        return {"flipped": False}
    frames = list(_frames(bytes(data)))
    acked = 0
    for _, _, record_type, body in frames:
        if record_type == TYPE_HEAD:
            acked = max(acked, int.from_bytes(body[1:5], "big"))
        elif record_type == TYPE_ACK:
            acked = max(acked, int.from_bytes(body[:4], "big"))
    unsent = [(start, end, int.from_bytes(body[:4], "big"))
              for start, end, record_type, body in frames
              if record_type == TYPE_TXN and int.from_bytes(body[:4], "big") > acked]
    if unsent and rng.random() < 0.75:
        start, end, _ = rng.choice(unsent)
        offset = rng.randrange(start, end)
    else:
        offset = rng.randrange(len(data))
    data[offset] ^= 1 << rng.randrange(8)
    path.write_bytes(bytes(data))
    hit = next((seq for start, end, seq in unsent if start <= offset < end), None)
    return {"flipped": True, "offset": offset, "unsent": [seq for _, _, seq in unsent],
            "record_seq": hit}


def journal_flip(stage: Stage, rng: random.Random) -> dict[str, Any]:
    broker = stage.store.broker
    assert broker is not None
    counter = rng.choice(stage.counters)
    broker.stop()
    try:
        time.sleep(rng.uniform(*OFFLINE_BEFORE_FLIP_S))
        counter.stop()
        flipped = flip_one_bit(journal_path(counter.workdir, counter.terminal), rng)
    finally:
        broker.start()
    counter.start()
    flipped["terminal"] = counter.terminal
    stage.damaged.append(flipped)
    return flipped


def terminal_clock_jump(stage: Stage, rng: random.Random) -> dict[str, Any]:
    counter = rng.choice(stage.counters)
    # Forward, within the gateway's CLOCK_SKEW_MAX_S: an offline sale stamped further ahead
    # is refused time_invalid by rule (docs/protocol.md 5.5, a README known gap), and would be
    # counted here as lost. Back, as far as it likes: past dates are taken.
    forward = rng.choice((False, True))
    jump_s = (rng.randrange(60, CLOCK_SKEW_MAX_S - TERMINAL_JUMP_MARGIN_S) if forward
              else -rng.randrange(60, 3000))
    path = clock_path(counter.workdir, counter.terminal)
    before = int(path.read_text() or 0) if path.exists() else 0
    path.write_text(str(before + jump_s))
    time.sleep(stage.down(rng))
    return {"terminal": counter.terminal, "jump_s": jump_s, "offset_s": before + jump_s}


FAULTS: dict[str, Callable[[Stage, random.Random], dict[str, Any]]] = {
    "gateway_kill_random": gateway_kill_random,
    "gateway_kill_mid_commit": gateway_kill_mid_commit,
    "gateway_kill_mid_settlement": gateway_kill_mid_settlement,
    "broker_stop": broker_stop, "broker_kill": broker_kill,
    "ledger_hang": ledger_hang, "ledger_kill": ledger_kill,
    "postgres_refusing": postgres_refusing, "postgres_read_only": postgres_read_only,
    "store_locked": store_locked, "disk_full": disk_full,
    "terminal_kill": terminal_kill, "journal_flip": journal_flip,
    "terminal_clock_jump": terminal_clock_jump, "gateway_clock_jump": gateway_clock_jump,
}


def plan(rng: random.Random, gateway_kills: int, others: tuple[str, ...],
         rounds: int) -> list[str]:
    """The faults in the order they come: `gateway_kills` kills spread over the three ways
    of killing, and each of `others` `rounds` times, shuffled by the seed."""
    kills = [GATEWAY_KILLS[number % len(GATEWAY_KILLS)] for number in range(gateway_kills)]
    order = kills + [name for name in others for _ in range(rounds)]
    rng.shuffle(order)
    return order
