"""HTTP client of the ledger (stdlib urllib), as used by the gateway's settlement stage.

Failures come back typed, so the caller knows what to do:

- `LedgerRejected` (and its subclasses `BatchInvalid`, `BatchTooLarge`, `BatchConflict`,
  `NotFound`) for a 4xx answer: the ledger refused on the merits; retrying cannot help,
  raise an alarm. ``.reason``, ``.detail`` and ``.http_status`` are the server's.
- `LedgerUnavailable` for a refused or broken connection, a timeout, a 5xx or an answer
  that is not JSON: retry the same batch later (posting is idempotent by batch_id).

Proxies from the environment are ignored: the ledger is addressed directly.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from ledger.errors import (
    BatchInvalid,
    BatchTooLarge,
    ConfigInvalid,
    LedgerUnavailable,
    rejection_for_status,
)
from ledger.limits import BATCH_BYTES_MAX, HTTP_TIMEOUT_S

JSON_TYPE = "application/json"


class LedgerClient:
    """Talks to one ledger server at `base_url` (``http://host:port``)."""

    def __init__(self, base_url: str, timeout_s: float = HTTP_TIMEOUT_S) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigInvalid(
                "url_invalid", f"ledger URL must be http(s)://..., got {base_url!r}"
            )
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

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

    def card(self, card: str) -> dict[str, Any]:
        """One card's balance; NotFound (reason card_unknown) if the ledger never saw it."""
        result: dict[str, Any] = self._request("GET", f"/v1/cards/{quote(card, safe='')}")
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

    def alarms(self) -> list[dict[str, Any]]:
        """Alarms recorded by the ledger, oldest first."""
        result: list[dict[str, Any]] = self._request("GET", "/v1/alarms")["alarms"]
        return result

    def health(self) -> dict[str, Any]:
        """{"status": "ok", "dialect": ...}; LedgerUnavailable if the books cannot be reached."""
        result: dict[str, Any] = self._request("GET", "/v1/health")
        return result

    def _request(self, method: str, path: str, body: bytes | None = None) -> Any:
        """One HTTP exchange, its JSON answer, or a typed error."""
        request = urllib.request.Request(self.base_url + path, data=body, method=method)
        if body is not None:
            request.add_header("Content-Type", JSON_TYPE)
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                return _decode(response.read())
        except urllib.error.HTTPError as error:
            raise _http_failure(error) from error
        except (OSError, http.client.HTTPException) as error:
            # URLError is an OSError: refused connection, DNS, timeout, reset.
            raise LedgerUnavailable(f"{method} {path}: {error}") from error


def _decode(payload: bytes) -> Any:
    """A JSON answer; anything else means a broken hop, so it is retryable."""
    try:
        return json.loads(payload)
    except ValueError as error:
        raise LedgerUnavailable(f"answer is not JSON: {payload[:100]!r}") from error


def _http_failure(error: urllib.error.HTTPError) -> Exception:
    """The typed exception for a non-2xx answer: 4xx rejected, anything else unavailable."""
    try:
        answer = json.loads(error.read())
        reason, detail = str(answer["error"]), str(answer.get("detail", ""))
    except (ValueError, KeyError, TypeError, OSError):
        reason, detail = f"http_{error.code}", str(error.reason)
    if 400 <= error.code < 500:
        return rejection_for_status(reason, detail, error.code)
    return LedgerUnavailable(detail, reason=reason)
