"""Two-phase money: holds on a card's value, placed at authorization, posted by settlement.

A hold is TigerBeetle's pending transfer. An online authorization places one on the value it
approves, so two terminals cannot both spend the same balance; the settlement batch that
carries the sale posts it. Its life::

    open ──┬──> posted    a settled purchase names it in "hold_id" (amount <= the hold's;
           │              the rest is released in the same database transaction)
           ├──> voided    DELETE /v1/holds/<id> (an expired hold may be voided too)
           └──> expired   its ttl ran out; it no longer counts against the card's value,
                          but the sale it authorized may still be posted (counted as late)

A card's available value is its value minus its open, unexpired holds. Expiry is judged
against the books' clock everywhere it is read; the stored status catches up when the card
is next held, when a hold is voided, or when `expire_due` runs (the server's sweep).

Every function here that touches the database runs inside the books' write transaction,
which holds the single writer lock (SQLite ``BEGIN IMMEDIATE``, a PostgreSQL advisory lock):
holds on one card, and settlement of that card, are serialized, so holds never over-commit.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ledger.db import Database
from ledger.errors import BatchInvalid, HoldRefused, NotFound
from ledger.model import Txn
from ledger.postings import CARD_VALUE
from ledger.schema import HOLD_COLUMNS, HOLD_POSTING_COLUMNS

STATUS_OPEN = "open"
STATUS_POSTED = "posted"
STATUS_VOIDED = "voided"
STATUS_EXPIRED = "expired"
STATUSES = (STATUS_OPEN, STATUS_POSTED, STATUS_VOIDED, STATUS_EXPIRED)


@dataclass(frozen=True, slots=True)
class HoldRequest:
    """A validated POST /v1/holds body; `content_hash` judges a replay of its hold_id."""

    hold_id: str
    card: str
    currency: str
    amount_minor: int
    ttl_s: int
    terminal: str
    merchant: str
    content_hash: str


@dataclass(frozen=True, slots=True)
class HoldState:
    """A hold as settlement sees it; `status` already accounts for expiry."""

    hold_id: str
    card: str
    currency: str
    amount_minor: int
    status: str


@dataclass(frozen=True, slots=True)
class HoldPosting:
    """A settled purchase posting a hold: what it took and what it released."""

    hold_id: str
    txn_id: str
    posted_minor: int
    released_minor: int
    late: bool
    """The hold had expired: its value was free again before the sale was posted."""


@dataclass(frozen=True, slots=True)
class HoldAnswer:
    """The answer to placing or voiding a hold; `created` picks 201 over 200."""

    hold_id: str
    status: str
    available_minor: int
    created: bool = False

    def to_json(self) -> dict[str, Any]:
        """The body of the HTTP answer."""
        return {
            "hold_id": self.hold_id,
            "status": self.status,
            "available_minor": self.available_minor,
        }


def effective_status(stored: str, expires_at: int, now: int) -> str:
    """The status a hold has at `now`: an open hold past its expiry is expired."""
    if stored == STATUS_OPEN and expires_at <= now:
        return STATUS_EXPIRED
    return stored


def check_posting(txn: Txn, hold: HoldState | None) -> HoldPosting:
    """Pure rule: may this settled purchase post this hold? Raises BatchInvalid if not."""
    assert txn.hold_id is not None, "only a transaction naming a hold posts one"
    where = f"txn {txn.txn_id}: hold {txn.hold_id}"
    if hold is None:
        raise BatchInvalid("hold_unknown", f"{where} is not in the ledger")
    if hold.status == STATUS_VOIDED:
        raise BatchInvalid("hold_voided", f"{where} was voided")
    if hold.status == STATUS_POSTED:
        raise BatchInvalid("hold_posted", f"{where} was already posted")
    if (hold.card, hold.currency) != (txn.card, txn.currency):
        raise BatchInvalid(
            "hold_mismatch", f"{where} is on card {hold.card} in {hold.currency}, not this one"
        )
    if txn.card_value_minor > hold.amount_minor:
        raise BatchInvalid(
            "hold_exceeded",
            f"{where} holds {hold.amount_minor}, the sale takes {txn.card_value_minor}",
        )
    return HoldPosting(
        hold.hold_id,
        txn.txn_id,
        txn.card_value_minor,
        hold.amount_minor - txn.card_value_minor,
        late=hold.status == STATUS_EXPIRED,
    )


# -- SQL: called inside Database.write_transaction (reads may also run outside one) ------------


def place(database: Database, request: HoldRequest, now: int) -> HoldAnswer:
    """Place a hold, or answer a replay of one; refuse what the card's value cannot cover."""
    known = database.fetch(
        "SELECT content_hash, status, expires_at, available_minor FROM holds WHERE hold_id = ?",
        (request.hold_id,),
    )
    if known:
        content_hash, status, expires_at, available_minor = known[0]
        if content_hash != request.content_hash:
            raise HoldRefused(
                "hold_conflict", f"hold {request.hold_id} was placed before with other content"
            )
        status = effective_status(status, expires_at, now)
        return HoldAnswer(request.hold_id, status, available_minor)
    cards = database.fetch("SELECT currency FROM cards WHERE card = ?", (request.card,))
    if not cards:
        raise NotFound("card_unknown", f"the ledger has no card {request.card!r}")
    if cards[0][0] != request.currency:
        raise BatchInvalid(
            "currency_mismatch",
            f"card {request.card} is in {cards[0][0]}, not {request.currency}",
        )
    _expire_card(database, request.card, now)
    value_minor, held_minor = card_funds(database, request.card, now)
    available_minor = value_minor - held_minor
    if available_minor < request.amount_minor:
        raise HoldRefused(
            "insufficient_value",
            f"card {request.card} has {available_minor} available, the hold asks"
            f" {request.amount_minor}",
        )
    left_minor = available_minor - request.amount_minor
    database.bulk_insert("holds", HOLD_COLUMNS, [_hold_row(request, now, left_minor)])
    return HoldAnswer(request.hold_id, STATUS_OPEN, left_minor, created=True)


