"""Properties of the gateway's card book on random operation sequences (hypothesis):

- what the gateway answers is what it settles: records built from its answers, arriving in
  the order they were approved (several may be on their way at once), are all accepted and
  settle exactly the answered amounts and points;
- every record's legs balance per unit, and a card's value and points are exactly what the
  legs of its records (expiry included) say: the ledger, posting them, agrees;
- offline sales (taken as they happened) may overdraw, and the exposure counted is exactly
  the value below zero they caused.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.cards import DAY_S, EFFECTS_FIELD, CardBook
from protocol import txn
from tools.demo import DEMO_PROGRAMS

DAY0_S = 20_000 * DAY_S
CARD = "c1"

operation = st.one_of(
    st.tuples(st.just("topup"), st.integers(1, 20_000)),
    st.tuples(st.just("purchase"), st.integers(1, 30_000), st.booleans(),
              st.sampled_from([0, 0, 10, 100, 1000])),
    st.tuples(st.just("offline"), st.integers(1, 30_000), st.booleans()),
    st.tuples(st.just("refund"), st.integers(0, 50), st.integers(0, 20_000)),
    st.tuples(st.just("cashout"), st.integers(1, 5_000)),
    st.tuples(st.just("advance"), st.integers(1, 120)),
)


class Till:
    """One terminal's side: requests, the answers, the records it would journal."""

    def __init__(self, book: CardBook) -> None:
        self.book = book
        self.seq = 1
        self.now_s = DAY0_S
        self.sales: list[str] = []
        self.in_flight: list[dict[str, Any]] = []
        self.settled: list[dict[str, Any]] = []

    def request(self, kind: int, amount: int, card_value: int = 0, **extra: Any) -> None:
        asked = {"terminal": "T1", "kind": kind, "card": CARD, "currency": "EUR",
                 "amount_minor": amount, "card_value_minor": card_value,
                 "time": int(self.now_s), "seq": self.seq}
        asked.update(extra)
        answer = self.book.authorize(asked, self.now_s)
        if not answer["approved"]:
            return
        record = {"terminal": "T1", "seq": self.seq, "merchant": "M1", "card": CARD,
                  "kind": kind, "currency": "EUR", "time": int(self.now_s),
                  "amount_minor": answer.get("amount_minor", amount),
                  "auth_mode": txn.AUTH_ONLINE, "auth_id": answer["auth_id"],
                  "ref": extra.get("ref"), "program": answer.get("program")}
        for key in ("card_value_minor", "bonus_minor", "points", "discount_minor",
                    "redeem_points", "redeem_minor", "version"):
            record[key] = answer.get(key, 0)
        self._journal(record)

    def offline(self, amount: int, from_card: bool) -> None:
        record = {"terminal": "T1", "seq": self.seq, "merchant": "M1", "card": CARD,
                  "kind": txn.KIND_PURCHASE, "currency": "EUR", "time": int(self.now_s),
                  "amount_minor": amount, "card_value_minor": amount if from_card else 0,
                  "bonus_minor": 0, "points": 0, "auth_mode": txn.AUTH_OFFLINE}
        self._journal(record)

    def _journal(self, record: dict[str, Any]) -> None:
        self.in_flight.append(record)
        if record["kind"] != txn.KIND_REFUND:
            self.sales.append(txn.txn_id("T1", self.seq))
        self.seq += 1

    def deliver(self) -> None:
        """The records on their way arrive, in the order they were approved (an offline
        sale among them arrives unannounced: the online ones after it were priced without
        it, and the engine may count their points otherwise)."""
        offline_before = False
        for record in self.in_flight:
            prepared = self.book.check(record)  # raises if refused: the property fails
            record.update(self.book.apply(record, prepared))
            record["after_offline"] = offline_before
            offline_before = offline_before or record["auth_mode"] == txn.AUTH_OFFLINE
            self.settled.append(record)
        self.in_flight = []


@settings(max_examples=200, deadline=None)
@given(program=st.sampled_from(sorted(DEMO_PROGRAMS)), opening=st.integers(0, 20_000),
       steps=st.lists(st.tuples(operation, st.integers(0, 2)), max_size=25))
def test_the_gateway_settles_what_it_answered_and_the_legs_are_the_card(
        program: str, opening: int, steps: list[tuple[tuple[Any, ...], int]]) -> None:
    terms = DEMO_PROGRAMS[program]
    holds_value = terms["gift"] is not None or terms["prepaid"] is not None
    book = CardBook(DEMO_PROGRAMS)
    till = Till(book)
    value = opening if terms["gift"] is not None else 0
    if terms["gift"] is not None and not value:
        value = 1
    till.request(txn.KIND_ISSUE, value, program=program)
    till.deliver()
    swept: list[dict[str, Any]] = []
    for step, wait in steps:
        name = step[0]
        if name == "topup":
            till.request(txn.KIND_TOPUP, step[1])
        elif name == "purchase":
            from_card = step[2] and holds_value
            till.request(txn.KIND_PURCHASE, step[1], step[1] if from_card else 0,
                         redeem_points=step[3] or None)
        elif name == "offline":
            till.offline(step[1], step[2] and holds_value)
        elif name == "refund" and till.sales:
            of = till.sales[step[1] % len(till.sales)]
            till.request(txn.KIND_REFUND, step[2], ref=of)
        elif name == "cashout":
            till.request(txn.KIND_CASHOUT, step[1], step[1])
        elif name == "advance":
            till.deliver()
            till.now_s += step[1] * DAY_S
            swept.extend(effects for _, effects in book.states.sweep(till.now_s))
        if wait == 0:
            till.deliver()  # otherwise up to a few records are on their way together
    till.deliver()

    # An online sale settles the points it was answered with, unless an offline sale of
    # the card arrived unannounced before it; every difference is counted.
    assert book.recomputed == sum(1 for r in till.settled
                                  if r[EFFECTS_FIELD]["points"] != r["points"])
    assert len(book.holds) == 0
    for record in till.settled:
        if record["auth_mode"] == txn.AUTH_ONLINE and not record["after_offline"]:
            assert record[EFFECTS_FIELD]["points"] == record["points"]
    legs = [leg for record in till.settled for leg in record[EFFECTS_FIELD]["legs"]]
    legs += [leg for effects in swept for leg in effects["legs"]]
    for unit in {leg[1] for leg in legs}:
        assert sum(leg[2] for leg in legs if leg[1] == unit) == 0
    card = book.cards[CARD]
    assert card["value_minor"] == -sum(leg[2] for leg in legs if leg[0] == "card_value")
    assert card["points"] == -sum(leg[2] for leg in legs if leg[0] == "card_points")
    online_only = all(r["auth_mode"] == txn.AUTH_ONLINE for r in till.settled)
    if online_only:
        assert card["value_minor"] >= 0 and book.exposure_by_card == {}
    overdraft = sum(r[EFFECTS_FIELD].get("overdraft_minor", 0) for r in till.settled)
    assert book.exposure_by_card.get(CARD, 0) == overdraft
