"""`tilltap gauntlet`: the store as deployed, real processes, faults from a seed, and the count.

    tilltap gauntlet [--seed N] [--gateway-kills 20] [--faults a,b,...] [--rounds 1]
                     [--admin-dsn postgresql://...] [--sqlite] [--no-tls] [--keep]
    python -m tools.gauntlet ...                                   (the same)

1. The store of tools/fuzz/deploy.py: Mosquitto with TLS, passwords and ACL (persistence on),
   the ledger on a PostgreSQL database of its own (`gauntlet_<seed>_<pid>`, dropped at the
   end; `--sqlite` for a file) and the gateway as processes with their logins. The gateway
   runs under a supervisor (tools/gauntlet/processes.py) that starts it again whenever it
   ends, with its wall clock behind a hook (tools/gauntlet/clocked_gateway.py) and, as
   root, its store on a small tmpfs of its own.
2. Counter terminals as processes of their own (tools/gauntlet/counter.py), journals on
   disk, each selling its own SUN cards the demo's way throughout.
3. The faults of tools/gauntlet/faults.py, in an order, with targets, durations and gaps
   drawn from `random.Random(seed)`: `--gateway-kills` gateway kills (random, mid-commit,
   mid-settlement in turn) and every other fault `--rounds` times.
4. Heal everything, let the counters drain their journals, let the gateway settle, wait
   for the ledger's holds to close, stop the gateway (SIGTERM), and count
   (tools/gauntlet/tally.py): lost, doubled, phantom, altered, trial balance, holds open,
   unsettled, cards off.

It prints the report as JSON on stdout and one line for a person on stderr, with the
seed (`make gauntlet SEED=n` replays the same plan); exit status 1 if any count is not 0.
What the live processes contribute (timings, which record a kill lands on) does not repeat
exactly: the plan does.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.cards import MasterKeys
from tools.command import OneLineParser
from tools.fuzz.deploy import Store
from tools.gauntlet import faults
from tools.gauntlet.counter import cards_path, counters_dir, opening_value
from tools.gauntlet.database import GauntletDatabase
from tools.gauntlet.processes import CounterProcess, GatewaySupervisor
from tools.gauntlet.tally import failures, gateway_settled, holds_open, tally
from tools.personalize import personalize
from tools.simulator.cards import make_uid
from tools.simulator.ntag424_card import Ntag424Card

DEFAULT_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
CARD_URL_PREFIX = "https://tilltap.example/c"
CARDS_PER_PROGRAM = 2  # per counter
HOLD_TTL_S = 12.0  # the gateway's local hold; over 3 x its ledger timeout (2 s)
TMPFS_SIZE = "48m"
WARM_UP_S = 6.0
READY_TIMEOUT_S = 120.0
DRAIN_TIMEOUT_S = 240.0
SETTLE_TIMEOUT_S = 180.0
HOLDS_TIMEOUT_S = HOLD_TTL_S + 60.0
POLL_S = 0.5

Log = Callable[[str], None]


@dataclass(frozen=True)
class Settings:
    seed: int = 1
    gateway_kills: int = 20
    faults: tuple[str, ...] = faults.OTHER_FAULTS
    rounds: int = 1
    admin_dsn: str | None = DEFAULT_ADMIN_DSN  # None: the ledger on SQLite
    terminals: int = 3
    tls: bool = True
    down_s: tuple[float, float] = (3.0, 8.0)
    gap_s: tuple[float, float] = (1.0, 4.0)
    keep_workdir: bool = False
    workdir: Path | None = None


def _mount_tmpfs(folder: Path, log: Log) -> Path | None:
    """The gateway store's own small filesystem, to be filled (disk_full); None if not."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        log("disk_full: skipped, not root (a tmpfs cannot be mounted)")
        return None
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs",
                           str(folder)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        log(f"disk_full: skipped, mount failed: {done.stderr.strip()}")
        return None
    return folder


def _personalize_cards(store: Store, terminal: str, rng: random.Random,
                       masters: MasterKeys) -> None:
    from tools.demo import DEMO_PROGRAMS

    entries = []
    for program in DEMO_PROGRAMS:
        for _ in range(CARDS_PER_PROGRAM):
            uid = make_uid(rng)
            chip = Ntag424Card(bytes.fromhex(uid), random=rng.randbytes)
            personalize(chip.apdu, masters, CARD_URL_PREFIX, rng.randbytes)
            entries.append({"uid": uid, "program": program, "state": chip.state(),
                            "value_minor": opening_value(program, rng)})
    cards_path(store.workdir, terminal).write_text(json.dumps(entries))