def void(database: Database, hold_id: str, now: int) -> HoldAnswer:
    """Void an open or expired hold (again: the same answer); a posted hold is hold_posted."""
    rows = database.fetch(
        "SELECT card, status, expires_at FROM holds WHERE hold_id = ?", (hold_id,)
    )
    if not rows:
        raise NotFound("hold_unknown", f"the ledger has no hold {hold_id[:64]!r}")
    card, stored, expires_at = rows[0]
    status = effective_status(stored, expires_at, now)
    if status == STATUS_POSTED:
        raise HoldRefused("hold_posted", f"hold {hold_id} was posted by settlement")
    if status != STATUS_VOIDED:
        database.execute(
            "UPDATE holds SET status = ?, closed_at = ? WHERE hold_id = ?",
            (STATUS_VOIDED, now, hold_id),
        )
    value_minor, held_minor = card_funds(database, card, now)
    return HoldAnswer(hold_id, STATUS_VOIDED, value_minor - held_minor)


def expire_due(database: Database, now: int) -> int:
    """Mark every open hold past its expiry expired (closed at its expiry); how many."""
    due = database.fetch(
        "SELECT COUNT(*) FROM holds WHERE status = ? AND expires_at <= ?", (STATUS_OPEN, now)
    )[0][0]
    if due:
        database.execute(
            "UPDATE holds SET status = ?, closed_at = expires_at"
            " WHERE status = ? AND expires_at <= ?",
            (STATUS_EXPIRED, STATUS_OPEN, now),
        )
    return int(due)


def _expire_card(database: Database, card: str, now: int) -> None:
    """expire_due for one card, before its available value is judged."""
    database.execute(
        "UPDATE holds SET status = ?, closed_at = expires_at"
        " WHERE card = ? AND status = ? AND expires_at <= ?",
        (STATUS_EXPIRED, card, STATUS_OPEN, now),
    )


