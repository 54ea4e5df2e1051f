"""The card book: the gateway's authority over its cards' programs (pure, no I/O).

It joins three parts: the card states (gateway/card_states.py), the local holds
(gateway/local_holds.py) and the SUN check (gateway/card_auth.py), and decides with them:
`check` and `apply` for records, `refused` for records refused at ingest, `authorize` for
requests. Look-ups at the ledger happen before, off the lock (`adopt` takes their answer).

Every card carries the program engine's state (protocol/engine.py). The gateway answers an
authorization by running the engine on a copy of that state (a preview: nothing changes),
and applies each record a terminal sends by running the engine again on the real state. The
effects of that run (its balanced legs, points, bonus, discount, expiry) are what settles at
the ledger: the record's fields say what happened at the counter, the engine says what it
means for the books.

What the gateway insists on (`rule_mismatch` otherwise):

- an online record carries exactly what the gateway answered when it approved it (the
  preview kept with its hold: card part, bonus, points, discount, points redeemed, program
  version); an online record naming no authorization must be what the engine computes
  now. One naming an authorization whose hold is gone (the gateway restarted, or the record
  came after its hold expired) is checked against the kept authorization
  (gateway/authorizations.py), taken as it happened, and counted (`late_online`); one naming
  an authorization never given, or given for another card or terminal, is `auth_unknown`;
- an offline or stand-in purchase happened at the counter: the engine takes its discount as
  given and lets the card's value go below zero (`happened`); an overdraft is counted as
  exposure per card and per terminal; points are the engine's, whatever the terminal showed.
  An offline record must keep its terminal's signed rules (`_check_offline`): one purchase,
  no points redeemed, within the per-purchase limit, and within its episode's count, totals
  and time (gateway/offline_episodes.py); else it is refused, counted
  (`offline_over_limit`) and alarmed. An issue is never offline;
- whatever the auth mode, the engine's result on the record's own amount must give the
  record's card part and bonus (`_booked_as_recorded`), and value is loaded (an issue or
  top-up with a card part) only under an approval this gateway gave (`auth_unknown`
  otherwise, `_loaded_as_approved`): the books move exactly the value the
  record says the counter moved, never the engine's figure for an amount the record's till
  amounts were not computed from.

Authorization places a hold on the value it approves (gateway/local_holds.py). A hold that
stands for a hold at the ledger (of value, points redeemed, or both) ends in the record that
uses it (`apply` returns the ledger hold id under LEDGER_HOLD_FIELD with what the record
settles, when it is an online purchase or cash-out of the same card taking at most the held
value and redeeming at most the held points), or in the holds' `lapsed`, for
the gateway's sweep to void. Expiry and `apply` both run under `lock`, so a hold voided as
lapsed is never named by a record, and a record arriving after its hold lapsed settles
without one.

Days: the engine counts whole UTC days (`day_of`). A record's day is its own time's day, but
never earlier than the card's day (an offline record may arrive after later ones): the
engine sees time pass in the order the gateway applies records.

All methods are called with `lock` held by the caller's stage (ingest or authorize), and
none does I/O.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from gateway.card_auth import CardAuthenticator
from gateway.card_states import DAY_S, CardStates, day_of
from gateway.local_holds import HOLD_TTL_S, LocalHolds
from gateway.offline_episodes import OfflineEpisodes, Told
from protocol import engine, engine_offline, txn
from protocol.errors import ProtocolError, ValidationError
from protocol.money import is_amount
from protocol.reasons import (
    AMOUNT_INVALID,
    AUTH_UNKNOWN,
    CARD_BLOCKED,
    CARD_EXISTS,
    CARD_UNKNOWN,
    CONFIG_ROLLBACK,
    CURRENCY_MISMATCH,
    INSUFFICIENT_VALUE,
    KIND_UNKNOWN,
    OFFLINE_AMOUNT_LIMIT,
    OFFLINE_KIND_INVALID,
    REDEEM_NEEDS_ONLINE,
    RULE_MISMATCH,
)

__all__ = ["DAY_S", "HOLD_TTL_S", "CardBook", "day_of"]

log = logging.getLogger(__name__)

# Read counters below a card's highest that an offline record may still carry (never seen):
# as many taps as a card is likely to make at other counters while one is offline.
SUN_WINDOW = 64

LEDGER_HOLD_FIELD = "ledger_hold_id"
"""Key the gateway adds to an applied record's stored fields: the ledger hold it posts."""
EFFECTS_FIELD = "effects"
"""Key the gateway adds to an applied record's stored fields: what the engine did (settled)."""
SUN_COUNTER_FIELD = "sun_counter"
"""Key the gateway adds to an applied record's stored fields: its tap's verified SUN read
counter, which settlement sends so the ledger raises the card's highest (docs/ledger.md)."""
PREVIEW_ID_PREFIX = "auth:"  # sale ids no transaction id can take (ids have no ':')
PREVIEW_ID = PREVIEW_ID_PREFIX + "preview"

