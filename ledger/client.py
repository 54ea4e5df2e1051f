"""HTTP client of the ledger (stdlib http.client), as the gateways and tools call it.

Failures come back typed, so the caller knows what to do:

- `LedgerRejected` (and its subclasses `BatchInvalid`, `BatchTooLarge`, `BatchConflict`,
  `HoldRefused`, `NotFound`) for a 4xx answer: the ledger refused on the merits; retrying
  cannot help. ``.reason``, ``.detail`` and ``.http_status`` are the server's. For a batch,
  raise an alarm; for a hold, decline (``insufficient_value``) or alarm (``hold_conflict``).
- `LedgerUnavailable` for a refused or broken connection, a timeout, a 5xx or an answer
  that is not JSON: retry the same batch later (posting is idempotent by batch_id); for a
  hold, stand in (the gateway authorizes on its own rules) and void or resend it later
  under the same hold_id (placing is idempotent too).

Hold calls wait at most HTTP_HOLD_TIMEOUT_S (an authorization is waiting at the counter),
everything else `timeout_s`.

Proxies from the environment are ignored: the ledger is addressed directly.

Connections are kept alive, one per calling thread (a gateway's stages each have theirs), so
a hold costs one round trip, not a TCP and TLS handshake too. A kept connection the server
has closed meanwhile (its idle timeout, a restart) fails on its next use before an answer;
the request is then sent once more on a new connection if it is one the ledger takes
twice without harm (every GET, PUT and DELETE, and the POSTs of batches, holds, fleet
reports and served cards, each idempotent by its id); any other is LedgerUnavailable, as
a failed connection always was.

Credentials: `token` (``<login>:<secret>``, from `tilltap ledger login add`) is sent as a
bearer token on every request; over ``https://`` the server's certificate is checked against
`ca_file` (the ledger's own CA from `tilltap ledger tls`) when given, else the system's CAs.
A token is never sent in clear text beyond loopback (ConfigInvalid).
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from ledger.auth import is_loopback
from ledger.errors import (
    BatchInvalid,
    BatchTooLarge,
    ConfigInvalid,
    LedgerUnavailable,
    LoginRefused,
    rejection_for_status,
)
from ledger.fleet_sql import FLEET_REPORT_BYTES_MAX
from ledger.limits import BATCH_BYTES_MAX, HTTP_HOLD_TIMEOUT_S, HTTP_TIMEOUT_S

JSON_TYPE = "application/json"


class LedgerClient:
    """Talks to one ledger server at `base_url` (``http://host:port``)."""

    def __init__(self, base_url: str, timeout_s: float = HTTP_TIMEOUT_S,
                 token: str | None = None, ca_file: str | None = None) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigInvalid(
                "url_invalid", f"ledger URL must be http(s)://host:port, got {base_url!r}"
            )
        if token is not None and parts.scheme == "http" and not is_loopback(parts.hostname):
            raise ConfigInvalid("url_invalid", "a ledger login is sent over https:// only "
                                               f"beyond loopback, not to {base_url!r}")
        if ca_file is not None and parts.scheme != "https":
            raise ConfigInvalid("url_invalid", f"a ledger CA needs an https:// URL: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._token = token
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._prefix = parts.path.rstrip("/")
        self._context: ssl.SSLContext | None = None
        if parts.scheme == "https":
            try:
                context = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as error:
                raise ConfigInvalid("ca_invalid", f"ledger CA {ca_file}: {error}") from error
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            self._context = context
        self._kept = threading.local()  # .connection: this thread's kept-alive connection

    def post_batch(self, batch: Mapping[str, Any]) -> dict[str, Any]:
        """Post a settlement batch: {"status","batch_id","posted","already_posted"}."""
        try:
            body = json.dumps(batch, separators=(",", ":"), allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as error:
            raise BatchInvalid("batch_malformed", f"batch is not JSON: {error}") from error
        if len(body) > BATCH_BYTES_MAX:
            # Refused here: a server that stops reading mid-upload shows as a broken pipe.
            raise BatchTooLarge("batch_too_large", f"{len(body)} bytes, at most {BATCH_BYTES_MAX}")
        result: dict[str, Any] = self._request("POST", "/v1/batches", body)
        return result

    def place_hold(
        self,
        hold_id: str,
        card: str,
        currency: str,
        amount_minor: int,
        ttl_s: int,
        terminal: str,
        merchant: str,
        points: int = 0,
        sun_counter: int | None = None,
        reward: str | None = None,
        grants: tuple[str, ...] = (),
    ) -> dict[str, Any]:
        """Hold card value, points and uses of targeted offers: {"hold_id", "status",
        "available_minor", "available_points"}, and "engine" {"version", "tier", "discount_pct",
        "discount_until"} when the ledger keeps the card's engine state (a replay answers
        again). `sun_counter`: the tap's SUN read counter, refused card_replayed unless
        above the card's highest, which it raises. `reward`: the item the points pay for,
        refused reward_out_of_stock when the merchant's counted shelf has none unheld.
        `grants`: the card's targeted offers the sale gets, refused offer_used when one has
        no use left that no other hold took (ledger/grant_holds_sql.py).

        HoldRefused insufficient_value / insufficient_points / hold_conflict / card_replayed /
        reward_out_of_stock / offer_used, NotFound
        card_unknown, BatchInvalid for a malformed request, LedgerUnavailable when the ledger
        cannot answer in time.
        """
        request: dict[str, Any] = {
            "hold_id": hold_id,
            "card": card,
            "currency": currency,
            "amount_minor": amount_minor,
            "ttl_s": ttl_s,
            "terminal": terminal,
            "merchant": merchant,
        }
        if points:
            # Only then: a hold of value only is sent as it was before holds held points.
            request["points"] = points
        if sun_counter is not None:
            # Only then: a hold proving no tap is sent, and hashed, as before.
            request["sun_counter"] = sun_counter
        if reward is not None:
            request["reward"] = reward
        if grants:
            request["grants"] = list(grants)
        body = json.dumps(request, separators=(",", ":"), allow_nan=False).encode("utf-8")
        result: dict[str, Any] = self._request("POST", "/v1/holds", body, HTTP_HOLD_TIMEOUT_S)
        return result

    def register_card(self, card: str, program: str, currency: str, merchant: str,
                      value_minor: int) -> dict[str, Any]:
        """Register and activate a personalized card: {"status": "posted"|"duplicate", ..}.

        BatchConflict card_exists when the card is registered with another program.
        """
        request = {"program": program, "currency": currency, "merchant": merchant,
                   "value_minor": value_minor}
        body = json.dumps(request, separators=(",", ":"), allow_nan=False).encode("utf-8")
        path = f"/v1/cards/{quote(card, safe='')}"
        result: dict[str, Any] = self._request("PUT", path, body, HTTP_HOLD_TIMEOUT_S)
        return result

    def void_hold(self, hold_id: str) -> dict[str, Any]:
        """Release a hold: {"hold_id", "status": "voided", "available_minor"}.

        NotFound hold_unknown, HoldRefused hold_posted (settlement already posted it).
        """
        path = f"/v1/holds/{quote(hold_id, safe='')}"
        result: dict[str, Any] = self._request("DELETE", path, None, HTTP_HOLD_TIMEOUT_S)
        return result

    def hold(self, hold_id: str) -> dict[str, Any]:
        """One hold's state; NotFound (reason hold_unknown) for an id the ledger never held."""
        result: dict[str, Any] = self._request("GET", f"/v1/holds/{quote(hold_id, safe='')}")
        return result

    def hold_totals(self) -> dict[str, int]:
        """Holds per status, and "posted_late" (posted after they had expired)."""
        result: dict[str, int] = self._request("GET", "/v1/holds")
        return result

    def report(self, name: str, parameters: Mapping[str, str] | None = None) -> dict[str, Any]:
        """A named report: {"report", "as_of", "window_days", "parameters", "columns", "rows",
        "summary"}; NotFound report_unknown, BatchInvalid parameter_invalid."""
        query = f"?{urlencode(sorted(parameters.items()))}" if parameters else ""
        result: dict[str, Any] = self._request("GET", f"/v1/reports/{quote(name, safe='')}{query}")
        return result

    def card(self, card: str, serving: str | None = None) -> dict[str, Any]:
        """One card's balance, "blocked"/"block" and "last_stores"; NotFound (reason
        card_unknown) if the ledger never saw it. `serving`: the gateway taking the card on
        (its filtered feed then carries the card's changes; a gateway login's own is
        implied)."""
        query = "" if serving is None else f"?for={quote(serving, safe='')}"
        result: dict[str, Any] = self._request(
            "GET", f"/v1/cards/{quote(card, safe='')}{query}")
        return result

    def block_card(self, card: str, reason: str) -> dict[str, Any]:
        """Block a card for every store: {"card", "blocked": true, "block", "changed"}.

        NotFound card_unknown; Forbidden unless the login is a cards or admin login."""
        body = json.dumps({"reason": reason}, separators=(",", ":")).encode("utf-8")
        result: dict[str, Any] = self._request(
            "POST", f"/v1/cards/{quote(card, safe='')}/block", body, HTTP_HOLD_TIMEOUT_S)
        return result

    def issue_offer(self, request: dict[str, Any]) -> dict[str, Any]:
        """Grant a targeted offer (POST /v1/offers/grants, ledger/offers.py): {"program",
        "offer", "issue", "uses", "last_day", "cards", "posted", "already", "declined"}."""
        body = json.dumps(request, separators=(",", ":")).encode("utf-8")
        result: dict[str, Any] = self._request("POST", "/v1/offers/grants", body,
                                               HTTP_HOLD_TIMEOUT_S)
        return result

    def offer_report(self, program: str, offer: str) -> dict[str, Any]:
        """A targeted offer's response (GET /v1/offers/report)."""
        result: dict[str, Any] = self._request(
            "GET", f"/v1/offers/report?program={quote(program, safe='')}"
            f"&offer={quote(offer, safe='')}", None, HTTP_HOLD_TIMEOUT_S)
        return result

    def rank(self, program: str, period: int | None = None) -> dict[str, Any]:
        """Rank a program's cards for an ended period (POST /v1/rank, ledger/offers.py)."""
        request: dict[str, Any] = {"program": program}
        if period is not None:
            request["period"] = period
        body = json.dumps(request, separators=(",", ":")).encode("utf-8")
        result: dict[str, Any] = self._request("POST", "/v1/rank", body, HTTP_HOLD_TIMEOUT_S)
        return result

    def change_reward_stock(self, request: dict[str, Any]) -> dict[str, Any]:
        """Set, add to or stop counting a reward item's stock at a merchant (POST
        /v1/rewards/stock, ledger/reward_stock.py): the count after and before, held,
        available. BatchInvalid stock_invalid / reward_unknown / stock_not_counted."""
        body = json.dumps(request, separators=(",", ":")).encode("utf-8")
        result: dict[str, Any] = self._request("POST", "/v1/rewards/stock", body,
                                               HTTP_HOLD_TIMEOUT_S)
        return result

    def reward_stock(self, program: str | None = None) -> dict[str, Any]:
        """The counted reward items, held and available (GET /v1/rewards/stock)."""
        query = "" if program is None else f"?program={quote(program, safe='')}"
        result: dict[str, Any] = self._request("GET", "/v1/rewards/stock" + query, None,
                                               HTTP_HOLD_TIMEOUT_S)
        return result

    def unblock_card(self, card: str, reason: str = "") -> dict[str, Any]:
        """Lift a card's block: {"card", "blocked": false, "block", "changed"}."""
        body = json.dumps({"reason": reason}, separators=(",", ":")).encode("utf-8")
        result: dict[str, Any] = self._request(
            "DELETE", f"/v1/cards/{quote(card, safe='')}/block", body, HTTP_HOLD_TIMEOUT_S)
        return result

    def save_company(self, company: str, name: str, currency: str, budget_minor: int,
                     period: str) -> dict[str, Any]:
        """Create a company or change its name, budget (minor units) or period ("day" or
        "month", UTC): its row and "outcome" (created, changed, unchanged). BatchInvalid
        company_invalid, BatchConflict company_currency; Forbidden unless a manager or admin."""
        body = json.dumps({"company": company, "name": name, "currency": currency,
                           "budget_minor": budget_minor, "period": period},
                          separators=(",", ":")).encode("utf-8")
        result: dict[str, Any] = self._request("POST", "/v1/companies", body,
                                               HTTP_HOLD_TIMEOUT_S)
        return result

    def add_company_card(self, company: str, card: str) -> dict[str, Any]:
        """Put a card in a company: {"company", "card", "changed"}. NotFound card_unknown or
        company_unknown; BatchInvalid currency_mismatch, company_full; BatchConflict
        card_in_company (in another company)."""
        body = json.dumps({"card": card}, separators=(",", ":")).encode("utf-8")
        result: dict[str, Any] = self._request(
            "POST", f"/v1/companies/{quote(company, safe='')}/cards", body, HTTP_HOLD_TIMEOUT_S)
        return result

    def remove_company_card(self, company: str, card: str) -> dict[str, Any]:
        """Take a card out of its company: {"company", "card"}. NotFound company_unknown or
        card_not_in_company."""
        result: dict[str, Any] = self._request(
            "DELETE", f"/v1/companies/{quote(company, safe='')}/cards/{quote(card, safe='')}",
            None, HTTP_HOLD_TIMEOUT_S)
        return result

    def company(self, company: str) -> dict[str, Any]:
        """A company's budget now: {"company", "name", "currency", "budget_minor", "period",
        "period_start", "spent_minor", "held_minor", "available_minor", "cards": [{"card",
        "spent_minor", "held_minor"}, ...]}; NotFound company_unknown."""
        result: dict[str, Any] = self._request(
            "GET", f"/v1/companies/{quote(company, safe='')}", None, HTTP_HOLD_TIMEOUT_S)
        return result

    def block_changes(self, since: int = 0) -> dict[str, Any]:
        """Block changes after cursor `since`, oldest first: {"blocks": [...], "next": id}."""
        result: dict[str, Any] = self._request("GET", f"/v1/blocks?since={int(since)}",
                                               None, HTTP_HOLD_TIMEOUT_S)
        return result

    def card_changes(self, after: str = "0.0", serving: str | None = None) -> dict[str, Any]:
        """Posted transactions after cursor `after` ("XID.ID"), oldest first: {"changes":
        [...], "next": "XID.ID"} (ledger/feed_sql.py); `serving`: only those other
        gateways posted of the cards that gateway serves."""
        query = "" if serving is None else f"&for={quote(serving, safe='')}"
        result: dict[str, Any] = self._request("GET", f"/v1/changes?after={quote(after)}{query}",
                                               None, HTTP_HOLD_TIMEOUT_S)
        return result

    def serve_cards(self, cards: list[str], serving: str | None = None) -> dict[str, Any]:
        """Note at the ledger that this gateway (`serving` on an open ledger) serves `cards`
        (at most SERVED_CARDS_PER_POST_MAX): {"gateway", "cards": count}."""
        document: dict[str, Any] = {"cards": cards}
        if serving is not None:
            document["for"] = serving
        body = json.dumps(document, separators=(",", ":")).encode("utf-8")
        result: dict[str, Any] = self._request("POST", "/v1/served", body, HTTP_HOLD_TIMEOUT_S)
        return result

    def balances(self) -> list[dict[str, Any]]:
        """Every card's balance, ordered by card id."""
        result: list[dict[str, Any]] = self._request("GET", "/v1/balances")["balances"]
        return result

    def terminal_totals(self) -> dict[str, dict[str, Any]]:
        """{terminal: {"count": n, "by_kind": {...}}}."""
        result: dict[str, dict[str, Any]] = self._request("GET", "/v1/terminals")
        return result

    def trial_balance(self) -> dict[str, int]:
        """{unit: sum of entries}, all zero in healthy books."""
        result: dict[str, int] = self._request("GET", "/v1/trial-balance")
        return result

    def refused_transactions(self, batch_id: str | None = None) -> list[dict[str, Any]]:
        """The ledger's quarantine of refused transactions (one batch's, or all)."""
        query = f"?{urlencode({'batch_id': batch_id})}" if batch_id is not None else ""
        result: dict[str, Any] = self._request("GET", f"/v1/refused{query}")
        return list(result["refused"])

    def alarms(self) -> list[dict[str, Any]]:
        """Alarms recorded by the ledger, oldest first."""
        result: list[dict[str, Any]] = self._request("GET", "/v1/alarms")["alarms"]
        return result

    def report_fleet(self, report: Mapping[str, Any]) -> dict[str, Any]:
        """Report the gateway's terminals (POST /v1/fleet, ledger/fleet_sql.py):
        {"status": "reported", "gateway_id", "terminals"}; BatchInvalid fleet_report_invalid,
        Forbidden for another gateway's id or terminals, LedgerUnavailable."""
        body = json.dumps(report, separators=(",", ":"), allow_nan=False).encode("utf-8")
        if len(body) > FLEET_REPORT_BYTES_MAX:  # refused here, as a batch over its limit
            raise BatchTooLarge("request_too_large",
                                f"{len(body)} bytes, at most {FLEET_REPORT_BYTES_MAX}")
        result: dict[str, Any] = self._request("POST", "/v1/fleet", body, HTTP_HOLD_TIMEOUT_S)
        return result

    def fleet(self) -> list[dict[str, Any]]:
        """Each gateway's last fleet report, with its "terminals" (GET /v1/fleet)."""
        result: list[dict[str, Any]] = self._request("GET", "/v1/fleet")["gateways"]
        return result

    def health(self) -> dict[str, Any]:
        """{"status": "ok", "dialect": ...}; LedgerUnavailable if the books cannot be reached."""
        result: dict[str, Any] = self._request("GET", "/v1/health")
        return result

    def enrol(self, enrolment: Mapping[str, Any]) -> dict[str, Any]:
        """A counter's enrolment (POST /v1/enrolments, docs/ledger.md "Enrolment at the
        counter"): {"customer_id", "card", "joined", "changed", "first_name"}; refusals
        typed as for any call (card_unknown, card_linked, phone_invalid, ...). Waits at most
        HTTP_HOLD_TIMEOUT_S: a cashier is waiting. The body holds personal data: it goes
        over this connection only and no error carries it."""
        body = json.dumps(dict(enrolment)).encode("utf-8")
        result: dict[str, Any] = self._request("POST", "/v1/enrolments", body,
                                               HTTP_HOLD_TIMEOUT_S)
        return result

    def _request(
        self, method: str, path: str, body: bytes | None = None, timeout_s: float | None = None
    ) -> Any:
        """One HTTP exchange, its JSON answer, or a typed error."""
        headers = {"Accept": JSON_TYPE}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        if body is not None:
            headers["Content-Type"] = JSON_TYPE
        wait_s = self.timeout_s if timeout_s is None else min(timeout_s, self.timeout_s)
        while True:
            connection, reused = self._connection(wait_s)
            try:
                connection.request(method, self._prefix + path, body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
            except STALE_CONNECTION_ERRORS as error:
                self.close()
                if reused and _retryable(method, path):
                    continue  # the kept connection had been closed: once on a new one
                raise LedgerUnavailable(f"{method} {path}: {error}") from error
            except (OSError, http.client.HTTPException) as error:
                # Refused connection, DNS, timeout, reset, a broken answer.
                self.close()
                raise LedgerUnavailable(f"{method} {path}: {error}") from error
            if response.will_close:
                self.close()
            if not 200 <= response.status < 300:
                raise _http_failure(response.status, response.reason, payload)
            return _decode(payload)

    def _connection(self, wait_s: float) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection, with this request's timeout; whether it was kept."""
        now = time.monotonic()
        if now - getattr(self._kept, "used_at", now) > KEPT_IDLE_MAX_S:
            self.close()  # idle: a kept connection holds a server thread for nothing
        self._kept.used_at = now
        connection: http.client.HTTPConnection | None = getattr(self._kept, "connection", None)
        reused = connection is not None and connection.sock is not None
        if connection is None:
            connection = (http.client.HTTPSConnection(self._host, self._port, timeout=wait_s,
                                                      context=self._context)
                          if self._context is not None
                          else http.client.HTTPConnection(self._host, self._port,
                                                          timeout=wait_s))
            self._kept.connection = connection
        connection.timeout = wait_s
        if connection.sock is not None:
            connection.sock.settimeout(wait_s)
        return connection, reused

    def close(self) -> None:
        """Close this thread's kept connection (the next request opens a new one)."""
        connection = getattr(self._kept, "connection", None)
        if connection is not None:
            connection.close()
            self._kept.connection = None


KEPT_IDLE_MAX_S = 2.0
"""A connection unused this long is closed rather than reused: the ledger serves each open
connection with a thread (HTTP_CONNECTIONS_MAX), so only a client calling again soon (holds
under load, batches, a feed read every second) keeps one."""
STALE_CONNECTION_ERRORS = (http.client.RemoteDisconnected, ConnectionResetError,
                           BrokenPipeError, ConnectionAbortedError)
"""What a kept connection the server closed meanwhile fails with, before any answer."""
IDEMPOTENT_POSTS = ("/v1/batches", "/v1/holds", "/v1/fleet", "/v1/served",
                    "/v1/offers/grants", "/v1/rank")
"""POSTs the ledger takes twice without harm: each names its own id (batch, hold, gateway,
an offer's issue, a program's period) or only notes what is already so."""


def _retryable(method: str, path: str) -> bool:
    return method in ("GET", "PUT", "DELETE") or (
        method == "POST" and path.split("?")[0] in IDEMPOTENT_POSTS)


def connect(url: str, token_file: str | None = None, ca_file: str | None = None,
            timeout_s: float = HTTP_TIMEOUT_S) -> LedgerClient:
    """A client from command-line settings: the URL, a token file, a CA file (ConfigInvalid
    for any that cannot be used)."""
    token = read_token(token_file) if token_file else None
    return LedgerClient(url, timeout_s, token=token, ca_file=ca_file)


def read_token(path: str) -> str:
    """A ledger login's token from its file (`tilltap ledger login add --token-out`);
    ConfigInvalid for a missing, unreadable or malformed one."""
    try:
        with open(path, encoding="utf-8") as file:
            token = file.read().strip()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigInvalid("token_invalid", f"cannot read ledger token {path}: {error}") from error
    name, _, secret = token.partition(":")
    if not name or not secret or any(c.isspace() for c in token):
        raise ConfigInvalid("token_invalid", f"{path} does not hold a <login>:<secret> token")
    return token


def _decode(payload: bytes) -> Any:
    """A JSON answer; anything else means a broken hop, so it is retryable."""
    try:
        return json.loads(payload)
    except ValueError as error:
        raise LedgerUnavailable(f"answer is not JSON: {payload[:100]!r}") from error


def _http_failure(status: int, phrase: str, payload: bytes) -> Exception:
    """The typed exception for a non-2xx answer: 4xx rejected, anything else unavailable."""
    try:
        answer = json.loads(payload)
        reason, detail = str(answer["error"]), str(answer.get("detail", ""))
    except (ValueError, KeyError, TypeError):
        reason, detail = f"http_{status}", phrase
    if status == 401:
        return LoginRefused(detail, reason=reason)
    if 400 <= status < 500:
        return rejection_for_status(reason, detail, status)
    return LedgerUnavailable(detail, reason=reason)
