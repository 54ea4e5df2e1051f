r"""The gateway service: wires the stages with bounded queues and runs them.

    broker --paho--> [txn queue] -> verify -> [ingest queue] -> ingest/commit -> [ack queue]
                 \-> [auth queue] -> authorize ------------------------------> /  -> acks -> broker
                 \-> status (verified inline, kept as terminal presence)

`python -m gateway.service --broker-port P --db FILE --terminals FILE --programs FILE.toml`
runs it until SIGTERM/SIGINT. `Gateway.settle()` sends settlement batches to the ledger,
after `sweep_expiry` has written what expired on cards with no operation since (value and
points past their expiry become expire records, the ledger's breakage); `gateway run`
does it every `--settle-every-s` (300 s) on its own.

Programs are validated (protocol.programs) before the gateway starts: an invalid program
never reaches a terminal.

With a ledger, approved purchases paid from card value are held at the ledger, and a sweep
thread voids the holds no sale will post (gateway/ledger_holds.py).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import queue
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path
from typing import Any

from gateway.acks import AckOut, AckStage
from gateway.authorize import AuthorizeStage
from gateway.card_auth import CardAuthenticator, CardKeys
from gateway.cards import EFFECTS_FIELD, CardBook
from gateway.fleet import FleetConfig
from gateway.ingest import IngestStage
from gateway.ledger_holds import HoldSettings, LedgerHolds
from gateway.mqtt import MqttLink, queue_route
from gateway.registry import TerminalRegistry
from gateway.settle import SettleResult, settle
from gateway.stats import Stats
from gateway.store import STATUS_ACCEPTED, GatewayStore, StoredRecord, fields_to_json
from gateway.verify import Verified, Verifier
from gateway.verify_stage import Uplink, VerifyStage
from ledger.client import LedgerClient
from ledger.errors import LedgerUnavailable, NotFound
from protocol import cbor, topics, txn
from protocol.errors import ProtocolError
from protocol.programs import validate_programs

TXN_QUEUE_MAX = 20_000
AUTH_QUEUE_MAX = 1_000
INGEST_QUEUE_MAX = 20_000
ACK_QUEUE_MAX = 20_000
STOP_JOIN_S = 10.0
SETTLE_INTERVAL_S = 300.0  # `gateway run`: settle (and expire) every five minutes
DRAIN_POLL_S = 0.01
CONFIG_VERSION = "config.version"  # the last configuration version published
CONFIG_DIGEST = "config.digest"  # of the programs and limits last started with (56 bits)
AUTH_EPOCHS = "auth.epochs"  # gateway starts: auth ids (and ledger hold ids) never repeat
EXPIRY_SEQ = "expiry.seq"  # expire records the gateway wrote: their sequence numbers
EXPIRY_TERMINAL_SUFFIX = ".expiry"  # no terminal id has a dot: never a terminal's records

log = logging.getLogger(__name__)


class Gateway:
    def __init__(self, gateway_id: str, broker_host: str, broker_port: int, db_path: str,
                 registry: TerminalRegistry, programs: dict[str, dict[str, Any]],
                 ledger_url: str | None = None, mqtt5: bool = True,
                 limits: dict[str, int] | None = None, config_version: int = 1,
                 card_keys: CardKeys | None = None,
                 hold_settings: HoldSettings | None = None,
                 settle_interval_s: float | None = None) -> None:
        self.gateway_id = gateway_id
        self.registry = registry
        programs = validate_programs({"programs": programs})
        self.stats = Stats()
        self.store = GatewayStore(db_path)
        hotlist = self.store.hotlist()
        self.hold_settings = hold_settings or HoldSettings()
        self.ledger = LedgerClient(ledger_url) if ledger_url else None
        # Calls made while a terminal waits for its authorization: short timeouts.
        self._ledger_now = (LedgerClient(ledger_url, self.hold_settings.ledger_timeout_s)
                            if ledger_url else None)
        self.store.commit([], {}, {}, {AUTH_EPOCHS: 1})
        self.cards = CardBook(programs, self.store.load_cards(), CardAuthenticator(card_keys),
                              set(hotlist), self._ledger_card if self.ledger else None,
                              self.hold_settings.hold_ttl_s,
                              self.store.counters()[AUTH_EPOCHS])
        self.cards.exposure_by_card, self.cards.exposure_by_terminal = self.store.exposure()
        self.holds = (LedgerHolds(gateway_id, self.cards, self._ledger_now, self.hold_settings,
                                  self._settle_now, self.stats)
                      if self._ledger_now else None)
        self._sweep_stop = threading.Event()
        # Settlement on a timer (with a ledger): it writes what expired first, so breakage
        # reaches the books without anyone asking (`tilltap gateway run --settle-every-s`).
        self._settler = (threading.Thread(target=self._settle_every, args=(settle_interval_s,),
                                          name="gateway-settle", daemon=True)
                         if self.ledger is not None and settle_interval_s else None)
        self._sweeper = (threading.Thread(target=self.holds.run_sweeps, args=(self._sweep_stop,),
                                          name="gateway-hold-sweep", daemon=True)
                         if self.holds else None)
        self.presence: dict[str, dict[str, Any]] = {}
        self.fleet = FleetConfig(self._config_version(programs, limits or {}, config_version),
                                 programs, limits or {}, hotlist)
        self.cards.offline_limits = self.fleet.limits
        verifier = Verifier(registry)
        self._verifier = verifier
        self.txn_queue: queue.Queue[Uplink | None] = queue.Queue(TXN_QUEUE_MAX)
        self.auth_queue: queue.Queue[Uplink | None] = queue.Queue(AUTH_QUEUE_MAX)
        self.ingest_queue: queue.Queue[Verified | None] = queue.Queue(INGEST_QUEUE_MAX)
        self.ack_queue: queue.Queue[AckOut | None] = queue.Queue(ACK_QUEUE_MAX)
        self.mqtt = MqttLink(
            broker_host, broker_port, f"tilltap-gateway-{gateway_id}", self.stats,
            {topics.LEAF_TXN: queue_route(self.txn_queue),
             topics.LEAF_AUTH: queue_route(self.auth_queue),
             topics.LEAF_STATUS: self._on_status},
            mqtt5=mqtt5,
        )  # fmt: skip
        self.verify_stage = VerifyStage(verifier, self.stats, self.txn_queue, self.ingest_queue,
                                        self.ack_queue)
        self.ingest_stage = IngestStage(self.store, self.cards, self.stats, self.ingest_queue,
                                        self.ack_queue,
                                        self.holds.wake if self.holds is not None else None)
        self.auth_stage = AuthorizeStage(verifier, registry, self.cards, self.stats,
                                         self.mqtt.publish, self.auth_queue, self.ack_queue,
                                         self.holds)
        self.ack_stage = AckStage(registry, self.mqtt.publish, self.stats, self.ack_queue)
        self._settle_lock = threading.Lock()

    def _config_version(self, programs: dict[str, Any], limits: dict[str, int],
                        floor: int) -> int:
        """The configuration version to publish (docs/protocol.md section 5.7): the last one
        published, + 1 if the programs or limits changed since, raised to `floor`
        (`--config-version`) if that is higher. Durable, so it never goes back."""
        content = cbor.encode({"programs": programs, "limits": limits})
        digest = int.from_bytes(hashlib.sha256(content).digest()[:7], "big")
        counters = self.store.counters()
        last_digest, last = counters.get(CONFIG_DIGEST), counters.get(CONFIG_VERSION, 0)
        version = last if last and last_digest == digest else last + 1
        version = max(version, floor)
        # Counters only add: adding the differences stores the new values.
        self.store.commit([], {}, {}, {CONFIG_DIGEST: digest - (last_digest or 0),
                                       CONFIG_VERSION: version - last})
        return version

    def start(self) -> None:
        for stage in (self.ack_stage, self.ingest_stage, self.verify_stage, self.auth_stage):
            stage.start()
        if self._sweeper is not None:
            self._sweeper.start()
        if self._settler is not None:
            self._settler.start()
        self.mqtt.start()
        self._publish_fleet()

    def _publish_fleet(self) -> None:
        self.fleet.publish(self.registry,
                           lambda topic, payload: self.mqtt.publish(topic, payload, retain=True))

    def block_card(self, card: str, reason: str = "reported lost") -> None:
        """Put a card on the hotlist: durable, enforced here, pushed to every terminal."""
        self.store.block(card, reason)
        self.store.commit([], {}, {}, {CONFIG_VERSION: 1})
        with self.cards.lock:
            self.cards.hotlist.add(card)
        self.fleet.hotlist = sorted(self.cards.hotlist)
        self.fleet.version += 1
        self._publish_fleet()

    def stop(self) -> None:
        """Stop taking messages, finish what is queued, commit, ack, disconnect."""
        self.mqtt.stop()
        self.txn_queue.put(None)
        self.verify_stage.join(STOP_JOIN_S)
        self.auth_queue.put(None)
        self.auth_stage.join(STOP_JOIN_S)
        self.ingest_queue.put(None)
        self.ingest_stage.join(STOP_JOIN_S)
        self.ack_queue.put(None)
        self.ack_stage.join(STOP_JOIN_S)
        self._sweep_stop.set()
        if self.holds is not None:
            self.holds.wake()
        if self._sweeper is not None:
            self._sweeper.join(STOP_JOIN_S)  # one last sweep voids what it can
        if self._settler is not None:
            self._settler.join(STOP_JOIN_S)
        self.store.close()

    def _ledger_card(self, card: str) -> dict[str, Any] | None:
        """A card registered centrally, or None (unknown, or the ledger is out of reach)."""
        assert self._ledger_now is not None
        try:
            return self._ledger_now.card(card)  # under the card book's lock: short timeout
        except (NotFound, LedgerUnavailable):
            return None

    def _on_status(self, topic: str, payload: bytes) -> bool:
        try:
            fields = self._verifier.status(topic, payload)
        except ProtocolError as error:
            self.stats.rejected(error.reason)
            return True
        self.presence[fields["terminal"]] = fields
        self.stats.add("status." + fields["state"])
        return True

    def idle(self) -> bool:
        """True when every queue is empty (what has arrived has been committed and acked)."""
        return all(q.empty() for q in (self.txn_queue, self.ingest_queue, self.ack_queue,
                                       self.auth_queue))

    def settle(self, now_s: float | None = None) -> SettleResult:
        """Write what expired up to `now_s` (default: now), then settle with the ledger."""
        assert self.ledger is not None, "settle needs a ledger URL"
        self.sweep_expiry(now_s)
        with self._settle_lock:
            return settle(self.store, self.gateway_id, self.ledger)

    def _settle_every(self, interval_s: float) -> None:
        while not self._sweep_stop.wait(interval_s):
            try:
                result = self.settle()
            except (sqlite3.Error, OSError) as error:  # the next turn tries again
                log.error("timed settlement failed: %s", error)
                continue
            if result.refused:
                log.error("ALARM settlement refused: %s", result.refused)

    def sweep_expiry(self, now_s: float | None = None) -> int:
        """Expire value and points on cards idle up to `now_s`; returns the records written.

        Runs with the ingest stage's commit lock, so a card's state is written in the order
        it changed (a record's commit never overwrites the expiry that followed it).
        """
        now_s = time.time() if now_s is None else now_s
        terminal = self.gateway_id + EXPIRY_TERMINAL_SUFFIX
        with self.ingest_stage.commit_lock:
            with self.cards.lock:
                expired = self.cards.sweep(now_s)
                cards = self.cards.take_dirty()
                first = self.store.counters().get(EXPIRY_SEQ, 0) + 1
                rows = [self._expire_record(terminal, first + n, card, effects, now_s)
                        for n, (card, effects) in enumerate(expired)]
            self.store.commit(rows, {}, cards, {EXPIRY_SEQ: len(rows)} if rows else {})
        self.stats.add("expire_records", len(rows))
        return len(rows)

    def _expire_record(self, terminal: str, seq: int, card: str, effects: dict[str, Any],
                       now_s: float) -> StoredRecord:
        entry = self.cards.cards[card]
        value = effects.get("value_expired", 0)
        points = effects.get("points_expired", 0)
        fields: dict[str, Any] = {
            "terminal": terminal, "seq": seq, "time": int(now_s),
            "merchant": entry["merchant"] or self.gateway_id, "card": card,
            "kind": txn.KIND_EXPIRE, "currency": entry["currency"], "amount_minor": value,
            "card_value_minor": value, "bonus_minor": 0, "points": points,
            "program": entry["program"], "auth_mode": txn.AUTH_ONLINE,
            EFFECTS_FIELD: {"card_value_minor": value, "bonus_minor": 0, "points": points,
                            "version": effects["version"], "legs": effects["legs"]},
        }
        digest = hashlib.sha256(fields_to_json(fields).encode()).digest()
        return StoredRecord(terminal, seq, txn.txn_id(terminal, seq), digest, b"", fields,
                            STATUS_ACCEPTED, None)

    def _settle_now(self) -> None:
        """Settle before asking the ledger for a hold again (the lag rule), within the wait
        a terminal can afford; skipped if another settlement holds the lock that long."""
        assert self._ledger_now is not None
        if not self._settle_lock.acquire(timeout=self.hold_settings.ledger_timeout_s):
            return
        try:
            settle(self.store, self.gateway_id, self._ledger_now)
        except sqlite3.Error as error:  # the authorization goes on; the ledger decides
            log.error("settlement before a hold failed: %s", error)
        finally:
            self._settle_lock.release()

    def snapshot(self) -> dict[str, Any]:
        with self.cards.lock:
            exposure = {"cards": dict(self.cards.exposure_by_card),
                        "terminals": dict(self.cards.exposure_by_terminal)}
            sun_verified = self.cards.sun_verified
            over_limit = dict(self.cards.offline_over_limit)
        return {"stats": self.stats.snapshot(), "stored": self.store.counters(),
                "batches": self.store.batch_summary(), "exposure": exposure,
                "sun_verified": sun_verified, "offline_over_limit": over_limit}


def _load_programs(path: str) -> dict[str, dict[str, Any]]:
    """A TOML program file (docs/programs.md), checked with its line numbers; or a JSON
    object of programs by id (as validated programs are exported), checked the same way."""
    if path.endswith(".json"):
        data: dict[str, dict[str, Any]] = json.loads(Path(path).read_text())
        return validate_programs({"programs": data})
    from tools.programs import load_programs

    return load_programs(path)


def _load_json(path: str) -> dict[str, int]:
    data: dict[str, int] = json.loads(Path(path).read_text())
    return data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tilltap gateway run", description=__doc__)
    parser.add_argument("--id", default="gw1")
    parser.add_argument("--broker-host", default="127.0.0.1")
    parser.add_argument("--broker-port", type=int, default=1883)
    parser.add_argument("--db", required=True, help="SQLite file of the gateway's journal")
    parser.add_argument("--terminals", required=True, help="terminal registry JSON")
    parser.add_argument("--programs", required=True,
                        help="card programs: TOML (docs/programs.md), or JSON by program id")
    parser.add_argument("--ledger-url", default=None)
    parser.add_argument("--limits", default=None, help="offline limits JSON (default: none)")
    parser.add_argument("--config-version", type=int, default=1)
    parser.add_argument("--settle-every-s", type=float, default=SETTLE_INTERVAL_S,
                        help="settle with the ledger (expiry first) this often; 0: never")
    parser.add_argument("--card-keys", default=None,
                        help="master-key file: cards must then prove themselves with a SUN")
    defaults = HoldSettings()
    parser.add_argument("--hold-ttl-s", type=float, default=defaults.hold_ttl_s,
                        help="local hold: from authorization to its transaction")
    parser.add_argument("--ledger-hold-ttl-s", type=int, default=defaults.ledger_hold_ttl_s,
                        help="ledger hold: from authorization to the settlement posting it")
    parser.add_argument("--stand-in-txn-minor-max", type=int,
                        default=defaults.stand_in_txn_minor_max,
                        help="largest card value approved while the ledger is out of reach")
    parser.add_argument("--stand-in-card-minor-max", type=int,
                        default=defaults.stand_in_card_minor_max,
                        help="card value per card approved while the ledger is out of reach")
    args = parser.parse_args(argv)
    try:
        hold_settings = HoldSettings(
            hold_ttl_s=args.hold_ttl_s, ledger_hold_ttl_s=args.ledger_hold_ttl_s,
            stand_in_txn_minor_max=args.stand_in_txn_minor_max,
            stand_in_card_minor_max=args.stand_in_card_minor_max)
    except ValueError as error:
        parser.error(str(error))
    try:
        programs = _load_programs(args.programs)
    except (ProtocolError, OSError, ValueError) as error:
        # An invalid program file never reaches a terminal: the gateway does not start.
        print(f"tilltap gateway run: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    gateway = Gateway(args.id, args.broker_host, args.broker_port, args.db,
                      TerminalRegistry.load(args.terminals), programs,
                      args.ledger_url, limits=_load_json(args.limits) if args.limits else None,
                      config_version=args.config_version,
                      card_keys=CardKeys.load(args.card_keys) if args.card_keys else None,
                      hold_settings=hold_settings, settle_interval_s=args.settle_every_s)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    gateway.start()
    print("gateway ready", flush=True)
    stop.wait()
    gateway.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
