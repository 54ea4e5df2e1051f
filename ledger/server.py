"""HTTP intake of the ledger: settlement batches in, balances and reports out (stdlib only).

    POST   /v1/batches         a settlement batch (application/json) -> 200 / 400 / 409 / 413
    POST   /v1/holds           hold card value  -> 201 placed / 200 replay / 409 / 404 / 400
    GET    /v1/holds           {status: count, ..., "posted_late": n}
    GET    /v1/holds/<id>      one hold                              -> 200 / 404 hold_unknown
    DELETE /v1/holds/<id>      void it                               -> 200 / 404 / 409
    GET    /v1/cards/<card>    one card's balance, block, last stores and engine state (tier,
                               discount, points lots, its version: ledger/card_engine.py)
                               -> 200 / 404
    POST   /v1/cards/<card>/block   block it for every store {"reason"}  -> 200 / 404
    DELETE /v1/cards/<card>/block   unblock it [{"reason"}]              -> 200 / 404
    POST   /v1/cards/<card>/replace a lost card by a new one {"new_card", "reason"}
                               -> 200 / 404 / 409 / 400 (ledger/replace_sql.py)
    GET    /v1/blocks?since=ID {"blocks": [change, ...], "next": ID}, the gateways' feed
    GET    /v1/changes?after=XID.ID[&for=GATEWAY] {"changes": [txn, ...], "next": "XID.ID"},
                               the card feed (with `for`: only of the cards it serves)
    POST   /v1/served          {"cards": [card, ...]}: a gateway serves them (its feed)
    GET    /v1/balances        {"balances": [card balance, ...]}
    GET    /v1/terminals       {terminal: {"count", "by_kind"}}
    GET    /v1/trial-balance   {unit: sum}, all zero in healthy books
    GET    /v1/alarms          {"alarms": [...]}
    GET    /v1/reports/<name>  ?as_of=YYYY-MM-DD&window_days=N[&...] (docs/ledger.md, Reports);
                               customer_lapsing with contacts via Customers.report
    GET    /v1/health          {"status": "ok", "dialect": ...} or 503 (also GET /health)
    GET    /v1/openapi.json    this API as an OpenAPI 3.1 document (ledger/openapi.py); no login
    GET    /v1/refused         ?batch_id=ID: the transactions the ledger refused
    POST   /v1/fleet           a gateway's report of its terminals (ledger/fleet_sql.py) -> 200
    GET    /v1/fleet           {"gateways": [{..., "terminals": [...]}, ...]} as last reported
    GET    /metrics            Prometheus text (ledger/metrics.py); reader or admin
    GET/POST /office/...       the back office's HTML pages, its own sign-in (ledger/office.py)
    GET    /v1/cards/<card>/history  the card's transactions across stores, running balances
    POST   /v1/customers       a new customer (ledger/customers.py) -> 201 / 400 / 409
    GET    /v1/customers/<id>  its record; PATCH: change fields; DELETE: erase it
    PUT    /v1/customers/<id>/cards/<card>   link a card; DELETE: unlink it
    GET    /v1/customers/<id>/history        its cards' transactions across stores
    GET    /v1/customers/<id>/export         everything held about it, one JSON document
    POST   /v1/customers/find  {"phone"|"email": text} -> {"customer_id"} / 404 customer_unknown
    POST   /v1/customers/retention  {"inactive_days", "dry_run"}: erase (or list) the inactive
    POST   /v1/offers/grants   issue a targeted offer {"program", "offer", "issue", "uses",
                               "last_on", "cards"?, "customers"?, "segment"?} (ledger/offers.py)
    GET    /v1/offers/report   ?program=P&offer=O: the offer's response
    POST   /v1/rank            {"program", "period"?}: rank the cards, post their levels
    POST   /v1/rewards/stock   set, add to or stop counting a reward item's stock at a merchant
                               {"program", "item", "merchant", "quantity"|"add"|"uncount"}
    GET    /v1/rewards/stock   ?program=P (optional): the counted items, held, available
    POST   /v1/companies   create or change a company {"company", "name", "currency",
                           "budget_minor", "period"} -> 201 created / 200 / 400 / 409
    GET    /v1/companies/<id>  its budget, period, spent, held, available and cards -> 200 / 404
    POST   /v1/companies/<id>/cards  {"card"}: add a card -> 200 / 400 / 404 / 409
    DELETE /v1/companies/<id>/cards/<card>  take it out -> 200 / 404
    POST   /v1/enrolments      a counter enrols a card: join or create a customer by phone or
                               e-mail (ledger/customers.py `Customers.enrol`) -> 200 / 4xx

Every answer is JSON; every error is ``{"error": reason, "detail": text}``. The server
never dies of a request: rejections keep their status, a database fault is 503
``ledger_unavailable``, anything unexpected is logged and answered 500 ``internal_error``.
Requests run side by side (`Books` takes no lock; PostgreSQL locks the cards each one
changes, SQLite takes them in turn); at most HTTP_REQUESTS_CONCURRENT_MAX requests are
served at once, the rest are answered 503 ``ledger_busy``, and at most
BATCH_POSTS_CONCURRENT_MAX of them post batches, so holds are answered while batches post.
A background sweep marks expired holds every HOLD_SWEEP_INTERVAL_S (reads judge expiry by
the clock meanwhile).

Run it: ``python -m ledger.server --dsn sqlite:///var/lib/tilltap/ledger.db --port 8080``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import socket
import ssl
import sys
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType
from typing import Any, Protocol
from urllib.parse import parse_qs, parse_qsl, unquote, urlsplit

from ledger import auth, feed_sql, fleet_sql, office, openapi
from ledger.auth import Login, LoginsInvalid, authenticate, is_loopback, load_logins
from ledger.books import Books, open_books
from ledger.card_engine import card_engine
from ledger.customers import Customers, parse_find
from ledger.db import POSTGRES_SCHEMES
from ledger.errors import (
    BatchInvalid,
    BatchTooLarge,
    Forbidden,
    LedgerError,
    LedgerRejected,
    LedgerUnavailable,
    NotFound,
)
from ledger.limits import (
    BATCH_BYTES_MAX,
    BATCH_POST_WAIT_S,
    BATCH_POSTS_CONCURRENT_MAX,
    BLOCK_REASON_CHARS_MAX,
    CUSTOMER_BYTES_MAX,
    HOLD_BYTES_MAX,
    HOLD_SWEEP_INTERVAL_S,
    HTTP_BODY_BASE_S,
    HTTP_BODY_RATE_MIN_BYTES_PER_S,
    HTTP_CONNECTIONS_MAX,
    HTTP_CONNECTIONS_PER_CLIENT_MAX,
    HTTP_LISTEN_BACKLOG,
    HTTP_REQUESTS_CONCURRENT_MAX,
    HTTP_SHUTDOWN_POLL_S,
    HTTP_SOCKET_TIMEOUT_S,
    ID_CHARS_MAX,
    LOGINS_RELOAD_INTERVAL_S,
    SERVED_BYTES_MAX,
    SERVED_CARDS_PER_POST_MAX,
    SERVER_SWITCH_INTERVAL_S,
)
from ledger.metrics import CONTENT_TYPE as METRICS_TYPE
from ledger.metrics import METRICS_PATH, LedgerMetrics
from ledger.openapi import OPENAPI_PATH
from ledger.personal_crypto import CustomerKey, KeyFileInvalid, KeyMismatch, load_key_file
from ledger.validate import ID_PATTERN
from protocol.errors import ValidationError
from protocol.programs import validate_programs

log = logging.getLogger(__name__)

JSON_TYPE = "application/json"
CARDS_PREFIX = "/v1/cards/"
HISTORY_SUFFIX = "/history"
CUSTOMERS_PATH = "/v1/customers"
CUSTOMERS_PREFIX = "/v1/customers/"
CUSTOMER_CARDS_PART = "/cards/"
CUSTOMER_FIND_PART = "find"  # POST /v1/customers/find: no generated id is this word
CUSTOMER_RETENTION_PART = "retention"  # POST /v1/customers/retention
ENROLMENTS_PATH = "/v1/enrolments"
OFFER_GRANTS_PATH = "/v1/offers/grants"
OFFER_REPORT_PATH = "/v1/offers/report"
RANK_PATH = "/v1/rank"
REWARD_STOCK_PATH = "/v1/rewards/stock"
EPOCH_DATE = date(1970, 1, 1)  # the engine's day 0
COMPANIES_PATH = "/v1/companies"
COMPANIES_PREFIX = "/v1/companies/"
COMPANY_CARDS_PART = "cards"
BLOCK_SUFFIX = "/block"
REPLACE_SUFFIX = "/replace"
BLOCKS_PATH = "/v1/blocks"
CHANGES_PATH = "/v1/changes"
SERVED_PATH = "/v1/served"
REGISTRATION_FIELDS = frozenset({"program", "currency", "merchant", "value_minor"})
HOLDS_PATH = "/v1/holds"
BATCHES_PATH = "/v1/batches"
HEALTH_PATH = "/v1/health"
HEALTH_PATHS = frozenset({HEALTH_PATH, "/health"})  # /health: what probes ask by default
OPEN_PATHS = HEALTH_PATHS | {OPENAPI_PATH}  # asked without a login (nothing of the books)
REFUSED_PATH = "/v1/refused"
FLEET_PATH = "/v1/fleet"
HOLDS_PREFIX = "/v1/holds/"
REPORTS_PREFIX = "/v1/reports/"
QUERY_FIELDS_MAX = 16
"""Most query parameters a report request may carry (it needs at most four)."""
Answer = tuple[int, Any]
Programs = dict[str, dict[str, Any]]
"""Validated programs by id (protocol.programs), as the gateways run them."""


class LoginsSource:
    """The logins the server checks callers against, re-read when the file changes.

    None as `path` means an open ledger (in-process tests of other layers only; `serve`
    refuses it anywhere but loopback). A file that turns invalid keeps the last good logins
    and is logged, so an operator's typo does not lock every gateway out."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._checked_at = 0.0
        self._mtime_ns: int | None = None
        self._logins: dict[str, Login] | None = None
        if path is not None:
            self._mtime_ns = path.stat().st_mtime_ns
            self._logins = load_logins(path)  # LoginsInvalid at start: refuse to start

    def current(self) -> dict[str, Login] | None:
        """The logins (None: open), reloaded at most every LOGINS_RELOAD_INTERVAL_S."""
        if self.path is None:
            return None
        now = time.monotonic()
        with self._lock:
            if now - self._checked_at < LOGINS_RELOAD_INTERVAL_S:
                return self._logins
            self._checked_at = now
            previous = self._mtime_ns
        try:
            mtime_ns = self.path.stat().st_mtime_ns
            if mtime_ns != previous:
                logins = load_logins(self.path)
                with self._lock:
                    self._logins, self._mtime_ns = logins, mtime_ns
                log.info("logins reloaded from %s: %d logins", self.path, len(logins),
                         extra={"event": "logins_reloaded", "logins": len(logins)})
        except (OSError, LoginsInvalid) as error:
            log.error("ALARM logins file %s unusable, keeping the last good one: %s",
                      self.path, error, extra={"event": "alarm", "reason": "logins_invalid"})
        with self._lock:
            return self._logins


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer with the books, logins, request slots and connection caps."""

    daemon_threads = True
    request_queue_size = HTTP_LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int], books: Books, logins: LoginsSource,
                 tls: ssl.SSLContext | None, customer_key: CustomerKey | None = None,
                 programs: Programs | None = None) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.books = books
        self.logins = logins
        self.tls = tls
        self.programs = programs  # None: started without --programs, no engine state shown
        self.metrics = LedgerMetrics(books)
        self.customers = Customers(books, customer_key)
        self.office = office.Office(books, logins.current, secure=tls is not None,
                                    customers=self.customers, programs=programs)
        self.slots = threading.BoundedSemaphore(HTTP_REQUESTS_CONCURRENT_MAX)
        self.batch_turns = threading.BoundedSemaphore(BATCH_POSTS_CONCURRENT_MAX)
        self._connections: dict[str, int] = {}
        self._connections_lock = threading.Lock()
        self._open: set[Any] = set()  # connections being served (kept alive between requests)
        super().__init__(address, _Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        """Accept; with TLS the handshake is left to the request's own thread (a client
        that never finishes it must not stall the accept loop)."""
        connection, address = self.socket.accept()
        if self.tls is not None:
            connection = self.tls.wrap_socket(connection, server_side=True,
                                              do_handshake_on_connect=False)
        return connection, address

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Admit a connection within the total and per-client caps; others are closed."""
        host = str(client_address[0])
        with self._connections_lock:
            total = sum(self._connections.values())
            mine = self._connections.get(host, 0)
            if total >= HTTP_CONNECTIONS_MAX or mine >= HTTP_CONNECTIONS_PER_CLIENT_MAX:
                refused = True
            else:
                self._connections[host] = mine + 1
                self._open.add(request)
                refused = False
        if refused:
            log.warning("connection from %s refused: %d open from it, %d in all", host, mine,
                        total, extra={"event": "connection_refused", "client": host})
        return not refused

    def shutdown_request(self, request: Any) -> None:
        """Close a connection and give its place back (also after a refused handshake)."""
        try:
            host = str(request.getpeername()[0])
        except OSError:
            host = None
        super().shutdown_request(request)
        with self._connections_lock:
            self._open.discard(request)
        if host is not None:
            self._release(host)

    def close_open(self) -> None:
        """End every connection still served (a kept-alive one waits in its thread for the
        next request): a stopped server answers nothing more, and its clients see the
        connection closed and open a new one."""
        with self._connections_lock:
            open_now = list(self._open)
        for connection in open_now:
            with contextlib.suppress(OSError):  # closed meanwhile
                connection.shutdown(socket.SHUT_RDWR)

    def _release(self, host: str) -> None:
        with self._connections_lock:
            left = self._connections.get(host, 0) - 1
            if left > 0:
                self._connections[host] = left
            else:
                self._connections.pop(host, None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A connection that failed (TLS handshake, reset): one log line, not a traceback."""
        error = sys.exc_info()[1]
        log.info("connection from %s failed: %s", client_address[0], error,
                 extra={"event": "connection_failed", "client": str(client_address[0])})


@dataclass(frozen=True)
class _Text:
    """An answer that is not JSON (GET /metrics)."""

    payload: bytes
    content_type: str


class _Handler(BaseHTTPRequestHandler):
    """One request: authenticate, read, route; every outcome a JSON answer."""

    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    # An answer is written as its headers, then its body: with Nagle's algorithm the body
    # waits for the client's delayed ACK of the headers, about 40 ms on every request of a
    # kept-alive connection. TCP_NODELAY on each accepted connection sends both at once.
    disable_nagle_algorithm = True
    timeout = HTTP_SOCKET_TIMEOUT_S
    _body: bytes | None = None
    _login: Login | None = None
    _status = 0

    def do_GET(self) -> None:
        """Serve a report."""
        self._serve("GET")

    def do_POST(self) -> None:
        """Take a settlement batch."""
        self._serve("POST")

    def do_PUT(self) -> None:
        """Register and activate a personalized card (PUT /v1/cards/<card>)."""
        self._serve("PUT")

    def do_PATCH(self) -> None:
        """Change a customer's fields (PATCH /v1/customers/<id>)."""
        self._serve("PATCH")

    def do_DELETE(self) -> None:
        """Void a hold (the books themselves are append-only)."""
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        """Answer one request, counted and timed by its route (ledger/metrics.py)."""
        with self.server.metrics.request(method, urlsplit(self.path).path) as outcome:
            self._serve_counted(method)
            outcome["status"] = self._status

    def _serve_counted(self, method: str) -> None:
        """Answer one request; nothing raised here may reach http.server.

        The caller is authenticated on its headers alone and its body read to the end
        before a request slot is taken: a stranger or a client trickling its body holds
        nothing but its own connection."""
        self._body, self._login = None, None
        if office.is_office_path(urlsplit(self.path).path):
            self._serve_office(method)
            return
        try:
            self._login = self._authenticate()
            self._body = self._read_body()
        except LedgerRejected as error:
            _log_refusal(method, self.path, error)
            self._finish(error.http_status, _error(error.reason, error.detail))
            return
        if self.server.slots.acquire(blocking=False):
            try:
                status, body = self._answer(method)
            finally:
                self.server.slots.release()
        else:
            status, body = 503, _error("ledger_busy", "too many requests in progress")
        self._finish(status, body)

    def _serve_office(self, method: str) -> None:
        """A back-office page: the office signs its operators in itself (a session cookie,
        not a bearer token) and answers HTML; the body limits and request slots are the
        API's."""
        try:
            self._body = self._read_body()
        except LedgerRejected as error:
            self._finish(error.http_status, _error(error.reason, error.detail))
            return
        if not self.server.slots.acquire(blocking=False):
            self._finish(503, _error("ledger_busy", "too many requests in progress"))
            return
        try:
            page = self.server.office.answer(office.OfficeRequest(
                method, self.path, self.headers.get("Cookie"), self._body,
                self.headers.get("Content-Type", ""), self.headers.get("Origin"),
                self.headers.get("Host")))
        finally:
            self.server.slots.release()
        self._status = page.status
        try:
            self.send_response(page.status)
            if page.body:
                self.send_header("Content-Type", page.content_type)
            self.send_header("Content-Length", str(len(page.body)))
            for name, value in page.headers:
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(page.body)
        except OSError as error:
            log.info("client went away before its page: %s", error)
            self.close_connection = True

    def _finish(self, status: int, body: Any) -> None:
        if self._body is None and self.headers.get("Content-Length", "0").strip() not in ("", "0"):
            self.close_connection = True  # an unread body would be parsed as the next request
        self._status = status
        self._send(status, body)

    def _authenticate(self) -> Login | None:
        """The caller's login (None: an open ledger, or the health check anyone may ask)."""
        logins = self.server.logins.current()
        if logins is None or urlsplit(self.path).path in OPEN_PATHS:
            return None
        return authenticate(logins, self.headers.get("Authorization"))

    def _read_body(self) -> bytes | None:
        """The whole body within its size limit and time (None when there is none)."""
        length_text = self.headers.get("Content-Length")
        if length_text is None or length_text.strip() in ("", "0"):
            return None if length_text is None else b""
        length_text = length_text.strip()
        if not length_text.isdigit():
            raise LedgerRejected("length_required", "send a Content-Length header", 411)
        length = int(length_text)
        path = urlsplit(self.path).path
        limit_bytes, too_large = ((BATCH_BYTES_MAX, "batch_too_large") if path == BATCHES_PATH
                                  else (fleet_sql.FLEET_REPORT_BYTES_MAX, "request_too_large")
                                  if path == FLEET_PATH
                                  else (CUSTOMER_BYTES_MAX, "request_too_large")
                                  if path.startswith(CUSTOMERS_PATH)
                                  else (SERVED_BYTES_MAX, "request_too_large")
                                  if path == SERVED_PATH
                                  else (HOLD_BYTES_MAX, "request_too_large"))
        if length > limit_bytes:
            raise BatchTooLarge(too_large, f"{length} bytes, at most {limit_bytes}")
        deadline = time.monotonic() + HTTP_BODY_BASE_S + length / HTTP_BODY_RATE_MIN_BYTES_PER_S
        chunks: list[bytes] = []
        received = 0
        while received < length:
            if time.monotonic() > deadline:
                raise LedgerRejected("request_timeout", "the body came too slowly", 408)
            chunk = self.rfile.read1(min(length - received, 1 << 20))
            if not chunk:
                raise BatchInvalid("request_malformed", "body shorter than its Content-Length")
            chunks.append(chunk)
            received += len(chunk)
        return b"".join(chunks)

    def _answer(self, method: str) -> Answer:
        """Route and map exceptions to statuses."""
        try:
            return self._route(method)
        except LedgerRejected as error:
            _log_refusal(method, self.path, error)
            return error.http_status, _error(error.reason, error.detail)
        except LedgerUnavailable as error:
            log.warning("unavailable for %s %s: %s", method, self.path[:200], error.detail,
                        extra={"event": "request_unavailable", "method": method,
                               "path": urlsplit(self.path).path[:200], "reason": error.reason})
            return 503, _error(error.reason, error.detail)
        except Exception:
            log.exception("unexpected error serving %s %s", method, self.path[:200],
                          extra={"event": "request_failed", "method": method,
                                 "path": urlsplit(self.path).path[:200]})
            return 500, _error("internal_error", "unexpected server error; see the ledger log")

    def _may(self, action: str) -> None:
        """Forbidden unless the caller's role may do `action` (an open ledger allows all)."""
        if self._login is not None:
            auth.require(self._login, action)

    def _route(self, method: str) -> Answer:
        """Pick the handler for a path; wrong method on a known path is 405."""
        target = urlsplit(self.path)
        path = target.path
        books = self.server.books
        if path.startswith(CARDS_PREFIX) and path.endswith(BLOCK_SUFFIX) and len(path) > len(
                CARDS_PREFIX + BLOCK_SUFFIX):
            card = unquote(path[len(CARDS_PREFIX) : -len(BLOCK_SUFFIX)])
            return self._by_method(method, {"POST": lambda: self._block(card, True),
                                            "DELETE": lambda: self._block(card, False)})
        if path.startswith(CARDS_PREFIX) and path.endswith(REPLACE_SUFFIX) and len(path) > len(
                CARDS_PREFIX + REPLACE_SUFFIX):
            card = unquote(path[len(CARDS_PREFIX) : -len(REPLACE_SUFFIX)])
            return self._only("POST", method, lambda: self._replace(card))
        if path.startswith(CARDS_PREFIX) and path.endswith(HISTORY_SUFFIX) and len(path) > len(
                CARDS_PREFIX + HISTORY_SUFFIX):
            card = unquote(path[len(CARDS_PREFIX) : -len(HISTORY_SUFFIX)])
            return self._only("GET", method, lambda: self._card_history(card))
        if path == CUSTOMERS_PATH or path.startswith(CUSTOMERS_PREFIX):
            return self._customer_route(method, path)
        if path == ENROLMENTS_PATH:
            return self._only("POST", method, self._enrol)
        if path == OFFER_GRANTS_PATH:
            return self._only("POST", method, self._issue_offer)
        if path == OFFER_REPORT_PATH:
            return self._only("GET", method, lambda: self._offer_report(target.query))
        if path == RANK_PATH:
            return self._only("POST", method, self._rank)
        if path == COMPANIES_PATH or path.startswith(COMPANIES_PREFIX):
            return self._company_route(method, path)
        if path == REWARD_STOCK_PATH:
            return self._by_method(method, {
                "POST": self._change_reward_stock,
                "GET": lambda: self._reward_stock(target.query)})
        if path == BLOCKS_PATH:
            return self._only("GET", method, lambda: self._blocks(target.query))
        if path == CHANGES_PATH:
            return self._only("GET", method, lambda: self._changes(target.query))
        if path == SERVED_PATH:
            return self._only("POST", method, self._serve_cards)
        if path.startswith(CARDS_PREFIX) and len(path) > len(CARDS_PREFIX):
            card = unquote(path[len(CARDS_PREFIX) :])
            return self._by_method(method, {"GET": lambda: self._card(card, target.query),
                                            "PUT": lambda: self._register_card(card)})
        if path.startswith(HOLDS_PREFIX) and len(path) > len(HOLDS_PREFIX):
            hold_id = unquote(path[len(HOLDS_PREFIX) :])
            return self._by_method(
                method,
                {
                    "GET": lambda: self._hold(hold_id),
                    "DELETE": lambda: self._void_hold(hold_id),
                },
            )
        if path == HOLDS_PATH:
            return self._by_method(
                method, {"POST": self._place_hold,
                         "GET": lambda: self._read(books.hold_totals)})
        if path.startswith(REPORTS_PREFIX) and len(path) > len(REPORTS_PREFIX):
            name = unquote(path[len(REPORTS_PREFIX) :])
            return self._only(
                "GET",
                method,
                lambda: self._read(lambda: self.server.customers.report(
                    name, _query(target.query),
                    self._login.name if self._login else "(open ledger)",
                    # Contact details only for a caller who may read customers.
                    self._login is None or auth.READ_CUSTOMER in self._login.actions,
                ).to_json()),
            )
        if path == BATCHES_PATH:
            return self._only("POST", method, self._post_batch)
        if path == FLEET_PATH:
            return self._by_method(method, {"POST": self._post_fleet, "GET": lambda: self._read(
                lambda: {"gateways": books.read(lambda db, now: fleet_sql.read_fleet(db))})})
        if path in HEALTH_PATHS:
            return self._only("GET", method, lambda: (200, _health(books)))
        if path == OPENAPI_PATH:
            return self._only("GET", method, lambda: (200, openapi.document()))
        if path == METRICS_PATH:
            return self._only("GET", method, self._metrics)
        if path == REFUSED_PATH:
            return self._only("GET", method, lambda: self._read(
                lambda: {"refused": books.refused_transactions(_refused_batch(target.query))}))
        getters: dict[str, Callable[[], Any]] = {
            "/v1/balances": lambda: {"balances": books.balances()},
            "/v1/terminals": books.terminal_totals,
            "/v1/trial-balance": books.trial_balance,
            "/v1/alarms": lambda: {"alarms": books.alarms()},
        }
        getter = getters.get(path)
        if getter is None:
            raise NotFound("not_found", f"no such path: {path[:200]}")
        return self._only("GET", method, lambda: self._read(getter))

    def _read(self, getter: Callable[[], Any]) -> Answer:
        """A read of the books as a whole: readers and admins."""
        self._may(auth.READ_BOOKS)
        return 200, getter()

    def _metrics(self) -> Answer:
        """GET /metrics: a read of the books as a whole (reader, admin), as Prometheus text."""
        self._may(auth.READ_BOOKS)
        return 200, _Text(self.server.metrics.exposition(), METRICS_TYPE)

    def _serving(self, named: str | None, reading: bool) -> str | None:
        """The gateway a look-up or feed read is for: a gateway login's own (naming another
        is refused), the one named on an open ledger; an operator may name one to read its
        feed (`reading`), never to note that it serves a card."""
        if named is not None and ID_PATTERN.fullmatch(named) is None:
            raise BatchInvalid("parameter_invalid", "for= names a gateway id")
        if self._login is None:
            return named
        if self._login.role == "gateway":
            if named is not None and named != self._login.gateway:
                raise Forbidden("not_permitted",
                                f"login {self._login.name} is gateway {self._login.gateway}")
            return self._login.gateway
        if named is not None and not reading:
            raise BatchInvalid("parameter_invalid", "for= is a gateway's, on a look-up")
        return named

    def _card(self, card: str, query: str = "") -> Answer:
        """One card's balance and engine state, or 404 card_unknown. A gateway's look-up
        notes first that it serves the card (ledger/feed_sql.py `serve`): committed before
        the balances are read, so every change they leave out is in its filtered feed."""
        self._may(auth.READ_CARD)
        parameters = _query(query)
        if set(parameters) - {"for"}:
            raise BatchInvalid("parameter_invalid", "GET /v1/cards/<card> takes only for=")
        serving = self._serving(parameters.get("for"), reading=False)
        if serving is not None:
            self.server.books.serve(serving, [card])
        balance = self.server.books.card_detail(card)
        if balance is None:
            raise NotFound("card_unknown", f"the ledger has no card {card[:64]!r}")
        if self._login is None or self._login.role == "gateway":
            # A store's counter greets the card's customer by first name, and gives their
            # birthday-week offers (docs/ledger.md, "Greeting at every store"); no other
            # login is told these here.
            balance.update(self.server.customers.counter_view(
                card, self._login.name if self._login else "(open ledger)"))
        # Worked out after the read, off the database: the kept state let to today, or (not
        # for a gateway: it replays the same transactions itself, and a replay here would
        # only slow its look-up down, up to 0.26 s) the card's transactions replayed.
        gateway = self._login is not None and self._login.role == "gateway"
        engine = card_engine(balance, self.server.programs, self.server.books.now_s(),
                             gateway=gateway)
        del balance["engine_state"]  # not JSON: read by card_engine
        return 200, balance | engine

    def _block(self, card: str, blocked: bool) -> Answer:
        """POST/DELETE /v1/cards/<card>/block: block or unblock a card (cards, admin)."""
        self._may(auth.BLOCK_CARD)
        reason = _block_reason(None if not self._body and not blocked else self._read_json(
            "request_malformed"), blocked)
        login = self._login.name if self._login else "(open ledger)"
        return 200, self.server.books.block_card(card, blocked, reason, login)

    def _issue_offer(self) -> Answer:
        """POST /v1/offers/grants: grant a targeted offer (manager, admin)."""
        self._may(auth.RUN_PROGRAMS)
        request = _offer_issue(self._read_json("request_malformed"))
        login = self._login.name if self._login else "(open ledger)"
        return 200, self.server.books.issue_offer(login=login, **request)

    def _offer_report(self, query: str) -> Answer:
        """GET /v1/offers/report?program=P&offer=O: a read of the books."""
        self._may(auth.READ_BOOKS)
        found = parse_qs(query)
        program, offer = found.get("program", [""])[0], found.get("offer", [""])[0]
        if ID_PATTERN.fullmatch(program) is None or ID_PATTERN.fullmatch(offer) is None:
            raise BatchInvalid("parameter_invalid", "give ?program=ID&offer=ID")
        return 200, self.server.books.offer_report(program, offer)

    def _rank(self) -> Answer:
        """POST /v1/rank {"program", "period"?}: rank a program's cards (manager, admin)."""
        self._may(auth.RUN_PROGRAMS)
        body = self._read_json("request_malformed")
        program = body.get("program") if isinstance(body, dict) else None
        period = body.get("period") if isinstance(body, dict) else None
        if (not isinstance(body, dict) or not set(body) <= {"program", "period"}
                or not isinstance(program, str) or ID_PATTERN.fullmatch(program) is None
                or (period is not None and (not isinstance(period, int)
                                            or isinstance(period, bool) or period < 0))):
            raise BatchInvalid("request_malformed",
                               "send {\"program\": id, \"period\": integer >= 0 (optional)}")
        login = self._login.name if self._login else "(open ledger)"
        return 200, self.server.books.rank_cards(program, period, login)

    def _change_reward_stock(self) -> Answer:
        """POST /v1/rewards/stock: count a store's reward items (manager, admin)."""
        self._may(auth.RUN_PROGRAMS)
        login = self._login.name if self._login else "(open ledger)"
        return 200, self.server.books.change_reward_stock(
            self._read_json("request_malformed"), login)

    def _reward_stock(self, query: str) -> Answer:
        """GET /v1/rewards/stock[?program=P]: a read of the books."""
        self._may(auth.READ_BOOKS)
        found = parse_qs(query)
        program = found.get("program", [None])[0]
        if set(found) - {"program"} or (
                program is not None and ID_PATTERN.fullmatch(program) is None):
            raise BatchInvalid("parameter_invalid", "give nothing or ?program=ID")
        return 200, self.server.books.reward_stock(program)

    def _replace(self, card: str) -> Answer:
        """POST /v1/cards/<card>/replace: replace a lost or damaged card (manager, admin)."""
        self._may(auth.REPLACE_CARD)
        body = self._read_json("request_malformed")
        new, reason = _replacement(body)
        login = self._login.name if self._login else "(open ledger)"
        return 200, self.server.books.replace_card(card, new, login, reason)

    def _card_history(self, card: str) -> Answer:
        """GET /v1/cards/<card>/history: a read of the books (no personal data in it)."""
        self._may(auth.READ_BOOKS)
        return 200, self.server.customers.card_history(card)

    def _customer_route(self, method: str, path: str) -> Answer:
        """/v1/customers[/<id>[/history|/export|/cards/<card>]] (ledger/customers.py)."""
        customers = self.server.customers
        login = self._login.name if self._login else "(open ledger)"
        if path == CUSTOMERS_PATH:
            return self._only("POST", method, lambda: self._customer_change(
                201, lambda: customers.create(self._read_json("request_malformed"), login)))
        rest = path[len(CUSTOMERS_PREFIX):]
        if rest == CUSTOMER_FIND_PART:
            # A POST: the phone or e-mail travels in the body, never in a URL a proxy or
            # an access log keeps.
            return self._only("POST", method, lambda: self._customer_read(lambda: {
                "customer_id": customers.find(*parse_find(self._read_json("request_malformed")),
                                              login)}))
        if rest == CUSTOMER_RETENTION_PART:
            return self._only("POST", method, lambda: self._customer_retention(login))
        customer_id, _, tail = rest.partition("/")
        customer_id = unquote(customer_id)
        if not customer_id:
            raise NotFound("not_found", f"no such path: {path[:200]}")
        if not tail:
            return self._by_method(method, {
                "GET": lambda: self._customer_read(lambda: customers.show(customer_id, login)),
                "PATCH": lambda: self._customer_change(200, lambda: customers.update(
                    customer_id, self._read_json("request_malformed"), login)),
                "DELETE": lambda: self._customer_erase(customer_id, login)})
        if tail == "history":
            return self._only("GET", method, lambda: self._customer_read(
                lambda: customers.history(customer_id)))
        if tail == "export":
            return self._only("GET", method, lambda: self._customer_read(
                lambda: customers.export(customer_id, login)))
        if tail.startswith(CUSTOMER_CARDS_PART[1:]) and len(tail) > len(CUSTOMER_CARDS_PART) - 1:
            card = unquote(tail[len(CUSTOMER_CARDS_PART) - 1:])
            return self._by_method(method, {
                "PUT": lambda: self._customer_change(200, lambda: customers.link(
                    customer_id, card, login)),
                "DELETE": lambda: self._customer_change(200, lambda: customers.unlink(
                    customer_id, card, login))})
        raise NotFound("not_found", f"no such path: {path[:200]}")

    def _company_route(self, method: str, path: str) -> Answer:
        """/v1/companies[/<id>[/cards[/<card>]]] (ledger/company_sql.py): changes by a
        manager or an admin, each audited with the login; reads by any reader of the books."""
        books = self.server.books
        login = self._login.name if self._login else "(open ledger)"
        if path == COMPANIES_PATH:
            return self._only("POST", method, lambda: self._company_change(
                lambda: self._save_company(login)))
        company, _, tail = path[len(COMPANIES_PREFIX):].partition("/")
        company = unquote(company)
        if not company:
            raise NotFound("not_found", f"no such path: {path[:200]}")
        if not tail:
            return self._only("GET", method, lambda: self._read(
                lambda: self._company(company)))
        if tail == COMPANY_CARDS_PART:
            return self._only("POST", method, lambda: self._company_change(lambda: (
                200, books.add_company_card(
                    company, _company_card(self._read_json("request_malformed")), login))))
        if tail.startswith(COMPANY_CARDS_PART + "/") and len(tail) > len(COMPANY_CARDS_PART) + 1:
            card = unquote(tail[len(COMPANY_CARDS_PART) + 1:])
            return self._only("DELETE", method, lambda: self._company_change(lambda: (
                200, books.remove_company_card(company, card, login))))
        raise NotFound("not_found", f"no such path: {path[:200]}")

    def _save_company(self, login: str) -> Answer:
        """POST /v1/companies: 201 for a new company, 200 for a change (or none)."""
        saved = self.server.books.save_company(self._read_json("request_malformed"), login)
        return 201 if saved["outcome"] == "created" else 200, saved

    def _company(self, company: str) -> dict[str, Any]:
        shown = self.server.books.company(company)
        if shown is None:
            raise NotFound("company_unknown", f"the ledger has no company {company[:64]!r}")
        return shown

    def _company_change(self, change: Callable[[], Answer]) -> Answer:
        self._may(auth.MANAGE_COMPANY)
        return change()

    def _enrol(self) -> Answer:
        """POST /v1/enrolments: a gateway's counter enrols a card (its own terminal and
        merchant, a card its merchants sold); an admin too. No customer is read back but
        the first name the counter shows."""
        document = self._read_json("request_malformed")
        merchants = None
        if self._login is not None:
            merchants = auth.check_enrolment(self._login, document)
        login = self._login.name if self._login else "(open ledger)"
        return 200, self.server.customers.enrol(document, login, merchants)

    def _customer_read(self, read: Callable[[], Any]) -> Answer:
        self._may(auth.READ_CUSTOMER)
        return 200, read()

    def _customer_change(self, status: int, change: Callable[[], Any]) -> Answer:
        self._may(auth.CHANGE_CUSTOMER)
        return status, change()

    def _customer_erase(self, customer_id: str, login: str) -> Answer:
        self._may(auth.ERASE_CUSTOMER)
        return 200, self.server.customers.erase(customer_id, login)

    def _customer_retention(self, login: str) -> Answer:
        self._may(auth.ERASE_CUSTOMER)
        return 200, self.server.customers.retention(self._read_json("request_malformed"),
                                                    login)

    def _blocks(self, query: str) -> Answer:
        """GET /v1/blocks?since=ID: block changes after ID (0: all), the gateways' feed."""
        self._may(auth.READ_BLOCKS)
        parameters = _query(query)
        since = parameters.get("since", "0")
        if set(parameters) - {"since"} or not since.isdigit() or len(since) > 18:
            raise BatchInvalid("parameter_invalid", "GET /v1/blocks takes since=<id>, an integer")
        return 200, self.server.books.block_changes(int(since))

    def _changes(self, query: str) -> Answer:
        """GET /v1/changes?after=XID.ID: posted transactions after the cursor (0.0: all),
        the gateways' card feed (ledger/feed_sql.py)."""
        self._may(auth.READ_CHANGES)
        parameters = _query(query)
        after = parameters.get("after", "0.0")
        cursor = feed_sql.parse_cursor(after)
        if set(parameters) - {"after", "for"} or (cursor is None and after != "end"):
            raise BatchInvalid("parameter_invalid",
                               "GET /v1/changes takes after=<xid>.<id> (two integers) or end,"
                               " and for=<gateway>")
        named = parameters.get("for")
        # Unfiltered unless asked: a gateway that has not registered its cards yet reads all.
        serving = self._serving(named, reading=True) if named is not None else None
        return 200, self.server.books.card_changes(cursor, serving)

    def _serve_cards(self) -> Answer:
        """POST /v1/served {"cards": [...]}: the calling gateway serves these cards (a
        gateway registers the cards it knew before its feed was filtered, in pages); on an
        open ledger the body names the gateway ("for")."""
        self._may(auth.READ_CHANGES)
        if self._login is not None and self._login.role != "gateway":
            raise Forbidden("not_permitted", "only a gateway notes the cards it serves")
        body = self._read_json("request_malformed")
        if not isinstance(body, dict) or not set(body) <= {"cards", "for"} or not isinstance(
                body.get("cards"), list) or not all(
                isinstance(card, str) and ID_PATTERN.fullmatch(card)
                for card in body["cards"]) or len(body["cards"]) > SERVED_CARDS_PER_POST_MAX:
            raise BatchInvalid("request_malformed", "a list of card ids, \"cards\", at most "
                                                    f"{SERVED_CARDS_PER_POST_MAX}")
        named = body.get("for")
        if named is not None and not isinstance(named, str):
            raise BatchInvalid("request_malformed", "for is a gateway id")
        serving = self._serving(named, reading=False)
        if serving is None:
            raise BatchInvalid("request_malformed", "name the gateway: for")
        self.server.books.serve(serving, body["cards"])
        return 200, {"gateway": serving, "cards": len(body["cards"])}

    def _hold(self, hold_id: str) -> Answer:
        """One hold, or 404 hold_unknown; a gateway sees only its own."""
        if self._login is not None:
            auth.check_hold_id(self._login, auth.READ_HOLD, hold_id)
        hold = self.server.books.hold(hold_id)
        if hold is None:
            raise NotFound("hold_unknown", f"the ledger has no hold {hold_id[:64]!r}")
        return 200, hold

    def _void_hold(self, hold_id: str) -> Answer:
        """DELETE /v1/holds/<id>: a gateway voids only its own holds, an admin any."""
        if self._login is not None:
            auth.check_hold_id(self._login, auth.VOID_HOLD, hold_id)
        return 200, self.server.books.void_hold(hold_id).to_json()

    def _post_batch(self) -> Answer:
        """POST /v1/batches: a gateway's own batch, for its own terminals and merchants."""
        document = self._read_json()
        if self._login is not None:
            auth.check_batch(self._login, document)
        # A turn, not a lock: nothing is held while the batch waits, and the books take no
        # lock of their own (see BATCH_POSTS_CONCURRENT_MAX).
        if not self.server.batch_turns.acquire(timeout=BATCH_POST_WAIT_S):
            raise LedgerUnavailable("too many batches in progress; send it again later",
                                    reason="ledger_busy")
        try:
            return 200, self.server.books.post_batch(document).to_json()
        finally:
            self.server.batch_turns.release()

    def _post_fleet(self) -> Answer:
        """POST /v1/fleet: a gateway's report of its own terminals, replacing its last one."""
        self._may(auth.REPORT_FLEET)  # a reader is told 403, whatever it sent
        report = fleet_sql.parse_report(self._read_json("request_malformed"))
        if self._login is not None:
            auth.check_fleet(self._login, report.gateway_id,
                             [(row["terminal"], row["merchant"]) for row in report.terminals])
        self.server.books.transact(
            lambda session, now: fleet_sql.write_report(session, report, now))
        return 200, {"status": "reported", "gateway_id": report.gateway_id,
                     "terminals": len(report.terminals)}

    def _register_card(self, card: str) -> Answer:
        """PUT /v1/cards/<card>: register and activate a personalized card (idempotent)."""
        body = self._read_json("request_malformed")
        if not isinstance(body, dict) or set(body) != REGISTRATION_FIELDS:
            raise BatchInvalid("request_malformed",
                               f"a registration has exactly {sorted(REGISTRATION_FIELDS)}")
        if self._login is not None:
            auth.check_registration(self._login, body["value_minor"])
        result = self.server.books.register_card(card, body["program"], body["currency"],
                                                 body["merchant"], body["value_minor"])
        if self._login is not None and self._login.role == "gateway":
            # A card its counter sold: the gateway serves it from now on.
            self.server.books.serve(str(self._login.gateway), [card])
        login = self._login.name if self._login else "(open ledger)"
        log.info("AUDIT card %s registered by %s: program %s, %s %s", card[:64], login,
                 body["program"], body["value_minor"], body["currency"],
                 extra={"event": "card_registered", "card": card[:64], "login": login,
                        "program": str(body["program"])[:64]})
        return 200, result.to_json()

    def _place_hold(self) -> Answer:
        """POST /v1/holds: 201 for a new hold, 200 for a replay of one."""
        document = self._read_json("request_malformed")
        if self._login is not None:
            auth.check_hold(self._login, document)
        answer = self.server.books.place_hold(document)
        return (201 if answer.created else 200), answer.to_json()

    @staticmethod
    def _only(allowed: str, method: str, route: Callable[[], Answer]) -> Answer:
        """Run `route` if the method is the one the path takes, else answer 405."""
        return _Handler._by_method(method, {allowed: route})

    @staticmethod
    def _by_method(method: str, routes: dict[str, Callable[[], Answer]]) -> Answer:
        """Run the route for `method`, else answer 405 naming the methods the path takes."""
        route = routes.get(method)
        if route is None:
            raise LedgerRejected("method_not_allowed", f"use {' or '.join(routes)}", 405)
        return route()

    def _read_json(self, malformed: str = "batch_malformed") -> object:
        """The request body (read by `_read_body`) decoded as strict JSON."""
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != JSON_TYPE:
            raise LedgerRejected("content_type_unsupported", f"send {JSON_TYPE}", 415)
        if self._body is None:
            raise LedgerRejected("length_required", "send a Content-Length header", 411)
        return decode_json(self._body, malformed)

    def _send(self, status: int, body: Any) -> None:
        """Write one JSON answer (or _Text) with its length, so the connection can be kept
        alive."""
        payload, content_type = ((body.payload, body.content_type) if isinstance(body, _Text)
                                 else (json.dumps(body, separators=(",", ":")).encode("utf-8"),
                                       JSON_TYPE))
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(payload)))
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(payload)
        except OSError as error:
            log.info("client went away before its answer: %s", error)
            self.close_connection = True

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors http.server raises itself (bad request line, unknown method) as JSON too."""
        reason = "method_not_allowed" if code == 501 else "request_malformed"
        self.close_connection = True
        # A request line too broken to name its version defaults to HTTP/0.9, which has no
        # status line or headers; answer it as HTTP/1.0 so the client sees the status.
        self.request_version = "HTTP/1.0"
        self._send(405 if code == 501 else code, _error(reason, message or ""))

    def log_message(self, format: str, *args: Any) -> None:
        """Access log lines go to the logging module, not to stderr."""
        log.debug("%s " + format, self.address_string(), *args)


def decode_json(body: bytes, malformed: str = "batch_malformed") -> object:
    """Strict JSON: UTF-8, no NaN/Infinity, no duplicate keys; else `malformed`."""
    try:
        return json.loads(body, object_pairs_hook=_unique_keys, parse_constant=_no_constant)
    except (ValueError, RecursionError) as error:
        raise BatchInvalid(malformed, f"not valid JSON: {str(error)[:200]}") from error


def _log_refusal(method: str, path: str, error: LedgerRejected) -> None:
    """One line for a request the ledger refused. An unknown card or hold is no refusal:
    it answers a look-up (a card tapped for the first time, a hold never placed) that
    gateways make as a matter of course, so it is logged at debug level only, as a look-up."""
    where = urlsplit(path).path[:200]
    fields = {"method": method, "path": where, "reason": error.reason,
              "status": error.http_status}
    if isinstance(error, NotFound) and error.reason.endswith("_unknown"):
        log.debug("look-up %s %s: %s", method, where, error.reason,
                  extra={"event": "lookup_not_found", **fields})
        return
    log.info("refused %s %s: %s %s", method, where, error.reason, error.detail,
             extra={"event": "request_refused", **fields})


def _query(text: str) -> dict[str, str]:
    """Query parameters, each at most once; a malformed query is parameter_invalid."""
    try:
        pairs = parse_qsl(
            text, keep_blank_values=True, strict_parsing=bool(text), max_num_fields=QUERY_FIELDS_MAX
        )
    except ValueError as error:
        raise BatchInvalid("parameter_invalid", f"query: {str(error)[:200]}") from error
    parameters = dict(pairs)
    if len(parameters) != len(pairs):
        raise BatchInvalid("parameter_invalid", "query: a parameter is given twice")
    return parameters


def _refused_batch(text: str) -> str | None:
    """The optional ``batch_id`` of GET /v1/refused; any other parameter is refused."""
    parameters = _query(text)
    if set(parameters) - {"batch_id"}:
        raise BatchInvalid("parameter_invalid", "GET /v1/refused takes only batch_id")
    batch_id = parameters.get("batch_id")
    if batch_id is not None and not 0 < len(batch_id) <= ID_CHARS_MAX:
        raise BatchInvalid("parameter_invalid", f"batch_id: 1 to {ID_CHARS_MAX} characters")
    return batch_id


def _block_reason(body: object, blocked: bool) -> str:
    """The reason of a block (required) or an unblock (optional): {"reason": text}."""
    if body is None:
        return ""
    reason = body.get("reason") if isinstance(body, dict) and set(body) <= {"reason"} else None
    if not isinstance(reason, str) or len(reason) > BLOCK_REASON_CHARS_MAX or (
            blocked and not reason.strip()):
        raise BatchInvalid("request_malformed", "send {\"reason\": text}, 1 to "
                                                f"{BLOCK_REASON_CHARS_MAX} characters")
    return reason


OFFER_ISSUE_KEYS = {"program", "offer", "issue", "uses", "last_on", "cards", "customers",
                    "segment"}
OFFER_ISSUE_REQUIRED = {"program", "offer", "issue", "uses", "last_on"}


def _offer_issue(body: object) -> dict[str, Any]:
    """The Books.issue_offer arguments of a POST /v1/offers/grants body (its shape only:
    ledger/offers.py judges the values)."""
    usage = ("send {\"program\", \"offer\", \"issue\": ids, \"uses\": integer,"
             " \"last_on\": YYYY-MM-DD, and \"cards\" or \"customers\" (lists of ids) or"
             " \"segment\" (an object)}")
    if (not isinstance(body, dict) or not OFFER_ISSUE_REQUIRED <= set(body) <= OFFER_ISSUE_KEYS
            or not {"cards", "customers", "segment"} & set(body)):
        raise BatchInvalid("request_malformed", usage)
    for key in ("program", "offer", "issue"):
        if not isinstance(body[key], str) or ID_PATTERN.fullmatch(body[key]) is None:
            raise BatchInvalid("request_malformed", f"{key}: an id; " + usage)
    for key in ("cards", "customers"):
        listed = body.get(key, [])
        if not isinstance(listed, list) or not all(
                isinstance(item, str) and ID_PATTERN.fullmatch(item) for item in listed):
            raise BatchInvalid("request_malformed", f"{key}: a list of ids; " + usage)
    if not isinstance(body["uses"], int) or isinstance(body["uses"], bool):
        raise BatchInvalid("request_malformed", "uses: an integer; " + usage)
    if "segment" in body and not isinstance(body["segment"], dict):
        raise BatchInvalid("request_malformed", "segment: an object; " + usage)
    try:
        last_day = (date.fromisoformat(body["last_on"]) - EPOCH_DATE).days
    except (TypeError, ValueError):
        raise BatchInvalid("request_malformed", "last_on: YYYY-MM-DD; " + usage) from None
    return {"program": body["program"], "offer": body["offer"], "issue": body["issue"],
            "uses": body["uses"], "last_day": last_day, "cards": body.get("cards"),
            "customers": body.get("customers"), "segment": body.get("segment")}


def _replacement(body: object) -> tuple[str, str]:
    """The new card and the reason of a replacement: {"new_card": id, "reason": text}."""
    new = body.get("new_card") if isinstance(body, dict) and set(body) == {
        "new_card", "reason"} else None
    reason = body.get("reason") if isinstance(body, dict) else None
    if (not isinstance(new, str) or ID_PATTERN.fullmatch(new) is None
            or not isinstance(reason, str) or not reason.strip()
            or len(reason) > BLOCK_REASON_CHARS_MAX):
        raise BatchInvalid("request_malformed",
                           "send {\"new_card\": card id, \"reason\": text, 1 to"
                           f" {BLOCK_REASON_CHARS_MAX} characters}}")
    return new, reason


def _company_card(body: object) -> str:
    """The card of POST /v1/companies/<id>/cards: {"card": id}."""
    card = body.get("card") if isinstance(body, dict) and set(body) == {"card"} else None
    if not isinstance(card, str) or ID_PATTERN.fullmatch(card) is None:
        raise BatchInvalid("request_malformed", "send {\"card\": card id}")
    return card


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose keys appear once each; a repeated key could hide a second value."""
    document = dict(pairs)
    if len(document) != len(pairs):
        raise ValueError("duplicate key in object")
    return document


