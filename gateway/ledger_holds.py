"""Two-phase money at the ledger, the gateway's side: hold what it approves, stand in when the
ledger cannot answer, void the holds no sale will post.

An approved purchase paid from card value (card_value_minor > 0) or redeeming points
(redeem_points > 0), or a cash-out, is decided first on the gateway's card book, under its
lock, which places the local hold (it guards against two terminals of this store spending
the same value or points). Then, off the lock, the ledger is asked to hold the same amount
and points, in one hold, under `ledger_hold_id(gateway_id, auth_id)`: other stores see the
card's points only at the ledger, so without a hold two stores could both redeem them::

    place_hold answers              the authorization
    open                        ->  approved online; the local hold now stands for the ledger's
    card_unknown                ->  approved online on the card book alone (the lag rule)
    insufficient_value          ->  settle what this gateway has not settled, ask once more
    or insufficient_points          (the lag rule); still refused: decline with that reason
    card_replayed               ->  decline card_replayed: the hold carries the tap's SUN
                                    read counter, which another store (or this one) had
                                    accepted before (docs/ledger.md "SUN read counters")
    company_budget              ->  decline company_budget: the card's company has spent
                                    and holds its shared budget, at every store together
                                    (docs/ledger.md "Company budgets"); no settling first:
                                    this store's unsettled sales only add to the spend
    card_expired                ->  decline card_expired: the ledger's engine state of the
                                    card says its value expired (the card book, which
                                    declines so first, only misses it when behind)
    reward_out_of_stock         ->  decline reward_out_of_stock: the hold names the reward
                                    item the points pay for, and the ledger counts none of
                                    it left unheld on this store's shelf (docs/programs.md
                                    "Reward stock")
    offer_used                  ->  decline offer_used: the hold names the card's targeted
                                    offers the sale gets (a purchase paid in cash that gets
                                    one is held too, for no value), and another store's sale
                                    holds or took the last use of one (ledger/grant_holds_sql.py);
                                    the card feed brings that sale here within seconds, and
                                    the sale asked again is priced without the offer
    other refusal               ->  decline with it if it is a protocol reason
                                    (currency_mismatch), else ledger_refused, ALARM logged
    LedgerUnavailable           ->  stand in: approve on the card book alone, auth_mode 3
                                    (stand_in), within the stand-in limits, else decline
                                    stand_in_limit; void the hold later, in case it was placed.
                                    A sale redeeming points is never stood in for: declined
                                    redeem_needs_online

**Lag rule.** The ledger knows only what has been settled: value loaded at this store and
not settled yet (an issue or top-up of today), or points earned here today, is news to it,
so it may refuse a hold the card book rightly approved. Two cases, both decided without
guessing:

- `card_unknown`: no settled batch has named the card, so it was issued here and every bit of
  its value is this gateway's, unsettled; no other gateway can spend it (they ask the ledger
  and learn nothing). The card book's decision stands, with no ledger hold.
- `insufficient_value` or `insufficient_points`: the gateway settles its pending records (at
  most one settlement, within the terminal's wait) and asks for the full amount and points
  once more; a second refusal is the ledger's word (the card was spent, or its points
  redeemed, elsewhere), and declines with it.

A hold is always for the full amount and points: a settled sale cannot post a hold smaller
than itself (`hold_exceeded`), so "hold only the part the ledger cannot know of" would leave
holds that no settlement can post. A settlement with nothing new costs two queries of the
local store.

**Stand-in** counts, per card and for the whole store, the card value approved while the
ledger could not be reached; the counts start again whenever the ledger answers anything.
It stands in only on a fresh card book: one that heard from the ledger (an answer, or a read
of its card feed, which brings what other stores did) within STAND_IN_SNAPSHOT_AGE_MAX_S. A
gateway that starts while the ledger is away has heard nothing yet and does not stand in: it
cannot know how old its card book is. What a store can take from one card beyond its value
before the center hears of it is thus bounded by `stand_in_card_minor_max`, and from all
cards by `stand_in_store_minor_max` (docs/protocol.md 5.3). Points are never redeemed
standing in: the card book knows only this store's points, and the ledger the only count
every store shares, so a redemption it cannot hold could spend points another store has
just redeemed (there is no stand-in limit for points that would bound that loss). After an
unanswered call the ledger is not asked again for LEDGER_RETRY_MIN_S, doubling to
LEDGER_RETRY_MAX_S while it stays away, so a hanging ledger does not hold every authorization
for a timeout.

**Voids.** A hold no record will post is voided: its local hold expired (the sale never
arrived), it was declined after the hold was placed, or the call went unanswered (it may have
been placed). `sweep` runs off the card book's lock, every VOID_SWEEP_INTERVAL_S; a void the
ledger cannot take now stays queued (at most VOIDS_PENDING_MAX; past that it is dropped,
counted, and the ledger's ttl expires it, or the next restart queues it again). Each void the
ledger took is reported (`on_voided`) so the store stops counting its hold as open; a
restarted gateway queues the voids of its earlier run's holds (gateway/hold_recovery.py).
A record that arrives after its local hold expired settles without the hold
(gateway/cards.py), so a voided hold is never posted.

Failures come from `ledger.errors` (LedgerRejected: HoldRefused, NotFound, BatchInvalid...;
LedgerUnavailable); none leaves this module: each ends as an answer to the terminal.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.cards import CardBook
from gateway.local_holds import HOLD_TTL_S
from gateway.settle import LedgerReach
from gateway.stats import Stats
from gateway.store_health import StoreUnavailable
from ledger.errors import HoldRefused, LedgerRejected, LedgerUnavailable, NotFound
from protocol import txn
from protocol.reasons import (
    CARD_BLOCKED,
    CARD_EXPIRED,
    CARD_REPLAYED,
    CARD_UNKNOWN,
    COMPANY_BUDGET,
    CURRENCY_MISMATCH,
    HOST_UNAVAILABLE,
    INSUFFICIENT_POINTS,
    INSUFFICIENT_VALUE,
    LEDGER_REFUSED,
    OFFER_USED,
    REDEEM_NEEDS_ONLINE,
    REWARD_OUT_OF_STOCK,
    STAND_IN_LIMIT,
)

LEDGER_HOLD_TTL_S = 24 * 3600
"""How long the ledger keeps a hold: until the settlement that posts it, so at least the
settlement interval (the ledger still posts an expired hold, but stops counting it at once)."""
LEDGER_TIMEOUT_S = 2.0
"""Longest wait for one hold call: below the terminal's AUTH_TIMEOUT_MS (3 s)."""
STAND_IN_TXN_MINOR_MAX = 5_000
STAND_IN_CARD_MINOR_MAX = 10_000
STAND_IN_STORE_MINOR_MAX = 100_000
"""Card value the whole store approves standing in, until the ledger answers again."""
STAND_IN_SNAPSHOT_AGE_MAX_S = 900.0
"""No stand-in on a card book older than this: since the ledger last answered or its card
feed was last read (other stores' spending is unknown beyond it)."""
STAND_IN_CARDS_MAX = 100_000
LEDGER_RETRY_MIN_S = 1.0
LEDGER_RETRY_MAX_S = 30.0
VOID_SWEEP_INTERVAL_S = 5.0
VOIDS_PENDING_MAX = 10_000

