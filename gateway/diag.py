r"""A technician's view of a terminal: the diag request and its answer (docs/protocol.md 5.10).

    POST /diag/<terminal>[?wait_s=N]  on the gateway's metrics server (gateway/metrics.py)
        -> the gateway seals a diag request (a fresh request id, its own time) under the
           terminal's key on down/diag, waits for the sealed answer with that id on up/diag
        <- 200 {"terminal", "firmware", "config_version", "journal_depth", "refused",
                "heap_free"?, "uptime_s", "errors", "time", "request", "heard_at"}
           404 terminal_unknown, 504 no_answer (within wait_s), 503 busy, 400/405 bad request

Why there: the gateway already holds every terminal's key and the broker session that may
publish down to terminals, and the metrics server is its one HTTP listener, bound to
127.0.0.1 unless told otherwise and without a login, like /metrics (`gateway run
--metrics-host`): a technician asks from the store's own machine. A request waits at most
DIAG_WAIT_MAX_S, and at most DIAG_PENDING_MAX wait at once, so asking cannot tie the gateway
up.

An answer counts only if it verifies under the terminal's key, comes on its own topic and
names a request id the gateway is waiting for, from that terminal; anything else is counted
(`rejected.<reason>`, `diag.unasked`) and dropped. The latest answer of each terminal is
kept (`last`).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

from gateway.registry import TerminalRegistry
from gateway.stats import Stats
from gateway.verify import Verifier
from protocol import messages, sealed, topics
from protocol.errors import AuthenticationError, ProtocolError

DIAG_PATH = "/diag/"
DIAG_WAIT_S = 10.0  # how long a request waits for its answer unless told (?wait_s=)
DIAG_WAIT_MAX_S = 60.0  # the longest a request may be told to wait
DIAG_PENDING_MAX = 16  # requests waiting for answers at once
_REQUEST_ID_BITS = 32  # the wire's request ids are uints; 32 bits as the terminals' own

Publish = Callable[[str, bytes], None]


class DiagError(Exception):
    """A diag request that got no answer; `reason` names why (one word)."""

    reason = "diag_failed"


class TerminalNotRegistered(DiagError):
    reason = "terminal_unknown"


class NoAnswer(DiagError):
    reason = "no_answer"


class DiagBusy(DiagError):
    reason = "busy"


class _Waiter:
    __slots__ = ("terminal", "answered", "fields")

    def __init__(self, terminal: str) -> None:
        self.terminal = terminal
        self.answered = threading.Event()
        self.fields: dict[str, Any] | None = None


class DiagDesk:
    """Asks terminals for their diag answer and takes the answers from the broker."""

    def __init__(self, registry: TerminalRegistry, stats: Stats, publish: Publish,
                 clock: Callable[[], float] = time.time) -> None:
        self.registry = registry
        self._verifier = Verifier(registry)
        self.stats = stats
        self.publish = publish
        self.clock = clock
        self._lock = threading.Lock()
        self._waiting: dict[int, _Waiter] = {}  # request id -> who waits for its answer
        self.last: dict[str, dict[str, Any]] = {}  # terminal -> its latest answer

    def ask(self, terminal: str, wait_s: float = DIAG_WAIT_S) -> dict[str, Any]:
        """Send `terminal` a sealed diag request and return its verified answer (with
        "heard_at", the gateway's time it came). TerminalNotRegistered, NoAnswer, DiagBusy."""
        try:
            entry = self.registry.get(terminal)
        except AuthenticationError:
            raise TerminalNotRegistered(terminal) from None
        waiter = _Waiter(terminal)
        with self._lock:
            if len(self._waiting) >= DIAG_PENDING_MAX:
                raise DiagBusy(f"{DIAG_PENDING_MAX} diag requests already wait")
            request = secrets.randbits(_REQUEST_ID_BITS)
            while request in self._waiting:
                request = secrets.randbits(_REQUEST_ID_BITS)
            self._waiting[request] = waiter
        try:
            data = sealed.seal(entry.key, messages.TYPE_DIAG_REQUEST,
                               {"terminal": terminal, "request": request,
                                "time": int(self.clock())})
            self.publish(topics.down(entry.merchant, terminal, topics.LEAF_DIAG), data)
            self.stats.add("diag.asked")
            if not waiter.answered.wait(min(wait_s, DIAG_WAIT_MAX_S)):
                self.stats.add("diag.no_answer")
                raise NoAnswer(f"{terminal} did not answer within {wait_s:g} s")
        finally:
            with self._lock:
                self._waiting.pop(request, None)
        assert waiter.fields is not None
        return waiter.fields

    def on_answer(self, topic: str, payload: bytes) -> bool:
        """The broker route of up/diag: verify, hand to the request that waits, keep."""
        try:
            fields = self._verified(topic, payload)
        except ProtocolError as error:
            self.stats.rejected(error.reason)
            return True
        with self._lock:
            waiter = self._waiting.get(fields["request"])
            if waiter is None or waiter.terminal != fields["terminal"]:
                waiter = None
        if waiter is None:  # late, replayed, or never asked: nobody waits for it
            self.stats.add("diag.unasked")
            return True
        answer = {**fields, "heard_at": self.clock()}
        self.last[fields["terminal"]] = answer
        waiter.fields = answer
        waiter.answered.set()
        self.stats.add("diag.answered")
        return True

    def _verified(self, topic: str, payload: bytes) -> dict[str, Any]:
        """The answer's fields, checked as every uplink is: topic, size, kid, MAC, schema."""
        return self._verifier.diag(topic, payload)


def serve(desk: DiagDesk, environ: dict[str, Any],
          start_response: Callable[..., Any]) -> list[bytes]:
    """WSGI: POST /diag/<terminal>[?wait_s=N] -> the terminal's answer as JSON."""
    if environ.get("REQUEST_METHOD") != "POST":
        return _json(start_response, "405 Method Not Allowed",
                     {"error": "method", "detail": "use POST /diag/<terminal>"})
    terminal = environ.get("PATH_INFO", "")[len(DIAG_PATH):]
    if not messages.is_id(terminal):
        return _json(start_response, "400 Bad Request",
                     {"error": "terminal_invalid", "detail": terminal[:40]})
    wait_s = DIAG_WAIT_S
    asked = parse_qs(environ.get("QUERY_STRING", "")).get("wait_s")
    if asked:
        try:
            wait_s = float(asked[0])
        except ValueError:
            wait_s = -1.0
        if not 0 < wait_s <= DIAG_WAIT_MAX_S:
            return _json(start_response, "400 Bad Request",
                         {"error": "wait_invalid",
                          "detail": f"wait_s must be in (0, {DIAG_WAIT_MAX_S:g}]"})
    try:
        answer = desk.ask(terminal, wait_s)
    except TerminalNotRegistered:
        return _json(start_response, "404 Not Found",
                     {"error": TerminalNotRegistered.reason, "detail": terminal})
    except NoAnswer as error:
        return _json(start_response, "504 Gateway Timeout",
                     {"error": error.reason, "detail": str(error)})
    except DiagBusy as error:
        return _json(start_response, "503 Service Unavailable",
                     {"error": error.reason, "detail": str(error)})
    return _json(start_response, "200 OK", answer)


def _json(start_response: Callable[..., Any], status: str, body: dict[str, Any]
          ) -> list[bytes]:
    data = json.dumps(body, sort_keys=True).encode() + b"\n"
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(data)))])
    return [data]
