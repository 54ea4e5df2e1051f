"""HTTP intake of the ledger: settlement batches in, balances and reports out (stdlib only).

    POST   /v1/batches         a settlement batch (application/json) -> 200 / 400 / 409 / 413
    POST   /v1/holds           hold card value  -> 201 placed / 200 replay / 409 / 404 / 400
    GET    /v1/holds           {status: count, ..., "posted_late": n}
    GET    /v1/holds/<id>      one hold                              -> 200 / 404 hold_unknown
    DELETE /v1/holds/<id>      void it                               -> 200 / 404 / 409
    GET    /v1/cards/<card>    one card's balance                    -> 200 / 404 card_unknown
    GET    /v1/balances        {"balances": [card balance, ...]}
    GET    /v1/terminals       {terminal: {"count", "by_kind"}}
    GET    /v1/trial-balance   {unit: sum}, all zero in healthy books
    GET    /v1/alarms          {"alarms": [...]}
    GET    /v1/reports/<name>  ?as_of=YYYY-MM-DD&window_days=N[&days=N&min_purchases=N]
    GET    /v1/health          {"status": "ok", "dialect": ...} or 503

Every answer is JSON; every error is ``{"error": reason, "detail": text}``. The server
never dies of a request: rejections keep their status, a database fault is 503
``ledger_unavailable``, anything unexpected is logged and answered 500 ``internal_error``.
Writes are serialized inside `Books`; at most HTTP_REQUESTS_CONCURRENT_MAX requests are
served at once, the rest are answered 503 ``ledger_busy``. A background sweep marks
expired holds every HOLD_SWEEP_INTERVAL_S (reads judge expiry by the clock meanwhile).

Run it: ``python -m ledger.server --dsn sqlite:///var/lib/tilltap/ledger.db --port 8080``.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ledger.books import Books, open_books
from ledger.errors import (
    BatchInvalid,
    BatchTooLarge,
    LedgerError,
    LedgerRejected,
    LedgerUnavailable,
    NotFound,
)
from ledger.limits import (
    BATCH_BYTES_MAX,
    HOLD_BYTES_MAX,
    HOLD_SWEEP_INTERVAL_S,
    HTTP_LISTEN_BACKLOG,
    HTTP_REQUESTS_CONCURRENT_MAX,
    HTTP_SHUTDOWN_POLL_S,
    HTTP_SOCKET_TIMEOUT_S,
)

log = logging.getLogger(__name__)

JSON_TYPE = "application/json"
CARDS_PREFIX = "/v1/cards/"
REGISTRATION_FIELDS = frozenset({"program", "currency", "merchant", "value_minor"})
HOLDS_PATH = "/v1/holds"
HOLDS_PREFIX = "/v1/holds/"
REPORTS_PREFIX = "/v1/reports/"
QUERY_FIELDS_MAX = 16
"""Most query parameters a report request may carry (it needs at most four)."""
Answer = tuple[int, Any]


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that carries the books and the request-slot semaphore."""

    daemon_threads = True
    request_queue_size = HTTP_LISTEN_BACKLOG

    def __init__(self, address: tuple[str, int], books: Books) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.books = books
        self.slots = threading.BoundedSemaphore(HTTP_REQUESTS_CONCURRENT_MAX)
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    """One request: route it, turn every outcome into a JSON answer."""

    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    timeout = HTTP_SOCKET_TIMEOUT_S
    _body_read = False

    def do_GET(self) -> None:
        """Serve a report."""
        self._serve("GET")

    def do_POST(self) -> None:
        """Take a settlement batch."""
        self._serve("POST")

    def do_PUT(self) -> None:
        """Register and activate a personalized card (PUT /v1/cards/<card>)."""
        self._serve("PUT")

    def do_DELETE(self) -> None:
        """Void a hold (the books themselves are append-only)."""
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        """Answer one request; nothing raised here may reach http.server."""
        self._body_read = False
        if self.server.slots.acquire(blocking=False):
            try:
                status, body = self._answer(method)
            finally:
                self.server.slots.release()
        else:
            status, body = 503, _error("ledger_busy", "too many requests in progress")
        if not self._body_read and self.headers.get("Content-Length", "0").strip() not in ("", "0"):
            self.close_connection = True  # an unread body would be parsed as the next request
        self._send(status, body)

    def _answer(self, method: str) -> Answer:
        """Route and map exceptions to statuses."""
        try:
            return self._route(method)
        except LedgerRejected as error:
            log.info("refused %s %s: %s %s", method, self.path[:200], error.reason, error.detail)
            return error.http_status, _error(error.reason, error.detail)
        except LedgerUnavailable as error:
            log.warning("unavailable for %s %s: %s", method, self.path[:200], error.detail)
            return 503, _error(error.reason, error.detail)
        except Exception:
            log.exception("unexpected error serving %s %s", method, self.path)
            return 500, _error("internal_error", "unexpected server error; see the ledger log")

    def _route(self, method: str) -> Answer:
        """Pick the handler for a path; wrong method on a known path is 405."""
        target = urlsplit(self.path)
        path = target.path
        books = self.server.books
        if path.startswith(CARDS_PREFIX) and len(path) > len(CARDS_PREFIX):
            card = unquote(path[len(CARDS_PREFIX) :])
            return self._by_method(method, {"GET": lambda: _card(books, card),
                                            "PUT": lambda: self._register_card(card)})
        if path.startswith(HOLDS_PREFIX) and len(path) > len(HOLDS_PREFIX):
            hold_id = unquote(path[len(HOLDS_PREFIX) :])
            return self._by_method(
                method,
                {
                    "GET": lambda: _hold(books, hold_id),
                    "DELETE": lambda: (200, books.void_hold(hold_id).to_json()),
                },
            )
        if path == HOLDS_PATH:
            return self._by_method(
                method, {"POST": self._place_hold, "GET": lambda: (200, books.hold_totals())}
            )
        if path.startswith(REPORTS_PREFIX) and len(path) > len(REPORTS_PREFIX):
            name = unquote(path[len(REPORTS_PREFIX) :])
            return self._only(
                "GET",
                method,
                lambda: (200, books.report(name, _query(target.query)).to_json()),
            )
        if path == "/v1/batches":
            return self._only(
                "POST", method, lambda: (200, books.post_batch(self._read_json()).to_json())
            )
        getters: dict[str, Callable[[], Any]] = {
            "/v1/balances": lambda: {"balances": books.balances()},
            "/v1/terminals": books.terminal_totals,
            "/v1/trial-balance": books.trial_balance,
            "/v1/alarms": lambda: {"alarms": books.alarms()},
            "/v1/health": lambda: _health(books),
        }
        getter = getters.get(path)
        if getter is None:
            raise NotFound("not_found", f"no such path: {path[:200]}")
        return self._only("GET", method, lambda: (200, getter()))

    def _register_card(self, card: str) -> Answer:
        """PUT /v1/cards/<card>: register and activate a personalized card (idempotent)."""
        body = self._read_json(HOLD_BYTES_MAX, "request_too_large", "request_malformed")
        if not isinstance(body, dict) or set(body) != REGISTRATION_FIELDS:
            raise BatchInvalid("request_malformed",
                               f"a registration has exactly {sorted(REGISTRATION_FIELDS)}")
        result = self.server.books.register_card(card, body["program"], body["currency"],
                                                 body["merchant"], body["value_minor"])
        return 200, result.to_json()

    def _place_hold(self) -> Answer:
        """POST /v1/holds: 201 for a new hold, 200 for a replay of one."""
        answer = self.server.books.place_hold(
            self._read_json(HOLD_BYTES_MAX, "request_too_large", "request_malformed")
        )
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

    def _read_json(
        self,
        limit_bytes: int | None = None,
        too_large: str = "batch_too_large",
        malformed: str = "batch_malformed",
    ) -> object:
        """The request body decoded as strict JSON, within `limit_bytes` (BATCH_BYTES_MAX)."""
        if limit_bytes is None:
            limit_bytes = BATCH_BYTES_MAX
        content_type = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type != JSON_TYPE:
            raise LedgerRejected("content_type_unsupported", f"send {JSON_TYPE}", 415)
        length_text = self.headers.get("Content-Length", "")
        if not length_text.isdigit():
            raise LedgerRejected("length_required", "send a Content-Length header", 411)
        length = int(length_text)
        if length > limit_bytes:
            raise BatchTooLarge(too_large, f"{length} bytes, at most {limit_bytes}")
        body = self.rfile.read(length)
        self._body_read = True
        if len(body) != length:
            raise BatchInvalid(malformed, "body shorter than its Content-Length")
        return decode_json(body, malformed)

    def _send(self, status: int, body: Any) -> None:
        """Write one JSON answer with its length, so the connection can be kept alive."""
        payload = json.dumps(body, separators=(",", ":")).encode("utf-8")
        try:
            self.send_response(status)
            self.send_header("Content-Type", JSON_TYPE)
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