PASSED_ON = frozenset({INSUFFICIENT_VALUE, INSUFFICIENT_POINTS, CARD_UNKNOWN, CURRENCY_MISMATCH,
                       CARD_BLOCKED, CARD_REPLAYED, COMPANY_BUDGET, REWARD_OUT_OF_STOCK,
                       CARD_EXPIRED, OFFER_USED})
"""Ledger refusals that are protocol reason codes too: the terminal is told them as they are."""
LAGGING = frozenset({INSUFFICIENT_VALUE, INSUFFICIENT_POINTS})
"""Ledger refusals that may only mean it has not been told yet (the lag rule): settle, ask
once more."""

log = logging.getLogger(__name__)


class HoldLedger(Protocol):
    """What this module needs of `ledger.client.LedgerClient` (fakes implement it in tests)."""

    def place_hold(self, hold_id: str, card: str, currency: str, amount_minor: int,
                   ttl_s: int, terminal: str, merchant: str,
                   points: int = 0, sun_counter: int | None = None,
                   reward: str | None = None,
                   grants: tuple[str, ...] = ()) -> dict[str, Any]: ...

    def void_hold(self, hold_id: str) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class HoldSettings:
    """The configurable limits of holds and stand-in (`tilltap gateway run --help`)."""

    hold_ttl_s: float = HOLD_TTL_S
    """Local hold: from the authorization until its transaction arrives."""
    ledger_hold_ttl_s: int = LEDGER_HOLD_TTL_S
    ledger_timeout_s: float = LEDGER_TIMEOUT_S
    stand_in_txn_minor_max: int = STAND_IN_TXN_MINOR_MAX
    stand_in_card_minor_max: int = STAND_IN_CARD_MINOR_MAX
    stand_in_store_minor_max: int = STAND_IN_STORE_MINOR_MAX
    stand_in_snapshot_age_max_s: float = STAND_IN_SNAPSHOT_AGE_MAX_S

    def __post_init__(self) -> None:
        """ValueError for settings that cannot work together."""
        # Two hold calls and a settlement fit in the local hold's life, so a hold the ledger
        # placed still has its local hold when the answer comes (unless the clock jumps).
        if self.hold_ttl_s <= 3 * self.ledger_timeout_s:
            raise ValueError(f"hold_ttl_s must be over 3 x ledger_timeout_s"
                             f" ({3 * self.ledger_timeout_s:g} s)")
        if self.ledger_hold_ttl_s < self.hold_ttl_s:
            raise ValueError("ledger_hold_ttl_s must be at least hold_ttl_s")
        if min(self.stand_in_txn_minor_max, self.stand_in_card_minor_max,
               self.stand_in_store_minor_max, self.stand_in_snapshot_age_max_s) < 0:
            raise ValueError("stand-in limits cannot be negative")


