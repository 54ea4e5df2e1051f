"""Points held at the ledger: an approved online sale that redeems points holds them there
(with its card value, if any, in the same hold), the ledger's insufficient_points declines
it, a ledger out of reach never stands in for a redemption, and two stores cannot both
redeem the same points (through the real ledger server)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from gateway import batches, hold_recovery
from gateway.authorize import decide
from gateway.card_directory import CardDirectory
from gateway.cards import LEDGER_HOLD_FIELD, CardBook, record_till_amounts
from gateway.ledger_holds import PASSED_ON, LedgerHolds
from gateway.settle import batch_document
from gateway.store import STATUS_ACCEPTED, GatewayStore, StoredRecord
from ledger.client import LedgerClient
from ledger.errors import HoldRefused, LedgerUnavailable, NotFound
from ledger.server import serve
from protocol import txn
from tests.ledger.builders import batch, purchase
from tools.demo import DEMO_PROGRAMS

CARD = "c1"
NOW_S = 20_000 * 86_400.0


class PointsLedger:
    """The hold calls of `LedgerClient` on one card's settled value and points."""

    def __init__(self, value_minor: int, points: int) -> None:
        self.value_minor = value_minor
        self.points = points
        self.holds: dict[str, dict[str, Any]] = {}
        self.placed: list[dict[str, Any]] = []
        self.voided: list[str] = []
        self.down = False
        self.out_of_stock = False

    def place_hold(self, hold_id: str, card: str, currency: str, amount_minor: int,
                   ttl_s: int, terminal: str, merchant: str,
                   points: int = 0, reward: str | None = None) -> dict[str, Any]:
        placed: dict[str, Any] = {"hold_id": hold_id, "amount_minor": amount_minor,
                                  "points": points}
        if reward is not None:
            placed["reward"] = reward
        self.placed.append(placed)
        if self.out_of_stock:
            raise HoldRefused("reward_out_of_stock", f"{reward} at {merchant}")
        if self.down:
            raise LedgerUnavailable("connection refused")
        open_holds = [h for h in self.holds.values() if h["status"] == "open"]
        value_left = self.value_minor - sum(h["amount_minor"] for h in open_holds)
        points_left = self.points - sum(h["points"] for h in open_holds)
        if amount_minor and value_left < amount_minor:
            raise HoldRefused("insufficient_value", card)
        if points and points_left < points:
            raise HoldRefused("insufficient_points", card)
        self.holds[hold_id] = {"amount_minor": amount_minor, "points": points, "status": "open"}
        return {"hold_id": hold_id, "status": "open", "available_minor": value_left - amount_minor,
                "available_points": points_left - points}

    def void_hold(self, hold_id: str) -> dict[str, Any]:
        if self.down:
            raise LedgerUnavailable("connection refused")
        if hold_id not in self.holds:
            raise NotFound("hold_unknown", hold_id)
        self.holds[hold_id]["status"] = "voided"
        self.voided.append(hold_id)
        return {"hold_id": hold_id, "status": "voided"}


def club_card(value_minor: int, points: int) -> CardDirectory:
    """A card registered centrally in the club programme (points, 100 a euro)."""
    return CardDirectory(lambda card: {"program": "club", "currency": "EUR",
                                       "value_minor": value_minor, "points": points})


def sale(redeem_points: int, card_value_minor: int = 0, amount_minor: int = 1500,
         terminal: str = "T1", time_s: float = NOW_S) -> dict[str, Any]:
    """A purchase request redeeming points, the rest paid from the card or otherwise."""
    return {"terminal": terminal, "request": 1, "time": int(time_s), "merchant": "M1",
            "card": CARD, "kind": txn.KIND_PURCHASE, "currency": "EUR",
            "amount_minor": amount_minor, "card_value_minor": card_value_minor,
            "redeem_points": redeem_points}


def gateway(ledger: Any, settle: Any = None, gateway_id: str = "gw1"
            ) -> tuple[CardBook, LedgerHolds]:
    book = CardBook(DEMO_PROGRAMS, ledger=True, auth_epoch=7)
    holds = LedgerHolds(gateway_id, book, ledger, settle=settle)
    holds.stand_in.fresh()  # the card book has just heard from the ledger (its feed)
    return book, holds