class Gauntlet:
    def __init__(self, settings: Settings, log: Log) -> None:
        self.settings = settings
        self.log = log
        self.rng = random.Random(settings.seed)
        self.workdir = settings.workdir or Path(tempfile.mkdtemp(prefix="tilltap-gauntlet-"))
        self.terminals = [f"T{number}" for number in range(1, settings.terminals + 1)]
        self.faults_done: Counter[str] = Counter()
        self.events: list[dict[str, Any]] = []
        self.notes: list[str] = []

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        settings = self.settings
        order = faults.plan(self.rng, settings.gateway_kills, settings.faults, settings.rounds)
        self.log(f"gauntlet seed {settings.seed}: {len(order)} faults in {self.workdir}")
        tmpfs = (_mount_tmpfs(self.workdir / "gateway-store", self.log)
                 if "disk_full" in order else None)
        database = GauntletDatabase(settings.admin_dsn, self.workdir, settings.seed)
        clock = self.workdir / "gateway.clock"
        clock.write_text("0")
        store = Store(self.terminals, None, settings.tls, self.workdir,
                      ledger_dsn=database.dsn, broker_persistence=True, gateway_db_dir=tmpfs,
                      gateway_options=("--hold-ttl-s", str(HOLD_TTL_S)),
                      gateway_command=("-m", "tools.gauntlet.clocked_gateway",
                                       "--clock-file", str(clock)))
        counters: list[CounterProcess] = []
        supervisor = GatewaySupervisor(store)
        report: dict[str, Any] = {}
        try:
            store.start()
            assert store.broker is not None
            (self.workdir / "broker.json").write_text(json.dumps(
                {"host": store.broker.host, "port": store.broker.port}))
            counters_dir(self.workdir).mkdir(exist_ok=True)
            for terminal in self.terminals:
                _personalize_cards(store, terminal, self.rng, store.masters)
                counters.append(CounterProcess(self.workdir, terminal, settings.seed,
                                               settings.tls))
            for counter in counters:
                counter.start()
            supervisor.start()
            stage = faults.Stage(store, supervisor, counters, database, settings.down_s, tmpfs,
                                 clock, self.log)
            time.sleep(WARM_UP_S)
            self._faults(order, stage)
            outcome = self._finish(stage, database)
            report = self._report(outcome, stage, started)
            return report
        finally:
            supervisor._stop.set()
            for counter in counters:
                counter.kill()
            store.close()
            database.drop()
            if tmpfs is not None:
                if settings.keep_workdir or not report.get("ok"):
                    for path in tmpfs.glob("gateway.db*"):
                        shutil.copy(path, self.workdir)
                subprocess.run(["umount", "-l", str(tmpfs)], check=False)
            if report.get("ok") and not settings.keep_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
                report["workdir"] = None

    def _revive_counters(self, counters: list[CounterProcess]) -> None:
        """A counter that ended on its own (not by a fault) is a finding; start it again."""
        for counter in counters:
            if not counter.alive:
                code = counter.process.returncode if counter.process else None
                self.notes.append(f"counter {counter.terminal} ended by itself ({code})")
                counter.start()

    def _faults(self, order: list[str], stage: faults.Stage) -> None:
        for number, name in enumerate(order, 1):
            time.sleep(self.rng.uniform(*self.settings.gap_s))
            self._revive_counters(stage.counters)
            mark = time.monotonic()
            detail = faults.FAULTS[name](stage, self.rng)
            self.faults_done[name] += 0 if detail.get("skipped") else 1
            self.events.append({"fault": name, **detail})
            self.log(f"  [{number}/{len(order)}] {name} {json.dumps(detail, default=str)}"
                     f" ({time.monotonic() - mark:.1f} s)")
            if not stage.supervisor.ready(READY_TIMEOUT_S):
                self.notes.append(f"after {name}: the gateway was not back in"
                                  f" {READY_TIMEOUT_S:.0f} s")
                self.log(self.notes[-1])

    def _finish(self, stage: faults.Stage, database: GauntletDatabase) -> dict[str, Any]:
        """Heal, drain, settle, wait for the holds, stop the gateway; then the tally."""
        store = stage.store
        self.log("healing, draining, settling")
        stage.gateway_clock.write_text("0")
        assert store.broker is not None
        if not store.broker.running:
            store.broker.start()
        if not store.ledger_alive():
            self.notes.append("the ledger was not running at the end")
            store.start_ledger()
        stage.supervisor.ready(READY_TIMEOUT_S)
        self._revive_counters(stage.counters)
        drained = {counter.terminal: counter.drain(DRAIN_TIMEOUT_S) for counter in stage.counters}
        settled = _wait(lambda: gateway_settled(store.gateway_db, self.terminals),
                        SETTLE_TIMEOUT_S)
        holds_closed = _wait(lambda: holds_open(database) == 0, HOLDS_TIMEOUT_S)
        exit_code = stage.supervisor.stop()
        result = tally(self.workdir, self.terminals, store.gateway_db, database,
                       store.reader(), stage.damaged)
        return {"drained": drained, "settled": settled, "holds_closed": holds_closed,
                "gateway_exit": exit_code, **result}

    def _report(self, outcome: dict[str, Any], stage: faults.Stage,
                started: float) -> dict[str, Any]:
        failed = failures(outcome)
        not_drained = [t for t, code in outcome["drained"].items() if code != 0]
        if not_drained:
            failed["not_drained"] = len(not_drained)
        supervisor = stage.supervisor
        return {
            "ok": not failed, "seed": self.settings.seed, "failed": failed,
            "seconds": round(time.monotonic() - started, 1),
            **{key: outcome[key] for key in ("lost", "doubled", "phantom", "altered",
                                             "trial_balance", "holds_open",
                                             "holds_open_approval_never_kept",
                                             "lost_to_journal_damage", "approved", "posted",
                                             "approved_recovered_from_journal", "unsettled",
                                             "cards_off", "lost_by_reason",
                                             "refused_at_gateway", "quarantined_at_ledger",
                                             "hold_totals", "drained", "settled",
                                             "holds_closed", "gateway_exit")},
            "faults": dict(sorted(self.faults_done.items())),
            "gateway": {"starts": supervisor.starts, "failed_starts": supervisor.failed_starts,
                        "exits": dict(supervisor.exits)},
            "counters": {c.terminal: {"starts": c.incarnation, "exits": dict(c.exits)}
                         for c in stage.counters},
            "journal_flips": stage.damaged, "notes": self.notes,
            "examples": outcome["examples"], "events": self.events,
            "workdir": str(self.workdir),
        }


