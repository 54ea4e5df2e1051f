"""Authoritative card state at the gateway: business rules, authorization and holds (pure).

The terminal computes points, bonus and refund reversals with `protocol.rules`; the gateway
computes them again here and refuses a record that disagrees (`rule_mismatch`). Authorization
places a hold on the value it approves, so two terminals cannot both spend the same balance;
the hold is released when the transaction carrying its auth id is applied, or when it
expires after `hold_ttl_s` (HOLD_TTL_S unless configured).

A local hold may also stand for a hold at the ledger (`mark_ledger_hold`, see
gateway/ledger_holds.py). Every such hold ends in exactly one of two places:

- in the record that uses it: `apply` writes the ledger hold id into the record's fields
  under LEDGER_HOLD_FIELD (the store keeps the fields, and settlement names the hold), when
  the record is an online purchase of the same card taking at most the held value;
- in `lapsed` (expired, released, or taken by a record that cannot post it), for the
  gateway's sweep to void at the ledger.

Expiry and `apply` both run under `lock`, so a hold voided as lapsed is never named by a
record, and a record arriving after its hold lapsed settles without one.

Offline and stand-in sales (auth modes 2 and 3) are never refused for value after the fact
(the sale happened): an overdraft is counted as exposure, per card and per terminal.

Auth ids are `a{epoch}-{n}`: `auth_epoch` is the gateway's durable start count, so an id is
never given twice, even across restarts (the ledger hold id is built from it).

All methods are called with `lock` held by the caller's stage (ingest or authorize).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

from gateway.card_auth import CardAuthenticator
from protocol import rules, txn
from protocol.errors import ProtocolError, ValidationError
from protocol.reasons import (
    AMOUNT_INVALID,
    CARD_BLOCKED,
    CARD_EXISTS,
    CARD_UNKNOWN,
    CURRENCY_MISMATCH,
    INSUFFICIENT_VALUE,
    KIND_UNKNOWN,
    REFUND_UNKNOWN_ORIGINAL,
    RULE_MISMATCH,
)

HOLD_TTL_S = 120
HOLDS_MAX = 100_000
# Purchases stay refundable this long after their own time (the program engine's default
# refund window too); older ones are forgotten, so memory is bounded by time, not by history.
REFUND_WINDOW_S = 90 * 24 * 3600
LEDGER_HOLD_FIELD = "ledger_hold_id"
"""Key the gateway adds to an applied record's stored fields: the ledger hold it posts."""


class Hold:
    __slots__ = ("card", "value_minor", "expires_s", "issue", "ledger_hold_id")

    def __init__(self, card: str, value_minor: int, expires_s: float, issue: bool) -> None:
        self.card = card
        self.value_minor = value_minor
        self.expires_s = expires_s
        self.issue = issue
        self.ledger_hold_id: str | None = None  # the ledger holds this value too


