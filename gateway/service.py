r"""The gateway service: wires the stages with bounded queues and runs them.

    broker --paho--> [txn queue] -> verify -> [ingest queue] -> ingest/commit -> [ack queue]
                 \-> [auth queue] -> authorize ------------------------------> /  -> acks -> broker
                 \-> [enrol queue] -> enrol -> ledger -> answer (gateway/enrol.py; on up/auth)
                 \-> status (verified inline, kept as terminal presence)
    presence, config versions, pending records -> fleet report -> ledger (gateway/fleet_report.py)

`tilltap gateway run` (tools/gateway_run.py: arguments and files) runs it until
SIGTERM/SIGINT. `Gateway.settle()` sends settlement batches to the ledger,
after `sweep_expiry` has written what expired on cards with no operation since (value and
points past their expiry become expire records, the ledger's breakage); `gateway run`
does it every `--settle-every-s` (300 s) on its own. Between those, records flow: within
`--post-within-s` (1 s) of an ingest commit that stored records, the settler posts what is
pending (no expiry sweep), so other stores and the back office see a sale within seconds
(issue 14 item 3). A post the ledger does not answer is tried again after
FLOW_RETRY_MIN_S, doubling to FLOW_RETRY_MAX_S while it stays away.

Programs are validated (protocol.programs) before the gateway starts: an invalid program
never reaches a terminal.

With a ledger, approved purchases paid from card value are held at the ledger, and a sweep
thread voids the holds no sale will post (gateway/ledger_holds.py). At start, the holds an
earlier run left are held again or voided (gateway/hold_recovery.py).

`reload_registry(path)` (SIGHUP to `gateway run`) reads the terminal registry file again and
swaps it in: added terminals are served and get their configuration, removed ones are
refused. A file that cannot be used is logged and the registry in use is kept.

Log lines of note carry an event name (docs/deployment.md "Logs"): `terminal_connected` and
`terminal_lost` from the terminals' signed status (the "online" each publishes when it
connects, the "offline" last will the broker publishes when it drops), `registry_reloaded`,
and the ledger's reachability from every call made to it (gateway/settle.py `LedgerReach`).
"""

from __future__ import annotations

import hashlib
import logging
import queue
import sqlite3
import threading
import time
from functools import partial
from typing import Any

from gateway import authorizations, hold_recovery, store_reports
from gateway.acks import AckOut, AckStage
from gateway.answered import Answered
from gateway.authorize import AUTH_COMMIT_WAIT_MS, Request
from gateway.card_auth import CardAuthenticator, CardKeys
from gateway.card_directory import CardDirectory
from gateway.card_feed import FeedResult, apply_changes
from gateway.cards import CardBook
from gateway.diag import DiagDesk
from gateway.enrol import (
    GREETING_REFRESH_S,
    EnrolStage,
    GreetingAuthorizeStage,
    Greetings,
    GreetingVerifier,
    enrol_route,
    take_greeting,
)
from gateway.expiry import EXPIRY_SEQ, expire_record
from gateway.fleet import FleetConfig
from gateway.fleet_report import FleetReporter, FleetView, pending_records
from gateway.greeting_refresh import GreetingRefresh
from gateway.ingest import IngestStage
from gateway.lease import Lease
from gateway.ledger_holds import HoldSettings, LedgerHolds
from gateway.mqtt import MqttLink, queue_route, timed_route
from gateway.offline_episodes import OfflineEpisodes
from gateway.registry import RegistryChange, RegistryInvalid, TerminalRegistry
from gateway.settle import LedgerReach, SettleResult, settle
from gateway.stage import OnDeath, exit_process, thread
from gateway.stats import Stats
from gateway.store import GatewayStore
from gateway.store_health import StoreUnavailable
from gateway.verify import Verified, Verifier
from gateway.verify_stage import Uplink, VerifyStage
from ledger.client import LedgerClient
from ledger.errors import LedgerError, LedgerUnavailable, NotFound
from ledger.limits import CHANGES_PAGE_MAX, SERVED_CARDS_PER_POST_MAX
from protocol import cbor, topics
from protocol.errors import AuthenticationError, ProtocolError
from protocol.programs import validate_programs

