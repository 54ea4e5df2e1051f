"""The back office: web pages of the ledger for people who do not write SQL, under /office/.

Served by the ledger's own HTTP server (`ledger.server` hands every /office path here);
server-rendered HTML, every value from the books escaped with `html.escape`, no JavaScript.

    GET  /office/                   overview: unacknowledged alarms, overdrawn cards, find a card
    GET  /office/sign-in            the sign-in form;  POST: name + password -> session cookie
    POST /office/sign-out           end the session
    GET  /office/card?card=ID       value, points, tier, discount, points lots (when the ledger
                                    has the programs: ledger/card_engine.py), holds, block and
                                    transactions across stores
    POST /office/card/block         card, reason (manager)      -> Books.block_card
    POST /office/card/unblock       card[, reason] (manager)
    GET  /office/alarms             the latest alarms, acknowledged or not
    POST /office/alarms/acknowledge alarm (manager)             -> alarm_acks
    GET  /office/exposure           the `exposure` report
    GET  /office/liabilities        the `liability` and `breakage` reports, and both over time
                                    as a chart [?as_of&window_days&step_days]
    GET  /office/segments           the `segments` report: value classes and RFM
                                    [?as_of&window_days]
    GET  /office/lapsing            the `lapsing` report: regulars who stopped coming
                                    [?as_of&window_days&days&min_purchases]
    GET  /office/customers          find a customer: by id, phone or e-mail (POST .../find)
    POST /office/customers/find     customer_id | phone | email -> the customer's page
    GET  /office/customer?id=ID     fields, consent, cards, history across stores (audited)
    POST /office/customer/link      customer_id, card          -> Customers.link
    POST /office/customer/export    customer_id: the export as a JSON download (audited)
    POST /office/customer/erase     customer_id, confirm (the id again) (manager)
    GET  /office/customer-value     the `customer_value` report: value classes by customer
                                    [?as_of&window_days&top_percent&next_percent]
    GET  /office/customer-lapsing   the `customer_lapsing` report, contacts where consent
                                    allows [?as_of&window_days&days&min_purchases]
    GET  /office/customer-retention the `customer_retention` report [?as_of&months]
    GET  /office/fleet              each gateway's terminals as it last reported them (online,
                                    last seen, journal backlog, firmware, configuration,
                                    refused); its batches, transactions, last batch

Who: operators are logins of the roles clerk (reads, customers' records and card links) and
manager (also blocks and unblocks cards, acknowledges alarms, erases customers) in the
ledger's logins file, each with a scrypt password
(`ledger.auth`, `ledger.passwords`); what a role may do is `ledger.auth`'s table, the same
one the API uses. A session is a random cookie (HttpOnly, SameSite=Strict, Secure when the
ledger speaks TLS, Path=/office) kept in this process's memory for SESSION_S at most; it
ends at sign-out, at its expiry, when the server restarts, and when its login is removed or
given another password or role in the logins file. Every POST but the sign-in carries the
session's CSRF token from the form; a POST whose Origin is another site is refused. Each
sign-in (made or refused), sign-out and action is logged as an AUDIT line naming the
operator.

Customers go through the same `Customers` object as the API (ledger/customers.py), so the
office's reads of personal data are audited in customer_audit like the API's; a phone number
or e-mail address to find is posted, never put in an address (addresses are logged). Without
a customer key the customer pages answer 503 saying so; the rest of the office works.

Errors: a request the office refuses is answered with a page and the status of the
`LedgerRejected` it raised (400 bad form, 401 not signed in, 403 not permitted or bad CSRF
token, 404 unknown card, alarm or customer, 429 too many failed sign-ins);
`LedgerUnavailable` is 503. Nothing a refused request asked for is changed.
"""

from __future__ import annotations

import hmac
import html
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from ledger import auth, office_sql, passwords
from ledger.auth import Login
from ledger.books import Books
from ledger.card_engine import REASON_TEXTS, card_engine
from ledger.customers import Customers
from ledger.errors import BatchInvalid, Forbidden, LedgerRejected, LedgerUnavailable, NotFound
from ledger.limits import BLOCK_REASON_CHARS_MAX, ID_CHARS_MAX, REPORT_WINDOW_DAYS_MAX
from protocol.money import exponent_or_none, format_minor

log = logging.getLogger(__name__)

PREFIX = "/office"
SESSION_COOKIE = "tilltap_office"
SESSION_S = 8 * 3600
"""A session lasts one working day from its sign-in, then the operator signs in again."""
SESSIONS_MAX = 1000
"""Sessions kept at once; past it the oldest ends (memory is bounded whatever happens)."""
SESSION_TOKEN_BYTES = 32
SIGN_IN_FAILURES_MAX = 5
"""Failed sign-ins of one login within SIGN_IN_WINDOW_S before it is refused for a while."""
SIGN_IN_WINDOW_S = 300
SIGN_IN_TRACKED_MAX = 10_000
"""Login names whose failed sign-ins are remembered; beyond it the oldest are forgotten."""
FORM_FIELDS_MAX = 8
NAME_CHARS_MAX = 64
FORM_TYPE = "application/x-www-form-urlencoded"
CHART_POINTS = 12
"""Period ends on the liabilities chart: the as-of day and the 11 before it."""
CHART_STEP_DAYS_DEFAULT = 30
"""Days between two points of the chart (and the breakage window of each point)."""
CHART_WIDTH_PX = 640
CHART_HEIGHT_PX = 200
CHART_MARGIN_PX = 40
SEGMENT_ROWS_MAX = 200
"""Cards listed on the segments page (the top spenders); the API has them all."""
CUSTOMER_ROWS_MAX = 200
"""Customers listed on the customer value page (the top ranks); the API has them all."""
HTML_TYPE = "text/html; charset=utf-8"
JSON_TYPE = "application/json"
NO_CUSTOMER_KEY = ("this ledger runs without a customer key, so customers cannot be read "
                   "or changed here (start it with ledger serve --customer-key FILE); cards "
                   "and the other pages work as before")
# No script may run, no page may frame this one, forms post only here.
_SECURITY_HEADERS = (
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; "
                                "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    # Card ids are in the page addresses: they go to no other site. (With no-referrer a
    # browser sends "Origin: null" even on our own forms, which the origin check refuses.)
    ("Referrer-Policy", "same-origin"),
    ("Cache-Control", "no-store"),
)


def is_office_path(path: str) -> bool:
    """Whether a request path belongs to the back office (the server hands it here)."""
    return path == PREFIX or path.startswith(PREFIX + "/")


@dataclass(frozen=True)
class OfficeRequest:
    """One request as the server read it: the parts the office looks at."""

    method: str
    target: str  # path and query, as sent
    cookie: str | None = None
    body: bytes | None = None
    content_type: str = ""
    origin: str | None = None
    host: str | None = None


@dataclass(frozen=True)
class Page:
    """An answer: status, headers beyond the content ones, and the HTML."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = HTML_TYPE


@dataclass
class OfficeSession:
    """A signed-in operator: bound to the login's password record as it was at sign-in."""

    token: str
    csrf: str
    login: str
    password_scrypt: str | None
    role: str
    expires_at: float


class Markup(str):
    """HTML built here from escaped parts: `_cell` writes it as it is."""


def esc(value: object) -> str:
    """Text as HTML (quotes too, so it is safe in an attribute)."""
    return html.escape("" if value is None else str(value), quote=True)


