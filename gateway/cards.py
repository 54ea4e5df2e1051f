"""Authoritative card state at the gateway: the program engine, authorization and holds (pure).

Every card carries the program engine's state (protocol/engine.py). The gateway answers an
authorization by running the engine on a copy of that state (a preview: nothing changes),
and applies each record a terminal sends by running the engine again on the real state. The
effects of that run (its balanced legs, points, bonus, discount, expiry) are what settles at
the ledger: the record's fields say what happened at the counter, the engine says what it
means for the books.

What the gateway insists on (`rule_mismatch` otherwise):

- an online record carries exactly what the gateway answered when it approved it (the
  preview kept with its hold: card part, bonus, points, discount, points redeemed, program
  version); an online record naming no authorization of this gateway must be what the
  engine computes now. One naming an authorization whose answer is gone (the gateway
  restarted, or the record came after its hold expired) is taken as it happened, like an
  offline one, and counted (`late_online`): the terminal told the customer what it said;
- an offline or stand-in purchase happened at the counter: the engine takes its discount as
  given and lets the card's value go below zero (`happened`); an overdraft is counted as
  exposure per card and per terminal; points are the engine's, whatever the terminal showed.

Authorization places a hold on the value it approves, so two terminals cannot both spend the
same balance; the hold is released when the transaction carrying its auth id is applied, or
when it expires after `hold_ttl_s` (HOLD_TTL_S unless configured).

A local hold may also stand for a hold at the ledger (`mark_ledger_hold`, see
gateway/ledger_holds.py). Every such hold ends in exactly one of two places:

- in the record that uses it: `apply` writes the ledger hold id into the record's fields
  under LEDGER_HOLD_FIELD (the store keeps the fields, and settlement names the hold), when
  the record is an online purchase or cash-out of the same card taking at most the held
  value;
- in `lapsed` (expired, released, or taken by a record that cannot post it), for the
  gateway's sweep to void at the ledger.

Expiry and `apply` both run under `lock`, so a hold voided as lapsed is never named by a
record, and a record arriving after its hold lapsed settles without one.

Days: the engine counts whole UTC days (`day_of`). A record's day is its own time's day, but
never earlier than the card's day (an offline record may arrive after later ones): the
engine sees time pass in the order the gateway applies records.

Auth ids are `a{epoch}-{n}`: `auth_epoch` is the gateway's durable start count, so an id is
never given twice, even across restarts (the ledger hold id is built from it).

All methods are called with `lock` held by the caller's stage (ingest or authorize).
"""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable
from typing import Any

from gateway.card_auth import CardAuthenticator
from protocol import engine, engine_adopt, engine_offline, txn
from protocol.errors import ProtocolError, ValidationError
from protocol.reasons import (
    CARD_BLOCKED,
    CARD_EXISTS,
    CARD_UNKNOWN,
    CURRENCY_MISMATCH,
    INSUFFICIENT_VALUE,
    KIND_UNKNOWN,
    PROGRAM_UNKNOWN,
    RULE_MISMATCH,
)

HOLD_TTL_S = 120
HOLDS_MAX = 100_000
DAY_S = 86_400
LEDGER_HOLD_FIELD = "ledger_hold_id"
"""Key the gateway adds to an applied record's stored fields: the ledger hold it posts."""
EFFECTS_FIELD = "effects"
"""Key the gateway adds to an applied record's stored fields: what the engine did (settled)."""
AUTH_ID_PATTERN = re.compile(r"a([0-9]{1,9})-([0-9]{1,18})")
PREVIEW_ID_PREFIX = "auth:"  # sale ids no transaction id can take (ids have no ':')
PREVIEW_ID = PREVIEW_ID_PREFIX + "preview"

# The amounts a terminal shows at the counter, as the record and the engine name them.
COUNTER_FIELDS = ("card_value_minor", "bonus_minor", "points", "discount_minor",
                  "redeem_points", "redeem_minor", "version")