TXN_QUEUE_MAX = 20_000
AUTH_QUEUE_MAX = 1_000
ENROL_QUEUE_MAX = 100  # enrolments at the counters, each waiting for the ledger
INGEST_QUEUE_MAX = 20_000
ACK_QUEUE_MAX = 20_000
STOP_JOIN_S = 10.0
SETTLE_INTERVAL_S = 300.0  # `gateway run`: settle (and expire) every five minutes
POST_WITHIN_S = 1.0  # `gateway run`: committed records reach the ledger this soon
FLOW_RETRY_MIN_S = 1.0  # records the ledger did not take: asked again after this ...
FLOW_RETRY_MAX_S = 30.0  # ... doubling up to this while it stays away
DRAIN_POLL_S = 0.01
CONFIG_VERSION = "config.version"  # the last configuration version published
BLOCKS_CURSOR = "ledger.blocks_cursor"  # the ledger's block feed read up to this change
BLOCK_POLL_INTERVAL_S = 10.0  # how soon a block made at the ledger reaches this store
FEED_XID = "ledger.feed_xid"  # the ledger's card feed read up to this cursor (xid, id)
FEED_ID = "ledger.feed_id"
FEED_STARTED = "ledger.feed_started"  # 1 once the cursor was set (a new store: at the end)
CONFIG_DIGEST = "config.digest"  # of the programs and limits last started with (56 bits)
AUTH_EPOCHS = "auth.epochs"  # gateway starts: auth ids (and ledger hold ids) never repeat

log = logging.getLogger(__name__)


