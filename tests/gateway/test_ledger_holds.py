"""Holds at the ledger: an approved purchase paid from card value is held there too, a refusal
declines, an unreachable ledger is stood in for within limits, settlement names the hold the
sale used, and holds no sale will post are voided."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway import batches, ledger_holds
from gateway.authorize import decide
from gateway.cards import LEDGER_HOLD_FIELD, CardBook, record_till_amounts
from gateway.ledger_holds import HoldSettings, LedgerHolds, ledger_hold_id
from gateway.settle import batch_document
from gateway.store import STATUS_ACCEPTED, GatewayStore, StoredRecord
from gateway.store_health import StoreUnavailable
from ledger.errors import BatchInvalid, HoldRefused, LedgerUnavailable, NotFound
from protocol import txn
from protocol.errors import ValidationError
from protocol.programs import validate_programs
from tests.support.card_loads import approve_load

PROGRAMS = validate_programs({"programs": {
    "gift": {"version": 1, "currency": "EUR", "gift": {}},
    "prepaid": {"version": 1, "currency": "EUR", "prepaid": {}},
    "wallet": {"version": 1, "currency": "EUR", "prepaid": {"cash_out": True}},
}})
NOW_S = 1_700_000_000.0
CARD, OTHER = "c1", "c2"


class FakeLedger:
    """The hold calls of `LedgerClient`, on an in-memory card table, with switchable failures."""

    def __init__(self, cards: dict[str, int]) -> None:
        self.cards = dict(cards)  # settled value per card
        self.holds: dict[str, dict[str, Any]] = {}
        self.placed: list[dict[str, Any]] = []  # every place_hold call, answered or not
        self.voided: list[str] = []
        self.down = False
        self.lose_answers = False  # place the hold, then fail as a timeout would
        self.refuse_with: Exception | None = None
        self.during_call: Callable[[], None] = lambda: None

    def available(self, card: str) -> int:
        held = sum(h["amount_minor"] for h in self.holds.values()
                   if h["card"] == card and h["status"] == "open")
        return self.cards[card] - held

    def place_hold(self, hold_id: str, card: str, currency: str, amount_minor: int,
                   ttl_s: int, terminal: str, merchant: str,
                   points: int = 0) -> dict[str, Any]:
        self.during_call()
        self.placed.append({"hold_id": hold_id, "card": card, "currency": currency,
                            "amount_minor": amount_minor, "ttl_s": ttl_s,
                            "terminal": terminal, "merchant": merchant})
        if self.down:
            raise LedgerUnavailable("connection refused")
        if self.refuse_with is not None:
            raise self.refuse_with
        if card not in self.cards:
            raise NotFound("card_unknown", card)
        if self.available(card) < amount_minor:
            raise HoldRefused("insufficient_value", card)
        self.holds[hold_id] = {"card": card, "amount_minor": amount_minor, "status": "open"}
        if self.lose_answers:
            raise LedgerUnavailable("timed out")
        return {"hold_id": hold_id, "status": "open", "available_minor": self.available(card)}

    def void_hold(self, hold_id: str) -> dict[str, Any]:
        if self.down:
            raise LedgerUnavailable("connection refused")
        if hold_id not in self.holds:
            raise NotFound("hold_unknown", hold_id)
        self.holds[hold_id]["status"] = "voided"
        self.voided.append(hold_id)
        return {"hold_id": hold_id, "status": "voided", "available_minor": 0}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def record(kind: int, value: int, seq: int, card: str = CARD, **extra: Any) -> dict[str, Any]:
    fields = {"terminal": "T1", "seq": seq, "prev": bytes(32), "time": int(NOW_S),
              "merchant": "M1", "card": card, "kind": kind, "currency": "EUR",
              "amount_minor": value, "card_value_minor": value, "bonus_minor": 0, "points": 0,
              "auth_mode": txn.AUTH_ONLINE}
    fields.update(extra)
    return fields


def apply(book: CardBook, fields: dict[str, Any],
          kept: dict[str, Any] | None = None) -> dict[str, Any]:
    with book.lock:
        if kept is None:
            approve_load(book, fields)
        counter = book.check(fields, kept)
        fields.update(book.apply(fields, counter))
    return fields


def book_with(*cards: tuple[str, str, int]) -> CardBook:
    # Sold through a book of their own: the approvals that issued them take no auth ids
    # from the book under test.
    seller = CardBook(PROGRAMS)
    for seq, (card, program, value) in enumerate(cards, start=100):
        apply(seller, record(txn.KIND_ISSUE, value, seq, card, program=program))
    return CardBook(PROGRAMS, seller.cards, auth_epoch=7)


def request(value: int, card: str = CARD, kind: int = txn.KIND_PURCHASE) -> dict[str, Any]:
    return {"terminal": "T1", "request": 1, "time": int(NOW_S), "merchant": "M1",
            "card": card, "kind": kind, "currency": "EUR", "amount_minor": value,
            "card_value_minor": value}


def setup(ledger_cards: dict[str, int], *cards: tuple[str, str, int],
          settle: Callable[[], object] | None = None,
          **settings: Any) -> tuple[CardBook, FakeLedger, LedgerHolds, Clock]:
    book = book_with(*cards)
    ledger = FakeLedger(ledger_cards)
    clock = Clock()
    holds = LedgerHolds("gw1", book, ledger, HoldSettings(**settings), settle, clock=clock)
    holds.stand_in.fresh()  # the card book has just heard from the ledger (its feed)
    return book, ledger, holds, clock


def test_an_approved_purchase_is_held_at_the_ledger_under_an_id_unique_to_the_gateway() -> None:
    book, ledger, holds, _ = setup({CARD: 5000}, (CARD, "gift", 5000))
    decision = decide(book, holds, request(1200), NOW_S)
    assert decision["approved"] and "auth_mode" not in decision  # online
    assert decision["auth_id"] == "a7-1"
    assert ledger.placed == [{"hold_id": "gw1-a7-1", "card": CARD, "currency": "EUR",
                              "amount_minor": 1200, "ttl_s": ledger_holds.LEDGER_HOLD_TTL_S,
                              "terminal": "T1", "merchant": "M1"}]
    # The local hold stays: it guards this store's terminals against each other.
    assert book.holds.get("a7-1").value_minor == 1200
    assert book.holds.get("a7-1").ledger_hold_id == "gw1-a7-1"


def test_the_ledger_is_asked_without_the_card_book_lock_held() -> None:
    book, ledger, holds, _ = setup({CARD: 5000}, (CARD, "gift", 5000))
    seen: list[bool] = []
    ledger.during_call = lambda: seen.append(book.lock.locked())
    assert decide(book, holds, request(100), NOW_S)["approved"]
    assert seen == [False]


def test_only_purchases_paid_from_card_value_are_held_at_the_ledger() -> None:
    book, ledger, holds, _ = setup({CARD: 5000}, (CARD, "prepaid", 5000))
    assert decide(book, holds, dict(request(500), card_value_minor=0), NOW_S)["approved"]
    assert decide(book, holds, dict(request(300, kind=txn.KIND_TOPUP), card_value_minor=0),
                  NOW_S)["approved"]
    assert decide(book, holds, request(0, kind=txn.KIND_INQUIRY), NOW_S)["approved"]
    assert ledger.placed == []


def test_a_refusal_by_the_ledger_declines_and_releases_the_local_hold() -> None:
    settled: list[int] = []
    book, ledger, holds, _ = setup({CARD: 1000}, (CARD, "gift", 5000),
                                   settle=lambda: settled.append(1))
    # The card book (stale) thinks 5000; the ledger knows it was spent elsewhere.
    decision = decide(book, holds, request(3000), NOW_S)
    assert decision == {"approved": False, "reason": "insufficient_value"}
    assert len(book.holds) == 0
    assert settled == [1] and len(ledger.placed) == 2  # settled, asked once more, refused


def test_a_top_up_loaded_today_and_spent_at_once_is_approved_after_settling() -> None:
    book, ledger, holds, _ = setup({CARD: 1000}, (CARD, "prepaid", 1000))
    apply(book, record(txn.KIND_TOPUP, 3000, 1))  # not settled: the ledger still says 1000

    def settle() -> None:
        ledger.cards[CARD] += 3000  # what settling the top-up tells the ledger

    holds.settle = settle
    decision = decide(book, holds, request(3500), NOW_S)
    assert decision["approved"] and "auth_mode" not in decision
    assert [call["amount_minor"] for call in ledger.placed] == [3500, 3500]
    # The top-up's approval was a7-1; the sale's hold, of the full amount, is postable.
    assert ledger.holds["gw1-a7-2"]["amount_minor"] == 3500


def test_a_card_the_ledger_never_saw_is_decided_by_the_card_book_alone() -> None:
    settled: list[int] = []
    book, ledger, holds, _ = setup({}, (CARD, "gift", 5000), settle=lambda: settled.append(1))
    decision = decide(book, holds, request(1200), NOW_S)
    assert decision["approved"] and "auth_mode" not in decision
    assert settled == [] and ledger.holds == {}
    sale = apply(book, record(txn.KIND_PURCHASE, 1200, 1, auth_id=decision["auth_id"]))
    assert LEDGER_HOLD_FIELD not in sale


@pytest.mark.parametrize(("refusal", "reason"), [
    (BatchInvalid("currency_mismatch", "USD card"), "currency_mismatch"),
    (HoldRefused("hold_conflict", "id reused"), "ledger_refused"),
    (HoldRefused("card_blocked", "blocked centrally"), "card_blocked"),
    (HoldRefused("company_budget", "ACME: 100 asked, 0 left"), "company_budget"),
    (HoldRefused("reward_out_of_stock", "mug at M1: 2 counted, 2 held"), "reward_out_of_stock"),
    (HoldRefused("card_expired", "its value has expired"), "card_expired"),
])
def test_other_refusals_decline_with_a_protocol_reason(refusal: Exception, reason: str) -> None:
    book, ledger, holds, _ = setup({CARD: 5000}, (CARD, "gift", 5000))
    ledger.refuse_with = refusal
    assert decide(book, holds, request(100), NOW_S) == {"approved": False, "reason": reason}
    assert len(book.holds) == 0


def test_an_unreachable_ledger_is_stood_in_for_within_the_limits() -> None:
    book, ledger, holds, _ = setup({}, (CARD, "gift", 30_000), (OTHER, "gift", 30_000))
    ledger.down = True
    first = decide(book, holds, request(5000), NOW_S)
    assert first["approved"] and first["auth_mode"] == txn.AUTH_STAND_IN
    assert first["value_minor"] == 25_000
    over_txn = decide(book, holds, request(5001, OTHER), NOW_S)
    assert over_txn == {"approved": False, "reason": "stand_in_limit"}
    assert decide(book, holds, request(5000), NOW_S)["approved"]  # 10000: the card's limit
    over_card = decide(book, holds, request(1), NOW_S)
    assert over_card == {"approved": False, "reason": "stand_in_limit"}
    assert decide(book, holds, request(1, OTHER), NOW_S)["approved"]  # another card's count
    # Declined stand-ins leave no local hold behind; approved ones keep theirs.
    kept = [h.value_minor for card in (CARD, OTHER) for _, h in book.holds.of_card(card)]
    assert sorted(kept) == [1, 5000, 5000]


def test_the_stand_in_limits_are_settings() -> None:
    book, ledger, holds, _ = setup({}, (CARD, "gift", 30_000), stand_in_txn_minor_max=100,
                                   stand_in_card_minor_max=150)
    ledger.down = True
    assert decide(book, holds, request(101), NOW_S)["reason"] == "stand_in_limit"
    assert decide(book, holds, request(100), NOW_S)["approved"]
    assert decide(book, holds, request(51), NOW_S)["reason"] == "stand_in_limit"


def test_the_whole_store_stands_in_for_at_most_its_limit() -> None:
    book, ledger, holds, _ = setup({}, (CARD, "gift", 30_000), (OTHER, "gift", 30_000),
                                   stand_in_store_minor_max=7_000)
    ledger.down = True
    assert decide(book, holds, request(5_000), NOW_S)["approved"]
    assert decide(book, holds, request(2_001, OTHER), NOW_S)["reason"] == "stand_in_limit"
    assert decide(book, holds, request(2_000, OTHER), NOW_S)["approved"]
    assert holds.stats.snapshot()["ledger_hold.stand_in_refused.store"] == 1


def test_no_stand_in_on_a_card_book_not_heard_from_the_ledger_for_too_long() -> None:
    book, ledger, holds, clock = setup({}, (CARD, "gift", 30_000),
                                       stand_in_snapshot_age_max_s=600)
    ledger.down = True
    clock.now += 600
    assert decide(book, holds, request(100), NOW_S)["approved"]
    clock.now += 1
    assert decide(book, holds, request(100), NOW_S)["reason"] == "stand_in_limit"
    holds.stand_in.fresh()  # a read of the card feed: other stores' spending is known again
    assert decide(book, holds, request(100), NOW_S)["auth_mode"] == txn.AUTH_STAND_IN
    assert holds.stats.snapshot()["ledger_hold.stand_in_refused.stale"] == 1


def test_a_gateway_that_never_heard_from_the_ledger_does_not_stand_in() -> None:
    book = book_with((CARD, "gift", 30_000))
    ledger = FakeLedger({})
    ledger.down = True
    holds = LedgerHolds("gw1", book, ledger, HoldSettings(), clock=Clock())
    assert decide(book, holds, request(100), NOW_S) == {"approved": False,
                                                         "reason": "stand_in_limit"}
    assert list(book.holds.of_card(CARD)) == []


def test_stand_in_counts_start_again_once_the_ledger_answers() -> None:
    book, ledger, holds, clock = setup({CARD: 30_000}, (CARD, "gift", 30_000))
    ledger.down = True
    for _ in range(2):
        assert decide(book, holds, request(5000), NOW_S)["auth_mode"] == txn.AUTH_STAND_IN
    assert decide(book, holds, request(1), NOW_S)["reason"] == "stand_in_limit"
    ledger.down = False
    clock.now += ledger_holds.LEDGER_RETRY_MAX_S
    assert "auth_mode" not in decide(book, holds, request(100), NOW_S)  # held online
    ledger.down = True
    clock.now += ledger_holds.LEDGER_RETRY_MAX_S
    assert decide(book, holds, request(5000), NOW_S)["auth_mode"] == txn.AUTH_STAND_IN


def test_after_an_unanswered_call_the_ledger_rests_for_a_doubling_while() -> None:
    book, ledger, holds, clock = setup({CARD: 30_000}, (CARD, "gift", 30_000),
                                       stand_in_card_minor_max=30_000)
    ledger.down = True
    decide(book, holds, request(10), NOW_S)
    decide(book, holds, request(10), NOW_S)  # within the first second: not asked
    assert len(ledger.placed) == 1
    clock.now += ledger_holds.LEDGER_RETRY_MIN_S
    decide(book, holds, request(10), NOW_S)
    clock.now += ledger_holds.LEDGER_RETRY_MIN_S  # the wait is now twice as long
    decide(book, holds, request(10), NOW_S)
    assert len(ledger.placed) == 2
    clock.now += ledger_holds.LEDGER_RETRY_MIN_S
    ledger.down = False
    assert "auth_mode" not in decide(book, holds, request(10), NOW_S)
    assert len(ledger.placed) == 3


def test_a_hold_placed_by_an_unanswered_call_is_voided_when_the_ledger_answers_again() -> None:
    book, ledger, holds, _ = setup({CARD: 5000}, (CARD, "gift", 5000))
    ledger.lose_answers = True
    decision = decide(book, holds, request(700), NOW_S)
    assert decision["auth_mode"] == txn.AUTH_STAND_IN
    assert holds.pending_voids() == ["gw1-a7-1"]
    ledger.down = True
    assert holds.sweep(NOW_S) == 0 and holds.pending_voids() == ["gw1-a7-1"]
    ledger.down = False
    assert holds.sweep(NOW_S) == 1
    assert ledger.voided == ["gw1-a7-1"] and holds.pending_voids() == []
    # The stand-in sale settles without naming the hold.
    sale = apply(book, record(txn.KIND_PURCHASE, 700, 1, auth_id="a7-1",
                              auth_mode=txn.AUTH_STAND_IN))
    assert LEDGER_HOLD_FIELD not in sale


def test_a_void_of_a_hold_the_ledger_never_placed_is_done() -> None:
    book, ledger, holds, _ = setup({CARD: 5000}, (CARD, "gift", 5000))
    ledger.down = True
    decide(book, holds, request(700), NOW_S)
    ledger.down = False
    assert holds.sweep(NOW_S) == 1 and holds.pending_voids() == []
    assert ledger.voided == []  # hold_unknown: nothing to release


def test_a_local_hold_that_expires_without_its_sale_is_voided_at_the_ledger() -> None:
    book, ledger, holds, _ = setup({CARD: 5000}, (CARD, "gift", 5000))
    answer = decide(book, holds, request(900), NOW_S)
    assert holds.sweep(NOW_S + 1) == 0  # still open
    assert holds.sweep(NOW_S + ledger_holds.HOLD_TTL_S) == 1
    assert ledger.voided == ["gw1-a7-1"] and len(book.holds) == 0
    # The sale arriving after all (checked against the kept authorization) settles
    # without the voided hold.
    kept = {"terminal": "T1", "card": CARD, "expect": record_till_amounts(answer)}
    late = apply(book, record(txn.KIND_PURCHASE, 900, 1, auth_id=answer["auth_id"]), kept)
    assert LEDGER_HOLD_FIELD not in late


def test_an_approval_whose_local_hold_ran_out_meanwhile_is_declined_and_voided_at_once() -> None:
    book, ledger, holds, _ = setup({CARD: 5000}, (CARD, "gift", 5000))

    def clock_jumps() -> None:
        with book.lock:
            book.holds.expire(NOW_S + 10 * ledger_holds.HOLD_TTL_S)

    ledger.during_call = clock_jumps
    decision = decide(book, holds, request(900), NOW_S)
    assert decision == {"approved": False, "reason": "host_unavailable"}
    assert ledger.voided == ["gw1-a7-1"] and holds.pending_voids() == []


def test_a_cash_out_is_held_at_the_ledger_and_its_record_posts_the_hold() -> None:
    book, ledger, holds, _ = setup({CARD: 5000}, (CARD, "wallet", 5000))
    answer = decide(book, holds, request(2000, kind=txn.KIND_CASHOUT), NOW_S)
    assert answer["approved"] and ledger.holds["gw1-" + answer["auth_id"]]["amount_minor"] == 2000
    paid = apply(book, record(txn.KIND_CASHOUT, 2000, 1, auth_id=answer["auth_id"], version=1))
    assert paid[LEDGER_HOLD_FIELD] == "gw1-" + answer["auth_id"]
    assert book.holds.take_lapsed() == []


def test_the_sale_records_the_hold_it_posts_only_if_it_can_post_it() -> None:
    book, _, holds, _ = setup({CARD: 9000}, (CARD, "gift", 9000))
    used = decide(book, holds, request(1000), NOW_S)["auth_id"]
    sale = apply(book, record(txn.KIND_PURCHASE, 1000, 1, auth_id=used))
    assert sale[LEDGER_HOLD_FIELD] == "gw1-a7-1"
    assert book.holds.take_lapsed() == []
    # A sale taking more than it was authorized for is refused (it is not what the gateway
    # answered); its hold then lapses unused, to be voided at the ledger.
    greedy = decide(book, holds, request(500), NOW_S)["auth_id"]
    with book.lock, pytest.raises(ValidationError) as refused:
        book.check(record(txn.KIND_PURCHASE, 600, 2, auth_id=greedy))
    assert refused.value.reason == "rule_mismatch"
    with book.lock:
        book.holds.expire(NOW_S + book.holds.ttl_s)
    assert book.holds.take_lapsed() == ["gw1-a7-2"]
    # An offline sale naming an authorization cannot post its ledger hold either.
    late = decide(book, holds, request(200), NOW_S)["auth_id"]
    sale = apply(book, record(txn.KIND_PURCHASE, 200, 3, auth_id=late,
                              auth_mode=txn.AUTH_OFFLINE))
    assert LEDGER_HOLD_FIELD not in sale
    assert book.holds.take_lapsed() == ["gw1-a7-3"]


def test_the_settlement_batch_names_the_hold_of_held_sales_only(tmp_path: Path) -> None:
    book, ledger, holds, _ = setup({CARD: 9000}, (CARD, "gift", 9000))
    store = GatewayStore(str(tmp_path / "gateway.db"))
    held = decide(book, holds, request(1000), NOW_S)["auth_id"]
    sales = [apply(book, record(txn.KIND_PURCHASE, 1000, 1, auth_id=held))]
    ledger.down = True
    stood_in = decide(book, holds, request(400), NOW_S)
    sales.append(apply(book, record(txn.KIND_PURCHASE, 400, 2, auth_id=stood_in["auth_id"],
                                    auth_mode=stood_in["auth_mode"])))
    sales.append(apply(book, record(txn.KIND_PURCHASE, 300, 3, auth_mode=txn.AUTH_OFFLINE)))
    store.commit([StoredRecord("T1", f["seq"], txn.txn_id("T1", f["seq"]), bytes(32), b"",
                               f, STATUS_ACCEPTED, None) for f in sales], {}, {}, {})
    batch_id = batches.open_batch(store, "gw1")
    assert batch_id is not None
    document = batch_document(store, "gw1", batch_id)
    entries = document["transactions"]
    assert entries[0]["hold_id"] == "gw1-a7-1" and entries[0]["auth"] == "online"
    assert "hold_id" not in entries[1] and entries[1]["auth"] == "stand_in"
    assert "hold_id" not in entries[2] and entries[2]["auth"] == "offline"
    # Sent again after a crash: the same bytes.
    assert json.dumps(batch_document(store, "gw1", batch_id)) == json.dumps(document)
    store.close()


def test_auth_ids_carry_the_gateway_start_so_they_never_repeat() -> None:
    assert CardBook(PROGRAMS, auth_epoch=1).holds.place(CARD, 1, NOW_S) == "a1-1"
    assert CardBook(PROGRAMS, auth_epoch=2).holds.place(CARD, 1, NOW_S) == "a2-1"
    assert ledger_hold_id("gw1", "a2-1") == "gw1-a2-1"


def test_a_local_hold_must_outlast_the_ledger_calls_made_for_it() -> None:
    with pytest.raises(ValueError, match="hold_ttl_s"):
        HoldSettings(hold_ttl_s=5, ledger_timeout_s=2)


def test_the_hold_is_kept_as_intended_before_the_ledger_is_asked_and_not_asked_if_it_cannot_be(
        ) -> None:
    """A gateway stopped between the ledger's answer and keeping the approval still knows
    the hold at its next start (tests/gateway/test_hold_recovery.py voids it); a store that
    cannot keep the intent means the ledger is not asked at all."""
    book, ledger, holds, _ = setup({CARD: 5000}, (CARD, "gift", 5000))
    intended: list[tuple[str, str]] = []

    def intend(hold_id: str, auth_id: str, asked: dict[str, Any]) -> None:
        assert ledger.placed == []  # before the ledger is asked
        intended.append((hold_id, auth_id))

    holds.on_placing = intend
    decision = decide(book, holds, request(1200), NOW_S)
    assert decision["approved"] and intended == [("gw1-a7-1", "a7-1")]
    assert len(ledger.placed) == 1

    def failing(hold_id: str, auth_id: str, asked: dict[str, Any]) -> None:
        raise StoreUnavailable("database is locked")

    holds.on_placing = failing
    declined = decide(book, holds, request(1000), NOW_S)
    assert declined == {"approved": False, "reason": "host_unavailable"}
    assert len(ledger.placed) == 1 and len(book.holds) == 1  # only the first sale's hold
