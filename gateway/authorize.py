"""The authorization stage: signed request -> decision on the card book -> signed response.

A request that does not verify gets an unsigned notice, never a decision: balances are only
told to terminals that prove their key. One that verifies but breaks a rule is declined,
signed, with its reason. Every response carries the gateway's clock, from which a terminal
corrects its own (docs/protocol.md section 5.5); requests are decided on the gateway's clock.

With a ledger, an approved purchase paid from card value is then held at the ledger too, off
the card book's lock (gateway/ledger_holds.py): the answer may become a decline, or a
stand-in approval (`auth_mode` 3) when the ledger cannot be reached.

An approval is sent only after it is kept in the store (gateway/authorizations.py). While
the store cannot commit (gateway/store_health.py) nothing is approved: every request is
answered, signed, `host_unavailable`, except one per STORE_RETRY_S that is decided as usual
and whose commit tries the store again. An approval that cannot be kept within
AUTH_COMMIT_WAIT_MS is not given: its holds are released (the ledger's voided by the sweep)
and it is answered `host_unavailable` too. The terminal stops waiting at once and declines,
or sells a purchase offline within its signed limits.
"""

from __future__ import annotations

import logging
import queue
import time
from typing import Any

from gateway import authorizations
from gateway.acks import AckOut, Publish, refusal_notice
from gateway.answered import Answered
from gateway.card_directory import CardDirectory
from gateway.cards import CardBook, record_till_amounts
from gateway.ledger_holds import LedgerHolds, ledger_hold_id
from gateway.registry import TerminalRegistry
from gateway.stage import OnDeath, Stage, exit_process
from gateway.stats import Stats
from gateway.store import GatewayStore
from gateway.store_health import StoreUnavailable
from gateway.verify import DeclinedRequest, Verifier
from protocol import messages, sealed, topics, txn
from protocol.errors import ProtocolError
from protocol.reasons import HOST_UNAVAILABLE

Request = tuple[str, bytes, float]  # topic, payload, when it arrived (time.monotonic)

log = logging.getLogger(__name__)

AUTH_COMMIT_WAIT_MS = 1_000
"""The longest an approval waits to be kept (for the store's lock, then SQLite's): with the
ledger's hold call (LEDGER_TIMEOUT_S, 2 s) within the terminal's AUTH_TIMEOUT_MS (3 s)."""
AUTH_SECONDS = "auth_seconds"  # Stats histogram: from taking a request to answering it
AUTH_WAIT_MAX_MS = 2_500
"""A request that waited longer than this in the gateway (its queue, behind others) is
dropped, unanswered (counted "auth_stale"): its terminal stops waiting at AUTH_TIMEOUT_MS
(3 s) and sells offline or declines, so a late approval would only hold value no sale takes.
The deadline is the terminal's wait, measured on the gateway's own monotonic clock from the
request's arrival, never on the terminal's clock (which may not be set yet). Requests that
would wait at the broker are not kept there at all (gateway/mqtt.py: QoS 0)."""


def decide(cards: CardBook, holds: LedgerHolds | None, request: dict[str, Any],
           now_s: float, directory: CardDirectory | None = None) -> dict[str, Any]:
    """Decide on the card book under its lock, then (without it) confirm at the ledger.

    A card the book does not know is asked of the ledger first, off the lock: a slow ledger
    delays only this terminal, never the other cards' authorizations."""
    card = request["card"]
    found = (directory.find(card)
             if directory is not None and card not in cards.cards else None)
    with cards.lock:
        cards.adopt(card, found, now_s)
        cards.holds.expire(now_s)
        decision = cards.authorize(request, now_s)
    if holds is not None:
        decision = holds.confirm(request, decision)
    return decision