def ledger_hold_id(gateway_id: str, auth_id: str) -> str:
    """The ledger's id of an authorization's hold: auth ids are unique per gateway."""
    return f"{gateway_id}-{auth_id}"


class StandIn:
    """Card value approved per card and per store while the ledger is out of reach, against
    the limits, on a card book heard from the ledger recently enough."""

    def __init__(self, settings: HoldSettings,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.txn_minor_max = settings.stand_in_txn_minor_max
        self.card_minor_max = settings.stand_in_card_minor_max
        self.store_minor_max = settings.stand_in_store_minor_max
        self.snapshot_age_max_s = settings.stand_in_snapshot_age_max_s
        self.clock = clock
        self.by_card: dict[str, int] = {}
        self.store_minor = 0
        self.fresh_at = -math.inf  # never heard from the ledger in this run
        self._lock = threading.Lock()  # authorizations admit, the ledger's answers reset

    def admit(self, card: str, value_minor: int) -> str | None:
        """Count the value if it fits every limit and returns None; else the limit it
        passes (nothing counted): "stale", "txn", "card", "store" or "cards"."""
        with self._lock:
            if self.clock() - self.fresh_at > self.snapshot_age_max_s:
                return "stale"
            total = self.by_card.get(card, 0) + value_minor
            if value_minor > self.txn_minor_max:
                return "txn"
            if total > self.card_minor_max:
                return "card"
            if self.store_minor + value_minor > self.store_minor_max:
                return "store"
            if card not in self.by_card and len(self.by_card) >= STAND_IN_CARDS_MAX:
                return "cards"  # too many cards to keep count of: refuse rather than forget
            self.by_card[card] = total
            self.store_minor += value_minor
            return None

    def fresh(self) -> None:
        """The card book has just heard from the ledger (its card feed was read)."""
        with self._lock:
            self.fresh_at = self.clock()

    def reset(self) -> None:
        """The ledger answered: the counts start again, and the card book is fresh."""
        with self._lock:
            self.by_card.clear()
            self.store_minor = 0
            self.fresh_at = self.clock()


class LedgerGate:
    """Whether to ask the ledger now: after an unanswered call, not for LEDGER_RETRY_MIN_S,
    doubling up to LEDGER_RETRY_MAX_S while it stays away, so a hanging ledger does not cost
    every customer a timeout. An answer opens the gate and starts stand-in counts again."""

    def __init__(self, stand_in: StandIn, clock: Callable[[], float] = time.monotonic) -> None:
        self.stand_in = stand_in
        self.clock = clock
        self._lock = threading.Lock()
        self._retry_at = 0.0
        self._retry_s = LEDGER_RETRY_MIN_S

    def may_ask(self) -> bool:
        with self._lock:
            return self.clock() >= self._retry_at

    def lost(self) -> None:
        with self._lock:
            self._retry_at = self.clock() + self._retry_s
            self._retry_s = min(2 * self._retry_s, LEDGER_RETRY_MAX_S)

    def answered(self) -> None:
        with self._lock:
            self._retry_at = 0.0
            self._retry_s = LEDGER_RETRY_MIN_S
        self.stand_in.reset()


class LedgerHolds:
    """Confirms the card book's approvals at the ledger, stands in, and voids lapsed holds."""

    def __init__(self, gateway_id: str, cards: CardBook, ledger: HoldLedger,
                 settings: HoldSettings | None = None,
                 settle: Callable[[], object] | None = None, stats: Stats | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 on_voided: Callable[[list[str]], object] | None = None,
                 on_placing: Callable[[str, str, dict[str, Any]], object] | None = None,
                 reach: LedgerReach | None = None) -> None:
        """`on_voided(hold_ids)`: told, from the sweep, of the holds the ledger voided (or
        never had), so the store stops counting them as open (gateway/authorizations.py).
        `on_placing(hold_id, auth_id, request)`: told before a hold is asked of the ledger,
        to keep durably that it may be placed (`authorizations.intend`), so a gateway stopped
        before the approval is kept voids it at its next start; raising StoreUnavailable
        means the hold is not asked and the request is declined host_unavailable.
        `reach`: told whether the ledger answered, so its going away and coming back are one
        log line each (gateway/settle.py)."""
        self.gateway_id = gateway_id
        self.cards = cards
        self.ledger = ledger
        self.settings = settings or HoldSettings()
        self.settle = settle
        self.stats = stats or Stats()
        self.clock = clock
        self.on_voided = on_voided
        self.on_placing = on_placing
        self.reach = reach
        self.stand_in = StandIn(self.settings, clock)
        self.gate = LedgerGate(self.stand_in, clock)
        self._lock = threading.Lock()  # the voids; never held across a ledger call
        self._voids: deque[str] = deque()
        self._wake = threading.Event()  # a refused record's hold: void it now, not in 5 s

    # -- authorization ----------------------------------------------------------------------
    def confirm(self, request: dict[str, Any], decision: dict[str, Any]) -> dict[str, Any]:
        """The card book's decision, held at the ledger, stood in for, or declined after all.

        Call without `cards.lock` held: this waits for the ledger.
        """
        # The card part and the points the engine computed (after discount), not what was asked.
        value_minor = decision.get("card_value_minor", 0)
        points = decision.get("redeem_points", 0) if request["kind"] == txn.KIND_PURCHASE else 0
        taking = request["kind"] in (txn.KIND_PURCHASE, txn.KIND_CASHOUT)
        if not decision["approved"] or not taking:
            return decision
        grants = self._grants(request, decision)
        if not (value_minor or points or grants):
            return decision
        auth_id = decision["auth_id"]
        hold_id = ledger_hold_id(self.gateway_id, auth_id)
        if not self.gate.may_ask():
            return self._stand_in(request, decision, None, value_minor, points)
        if self.on_placing is not None:
            try:
                self.on_placing(hold_id, auth_id, request)
            except StoreUnavailable:
                return self._decline(auth_id, HOST_UNAVAILABLE)
        try:
            held = self._place(hold_id, request, value_minor, points, self._tap(auth_id),
                               grants)
        except LedgerUnavailable as error:
            # Per request: debug (and counted); the ledger going away is one line (`reach`).
            log.debug("ledger unavailable for hold %s, standing in: %s", hold_id, error)
            self._lost(error)
            return self._stand_in(request, decision, hold_id, value_minor, points)
        except LedgerRejected as error:
            self._answered()
            return self._decline(auth_id, self._reason_for(hold_id, error))
        self._answered()
        if not held:
            self.stats.add("ledger_hold.card_unknown")
            return decision
        with self.cards.lock:
            kept = self.cards.holds.mark_ledger(auth_id, hold_id)
        if not kept:
            # The local hold ran out while the ledger answered (only if the clock jumped):
            # the approval comes too late to honour.
            self._void_now(hold_id)
            return self._decline(auth_id, HOST_UNAVAILABLE)
        self.stats.add("ledger_hold.placed")
        return decision

    def _lost(self, error: LedgerUnavailable) -> None:
        self.gate.lost()
        if self.reach is not None:
            self.reach.lost(error)

    def _answered(self) -> None:
        self.gate.answered()
        if self.reach is not None:
            self.reach.answered()

    def _grants(self, request: dict[str, Any], decision: dict[str, Any]) -> tuple[str, ...]:
        """The card's targeted offers an approved purchase gets: one use of each is held at
        the ledger, which refuses offer_used when another store's sale took the last one."""
        offers = decision.get("promotions")
        if request["kind"] != txn.KIND_PURCHASE or not offers:
            return ()
        with self.cards.lock:
            return self.cards.granted_offers(request["card"], offers)

    def _tap(self, auth_id: str) -> int | None:
        """The read counter of the tap the card book approved (None without card keys): the
        ledger refuses it card_replayed if any store had it accepted before."""
        with self.cards.lock:
            hold = self.cards.holds.get(auth_id)
            return None if hold is None else hold.sun_counter

    def _place(self, hold_id: str, request: dict[str, Any], value_minor: int,
               points: int, sun_counter: int | None = None,
               grants: tuple[str, ...] = ()) -> bool:
        """Hold the full amount and points (True), or learn that the ledger has never seen
        the card (False); on insufficient_value or insufficient_points, settle and ask once
        more (the lag rule)."""
        try:
            self._ask(hold_id, request, value_minor, points, sun_counter, grants)
            return True
        except NotFound as error:
            if error.reason != CARD_UNKNOWN:
                raise
            return False
        except HoldRefused as error:
            if error.reason not in LAGGING or self.settle is None:
                raise
        self.stats.add("ledger_hold.settled_first")
        self.settle()
        self._ask(hold_id, request, value_minor, points, sun_counter, grants)
        return True

    def _ask(self, hold_id: str, request: dict[str, Any], value_minor: int,
             points: int, sun_counter: int | None, grants: tuple[str, ...] = ()) -> None:
        # The counter only with a tap to prove: a hold without one is the request it always
        # was (a gateway without card keys works with a ledger from before counters).
        tap: dict[str, Any] = {} if sun_counter is None else {"sun_counter": sun_counter}
        if points and request.get("reward") is not None:
            tap["reward"] = request["reward"]  # the item the points pay for: the ledger counts it
        if grants:
            tap["grants"] = grants  # the targeted offers it gets: the ledger holds a use each
        answer = self.ledger.place_hold(
            hold_id, request["card"], request["currency"], value_minor,
            self.settings.ledger_hold_ttl_s, request["terminal"], request["merchant"],
            points=points, **tap)
        if answer.get("status") != "open":
            # Only a replay answers otherwise, and auth ids are never given twice.
            raise HoldRefused("hold_conflict", f"hold {hold_id} answered {answer!r}")

    def _reason_for(self, hold_id: str, error: LedgerRejected) -> str:
        if error.reason in PASSED_ON:
            return error.reason
        log.error("ALARM ledger refused hold %s: %s %s", hold_id, error.reason, error.detail,
                  extra={"event": "alarm", "reason": error.reason, "hold": hold_id})
        self.stats.add("ledger_hold.alarm." + error.reason)
        return LEDGER_REFUSED

    def _stand_in(self, request: dict[str, Any], decision: dict[str, Any],
                  maybe_placed: str | None, value_minor: int, points: int) -> dict[str, Any]:
        """Approve on the card book alone, within the stand-in limits; never a redemption."""
        if maybe_placed is not None:
            self._queue_voids([maybe_placed])  # unanswered is not refused: it may be there
        if points:
            # The ledger's count is the only one every store shares: redeeming on this
            # store's count alone could spend points another store redeemed a moment ago
            # (and stand-in limits bound value, not points). The customer may pay otherwise.
            self.stats.add("ledger_hold.redeem_not_stood_in")
            return self._decline(decision["auth_id"], REDEEM_NEEDS_ONLINE)
        passed = self.stand_in.admit(request["card"], value_minor)
        if passed is not None:
            self.stats.add("ledger_hold.stand_in_refused." + passed)
            return self._decline(decision["auth_id"], STAND_IN_LIMIT)
        with self.cards.lock:  # its record may say stand-in: the card book checks this mark
            hold = self.cards.holds.get(decision["auth_id"])
            if hold is not None:
                hold.stand_in = True
        self.stats.add("auth_stand_in")
        return dict(decision, auth_mode=txn.AUTH_STAND_IN)

    def _decline(self, auth_id: str, reason: str) -> dict[str, Any]:
        with self.cards.lock:
            self.cards.holds.release(auth_id)
        self.stats.add("ledger_hold.declined." + reason)
        return {"approved": False, "reason": reason}

    # -- voids --------------------------------------------------------------------------------
    def pending_voids(self) -> list[str]:
        with self._lock:
            return list(self._voids)

    def queue_voids(self, hold_ids: list[str]) -> None:
        """Void these at the next sweep, and again until the ledger answers (a restarted
        gateway's holds no record will post: gateway/hold_recovery.py)."""
        self._queue_voids(hold_ids)
        if hold_ids:
            self.wake()

    def _queue_voids(self, hold_ids: list[str]) -> None:
        with self._lock:
            room = VOIDS_PENDING_MAX - len(self._voids)
            self._voids.extend(hold_ids[:max(room, 0)])
        dropped = len(hold_ids) - max(room, 0)
        if dropped > 0:
            log.warning("%d ledger holds dropped from the void queue; their ttl expires them",
                        dropped, extra={"event": "voids_dropped", "holds": dropped})
            self.stats.add("ledger_hold.void_dropped", dropped)

    def _void_now(self, hold_id: str) -> None:
        """Void at once if the ledger is thought reachable; else (or unanswered) queue it."""
        if not (self.gate.may_ask() and self._void(hold_id)):
            self._queue_voids([hold_id])

    def _void(self, hold_id: str) -> bool:
        """One void; False if the ledger did not answer (try again later)."""
        try:
            self.ledger.void_hold(hold_id)
        except LedgerUnavailable as error:
            log.debug("ledger unavailable, void of %s waits: %s", hold_id, error)
            self._lost(error)
            return False
        except NotFound:
            pass  # never placed: the unanswered call did not reach the books
        except LedgerRejected as error:
            log.error("ALARM ledger refused to void hold %s: %s %s", hold_id, error.reason,
                      error.detail,
                      extra={"event": "alarm", "reason": error.reason, "hold": hold_id})
            self.stats.add("ledger_hold.alarm." + error.reason)
        self._answered()
        self.stats.add("ledger_hold.voided")
        return True

    def sweep(self, now_s: float) -> int:
        """Expire local holds, then void queued ledger holds, oldest first, until the ledger
        stops answering. Returns how many were voided (or were not there to void).

        Call off `cards.lock`, from one thread at a time (the gateway's sweep thread).
        """
        with self.cards.lock:
            self.cards.holds.expire(now_s)
            lapsed = self.cards.holds.take_lapsed()
            orphaned = self.cards.holds.take_orphaned()
        self._queue_voids(lapsed + [ledger_hold_id(self.gateway_id, a) for a in orphaned])
        with self._lock:
            queued = len(self._voids)
        voided: list[str] = []
        for _ in range(queued):
            with self._lock:
                hold_id = self._voids[0]  # only the sweep takes from the queue
            if not self._void(hold_id):
                break
            with self._lock:
                self._voids.popleft()
            voided.append(hold_id)
        if voided and self.on_voided is not None:
            self.on_voided(voided)
        return len(voided)

    def wake(self) -> None:
        """Sweep now (a record was refused or came without its hold: its ledger hold goes)."""
        self._wake.set()

    def run_sweeps(self, stop: threading.Event) -> None:
        """Sweep every VOID_SWEEP_INTERVAL_S, and when woken, until `stop` is set, then once
        more (`stop` must be followed by `wake` to end the wait at once)."""
        while True:
            self._wake.wait(VOID_SWEEP_INTERVAL_S)
            self._wake.clear()
            if stop.is_set():
                break
            self.sweep(time.time())
        self.sweep(time.time())
