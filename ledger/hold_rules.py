"""Two-phase money: holds on a card's value and points, placed at authorization, posted by
settlement.

A hold is TigerBeetle's pending transfer. An online authorization places one on the value
and the points it approves (either or both), so two terminals, or two stores, cannot both
spend the same balance or redeem the same points; the settlement batch that carries the
sale posts it. Its life::

    open ──┬──> posted    a settled purchase names it in "hold_id" (card value <= the hold's
           │              amount, points redeemed <= its points; the rest of both is
           │              released in the same database transaction)
           ├──> voided    DELETE /v1/holds/<id> (an expired hold may be voided too)
           └──> expired   its ttl ran out; it no longer counts against the card's value,
                          but the sale it authorized may still be posted (counted as late)

A card's available value is its value minus the amounts of its open, unexpired holds; its
available points are its points minus the points of those holds. Expiry is judged
against the books' clock everywhere it is read; the stored status catches up when the card
is next held, when a hold is voided, or when `hold_sql.expire_due` runs (the server's sweep).

This module holds the rules and value types of holds. Pure, no I/O: `ledger.hold_sql` reads
and writes the holds tables and asks these rules; `ledger.plan` asks `check_posting`.

Where a hold is kept (`ledger.schema`): a hold of value only is a `holds` row, as before
holds held points; a hold with points (and value, if any) is a `point_holds` row, because
`holds` was released with CHECK (amount_minor > 0) and tables are never changed. A hold is
one row of one of them, never two, so its status is never kept twice.
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from ledger.errors import BatchInvalid, HoldRefused
from ledger.model import Txn

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
    points: int = 0
    """Points held for redemption (optional key; absent and 0 are the same hold)."""
    sun_counter: int | None = None
    """The tap's SUN read counter (optional key): the hold is refused card_replayed unless
    it is above the card's highest, which it then raises (`ledger.sun_sql`)."""
    reward: str | None = None
    """The reward item the held points pay for (optional key, a hold of points only): placed
    only while the store's shelf of it, as the ledger counts it, has one not held
    (`ledger.reward_stock_sql`), which it then holds."""
    grants: tuple[str, ...] = ()
    """The card's targeted offers the sale gets (optional key, "grants": [offer, ...]): one
    use of each is held, placed only while the card's kept engine state has a use of it not
    held (`ledger.grant_holds_sql`). A hold naming grants may hold no value and no points."""

    @property
    def holds_points(self) -> bool:
        """Whether it is kept in `point_holds` (else in `holds`)."""
        return self.points > 0


HOLD_ELSEWHERE_FIELDS = ("sun_counter", "reward", "grants")
"""The fields of a hold request kept elsewhere than with the hold (the SUN counter on its
card, the reward item in `reward_holds`, the offers in `grant_holds`): no column of either
holds table (a replay is judged by the content hash, which covers them)."""
HOLD_REQUEST_FIELDS = tuple(field.name for field in fields(HoldRequest)
                            if field.name not in HOLD_ELSEWHERE_FIELDS)
"""Every field of a hold request the hold keeps, in `HoldRequest` order (the first columns
of a point_holds row)."""
HOLD_POINTS_FIELDS = ("points",)
"""The fields only a hold with points has: no column of `holds`."""
HOLD_VALUE_FIELDS = tuple(name for name in HOLD_REQUEST_FIELDS if name not in HOLD_POINTS_FIELDS)
"""The fields of a hold of value only, in `HoldRequest` order (the first columns of a holds
row)."""
HOLD_REQUEST_KEYS = tuple(
    field.name for field in fields(HoldRequest)
    if field.default is MISSING and field.name != "content_hash"
)
"""The keys every POST /v1/holds body carries: its fields but the hash the ledger computes of
it and the optional ones."""
HOLD_OPTIONAL_KEYS = tuple(field.name for field in fields(HoldRequest)
                           if field.default is not MISSING)
"""Keys a POST /v1/holds body may leave out: "points" absent and 0 are the same hold (same
hash); "sun_counter" absent is a hold that proves no tap; "reward" absent holds no item;
"grants" absent holds no offer's use."""


@dataclass(frozen=True, slots=True)
class HoldState:
    """A hold as settlement sees it; `status` already accounts for expiry."""

    hold_id: str
    card: str
    currency: str
    amount_minor: int
    status: str
    points: int = 0
    holds_points: bool = False
    """A `point_holds` row (its posting is a `point_hold_postings` row)."""


@dataclass(frozen=True, slots=True)
class HoldPosting:
    """A settled purchase posting a hold: what it took and what it released."""

    hold_id: str
    txn_id: str
    posted_minor: int
    released_minor: int
    late: bool
    """The hold had expired: its value was free again before the sale was posted."""
    posted_points: int = 0
    released_points: int = 0
    holds_points: bool = False
    """The hold is a `point_holds` row: its posting is kept in `point_hold_postings`."""


@dataclass(frozen=True, slots=True)
class CardFunds:
    """A card's value and points (as its holder sees them) and what its open, unexpired
    holds hold of each."""

    value_minor: int
    held_minor: int
    points: int
    held_points: int

    @property
    def available_minor(self) -> int:
        return self.value_minor - self.held_minor

    @property
    def available_points(self) -> int:
        return self.points - self.held_points