class AuthorizeStage(Stage[Request]):
    name = "gateway-auth"

    def __init__(self, verifier: Verifier, registry: TerminalRegistry, cards: CardBook,
                 stats: Stats, publish: Publish, inbox: queue.Queue[Request | None],
                 notices: queue.Queue[AckOut | None], holds: LedgerHolds | None = None,
                 directory: CardDirectory | None = None,
                 on_death: OnDeath = exit_process, store: GatewayStore | None = None,
                 answered: Answered | None = None) -> None:
        """`answered`: where each response is noted before it is sent (gateway/answered.py)."""
        super().__init__(inbox, on_death)
        self.answered = answered
        self.store = store  # where approvals are kept (gateway/authorizations.py)
        self.holds = holds
        self.directory = directory
        self.verifier = verifier
        self.registry = registry
        self.cards = cards
        self.stats = stats
        self.publish = publish
        self.notices = notices

    def handle(self, item: Request) -> None:
        """Answer one request; its time here is the "auth_seconds" histogram (Stats)."""
        started_s = time.monotonic()
        try:
            self._handle(item)
        finally:
            self.stats.observe(AUTH_SECONDS, time.monotonic() - started_s)

    def _handle(self, item: Request) -> None:
        topic, payload, arrived_s = item
        if (time.monotonic() - arrived_s) * 1000 > AUTH_WAIT_MAX_MS:
            self.stats.add("auth_stale")  # its terminal stopped waiting: no answer, no hold
            return
        now_s = time.time()
        try:
            request = self.verifier.auth_request(topic, payload)
        except DeclinedRequest as error:
            # It proved its key: a signed decline, so the terminal stops waiting at once.
            self.stats.rejected(error.reason)
            merchant, terminal, _, _ = topics.parse(topic)
            self._answer(merchant, terminal, {"request": error.request, "approved": False,
                                              "reason": error.reason}, now_s)
            return
        except ProtocolError as error:
            self.stats.rejected(error.reason)
            notice = refusal_notice(topic, error)
            if notice is not None:
                self.notices.put(notice)
            return
        if self.store is not None and not self.store.health.may_try():
            # The store cannot commit: nothing is decided, no hold placed (store_health.py).
            decision: dict[str, Any] = {"approved": False, "reason": HOST_UNAVAILABLE}
            self.stats.add("auth_store_unavailable")
        else:
            decision = decide(self.cards, self.holds, request, now_s, self.directory)
        if decision["approved"] and "auth_id" in decision and self.store is not None:
            try:
                self._keep(request, decision)
            except StoreUnavailable as error:
                decision = self._not_kept(decision["auth_id"], error)
        decision["request"] = request["request"]
        self.stats.add("auth_approved" if decision["approved"] else "auth_declined")
        self._answer(request["merchant"], request["terminal"], decision, now_s)

    def _keep(self, request: dict[str, Any], decision: dict[str, Any]) -> None:
        """Keep an approval before it is answered, with its hold: no terminal holds an
        approval a restart forgets, and no hold outlives a restart (hold_recovery.py)."""
        assert self.store is not None
        auth_id = decision["auth_id"]
        auth_mode = decision.get("auth_mode", txn.AUTH_ONLINE)
        with self.cards.lock:
            hold = self.cards.holds.get(auth_id)
            held_minor, op, hold_id = ((0, None, None) if hold is None else
                                       (hold.value_minor, hold.op, hold.ledger_hold_id))
            given_at = None if hold is None else hold.expires_s - self.cards.holds.ttl_s
        if auth_mode == txn.AUTH_STAND_IN and held_minor and self.holds is not None:
            hold_id = ledger_hold_id(self.holds.gateway_id, auth_id)  # perhaps placed
        authorizations.keep(self.store, auth_id, request["terminal"], request["card"],
                            record_till_amounts(decision), auth_mode, held_minor, op, hold_id,
                            given_at, AUTH_COMMIT_WAIT_MS)

    def _not_kept(self, auth_id: str, error: StoreUnavailable) -> dict[str, Any]:
        """An approval the store could not keep is not given: its local hold ends now, and a
        ledger hold behind it goes to the sweep to void (a stand-in's maybe-placed hold is
        queued already)."""
        with self.cards.lock:
            self.cards.holds.release(auth_id)
        if self.holds is not None:
            self.holds.wake()
        self.stats.add("auth_store_unavailable")
        log.error("approval %s not given, the store could not keep it: %s", auth_id,
                  error.detail)
        return {"approved": False, "reason": HOST_UNAVAILABLE}

    def _answer(self, merchant: str, terminal: str, fields: dict[str, Any],
                now_s: float) -> None:
        """Seal and send an auth response; it carries the gateway's clock (section 5.5)."""
        fields = dict(fields, terminal=terminal, time=int(now_s))
        data = sealed.seal(self.registry.get(terminal).key, messages.TYPE_AUTH_RESPONSE, fields)
        if self.answered is not None:  # a fresh answer: the terminal's time offline restarts
            self.answered.replied(terminal, time.time())
        self.publish(topics.down(merchant, terminal, topics.LEAF_AUTH), data)