# The till amounts: what a terminal shows the customer at the counter, as a record names
# them (the engine's names differ: `till_amounts` maps them).
TILL_FIELDS = ("card_value_minor", "bonus_minor", "points", "discount_minor",
                  "redeem_points", "redeem_minor", "version")
# The till amounts that move value on or off the card: booked exactly as recorded.
VALUE_FIELDS = ("card_value_minor", "bonus_minor")
# The kinds that put value on a card: only with an approval this gateway gave.
VALUE_LOADS = (txn.KIND_ISSUE, txn.KIND_TOPUP)
SETTLED_EFFECTS = ("card_value_minor", "bonus_minor", "points", "discount_minor",
                   "redeem_points", "version", "legs", "overdraft_minor", "grants")


class Prepared:
    """What `check` computed for a record, for `apply` to keep: nothing changed yet."""

    __slots__ = ("sun_counter", "state", "effects", "told")

    def __init__(self, sun_counter: int | None, state: dict[str, Any],
                 effects: dict[str, Any], told: Told | None = None) -> None:
        self.sun_counter = sun_counter  # the tap's SUN read counter, when cards prove taps
        self.state = state
        self.effects = effects
        self.told = told  # an offline record: what its episode was judged from


def till_amounts(kind: int, effects: dict[str, Any]) -> dict[str, int]:
    """The engine's effects in the record's terms (protocol.txn fields): the one mapping from
    engine names (card_minor, points_earned, points_reversed, ...) to record fields."""
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


def record_till_amounts(fields: Mapping[str, Any]) -> dict[str, int]:
    return {key: fields.get(key) or 0 for key in TILL_FIELDS}