@dataclass(frozen=True, slots=True)
class EngineTerms:
    """What a card's kept engine state (ledger/card_engine.py `hold_terms`) allows a hold
    today, beside the books: its points still live (lots not past their expiry, less points
    owed), whether its value has expired, and the uses left of its targeted offers whose
    last day is not past."""

    points_live: int
    value_expired: bool
    grant_uses: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class HoldAnswer:
    """The answer to placing or voiding a hold; `created` picks 201 over 200."""

    hold_id: str
    status: str
    available_minor: int
    available_points: int
    created: bool = False
    engine: dict[str, Any] | None = None
    """The card's kept engine state as of the answer (ledger/card_engine.py hold_snapshot):
    {"version", "tier", "discount_pct", "discount_until"}; None: the ledger keeps none."""

    def to_json(self) -> dict[str, Any]:
        """The body of the HTTP answer ("engine" only when the ledger keeps the card's)."""
        body: dict[str, Any] = {
            "hold_id": self.hold_id,
            "status": self.status,
            "available_minor": self.available_minor,
            "available_points": self.available_points,
        }
        if self.engine is not None:
            body["engine"] = self.engine
        return body


def effective_status(stored: str, expires_at: int, now: int) -> str:
    """The status a hold has at `now`: an open hold past its expiry is expired."""
    if stored == STATUS_OPEN and expires_at <= now:
        return STATUS_EXPIRED
    return stored


def check_replay(request: HoldRequest, known_content_hash: str) -> None:
    """A hold_id placed before may only be asked for again with the same content."""
    if known_content_hash != request.content_hash:
        raise HoldRefused(
            "hold_conflict", f"hold {request.hold_id} was placed before with other content"
        )


def check_currency(request: HoldRequest, card_currency: str) -> None:
    """A hold is in the currency of its card."""
    if card_currency != request.currency:
        raise BatchInvalid(
            "currency_mismatch",
            f"card {request.card} is in {card_currency}, not {request.currency}",
        )


def available_after(request: HoldRequest, available_minor: int) -> int:
    """What the card has available once the hold is placed; insufficient_value if it asks more.

    A hold of points only asks no value: it is placed even on a card whose value went below
    zero (an offline overdraft), as a sale paid in cash with points would be."""
    if request.amount_minor and available_minor < request.amount_minor:
        raise HoldRefused(
            "insufficient_value",
            f"card {request.card} has {available_minor} available, the hold asks"
            f" {request.amount_minor}",
        )
    return available_minor - request.amount_minor


def points_after(request: HoldRequest, available_points: int, which: str = "") -> int:
    """The points the card has available once the hold is placed; insufficient_points if it
    asks more (a hold of value only asks none, whatever the card's points). `which` names
    the points counted, for the refusal's detail."""
    if request.points and available_points < request.points:
        raise HoldRefused(
            "insufficient_points",
            f"card {request.card} has {available_points} {which}points available, the hold"
            f" asks {request.points}",
        )
    return available_points - request.points


def check_engine(request: HoldRequest, terms: EngineTerms, held_points: int) -> int:
    """The card's engine state, as well as its books, must allow the hold; the points the
    engine leaves once it is placed.

    ENGINE_HOLD_VALUE_EXPIRED: a hold of value on a card whose value has expired is
    card_expired (the gateway posts the lapse later; until then the books still hold it).
    ENGINE_HOLD_POINTS_LIVE: a hold's points must be live: points past their lot's expiry,
    not yet posted as lapsed, are in the books but can no longer be redeemed."""
    if request.amount_minor and terms.value_expired:
        raise HoldRefused("card_expired", f"card {request.card}: its value has expired")
    return points_after(request, terms.points_live - held_points, "live (unexpired, unheld) ")


def check_grants(request: HoldRequest, terms: EngineTerms | None,
                 held: dict[str, int]) -> None:
    """GRANT_HOLD_ONE_USE: each targeted offer a hold names takes one use of the card's
    grant of it, so the grant must have a use that no open hold has taken (`held`: open
    holds' uses per offer). offer_used otherwise, also for an offer the card has no grant
    of (used up, replaced or past its last day: the store priced on an older copy). Without
    a kept engine state (a ledger given no programs) the books alone judge: not checked."""
    if terms is None:
        return
    for offer in request.grants:
        left = terms.grant_uses.get(offer, 0) - held.get(offer, 0)
        if left < 1:
            raise HoldRefused("offer_used", f"card {request.card}: offer {offer} has no use"
                              " left that no other sale holds")


def check_newer_tap(request: HoldRequest, highest: int | None) -> None:
    """A hold carrying a tap's SUN read counter is placed only if the counter is above the
    highest the card has had accepted (by any store's hold or posted transaction): else the
    tap was used before, here or elsewhere (a clone, or a read replayed)."""
    if request.sun_counter is not None and highest is not None and (
            request.sun_counter <= highest):
        raise HoldRefused(
            "card_replayed",
            f"card {request.card}: SUN read counter {request.sun_counter} is not above"
            f" {highest}, the highest accepted",
        )


def check_voidable(hold_id: str, status: str) -> None:
    """Any hold may be voided (again) but one that settlement posted."""
    if status == STATUS_POSTED:
        raise HoldRefused("hold_posted", f"hold {hold_id} was posted by settlement")


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
    # A hold of value only holds no points: a sale naming it redeems none (a gateway that
    # redeems points online holds them, gateway/ledger_holds.py).
    redeemed = txn.redeem_points or 0
    if redeemed > hold.points:
        raise BatchInvalid(
            "hold_exceeded",
            f"{where} holds {hold.points} points, the sale redeems {redeemed}",
        )
    return HoldPosting(
        hold.hold_id,
        txn.txn_id,
        txn.card_value_minor,
        hold.amount_minor - txn.card_value_minor,
        late=hold.status == STATUS_EXPIRED,
        posted_points=redeemed,
        released_points=hold.points - redeemed,
        holds_points=hold.holds_points,
    )
