"""Every card a gateway serves, with its program engine state (pure, no I/O).

An entry is `{"program", "currency", "merchant", "value_minor", "points", "sun_counter",
"state"}`: value and points are the engine's summary, kept for the store and reports; the
state is the engine's (protocol/engine.py). A card registered centrally that this store has
not seen is adopted with the balances the ledger gave (`adopt`, protocol/engine_adopt.py);
the look-up itself happens before, off the card lock (gateway/card_directory.py).

What changed since the store last took it (`take_dirty`): the cards, and per card the sales
that changed, so a commit writes a busy card's few changed sales and not its whole history.
"""

from __future__ import annotations

from typing import Any

from protocol import engine, engine_adopt, engine_points, engine_replay
from protocol.engine_legs import copy_state
from protocol.errors import ValidationError
from protocol.reasons import CARD_UNKNOWN, PROGRAM_UNKNOWN

DAY_S = 86_400
REPLACED_SOURCE = "replaced"
"""The lot source of points the books moved to a replacing card beyond this copy's lots."""


def day_of(time_s: float) -> int:
    """The engine's day: whole UTC days since the epoch."""
    return int(time_s) // DAY_S


class CardStates:
    def __init__(self, programs: dict[str, dict[str, Any]],
                 entries: dict[str, dict[str, Any]] | None = None) -> None:
        self.programs = programs  # validated programs (protocol.programs), by id
        self.entries: dict[str, dict[str, Any]] = dict(entries or {})
        self.dirty: set[str] = set()
        # Cards this gateway serves that the ledger may not know it serves: all of them at
        # start, then those issued here (a card taken on from the ledger was noted by its
        # look-up). The feed's reader tells the ledger before each read (gateway/service.py).
        self.unnoted: set[str] = set(self.entries)
        # Per dirty card, the sales that changed: sale id -> the sale, or None when the card
        # forgot it.
        self.dirty_sales: dict[str, dict[str, dict[str, Any] | None]] = {}

    def program(self, program_id: str | None) -> dict[str, Any]:
        program = self.programs.get(program_id or "")
        if program is None:
            raise ValidationError(PROGRAM_UNKNOWN, str(program_id))
        return program

    def get(self, card: str) -> dict[str, Any] | None:
        return self.entries.get(card)

    def entry(self, card: str) -> dict[str, Any]:
        found = self.entries.get(card)
        if found is None:
            raise ValidationError(CARD_UNKNOWN, card)
        return found

    def adopt(self, card: str, found: dict[str, Any], now_s: float) -> None:
        """Take on a card the ledger knows (its program, currency, value and points), unless
        it is known here already or its program is not one of this gateway's."""
        program = self.programs.get(found.get("program") or "")
        if card in self.entries or program is None:
            return
        day = day_of(now_s)
        # The ledger's highest SUN read counter: a tap accepted at another store is no new
        # tap here either (docs/ledger.md, "SUN read counters").
        entry = self.entries[card] = {"program": found["program"], "currency": found["currency"],
                                      "merchant": None, "sun_counter": found.get("sun_counter"),
                                      "state": {"sales": {}},
                                      # which changes of the ledger's card feed the
                                      # balances include (gateway/card_feed.py)
                                      "feed": found.get("feed")}
        # Its history replayed where the ledger lists it and it ends at the books' balances
        # (protocol/engine_replay.py), else from the balances alone.
        state = engine_replay.replayed(card, program, found.get("transactions"), day,
                                     found["value_minor"], found["points"])
        if state is None:
            state = engine_adopt.adopt(card, program, day, found["value_minor"], found["points"])
        self.keep(card, state)
        self.summarize(entry, day)

    def issue(self, card: str, program: str, currency: str, merchant: str) -> None:
        self.entries[card] = {"program": program, "currency": currency, "merchant": merchant,
                              "sun_counter": None}
        self.unnoted.add(card)

    def keep(self, card: str, state: dict[str, Any], changed: list[str] | None = None) -> None:
        """Take the engine's new state for a card, noting which of its sales changed for the
        store: those the engine's effects name (`sales_changed`), else all of them."""
        sales = state["sales"]
        notes = self.dirty_sales.setdefault(card, {})
        for sale_id in sales if changed is None else changed:
            notes[sale_id] = sales.get(sale_id)  # None: the card forgot it
        self.entries[card]["state"] = state
        self.dirty.add(card)

    def replace(self, old: str, new: str, value_minor: int, points: int, day: int) -> bool:
        """A card replaced at the ledger (a "transfer" in its card feed, ledger/replace_sql.py):
        the old card's engine state (points lots with their earn days, tier and its spend,
        discount window, the sales a refund may still name) becomes the new card's, renamed,
        and the old card is left empty. The books are the authority on what moved: the new
        card gets exactly `value_minor` and `points`; what this copy had beyond them (a sale
        here not yet posted when the card was replaced) stays on the old card, below zero
        where it was spent, as the ledger will have it. The new card starts with no SUN
        counter of its own (another chip). True when the state moved; False when the old card
        is not served here with a state (nothing changed), or the new one made a sale here
        already (taken on from the ledger after the replacement: its balances hold the
        transfer; only the old card is emptied then)."""
        entry = self.entries.get(old)
        if entry is None or "state" not in entry:
            return False
        program = self.program(entry["program"])
        moved = copy_state(entry["state"])
        left = engine_adopt.adopt(old, program, max(day, moved["day"]), 0, 0)
        left["value_minor"] = moved["value_minor"] - value_minor
        # Points owed stay owed on the old card (the ledger moves none below zero).
        left["points_owed"], moved["points_owed"] = moved["points_owed"], 0
        beyond = engine_points.balance(moved) - points
        if beyond > 0:  # lots this copy has that the books did not move: taken off
            engine_points.redeem(moved, beyond)
        elif beyond < 0:
            engine_points.credit(moved, -beyond, moved["day"], REPLACED_SOURCE)
        moved["card"] = new
        moved["value_minor"] = value_minor
        served = self.entries.get(new)
        # A new card tapped here before the feed brought its replacement was taken on from
        # the ledger with the moved balances only: the old card's state replaces that, unless
        # it made a sale here since (its own state then stands).
        take = served is None or "state" not in served or not served["state"]["sales"]
        if take:
            self.entries[new] = {"program": entry["program"], "currency": entry["currency"],
                                 "merchant": entry.get("merchant"), "sun_counter": None,
                                 "feed": None} | ({} if served is None else {
                                     "sun_counter": served.get("sun_counter"),
                                     "sun_seen": served.get("sun_seen", [])})
            self.keep(new, moved)
            self.summarize(self.entries[new], moved["day"])
            self.unnoted.add(new)  # the ledger handed it over, unless it had not the old
        self.keep(old, left, list(entry["state"]["sales"]))
        self.summarize(entry, left["day"])
        return take

    def used_elsewhere(self, card: str, sun_counter: int, window: int) -> None:
        """A tap of the card another store had accepted (the card feed): its read counter is
        seen here too, so the same read is refused here, online and standing in. The highest
        only rises; `window`: how far below it seen counters are kept (gateway/cards.py)."""
        entry = self.entries[card]
        highest = max(entry.get("sun_counter") or 0, sun_counter)
        entry["sun_counter"] = highest
        entry["sun_seen"] = sorted(c for c in {*entry.get("sun_seen", ()), sun_counter}
                                   if c > highest - window)
        self.dirty.add(card)

    def summarize(self, entry: dict[str, Any], day: int) -> None:
        summary = engine.summary(entry["state"], self.program(entry["program"]), day)
        entry["value_minor"] = summary["value_minor"]
        entry["points"] = summary["points"]

    def take_dirty(self) -> dict[str, dict[str, Any]]:
        """The changed cards for the store: each entry with "sales_changed", the sales to
        write (None: to delete)."""
        changed = {card: dict(self.entries[card], sales_changed=self.dirty_sales.pop(card, {}))
                   for card in self.dirty}
        self.dirty = set()
        return changed

    def sweep(self, now_s: float) -> list[tuple[str, dict[str, Any]]]:
        """Let time pass on every card up to `now_s`; [(card, effects)] where it expired
        value or points (the caller writes those as expire records). Cards whose day is
        already later are left alone."""
        day = day_of(now_s)
        expired = []
        for card, entry in self.entries.items():
            program = self.programs.get(entry["program"])
            if program is None or entry["state"]["day"] >= day:
                continue
            state, effects = engine.apply(entry["state"], program, {"op": "tick"}, day)
            if "declined" in effects or not effects["legs"]:
                continue  # nothing expired: the next operation passes the same time itself
            self.keep(card, state, effects["sales_changed"])
            self.summarize(entry, day)
            expired.append((card, effects))
        return expired