class CardBook:
    def __init__(self, programs: dict[str, dict[str, Any]],
                 cards: dict[str, dict[str, Any]] | None = None,
                 authenticator: CardAuthenticator | None = None,
                 hotlist: set[str] | None = None,
                 lookup: Callable[[str], dict[str, Any] | None] | None = None,
                 hold_ttl_s: float = HOLD_TTL_S, auth_epoch: int = 0) -> None:
        self.programs = programs
        self.hold_ttl_s = hold_ttl_s
        self.auth_epoch = auth_epoch
        # Cards registered centrally (personalized at a technician's desk) that this store
        # has not seen yet: asked of the ledger once, then kept here.
        self.lookup = lookup
        self.authenticator = authenticator or CardAuthenticator(None)
        self.hotlist: set[str] = set(hotlist or ())
        self.hotlist_offline = 0  # offline sales of a blocked card the terminal did not know of
        self._auth_counters: dict[str, int] = {}  # SUN counters seen by authorization
        self.sun_verified = 0  # taps whose SUN verified (authorizations and records)
        self.cards: dict[str, dict[str, Any]] = dict(cards or {})
        self.purchases: dict[str, dict[str, Any]] = {}
        self.holds: dict[str, Hold] = {}
        self.lapsed: list[str] = []  # ledger hold ids whose local hold ended unused: to void
        self.lock = threading.Lock()
        self._hold_ids = itertools.count(1)
        self.dirty: set[str] = set()
        # Value spent offline beyond what the card held: the merchant's risk, per card and
        # per terminal, reported (the sale happened; refusing the record would lose it).
        self.exposure_by_card: dict[str, int] = {}
        self.exposure_by_terminal: dict[str, int] = {}

    # -- rebuilding from the store --------------------------------------------------------
    def replay_purchase(self, fields: dict[str, Any]) -> None:
        """Re-learn purchases and their refunds from stored records after a restart."""
        kind = fields["kind"]
        if kind == txn.KIND_PURCHASE:
            self._remember_purchase(fields)
        elif kind == txn.KIND_REFUND and fields.get("ref") in self.purchases:
            self._count_refund(fields)

    def _remember_purchase(self, fields: dict[str, Any]) -> None:
        self.purchases[txn.txn_id(fields["terminal"], fields["seq"])] = {
            "card": fields["card"],
            "time": fields["time"],
            "amount_minor": fields["amount_minor"],
            "card_value_minor": fields["card_value_minor"],
            "points": fields["points"],
            "refunded": {"amount_minor": 0, "card_value_minor": 0, "points": 0},
        }
        self._forget_purchases_before(fields["time"] - REFUND_WINDOW_S)

    def _forget_purchases_before(self, oldest_s: int) -> None:
        """Drop purchases past the refund window, oldest first (dicts keep arrival order)."""
        while self.purchases:
            first_id = next(iter(self.purchases))
            if self.purchases[first_id]["time"] >= oldest_s:
                return
            del self.purchases[first_id]

    def _count_refund(self, fields: dict[str, Any]) -> None:
        refunded = self.purchases[fields["ref"]]["refunded"]
        refunded["amount_minor"] += fields["amount_minor"]
        refunded["card_value_minor"] += fields["card_value_minor"]
        refunded["points"] += fields["points"]

    # -- ingest: check then apply ---------------------------------------------------------
    def _known(self, card: str) -> dict[str, Any] | None:
        state = self.cards.get(card)
        if state is None and self.lookup is not None:
            found = self.lookup(card)
            if found is not None:
                state = self.cards[card] = {
                    "program": found["program"], "currency": found["currency"],
                    "value_minor": found["value_minor"], "points": found["points"],
                    "sun_counter": None,
                }
                self.dirty.add(card)
        return state

    def _card(self, card: str) -> dict[str, Any]:
        state = self._known(card)
        if state is None:
            raise ValidationError(CARD_UNKNOWN, card)
        return state

    def _original(self, fields: dict[str, Any]) -> dict[str, Any]:
        original = self.purchases.get(fields.get("ref") or "")
        if original is None or original["card"] != fields["card"]:
            raise ValidationError(REFUND_UNKNOWN_ORIGINAL, str(fields.get("ref")))
        return original

    def _identify(self, fields: dict[str, Any], last_seen: int | None) -> int | None:
        """Blocked? Genuine (SUN)? A new tap? Returns the tap's SUN read counter, if any."""
        if fields["card"] in self.hotlist and fields.get("auth_mode") != txn.AUTH_OFFLINE:
            raise ValidationError(CARD_BLOCKED, fields["card"])
        counter = self.authenticator.read_counter(fields)
        self.authenticator.check_newer(last_seen, counter)
        if counter is not None:
            self.sun_verified += 1
        return counter

    def check(self, fields: dict[str, Any]) -> int | None:
        """Raise ValidationError with the reason if the record breaks a business rule.

        Returns the SUN read counter to hand to `apply` (None without card keys).
        """
        kind = fields["kind"]
        known = self._known(fields["card"])
        counter = self._identify(fields, known.get("sun_counter") if known else None)
        if kind == txn.KIND_ISSUE:
            self._check_issue(fields)
            return counter
        state = self._card(fields["card"])
        if fields["currency"] != state["currency"]:
            raise ValidationError(CURRENCY_MISMATCH, fields["card"])
        prog = rules.program(self.programs, state["program"])
        if kind == txn.KIND_TOPUP:
            if not prog["topup_allowed"]:
                raise ValidationError(AMOUNT_INVALID, "program takes no top-ups")
            if fields["bonus_minor"] != rules.topup_bonus(prog, fields["amount_minor"]):
                raise ValidationError(RULE_MISMATCH, "bonus")
        elif kind == txn.KIND_PURCHASE:
            if fields["card_value_minor"] and not prog["holds_value"]:
                raise ValidationError(AMOUNT_INVALID, "program holds no value")
            if fields["points"] != rules.points_earned(prog, fields["amount_minor"]):
                raise ValidationError(RULE_MISMATCH, "points")
            own_hold = self.holds.get(fields.get("auth_id") or "")
            available = state["value_minor"] - self._held(fields["card"])
            if own_hold is not None and own_hold.card == fields["card"]:
                available += own_hold.value_minor
            if fields["auth_mode"] == txn.AUTH_ONLINE and fields["card_value_minor"] > available:
                raise ValidationError(INSUFFICIENT_VALUE, fields["card"])
        elif kind == txn.KIND_REFUND:
            original = self._original(fields)
            expected = rules.refund_reversal(
                original, original["refunded"], fields["amount_minor"]
            )
            if (fields["card_value_minor"], fields["points"]) != expected:
                raise ValidationError(RULE_MISMATCH, "refund reversal")
        else:
            raise ValidationError(KIND_UNKNOWN, str(kind))
        return counter

    def _check_issue(self, fields: dict[str, Any]) -> None:
        if fields["card"] in self.cards:
            raise ValidationError(CARD_EXISTS, fields["card"])
        prog = rules.program(self.programs, fields.get("program"))
        if fields["currency"] != prog["currency"]:
            raise ValidationError(CURRENCY_MISMATCH, "program currency")
        if fields["amount_minor"] and not prog["holds_value"]:
            raise ValidationError(AMOUNT_INVALID, "program holds no value")

    def apply(self, fields: dict[str, Any], sun_counter: int | None = None) -> None:
        """Change the card state for a record that passed `check` (which gave sun_counter).

        A record that uses a ledger hold gets LEDGER_HOLD_FIELD added to `fields`: the ingest
        stage stores the fields after this call, and settlement reads it from the store.
        """
        kind = fields["kind"]
        card = fields["card"]
        if kind == txn.KIND_ISSUE:
            self.cards[card] = {
                "program": fields["program"],
                "currency": fields["currency"],
                "value_minor": 0,
                "points": 0,
            }
        state = self.cards[card]
        if sun_counter is not None:
            state["sun_counter"] = sun_counter
        if card in self.hotlist:
            self.hotlist_offline += 1
        if kind == txn.KIND_PURCHASE and fields["auth_mode"] != txn.AUTH_ONLINE:
            # Offline and stand-in sales happened: an overdraft is exposure, not a refusal.
            self._note_exposure(fields, state["value_minor"])
        if kind in (txn.KIND_ISSUE, txn.KIND_TOPUP, txn.KIND_REFUND):
            state["value_minor"] += fields["card_value_minor"]
        else:
            state["value_minor"] -= fields["card_value_minor"]
        if kind == txn.KIND_PURCHASE:
            state["points"] += fields["points"]
            self._remember_purchase(fields)
        elif kind == txn.KIND_REFUND:
            state["points"] -= fields["points"]
            self._count_refund(fields)
        self._use_hold(fields)
        self.dirty.add(card)

    def _use_hold(self, fields: dict[str, Any]) -> None:
        """Release the record's hold; note in its fields the ledger hold it posts, if any."""
        hold = self.holds.pop(fields.get("auth_id") or "", None)
        if hold is None or hold.ledger_hold_id is None:
            return
        if (fields["kind"] == txn.KIND_PURCHASE and fields["auth_mode"] == txn.AUTH_ONLINE
                and hold.card == fields["card"]
                and 0 < fields["card_value_minor"] <= hold.value_minor):
            fields[LEDGER_HOLD_FIELD] = hold.ledger_hold_id
        else:
            self.lapsed.append(hold.ledger_hold_id)

    def _note_exposure(self, fields: dict[str, Any], value_before: int) -> None:
        overdraft = fields["card_value_minor"] - max(0, value_before)
        if overdraft <= 0:
            return
        card, terminal = fields["card"], fields["terminal"]
        self.exposure_by_card[card] = self.exposure_by_card.get(card, 0) + overdraft
        self.exposure_by_terminal[terminal] = self.exposure_by_terminal.get(terminal, 0) + overdraft

    def take_dirty(self) -> dict[str, dict[str, Any]]:
        changed = {card: dict(self.cards[card]) for card in self.dirty}
        self.dirty = set()
        return changed

    # -- authorization --------------------------------------------------------------------
    def _held(self, card: str) -> int:
        return sum(h.value_minor for h in self.holds.values() if h.card == card)

    def expire_holds(self, now_s: float) -> int:
        expired = [key for key, hold in self.holds.items() if hold.expires_s <= now_s]
        for key in expired:
            self.release(key)
        return len(expired)

    def release(self, auth_id: str) -> None:
        """Drop a hold no record will use (declined after all, or expired)."""
        hold = self.holds.pop(auth_id, None)
        if hold is not None and hold.ledger_hold_id is not None:
            self.lapsed.append(hold.ledger_hold_id)

    def mark_ledger_hold(self, auth_id: str, ledger_hold_id: str) -> bool:
        """Note that the ledger holds this authorization's value; False if the hold is gone."""
        hold = self.holds.get(auth_id)
        if hold is None:
            return False
        hold.ledger_hold_id = ledger_hold_id
        return True

    def take_lapsed(self) -> list[str]:
        """Ledger hold ids to void: their local holds ended without a record posting them."""
        lapsed, self.lapsed = self.lapsed, []
        return lapsed

    def _place_hold(self, card: str, value_minor: int, now_s: float, issue: bool) -> str:
        if len(self.holds) >= HOLDS_MAX:
            self.expire_holds(now_s)
        auth_id = f"a{self.auth_epoch}-{next(self._hold_ids)}"
        self.holds[auth_id] = Hold(card, value_minor, now_s + self.hold_ttl_s, issue)
        return auth_id

    def authorize(self, request: dict[str, Any], now_s: float) -> dict[str, Any]:
        """Decide a request; returns response fields (approved or declined with a reason)."""
        try:
            return self._decide(request, now_s)
        except ProtocolError as error:
            return {"approved": False, "reason": error.reason}

    def _decide(self, request: dict[str, Any], now_s: float) -> dict[str, Any]:
        kind = request["kind"]
        card = request["card"]
        known = self._known(card)
        seen = [c for c in (known.get("sun_counter") if known else None,
                            self._auth_counters.get(card)) if c is not None]
        counter = self._identify(dict(request, auth_mode=txn.AUTH_ONLINE),
                                 max(seen) if seen else None)
        if counter is not None:
            self._auth_counters[card] = counter
        if kind == txn.KIND_ISSUE:
            issuing = any(h.issue and h.card == card for h in self.holds.values())
            if issuing:
                raise ValidationError(CARD_EXISTS, card)
            self._check_issue(dict(request, points=0, bonus_minor=0))
            return {"approved": True, "program": request["program"],
                    "auth_id": self._place_hold(card, 0, now_s, True)}
        state = self._card(card)
        if request["currency"] != state["currency"]:
            raise ValidationError(CURRENCY_MISMATCH, card)
        prog = rules.program(self.programs, state["program"])
        response: dict[str, Any] = {"approved": True, "program": state["program"],
                                    "currency": state["currency"]}
        if kind == txn.KIND_PURCHASE:
            wanted = request.get("card_value_minor", 0)
            if wanted and not prog["holds_value"]:
                raise ValidationError(AMOUNT_INVALID, "program holds no value")
            if wanted > state["value_minor"] - self._held(card):
                raise ValidationError(INSUFFICIENT_VALUE, card)
            response["auth_id"] = self._place_hold(card, wanted, now_s, False)
        elif kind == txn.KIND_TOPUP:
            if not prog["topup_allowed"]:
                raise ValidationError(AMOUNT_INVALID, "program takes no top-ups")
        elif kind == txn.KIND_REFUND:
            original = self._original(dict(request))
            value, points = rules.refund_reversal(
                original, original["refunded"], request["amount_minor"]
            )
            response["card_value_minor"] = value
            response["points"] = points
        elif kind != txn.KIND_INQUIRY:
            raise ValidationError(KIND_UNKNOWN, str(kind))
        response["value_minor"] = state["value_minor"] - self._held(card)
        response["points_balance"] = state["points"]
        return response
