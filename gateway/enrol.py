"""Enrolment at the counter: a terminal's signed request -> the ledger -> a signed answer.

The cashier keys the customer's phone number and/or e-mail address (and perhaps a first
name, and the customer's answer to marketing) and the customer taps the card. The request
travels on the terminal's `up/auth` topic, sealed under its key like an authorization
request, and is answered on `down/auth` (docs/protocol.md section 5.11). `enrol_route` sorts
the two message types apart on paho's thread, from the unverified type key alone.

The gateway checks what it checks for an authorization (MAC, topic, merchant, the card not
blocked, the tap's SUN genuine and newer than any seen when the deployment has card keys,
the card known) and then asks the ledger (POST /v1/enrolments, docs/ledger.md "Enrolment
at the counter"), which links the card to the customer that has the phone or e-mail, or
makes one. The answer carries the first name to show and nothing else of the customer.

Personal values pass through memory only: they are never written to the gateway's store,
never logged, never counted by value. A ledger that does not answer is `host_unavailable`:
nothing is kept to try again (the cashier asks again; a second enrolment of the same card
with the same phone or e-mail is answered approved, `joined`).

Recognition: `Greetings` keeps, in memory, the first name of each card enrolled here, and
of each card whose first look-up at the ledger (GET /v1/cards/<card>, when this store first
sees the card: gateway/card_directory.py) carried its customer's `greeting`
(`take_greeting`, docs/ledger.md "Greeting at every store"); `GreetingAuthorizeStage` adds
it (key 82, first_name) to an approved authorization's answer for that card, so the counter
can greet the regular at any store. It is never part of a record, of an approval or a card
kept in the store, or of a log line; a restart forgets it (and a card this store knew before
its customer enrolled it elsewhere is looked up again at its first tap after
GREETING_REFRESH_S, by gateway/greeting_refresh.py, and greeted from the next sale on).

Birthdays: the same card answer carries the customer's birthday as "MM-DD" (never the
year), which `Greetings` keeps beside the name, in memory only, for the card book to price
a birthday-week offer into the card's online purchases (docs/programs.md, "Promotions").
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from gateway.acks import AckOut, Publish, refusal_notice
from gateway.authorize import AuthorizeStage, Request
from gateway.card_directory import CardDirectory
from gateway.cards import CardBook
from gateway.mqtt import Route
from gateway.registry import TerminalRegistry
from gateway.settle import LedgerReach
from gateway.stage import OnDeath, Stage, exit_process
from gateway.stats import Stats
from gateway.verify import DeclinedRequest, SignedRefusal, Verifier
from ledger.client import LedgerClient
from ledger.errors import LedgerRejected, LedgerUnavailable
from protocol import cbor, cose, messages, sealed, topics
from protocol.errors import ProtocolError, ValidationError
from protocol.reasons import (
    CARD_BLOCKED,
    CARD_LINKED,
    CARD_UNKNOWN,
    CUSTOMER_CARD_LIMIT,
    EMAIL_INVALID,
    EMAIL_TAKEN,
    FIELD_INVALID,
    FIELD_MISSING,
    HOST_UNAVAILABLE,
    LEDGER_REFUSED,
    PHONE_INVALID,
)

ENROL_WAIT_MAX_MS = 2_500
"""A request that waited longer than this in the gateway is dropped unanswered: with the
ledger's call (LEDGER_TIMEOUT_S, 2 s) it would outlast the terminal's ENROL_TIMEOUT_MS."""
GREETINGS_MAX = 10_000  # first names kept in memory for recognition, the oldest dropped
GREETING_REFRESH_S = 6 * 3600.0
"""A card's greeting and birthday are asked of the ledger again at its first tap after this
long since its last look-up (gateway/greeting_refresh.py): a customer's first name or
birthday recorded at another store reaches this one within a day of shopping."""
REASON_CHARS_MAX = messages.TEXT_CHARS_MAX  # a ledger's reason as a stats key carries it
PASSED_ON = frozenset({PHONE_INVALID, EMAIL_INVALID, EMAIL_TAKEN, CARD_LINKED,
                       CUSTOMER_CARD_LIMIT, CARD_UNKNOWN, FIELD_INVALID, FIELD_MISSING})
"""The ledger's enrolment refusals a terminal is told as they are (protocol reason codes);
any other (a field's type, not_permitted, an erased customer...) is ledger_refused, logged:
it means the gateway and the ledger disagree, which the cashier cannot mend."""
_K_REQUEST = 20

log = logging.getLogger(__name__)


def message_type(payload: bytes) -> int | None:
    """The type key of a sealed message, read without verifying it (to choose a queue
    only: the stage that takes it verifies everything); None if it cannot be read."""
    if len(payload) > messages.MESSAGE_BYTES_MAX:
        return None
    try:
        item = cbor.decode(cose.parse(payload).payload)
    except (ProtocolError, ValueError, TypeError, IndexError):
        return None
    found = item.get(messages.K_TYPE) if isinstance(item, dict) else None
    return found if type(found) is int else None


def enrol_route(auth: Route, enrol: Route) -> Route:
    """The `up/auth` route: enrolment requests to `enrol`, everything else to `auth`
    (which refuses what is not an authorization request)."""

    def route(topic: str, payload: bytes) -> bool:
        if message_type(payload) == messages.TYPE_ENROL_REQUEST:
            return enrol(topic, payload)
        return auth(topic, payload)

    return route


class Greetings:
    """Card -> the first name its customer is greeted by, for cards enrolled at this
    gateway since it started (memory only, at most GREETINGS_MAX); and card -> the
    customer's birthday "MM-DD" (no year) the ledger's card answer carried, for the card
    book's birthday-week offers (at most GREETINGS_MAX too). Thread-safe."""

    def __init__(self, size_max: int = GREETINGS_MAX,
                 clock: Callable[[], float] = time.monotonic,
                 refresh_s: float = GREETING_REFRESH_S) -> None:
        self._names: OrderedDict[str, str] = OrderedDict()
        self._birthdays: OrderedDict[str, str] = OrderedDict()
        self._looked_up: OrderedDict[str, float] = OrderedDict()  # card -> when (clock)
        self._lock = threading.Lock()
        self._size_max = size_max
        self._clock = clock
        self._refresh_s = refresh_s

    def looked_up(self, card: str) -> None:
        """The ledger answered a look-up of `card` now (with a greeting or without)."""
        with self._lock:
            self._looked_up[card] = self._clock()
            self._looked_up.move_to_end(card)
            while len(self._looked_up) > self._size_max:
                self._looked_up.popitem(last=False)

    def lookup_due(self, card: str) -> bool:
        """Is `card` to be looked up again: never in this run, or GREETING_REFRESH_S ago?"""
        with self._lock:
            at = self._looked_up.get(card)
        return at is None or self._clock() - at >= self._refresh_s

    def remember(self, card: str, first_name: str | None) -> None:
        self._keep(self._names, card, first_name)

    def get(self, card: str) -> str | None:
        with self._lock:
            return self._names.get(card)

    def remember_birthday(self, card: str, birthday: str | None) -> None:
        self._keep(self._birthdays, card, birthday)

    def birthday(self, card: str) -> str | None:
        with self._lock:
            return self._birthdays.get(card)

    def _keep(self, kept: OrderedDict[str, str], card: str, value: str | None) -> None:
        """Keep `value` for `card` as the newest (the oldest beyond the bound goes), or
        forget the card's when there is none."""
        with self._lock:
            if not value:
                kept.pop(card, None)
                return
            kept[card] = value
            kept.move_to_end(card)
            while len(kept) > self._size_max:
                kept.popitem(last=False)


def take_greeting(greetings: Greetings, card: str,
                  found: dict[str, Any] | None) -> dict[str, Any] | None:
    """The ledger's answer for `card` without its `greeting` (the customer's first name)
    and `birthday` ("MM-DD"), which `greetings` keeps for the card instead (or forgets: the
    answer has none), so they go no further than memory: not to the card book's kept
    state, nor the store."""
    if found is None:
        return None
    greetings.looked_up(card)
    found = dict(found)
    greeting = found.pop("greeting", None)
    greetings.remember(card, greeting[:messages.TEXT_CHARS_MAX]
                       if isinstance(greeting, str) and greeting else None)
    birthday = found.pop("birthday", None)
    greetings.remember_birthday(card, birthday if _is_month_day(birthday) else None)
    return found


def _is_month_day(value: object) -> bool:
    """Is `value` a birthday as the ledger gives it, "MM-DD" (the engine checks the date)?"""
    return (isinstance(value, str) and len(value) == 5 and value[2] == "-"
            and value[:2].isdigit() and value[3:].isdigit())


class GreetingVerifier(Verifier):
    """A Verifier that notes the card of the authorization request it verified last, for
    the one thread of the authorize stage (None when the last did not verify)."""

    def __init__(self, registry: TerminalRegistry) -> None:
        super().__init__(registry)
        self.card: str | None = None

    def auth_request(self, topic: str, payload: bytes) -> dict[str, Any]:
        self.card = None
        request = super().auth_request(topic, payload)
        self.card = request["card"]
        return request


class GreetingAuthorizeStage(AuthorizeStage):
    """The authorize stage, whose approvals for a card of an enrolled customer carry the
    customer's first name (key 82). Added when the answer is sealed, after the approval is
    kept: the store keeps the amounts only (gateway/authorizations.py)."""

    def __init__(self, greetings: Greetings, verifier: GreetingVerifier,
                 *args: Any, tapped: Callable[[str], None] | None = None,
                 **kwargs: Any) -> None:
        """`tapped`: told each card answered for (gateway/greeting_refresh.py), after."""
        super().__init__(verifier, *args, **kwargs)
        self.greetings = greetings
        self.greeter = verifier
        self.tapped = tapped

    def _answer(self, merchant: str, terminal: str, fields: dict[str, Any],
                now_s: float) -> None:
        card = self.greeter.card
        name = self.greetings.get(card) if card is not None and fields.get("approved") else None
        if name:
            fields = dict(fields, first_name=name)
        super()._answer(merchant, terminal, fields, now_s)
        if card is not None and self.tapped is not None:
            self.tapped(card)


class EnrolStage(Stage[Request]):
    """Answers enrolment requests one at a time: each waits for the ledger (at most its
    client's timeout), which is why they have their own thread and queue and never hold up
    authorizations."""

    name = "gateway-enrol"

    def __init__(self, verifier: Verifier, registry: TerminalRegistry, cards: CardBook,
                 stats: Stats, publish: Publish, inbox: queue.Queue[Request | None],
                 notices: queue.Queue[AckOut | None], ledger: LedgerClient | None,
                 greetings: Greetings, directory: CardDirectory | None = None,
                 reach: LedgerReach | None = None, on_death: OnDeath = exit_process) -> None:
        super().__init__(inbox, on_death)
        self.verifier = verifier
        self.registry = registry
        self.cards = cards
        self.stats = stats
        self.publish = publish
        self.notices = notices
        self.ledger = ledger
        self.greetings = greetings
        self.directory = directory
        self.reach = reach

    def handle(self, item: Request) -> None:
        topic, payload, arrived_s = item
        if (time.monotonic() - arrived_s) * 1000 > ENROL_WAIT_MAX_MS:
            self.stats.add("enrol_stale")  # its terminal stopped waiting: not sent on
            return
        try:
            request = self._verify(topic, payload)
        except DeclinedRequest as error:
            self.stats.rejected(error.reason)
            merchant, terminal, _, _ = topics.parse(topic)
            self._answer(merchant, terminal, {"request": error.request, "approved": False,
                                              "reason": error.reason})
            return
        except ProtocolError as error:
            self.stats.rejected(error.reason)
            notice = refusal_notice(topic, error)
            if notice is not None:
                self.notices.put(notice)
            return
        answer = self.decide(request)
        answer["request"] = request["request"]
        self.stats.add("enrol_approved" if answer["approved"] else "enrol_declined")
        self._answer(request["merchant"], request["terminal"], answer)

    def _verify(self, topic: str, payload: bytes) -> dict[str, Any]:
        """The request's fields, as `Verifier.auth_request` checks an authorization's."""
        verifier = self.verifier
        inner, merchant, terminal, entry = verifier._authenticated(topic, payload,
                                                                   topics.LEAF_AUTH)
        item = verifier._map(inner, messages.TYPE_ENROL_REQUEST)
        request = item.get(_K_REQUEST)
        if type(request) is not int or request < 0:
            raise SignedRefusal(FIELD_MISSING if request is None else FIELD_INVALID, "request")
        try:
            fields = verifier._fields(item, messages.TYPE_ENROL_REQUEST, merchant, terminal,
                                      entry)
            if not fields.get("phone") and not fields.get("email"):
                raise ValidationError(FIELD_MISSING, "phone or email")
        except ProtocolError as error:
            raise DeclinedRequest(error.reason, error.detail, request) from None
        return fields

    def decide(self, request: dict[str, Any]) -> dict[str, Any]:
        """Approved with the first name (and whether the card joined a customer), or
        declined with a reason: the card's, the ledger's, or host_unavailable."""
        card = request["card"]
        try:
            self._check_card(request)
        except ProtocolError as error:
            return {"approved": False, "reason": error.reason}
        if self.ledger is None:
            return {"approved": False, "reason": HOST_UNAVAILABLE}
        enrolment = {"card": card, "terminal": request["terminal"],
                     "merchant": request["merchant"],
                     "marketing_consent": request["consent"]}
        for field in ("phone", "email", "first_name"):
            if request.get(field):
                enrolment[field] = request[field]
        try:
            result = self.ledger.enrol(enrolment)
        except LedgerRejected as error:
            if self.reach is not None:
                self.reach.answered()
            if error.reason in PASSED_ON:
                # It names a field or a rule, never a value (ledger/customers.py).
                return {"approved": False, "reason": error.reason}
            log.error("ALARM ledger refused enrolment of card %s: %s", card[:64], error.reason,
                      extra={"event": "alarm", "reason": error.reason})
            self.stats.add("enrol_ledger_refused." + error.reason[:REASON_CHARS_MAX])
            return {"approved": False, "reason": LEDGER_REFUSED}
        except LedgerUnavailable as error:
            if self.reach is not None:
                self.reach.lost(error)
            self.stats.add("enrol_ledger_unavailable")
            return {"approved": False, "reason": HOST_UNAVAILABLE}
        if self.reach is not None:
            self.reach.answered()
        first_name = result.get("first_name")
        if not isinstance(first_name, str) or not first_name:
            first_name = None
        else:
            first_name = first_name[:messages.TEXT_CHARS_MAX]
        self.greetings.remember(card, first_name)
        log.info("card %s enrolled at %s (%s)", card, request["terminal"],
                 "joined a customer" if result.get("joined") else "a new customer",
                 extra={"event": "card_enrolled", "terminal": request["terminal"],
                        "joined": bool(result.get("joined"))})
        answer: dict[str, Any] = {"approved": True, "first_name": first_name}
        if result.get("joined"):
            answer["joined"] = True
        return answer

    def _check_card(self, request: dict[str, Any]) -> None:
        """As for an authorization: not blocked, a genuine and new tap, a card known here or
        at the ledger. A SUN counter accepted here is one no later tap may repeat."""
        card = request["card"]
        found = (self.directory.find(card)
                 if self.directory is not None and card not in self.cards.cards else None)
        with self.cards.lock:
            self.cards.adopt(card, found, time.time())
            if card in self.cards.hotlist:
                raise ValidationError(CARD_BLOCKED, card)
            counter = self.cards.authenticator.read_counter(request)
            if counter is not None:
                known = self.cards.states.get(card)
                # The authorizations' own record of counters (gateway/cards.py): shared, so
                # an enrolment's tap cannot be replayed as a sale's, nor the other way.
                seen_by_auth = self.cards._auth_sun_counters  # noqa: SLF001
                seen = [c for c in (known.get("sun_counter") if known else None,
                                    seen_by_auth.get(card)) if c is not None]
                self.cards.authenticator.check_newer(max(seen) if seen else None, counter)
                seen_by_auth[card] = counter
            if card not in self.cards.cards:
                raise ValidationError(CARD_UNKNOWN, card)

    def _answer(self, merchant: str, terminal: str, fields: dict[str, Any]) -> None:
        fields = dict(fields, terminal=terminal, time=int(time.time()))
        data = sealed.seal(self.registry.get(terminal).key, messages.TYPE_ENROL_RESPONSE,
                           fields)
        self.publish(topics.down(merchant, terminal, topics.LEAF_AUTH), data)