def test_a_redemption_places_a_hold_of_its_points_and_card_value() -> None:
    ledger = PointsLedger(2500, 200)
    book, holds = gateway(ledger)
    directory = club_card(2500, 200)
    paid_otherwise = decide(book, holds, sale(150), NOW_S, directory)
    assert paid_otherwise["approved"] and paid_otherwise["redeem_points"] == 150
    assert ledger.placed == [{"hold_id": "gw1-a7-1", "amount_minor": 0, "points": 150}]
    assert book.holds.get("a7-1").ledger_hold_id == "gw1-a7-1"  # type: ignore[union-attr]
    both = decide(book, holds, sale(50, card_value_minor=1000, amount_minor=1000), NOW_S,
                  directory)
    assert both["approved"]
    assert ledger.placed[-1] == {"hold_id": "gw1-a7-2",
                                 "amount_minor": both["card_value_minor"], "points": 50}


def loyalty_card(value_minor: int, points: int) -> CardDirectory:
    """A card registered centrally in the loyalty programme (a rewards catalogue: the coffee
    takes 150 points)."""
    return CardDirectory(lambda card: {"program": "loyalty", "currency": "EUR",
                                       "value_minor": value_minor, "points": points})


def reward(item: str) -> dict[str, Any]:
    """A reward redemption request: the engine prices the item."""
    return sale(0, amount_minor=0) | {"reward": item}


def test_a_reward_names_its_item_in_the_hold_and_out_of_stock_declines_with_that_reason(
        ) -> None:
    """The hold of a reward's points names the item (the ledger counts the store's shelf);
    the ledger's reward_out_of_stock is passed on to the terminal, the local hold released,
    and no settling first (settling gives back no item)."""
    assert "reward_out_of_stock" in PASSED_ON
    ledger = PointsLedger(0, 500)
    settled: list[bool] = []
    book, holds = gateway(ledger, settle=lambda: settled.append(True))
    directory = loyalty_card(0, 500)
    decision = decide(book, holds, reward("coffee"), NOW_S, directory)
    assert decision["approved"] and decision["redeem_points"] == 150
    assert ledger.placed == [{"hold_id": "gw1-a7-1", "amount_minor": 0, "points": 150,
                              "reward": "coffee"}]
    ledger.out_of_stock = True
    refused = decide(book, holds, reward("coffee"), NOW_S, directory)
    assert refused == {"approved": False, "reason": "reward_out_of_stock"}
    assert ledger.placed[-1]["reward"] == "coffee" and settled == []
    assert len(book.holds) == 1  # only the first reward's
    # A plain redemption names no item.
    ledger.out_of_stock = False
    decide(book, holds, sale(100), NOW_S, directory)
    assert "reward" not in ledger.placed[-1]


def test_the_ledgers_insufficient_points_declines_after_settling_once() -> None:
    """The lag rule as for value: settle, ask once more; the ledger's word is passed on."""
    assert "insufficient_points" in PASSED_ON
    ledger = PointsLedger(2500, 100)  # another store redeemed 100 of the 200 points
    settled: list[bool] = []
    book, holds = gateway(ledger, settle=lambda: settled.append(True))
    decision = decide(book, holds, sale(150), NOW_S, club_card(2500, 200))
    assert decision == {"approved": False, "reason": "insufficient_points"}
    assert settled == [True] and len(ledger.placed) == 2
    assert len(book.holds) == 0  # the local hold is released


def test_points_earned_here_and_not_settled_are_held_once_settled() -> None:
    """The lag rule: the settlement tells the ledger of the points; the second ask holds."""
    ledger = PointsLedger(2500, 100)
    book, holds = gateway(ledger, settle=lambda: setattr(ledger, "points", 200))
    decision = decide(book, holds, sale(150), NOW_S, club_card(2500, 200))
    assert decision["approved"] and ledger.holds["gw1-a7-1"]["points"] == 150


def test_stand_in_never_redeems_points() -> None:
    """The ledger out of reach: a redemption is declined redeem_needs_online (its maybe
    placed hold queued for a void); a sale paid from the card alone is still stood in for."""
    ledger = PointsLedger(2500, 200)
    ledger.down = True
    book, holds = gateway(ledger)
    directory = club_card(2500, 200)
    decision = decide(book, holds, sale(150), NOW_S, directory)
    assert decision == {"approved": False, "reason": "redeem_needs_online"}
    assert holds.pending_voids() == ["gw1-a7-1"] and len(book.holds) == 0
    # The gate now rests: the next redemption is not even asked, and declined the same.
    again = decide(book, holds, sale(100, card_value_minor=500, amount_minor=1500), NOW_S,
                   directory)
    assert again == {"approved": False, "reason": "redeem_needs_online"}
    paid = decide(book, holds, sale(0, card_value_minor=800, amount_minor=800), NOW_S, directory)
    assert paid["approved"] and paid["auth_mode"] == txn.AUTH_STAND_IN