class Gateway:
    """The store gateway: its store, card book, ledger link and stages, wired once here.

    Every collaborator is built with all it needs (no state is set on it afterwards);
    `start` runs the stages, the sweeps and the MQTT link, `stop` drains and closes them.
    """

    def __init__(self, gateway_id: str, broker_host: str, broker_port: int, db_path: str,
                 registry: TerminalRegistry, programs: dict[str, dict[str, Any]],
                 ledger_url: str | None = None, mqtt5: bool = True,
                 limits: dict[str, int] | None = None, config_version: int = 1,
                 card_keys: CardKeys | None = None,
                 hold_settings: HoldSettings | None = None,
                 settle_interval_s: float | None = None,
                 post_within_s: float | None = None,
                 on_thread_death: OnDeath = exit_process,
                 broker_login: tuple[str, str] | None = None,
                 broker_ca: str | None = None, ledger_token: str | None = None,
                 ledger_ca: str | None = None,
                 block_poll_s: float | None = BLOCK_POLL_INTERVAL_S,
                 feed_poll_s: float | None = None, lease: Lease | None = None,
                 ledger_hold_url: str | None = None,
                 fleet_report_s: float | None = None,
                 greeting_refresh_s: float = GREETING_REFRESH_S) -> None:
        """`ledger_token`, `ledger_ca`: the gateway's ledger login and the CA its HTTPS
        certificate must chain to (`tilltap ledger login add`, `tilltap ledger tls`).
        `ledger_hold_url`: where holds (and card look-ups) go, a ledger process on the same
        books as `ledger_url`'s, which takes batches, feeds and reads (default: `ledger_url`).
        `block_poll_s`: how often the ledger's feed of card blocks is read (None: never);
        `feed_poll_s`: its card feed, other stores' transactions (gateway/card_feed.py).
        `settle_interval_s`: expire and settle this often; `post_within_s`: post committed
        records this soon after their commit (None or 0: only on the timer, or when asked).
        `on_thread_death(name, error)`: what happens when one of its threads dies of an
        exception nothing handled; by default the process stops (gateway/stage.py).
        `lease`: the store's lease, taken (gateway/lease.py): every store write and broker
        connect is fenced by it, so a process that lost it can neither write nor serve.
        `fleet_report_s`: report the terminals to the ledger this often (POST /v1/fleet,
        gateway/fleet_report.py; None: never; `gateway run`: FLEET_REPORT_INTERVAL_S)."""
        self.gateway_id = gateway_id
        self.on_thread_death = on_thread_death
        self.registry = registry
        programs = validate_programs({"programs": programs})
        self.stats = Stats()
        self.lease = lease
        self.store = GatewayStore(db_path, lease.fence if lease is not None else None)
        self.hold_settings = hold_settings or HoldSettings()
        self.ledger = (LedgerClient(ledger_url, token=ledger_token, ca_file=ledger_ca)
                       if ledger_url else None)
        # Calls made while a terminal waits for its authorization: short timeouts. Holds may
        # go to their own ledger process, so batches posting elsewhere never take its
        # interpreter from them (docs/ledger.md "Concurrency").
        self._ledger_now = (LedgerClient(ledger_hold_url or ledger_url,
                                         self.hold_settings.ledger_timeout_s,
                                         token=ledger_token, ca_file=ledger_ca)
                            if ledger_url else None)
        # A settlement a hold waits for is a batch: to the batches' ledger, as quickly.
        self._ledger_settle_now = (LedgerClient(ledger_url, self.hold_settings.ledger_timeout_s,
                                                token=ledger_token, ca_file=ledger_ca)
                                   if ledger_url else None)
        # Whether each ledger process answers, from every call made to it: logged on change.
        self.reach = LedgerReach(ledger_url) if ledger_url else None
        self.hold_reach = (LedgerReach(ledger_hold_url)
                           if ledger_hold_url and ledger_hold_url != ledger_url else self.reach)
        self.store.add_counters({AUTH_EPOCHS: 1})
        authorizations.prune(self.store)
        hotlist = self.store.hotlist()
        self._blocked_versions = self.store.hotlist_versions()
        self.fleet = FleetConfig(self._config_version(programs, limits or {}, config_version),
                                 programs, limits or {}, hotlist)
        # Approvals greet by first name the cards enrolled here, and those whose first look-up
        # at the ledger named their customer's (gateway/enrol.py); the birthday kept beside
        # the name prices a customer's birthday-week offers.
        self.greetings = Greetings(refresh_s=greeting_refresh_s)
        self.cards = CardBook(
            programs, self.store.load_cards(), CardAuthenticator(card_keys), set(hotlist),
            self.ledger is not None, self.hold_settings.hold_ttl_s,
            self.store.counters()[AUTH_EPOCHS], exposure=store_reports.exposure(self.store),
            offline_limits=self.fleet.limits, episodes=OfflineEpisodes(self.fleet.limits),
            birthday_of=self.greetings.birthday)
        # What was sent to each terminal, as its records arrive: for the offline re-check.
        self.answered = Answered({terminal: seq for terminal, (seq, _) in
                                  self.store.load_chain().items()}, time.time())
        # Cards registered centrally that this store has not seen: asked off the card lock.
        self.directory = CardDirectory(self._ledger_card) if self.ledger else None
        self.holds = (LedgerHolds(gateway_id, self.cards, self._ledger_now, self.hold_settings,
                                  self._settle_now, self.stats,
                                  on_voided=self._holds_ended, on_placing=self._intend_hold,
                                  reach=self.hold_reach)
                      if self._ledger_now else None)
        self._recover_holds()
        self.presence: dict[str, dict[str, Any]] = {}
        self._fleet_lock = threading.Lock()  # one configuration publish at a time
        self._settle_lock = threading.Lock()
        self._blocks_polling = threading.Lock()  # a try-lock: one poll of the feed at a time
        self._feed_polling = threading.Lock()  # the same for the card feed
        self.feed = FeedResult()  # what the card feed brought, counted since the start
        self._records_committed = threading.Event()  # set by ingest: records to post
        self._build_stages(broker_host, broker_port, mqtt5, broker_login, broker_ca)
        self._sweep_stop = threading.Event()
        # Settlement on a timer (with a ledger): it writes what expired first, so breakage
        # reaches the books without anyone asking (`tilltap gateway run --settle-every-s`);
        # and records flowing to the ledger soon after each commit (`--post-within-s`).
        self._settler = (thread("gateway-settle",
                                partial(self._settle_loop, settle_interval_s or None,
                                        post_within_s or None),
                                on_thread_death)
                         if self.ledger is not None and (settle_interval_s or post_within_s)
                         else None)
        # Blocks made at the ledger (any store, the back office) reach this store's
        # terminals in their signed configuration within BLOCK_POLL_INTERVAL_S.
        self._block_follower = (thread("gateway-blocks",
                                       partial(self._follow_blocks, block_poll_s),
                                       on_thread_death)
                                if self.ledger is not None and block_poll_s else None)
        # Other stores' transactions reach this store's cards within FEED_POLL_INTERVAL_S.
        self._feed_follower = (thread("gateway-feed", partial(self._follow_feed, feed_poll_s),
                                      on_thread_death)
                               if self.ledger is not None and feed_poll_s else None)
        self._sweeper = (thread("gateway-hold-sweep",
                                partial(self.holds.run_sweeps, self._sweep_stop), on_thread_death)
                         if self.holds else None)
        # The terminals' presence and health reach the back office's fleet page.
        self.fleet_reporter = (FleetReporter(self._fleet_view, self.ledger, self.reach,
                                             self._sweep_stop, fleet_report_s)
                               if self.ledger is not None and fleet_report_s else None)
        self._fleet_reporting = (thread("gateway-fleet-report", self.fleet_reporter.run,
                                        on_thread_death)
                                 if self.fleet_reporter is not None else None)

    def _holds_ended(self, ledger_hold_ids: list[str]) -> None:
        """The sweep voided these ledger holds: the store stops counting them as open. If
        it cannot commit now, they stay open in it and a restart voids them again (the
        ledger answers a second void as done); the sweep goes on."""
        try:
            authorizations.end_holds(self.store, ledger_hold_ids)
        except StoreUnavailable as error:
            log.warning("%d voided ledger holds not noted as ended: %s", len(ledger_hold_ids),
                        error.detail, extra={"event": "holds_not_noted",
                                             "holds": len(ledger_hold_ids)})

    def _recover_holds(self) -> None:
        """The holds an earlier run left: live ones held locally again, the rest voided at
        the ledger by the sweep, never waited for here (gateway/hold_recovery.py)."""
        recovery = hold_recovery.recover(self.store, self.cards.holds, time.time(),
                                         self.hold_settings.hold_ttl_s)
        if self.holds is not None:
            self.holds.queue_voids(recovery.void)
        counts = {"restored": len(recovery.restored), "voided": len(recovery.void),
                  "posted": len(recovery.ended)}
        for name, count in counts.items():
            if count:
                self.stats.add("holds_recovered." + name, count)
        if any(counts.values()):
            log.info("holds of the last run: %d held again, %d to void, %d posted by records",
                     len(recovery.restored), len(recovery.void), len(recovery.ended),
                     extra={"event": "holds_recovered", **counts})

    def _build_stages(self, broker_host: str, broker_port: int, mqtt5: bool,
                      broker_login: tuple[str, str] | None, broker_ca: str | None) -> None:
        """The bounded queues, the MQTT link and the four stages between them."""
        self._verifier = Verifier(self.registry)
        self.txn_queue: queue.Queue[Uplink | None] = queue.Queue(TXN_QUEUE_MAX)
        self.auth_queue: queue.Queue[Request | None] = queue.Queue(AUTH_QUEUE_MAX)
        self.enrol_queue: queue.Queue[Request | None] = queue.Queue(ENROL_QUEUE_MAX)
        self.ingest_queue: queue.Queue[Verified | None] = queue.Queue(INGEST_QUEUE_MAX)
        self.ack_queue: queue.Queue[AckOut | None] = queue.Queue(ACK_QUEUE_MAX)
        # A technician's diag requests (gateway/diag.py, POST /diag/<terminal> on the
        # metrics server): answers are verified on paho's thread, as statuses are.
        self.diag = DiagDesk(self.registry, self.stats,
                             lambda topic, payload: self.mqtt.publish(topic, payload))
        self.mqtt = MqttLink(
            broker_host, broker_port, f"tilltap-gateway-{self.gateway_id}", self.stats,
            {topics.LEAF_TXN: queue_route(self.txn_queue),
             # Enrolment requests share up/auth with authorizations (gateway/enrol.py).
             topics.LEAF_AUTH: enrol_route(timed_route(self.auth_queue),
                                           timed_route(self.enrol_queue)),
             topics.LEAF_STATUS: self._on_status,
             topics.LEAF_DIAG: self.diag.on_answer},
            mqtt5=mqtt5, on_death=self.on_thread_death, login=broker_login,
            ca_path=broker_ca,
            before_connect=self.lease.confirm if self.lease is not None else None,
        )  # fmt: skip
        death = self.on_thread_death
        self.verify_stage = VerifyStage(self._verifier, self.stats, self.txn_queue,
                                        self.ingest_queue, self.ack_queue, death, self.answered)
        self.ingest_stage = IngestStage(self.store, self.cards, self.stats, self.ingest_queue,
                                        self.ack_queue,
                                        self.holds.wake if self.holds is not None else None,
                                        self.directory, death,
                                        records_committed=self._records_committed.set)
        # The answering stages may seal for a terminal a reload removed after its message
        # verified (gateway/registry.py); the verifier refuses it from then on.
        answers = self.registry.for_answers()
        # A known card's greeting and birthday asked of the ledger again, off the counter's
        # path, when its last look-up is old (gateway/greeting_refresh.py).
        self.greeting_refresh = (
            GreetingRefresh(self.greetings, self._ledger_card, self.stats,
                            lambda card: card in self.cards.cards, on_death=death)
            if self._ledger_now is not None else None)
        self.auth_stage = GreetingAuthorizeStage(
            self.greetings, GreetingVerifier(self.registry), answers, self.cards, self.stats,
            self.mqtt.publish, self.auth_queue, self.ack_queue, self.holds, self.directory,
            death, self.store, self.answered,
            tapped=self.greeting_refresh.tapped if self.greeting_refresh is not None else None)
        # The ledger's customers, asked with the short timeout of calls a counter waits for.
        self.enrol_stage = EnrolStage(self._verifier, answers, self.cards, self.stats,
                                      self.mqtt.publish, self.enrol_queue, self.ack_queue,
                                      self._ledger_settle_now, self.greetings, self.directory,
                                      self.reach, death)
        self.ack_stage = AckStage(answers, self.mqtt.publish, self.stats, self.ack_queue,
                                  on_death=death, answered=self.answered)

    def _intend_hold(self, hold_id: str, auth_id: str, request: dict[str, Any]) -> None:
        """Kept before the ledger is asked (authorizations.intend): a hold the gateway could
        not keep its approval for is voided at the next start, never left to the ledger's
        ttl."""
        authorizations.intend(self.store, auth_id, request["terminal"], request["card"],
                              hold_id, AUTH_COMMIT_WAIT_MS)

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
        self.store.add_counters({CONFIG_DIGEST: digest - (last_digest or 0),
                                 CONFIG_VERSION: version - last})
        return version

    def start(self) -> None:
        for stage in (self.ack_stage, self.ingest_stage, self.verify_stage, self.auth_stage,
                      self.enrol_stage):
            stage.start()
        if self.greeting_refresh is not None:
            self.greeting_refresh.start()
        if self._sweeper is not None:
            self._sweeper.start()
        if self._settler is not None:
            self._settler.start()
        if self._block_follower is not None:
            self._block_follower.start()
        if self._feed_follower is not None:
            self._feed_follower.start()
        if self._fleet_reporting is not None:
            self._fleet_reporting.start()
        self.mqtt.start()
        self._publish_fleet()
        log.info("gateway %s started: %d terminals registered", self.gateway_id,
                 len(self.registry.ids()),
                 extra={"event": "gateway_started", "terminals": len(self.registry.ids())})

    def _publish_fleet(self) -> None:
        with self._fleet_lock:  # a reload and a block may publish at once: one after other
            with self.cards.lock:
                served = {card for card in self.fleet.hotlist if card in self.cards.cards}
            self.fleet.publish(
                self.registry,
                lambda topic, payload: self.mqtt.publish(topic, payload, retain=True), served)
            # What terminals knew was blocked, and from which version: an offline sale naming
            # that version or a later one is refused (gateway/cards.py `_config_refusal`).
            blocked_in = {card: self._blocked_versions.get(card) or self.fleet.version
                          for card in self.fleet.carried}
            with self.cards.lock:
                self.cards.blocked_in = blocked_in

    def reload_registry(self, path: str) -> RegistryChange | None:
        """Read the terminal registry in `path` again and serve what it says from now on:
        terminals it adds get their configuration, terminals it drops are refused. Returns
        what changed, or None (logged) if the file cannot be used: the registry in use stays.

        The file is read and checked before anything is touched, and without any lock the
        stages take; the swap is one assignment (gateway/registry.py)."""
        try:
            fresh = TerminalRegistry.load(path)
        except (OSError, RegistryInvalid) as error:
            detail = error.strerror if isinstance(error, OSError) and error.strerror else error
            log.error("registry %s not reloaded, %d terminals kept: %s", path,
                      len(self.registry.ids()), detail,
                      extra={"event": "registry_reload_failed",
                             "terminals": len(self.registry.ids())})
            return None
        change = self.registry.replace(fresh)
        for terminal in change.removed:
            self.presence.pop(terminal, None)
        if change.added or change.changed:
            self._publish_fleet()  # the same version: those it had are sent the same bytes
        log.info("registry reloaded from %s: %d terminals, %d added, %d removed, %d changed",
                 path, change.terminals, len(change.added), len(change.removed),
                 len(change.changed),
                 extra={"event": "registry_reloaded", "terminals": change.terminals,
                        "added": len(change.added), "removed": len(change.removed),
                        "changed": len(change.changed),
                        "added_terminals": list(change.added),
                        "removed_terminals": list(change.removed)})
        return change

    def block_card(self, card: str, reason: str = "reported lost") -> None:
        """Put a card on the hotlist: durable, enforced here, pushed to every terminal."""
        version = self.fleet.version + 1  # the first configuration that carries it
        self.store.block(card, reason, version)
        self._blocked_versions[card] = version
        self.store.add_counters({CONFIG_VERSION: 1})
        with self.cards.lock:
            self.cards.hotlist.add(card)
        self.fleet.hotlist = [*(c for c in self.fleet.hotlist if c != card), card]
        self.fleet.version = version
        self._publish_fleet()

    def stop(self) -> None:
        """Stop taking messages, finish what is queued, commit, ack, disconnect."""
        self.mqtt.stop()
        self.txn_queue.put(None)
        self.verify_stage.join(STOP_JOIN_S)
        self.auth_queue.put(None)
        self.auth_stage.join(STOP_JOIN_S)
        self.enrol_queue.put(None)
        self.enrol_stage.join(STOP_JOIN_S)
        if self.greeting_refresh is not None:
            self.greeting_refresh.stop(STOP_JOIN_S)
        self.ingest_queue.put(None)
        self.ingest_stage.join(STOP_JOIN_S)
        self.ack_queue.put(None)
        self.ack_stage.join(STOP_JOIN_S)
        self._sweep_stop.set()
        self._records_committed.set()  # the settler stops waiting for records
        if self.holds is not None:
            self.holds.wake()
        if self._sweeper is not None:
            self._sweeper.join(STOP_JOIN_S)  # one last sweep voids what it can
        if self._settler is not None:
            self._settler.join(STOP_JOIN_S)
        if self._block_follower is not None:
            self._block_follower.join(STOP_JOIN_S)
        if self._feed_follower is not None:
            self._feed_follower.join(STOP_JOIN_S)
        if self._fleet_reporting is not None:
            self._fleet_reporting.join(STOP_JOIN_S)
        self.store.close()
        log.info("gateway %s stopped", self.gateway_id, extra={"event": "gateway_stopped"})

    def _ledger_card(self, card: str) -> dict[str, Any] | None:
        """A card registered centrally, or None (unknown, or the ledger is out of reach).
        Asked off the card book's lock (gateway/card_directory.py), with a short timeout."""
        assert self._ledger_now is not None
        try:
            found = self._ledger_now.card(card, serving=self.gateway_id)
        except NotFound:
            found = None
        except LedgerUnavailable as error:
            if self.hold_reach is not None:
                self.hold_reach.lost(error)
            return None
        if self.hold_reach is not None:
            self.hold_reach.answered()
        return take_greeting(self.greetings, card, found)

    def _on_status(self, topic: str, payload: bytes) -> bool:
        try:
            fields = self._verifier.status(topic, payload)
        except ProtocolError as error:
            self.stats.rejected(error.reason)
            return True
        terminal, state = fields["terminal"], fields["state"]
        merchant = topics.parse(topic)[0]  # it verified: the topic is the terminal's own
        before = self.presence.get(terminal, {}).get("state")
        # When it came, by the gateway's clock: the fleet page's "last seen".
        self.presence[terminal] = {**fields, "heard_at": time.time()}
        self.stats.add("status." + state)
        if state == "offline" and before not in (None, "offline"):
            log.warning("terminal %s lost (its last will: offline)", terminal,
                        extra={"event": "terminal_lost", "terminal": terminal,
                               "merchant": merchant})
        elif state != "offline" and before in (None, "offline"):
            log.info("terminal %s connected (%s)", terminal, state,
                     extra={"event": "terminal_connected", "terminal": terminal,
                            "merchant": merchant, "status": state,
                            "firmware": fields.get("firmware"),
                            "journal_depth": fields.get("journal_depth")})
        return True

    def _fleet_view(self) -> FleetView:
        """The fleet as it is now, for the ledger's fleet page: short locks, no I/O under
        them (the store read takes only the store's own lock)."""
        presence = self.presence.copy()  # one C call: consistent while paho's thread writes
        with self.cards.lock:
            named = dict(self.cards.config_named)
        terminals: dict[str, str] = {}
        for terminal in self.registry.ids():
            try:
                terminals[terminal] = self.registry.get(terminal).merchant
            except AuthenticationError:  # a reload removed it meanwhile
                continue
        return FleetView(self.gateway_id, terminals, presence, self.fleet.version, named,
                         pending_records(self.store))

    def idle(self) -> bool:
        """True when every queue is empty (what has arrived has been committed and acked)."""
        return all(q.empty() for q in (self.txn_queue, self.ingest_queue, self.ack_queue,
                                       self.auth_queue))

    def settle(self, now_s: float | None = None) -> SettleResult:
        """Write what expired up to `now_s` (default: now), then settle with the ledger."""
        assert self.ledger is not None, "settle needs a ledger URL"
        self.sweep_expiry(now_s)
        with self._settle_lock:
            return settle(self.store, self.gateway_id, self.ledger, self.reach)

    def _settle_loop(self, interval_s: float | None, post_within_s: float | None) -> None:
        """Settle every `interval_s` (expiry first), and post committed records within
        `post_within_s` of their commit; until the gateway stops."""
        assert self.ledger is not None
        timed_at = time.monotonic() + interval_s if interval_s else None
        retry_s = FLOW_RETRY_MIN_S
        while not self._sweep_stop.is_set():
            wait_s = None if timed_at is None else max(0.0, timed_at - time.monotonic())
            committed = (self._records_committed.wait(wait_s) if post_within_s
                         else self._sweep_stop.wait(wait_s))
            if self._sweep_stop.is_set():
                return
            if timed_at is not None and time.monotonic() >= timed_at:
                assert interval_s is not None
                timed_at = time.monotonic() + interval_s
                self._settle_timed()
                continue
            if not committed or post_within_s is None:
                continue
            # Let the records of the next moments join this batch (one post, not many).
            if self._sweep_stop.wait(post_within_s):
                return
            self._records_committed.clear()
            if self._post_flow():
                retry_s = FLOW_RETRY_MIN_S
            else:  # not taken: ask again later, without a commit to wake us
                if self._sweep_stop.wait(retry_s):
                    return
                retry_s = min(2 * retry_s, FLOW_RETRY_MAX_S)
                self._records_committed.set()

    def _settle_timed(self) -> None:
        """The timed turn: expiry written, then everything settled."""
        assert self.ledger is not None
        # An expiry sweep that cannot commit ends the process (the thread dies), as
        # ingest does: the card states in memory are then ahead of the store.
        self.sweep_expiry()
        try:
            with self._settle_lock:
                result = settle(self.store, self.gateway_id, self.ledger, self.reach)
        except (sqlite3.Error, OSError, StoreUnavailable) as error:
            # the next turn tries again
            log.error("timed settlement failed: %s", error,
                      extra={"event": "settlement_failed"})
            return
        if result.refused:
            log.error("ALARM settlement refused: %s", result.refused,
                      extra={"event": "alarm", "reason": "settlement_refused",
                             "refused": len(result.refused)})

    def _post_flow(self) -> bool:
        """Post the records committed since the last post; False if some stay pending (the
        ledger did not answer, or the store could not be read)."""
        assert self.ledger is not None
        try:
            with self._settle_lock:
                result = settle(self.store, self.gateway_id, self.ledger, self.reach)
        except (sqlite3.Error, OSError, StoreUnavailable) as error:
            log.error("posting records failed: %s", error, extra={"event": "settlement_failed"})
            return False
        if result.refused:
            log.error("ALARM settlement refused: %s", result.refused,
                      extra={"event": "alarm", "reason": "settlement_refused",
                             "refused": len(result.refused)})
        if result.pending:  # each retry: debug; the ledger going away is one line (reach)
            log.debug("ledger did not take %d batches; asked again later",
                      len(result.pending))
        self.stats.add("flow_posts")
        return not result.pending

    def _follow_blocks(self, interval_s: float) -> None:
        """Poll the ledger's feed of card blocks (GET /v1/blocks) from the cursor kept in the
        store; a block or unblock the ledger made is made here too (and pushed to the
        terminals). The ledger out of reach: the next turn asks again."""
        assert self.ledger is not None
        while not self._sweep_stop.wait(interval_s):
            self.follow_blocks_once()

    def follow_blocks_once(self) -> int:
        """One poll of the ledger's block feed; returns the changes applied here. Polls do
        not overlap (one already running: 0), so no change is applied twice."""
        assert self.ledger is not None
        if not self._blocks_polling.acquire(blocking=False):
            return 0
        try:
            return self._follow_blocks_from_cursor()
        finally:
            self._blocks_polling.release()

    def _follow_blocks_from_cursor(self) -> int:
        assert self.ledger is not None
        cursor = self.store.counters().get(BLOCKS_CURSOR, 0)
        try:
            feed = self.ledger.block_changes(cursor)
        except LedgerError as error:
            self._feed_failed("block feed", error)
            return 0
        if self.reach is not None:
            self.reach.answered()
        applied = 0
        for change in feed.get("blocks", []):
            card, blocked = change["card"], bool(change["blocked"])
            if blocked and card not in self.cards.hotlist:
                self.block_card(card, f"blocked at the ledger: {change.get('reason', '')}")
                applied += 1
            elif not blocked and card in self.cards.hotlist:
                self.unblock_card(card)
                applied += 1
        following = int(feed.get("next", cursor))
        if following != cursor:
            self.store.add_counters({BLOCKS_CURSOR: following - cursor})
        if applied:
            log.info("card blocks from the ledger: %d applied (cursor %d)", applied, following,
                     extra={"event": "card_blocks_applied", "applied": applied})
        return applied

    def _follow_feed(self, interval_s: float) -> None:
        """Read the ledger's card feed every `interval_s` (at once again after a full page)."""
        while not self._sweep_stop.wait(interval_s):
            while self.follow_feed_once() == CHANGES_PAGE_MAX and not self._sweep_stop.is_set():
                pass

    def follow_feed_once(self) -> int:
        """One read of the card feed, applied here; returns the changes read. Reads do not
        overlap (one already running: 0), so no change is applied twice."""
        assert self.ledger is not None
        if not self._feed_polling.acquire(blocking=False):
            return 0
        try:
            return self._follow_feed_from_cursor()
        finally:
            self._feed_polling.release()

    def _follow_feed_from_cursor(self) -> int:
        """The cursor and the cards it changed are committed together: a change is applied
        once, whenever the process stops. A new store starts at the feed's end: it serves
        no card yet, and each card it takes on comes with its position in the feed."""
        assert self.ledger is not None
        counters = self.store.counters()
        started = bool(counters.get(FEED_STARTED))
        xid, change_id = counters.get(FEED_XID, 0), counters.get(FEED_ID, 0)
        try:
            # The feed is filtered to the cards the ledger knows this gateway serves: it is
            # told of the others first (all of them once per start), so none is left out.
            self._note_served()
            feed = self.ledger.card_changes(f"{xid}.{change_id}" if started else "end",
                                            serving=self.gateway_id)
        except LedgerError as error:
            self._feed_failed("card feed", error)
            return 0
        if self.reach is not None:
            self.reach.answered()
        if self.holds is not None:
            self.holds.stand_in.fresh()  # stand-in may rely on the card book this long
        next_xid, _, next_id = str(feed["next"]).partition(".")
        moved = {FEED_XID: int(next_xid) - xid, FEED_ID: int(next_id) - change_id,
                 FEED_STARTED: 0 if started else 1}
        changes = feed.get("changes", [])
        with self.ingest_stage.commit_lock:
            with self.cards.lock:
                result = apply_changes(self.cards.states, changes, self.gateway_id)
                cards = self.cards.states.take_dirty()
            if any(moved.values()):
                self.store.commit([], {}, cards, moved)
        for name in ("applied", "forced", "own", "not_served", "included", "taps"):
            count = getattr(result, name)
            setattr(self.feed, name, getattr(self.feed, name) + count)
            if count:
                self.stats.add("feed." + name, count)
        if result.applied or result.forced:
            log.info("card feed: %d changes of other stores applied, %d forced (at %s)",
                     result.applied, result.forced, feed["next"],
                     extra={"event": "card_feed_applied", "applied": result.applied,
                            "forced": result.forced})
        return len(changes)

    def _note_served(self) -> None:
        """Tell the ledger of the cards served here that it may not know of (CardStates
        `unnoted`), in pages; those not told yet are told on the next read."""
        assert self.ledger is not None
        with self.cards.lock:
            cards = sorted(self.cards.states.unnoted)
        for first in range(0, len(cards), SERVED_CARDS_PER_POST_MAX):
            page = cards[first:first + SERVED_CARDS_PER_POST_MAX]
            self.ledger.serve_cards(page, serving=self.gateway_id)
            with self.cards.lock:
                self.cards.states.unnoted.difference_update(page)

    def _feed_failed(self, feed: str, error: LedgerError) -> None:
        """A read of a ledger feed that failed: a ledger away is logged once (`reach`), a
        refusal (a login without the right) on every read, as a person must act."""
        if isinstance(error, LedgerUnavailable):
            log.debug("ledger's %s not read: %s", feed, error)
            if self.reach is not None:
                self.reach.lost(error)
            return
        if self.reach is not None:
            self.reach.answered()
        log.warning("ledger's %s refused: %s", feed, error,
                    extra={"event": "ledger_feed_refused", "feed": feed.replace(" ", "_"),
                           "reason": error.reason})

    def unblock_card(self, card: str) -> None:
        """Take a card off the hotlist: durable, here and in every terminal's configuration."""
        version = self.fleet.version + 1
        self.store.unblock(card)
        self._blocked_versions.pop(card, None)
        self.store.add_counters({CONFIG_VERSION: 1})
        with self.cards.lock:
            self.cards.hotlist.discard(card)
        self.fleet.hotlist = [c for c in self.fleet.hotlist if c != card]
        self.fleet.version = version
        self._publish_fleet()

    def sweep_expiry(self, now_s: float | None = None) -> int:
        """Expire value and points on cards idle up to `now_s`; returns the records written.

        Runs with the ingest stage's commit lock, so a card's state is written in the order
        it changed (a record's commit never overwrites the expiry that followed it).
        """
        now_s = time.time() if now_s is None else now_s
        with self.ingest_stage.commit_lock:
            with self.cards.lock:
                expired = self.cards.states.sweep(now_s)
                cards = self.cards.states.take_dirty()
                first = self.store.counters().get(EXPIRY_SEQ, 0) + 1
                rows = [expire_record(self.gateway_id, first + n, card, self.cards.cards[card],
                                      effects, now_s)
                        for n, (card, effects) in enumerate(expired)]
            self.store.commit(rows, {}, cards, {EXPIRY_SEQ: len(rows)} if rows else {})
        self.stats.add("expire_records", len(rows))
        return len(rows)

    def _settle_now(self) -> None:
        """Settle before asking the ledger for a hold again (the lag rule), within the wait
        a terminal can afford; skipped if another settlement holds the lock that long."""
        assert self._ledger_settle_now is not None
        if not self._settle_lock.acquire(timeout=self.hold_settings.ledger_timeout_s):
            return
        try:
            settle(self.store, self.gateway_id, self._ledger_settle_now, self.reach)
        except (sqlite3.Error, StoreUnavailable) as error:  # the ledger decides
            log.error("settlement before a hold failed: %s", error,
                      extra={"event": "settlement_failed"})
        finally:
            self._settle_lock.release()

    def health(self) -> dict[str, Any]:
        """{"store": {"status": "ok" | "store_unavailable", "since", "error", "episodes"}}:
        while the store cannot commit, nothing is approved (gateway/store_health.py)."""
        return {"store": self.store.health.snapshot()}

    def snapshot(self) -> dict[str, Any]:
        with self.cards.lock:
            exposure = {"cards": dict(self.cards.exposure_by_card),
                        "terminals": dict(self.cards.exposure_by_terminal)}
            sun_verified = self.cards.sun_verified
            over_limit = dict(self.cards.offline_over_limit)
        return {"stats": self.stats.snapshot(), "health": self.health(),
                "stored": self.store.counters(),
                "batches": store_reports.batch_summary(self.store), "exposure": exposure,
                "sun_verified": sun_verified, "offline_over_limit": over_limit,
                "hotlist_left_out": self.fleet.hotlist_left_out}