def _no_constant(name: str) -> Any:
    """NaN and Infinity are not JSON numbers and never money."""
    raise ValueError(f"{name} is not allowed")


def _error(reason: str, detail: str) -> dict[str, str]:
    """The body of every error answer."""
    return {"error": reason, "detail": detail}


def _health(books: Books) -> dict[str, str]:
    """Ok if the database answers; LedgerUnavailable (503) otherwise; and where named
    reports are read ("primary" or "replica": a replica that does not answer fails the
    reports alone, as 503 ledger_unavailable, and is not waited on here)."""
    books.ping()
    return {"status": "ok", "dialect": books.dialect, "reports": books.reports_from()}


class ServerRefused(Exception):
    """The ledger must not start as asked (an open or clear-text ledger beyond loopback)."""


def tls_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """The server side of TLS 1.2+ with the ledger's certificate (`tilltap ledger tls`)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    return context


class LedgerServer:
    """A ledger HTTP server running on a background thread; `stop()` ends it, closing the books.

    A second thread sweeps expired holds every HOLD_SWEEP_INTERVAL_S.
    """

    def __init__(self, books: Books, host: str, port: int,
                 logins: LoginsSource | None = None, tls: ssl.SSLContext | None = None,
                 customer_key: CustomerKey | None = None,
                 programs: Programs | None = None) -> None:
        self.books = books
        self._httpd = _HTTPServer((host, port), books, logins or LoginsSource(None), tls,
                                  customer_key, programs)
        self.port: int = self._httpd.server_address[1]
        shown_host = f"[{host}]" if ":" in host else host
        self.url = f"{'https' if tls else 'http'}://{shown_host}:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": HTTP_SHUTDOWN_POLL_S},
            name=f"ledger-http-{self.port}",
            daemon=True,
        )
        self._stopping = threading.Event()
        self._sweeper = threading.Thread(
            target=self._sweep, name=f"ledger-sweep-{self.port}", daemon=True
        )
        self._thread.start()
        self._sweeper.start()

    def _sweep(self) -> None:
        """Mark due holds expired until stop(); a database fault waits for the next round."""
        while not self._stopping.wait(HOLD_SWEEP_INTERVAL_S):
            try:
                expired = self.books.expire_holds()
            except LedgerUnavailable as error:
                log.warning("hold sweep skipped: %s", error.detail,
                            extra={"event": "hold_sweep_skipped", "reason": error.reason})
                continue
            if expired:
                log.info("hold sweep: %d holds expired", expired,
                         extra={"event": "holds_expired", "holds": expired})

    def stop(self) -> None:
        """Stop accepting, wait for the serving loop to end, close the socket and the books."""
        self._stopping.set()
        self._sweeper.join()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._httpd.close_open()
        self._thread.join()
        self.books.close()


def serve(
    dsn: str, host: str = "127.0.0.1", port: int = 0, clock: Callable[[], float] = time.time,
    logins_file: Path | None = None, tls: ssl.SSLContext | None = None,
    customer_key: CustomerKey | None = None, programs: Programs | None = None,
    report_dsn: str | None = None,
) -> LedgerServer:
    """Open the books and serve them over HTTP(S) in a background thread (port 0 = any free).

    Without `logins_file` the ledger is open (every caller may do everything): only on
    loopback, for tests of the other layers. Beyond loopback both logins and TLS are
    required (ServerRefused). LoginsInvalid for an unusable logins file. `customer_key`
    seals customers' personal data (ledger/customers.py; without it customer requests are
    answered 503 customer_key_missing); ServerRefused if the books' customers were sealed
    under another key. `programs`: the chain's validated programs, for the cards' engine
    state (tier, discount, points lots; ledger/card_engine.py); None: none is shown.
    `report_dsn`: a read replica of the books that named reports are read from
    (`open_books`); ServerRefused for one that is not PostgreSQL."""
    if report_dsn is not None and not report_dsn.startswith(POSTGRES_SCHEMES):
        raise ServerRefused("--report-dsn: a report replica is a PostgreSQL standby:"
                            " postgresql://...")
    if not is_loopback(host):
        if logins_file is None:
            raise ServerRefused(f"an open ledger listens on loopback only, not {host}: "
                                "give --logins FILE (tilltap ledger login add)")
        if tls is None:
            raise ServerRefused(f"beyond loopback ({host}) the ledger speaks TLS only: give "
                                "--tls-cert and --tls-key (tilltap ledger tls)")
    logins = LoginsSource(logins_file)
    if logins_file is None:
        log.warning("the ledger API is open: no logins file, every local caller may do all",
                    extra={"event": "ledger_open"})
    books = open_books(dsn, clock, programs, report_dsn)
    try:
        try:
            Customers(books, customer_key).check_key()
        except KeyMismatch as error:
            raise ServerRefused(f"{error}: give the key file they were sealed with") from error
        return LedgerServer(books, host, port, logins, tls, customer_key, programs)
    except BaseException:
        books.close()
        raise


class LogSetup(Protocol):
    """How the command line sets up logging (tools/logs.py: JSON lines, `--log-format`)."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def configure(self, options: argparse.Namespace) -> None: ...