def _run(state: dict[str, Any] | None, program: dict[str, Any], op: dict[str, Any],
         day: int, kind: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The engine's result for `op`, or the reason it declines. A result no record could
    carry or no ledger could post (an amount past AMOUNT_MINOR_MAX, e.g. the bonus on a
    top-up near the bound) is amount_invalid here, before anything is answered or stored."""
    new_state, effects = engine.apply(state, program, op, day)
    if "declined" in effects:
        raise ValidationError(effects["declined"], str(op.get("op")))
    amounts = till_amounts(kind, effects)
    if not all(is_amount(amounts[key]) for key in TILL_FIELDS if key != "version") or any(
            not is_amount(abs(leg[2])) for leg in effects["legs"]):
        raise ValidationError(AMOUNT_INVALID, "beyond AMOUNT_MINOR_MAX")
    return new_state, effects


def minute_of(time_s: float) -> int:
    """The minute of its UTC day a time falls in: what offers by hour look at (the engine's
    op "minute", protocol/engine_promotions.py)."""
    return int(time_s) % DAY_S // 60


# What a purchase's promotions look at beyond its day, in its engine op: kept with the
# approval's op, so its record is applied with what the answer was priced with ("grants":
# it may use the card's targeted offer grants, engine_promotions TARGETED_OFFER_GRANTED).
SALE_TERMS = ("minute", "birthday", "grants")


def _day(entry: dict[str, Any] | None, time_s: float) -> int:
    """A record's day is its own time's, but never before the card's day (an offline record
    may arrive after later ones): the engine sees time pass in the order records apply."""
    day = day_of(time_s)
    return day if entry is None else max(day, entry["state"]["day"])


def engine_op(kind: int, fields: Mapping[str, Any], sale_id: str,
              asked: bool = False) -> dict[str, Any]:
    """The engine operation a record (or, `asked`, an authorization request) describes.

    In a request, card_value_minor > 0 asks to pay from the card (a top-up so asked is
    declined: topup_from_own_card), and a refund of amount 0 is a void: all that is left.
    A purchase naming a `reward` is a redemption of that catalogue item: asked, the engine
    prices it; recorded, the amount must be that price (protocol/engine_reward.py).
    """
    amount = fields["amount_minor"]
    if kind == txn.KIND_PURCHASE and fields.get("reward") is not None:
        op = {"op": "reward", "id": sale_id, "item": fields["reward"]}
        if not asked:
            op["amount_minor"] = amount
        return op
    if kind == txn.KIND_ISSUE:
        return {"op": "issue", "id": sale_id, "card": fields["card"], "value_minor": amount}
    if kind == txn.KIND_TOPUP:
        pay = "card" if asked and fields.get("card_value_minor") else "other"
        return {"op": "topup", "id": sale_id, "amount_minor": amount, "pay": pay}
    if kind == txn.KIND_PURCHASE:
        pay = "card" if fields.get("card_value_minor") else "other"
        op = {"op": "purchase", "id": sale_id, "amount_minor": amount, "pay": pay,
              "redeem_points": fields.get("redeem_points") or 0}
        if fields.get("split"):
            # Split tender: asked, the card pays what it holds; recorded, exactly its part.
            op["pay"] = "split"
            if not asked:
                op["card_minor"] = fields["card_value_minor"]
        return op
    if kind == txn.KIND_REFUND:
        if asked and not amount:
            return {"op": "void", "id": sale_id, "of": fields.get("ref") or ""}
        return {"op": "refund", "id": sale_id, "of": fields.get("ref") or "",
                "amount_minor": amount}
    if kind == txn.KIND_CASHOUT:
        return {"op": "cashout", "id": sale_id, "amount_minor": amount}
    raise ValidationError(KIND_UNKNOWN, str(kind))


def offline_refusal(fields: Mapping[str, Any], limits: Mapping[str, int] | None) -> str | None:
    """What a terminal may do alone, re-checked at ingest: only purchases, no points
    redeemed, a card part within the signed per-purchase limit (`limits` None: a card book
    without a fleet, in tests). A record beyond them was not made by a terminal keeping its
    signed rules (broken, or its key stolen): the reason it is refused, else None."""
    if fields["auth_mode"] != txn.AUTH_OFFLINE:
        return None
    if fields["kind"] != txn.KIND_PURCHASE:
        return OFFLINE_KIND_INVALID
    if fields.get("redeem_points"):
        return REDEEM_NEEDS_ONLINE
    if limits is not None and fields["card_value_minor"] > limits["txn_minor_max"]:
        return OFFLINE_AMOUNT_LIMIT
    return None


# An approved void (a refund of all that is left) is recorded as a refund of that amount.
_RECORDED_AS = {"void": "refund"}


def _hold_terminal(hold: Any) -> str | None:
    """The terminal whose request placed a hold, from the sale id it named (None: none)."""
    sale = (hold.op or {}).get("id")
    if not isinstance(sale, str) or "-" not in sale or sale.startswith(PREVIEW_ID_PREFIX):
        return None
    return sale.rsplit("-", 1)[0]


def _same_operation(op: dict[str, Any], given: Mapping[str, Any]) -> None:
    """A record naming an approval is the operation approved: the same kind, amount, points
    redeemed and original sale (the till amounts alone leave the amount of a sale paid at
    the till free, and with it the points it earns)."""
    wrong = [] if op["op"] == _RECORDED_AS.get(given["op"], given["op"]) else ["kind"]
    wrong += [key for key in ("amount_minor", "redeem_points", "of", "item")
              if key in given and op.get(key, 0) != given[key]]
    if wrong:
        raise ValidationError(RULE_MISMATCH, ", ".join(wrong))


def _loaded_as_approved(fields: Mapping[str, Any], expected: dict[str, int] | None) -> None:
    """Value appears on a card only as this gateway approved it (an issue or top-up naming
    an approval it gave, or kept): a record alone, whoever signed it, loads nothing
    (docs/security.md, a stolen terminal key). Checked last, so a record that breaks
    another rule is refused for that one."""
    if fields["kind"] in VALUE_LOADS and fields["card_value_minor"] and expected is None:
        log.warning("record %s-%s loads value under no approval given (%s)", fields["terminal"],
                    fields["seq"], fields.get("auth_id"))
        raise ValidationError(AUTH_UNKNOWN, str(fields.get("auth_id")))


def _compare(fields: Mapping[str, Any], expected: dict[str, int]) -> None:
    """An online record must carry what the gateway answered (or computes now)."""
    got = record_till_amounts(fields)
    if fields.get("version") is None:
        got["version"] = expected["version"]  # a record may leave the version out
    if got != expected:
        wrong = sorted(key for key in expected if got[key] != expected[key])
        raise ValidationError(RULE_MISMATCH, ", ".join(wrong))


class CardBook:
    def __init__(self, programs: dict[str, dict[str, Any]],
                 cards: dict[str, dict[str, Any]] | None = None,
                 authenticator: CardAuthenticator | None = None,
                 hotlist: set[str] | None = None, ledger: bool = False,
                 hold_ttl_s: float = HOLD_TTL_S, auth_epoch: int = 0,
                 exposure: tuple[dict[str, int], dict[str, int]] | None = None,
                 offline_limits: dict[str, int] | None = None,
                 episodes: OfflineEpisodes | None = None,
                 birthday_of: Callable[[str], str | None] | None = None) -> None:
        """`ledger`: the gateway has a ledger (ledger holds exist, cards may be adopted);
        `exposure`: the overdrafts kept with the records, per card and per terminal;
        `offline_limits`: the signed limits terminals were given (FleetConfig);
        `episodes`: the offline count, totals and time re-checked on the same limits
        (gateway/offline_episodes.py; None in tests of other rules); `birthday_of`: card ->
        its customer's birthday "MM-DD" or None, from the gateway's memory
        (gateway/enrol.py `Greetings`), priced into its online purchases' offers (None:
        no birthday known)."""
        self.states = CardStates(programs, cards)
        self.holds = LocalHolds(hold_ttl_s, auth_epoch, ledger)
        self.authenticator = authenticator or CardAuthenticator(None)
        self.hotlist: set[str] = set(hotlist or ())
        self.offline_limits = offline_limits
        self.episodes = episodes
        self.lock = threading.Lock()
        self._auth_sun_counters: dict[str, int] = {}  # SUN counters seen by authorization
        # Value spent offline beyond what the card held: the merchant's risk, per card and
        # per terminal, reported (the sale happened; refusing the record would lose it).
        by_card, by_terminal = exposure or ({}, {})
        self.exposure_by_card: dict[str, int] = dict(by_card)
        self.exposure_by_terminal: dict[str, int] = dict(by_terminal)
        # Offline records beyond the signed rules, refused and counted per terminal (a
        # terminal that does not keep its limits is broken or tampered with).
        self.offline_over_limit: dict[str, int] = {}
        self.sun_verified = 0  # taps whose SUN verified (authorizations and records)
        self.sun_late_offline = 0  # offline records whose lower, unseen counter was taken
        self.hotlist_offline = 0  # offline sales of a blocked card the terminal did not know of
        self.recomputed = 0  # records whose points the engine counted otherwise
        # Per card, the points the engine gave minus what the terminals' records showed
        # (offline quotes on a stale tier; online sales applied in another order than they
        # were authorized): the books follow the engine, this says by how much.
        self.points_recomputed: dict[str, int] = {}
        self.preview_missing = 0  # online records checked without their authorization
        self.late_online = 0  # online records whose authorization's answer was gone
        # Blocked cards the terminals' configurations carry: card -> the first version that
        # carried it (set by the gateway as it publishes, gateway/service.py).
        self.blocked_in: dict[str, int] = {}
        # The highest configuration version each terminal's accepted records named.
        self.config_named: dict[str, int] = {}
        self.birthday_of: Callable[[str], str | None] = birthday_of or (lambda card: None)

    @property
    def cards(self) -> dict[str, dict[str, Any]]:
        """Every card's entry, by card id (gateway/card_states.py)."""
        return self.states.entries

    def adopt(self, card: str, found: dict[str, Any] | None, now_s: float) -> None:
        """Take on a card the ledger answered for (looked up off the lock, before)."""
        if found is not None:
            self.states.adopt(card, found, now_s)

    def _identify(self, fields: Mapping[str, Any], last_seen: int | None,
                  seen: Sequence[int] = (), approved_here: bool = False) -> int | None:
        """Blocked? Genuine (SUN)? A new tap? Returns the tap's SUN read counter, if any.

        A tap is new when its counter is above every counter seen for the card; an offline
        record may also carry a lower one within SUN_WINDOW that was never seen (docs/cards.md,
        "Read counters"): its sale happened before a later online tap reached the gateway.
        So may a record of an approval this gateway gave (`approved_here`): its tap was new
        when it was approved, and a later tap of the card, here or at another store (the card
        feed), may have reached the card book before the record did."""
        if fields["card"] in self.hotlist and fields.get("auth_mode") != txn.AUTH_OFFLINE:
            raise ValidationError(CARD_BLOCKED, fields["card"])
        sun_counter = self.authenticator.read_counter(fields)
        if sun_counter is None:
            return None
        offline = fields.get("auth_mode") == txn.AUTH_OFFLINE
        late = ((offline or approved_here) and last_seen is not None
                and last_seen - SUN_WINDOW < sun_counter < last_seen
                and sun_counter not in seen)
        if not late:
            self.authenticator.check_newer(last_seen, sun_counter)
        elif offline:
            self.sun_late_offline += 1
        self.sun_verified += 1
        return sun_counter

    # -- ingest: check, then apply or refused -----------------------------------------------
    def check(self, fields: Mapping[str, Any],
              recalled: Mapping[str, Any] | None = None,
              told: Told | None = None, parked: bool = False) -> Prepared:
        """Run the engine for a record; raise ValidationError with the reason if it breaks a
        rule. Nothing changes until `apply` is given what this returns.

        `recalled`: the kept authorization the record names (gateway/authorizations.py),
        looked up before the lock when its local hold is gone (a restart, or it expired).
        `told`: what the gateway had sent the record's terminal when it arrived
        (`Verified.told`); None (a record from outside the verify stage) is judged on its
        episode alone, its time unchecked. `parked`: a record tried again after it waited
        for its antecedent (gateway/parked.py): its tap was identified when it arrived (then
        newer than every tap applied), so only its SUN's counter is read again."""
        kind = fields["kind"]
        card = fields["card"]
        known = self.states.get(card)
        if parked:
            sun_counter = self.authenticator.read_counter(fields)
        else:
            sun_counter = self._identify(fields, known.get("sun_counter") if known else None,
                                         known.get("sun_seen", ()) if known else (),
                                         self._names_approval(fields, recalled))
        sale_id = txn.txn_id(fields["terminal"], fields["seq"])
        hold = self.holds.get(fields.get("auth_id"))
        expected = hold.expect if hold is not None and hold.card == card else None
        given_op = hold.op if expected is not None and hold is not None else None
        online = fields["auth_mode"] == txn.AUTH_ONLINE
        stand_in = fields["auth_mode"] == txn.AUTH_STAND_IN
        if (online or stand_in) and hold is None and fields.get("auth_id"):
            # Approved, but its answer is gone here: it counts only if it was really given,
            # for this card and terminal, and the record carries what was answered.
            if (recalled is None or recalled["card"] != card
                    or recalled["terminal"] != fields["terminal"]
                    or (stand_in and recalled.get("auth_mode") != txn.AUTH_STAND_IN)
                    or recalled.get("used_by") not in (None, sale_id)):
                # Never given, given for another card or terminal, or used already: an
                # approval moves value once (a stolen key naming it again moves nothing).
                why = ("never kept" if recalled is None else
                       f"used by {recalled.get('used_by')}" if recalled.get("used_by")
                       else "given for another card, terminal or mode")
                log.warning("record %s-%s names approval %s: %s", fields["terminal"],
                            fields["seq"], fields.get("auth_id"), why)
                raise ValidationError(AUTH_UNKNOWN, f"{fields.get('auth_id')}: {why}")
            expected = recalled["expect"]
            given_op = recalled.get("op")
            self.late_online += 1
        elif stand_in and (hold is None or not hold.stand_in):
            # Stand-in is what the gateway says it did: a record cannot claim it alone.
            log.warning("record %s-%s claims stand-in under %s, not one given", fields["terminal"],
                        fields["seq"], fields.get("auth_id"))
            raise ValidationError(AUTH_UNKNOWN, str(fields.get("auth_id")))
        if kind == txn.KIND_ISSUE:
            self._check_offline(fields, told)  # an issue is never offline: refused here
            if known is not None:
                raise ValidationError(CARD_EXISTS, card)
            program = self.states.program(fields.get("program"))
            if fields["currency"] != program["currency"]:
                raise ValidationError(CURRENCY_MISMATCH, "program currency")
            state, effects = _run(None, program, engine_op(kind, fields, sale_id),
                                  day_of(fields["time"]), kind)
            self._compare(fields, expected, till_amounts(kind, effects))
            self._booked_as_recorded(fields, till_amounts(kind, effects))
            _loaded_as_approved(fields, expected)
            return Prepared(sun_counter, state, effects)
        entry = self.states.entry(card)
        if fields["currency"] != entry["currency"]:
            raise ValidationError(CURRENCY_MISMATCH, card)
        program = self.states.program(entry["program"])
        op = engine_op(kind, fields, sale_id)
        if given_op is not None:
            _same_operation(op, given_op)
        approved = online and expected is not None
        judged = self._check_offline(fields, told)
        if op["op"] == "purchase":
            # An approved sale is applied at the minute, and with the birthday, its answer
            # was priced with; any other at its record's time, and never with a birthday:
            # an offline quote knew none (docs/programs.md, "Promotions").
            op["minute"] = minute_of(fields["time"])
            op.update({key: given_op[key] for key in SALE_TERMS
                       if given_op is not None and key in given_op})
        if kind in (txn.KIND_PURCHASE, txn.KIND_REFUND, txn.KIND_CASHOUT) and (
                not online or approved):
            # It happened at the counter: offline or stand-in, or online as the gateway
            # answered (a record it counted on may still be on its way from another
            # counter, or an offline one arrived in between). A purchase's discount stands;
            # the value may go below zero, counted as exposure.
            op["happened"] = True
            if op["op"] == "purchase":  # a reward's price is the catalogue's: no discount
                op["discount_minor"] = fields.get("discount_minor") or 0
        state, effects = _run(entry["state"], program, op, _day(entry, fields["time"]), kind)
        if online or stand_in:
            # Against what was answered (kept with the hold, or recalled), else what the
            # engine computes now; a late record's engine result may differ (the card moved
            # on meanwhile), what was answered is what the customer was told.
            self._compare(fields, expected, till_amounts(kind, effects))
        self._booked_as_recorded(fields, till_amounts(kind, effects))
        _loaded_as_approved(fields, expected)
        if (kind == txn.KIND_PURCHASE and online and not approved
                and fields["card_value_minor"] > self._available(card, hold)):
            raise ValidationError(INSUFFICIENT_VALUE, card)
        return Prepared(sun_counter, state, effects, judged)

    def _names_approval(self, fields: Mapping[str, Any],
                        recalled: Mapping[str, Any] | None) -> bool:
        """Does an online or stand-in record name an approval this gateway gave for its card
        (its hold, or the kept approval)? Whether it may is judged after its tap (`check`)."""
        if fields["auth_mode"] == txn.AUTH_OFFLINE:
            return False
        hold = self.holds.get(fields.get("auth_id"))
        given = hold.card if hold is not None else (
            recalled.get("card") if recalled is not None else None)
        return given == fields["card"]

    def _targeted(self, program_id: str, offers: Iterable[str]) -> list[str]:
        """Of the offers an operation got, the program's targeted ones (each a grant's use),
        sorted."""
        section = self.states.program(program_id).get("promotions") or {}
        targeted = {offer["id"] for offer in section.get("offers", ()) if offer.get("targeted")}
        return sorted(offer for offer in set(offers) if offer in targeted)

    def granted_offers(self, card: str, offers: Iterable[str]) -> tuple[str, ...]:
        """Of the offers an approved sale got (its answer's "promotions"), the targeted ones:
        each takes a use of the card's grant, which the ledger holds (gateway/ledger_holds.py)
        so that no two stores give the card's last use. Call under `lock`."""
        known = self.states.get(card)
        if known is None:  # a card sold here and not yet on the books has no grants
            return ()
        return tuple(self._targeted(known["program"], offers))

    def approval(self, fields: Mapping[str, Any],
                 recalled: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
        """The approval this gateway gave for an online or stand-in record, when the record
        carries exactly what it answered: its auth id's hold (or, the hold gone, the kept
        approval `recalled`) for the record's card, terminal and auth mode, with the same
        till amounts. Shaped as a kept approval ({"terminal", "card", "expect",
        "auth_mode"}, gateway/authorizations.py `recall`); None for any other record."""
        auth_id = fields.get("auth_id")
        stand_in = fields.get("auth_mode") == txn.AUTH_STAND_IN
        if not isinstance(auth_id, str) or not auth_id:
            return None
        hold = self.holds.get(auth_id)
        given: dict[str, Any] | None
        if hold is not None:
            given = None
            if hold.card == fields["card"] and hold.expect is not None and (
                    hold.stand_in or not stand_in):
                given = {"terminal": fields["terminal"], "card": hold.card,
                         "expect": hold.expect,
                         "auth_mode": txn.AUTH_STAND_IN if hold.stand_in else txn.AUTH_ONLINE}
        elif (recalled is not None and recalled["card"] == fields["card"]
              and recalled["terminal"] == fields["terminal"]
              and (not stand_in or recalled.get("auth_mode") == txn.AUTH_STAND_IN)):
            given = dict(recalled)
        else:
            given = None
        if given is None:
            return None
        try:
            _compare(fields, given["expect"])
        except ValidationError:
            return None
        return given

    def _check_offline(self, fields: Mapping[str, Any], told: Told | None) -> Told | None:
        """Refuse, count and alarm an offline record beyond its terminal's signed rules: one
        purchase (`offline_refusal`), then its episode's count, totals and time
        (gateway/offline_episodes.py). Returns what the episode was judged from, for `apply`
        to count the record with (None: not an offline record, or no episodes here)."""
        reason = offline_refusal(fields, self.offline_limits) or self._config_refusal(fields)
        judged = None
        if (reason is None and self.episodes is not None
                and fields["auth_mode"] == txn.AUTH_OFFLINE):
            judged = told if told is not None else Told(0, fields["time"])
            reason = self.episodes.refusal(fields, judged)
        if reason is not None:
            terminal = fields["terminal"]
            self.offline_over_limit[terminal] = self.offline_over_limit.get(terminal, 0) + 1
            log.warning("ALARM offline record %s-%s beyond its signed rules: %s", terminal,
                        fields["seq"], reason)
            raise ValidationError(reason, terminal)
        return judged

    def _config_refusal(self, fields: Mapping[str, Any]) -> str | None:
        """An offline record names the signed configuration its terminal sold under: one
        that carried the card in its hotlist (`blocked_in`: card -> the first configuration
        version that did) means the terminal should have declined (card_blocked); a version
        below one its terminal named before, or none after it named one, is config_rollback
        (terminals never go back, firmware/settings.py). A record naming none, from a
        terminal that never named one, is judged on the other rules alone."""
        if fields["auth_mode"] != txn.AUTH_OFFLINE:
            return None
        claimed = fields.get("config_version")
        named = self.config_named.get(fields["terminal"])
        if named is not None and (claimed is None or claimed < named):
            return CONFIG_ROLLBACK
        blocked_in = self.blocked_in.get(fields["card"])
        if claimed is not None and blocked_in is not None and claimed >= blocked_in:
            return CARD_BLOCKED
        return None

    def _booked_as_recorded(self, fields: Mapping[str, Any], computed: dict[str, int]) -> None:
        """What the books take from (or load onto) the card is what the record says the
        counter took (or loaded): the engine's result on the record's own amount, discount
        and points must give the record's card part and bonus. The till amounts alone prove
        nothing about the amount they came from: a record that copies an approval's card
        part onto another amount (online), or names a card part within the offline limit
        for a larger amount (offline), would otherwise book the engine's figure for the
        whole amount. Points may differ (the engine's count stands, `apply` counts it)."""
        wrong = [key for key in VALUE_FIELDS if computed[key] != (fields.get(key) or 0)]
        if wrong:
            log.warning("ALARM record %s-%s: its %s differ from what its amount books",
                        fields["terminal"], fields["seq"], ", ".join(wrong))
            raise ValidationError(RULE_MISMATCH, ", ".join(wrong))

    def _compare(self, fields: Mapping[str, Any], expected: dict[str, int] | None,
                 computed: dict[str, int]) -> None:
        if expected is None:
            self.preview_missing += 1
        _compare(fields, computed if expected is None else expected)

    def _available(self, card: str, own_hold: Any) -> int:
        available: int = self.states.entry(card)["value_minor"] - self.holds.held_minor(card)
        if own_hold is not None and own_hold.card == card:
            available += own_hold.value_minor
        return available

    def apply(self, fields: Mapping[str, Any], prepared: Prepared) -> dict[str, Any]:
        """Keep the engine's result for a record that passed `check`; returns what the record
        settles, for the ingest stage to store with its fields: EFFECTS_FIELD, and
        LEDGER_HOLD_FIELD when it posts a ledger hold."""
        kind = fields["kind"]
        card = fields["card"]
        if kind == txn.KIND_ISSUE:
            self.states.issue(card, fields["program"], fields["currency"], fields["merchant"])
        self.states.keep(card, prepared.state, prepared.effects["sales_changed"])
        entry = self.states.entry(card)
        entry["merchant"] = fields["merchant"]
        if prepared.sun_counter is not None:
            highest = max(entry.get("sun_counter") or 0, prepared.sun_counter)
            entry["sun_counter"] = highest
            entry["sun_seen"] = sorted(c for c in {*entry.get("sun_seen", ()),
                                                   prepared.sun_counter}
                                       if c > highest - SUN_WINDOW)
        if card in self.hotlist:
            self.hotlist_offline += 1
        if prepared.told is not None:
            assert self.episodes is not None
            self.episodes.accept(fields, prepared.told)
        claimed = fields.get("config_version")
        if claimed is not None:
            terminal = fields["terminal"]
            self.config_named[terminal] = max(self.config_named.get(terminal, 0), claimed)
        effects = prepared.effects
        settled: dict[str, Any] = till_amounts(kind, effects)
        settled["legs"] = effects["legs"]
        if kind == txn.KIND_PURCHASE and fields["auth_mode"] != txn.AUTH_OFFLINE:
            # The targeted offers it got, which the ledger and the other stores replay it
            # with (GRANTS_AS_POSTED): none is a fact too, for a grant that came after.
            settled["grants"] = self._targeted(effects["program"],
                                               effects.get("promotions") or ())
        if settled["points"] != fields["points"]:
            self.recomputed += 1
            sign = -1 if kind == txn.KIND_REFUND else 1
            self.points_recomputed[card] = (self.points_recomputed.get(card, 0)
                                            + sign * (settled["points"] - fields["points"]))
        overdraft = effects.get("overdraft_minor", 0)
        if overdraft:
            settled["overdraft_minor"] = overdraft
            terminal = fields["terminal"]
            self.exposure_by_card[card] = self.exposure_by_card.get(card, 0) + overdraft
            self.exposure_by_terminal[terminal] = (self.exposure_by_terminal.get(terminal, 0)
                                                   + overdraft)
        self.states.summarize(entry, prepared.state["day"])
        stored: dict[str, Any] = {
            EFFECTS_FIELD: {key: settled[key] for key in SETTLED_EFFECTS if key in settled}}
        ledger_hold_id = self._use_hold(fields)
        if ledger_hold_id is not None:
            stored[LEDGER_HOLD_FIELD] = ledger_hold_id
        if prepared.sun_counter is not None:
            stored[SUN_COUNTER_FIELD] = prepared.sun_counter
        return stored

    def _use_hold(self, fields: Mapping[str, Any]) -> str | None:
        """End the record's hold; the ledger hold it posts, if any."""
        self._end_late_hold(fields)
        hold = self.holds.pop(fields.get("auth_id") or "")
        if hold is None:
            self.holds.orphan(fields.get("auth_id"))
            return None
        if hold.ledger_hold_id is None:
            return None
        value_minor = fields["card_value_minor"]
        redeemed = fields.get("redeem_points") or 0
        if (fields["kind"] in (txn.KIND_PURCHASE, txn.KIND_CASHOUT)
                and fields["auth_mode"] == txn.AUTH_ONLINE
                and hold.card == fields["card"]
                and (value_minor or redeemed or not (hold.value_minor or hold.points))
                and value_minor <= hold.value_minor and redeemed <= hold.points):
            # A ledger hold of no value and no points took targeted offers' uses alone
            # (gateway/ledger_holds.py): the sale posts it, as a void would give the uses
            # back before the sale's posting spends them.
            return hold.ledger_hold_id
        self.holds.lapsed.append(hold.ledger_hold_id)
        return None

    def refused(self, fields: Mapping[str, Any]) -> None:
        """A record was refused at ingest: the hold its authorization placed ends now."""
        self._end_late_hold(fields)
        auth_id = fields.get("auth_id")
        if not isinstance(auth_id, str):
            return
        hold = self.holds.get(auth_id)
        if hold is None:
            self.holds.orphan(auth_id)
        elif hold.card == fields.get("card") and _hold_terminal(hold) in (
                None, fields.get("terminal")):
            # A record ends only its own card's hold, and only one its own terminal asked
            # for: another terminal's refused record naming it (a stolen key) ends nothing.
            self.holds.release(auth_id)

    def _end_late_hold(self, fields: Mapping[str, Any]) -> None:
        """A hold placed for this record's seq under another auth id ends with the record (the
        terminal gave up waiting and sold offline, and the answer came late)."""
        late = self.holds.for_sale(txn.txn_id(fields["terminal"], fields["seq"]))
        if late is None or late == fields.get("auth_id"):
            return
        hold = self.holds.get(late)
        if hold is not None and hold.card == fields.get("card"):
            self.holds.release(late)

    # -- authorization --------------------------------------------------------------------
    def _projected(self, card: str, entry: dict[str, Any], program: dict[str, Any],
                   day: int) -> dict[str, Any]:
        """The card's state with the operations approved but not yet arrived applied, in
        the order they were approved: a second sale on the card is priced after the first
        (its points redeemed, the tier or discount it reached), as ingest will apply them."""
        state = entry["state"]  # None for a card being issued: its issue comes first
        for auth_id, hold in self.holds.of_card(card):
            if hold.op is not None:
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
        known = self.states.get(card)
        seen = [c for c in (known.get("sun_counter") if known else None,
                            self._auth_sun_counters.get(card)) if c is not None]
        sun_counter = self._identify(dict(request, auth_mode=txn.AUTH_ONLINE),
                                     max(seen) if seen else None)
        if sun_counter is not None:
            self._auth_sun_counters[card] = sun_counter
        if kind == txn.KIND_ISSUE:
            return self._decide_issue(request, known, now_s)
        entry = known if known is not None else self._being_issued(card)
        if request["currency"] != entry["currency"]:
            raise ValidationError(CURRENCY_MISMATCH, card)
        program = self.states.program(entry["program"])
        day = _day(entry if entry["state"] is not None else None, now_s)
        response: dict[str, Any] = {"approved": True, "program": entry["program"],
                                    "currency": entry["currency"],
                                    "version": program["version"]}
        # Priced on the card as it will be once what was approved has arrived: the engine
        # declines a sale the card cannot pay for (insufficient_value) on that state.
        state = self._projected(card, entry, program, day)
        if kind != txn.KIND_INQUIRY:
            op = engine_op(kind, request, PREVIEW_ID, asked=True)
            if op["op"] == "purchase":
                op["minute"] = minute_of(now_s)
                op["grants"] = True  # priced here, where the card's grants are kept
                birthday = self.birthday_of(card)
                if birthday is not None:
                    op["birthday"] = birthday
            state, effects = _run(state, program, op, day, kind)
            if effects.get("promotions"):
                response["promotions"] = effects["promotions"]
            amounts = till_amounts(kind, effects)
            # Value leaving the card is held until its record arrives.
            held = (amounts["card_value_minor"]
                    if kind in (txn.KIND_PURCHASE, txn.KIND_CASHOUT) else 0)
            if op["op"] == "purchase":
                op["discount_minor"] = amounts["discount_minor"]
                if op["pay"] == "split":  # replayed on later states, it takes what it took
                    op["card_minor"] = amounts["card_value_minor"]
            sale_id = None
            if request.get("seq") is not None and "terminal" in request:
                sale_id = op["id"] = txn.txn_id(request["terminal"], request["seq"])
            response.update({k: v for k, v in amounts.items() if v or k == "card_value_minor"})
            response["amount_minor"] = effects["amount_minor"]  # a void: all that was left
            response["auth_id"] = self.holds.place(card, held, now_s, False, amounts, sale_id,
                                                   op, sun_counter)
        _add_snapshot(response, state, program, day)
        after = engine.summary(state, program, day)  # with what is on its way, and this sale
        response["value_minor"] = after["value_minor"]
        response["points_balance"] = after["points"]
        return response

    def _being_issued(self, card: str) -> dict[str, Any]:
        """A card sold here whose issue is approved but whose record has not arrived yet:
        an entry with no state, which `_projected` starts from the issue. The customer may
        pay with the card at once. Otherwise card_unknown."""
        for _, hold in self.holds.of_card(card):
            if hold.issue and hold.op is not None:
                program = self.states.program(hold.op["program"])
                return {"program": program["id"], "currency": program["currency"],
                        "merchant": None, "sun_counter": None, "state": None}
        raise ValidationError(CARD_UNKNOWN, card)

    def _decide_issue(self, request: dict[str, Any], known: dict[str, Any] | None,
                      now_s: float) -> dict[str, Any]:
        card = request["card"]
        if known is not None or any(h.issue for _, h in self.holds.of_card(card)):
            raise ValidationError(CARD_EXISTS, card)
        program = self.states.program(request.get("program"))
        if request["currency"] != program["currency"]:
            raise ValidationError(CURRENCY_MISMATCH, "program currency")
        op = engine_op(txn.KIND_ISSUE, request, PREVIEW_ID)
        state, effects = _run(None, program, op, day_of(now_s), txn.KIND_ISSUE)
        amounts = till_amounts(txn.KIND_ISSUE, effects)
        # The hold keeps the issue (and its program): the card may be tapped again before
        # the issue's record arrives, and is then priced as issued (`_being_issued`).
        response = {"approved": True, "program": program["id"], "currency": program["currency"],
                    "version": program["version"], "card_value_minor": amounts["card_value_minor"],
                    "auth_id": self.holds.place(card, 0, now_s, True, amounts,
                                                op=dict(op, program=program["id"]))}
        _add_snapshot(response, state, program, state["day"])
        # The terminal's offline bound starts from this (docs/protocol.md 5.4).
        opened = engine.summary(state, program, state["day"])
        response["value_minor"] = opened["value_minor"]
        response["points_balance"] = opened["points"]
        return response