def card_funds(database: Database, card: str, now: int) -> tuple[int, int]:
    """(value_minor, held_minor) of one card: its value, and its open unexpired holds."""
    value_sum = database.fetch(
        "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM entries"
        " WHERE owner = ? AND account_kind = ?",
        (card, CARD_VALUE),
    )[0][0]
    held_minor = database.fetch(
        "SELECT CAST(COALESCE(SUM(amount_minor), 0) AS BIGINT) FROM holds"
        " WHERE card = ? AND status = ? AND expires_at > ?",
        (card, STATUS_OPEN, now),
    )[0][0]
    return -int(value_sum), int(held_minor)


def read_states(database: Database, hold_ids: Iterable[str], now: int) -> dict[str, HoldState]:
    """The holds a batch names, by id, with expiry applied to their status."""
    rows = database.fetch_in(
        "SELECT hold_id, card, currency, amount_minor, status, expires_at FROM holds WHERE {match}",
        "hold_id",
        hold_ids,
    )
    return {
        hold_id: HoldState(hold_id, card, currency, amount_minor, effective_status(status, at, now))
        for hold_id, card, currency, amount_minor, status, at in rows
    }


def record_postings(
    database: Database, batch_id: str, postings: list[HoldPosting], now: int
) -> None:
    """Link each posted hold to its purchase and close it, in the batch's transaction."""
    if not postings:
        return
    database.bulk_insert(
        "hold_postings",
        HOLD_POSTING_COLUMNS,
        (
            (p.hold_id, p.txn_id, batch_id, p.posted_minor, p.released_minor, int(p.late), now)
            for p in postings
        ),
    )
    # One set-based statement, not one per hold: a batch may post 200,000 of them.
    database.execute(
        "UPDATE holds SET status = ?, closed_at = ?"
        " WHERE hold_id IN (SELECT hold_id FROM hold_postings WHERE batch_id = ?)",
        (STATUS_POSTED, now, batch_id),
    )


def detail(database: Database, hold_id: str, now: int) -> dict[str, Any] | None:
    """One hold as GET /v1/holds/<id> shows it, or None."""
    rows = database.fetch(
        "SELECT h.hold_id, h.card, h.currency, h.amount_minor, h.terminal, h.merchant,"
        " h.status, h.placed_at, h.expires_at, h.closed_at,"
        " p.txn_id, p.posted_minor, p.released_minor, p.late"
        " FROM holds h LEFT JOIN hold_postings p ON p.hold_id = h.hold_id"
        " WHERE h.hold_id = ?",
        (hold_id,),
    )
    if not rows:
        return None
    (hold_id, card, currency, amount_minor, terminal, merchant, stored, placed_at, expires_at,
     closed_at, txn_id, posted_minor, released_minor, late) = rows[0]  # fmt: skip
    status = effective_status(stored, expires_at, now)
    return {
        "hold_id": hold_id,
        "card": card,
        "currency": currency,
        "amount_minor": amount_minor,
        "terminal": terminal,
        "merchant": merchant,
        "status": status,
        "placed_at": placed_at,
        "expires_at": expires_at,
        "closed_at": expires_at if status != stored else closed_at,
        "posted_txn_id": txn_id,
        "posted_minor": posted_minor,
        "released_minor": released_minor,
        "posted_late": bool(late),
    }


def totals(database: Database, now: int) -> dict[str, int]:
    """Holds per status at `now`, and how many were posted after they had expired."""
    rows = database.fetch(
        "SELECT CASE WHEN status = ? AND expires_at <= ? THEN ? ELSE status END, COUNT(*)"
        " FROM holds GROUP BY 1",
        (STATUS_OPEN, now, STATUS_EXPIRED),
    )
    counted = dict.fromkeys(STATUSES, 0) | {status: int(count) for status, count in rows}
    late = database.fetch("SELECT COUNT(*) FROM hold_postings WHERE late = 1")[0][0]
    return counted | {"posted_late": int(late)}


def _hold_row(request: HoldRequest, now: int, available_minor: int) -> tuple[Any, ...]:
    """A holds row in HOLD_COLUMNS order."""
    return (
        request.hold_id,
        request.card,
        request.currency,
        request.amount_minor,
        request.ttl_s,
        request.terminal,
        request.merchant,
        request.content_hash,
        now,
        now + request.ttl_s,
        available_minor,
        STATUS_OPEN,
    )