def test_the_record_of_a_redemption_posts_its_points_hold() -> None:
    ledger = PointsLedger(2500, 200)
    book, holds = gateway(ledger)
    decision = decide(book, holds, sale(150), NOW_S, club_card(2500, 200))
    fields = record_of(decision, 1)
    with book.lock:
        fields.update(book.apply(fields, book.check(fields)))
    assert fields[LEDGER_HOLD_FIELD] == "gw1-a7-1"
    assert book.holds.take_lapsed() == []


def test_a_points_only_hold_is_restored_after_a_restart() -> None:
    """Nothing held here but points at the ledger: restored, so its record still posts it."""
    kept = {"auth_id": "a7-1", "terminal": "T1", "card": CARD, "auth_mode": txn.AUTH_ONLINE,
            "given_at": NOW_S, "held_minor": 0, "op": None, "ledger_hold_id": "gw1-a7-1",
            "expect": {"redeem_points": 150, "card_value_minor": 0}}
    recovery = hold_recovery.plan([kept], {}, NOW_S + 10, 120)
    assert recovery.restored == [kept] and recovery.void == []
    assert hold_recovery.plan([kept], {}, NOW_S + 121, 120).void == ["gw1-a7-1"]


def record_of(decision: dict[str, Any], seq: int, terminal: str = "T1",
              time_s: float = NOW_S) -> dict[str, Any]:
    """The record a terminal journals for an approved redemption of `sale`."""
    fields = {"terminal": terminal, "seq": seq, "prev": bytes(32), "time": int(time_s),
              "merchant": "M1", "card": CARD, "kind": txn.KIND_PURCHASE, "currency": "EUR",
              "amount_minor": 1500, "auth_mode": txn.AUTH_ONLINE,
              "auth_id": decision["auth_id"]}
    fields.update(record_till_amounts(decision))
    return fields


def test_two_stores_cannot_redeem_the_same_points_at_the_real_ledger(tmp_path: Path) -> None:
    """200 points at the ledger; store A redeems 150, then store B asks for 150 on its own
    book's (stale) 200: A approved, B declined insufficient_points, and once A's sale is
    settled the ledger's points are 50 (never below zero)."""
    server = serve(f"sqlite://{tmp_path / 'ledger.db'}")
    try:
        server.books.register_card(CARD, "club", "EUR", "M1", 2500)
        server.books.post_batch(batch("gw0-earn", purchase("T0-1", card=CARD,
                                                           card_value_minor=1000, points=200)))
        client = LedgerClient(server.url, timeout_s=10)

        def lookup(card: str) -> dict[str, Any] | None:
            try:
                return client.card(card)
            except NotFound:
                return None

        now_s = time.time()
        book_a, holds_a = gateway(client, gateway_id="gwA")
        book_b, holds_b = gateway(client, gateway_id="gwB")
        store_a = sale(150, terminal="A1", time_s=now_s)
        store_b = sale(150, terminal="B1", time_s=now_s)
        approved = decide(book_a, holds_a, store_a, now_s, CardDirectory(lookup))
        declined = decide(book_b, holds_b, store_b, now_s, CardDirectory(lookup))
        assert approved["approved"] and approved["redeem_points"] == 150
        assert declined == {"approved": False, "reason": "insufficient_points"}
        card = client.card(CARD)
        assert (card["points"], card["held_points"], card["available_points"]) == (200, 150, 50)

        # A's sale arrives and settles: it posts its hold.
        fields = record_of(approved, 1, "A1", now_s)
        with book_a.lock:
            fields.update(book_a.apply(fields, book_a.check(fields)))
        store = GatewayStore(str(tmp_path / "gwA.db"))
        store.commit([StoredRecord("A1", 1, txn.txn_id("A1", 1), bytes(32), b"", fields,
                                   STATUS_ACCEPTED, None)], {}, {}, {})
        batch_id = batches.open_batch(store, "gwA")
        assert batch_id is not None
        document = batch_document(store, "gwA", batch_id)
        store.close()
        assert document["transactions"][0]["hold_id"] == "gwA-a7-1"
        assert client.post_batch(document)["status"] == "posted"
        card = client.card(CARD)
        earned = approved.get("points", 0)
        assert (card["points"], card["held_points"]) == (50 + earned, 0)
        assert client.hold("gwA-a7-1")["posted_points"] == 150
        # B asks again: still refused, the points are gone.
        again = decide(book_b, holds_b, sale(150, terminal="B1", time_s=now_s), now_s)
        assert again == {"approved": False, "reason": "insufficient_points"}
        assert all(row["points"] >= 0 for row in client.balances())
        assert set(client.trial_balance().values()) == {0}
    finally:
        server.stop()
