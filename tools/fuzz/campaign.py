"""`tilltap fuzz`: the campaign, from setting up the store to the JSON summary.

    tilltap fuzz [--messages 100000] [--seed 2026] [--no-tls] [--terminals 3]
    python -m tools.fuzz ...                          (the same)

1. The store as deployed (tools/fuzz/deploy.py): Mosquitto with passwords and ACL (TLS by
   default), the ledger and the gateway as processes with their logins.
2. Honest terminals sell the demo's cards throughout (tools/fuzz/honest.py).
3. Hostile messages in rounds of ROUND_MESSAGES, each of a class drawn from the seed:
   signed by the stolen key of terminal TX (tools/fuzz/attacker.py: mutated records,
   authorization requests and statuses, replays, lost notices, real online sales), or
   unsigned (tools/fuzz/hostile.py) on the attacker's login or an honest terminal's:
   random bytes, CBOR junk, genuine messages cut, extended or spliced, a genuine payload
   MACed with a wrong key, payloads past the gateway's limit and past the broker's packet
   limit, topics the gateway refuses and topics the ACL drops. A round ends when the broker
   took every message and the gateway answered the attacker's barrier (everything it sent
   was handled): queues stay short and memory bounded.
4. At the end: the gateway alive and answering (an honest sale; a barrier), drained and
   settled, stopped by SIGTERM with exit status 0 (a thread that died would have ended it
   with 70 already); the ledger alive; no traceback in either log; the reconciliation of
   tools/fuzz/reconcile.py.

The summary (JSON on stdout): messages sent by class, the mutations, the gateway's
counters (rejected by reason), crashes, dead threads, tracebacks, differences, findings,
the rate and the memory of the gateway. Exit status 0 when crashes, dead threads,
tracebacks and differences are 0 and every finding is a reported one.

Deterministic by seed: classes, mutations, cards and amounts come from `--seed` through
separate random streams (attacker, unsigned traffic, the round mix, each honest counter);
what the live store contributes (clocks, seqs, authorization ids, SUN counters, how threads
interleave) does not repeat exactly.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import sqlite3
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.stage import EXIT_THREAD_DIED
from gateway.store import GatewayStore
from ledger.errors import LedgerError
from tools.command import OneLineParser
from tools.fuzz.attacker import Attacker
from tools.fuzz.deploy import MERCHANT, OFFLINE_LIMITS, Store
from tools.fuzz.honest import HonestCounters
from tools.fuzz.hostile import UnsignedTraffic
from tools.fuzz.reconcile import REPORTED_FINDINGS, honest_books, stolen_key

ROUND_MESSAGES = 400
SIGNED_SHARE = 0.55
SETTLE_TIMEOUT_S = 180.0
POLL_S = 0.2
PROGRESS_EVERY_S = 10.0
ATTACKER = "TX"

Log = Callable[[str], None]


@dataclass(frozen=True)
class Settings:
    messages: int = 100_000
    seed: int = 2026
    tls: bool = True
    terminals: int = 3
    keep_workdir: bool = False  # also on success (always kept on failure)
    workdir: Path | None = None  # default: a new temporary folder


def _wait(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(POLL_S)
    return condition()


def _gateway_counters(stats: dict[str, int]) -> dict[str, Any]:
    rejected = {k.removeprefix("rejected."): v for k, v in sorted(stats.items())
                if k.startswith("rejected.")}
    others = {k: v for k, v in sorted(stats.items()) if not k.startswith("rejected.")}
    return {"rejected_by_reason": rejected, "rejected": sum(rejected.values()), **others}


class Campaign:
    def __init__(self, settings: Settings, log: Log) -> None:
        self.settings = settings
        self.log = log
        self.honest_ids = [f"T{number}" for number in range(1, settings.terminals + 1)]
        self.store = Store(self.honest_ids, ATTACKER, settings.tls, settings.workdir)
        self.sent: Counter[str] = Counter()
        self.seconds: defaultdict[str, float] = defaultdict(float)  # per phase
        self.rss_kb: dict[str, int | None] = {}
        self.rounds = 0

    # -- the campaign -----------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        store = self.store
        honest: HonestCounters | None = None
        attacker: Attacker | None = None
        unsigned: UnsignedTraffic | None = None
        try:
            store.start()
            assert store.broker is not None
            host, port = store.broker.host, store.broker.port
            self.log(f"store up in {store.workdir} (TLS {'on' if self.settings.tls else 'off'})")
            honest = HonestCounters([store.terminal_config(t) for t in self.honest_ids],
                                    store.workdir, host, port, store.masters, self.settings.seed)
            honest.open()
            attacker = Attacker(store.terminal_config(ATTACKER), host, port, store.broker_ca,
                                store.masters, sorted(honest.cards),
                                OFFLINE_LIMITS["txn_minor_max"], self.settings.seed + 1,
                                self.sent)
            attacker.start()
            logins = {t: (c["broker_user"], c["broker_password"]) for t, c in
                      ((t, store.terminal_config(t)) for t in self.honest_ids)}
            unsigned = UnsignedTraffic(host, port, store.broker_ca, MERCHANT, ATTACKER,
                                       attacker.link, attacker.link_login, attacker.recent,
                                       logins, self.settings.seed + 2, self.sent)
            honest.start()
            self.log(f"{len(honest.cards)} honest cards on {len(self.honest_ids)} terminals; "
                     f"sending {self.settings.messages} hostile messages")
            self.rss_kb["gateway_before"] = store.gateway_rss_kb()
            fuzz_started = time.monotonic()
            self._rounds(honest, attacker, unsigned)
            fuzz_s = time.monotonic() - fuzz_started
            self.seconds["auth_wait"] = attacker.auth_wait_s
            checks = self._checks(honest, attacker)
            report = self._summary(honest, attacker, unsigned, checks, fuzz_s,
                                   time.monotonic() - started)
            if report["ok"] and not self.settings.keep_workdir:
                shutil.rmtree(store.workdir, ignore_errors=True)
                report["workdir"] = None
            return report
        finally:
            if unsigned is not None:
                unsigned.close()
            if attacker is not None:
                attacker.close()
            if honest is not None:
                honest.stop()
                honest.close()
            store.close()

    def _rounds(self, honest: HonestCounters, attacker: Attacker,
                unsigned: UnsignedTraffic) -> None:
        """Send the hostile messages round by round; stop early if a process died."""
        rng = random.Random(self.settings.seed + 3)
        total = self.settings.messages
        next_report = time.monotonic() + PROGRESS_EVERY_S
        while sum(self.sent.values()) < total:
            goal = min(total, sum(self.sent.values()) + ROUND_MESSAGES)
            mark = time.monotonic()
            while sum(self.sent.values()) < goal:
                if rng.random() < SIGNED_SHARE:
                    attacker.signed()
                else:
                    unsigned.one()
            self.seconds["send"] += time.monotonic() - mark
            mark = time.monotonic()
            unsigned.flush()
            self.seconds["flush"] += time.monotonic() - mark
            mark = time.monotonic()
            attacker.barrier()
            self.seconds["barrier"] += time.monotonic() - mark
            self.rounds += 1
            if not (self.store.gateway_alive() and self.store.ledger_alive()) or honest.errors:
                self.log("a process died or an honest terminal failed: the campaign stops")
                return
            if time.monotonic() > next_report:
                next_report = time.monotonic() + PROGRESS_EVERY_S
                self.log(f"  {sum(self.sent.values())} messages, {honest.operations} honest "
                         f"operations")

    def _settled(self) -> bool:
        """Every accepted record of the gateway's store is in a batch the ledger answered,
        and no honest record waits for its sale (parked: gateway/parked.py)."""
        uri = f"file:{self.store.path('gateway.db')}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True)) as db:
            unbatched = db.execute("SELECT COUNT(*) FROM records WHERE status = 'accepted'"
                                   " AND batch_id IS NULL").fetchone()[0]
            open_batches = db.execute("SELECT COUNT(*) FROM batches WHERE status = 'open'"
                                      ).fetchone()[0]
            parked = db.execute("SELECT COUNT(*) FROM records WHERE status = 'parked'"
                                " AND terminal != ?", (ATTACKER,)).fetchone()[0]
        return bool(unbatched == 0 and open_batches == 0 and parked == 0)

    def _checks(self, honest: HonestCounters, attacker: Attacker) -> dict[str, Any]:
        """Alive, answering, drained, settled; stopped cleanly; then the books."""
        store = self.store
        honest.stop()
        alive = store.gateway_alive()
        drained = alive and honest.drain()
        answering = alive and honest.probe()
        if store.gateway_alive():
            attacker.barrier()
        self.log("draining and settling")
        settled = store.gateway_alive() and _wait(self._settled, SETTLE_TIMEOUT_S)
        self.rss_kb["gateway_after"] = store.gateway_rss_kb()
        alive_at_end = store.gateway_alive()
        exit_code = store.stop_gateway()
        ledger_alive = store.ledger_alive()
        gateway_store = GatewayStore(str(store.path("gateway.db")))
        try:
            reader = store.reader()
            ledger_health = reader.health()["status"]
            books = honest_books(gateway_store, reader, honest.expected, honest.terminals,
                                 sum(sim.uplink.refused for sim in honest.sims))
            thief = stolen_key(gateway_store, reader, ATTACKER, attacker.key,
                               {card.uid for card in attacker.cards}, set(honest.cards),
                               OFFLINE_LIMITS["txn_minor_max"])
        except LedgerError as error:  # a ledger that died: no books to read, counted
            ledger_health = f"{type(error).__name__}: {error}"
            books = {"differences": 1, "unread": ledger_health}
            thief = {"differences": 1, "unread": ledger_health, "findings_by_kind": {},
                     "findings": []}
        finally:
            gateway_store.close()
        return {"alive_at_end": alive_at_end, "answering": answering, "drained": drained,
                "settled": settled, "exit": exit_code, "ledger_alive": ledger_alive,
                "ledger_health": ledger_health, "ledger_exit": store.stop_ledger(),
                "books": books, "thief": thief}

    def _summary(self, honest: HonestCounters, attacker: Attacker, unsigned: UnsignedTraffic,
                 checks: dict[str, Any], fuzz_s: float, total_s: float) -> dict[str, Any]:
        problems = self.store.log_problems()
        crashes = (int(not checks["alive_at_end"]) + int(checks["exit"] != 0)
                   + int(not checks["ledger_alive"]) + int(checks["ledger_exit"] != 0)
                   + len(honest.errors))
        dead_threads = problems["gateway.dead_threads"] + int(
            checks["exit"] == EXIT_THREAD_DIED)
        tracebacks = problems["gateway.tracebacks"] + problems["ledger.tracebacks"]
        books, thief = checks["books"], checks["thief"]
        differences = (books["differences"] + thief["differences"] + int(not checks["drained"])
                       + int(not checks["settled"]) + int(not checks["answering"]))
        findings = thief["findings_by_kind"]
        new_findings = {kind: n for kind, n in findings.items() if kind not in REPORTED_FINDINGS}
        messages = sum(self.sent.values())
        rss = self.rss_kb
        return {
            "ok": (crashes == 0 and dead_threads == 0 and tracebacks == 0 and differences == 0
                   and not new_findings),
            "messages": messages, "seed": self.settings.seed, "tls": self.settings.tls,
            "crashes": crashes, "dead_threads": dead_threads, "tracebacks": tracebacks,
            "differences": differences,
            "findings": {"new": new_findings,
                         "reported": {kind: {"count": n, "what": REPORTED_FINDINGS[kind]}
                                      for kind, n in findings.items()
                                      if kind in REPORTED_FINDINGS},
                         "examples": thief["findings"]},
            "rate_messages_per_s": round(messages / fuzz_s, 1) if fuzz_s else None,
            "fuzz_seconds": round(fuzz_s, 1), "seconds": round(total_s, 1),
            "fuzz_seconds_by_phase": {k: round(v, 1) for k, v in sorted(self.seconds.items())},
            "rounds": self.rounds,
            "gateway_rss_kb": rss,
            "campaign_max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "signed": sum(v for k, v in self.sent.items() if k.startswith("signed.")),
            "unsigned": sum(v for k, v in self.sent.items() if k.startswith("unsigned.")),
            "sent": dict(sorted(self.sent.items())),
            "unsigned_topics": dict(sorted(unsigned.topics.items())),
            "oversize_past_broker": {"sent": unsigned.oversize.sent,
                                     "closed_by_broker": unsigned.oversize.closed_by_broker},
            "client_disconnects": sum(client.disconnects for client in unsigned.clients),
            "mutations": dict(sorted(attacker.mutations.items())),
            "attacker": {**dict(sorted(attacker.counts.items())),
                         "chain_placed_by_model": attacker.chain.placed,
                         "downlinks": dict(sorted(attacker.downlinks.counts.items()))},
            "gateway": {key: checks[key] for key in ("alive_at_end", "answering", "exit",
                                                     "drained", "settled")}
            | {"counters": _gateway_counters(self.store.gateway_stats())},
            "ledger": {"alive_at_end": checks["ledger_alive"],
                       "health": checks["ledger_health"], "exit": checks["ledger_exit"]},
            "logs": problems,
            "honest": {"operations": honest.operations, **books},
            "stolen_key": {k: v for k, v in thief.items() if k != "findings"},
            "workdir": str(self.store.workdir),
        }


def run_campaign(settings: Settings, log: Log) -> dict[str, Any]:
    return Campaign(settings, log).run()


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="tilltap fuzz", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000,
                        help="hostile messages to send (default 100000)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--terminals", type=int, default=3, help="honest terminals")
    parser.add_argument("--no-tls", dest="tls", action="store_false",
                        help="plain MQTT and HTTP on loopback (logins and ACL still on)")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work folder (stores, logs) also when all is well")
    args = parser.parse_args(argv)
    if args.messages < 1 or args.terminals < 1:
        parser.error("--messages and --terminals must be at least 1")

    def log(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    report = run_campaign(Settings(args.messages, args.seed, args.tls, args.terminals,
                                   args.keep), log)
    print(json.dumps(report, indent=2))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