def _card(books: Books, card: str) -> Answer:
    """One card's balance, or 404 card_unknown."""
    balance = books.card_balance(card)
    if balance is None:
        raise NotFound("card_unknown", f"the ledger has no card {card[:64]!r}")
    return 200, balance


def _hold(books: Books, hold_id: str) -> Answer:
    """One hold, or 404 hold_unknown."""
    hold = books.hold(hold_id)
    if hold is None:
        raise NotFound("hold_unknown", f"the ledger has no hold {hold_id[:64]!r}")
    return 200, hold


def _health(books: Books) -> dict[str, str]:
    """Ok if the database answers; LedgerUnavailable (503) otherwise."""
    books.ping()
    return {"status": "ok", "dialect": books.dialect}


class LedgerServer:
    """A ledger HTTP server running on a background thread; `stop()` ends it, closing the books.

    A second thread sweeps expired holds every HOLD_SWEEP_INTERVAL_S.
    """

    def __init__(self, books: Books, host: str, port: int) -> None:
        self.books = books
        self._httpd = _HTTPServer((host, port), books)
        self.port: int = self._httpd.server_address[1]
        shown_host = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown_host}:{self.port}"
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
                log.warning("hold sweep skipped: %s", error.detail)
                continue
            if expired:
                log.info("hold sweep: %d holds expired", expired)

    def stop(self) -> None:
        """Stop accepting, wait for the serving loop to end, close the socket and the books."""
        self._stopping.set()
        self._sweeper.join()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()
        self.books.close()


def serve(
    dsn: str, host: str = "127.0.0.1", port: int = 0, clock: Callable[[], float] = time.time
) -> LedgerServer:
    """Open the books and serve them over HTTP in a background thread (port 0 = any free)."""
    books = open_books(dsn, clock)
    try:
        return LedgerServer(books, host, port)
    except BaseException:
        books.close()
        raise


def main(argv: list[str] | None = None) -> int:
    """``python -m ledger.server``: print the URL, serve until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(
        prog="python -m ledger.server", description="tilltap ledger: settlement intake over HTTP"
    )
    parser.add_argument(
        "--dsn", required=True, help="sqlite:///abs/path.db, a path, or postgresql://..."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        server = serve(options.dsn, options.host, options.port)
    except (LedgerError, OSError) as error:
        print(f"ledger: cannot start: {error}", file=sys.stderr)
        return 1
    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    print(server.url, flush=True)
    try:
        stopping.wait()
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


if __name__ == "__main__":
    sys.exit(main())