class Office:
    """The back office of one ledger server; thread-safe (sessions under a lock)."""

    def __init__(self, books: Books, logins: Callable[[], Mapping[str, Login] | None],
                 secure: bool, clock: Callable[[], float] = time.time,
                 customers: Customers | None = None,
                 programs: Mapping[str, dict[str, Any]] | None = None) -> None:
        self.books = books
        self.programs = None if programs is None else dict(programs)  # for the cards' tiers
        # The server's, so the API and the office share one key; none: no customer key.
        self.customers = customers if customers is not None else Customers(books, None)
        self._logins = logins
        self.secure = secure
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[str, OfficeSession] = {}
        self._failures: dict[str, list[float]] = {}

    # -- entry -----------------------------------------------------------------------------

    def answer(self, request: OfficeRequest) -> Page:
        """The page for one request; never raises."""
        try:
            return self._route(request)
        except LedgerRejected as error:
            log.info("office refused %s %s: %s %s", request.method, request.target[:200],
                     error.reason, error.detail)
            return self._error_page(error.http_status, error.reason, error.detail)
        except LedgerUnavailable as error:
            if error.reason == "customer_key_missing":
                return self._error_page(503, error.reason, NO_CUSTOMER_KEY)
            log.warning("office: ledger unavailable for %s %s: %s", request.method,
                        request.target[:200], error.detail)
            return self._error_page(503, error.reason, "the books cannot be read now; "
                                                       "try again in a moment")
        except Exception:
            log.exception("office: unexpected error serving %s %s", request.method,
                          request.target[:200])
            return self._error_page(500, "internal_error", "see the ledger's log")

    def _route(self, request: OfficeRequest) -> Page:
        target = urlsplit(request.target)
        path, query = target.path.rstrip("/") or "/", target.query
        gets: dict[str, Callable[[OfficeSession, Login, dict[str, str]], Page]] = {
            PREFIX: self._home, f"{PREFIX}/card": self._card,
            f"{PREFIX}/alarms": self._alarms, f"{PREFIX}/exposure": self._exposure,
            f"{PREFIX}/liabilities": self._liabilities, f"{PREFIX}/fleet": self._fleet,
            f"{PREFIX}/segments": self._segments, f"{PREFIX}/lapsing": self._lapsing,
            f"{PREFIX}/customers": self._customers, f"{PREFIX}/customer": self._customer,
            f"{PREFIX}/customer-value": self._customer_value,
            f"{PREFIX}/customer-lapsing": self._customer_lapsing,
            f"{PREFIX}/customer-retention": self._customer_retention,
        }
        posts: dict[str, Callable[[OfficeSession, Login, dict[str, str]], Page]] = {
            f"{PREFIX}/card/block": self._block, f"{PREFIX}/card/unblock": self._unblock,
            f"{PREFIX}/alarms/acknowledge": self._acknowledge,
            f"{PREFIX}/sign-out": self._sign_out,
            f"{PREFIX}/customers/find": self._find_customer,
            f"{PREFIX}/customer/link": self._link_card,
            f"{PREFIX}/customer/export": self._export_customer,
            f"{PREFIX}/customer/erase": self._erase_customer,
        }
        if path == f"{PREFIX}/sign-in":
            if request.method == "GET":
                return self._sign_in_form(200)
            if request.method == "POST":
                return self._sign_in(request)
        elif path in gets and request.method == "GET":
            found = self._signed_in(request)
            if found is None:
                return _redirect(f"{PREFIX}/sign-in")
            return gets[path](*found, _fields(query, "parameter_invalid"))
        elif path in posts and request.method == "POST":
            found = self._signed_in(request)
            if found is None:
                raise LedgerRejected("login_required", "sign in first", 401)
            form = self._form(request)
            if not hmac.compare_digest(form.pop("csrf", ""), found[0].csrf):
                raise Forbidden("not_permitted", "the form is stale or was not ours: "
                                                 "reload the page and try again")
            return posts[path](*found, form)
        if path in gets or path in posts or path == f"{PREFIX}/sign-in":
            raise LedgerRejected("method_not_allowed", "not with this method", 405)
        raise NotFound("not_found", "no such page")

    # -- sessions --------------------------------------------------------------------------

    def _signed_in(self, request: OfficeRequest) -> tuple[OfficeSession, Login] | None:
        """The request's session and its login as the logins file has it now, or None."""
        token = _cookie(request.cookie, SESSION_COOKIE)
        if token is None:
            return None
        now = self._clock()
        with self._lock:
            session = self._sessions.get(token)
            if session is None or session.expires_at <= now:
                self._sessions.pop(token, None)
                return None
        login = (self._logins() or {}).get(session.login)
        if (login is None or login.role != session.role
                or login.password_scrypt != session.password_scrypt):
            with self._lock:
                self._sessions.pop(token, None)
            log.info("AUDIT office session of %s ended: its login changed", session.login)
            return None
        return session, login

    def _sign_in(self, request: OfficeRequest) -> Page:
        form = self._form(request)
        name, password = form.get("name", ""), form.get("password", "")
        if not 0 < len(name) <= NAME_CHARS_MAX or not password:
            return self._sign_in_form(400, "give your name and password")
        now = self._clock()
        if self._too_many_failures(name, now):
            log.warning("AUDIT office sign-in of %r refused: too many failures", name)
            return self._sign_in_form(429, "too many failed sign-ins: wait a few minutes")
        login = (self._logins() or {}).get(name)
        record = login.password_scrypt if login is not None else None
        # verify() runs scrypt even without a record, so the time taken names no login.
        if not passwords.verify(record, password) or login is None:
            self._count_failure(name, now)
            log.warning("AUDIT office sign-in of %r refused: wrong name or password", name)
            return self._sign_in_form(401, "wrong name or password")
        session = OfficeSession(secrets.token_urlsafe(SESSION_TOKEN_BYTES),
                                secrets.token_urlsafe(SESSION_TOKEN_BYTES), login.name,
                                login.password_scrypt, login.role, now + SESSION_S)
        with self._lock:
            self._failures.pop(name, None)
            self._sessions = {token: kept for token, kept in self._sessions.items()
                              if kept.expires_at > now}
            while len(self._sessions) >= SESSIONS_MAX:
                self._sessions.pop(min(self._sessions,
                                       key=lambda token: self._sessions[token].expires_at))
            self._sessions[session.token] = session
        log.info("AUDIT office sign-in by %s (%s)", login.name, login.role)
        return _redirect(f"{PREFIX}/", self._cookie_header(session.token, SESSION_S))

    def _sign_out(self, session: OfficeSession, login: Login, form: dict[str, str]) -> Page:
        with self._lock:
            self._sessions.pop(session.token, None)
        log.info("AUDIT office sign-out by %s", login.name)
        return _redirect(f"{PREFIX}/sign-in", self._cookie_header("", 0))

    def _cookie_header(self, token: str, max_age_s: int) -> tuple[str, str]:
        secure = "; Secure" if self.secure else ""
        return ("Set-Cookie", f"{SESSION_COOKIE}={token}; Path={PREFIX}; Max-Age={max_age_s}; "
                              f"HttpOnly; SameSite=Strict{secure}")

    def _too_many_failures(self, name: str, now: float) -> bool:
        with self._lock:
            recent = [at for at in self._failures.get(name, []) if at > now - SIGN_IN_WINDOW_S]
            return len(recent) >= SIGN_IN_FAILURES_MAX

    def _count_failure(self, name: str, now: float) -> None:
        with self._lock:
            if name not in self._failures and len(self._failures) >= SIGN_IN_TRACKED_MAX:
                self._failures.pop(next(iter(self._failures)))
            recent = [at for at in self._failures.get(name, []) if at > now - SIGN_IN_WINDOW_S]
            self._failures[name] = [*recent[-SIGN_IN_FAILURES_MAX:], now]

    def _form(self, request: OfficeRequest) -> dict[str, str]:
        """A POSTed form, refused whole when malformed or posted from another site."""
        if request.origin is not None and request.host is not None:
            origin = urlsplit(request.origin)
            if origin.netloc != request.host or origin.scheme != (
                    "https" if self.secure else "http"):
                raise Forbidden("not_permitted", "a form from another site")
        if request.content_type.split(";")[0].strip().lower() != FORM_TYPE:
            raise LedgerRejected("content_type_unsupported", f"send {FORM_TYPE}", 415)
        try:
            text = (request.body or b"").decode("utf-8")
        except UnicodeDecodeError as error:
            raise BatchInvalid("request_malformed", "the form is not UTF-8") from error
        return _fields(text, "request_malformed")

    # -- pages -----------------------------------------------------------------------------

    def _home(self, session: OfficeSession, login: Login, query: dict[str, str]) -> Page:
        unacknowledged = self.books.read(lambda db, now: office_sql.unacknowledged_alarms(db))
        exposure = self.books.report("exposure")
        body = (f"<h1>Back office</h1>{_card_search('')}"
                f"<p><a href='{PREFIX}/alarms'>Alarms not acknowledged</a>: "
                f"<span id='alarms-open'>{unacknowledged}</span></p>"
                f"<p><a href='{PREFIX}/exposure'>Cards below zero</a>: "
                f"<span id='exposure-cards'>{esc(exposure.summary.get('cards', 0))}</span></p>")
        return self._page(session, login, "Back office", body)

    def _card(self, session: OfficeSession, login: Login, query: dict[str, str]) -> Page:
        card = query.get("card", "").strip()
        if not card:
            return self._page(session, login, "Card", f"<h1>Card</h1>{_card_search('')}")
        _check_card(card)
        detail = self.books.card_detail(card)
        if detail is None:
            raise NotFound("card_unknown", f"the ledger has no card {card}")
        transactions, total = self.books.read(
            lambda db, now: office_sql.card_transactions(db, card))
        holds = self.books.read(lambda db, now: office_sql.open_holds(db, card, now))
        currency = detail["currency"]
        block = detail["block"]
        if detail["blocked"]:
            status = Markup(f"<strong>blocked</strong>: <span id='card-block-reason'>"
                            f"{esc(block['reason'])}</span> (by {esc(block['login'])}, "
                            f"{esc(_when(block['at']))})")
        else:
            status = Markup("not blocked")
        facts = [("Card", Markup(f"<code>{esc(card)}</code>")), ("Program", detail["program"]),
                 ("Value", _money(detail["value_minor"], currency), "card-value"),
                 ("Points", detail["points"], "card-points"),
                 ("Held", _money(detail["held_minor"], currency), "card-held"),
                 ("Available", _money(detail["available_minor"], currency), "card-available"),
                 ("Held points", detail["held_points"], "card-held-points"),
                 ("Available points", detail["available_points"], "card-available-points"),
                 ("Status", status, "card-status")]
        engine_facts, lots = self._engine(detail)
        facts += engine_facts
        rows = "".join(
            f"<tr><th>{esc(fact[0])}</th><td{_id(fact[2] if len(fact) > 2 else None)}>"
            f"{_cell(fact[1])}</td></tr>" for fact in facts)
        shown = (f"the latest {len(transactions)} of {total}" if total > len(transactions)
                 else f"{total}")
        body = (f"<h1>Card <code>{esc(card)}</code></h1>{_card_search(card)}"
                f"<table class='facts'>{rows}</table>"
                f"{self._block_form(session, login, card, detail['blocked'])}{lots}"
                "<h2>Open holds</h2>"
                + _table(("hold", "value", "points", "terminal", "merchant", "placed",
                          "expires"),
                         ([hold["hold_id"], _money(hold["amount_minor"], currency),
                           hold["points"], hold["terminal"], hold["merchant"],
                           _when(hold["placed_at"]), _when(hold["expires_at"])]
                          for hold in holds), "holds")
                + f"<h2>Transactions ({esc(shown)})</h2>"
                + _table(("time", "store (gateway)", "terminal", "merchant", "kind", "amount",
                          "card value", "bonus", "points", "transaction", "authorized"),
                         ([_when(txn["time"]), txn["gateway_id"], txn["terminal"],
                           txn["merchant"], _kind(txn), _money(txn["amount_minor"], currency),
                           _money(txn["card_value_minor"], currency),
                           _money(txn["bonus_minor"], currency), txn["points"], txn["txn_id"],
                           txn["auth"]] for txn in transactions), "transactions"))
        return self._page(session, login, f"Card {card}", body)

    def _engine(self, detail: dict[str, Any]) -> tuple[list[tuple[str, object, str]], str]:
        """The card's tier and discount as facts, and its points lots as a table, from its
        kept engine state or the replay of its transactions (ledger/card_engine.py); or why
        they are not known."""
        engine = card_engine(detail, self.programs, self.books.now_s())
        known = engine["engine"]
        if known is None:
            return [("Tier and discount",
                     f"not known here: {REASON_TEXTS[engine['engine_reason']]}",
                     "card-engine")], ""
        lots = _table(("points", "earned", "expires"),
                      ([lot["points"], lot["earned_on"], lot["expires_on"] or "never"]
                       for lot in known["points_lots"]), "points-lots")
        source = (f"kept by the ledger, version {engine['engine_version']}"
                  if engine["engine_version"] is not None
                  else f"replayed from {known['replayed']} transactions")
        return [("Tier", known["tier"] or "none in the program", "card-tier"),
                ("Discount", _discount(known["discount"], detail["currency"]),
                 "card-discount"),
                ("Engine state", source, "card-engine-source")], f"<h2>Points lots</h2>{lots}"

    def _block_form(self, session: OfficeSession, login: Login, card: str,
                    blocked: bool) -> str:
        """The block or unblock form, for a login that may block (none for a clerk)."""
        if auth.BLOCK_CARD not in login.actions:
            return ""
        hidden = f"{_csrf(session)}<input type='hidden' name='card' value='{esc(card)}'>"
        if blocked:
            return (f"<form method='post' action='{PREFIX}/card/unblock'>{hidden}"
                    "<label>Reason <input name='reason' maxlength='"
                    f"{BLOCK_REASON_CHARS_MAX}'></label> "
                    "<button id='unblock' type='submit'>Unblock card</button></form>")
        return (f"<form method='post' action='{PREFIX}/card/block'>{hidden}"
                f"<label>Reason <input name='reason' required maxlength='"
                f"{BLOCK_REASON_CHARS_MAX}'></label> "
                "<button id='block' type='submit'>Block card</button></form>")

    def _block(self, session: OfficeSession, login: Login, form: dict[str, str]) -> Page:
        return self._change_block(login, form, True)

    def _unblock(self, session: OfficeSession, login: Login, form: dict[str, str]) -> Page:
        return self._change_block(login, form, False)

    def _change_block(self, login: Login, form: dict[str, str], blocked: bool) -> Page:
        auth.require(login, auth.BLOCK_CARD)
        card, reason = form.get("card", ""), form.get("reason", "").strip()
        _check_card(card)
        if len(reason) > BLOCK_REASON_CHARS_MAX or (blocked and not reason):
            raise BatchInvalid("request_malformed",
                               f"give a reason of 1 to {BLOCK_REASON_CHARS_MAX} characters")
        result = self.books.block_card(card, blocked, reason, login.name)
        log.info("AUDIT office: %s %s card %s (%s): %s", login.name,
                 "blocked" if blocked else "unblocked", card[:64],
                 "changed" if result["changed"] else "unchanged", reason)
        return _redirect(f"{PREFIX}/card?card={quote(card, safe='')}")

    def _alarms(self, session: OfficeSession, login: Login, query: dict[str, str]) -> Page:
        alarms = self.books.read(lambda db, now: office_sql.alarms(db))
        may_acknowledge = auth.ACKNOWLEDGE_ALARM in login.actions

        def acknowledged(alarm: dict[str, Any]) -> object:
            if alarm["acknowledged_at"] is not None:
                return (f"{alarm['acknowledged_by']}, {_when(alarm['acknowledged_at'])}")
            if not may_acknowledge:
                return "no"
            return Markup(f"<form method='post' action='{PREFIX}/alarms/acknowledge'>"
                          f"{_csrf(session)}<input type='hidden' name='alarm' "
                          f"value='{esc(alarm['id'])}'><button type='submit' "
                          f"id='acknowledge-{esc(alarm['id'])}'>Acknowledge</button></form>")

        body = (f"<h1>Alarms</h1><p>The latest {office_sql.ALARMS_MAX} at most, newest "
                "first.</p>"
                + _table(("id", "at", "reason", "detail", "acknowledged"),
                         ([alarm["id"], _when(alarm["at"]), alarm["reason"], alarm["detail"],
                           acknowledged(alarm)] for alarm in alarms), "alarms"))
        return self._page(session, login, "Alarms", body)

    def _acknowledge(self, session: OfficeSession, login: Login, form: dict[str, str]) -> Page:
        auth.require(login, auth.ACKNOWLEDGE_ALARM)
        text = form.get("alarm", "")
        if not text.isdigit() or len(text) > 18:
            raise BatchInvalid("request_malformed", "alarm: an alarm id")
        alarm_id = int(text)
        changed = self.books.transact(
            lambda db, now: office_sql.acknowledge_alarm(db, alarm_id, login.name, now))
        log.info("AUDIT office: %s acknowledged alarm %d (%s)", login.name, alarm_id,
                 "changed" if changed else "unchanged")
        return _redirect(f"{PREFIX}/alarms")

    def _exposure(self, session: OfficeSession, login: Login, query: dict[str, str]) -> Page:
        report = self.books.report("exposure")
        summary = report.summary
        body = ("<h1>Exposure</h1><p>Cards below zero: value sold on them without a ledger "
                f"hold (offline or stand-in). Cards: <span id='exposure-cards'>"
                f"{esc(summary.get('cards', 0))}</span>.</p>"
                + _table(("card", "value", "blocked"),
                         ([_card_link(row["card"]), _money(row["value_minor"], row["currency"]),
                           "yes" if row["blocked"] else "no"] for row in report.rows),
                         "exposure")
                + "<h2>By store</h2>"
                + _table(tuple(_columns(summary.get("by_gateway", []))),
                         (list(row.values()) for row in summary.get("by_gateway", [])),
                         "exposure-by-gateway"))
        return self._page(session, login, "Exposure", body)

    def _liabilities(self, session: OfficeSession, login: Login,
                     query: dict[str, str]) -> Page:
        parameters = _only(query, ("as_of", "window_days", "step_days"))
        step_days = _whole(parameters.pop("step_days", None), "step_days",
                           CHART_STEP_DAYS_DEFAULT, REPORT_WINDOW_DAYS_MAX)
        liability = self.books.report("liability", _only(parameters, ("as_of",)))
        breakage = self.books.report("breakage", parameters)
        history = self._history(liability.query.as_of, step_days)
        form = (f"<form method='get' action='{PREFIX}/liabilities'><label>As of "
                f"<input name='as_of' value='{esc(liability.query.as_of.isoformat())}'></label> "
                f"<label>Breakage window (days) <input name='window_days' "
                f"value='{esc(breakage.query.window_days)}'></label> "
                f"<label>Chart step (days) <input name='step_days' value='{esc(step_days)}'>"
                "</label> <button type='submit'>Show</button></form>")
        charts = "".join(_chart(unit, points) for unit, points in sorted(history.items()))
        body = (f"<h1>Liabilities and breakage</h1>{form}"
                f"<h2>Owed to card holders at the end of {esc(liability.query.as_of)}</h2>"
                + _table(("program", "account", "cards", "liability"),
                         ([row["program"], row["account"], row["cards"],
                           _money(row["liability_minor"], row["unit"])]
                          for row in liability.rows), "liability")
                + f"<h2>Breakage in the {esc(breakage.query.window_days)} days to "
                  f"{esc(breakage.query.as_of)}</h2>"
                + _table(("program", "merchant", "cards", "expirations", "breakage"),
                         ([row["program"], row["merchant"], row["cards"], row["expirations"],
                           _money(row["breakage_minor"], row["unit"])]
                          for row in breakage.rows), "breakage")
                + f"<h2>Over time, every {esc(step_days)} days</h2>"
                "<p>The line is what card holders are owed at the end of each day shown; the "
                f"bars, what expired in the {esc(step_days)} days up to it.</p>"
                + (charts or "<p>None.</p>")
                + _table(("date", "unit", "liability", "breakage"),
                         ([day, unit, _money(owed, unit), _money(expired, unit)]
                          for unit, points in sorted(history.items())
                          for day, owed, expired in points), "liability-history"))
        return self._page(session, login, "Liabilities", body)

    def _history(self, as_of: date, step_days: int) -> dict[str, list[tuple[str, int, int]]]:
        """Per unit, for each chart point (oldest first): day, liability, breakage in its step.

        Each point is the `liability` and `breakage` report as of that day, summed over
        programs and accounts of the unit, so the chart shows what the API would answer."""
        history: dict[str, list[tuple[str, int, int]]] = {}
        days = [as_of - timedelta(days=step_days * back) for back in
                range(CHART_POINTS - 1, -1, -1)]
        figures: list[tuple[str, dict[str, int], dict[str, int]]] = []
        for day in days:
            if day.year < 1970:
                continue
            owed: dict[str, int] = {}
            for row in self.books.report("liability", {"as_of": day.isoformat()}).rows:
                owed[row["unit"]] = owed.get(row["unit"], 0) + row["liability_minor"]
            expired: dict[str, int] = {}
            window = {"as_of": day.isoformat(), "window_days": str(step_days)}
            for row in self.books.report("breakage", window).rows:
                expired[row["unit"]] = expired.get(row["unit"], 0) + row["breakage_minor"]
            figures.append((day.isoformat(), owed, expired))
        units = sorted({unit for _, owed, expired in figures for unit in (*owed, *expired)})
        for unit in units:
            history[unit] = [(day, owed.get(unit, 0), expired.get(unit, 0))
                             for day, owed, expired in figures]
        return history

    # -- customers (ledger/customers.py, the API's own operations) -------------------------

    def _customers(self, session: OfficeSession, login: Login, query: dict[str, str]) -> Page:
        if not self.customers.keyed:
            body = (f"<h1>Customers</h1><p class='error' id='no-customer-key'>"
                    f"{esc(NO_CUSTOMER_KEY)}</p>")
            return self._page(session, login, "Customers", body, 503)
        body = ("<h1>Customers</h1><p>Find a customer by id, or by phone number or e-mail "
                "address (looked up by their keyed digest; the search is audited on the "
                "customer found).</p>"
                f"<form method='post' action='{PREFIX}/customers/find'>{_csrf(session)}"
                f"<label>Customer id <input name='customer_id' maxlength='{ID_CHARS_MAX}'>"
                "</label> <label>Phone <input name='phone' type='tel'></label> "
                "<label>E-mail <input name='email' type='email'></label> "
                "<button id='find-customer' type='submit'>Find</button></form>")
        return self._page(session, login, "Customers", body)

    def _find_customer(self, session: OfficeSession, login: Login,
                       form: dict[str, str]) -> Page:
        self._require_customer_key()
        auth.require(login, auth.READ_CUSTOMER)
        given = {name: value.strip() for name, value in form.items()
                 if name in ("customer_id", "phone", "email") and value.strip()}
        if len(given) != 1:
            raise BatchInvalid("request_malformed",
                               "give one of customer id, phone or e-mail")
        [(kind, value)] = given.items()
        if kind == "customer_id":
            _check_customer_id(value)
            customer_id = value
        else:
            customer_id = self.customers.find(kind, value, login.name)
        return _redirect(f"{PREFIX}/customer?id={quote(customer_id, safe='')}")

    def _customer(self, session: OfficeSession, login: Login, query: dict[str, str]) -> Page:
        self._require_customer_key()
        auth.require(login, auth.READ_CUSTOMER)
        customer_id = query.get("id", "").strip()
        _check_customer_id(customer_id)
        record = self.customers.show(customer_id, login.name)
        history = self.customers.history(customer_id)
        consent = record["marketing_consent"]
        consent_text = ("" if consent is None else
                        f"{'granted' if consent['granted'] else 'refused'} on "
                        f"{consent['date']} ({consent['source']})")
        facts = [("Customer", Markup(f"<code>{esc(customer_id)}</code>"), "customer-id"),
                 ("Name", record["name"], "customer-name"),
                 ("Phone", record["phone"], "customer-phone"),
                 ("E-mail", record["email"], "customer-email"),
                 ("Birthday", record["birthday"], "customer-birthday"),
                 ("Language", record["language"], "customer-language"),
                 ("Marketing consent", consent_text, "customer-consent"),
                 ("Notes", record["notes"], "customer-notes"),
                 ("Created", _when(record["created_at"]), "customer-created"),
                 ("Changed", _when(record["updated_at"]), "customer-updated")]
        if record["erased_at"] is not None:
            facts.append(("Erased", _when(record["erased_at"]), "customer-erased"))
        rows = "".join(f"<tr><th>{esc(label)}</th><td{_id(element)}>{_cell(value)}</td></tr>"
                       for label, value, element in facts)
        balances = {card["card"]: card for card in history["cards"]}
        cards = _table(("card", "linked", "by", "value", "points", "transactions"),
                       ([_card_link(card["card"]), _when(card["linked_at"]), card["linked_by"],
                         _money(balances[card["card"]]["value_minor"],
                                balances[card["card"]]["currency"] or ""),
                         balances[card["card"]]["points"],
                         balances[card["card"]]["transactions"]]
                        for card in record["cards"]), "customer-cards")
        transactions = _table(
            ("time", "card", "store (gateway)", "terminal", "kind", "amount", "value change",
             "points change", "value after", "points after", "transaction"),
            ([_when(txn["time"]), _card_link(txn["card"]), txn["store"], txn["terminal"],
              txn["kind"], _money(txn["amount_minor"], txn["currency"]),
              _money(txn["value_change_minor"], txn["currency"]), txn["points_change"],
              _money(txn["value_balance_minor"], txn["currency"]), txn["points_balance"],
              txn["txn_id"]] for txn in history["transactions"]), "customer-history")
        body = (f"<h1>Customer <code>{esc(customer_id)}</code></h1>"
                f"<table class='facts'>{rows}</table><h2>Cards</h2>{cards}"
                f"{self._customer_forms(session, login, record)}"
                f"<h2>History across stores ({len(history['transactions'])} "
                f"transactions)</h2>{transactions}")
        return self._page(session, login, f"Customer {customer_id}", body)

    def _require_customer_key(self) -> None:
        """customer_key_missing (a 503 page saying so) when the ledger holds no customer key:
        checked first, so an unknown id or a link is not answered differently without it."""
        if not self.customers.keyed:
            raise LedgerUnavailable("no customer key", reason="customer_key_missing")

    def _customer_forms(self, session: OfficeSession, login: Login,
                        record: dict[str, Any]) -> str:
        """Link a card, export, erase: each for a login whose role may (none once erased but
        the export)."""
        customer_id = record["customer_id"]
        hidden = (f"{_csrf(session)}<input type='hidden' name='customer_id' "
                  f"value='{esc(customer_id)}'>")
        forms = []
        if auth.CHANGE_CUSTOMER in login.actions and record["erased_at"] is None:
            forms.append(f"<form method='post' action='{PREFIX}/customer/link'>{hidden}"
                         f"<label>Card <input name='card' required maxlength='{ID_CHARS_MAX}'>"
                         "</label> <button id='link-card' type='submit'>Link card</button>"
                         "</form>")
        forms.append(f"<form method='post' action='{PREFIX}/customer/export'>{hidden}"
                     "<button id='export-customer' type='submit'>Export (JSON)</button></form>")
        if auth.ERASE_CUSTOMER in login.actions and record["erased_at"] is None:
            forms.append(f"<form method='post' action='{PREFIX}/customer/erase'>{hidden}"
                         "<label>Type the customer id to erase its personal data "
                         f"<input name='confirm' required maxlength='{ID_CHARS_MAX}'></label> "
                         "<button id='erase-customer' type='submit'>Erase</button></form>")
        return "<h2>Actions</h2>" + "".join(forms)

    def _link_card(self, session: OfficeSession, login: Login, form: dict[str, str]) -> Page:
        self._require_customer_key()
        auth.require(login, auth.CHANGE_CUSTOMER)
        customer_id, card = form.get("customer_id", ""), form.get("card", "").strip()
        _check_customer_id(customer_id)
        _check_card(card)
        self.customers.link(customer_id, card, login.name)
        return _redirect(f"{PREFIX}/customer?id={quote(customer_id, safe='')}")

    def _export_customer(self, session: OfficeSession, login: Login,
                         form: dict[str, str]) -> Page:
        self._require_customer_key()
        auth.require(login, auth.READ_CUSTOMER)
        customer_id = form.get("customer_id", "")
        _check_customer_id(customer_id)
        document = self.customers.export(customer_id, login.name)
        body = (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8")
        # The id is [A-Za-z0-9_-] (Customers refuses any other): safe in the header.
        disposition = f"attachment; filename=\"customer-{customer_id}.json\""
        return Page(200, body, (("Content-Disposition", disposition), *_SECURITY_HEADERS),
                    JSON_TYPE)

    def _erase_customer(self, session: OfficeSession, login: Login,
                        form: dict[str, str]) -> Page:
        self._require_customer_key()
        auth.require(login, auth.ERASE_CUSTOMER)
        customer_id = form.get("customer_id", "")
        _check_customer_id(customer_id)
        if form.get("confirm", "").strip() != customer_id:  # a check of intent, no secret
            raise BatchInvalid("confirm_mismatch", "type the customer's id in the box to "
                                                   "confirm the erasure")
        self.customers.erase(customer_id, login.name)
        return _redirect(f"{PREFIX}/customer?id={quote(customer_id, safe='')}")

    def _customer_value(self, session: OfficeSession, login: Login,
                        query: dict[str, str]) -> Page:
        report = self.books.report("customer_value", _only(
            query, ("as_of", "window_days", "top_percent", "next_percent")))
        parameters = report.query.parameters
        form = _parameter_form("customer-value", (
            ("As of", "as_of", report.query.as_of.isoformat()),
            ("Over (days)", "window_days", report.query.window_days),
            ("Top (%)", "top_percent", parameters["top_percent"]),
            ("Next (%)", "next_percent", parameters["next_percent"])))
        classes = _table(
            ("currency", "class", "customers", "revenue", "share"),
            ([currency, row["class"], row["customers"], _money(row["revenue_minor"], currency),
              _percent(row["share_bp"])]
             for currency, figures in sorted(report.summary.items())
             for row in figures["classes"]), "customer-classes")
        customers = _table(
            ("currency", "class", "rank", "customer", "cards", "purchases", "revenue", "share"),
            ([row["currency"], row["class"], row["rank"], _customer_link(row["customer_id"]),
              _card_links(row["cards"]), row["purchases"],
              _money(row["revenue_minor"], row["currency"]), _percent(row["share_bp"])]
             for row in report.rows[:CUSTOMER_ROWS_MAX]), "customer-value")
        body = (f"<h1>Customer value</h1>{form}<p>Customers (a customer's cards together; a "
                "card of nobody's on its own) who bought in the "
                f"{esc(report.query.window_days)} days to {esc(report.query.as_of)}, ranked by "
                f"revenue: the top {esc(parameters['top_percent'])} %, the next "
                f"{esc(parameters['next_percent'])} % and the rest (counts rounded up); class "
                "shares by the largest remainder, so they add up to 100 %.</p>"
                f"{classes}<h2>Customers by rank (at most {CUSTOMER_ROWS_MAX})</h2>{customers}")
        return self._page(session, login, "Customer value", body)

    def _customer_lapsing(self, session: OfficeSession, login: Login,
                          query: dict[str, str]) -> Page:
        report = self.customers.report(
            "customer_lapsing", _only(query, ("as_of", "window_days", "days", "min_purchases")),
            login.name, auth.READ_CUSTOMER in login.actions)
        parameters = report.query.parameters
        form = _parameter_form("customer-lapsing", (
            ("As of", "as_of", report.query.as_of.isoformat()),
            ("Over (days)", "window_days", report.query.window_days),
            ("Away for (days)", "days", parameters["days"]),
            ("Purchases at least", "min_purchases", parameters["min_purchases"])))
        contacts = report.summary["contacts"]
        note = {"customer_key_missing": NO_CUSTOMER_KEY,
                "not_permitted": "your role may not read customers' contact details"}.get(
            contacts, "contact details are shown where the customer's marketing consent is "
                      "granted; reading them is recorded in each customer's audit trail")
        body = (f"<h1>Lapsing customers</h1>{form}<p>Customers with at least "
                f"{esc(parameters['min_purchases'])} purchases in the "
                f"{esc(report.query.window_days)} days to {esc(report.query.as_of)} and none in "
                f"the last {esc(parameters['days'])}: <span id='lapsing-customers'>"
                f"{len(report.rows)}</span>.</p><p id='contacts-note'>{esc(note)}</p>"
                + _table(("customer", "cards", "purchases", "spent", "last purchase",
                          "days since", "consent", "name", "phone", "e-mail", "language"),
                         ([_customer_link(row["customer_id"]), _card_links(row["cards"]),
                           row["purchases"], _money(row["monetary_minor"], row["currency"]),
                           row["last_purchase"], row["days_since_purchase"],
                           {True: "yes", False: "no"}.get(row["marketing_consent"], ""),
                           row["name"], row["phone"], row["email"], row["language"]]
                          for row in report.rows), "customer-lapsing"))
        return self._page(session, login, "Lapsing customers", body)

    def _customer_retention(self, session: OfficeSession, login: Login,
                            query: dict[str, str]) -> Page:
        report = self.books.report("customer_retention", _only(query, ("as_of", "months")))
        form = _parameter_form("customer-retention", (
            ("As of", "as_of", report.query.as_of.isoformat()),
            ("Cohorts (months)", "months", report.query.parameters["months"])))
        body = (f"<h1>Retention</h1>{form}<p>Customers by the month of their first purchase "
                f"(the {esc(report.query.parameters['months'])} months to "
                f"{esc(report.query.as_of)}), and how many of them bought in each month "
                "since.</p>"
                + _table(("cohort", "month", "months after", "customers", "bought",
                          "retention"),
                         ([row["cohort"], row["month"], row["months_after"], row["customers"],
                           row["active"], _percent(row["retention_bp"])]
                          for row in report.rows), "customer-retention"))
        return self._page(session, login, "Retention", body)

    def _segments(self, session: OfficeSession, login: Login, query: dict[str, str]) -> Page:
        report = self.books.report("segments", _only(query, ("as_of", "window_days")))
        form = (f"<form method='get' action='{PREFIX}/segments'><label>As of <input "
                f"name='as_of' value='{esc(report.query.as_of.isoformat())}'></label> "
                f"<label>Over (days) <input name='window_days' "
                f"value='{esc(report.query.window_days)}'></label> "
                "<button type='submit'>Show</button></form>")
        summary = _table(
            ("currency", "cards", "top cards", "their revenue", "all revenue", "top share"),
            ([currency, figures["cards"], figures["top_cards"],
              _money(figures["top_revenue_minor"], currency),
              _money(figures["revenue_minor"], currency), _percent(figures["top_share_bp"])]
             for currency, figures in sorted(report.summary.items())), "segments-summary")
        rows = sorted(report.rows, key=lambda row: (row["currency"], -row["monetary_minor"],
                                                     row["card"]))[:SEGMENT_ROWS_MAX]
        body = (f"<h1>Segments</h1>{form}<p>Cards by what they spent in the "
                f"{esc(report.query.window_days)} days to {esc(report.query.as_of)}: the top "
                "fifth (rounded up) and its share of the revenue; recency, frequency and "
                "spend each scored 1 (lowest fifth) to 5.</p>" + summary
                + f"<h2>Cards, the biggest spenders first (at most {SEGMENT_ROWS_MAX})</h2>"
                + _table(("card", "program", "spent", "purchases", "days since", "RFM",
                          "top fifth", "share"),
                         ([_card_link(row["card"]), row["program"],
                           _money(row["monetary_minor"], row["currency"]), row["frequency"],
                           row["recency_days"], row["rfm_score"],
                           "yes" if row["top_fifth"] else "no",
                           _percent(row["revenue_share_bp"])] for row in rows), "segments"))
        return self._page(session, login, "Segments", body)

    def _lapsing(self, session: OfficeSession, login: Login, query: dict[str, str]) -> Page:
        report = self.books.report(
            "lapsing", _only(query, ("as_of", "window_days", "days", "min_purchases")))
        parameters = report.query.parameters
        form = (f"<form method='get' action='{PREFIX}/lapsing'><label>As of <input "
                f"name='as_of' value='{esc(report.query.as_of.isoformat())}'></label> "
                f"<label>Over (days) <input name='window_days' "
                f"value='{esc(report.query.window_days)}'></label> "
                f"<label>Away for (days) <input name='days' value='{esc(parameters['days'])}'>"
                f"</label> <label>Purchases at least <input name='min_purchases' "
                f"value='{esc(parameters['min_purchases'])}'></label> "
                "<button type='submit'>Show</button></form>")
        body = (f"<h1>Lapsing regulars</h1>{form}<p>Cards with at least "
                f"{esc(parameters['min_purchases'])} purchases in the "
                f"{esc(report.query.window_days)} days to {esc(report.query.as_of)} and none in "
                f"the last {esc(parameters['days'])}: <span id='lapsing-cards'>"
                f"{len(report.rows)}</span>.</p>"
                + _table(("card", "program", "purchases", "spent", "last purchase",
                          "days since"),
                         ([_card_link(row["card"]), row["program"], row["purchases"],
                           _money(row["monetary_minor"], row["currency"]),
                           row["last_purchase"], row["days_since_purchase"]]
                          for row in report.rows), "lapsing"))
        return self._page(session, login, "Lapsing", body)

    def _fleet(self, session: OfficeSession, login: Login, query: dict[str, str]) -> Page:
        gateways = self.books.read(lambda db, now: office_sql.gateways(db))
        reported = self.books.read(office_sql.fleet)
        online = sum(t["online"] for gateway in reported for t in gateway["terminals"])
        listed = sum(len(gateway["terminals"]) for gateway in reported)
        body = ("<h1>Fleet</h1><h2>Terminals</h2><p>As each store's gateway last reported "
                f"them: <span id='fleet-online'>{online}</span> of {listed} online. A report "
                f"older than {office_sql.FLEET_REPORT_STALE_S} s is stale: its terminals are "
                "not counted online.</p>"
                + ("".join(_fleet_gateway(gateway) for gateway in reported)
                   or "<p id='fleet-reports'>No gateway has reported.</p>")
                + "<h2>Settlement</h2><p>Each store's gateway as the ledger knows it from the "
                "batches it settled.</p>"
                + _table(("gateway", "batches", "transactions", "posted", "last batch",
                          "terminals", "latest transaction"),
                         ([gateway["gateway_id"], gateway["batches"], gateway["transactions"],
                           gateway["posted"], _when(gateway["last_batch_at"]),
                           gateway["terminals"] or 0, _when(gateway["last_txn_time"])]
                          for gateway in gateways), "fleet"))
        return self._page(session, login, "Fleet", body)

    # -- layout ----------------------------------------------------------------------------

    def _page(self, session: OfficeSession, login: Login, title: str, body: str,
              status: int = 200) -> Page:
        nav = " ".join(f"<a href='{PREFIX}{path}'>{label}</a>" for path, label in (
            ("/", "Home"), ("/card", "Card"), ("/alarms", "Alarms"), ("/exposure", "Exposure"),
            ("/liabilities", "Liabilities"), ("/segments", "Segments"),
            ("/lapsing", "Lapsing"), ("/fleet", "Fleet"), ("/customers", "Customers"),
            ("/customer-value", "Customer value"), ("/customer-lapsing", "Lapsing customers"),
            ("/customer-retention", "Retention")))
        header = (f"<header><nav>{nav}</nav><span class='who'>Signed in as "
                  f"<span id='operator'>{esc(login.name)}</span> ({esc(login.role)}) "
                  f"<form method='post' action='{PREFIX}/sign-out'>{_csrf(session)}"
                  "<button id='sign-out' type='submit'>Sign out</button></form></span>"
                  "</header>")
        return _html_page(status, title, header + f"<main>{body}</main>")

    def _sign_in_form(self, status: int, message: str = "") -> Page:
        if self._logins() is None:
            # An open ledger (no --logins, loopback only) has no operators to sign in.
            message = "this ledger runs without a logins file: nobody can sign in"
        note = f"<p class='error' id='error'>{esc(message)}</p>" if message else ""
        body = ("<main><h1>tilltap back office</h1>" + note
                + f"<form method='post' action='{PREFIX}/sign-in'>"
                "<p><label>Name <input name='name' autocomplete='username' required></label></p>"
                "<p><label>Password <input name='password' type='password' "
                "autocomplete='current-password' required></label></p>"
                "<p><button id='sign-in' type='submit'>Sign in</button></p></form></main>")
        return _html_page(status, "Sign in", body)

    def _error_page(self, status: int, reason: str, detail: str) -> Page:
        body = (f"<main><h1>{esc(status)} {esc(reason)}</h1><p id='error'>{esc(detail)}</p>"
                f"<p><a href='{PREFIX}/'>Back office</a></p></main>")
        return _html_page(status, reason, body)


_STYLE = ("body{font-family:sans-serif;margin:1em}header{display:flex;gap:2em;"
          "align-items:center}header form{display:inline}nav a{margin-right:1em}"
          "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;"
          "padding:.2em .5em;text-align:left}.error{color:#a00}")


def _fleet_gateway(gateway: dict[str, Any]) -> str:
    """One gateway's last fleet report (ledger/office_sql.py `fleet`): when it came, its
    totals, and a row per terminal."""
    gateway_id = gateway["gateway_id"]
    stale = (" <span class='error' id='fleet-stale-" + esc(gateway_id) + "'>stale</span>"
             if gateway["stale"] else "")
    missing = gateway["terminals_registered"] - len(gateway["terminals"])
    note = f" ({missing} more registered, not reported)" if missing > 0 else ""
    return (f"<h3>Gateway {esc(gateway_id)}{stale}</h3><p>Reported "
            f"{esc(_when(gateway['reported_at']))}; {esc(gateway['terminals_registered'])} "
            f"terminals registered{esc(note)}; {esc(gateway['pending_records'])} records "
            f"pending settlement; configuration version {esc(gateway['config_version'])}.</p>"
            + _table(("terminal", "merchant", "online", "status", "last seen",
                      "journal backlog", "firmware", "config sent", "config named",
                      "refused", "free heap"),
                     ([t["terminal"], t["merchant"], "yes" if t["online"] else "no", t["state"],
                       _when(t["heard_at"]), _known(t["journal_depth"]), _known(t["firmware"]),
                       _known(t["config_sent"]), _known(t["config_named"]),
                       _known(t["refused"]), _known(t["heap_free"])]
                      for t in gateway["terminals"]), f"fleet-{gateway_id}"))


def _known(value: object) -> object:
    """A reported value, or an empty cell when the terminal did not say."""
    return "" if value is None else value


def _html_page(status: int, title: str, body: str) -> Page:
    document = (f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
                f"<title>{esc(title)} - tilltap</title><style>{_STYLE}</style></head>"
                f"<body>{body}</body></html>")
    return Page(status, document.encode("utf-8"), _SECURITY_HEADERS)


def _redirect(location: str, *headers: tuple[str, str]) -> Page:
    """303 See Other: after a POST the browser GETs the result (no form resent on reload)."""
    return Page(303, b"", (("Location", location), *headers, *_SECURITY_HEADERS))


def _table(columns: Iterable[str], rows: Iterable[list[Any]], table_id: str) -> str:
    head = "".join(f"<th>{esc(column)}</th>" for column in columns)
    body = "".join("<tr>" + "".join(f"<td>{_cell(value)}</td>" for value in row) + "</tr>"
                   for row in rows)
    if not body:
        return f"<p id='{esc(table_id)}'>None.</p>"
    return (f"<table id='{esc(table_id)}'><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table>")


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    return list(rows[0]) if rows else []


def _cell(value: object) -> str:
    return value if isinstance(value, Markup) else esc(value)


def _id(element_id: str | None) -> str:
    return f" id='{esc(element_id)}'" if element_id else ""


def _csrf(session: OfficeSession) -> str:
    return f"<input type='hidden' name='csrf' value='{esc(session.csrf)}'>"


def _card_search(card: str) -> str:
    return (f"<form method='get' action='{PREFIX}/card'><label>Card <input name='card' "
            f"value='{esc(card)}' maxlength='{ID_CHARS_MAX}'></label> "
            "<button id='find-card' type='submit'>Show</button></form>")


def _customer_link(customer_id: str | None) -> object:
    if customer_id is None:
        return "(no customer)"
    return Markup(f"<a href='{PREFIX}/customer?id={esc(quote(customer_id, safe=''))}'>"
                  f"{esc(customer_id)}</a>")


def _card_links(cards: Iterable[str]) -> Markup:
    return Markup(" ".join(_card_link(card) for card in cards))


def _check_customer_id(customer_id: str) -> None:
    if not 0 < len(customer_id) <= ID_CHARS_MAX or not customer_id.isprintable():
        raise BatchInvalid("parameter_invalid",
                           f"a customer id has 1 to {ID_CHARS_MAX} characters")


def _parameter_form(page: str, fields: Iterable[tuple[str, str, object]]) -> str:
    """A GET form of report parameters: (label, name, current value) each."""
    boxes = " ".join(f"<label>{esc(label)} <input name='{esc(name)}' value='{esc(value)}'>"
                     "</label>" for label, name, value in fields)
    return (f"<form method='get' action='{PREFIX}/{page}'>{boxes} "
            "<button type='submit'>Show</button></form>")


def _card_link(card: str) -> Markup:
    return Markup(f"<a href='{PREFIX}/card?card={esc(quote(card, safe=''))}'>{esc(card)}</a>")


def _check_card(card: str) -> None:
    """A card id as the ledger keeps them: 1 to ID_CHARS_MAX visible characters."""
    if not 0 < len(card) <= ID_CHARS_MAX or not card.isprintable():
        raise BatchInvalid("parameter_invalid", f"a card id has 1 to {ID_CHARS_MAX} characters")


def _money(minor: int | None, unit: str) -> str:
    """12.50 EUR for a currency, 120 PTS for points (or any unit without an exponent)."""
    if minor is None:
        return ""
    if exponent_or_none(unit) is None:
        return f"{minor} {unit}"
    return str(format_minor(minor, unit))


def _discount(discount: dict[str, Any], currency: str) -> str:
    """A card's discount as a sentence: today's percent, the tracked one's last day and the
    spend towards the next (ledger/card_engine.py)."""
    parts = [f"{discount['pct']} % off today"]
    if discount["last_on"] is not None:
        parts.append(f"{discount['tracked_pct']} % earned by spend, through "
                     f"{discount['last_on']}")
    if discount["threshold_minor"] is not None:
        parts.append(f"{_money(discount['spend_minor'], currency)} of "
                     f"{_money(discount['threshold_minor'], currency)} towards the next")
    return "; ".join(parts)


def _kind(txn: dict[str, Any]) -> str:
    """A transaction's kind as the office reads it: a reward redemption names its item."""
    reward = txn.get("reward")
    return txn["kind"] if reward is None else f"{txn['kind']}: reward {reward}"


def _when(seconds: int | None) -> str:
    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _fields(text: str, malformed: str) -> dict[str, str]:
    """Form or query fields, each at most once; anything else refuses the request whole."""
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text),
                          max_num_fields=FORM_FIELDS_MAX)
    except ValueError as error:
        raise BatchInvalid(malformed, f"the form: {str(error)[:200]}") from error
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise BatchInvalid(malformed, "a field is given twice")
    return fields


