"""Local holds: value an authorization approved, kept until its record arrives (pure).

Authorization places a hold on the value it approves, so two terminals cannot both spend the
same balance; the hold ends when the record carrying its auth id is applied or refused, when
a record comes for the seq the request named under another auth id (the terminal sold
offline and the answer came late), or when it expires after `ttl_s`.

A hold may also stand for a hold at the ledger (`mark_ledger`, gateway/ledger_holds.py).
Every such hold ends in exactly one of two places: in the record that uses it (the card book
names it in what the record settles), or in `lapsed`, for the gateway's sweep to void at the
ledger. A restarted gateway `restore`s the holds of its kept approvals whose records have
not come (gateway/hold_recovery.py): each lives until its original time is up. Auth ids given
before the last restart whose records arrive without a hold (it was not restored, or it
expired) go to `orphaned`: their ledger hold is voided by id.

Auth ids are `a{epoch}-{n}`: `epoch` is the gateway's durable start count, so an id is never
given twice, even across restarts (the ledger hold id is built from it). Holds are indexed by
card and by the sale they are for; every hold lives `ttl_s`, so the oldest placed is the
first to expire and expiry only looks at the holds it ends.
"""

from __future__ import annotations

import re
from typing import Any

HOLD_TTL_S = 120
AUTH_ID_PATTERN = re.compile(r"a([0-9]{1,9})-([0-9]{1,18})")


class Hold:
    __slots__ = ("card", "value_minor", "expires_s", "issue", "ledger_hold_id", "expect", "op",
                 "stand_in", "sun_counter")

    def __init__(self, card: str, value_minor: int, expires_s: float, issue: bool,
                 expect: dict[str, int] | None = None, op: dict[str, Any] | None = None) -> None:
        self.card = card
        self.value_minor = value_minor
        self.expires_s = expires_s
        self.issue = issue  # a card being issued: no second issue of it meanwhile
        self.ledger_hold_id: str | None = None  # the ledger holds this value too
        self.expect = expect  # what the gateway answered: the record must carry the same
        self.op = op  # the engine operation approved, until its record arrives
        self.stand_in = False  # approved by the gateway standing in for the ledger
        self.sun_counter: int | None = None  # the approved tap's read counter, for the ledger

    @property
    def points(self) -> int:
        """The points the approval redeems (held at the ledger with the value), from what
        the gateway answered."""
        return (self.expect or {}).get("redeem_points", 0)


class LocalHolds:
    def __init__(self, ttl_s: float = HOLD_TTL_S, epoch: int = 0,
                 ledger: bool = False) -> None:
        self.ttl_s = ttl_s
        self.epoch = epoch
        self.ledger = ledger  # ledger holds exist: orphaned auth ids are worth voiding
        self._holds: dict[str, Hold] = {}  # in the order placed, so in the order they expire
        self._by_card: dict[str, dict[str, None]] = {}  # card -> its auth ids, in order
        self._by_sale: dict[str, str] = {}  # txn id a request named -> its auth id
        self.placed = 0
        self.lapsed: list[str] = []  # ledger hold ids whose local hold ended unused: to void
        self.orphaned: list[str] = []  # auth ids of earlier runs whose records came

    def __len__(self) -> int:
        return len(self._holds)

    def __contains__(self, auth_id: object) -> bool:
        return auth_id in self._holds

    def get(self, auth_id: str | None) -> Hold | None:
        return self._holds.get(auth_id or "")

    def place(self, card: str, value_minor: int, now_s: float, issue: bool = False,
              expect: dict[str, int] | None = None, sale_id: str | None = None,
              op: dict[str, Any] | None = None, sun_counter: int | None = None) -> str:
        self.placed += 1
        auth_id = f"a{self.epoch}-{self.placed}"
        hold = self._holds[auth_id] = Hold(card, value_minor, now_s + self.ttl_s, issue,
                                           expect, op)
        hold.sun_counter = sun_counter
        self._by_card.setdefault(card, {})[auth_id] = None
        if sale_id is not None:
            self._by_sale[sale_id] = auth_id
        return auth_id

    def restore(self, auth_id: str, hold: Hold, sale_id: str | None = None) -> None:
        """Take back a hold of an earlier run (gateway/hold_recovery.py). Call before any
        `place`, oldest first: holds must stay in the order they expire."""
        assert auth_id not in self._holds, auth_id
        self._holds[auth_id] = hold
        self._by_card.setdefault(hold.card, {})[auth_id] = None
        if sale_id is not None:
            self._by_sale[sale_id] = auth_id

    def of_card(self, card: str) -> list[tuple[str, Hold]]:
        """The card's holds, in the order they were placed."""
        return [(auth_id, self._holds[auth_id]) for auth_id in self._by_card.get(card, ())]

    def held_minor(self, card: str) -> int:
        return sum(hold.value_minor for _, hold in self.of_card(card))

    def pop(self, auth_id: str) -> Hold | None:
        hold = self._holds.pop(auth_id, None)
        if hold is None:
            return None
        of_card = self._by_card[hold.card]
        del of_card[auth_id]
        if not of_card:
            del self._by_card[hold.card]
        if hold.op is not None and self._by_sale.get(hold.op["id"]) == auth_id:
            del self._by_sale[hold.op["id"]]
        return hold

    def release(self, auth_id: str) -> None:
        """End a hold no record will post (declined after all, expired, refused)."""
        hold = self.pop(auth_id)
        if hold is not None and hold.ledger_hold_id is not None:
            self.lapsed.append(hold.ledger_hold_id)

    def expire(self, now_s: float) -> int:
        """End the holds whose time is up; returns how many."""
        ended = 0
        for auth_id, hold in list(self._holds.items()):
            if hold.expires_s > now_s:
                break  # placed later, expires later: the rest are alive
            self.release(auth_id)
            ended += 1
        return ended

    def for_sale(self, sale_id: str) -> str | None:
        """The auth id placed for the sale a request said would be `sale_id`."""
        return self._by_sale.get(sale_id)

    def mark_ledger(self, auth_id: str, ledger_hold_id: str) -> bool:
        """Note that the ledger holds this authorization's value, points or uses of targeted
        offers; False if the hold is gone."""
        hold = self._holds.get(auth_id)
        if hold is None:
            return False
        hold.ledger_hold_id = ledger_hold_id
        return True

    def orphan(self, auth_id: str | None) -> None:
        """An auth id given before the last restart whose record came: its ledger hold, if
        any, is to be voided."""
        match = AUTH_ID_PATTERN.fullmatch(auth_id or "")
        if match is not None and self.ledger and int(match.group(1)) < self.epoch:
            self.orphaned.append(auth_id or "")

    def take_lapsed(self) -> list[str]:
        lapsed, self.lapsed = self.lapsed, []
        return lapsed

    def take_orphaned(self) -> list[str]:
        orphaned, self.orphaned = self.orphaned, []
        return orphaned