SETTLED_EFFECTS = ("card_value_minor", "bonus_minor", "points", "discount_minor",
                   "redeem_points", "version", "legs", "overdraft_minor")


def day_of(time_s: float) -> int:
    return int(time_s) // DAY_S


class Hold:
    __slots__ = ("card", "value_minor", "expires_s", "issue", "ledger_hold_id", "expect", "op")

    def __init__(self, card: str, value_minor: int, expires_s: float, issue: bool,
                 expect: dict[str, int] | None = None, op: dict[str, Any] | None = None) -> None:
        self.card = card
        self.value_minor = value_minor
        self.expires_s = expires_s
        self.issue = issue
        self.ledger_hold_id: str | None = None  # the ledger holds this value too
        self.expect = expect  # what the gateway answered: the record must carry the same
        self.op = op  # the engine operation approved, until its record arrives


class Prepared:
    """What `check` computed for a record, for `apply` to keep: nothing changed yet."""

    __slots__ = ("counter", "state", "effects")

    def __init__(self, counter: int | None, state: dict[str, Any],
                 effects: dict[str, Any]) -> None:
        self.counter = counter
        self.state = state
        self.effects = effects


def counter_amounts(kind: int, effects: dict[str, Any]) -> dict[str, int]:
    """The engine's effects in the record's terms (protocol.txn fields)."""
    version = effects["version"]
    if kind == txn.KIND_ISSUE:
        value = effects.get("value_minor", 0)
        return {"card_value_minor": value, "bonus_minor": 0, "points": 0, "discount_minor": 0,
                "redeem_points": 0, "redeem_minor": 0, "version": version}
    if kind == txn.KIND_TOPUP:
        bonus = effects["bonus_minor"]
        return {"card_value_minor": effects["amount_minor"] + bonus, "bonus_minor": bonus,
                "points": 0, "discount_minor": 0, "redeem_points": 0, "redeem_minor": 0,
                "version": version}
    if kind == txn.KIND_PURCHASE:
        return {"card_value_minor": effects["card_minor"], "bonus_minor": 0,
                "points": effects["points_earned"], "discount_minor": effects["discount_minor"],
                "redeem_points": effects["points_redeemed"],
                "redeem_minor": effects["redeem_minor"], "version": version}
    if kind == txn.KIND_CASHOUT:
        return {"card_value_minor": effects["amount_minor"], "bonus_minor": 0, "points": 0,
                "discount_minor": 0, "redeem_points": 0, "redeem_minor": 0, "version": version}
    assert kind == txn.KIND_REFUND
    return {"card_value_minor": effects["card_minor"], "bonus_minor": effects["bonus_minor"],
            "points": effects["points_reversed"], "discount_minor": 0,
            "redeem_points": effects["points_restored"],
            "redeem_minor": effects["redeem_minor"], "version": version}


def _add_snapshot(response: dict[str, Any], state: dict[str, Any], program: dict[str, Any],
                  day: int) -> None:
    """What a terminal keeps for offline quotes: the card's tier (left out when the program
    has none) and today's discount."""
    snapshot = engine_offline.snapshot(state, program, day)
    if snapshot["tier"] is not None:
        response["tier"] = snapshot["tier"]
    response["discount_pct"] = snapshot["discount_pct"]


def record_amounts(fields: dict[str, Any]) -> dict[str, int]:
    return {key: fields.get(key) or 0 for key in COUNTER_FIELDS}