def _wait(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except Exception:  # noqa: BLE001 (a store being written, a database restarting)
            pass
        time.sleep(POLL_S)
    return False


def summary_line(report: dict[str, Any]) -> str:
    trial = sum(abs(v) for v in report["trial_balance"].values())
    faults_text = ", ".join(f"{name} {n}" for name, n in report["faults"].items())
    return (f"gauntlet seed={report['seed']}: {'OK' if report['ok'] else 'FAILED'} "
            f"lost={report['lost']} doubled={report['doubled']} phantom={report['phantom']} "
            f"trial_balance={trial} holds_open={report['holds_open']} "
            f"(approved {report['approved']}, posted {report['posted']}, lost to journal "
            f"damage {report['lost_to_journal_damage']}, altered {report['altered']}, "
            f"unsettled {report['unsettled']}, cards off {report['cards_off']}) "
            f"in {report['seconds']:.0f} s; faults: {faults_text}"
            + ("" if report["ok"] else f"; replay: make gauntlet SEED={report['seed']}"))


def run_gauntlet(settings: Settings, log: Log) -> dict[str, Any]:
    return Gauntlet(settings, log).run()


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="tilltap gauntlet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--gateway-kills", type=int, default=20)
    parser.add_argument("--faults", default=",".join(faults.OTHER_FAULTS),
                        help="the other faults, comma-separated (default: every one, see"
                             " tools/gauntlet/faults.py)")
    parser.add_argument("--rounds", type=int, default=1, help="each other fault this often")
    parser.add_argument("--admin-dsn", default=os.environ.get("TILLTAP_TEST_PG_DSN",
                                                              DEFAULT_ADMIN_DSN),
                        help="a PostgreSQL server's admin URL; the ledger gets a database"
                             " of its own there")
    parser.add_argument("--sqlite", action="store_true",
                        help="the ledger on SQLite (the PostgreSQL faults are left out)")
    parser.add_argument("--terminals", type=int, default=3)
    parser.add_argument("--no-tls", dest="tls", action="store_false")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    chosen = tuple(name for name in args.faults.split(",") if name)
    known = faults.OTHER_FAULTS + faults.EXTRA_FAULTS
    unknown = [name for name in chosen if name not in known]
    if unknown:
        parser.error(f"unknown faults {unknown}; known: {', '.join(known)}")
    if args.sqlite:
        chosen = tuple(name for name in chosen if name not in faults.POSTGRES_FAULTS)

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    settings = Settings(seed=args.seed, gateway_kills=args.gateway_kills, faults=chosen,
                        rounds=args.rounds, admin_dsn=None if args.sqlite else args.admin_dsn,
                        terminals=args.terminals, tls=args.tls, keep_workdir=args.keep)
    report = run_gauntlet(settings, log)
    print(json.dumps(report, indent=2, default=str))
    log(summary_line(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
