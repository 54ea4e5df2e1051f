"""Operating errors of the ledger, each with a stable reason code.

A reason code is a short snake_case string that never changes meaning: the gateway,
the HTTP API and the operators' alarms all key on it, so the message in ``detail`` may
be reworded but the code may not. Programmer errors are ``assert``s, never these.

The tree (HTTP status used by the server in brackets)::

    LedgerError                       base: .reason, .detail
    ├── LedgerRejected        [4xx] refused, NOTHING changed (405/411/415 raised as this class)
    │   ├── BatchInvalid        [400] malformed batch, transaction, hold request or report
    │   │                             parameter, or a posting rule (refunds, holds) refused it
    │   ├── BatchTooLarge       [413] body or report over its size limit
    │   ├── BatchConflict       [409] batch_id or txn_id reused with other content (alarm raised)
    │   ├── HoldRefused         [409] a hold cannot be placed or voided: insufficient_value,
    │   │                             insufficient_points, hold_posted, hold_conflict (id
    │   │                             reused, alarm raised), card_blocked, card_replayed
    │   │                             (a SUN read counter not above the card's highest),
    │   │                             company_budget (the card's company's shared budget),
    │   │                             reward_out_of_stock (a counted reward item's shelf),
    │   │                             card_expired (the card's engine state: value expired)
    │   ├── NotFound            [404] unknown card, hold, report or path
    │   ├── Unauthorized        [401] no login, or not one the ledger knows (server side)
    │   └── Forbidden           [403] a login asked beyond its role or its gateway's ids
    ├── LedgerUnavailable       [503] database or network trouble: retry later, same request
    │   └── LoginRefused        [401] as the client sees it: our login was refused; an
    │                                 operator fixes the token, the work waits and retries
    └── ConfigInvalid                 bad DSN or settings at start-up

The gateway retries on ``LedgerUnavailable`` (and stands in for an authorization) and raises
an alarm on ``LedgerRejected``; the client (``ledger.client``) raises these same classes from
HTTP answers.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base of every operating error; carries a stable reason code and a human detail."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class LedgerRejected(LedgerError):
    """The ledger refused the request on its merits; retrying the same request cannot help."""

    default_http_status = 400

    def __init__(self, reason: str, detail: str = "", http_status: int | None = None) -> None:
        super().__init__(reason, detail)
        self.http_status = self.default_http_status if http_status is None else http_status


class BatchInvalid(LedgerRejected):
    """A field, a type, a value or a posting rule is wrong; the batch was not posted."""

    default_http_status = 400


class BatchTooLarge(LedgerRejected):
    """The batch exceeds a size limit; the sender must split it."""

    default_http_status = 413


class BatchConflict(LedgerRejected):
    """An id was reused with different content: never overwritten, always alarmed."""

    default_http_status = 409


class HoldRefused(LedgerRejected):
    """A hold cannot be placed or voided in the books' current state (value, hold status)."""

    default_http_status = 409


HOLD_REFUSALS = frozenset({"insufficient_value", "insufficient_points", "hold_posted",
                           "hold_conflict", "card_blocked", "card_replayed",
                           "company_budget", "reward_out_of_stock", "card_expired",
                           "offer_used"})
"""Reasons a 409 answer is a `HoldRefused` rather than a `BatchConflict`."""


class NotFound(LedgerRejected):
    """The thing asked for does not exist in the books."""

    default_http_status = 404


class Unauthorized(LedgerRejected):
    """No login, or one the ledger does not know: 401, and the same words every time."""

    default_http_status = 401


class Forbidden(LedgerRejected):
    """A known login asked for something outside its role or its gateway's namespace."""

    default_http_status = 403


class LedgerUnavailable(LedgerError):
    """The books cannot be reached right now; the same request may succeed later."""

    def __init__(self, detail: str = "", reason: str = "ledger_unavailable") -> None:
        super().__init__(reason, detail)


class LoginRefused(LedgerUnavailable):
    """The ledger did not accept our login (401): a configuration fault an operator fixes
    (a revoked or mistyped token), not a verdict on the request, so the caller keeps its
    work and retries later, as when the ledger is out of reach."""


class ConfigInvalid(LedgerError):
    """A start-up setting (such as the DSN) cannot be used."""


def rejection_for_status(reason: str, detail: str, http_status: int) -> LedgerRejected:
    """Rebuild the typed rejection a server answered with, so clients can catch subclasses."""
    if http_status == HoldRefused.default_http_status and reason in HOLD_REFUSALS:
        return HoldRefused(reason, detail, http_status)
    by_status: dict[int, type[LedgerRejected]] = {
        400: BatchInvalid,
        404: NotFound,
        409: BatchConflict,
        403: Forbidden,
        413: BatchTooLarge,
    }
    return by_status.get(http_status, LedgerRejected)(reason, detail, http_status)