def _cookie(header: str | None, name: str) -> str | None:
    """The value of one cookie in a Cookie header (the last if sent twice), or None."""
    found = None
    for part in (header or "").split(";"):
        key, separator, value = part.strip().partition("=")
        if separator and key == name and value:
            found = value
    return found


def _only(fields: Mapping[str, str], names: Iterable[str]) -> dict[str, str]:
    """The named fields that were filled in (an empty box means the default)."""
    return {name: fields[name] for name in names if fields.get(name)}


def _whole(text: str | None, name: str, default: int, maximum: int) -> int:
    """A whole number from 1 to `maximum` from a query field, or the default when empty."""
    if text is None:
        return default
    if not (text.isascii() and text.isdigit() and len(text) <= 6 and 1 <= int(text) <= maximum):
        raise BatchInvalid("parameter_invalid",
                           f"{name}: {text[:32]!r} is not a whole number from 1 to {maximum}")
    return int(text)


def _percent(basis_points: int) -> str:
    """Basis points as a percentage with two decimals (exact: integer arithmetic)."""
    return f"{basis_points // 100}.{basis_points % 100:02d} %"


def _chart(unit: str, points: list[tuple[str, int, int]]) -> str:
    """An inline SVG (no script, allowed by the page's policy): liability as a line and
    breakage as bars, both on one scale from 0 to the largest figure of the unit."""
    width, height, margin = CHART_WIDTH_PX, CHART_HEIGHT_PX, CHART_MARGIN_PX
    top = max([1, *(owed for _, owed, _ in points), *(expired for _, _, expired in points)])
    step = (width - 2 * margin) / max(1, len(points) - 1)

    def y(value: int) -> float:
        return height - margin - (height - 2 * margin) * value / top

    line = " ".join(f"{margin + index * step:.1f},{y(owed):.1f}"
                    for index, (_, owed, _) in enumerate(points))
    bar_px = max(2.0, step / 3)
    bars = "".join(
        f"<rect x='{margin + index * step - bar_px / 2:.1f}' y='{y(expired):.1f}' "
        f"width='{bar_px:.1f}' height='{height - margin - y(expired):.1f}' fill='#d99'>"
        f"<title>{esc(day)}: {esc(_money(expired, unit))} expired</title></rect>"
        for index, (day, _, expired) in enumerate(points) if expired)
    dots = "".join(
        f"<circle cx='{margin + index * step:.1f}' cy='{y(owed):.1f}' r='3' fill='#36c'>"
        f"<title>{esc(day)}: {esc(_money(owed, unit))} owed</title></circle>"
        for index, (day, owed, _) in enumerate(points))
    axis = (f"<line x1='{margin}' y1='{height - margin}' x2='{width - margin}' "
            f"y2='{height - margin}' stroke='#888'/>"
            f"<text x='{margin}' y='{height - margin / 3:.0f}' font-size='11'>"
            f"{esc(points[0][0])}</text>"
            f"<text x='{width - margin}' y='{height - margin / 3:.0f}' font-size='11' "
            f"text-anchor='end'>{esc(points[-1][0])}</text>"
            f"<text x='{margin}' y='{margin - 8}' font-size='11'>{esc(_money(top, unit))}</text>")
    return (f"<figure><figcaption>{esc(unit)}</figcaption><svg class='chart' "
            f"id='chart-{esc(unit)}' xmlns='http://www.w3.org/2000/svg' width='{width}' "
            f"height='{height}' viewBox='0 0 {width} {height}' role='img'>{axis}{bars}"
            f"<polyline fill='none' stroke='#36c' stroke-width='2' points='{line}'/>{dots}"
            "</svg></figure>")