def read_programs(path: str) -> Programs:
    """A programs file (TOML, docs/programs.md), validated as the gateways validate it; OSError,
    ValueError (not TOML) or ValidationError (a program rule broken)."""
    with open(path, "rb") as file:
        return dict(validate_programs(tomllib.load(file)))


def main(argv: list[str] | None = None,
         parser_class: type[argparse.ArgumentParser] = argparse.ArgumentParser,
         logs: LogSetup | None = None,
         load_programs: Callable[[str], Programs] = read_programs) -> int:
    """``tilltap ledger serve``: print the URL, serve until SIGTERM or SIGINT. `parser_class`:
    the command line's parser (tools/command.py's gives one-line errors); `logs`: its log
    lines (tools/logs.py); without it, `python -m ledger.server` logs text lines;
    `load_programs`: reads --programs (tools/programs.py's names the line at fault)."""
    parser = parser_class(
        prog="tilltap ledger serve", description="tilltap ledger: settlement intake over HTTP(S)"
    )
    parser.add_argument(
        "--ledger-dsn", "--dsn", dest="dsn", required=True,
        help="sqlite:///abs/path.db, a path, or postgresql://... (old name --dsn, deprecated; "
             "`tilltap ledger serve` defaults it to $TILLTAP_LEDGER_DSN)"
    )
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on; beyond loopback TLS and logins are required")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--logins", type=Path, default=None,
                        help="the logins file (tilltap ledger login add); without it the "
                             "ledger is open and listens on loopback only")
    parser.add_argument("--tls-cert", default=None, help="the ledger's certificate (PEM)")
    parser.add_argument("--tls-key", default=None, help="its private key (PEM)")
    parser.add_argument("--customer-key", type=Path, default=None,
                        help="the key file sealing customers' personal data, mode 0600 "
                             "(tilltap ledger customer-key new); without it customer "
                             "requests are refused")
    parser.add_argument("--programs", default=None, metavar="FILE",
                        help="the chain's card programs, the gateways' file (docs/programs.md): "
                             "cards are shown with their tier, discount and points lots; "
                             "without it, with their value and points only")
    parser.add_argument("--report-dsn", default=None, metavar="DSN",
                        help="a read replica of the books (a PostgreSQL hot standby): named "
                             "reports are read there, not from the primary")
    if logs is not None:
        logs.add_arguments(parser)
    options = parser.parse_args(argv)
    if (options.tls_cert is None) != (options.tls_key is None):
        print("ledger: give both --tls-cert and --tls-key, or neither", file=sys.stderr)
        return 2
    if not 0 <= options.port <= 65535:
        print(f"ledger: --port {options.port} is not a TCP port (0..65535)", file=sys.stderr)
        return 2
    try:
        programs = load_programs(options.programs) if options.programs is not None else None
    except OSError as error:
        print(f"ledger: --programs {options.programs}: {error.strerror}", file=sys.stderr)
        return 2
    except (ValueError, ValidationError) as error:
        print(f"ledger: --programs {options.programs} is not usable: {error}", file=sys.stderr)
        return 2
    if logs is not None:
        logs.configure(options)
    else:
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # This process is the ledger alone: hand the interpreter over sooner (see the limit).
    sys.setswitchinterval(SERVER_SWITCH_INTERVAL_S)
    try:
        tls = tls_context(options.tls_cert, options.tls_key) if options.tls_cert else None
        customer_key = (load_key_file(options.customer_key) if options.customer_key is not None
                        else None)
        server = serve(options.dsn, options.host, options.port, logins_file=options.logins,
                       tls=tls, customer_key=customer_key, programs=programs,
                       report_dsn=options.report_dsn)
    except (ServerRefused, LoginsInvalid, KeyFileInvalid) as error:
        print(f"ledger: {error}", file=sys.stderr)
        return 2
    except ssl.SSLError as error:
        print(f"ledger: cannot use the TLS certificate and key: {error}", file=sys.stderr)
        return 2
    except (LedgerError, OSError) as error:
        print(f"ledger: cannot start: {error}", file=sys.stderr)
        return 1
    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    print(server.url, flush=True)
    log.info("ledger serving at %s", server.url,
             extra={"event": "ledger_started", "url": server.url})
    try:
        stopping.wait()
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("ledger stopped", extra={"event": "ledger_stopped"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