class CardBook:
    def __init__(self, programs: dict[str, dict[str, Any]],
                 cards: dict[str, dict[str, Any]] | None = None,
                 authenticator: CardAuthenticator | None = None,
                 hotlist: set[str] | None = None,
                 lookup: Callable[[str], dict[str, Any] | None] | None = None,
                 hold_ttl_s: float = HOLD_TTL_S, auth_epoch: int = 0) -> None:
        self.programs = programs  # validated programs (protocol.programs), by id
        self.hold_ttl_s = hold_ttl_s
        self.auth_epoch = auth_epoch
        # Cards registered centrally (personalized at a technician's desk, or issued at
        # another store) that this store has not seen yet: asked of the ledger once, then
        # kept here with the balances the ledger gave (engine_adopt).
        self.lookup = lookup
        self.authenticator = authenticator or CardAuthenticator(None)
        self.hotlist: set[str] = set(hotlist or ())
        self.hotlist_offline = 0  # offline sales of a blocked card the terminal did not know of
        self._auth_counters: dict[str, int] = {}  # SUN counters seen by authorization
        self.sun_verified = 0  # taps whose SUN verified (authorizations and records)
        # card -> {"program", "currency", "merchant", "value_minor", "points", "sun_counter",
        # "state": the engine's state}; value and points are the engine's, kept for the store.
        self.cards: dict[str, dict[str, Any]] = dict(cards or {})
        self.holds: dict[str, Hold] = {}
        # txn id a request said its sale would take -> the auth id answering it: a record
        # ends the hold placed for its seq even when it does not name that auth id (the
        # terminal gave up waiting and sold offline, and the answer came late).
        self._hold_for_sale: dict[str, str] = {}
        self.lapsed: list[str] = []  # ledger hold ids whose local hold ended unused: to void
        # Auth ids given before this gateway's last restart whose records have now arrived
        # (refused, or taken without their hold): their ledger holds are voided by id.
        self.orphaned: list[str] = []
        self.lock = threading.Lock()
        self._hold_ids = itertools.count(1)
        self._holds_placed = 0
        self.dirty: set[str] = set()
        # Per dirty card, the sales that changed since the store last took them: sale id ->
        # the sale, or None when the card forgot it. The store writes only these (a busy
        # card remembers many sales; its other state is small).
        self.dirty_sales: dict[str, dict[str, dict[str, Any] | None]] = {}
        # Value spent offline beyond what the card held: the merchant's risk, per card and
        # per terminal, reported (the sale happened; refusing the record would lose it).
        self.exposure_by_card: dict[str, int] = {}
        self.exposure_by_terminal: dict[str, int] = {}
        # The signed offline limits terminals were given (FleetConfig): an offline record
        # beyond the per-purchase limit happened all the same, and is counted per terminal
        # (a terminal that does not keep its limits is broken or tampered with).
        self.offline_limits: dict[str, int] | None = None
        self.offline_over_limit: dict[str, int] = {}
        self.recomputed = 0  # records whose points the engine counted otherwise
        # Per card, the points the engine gave minus what the terminals' records showed
        # (offline quotes on a stale tier; online sales applied in another order than they
        # were authorized): the books follow the engine, this says by how much.
        self.points_recomputed: dict[str, int] = {}
        self.preview_missing = 0  # online records checked without their authorization
        self.late_online = 0  # online records whose authorization's answer was gone

    # -- programs and cards ---------------------------------------------------------------
    def _program(self, program_id: str | None) -> dict[str, Any]:
        program = self.programs.get(program_id or "")
        if program is None:
            raise ValidationError(PROGRAM_UNKNOWN, str(program_id))
        return program

    def _known(self, card: str, now_s: float) -> dict[str, Any] | None:
        entry = self.cards.get(card)
        if entry is None and self.lookup is not None:
            found = self.lookup(card)
            program = self.programs.get(found["program"] or "") if found else None
            if found is not None and program is not None:
                state = engine_adopt.adopt(card, program, day_of(now_s),
                                           found["value_minor"], found["points"])
                entry = self.cards[card] = {
                    "program": found["program"], "currency": found["currency"],
                    "merchant": None, "sun_counter": None, "state": {"sales": {}},
                }
                self._keep_state(card, entry, state)
                self._summarize(entry, day_of(now_s))
                self.dirty.add(card)
        return entry

    def _card(self, card: str, now_s: float) -> dict[str, Any]:
        entry = self._known(card, now_s)
        if entry is None:
            raise ValidationError(CARD_UNKNOWN, card)
        return entry

    def _summarize(self, entry: dict[str, Any], day: int) -> None:
        summary = engine.summary(entry["state"], self._program(entry["program"]), day)
        entry["value_minor"] = summary["value_minor"]
        entry["points"] = summary["points"]

    @staticmethod
    def _day(entry: dict[str, Any] | None, time_s: float) -> int:
        day = day_of(time_s)
        return day if entry is None else max(day, entry["state"]["day"])

    def _identify(self, fields: dict[str, Any], last_seen: int | None) -> int | None:
        """Blocked? Genuine (SUN)? A new tap? Returns the tap's SUN read counter, if any."""
        if fields["card"] in self.hotlist and fields.get("auth_mode") != txn.AUTH_OFFLINE:
            raise ValidationError(CARD_BLOCKED, fields["card"])
        counter = self.authenticator.read_counter(fields)
        self.authenticator.check_newer(last_seen, counter)
        if counter is not None:
            self.sun_verified += 1
        return counter

    @staticmethod
    def _run(state: dict[str, Any] | None, program: dict[str, Any], op: dict[str, Any],
             day: int) -> tuple[dict[str, Any], dict[str, Any]]:
        new_state, effects = engine.apply(state, program, op, day)
        if "declined" in effects:
            raise ValidationError(effects["declined"], str(op.get("op")))
        return new_state, effects

    @staticmethod
    def _op(kind: int, fields: dict[str, Any], sale_id: str,
            asked: bool = False) -> dict[str, Any]:
        """The engine operation a record (or, `asked`, an authorization request) describes.

        In a request, card_value_minor > 0 asks to pay from the card (a top-up so asked is
        declined: topup_from_own_card), and a refund of amount 0 is a void: all that is left.
        """
        amount = fields["amount_minor"]
        if kind == txn.KIND_ISSUE:
            return {"op": "issue", "id": sale_id, "card": fields["card"], "value_minor": amount}
        if kind == txn.KIND_TOPUP:
            pay = "card" if asked and fields.get("card_value_minor") else "other"
            return {"op": "topup", "id": sale_id, "amount_minor": amount, "pay": pay}
        if kind == txn.KIND_PURCHASE:
            pay = "card" if fields.get("card_value_minor") else "other"
            return {"op": "purchase", "id": sale_id, "amount_minor": amount, "pay": pay,
                    "redeem_points": fields.get("redeem_points") or 0}
        if kind == txn.KIND_REFUND:
            if asked and not amount:
                return {"op": "void", "id": sale_id, "of": fields.get("ref") or ""}
            return {"op": "refund", "id": sale_id, "of": fields.get("ref") or "",
                    "amount_minor": amount}
        if kind == txn.KIND_CASHOUT:
            return {"op": "cashout", "id": sale_id, "amount_minor": amount}
        raise ValidationError(KIND_UNKNOWN, str(kind))

    # -- ingest: check then apply ---------------------------------------------------------
    def check(self, fields: dict[str, Any]) -> Prepared:
        """Run the engine for a record; raise ValidationError with the reason if it breaks a
        rule. Nothing changes until `apply` is given what this returns."""
        kind = fields["kind"]
        card = fields["card"]
        known = self._known(card, fields["time"])
        counter = self._identify(fields, known.get("sun_counter") if known else None)
        sale_id = txn.txn_id(fields["terminal"], fields["seq"])
        if kind == txn.KIND_ISSUE:
            if known is not None:
                raise ValidationError(CARD_EXISTS, card)
            program = self._program(fields.get("program"))
            if fields["currency"] != program["currency"]:
                raise ValidationError(CURRENCY_MISMATCH, "program currency")
            state, effects = self._run(None, program, self._op(kind, fields, sale_id),
                                       day_of(fields["time"]))
            self._compare(fields, kind, effects)
            return Prepared(counter, state, effects)
        entry = self._card(card, fields["time"])
        if fields["currency"] != entry["currency"]:
            raise ValidationError(CURRENCY_MISMATCH, card)
        program = self._program(entry["program"])
        op = self._op(kind, fields, sale_id)
        day = self._day(entry, fields["time"])
        online = fields["auth_mode"] == txn.AUTH_ONLINE
        approved = online and self._expected(fields) is not None
        late = online and not approved and self._issued_here(fields.get("auth_id"))
        if late:
            # Approved by this gateway, but its answer is gone (a restart, or the record
            # came after its hold expired): it happened as the terminal was told.
            self.late_online += 1
        if fields["auth_mode"] == txn.AUTH_OFFLINE:
            self._check_offline_limit(fields)
        taking = kind in (txn.KIND_PURCHASE, txn.KIND_REFUND, txn.KIND_CASHOUT)
        if taking and (not online or approved or late):
            # It happened at the counter: offline or stand-in, or online as the gateway
            # answered (a record it counted on may still be on its way from another
            # counter, or an offline one arrived in between). A purchase's discount stands;
            # the value may go below zero, counted as exposure.
            op["happened"] = True
            if kind == txn.KIND_PURCHASE:
                op["discount_minor"] = fields.get("discount_minor") or 0
        state, effects = self._run(entry["state"], program, op, day)
        if online and not late:
            self._compare(fields, kind, effects)
        if (kind == txn.KIND_PURCHASE and online and not approved and not late
                and fields["card_value_minor"] > self._available(card, fields)):
            raise ValidationError(INSUFFICIENT_VALUE, card)
        return Prepared(counter, state, effects)

    def _check_offline_limit(self, fields: dict[str, Any]) -> None:
        limits = self.offline_limits
        if limits and fields["card_value_minor"] > limits.get("txn_minor_max", 0):
            terminal = fields["terminal"]
            self.offline_over_limit[terminal] = self.offline_over_limit.get(terminal, 0) + 1

    def _issued_here(self, auth_id: str | None) -> bool:
        """Whether this gateway gave `auth_id` (in this run, or before a restart)."""
        match = AUTH_ID_PATTERN.fullmatch(auth_id or "")
        if match is None:
            return False
        epoch, number = int(match.group(1)), int(match.group(2))
        return epoch < self.auth_epoch or (epoch == self.auth_epoch
                                           and number <= self._holds_placed)

    def _expected(self, fields: dict[str, Any]) -> dict[str, int] | None:
        hold = self.holds.get(fields.get("auth_id") or "")
        if hold is None or hold.card != fields["card"]:
            return None
        return hold.expect

    def _compare(self, fields: dict[str, Any], kind: int, effects: dict[str, Any]) -> None:
        """An online record must carry what the gateway answered (or computes now)."""
        expected = self._expected(fields)
        if expected is None:
            self.preview_missing += 1
            expected = counter_amounts(kind, effects)
        got = record_amounts(fields)
        if fields.get("version") is None:
            got["version"] = expected["version"]  # a record may leave the version out
        if got != expected:
            wrong = sorted(key for key in expected if got[key] != expected[key])
            raise ValidationError(RULE_MISMATCH, ", ".join(wrong))

    def _available(self, card: str, fields: dict[str, Any]) -> int:
        available = self.cards[card]["value_minor"] - self._held(card)
        own_hold = self.holds.get(fields.get("auth_id") or "")
        if own_hold is not None and own_hold.card == card:
            available += own_hold.value_minor
        return available

    def apply(self, fields: dict[str, Any], prepared: Prepared) -> None:
        """Keep the engine's result for a record that passed `check`.

        Adds to `fields` (the ingest stage stores the fields after this call, and settlement
        reads them): EFFECTS_FIELD, what settles; LEDGER_HOLD_FIELD when it uses a ledger hold.
        """
        kind = fields["kind"]
        card = fields["card"]
        if kind == txn.KIND_ISSUE:
            self.cards[card] = {"program": fields["program"], "currency": fields["currency"],
                                "merchant": fields["merchant"], "sun_counter": None}
        entry = self.cards[card]
        self._keep_state(card, entry, prepared.state, prepared.effects["sales_changed"])
        entry["merchant"] = fields["merchant"]
        if prepared.counter is not None:
            entry["sun_counter"] = prepared.counter
        if card in self.hotlist:
            self.hotlist_offline += 1
        effects = prepared.effects
        settled = counter_amounts(kind, effects)
        settled["legs"] = effects["legs"]
        if settled["points"] != fields["points"]:
            self.recomputed += 1
            sign = -1 if kind == txn.KIND_REFUND else 1
            self.points_recomputed[card] = (self.points_recomputed.get(card, 0)
                                            + sign * (settled["points"] - fields["points"]))
        overdraft = effects.get("overdraft_minor", 0)
        if overdraft:
            settled["overdraft_minor"] = overdraft
            self._note_exposure(card, fields["terminal"], overdraft)
        fields[EFFECTS_FIELD] = {key: settled[key] for key in SETTLED_EFFECTS if key in settled}
        self._summarize(entry, prepared.state["day"])
        self._use_hold(fields)
        self.dirty.add(card)

    def _use_hold(self, fields: dict[str, Any]) -> None:
        """Release the record's hold; note in its fields the ledger hold it posts, if any."""
        self._end_late_hold(fields)
        hold = self._pop_hold(fields.get("auth_id") or "")
        if hold is None:
            self._orphan(fields.get("auth_id"))
            return
        if hold.ledger_hold_id is None:
            return
        if (fields["kind"] in (txn.KIND_PURCHASE, txn.KIND_CASHOUT)
                and fields["auth_mode"] == txn.AUTH_ONLINE
                and hold.card == fields["card"]
                and 0 < fields["card_value_minor"] <= hold.value_minor):
            fields[LEDGER_HOLD_FIELD] = hold.ledger_hold_id
        else:
            self.lapsed.append(hold.ledger_hold_id)

    def _note_exposure(self, card: str, terminal: str, overdraft: int) -> None:
        self.exposure_by_card[card] = self.exposure_by_card.get(card, 0) + overdraft
        self.exposure_by_terminal[terminal] = self.exposure_by_terminal.get(terminal, 0) + overdraft

    def _keep_state(self, card: str, entry: dict[str, Any], state: dict[str, Any],
                    changed: list[str] | None = None) -> None:
        """Take the engine's new state for a card, noting which of its sales changed for
        the store: those the engine's effects name (`sales_changed`), else all of them."""
        sales = state["sales"]
        notes = self.dirty_sales.setdefault(card, {})
        for sale_id in sales if changed is None else changed:
            notes[sale_id] = sales.get(sale_id)  # None: the card forgot it
        entry["state"] = state
        self.dirty.add(card)

    def take_dirty(self) -> dict[str, dict[str, Any]]:
        """The changed cards for the store: each entry with "sales_changed", the sales to
        write (None: to delete)."""
        changed = {}
        for card in self.dirty:
            changed[card] = dict(self.cards[card],
                                 sales_changed=self.dirty_sales.pop(card, {}))
        self.dirty = set()
        return changed

    # -- time passing with no operation: expiry ---------------------------------------------
    def sweep(self, now_s: float) -> list[tuple[str, dict[str, Any]]]:
        """Let time pass on every card up to `now_s`; [(card, effects)] where it expired
        value or points (the caller writes those as expire records). Cards whose day is
        already later are left alone."""
        day = day_of(now_s)
        expired = []
        for card, entry in self.cards.items():
            program = self.programs.get(entry["program"])
            if program is None or entry["state"]["day"] >= day:
                continue
            state, effects = engine.apply(entry["state"], program, {"op": "tick"}, day)
            if "declined" in effects or not effects["legs"]:
                continue  # nothing expired: the next operation passes the same time itself
            self._keep_state(card, entry, state, effects["sales_changed"])
            self._summarize(entry, day)
            expired.append((card, effects))
        return expired

    # -- authorization --------------------------------------------------------------------
    def _held(self, card: str) -> int:
        return sum(h.value_minor for h in self.holds.values() if h.card == card)

    def expire_holds(self, now_s: float) -> int:
        expired = [key for key, hold in self.holds.items() if hold.expires_s <= now_s]
        for key in expired:
            self.release(key)
        return len(expired)

    def refused(self, fields: dict[str, Any]) -> None:
        """A record was refused at ingest: the hold its authorization placed ends now."""
        self._end_late_hold(fields)
        auth_id = fields.get("auth_id")
        if not isinstance(auth_id, str):
            return
        hold = self.holds.get(auth_id)
        if hold is None:
            self._orphan(auth_id)
        elif hold.card == fields.get("card"):  # a record ends only its own card's hold
            self.release(auth_id)

    def _orphan(self, auth_id: str | None) -> None:
        """An auth id of this gateway's from before its last restart, whose record came: its
        local hold died with the restart, and its ledger hold (if any) is to be voided."""
        match = AUTH_ID_PATTERN.fullmatch(auth_id or "")
        if (match is not None and self.lookup is not None
                and int(match.group(1)) < self.auth_epoch):
            self.orphaned.append(auth_id or "")

    def take_orphaned(self) -> list[str]:
        orphaned, self.orphaned = self.orphaned, []
        return orphaned

    def _end_late_hold(self, fields: dict[str, Any]) -> None:
        """A hold placed for this record's seq under another auth id ends with the record."""
        sale_id = txn.txn_id(fields["terminal"], fields["seq"])
        late = self._hold_for_sale.get(sale_id)
        if late is None or late == fields.get("auth_id"):
            return
        hold = self.holds.get(late)
        if hold is not None and hold.card == fields.get("card"):
            self.release(late)

    def _pop_hold(self, auth_id: str) -> Hold | None:
        hold = self.holds.pop(auth_id, None)
        if hold is not None and hold.op is not None and (
                self._hold_for_sale.get(hold.op["id"]) == auth_id):
            del self._hold_for_sale[hold.op["id"]]
        return hold

    def release(self, auth_id: str) -> None:
        """Drop a hold no record will use (declined after all, or expired)."""
        hold = self._pop_hold(auth_id)
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

    def _place_hold(self, card: str, value_minor: int, now_s: float, issue: bool,
                    expect: dict[str, int] | None = None,
                    op: dict[str, Any] | None = None) -> str:
        if len(self.holds) >= HOLDS_MAX:
            self.expire_holds(now_s)
        self._holds_placed = next(self._hold_ids)
        auth_id = f"a{self.auth_epoch}-{self._holds_placed}"
        self.holds[auth_id] = Hold(card, value_minor, now_s + self.hold_ttl_s, issue, expect, op)
        if op is not None and not op["id"].startswith(PREVIEW_ID_PREFIX):
            self._hold_for_sale[op["id"]] = auth_id
        return auth_id

    def _projected(self, card: str, entry: dict[str, Any], program: dict[str, Any],
                   day: int) -> dict[str, Any]:
        """The card's state with the operations approved but not yet arrived applied, in
        the order they were approved: a second sale on the card is priced after the first
        (its points redeemed, the tier or discount it reached), as ingest will apply them."""
        state = entry["state"]
        for auth_id, hold in self.holds.items():  # dicts keep the order holds were placed
            if hold.card == card and hold.op is not None:
                op = hold.op
                if op["id"] == PREVIEW_ID:
                    op = dict(op, id=PREVIEW_ID_PREFIX + auth_id)
                projected, effects = engine.apply(state, program, op, day)
                if "declined" not in effects:
                    state = projected
        return state

    def authorize(self, request: dict[str, Any], now_s: float) -> dict[str, Any]:
        """Decide a request; returns response fields (approved or declined with a reason)."""
        try:
            return self._decide(request, now_s)
        except ProtocolError as error:
            return {"approved": False, "reason": error.reason}

    def _decide(self, request: dict[str, Any], now_s: float) -> dict[str, Any]:
        kind = request["kind"]
        card = request["card"]
        # Decided on the gateway's clock, not the request's: a terminal's may drift (its
        # answer carries the gateway's time, docs/protocol.md section 5.5).
        known = self._known(card, now_s)
        seen = [c for c in (known.get("sun_counter") if known else None,
                            self._auth_counters.get(card)) if c is not None]
        counter = self._identify(dict(request, auth_mode=txn.AUTH_ONLINE),
                                 max(seen) if seen else None)
        if counter is not None:
            self._auth_counters[card] = counter
        if kind == txn.KIND_ISSUE:
            return self._decide_issue(request, known, now_s)
        entry = self._card(card, now_s)
        if request["currency"] != entry["currency"]:
            raise ValidationError(CURRENCY_MISMATCH, card)
        program = self._program(entry["program"])
        day = self._day(entry, now_s)
        response: dict[str, Any] = {"approved": True, "program": entry["program"],
                                    "currency": entry["currency"],
                                    "version": program["version"]}
        # Priced on the card as it will be once what was approved has arrived: the engine
        # declines a sale the card cannot pay for (insufficient_value) on that state.
        state = self._projected(card, entry, program, day)
        if kind != txn.KIND_INQUIRY:
            op = self._op(kind, request, PREVIEW_ID, asked=True)
            state, effects = self._run(state, program, op, day)
            amounts = counter_amounts(kind, effects)
            # Value leaving the card is held until its record arrives.
            held = (amounts["card_value_minor"]
                    if kind in (txn.KIND_PURCHASE, txn.KIND_CASHOUT) else 0)
            if kind == txn.KIND_PURCHASE:
                op["discount_minor"] = amounts["discount_minor"]
            if request.get("seq") is not None and "terminal" in request:
                op["id"] = txn.txn_id(request["terminal"], request["seq"])  # its future id
            response.update({k: v for k, v in amounts.items() if v or k == "card_value_minor"})
            response["amount_minor"] = effects["amount_minor"]  # a void: all that was left
            response["auth_id"] = self._place_hold(card, held, now_s, False, amounts, op)
        _add_snapshot(response, state, program, day)
        after = engine.summary(state, program, day)  # with what is on its way, and this sale
        response["value_minor"] = after["value_minor"]
        response["points_balance"] = after["points"]
        return response

    def _decide_issue(self, request: dict[str, Any], known: dict[str, Any] | None,
                      now_s: float) -> dict[str, Any]:
        card = request["card"]
        if known is not None or any(h.issue and h.card == card for h in self.holds.values()):
            raise ValidationError(CARD_EXISTS, card)
        program = self._program(request.get("program"))
        if request["currency"] != program["currency"]:
            raise ValidationError(CURRENCY_MISMATCH, "program currency")
        op = self._op(txn.KIND_ISSUE, request, PREVIEW_ID)
        state, effects = self._run(None, program, op, day_of(now_s))
        amounts = counter_amounts(txn.KIND_ISSUE, effects)
        response = {"approved": True, "program": program["id"], "currency": program["currency"],
                    "version": program["version"], "card_value_minor": amounts["card_value_minor"],
                    "auth_id": self._place_hold(card, 0, now_s, True, amounts)}
        _add_snapshot(response, state, program, state["day"])
        return response
