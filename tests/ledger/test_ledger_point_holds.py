"""Holds of points: placed, refused, replayed, voided, expired and posted like holds of value.

Every test that touches books runs on SQLite and on PostgreSQL; the clock is injected so
expiry is exact. Card C1 holds 4000 EUR and 200 points unless a test says otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ledger import BatchInvalid, Books, LedgerRejected, open_books
from ledger.client import LedgerClient
from ledger.db import open_database
from ledger.errors import HoldRefused
from ledger.limits import POINTS_MAX
from ledger.server import LedgerServer, serve
from ledger.validate import parse_hold_request
from tests.ledger.builders import (
    assert_balanced,
    assert_txn_refused,
    batch,
    hold_request,
    issue,
    purchase,
)

START_S = 1_763_900_000
POINT_VALUE_MINOR = 10
"""What one redeemed point is worth in these tests' legs."""


class Clock:
    """A clock the test moves by hand (Unix seconds)."""

    def __init__(self, now_s: float = START_S) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s

    def advance(self, seconds: float) -> None:
        self.now_s += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def earning() -> dict[str, Any]:
    """C1 issued with 5000, then a purchase of 1000 from the card earning 200 points."""
    return batch("gw1-0", issue("T1-1", amount_minor=5000),
                 purchase("T1-2", card_value_minor=1000, points=200))


@pytest.fixture
def held(dsn: str, clock: Clock) -> Iterator[Books]:
    """Books on `clock` where card C1 has 4000 EUR and 200 points."""
    books = open_books(dsn, clock)
    books.post_batch(earning())
    yield books
    books.close()


def redeeming(txn_id: str, redeem: int, card_value_minor: int = 0, **fields: Any
              ) -> dict[str, Any]:
    """A purchase that redeemed `redeem` points (worth POINT_VALUE_MINOR each) and paid
    `card_value_minor` from the card, with the engine's legs; earns nothing."""
    worth = redeem * POINT_VALUE_MINOR
    legs = [
        ["card_points", "PTS", redeem, "redeem"],
        ["promotion_expense", "PTS", -redeem, "redeem"],
        ["promotion_expense", "EUR", worth, "redeem"],
        ["merchant_settlement", "EUR", -worth, "redeem"],
    ]
    if card_value_minor:
        legs[:0] = [["card_value", "EUR", card_value_minor, "spend"],
                    ["merchant_settlement", "EUR", -card_value_minor, "spend"]]
    return purchase(txn_id, card_value_minor=card_value_minor, points=0,
                    amount_minor=card_value_minor + worth, redeem_points=redeem,
                    discount_minor=0, version=1, legs=legs, **fields)


def funds(books: Books, card: str = "C1") -> dict[str, int]:
    """The card's value, points, and what is held and available of each."""
    balance = books.card_balance(card)
    assert balance is not None
    keys = ("value_minor", "held_minor", "available_minor", "points", "held_points",
            "available_points")
    return {key: balance[key] for key in keys}


def rejected(call: Any, *args: Any) -> LedgerRejected:
    with pytest.raises(LedgerRejected) as caught:
        call(*args)
    return caught.value


# -- placing ----------------------------------------------------------------------------------


def test_a_hold_of_points_only_takes_points_off_the_available_points(held: Books) -> None:
    """amount_minor 0 with points: the points are held, the value is untouched."""
    answer = held.place_hold(hold_request("H1", amount_minor=0, points=150))
    assert answer.created
    assert answer.to_json() == {"hold_id": "H1", "status": "open", "available_minor": 4000,
                                "available_points": 50}
    assert funds(held) == {"value_minor": 4000, "held_minor": 0, "available_minor": 4000,
                           "points": 200, "held_points": 150, "available_points": 50}
    detail = held.hold("H1")
    assert detail is not None
    assert (detail["amount_minor"], detail["points"], detail["status"]) == (0, 150, "open")


def test_a_hold_of_value_and_points_holds_both(held: Books) -> None:
    """One hold, both parts: each counts against its own balance."""
    held.place_hold(hold_request("H1", amount_minor=1000, points=50))
    assert funds(held) == {"value_minor": 4000, "held_minor": 1000, "available_minor": 3000,
                           "points": 200, "held_points": 50, "available_points": 150}
    assert held.hold_totals()["open"] == 1


def test_points_beyond_the_available_points_are_insufficient_points(held: Books) -> None:
    """Available points count the other open holds; a refusal records nothing."""
    held.place_hold(hold_request("H1", amount_minor=0, points=150))
    refusal = rejected(held.place_hold, hold_request("H2", amount_minor=0, points=51))
    assert isinstance(refusal, HoldRefused)
    assert (refusal.reason, refusal.http_status) == ("insufficient_points", 409)
    assert held.hold("H2") is None
    # The value part alone would fit; the hold is refused whole.
    refusal = rejected(held.place_hold, hold_request("H3", amount_minor=10, points=51))
    assert refusal.reason == "insufficient_points"
    assert held.place_hold(hold_request("H4", amount_minor=0, points=50)).available_points == 0
    assert funds(held)["available_points"] == 0
    # A hold of value only asks for no points: still placed.
    assert held.place_hold(hold_request("H5", amount_minor=100)).created


def test_a_hold_of_points_only_is_placed_on_a_card_whose_value_went_below_zero(
    held: Books,
) -> None:
    """It asks no value, so an offline overdraft does not refuse it."""
    held.post_batch(batch("gw1-1", purchase("T1-3", card_value_minor=4500, points=0)))
    assert funds(held)["available_minor"] == -500
    assert held.place_hold(hold_request("H1", amount_minor=0, points=100)).created


def test_a_replay_with_other_points_is_a_conflict_and_the_same_is_a_replay(held: Books) -> None:
    """The points are part of the hold's content hash."""
    first = held.place_hold(hold_request("H1", amount_minor=0, points=100))
    refusal = rejected(held.place_hold, hold_request("H1", amount_minor=0, points=101))
    assert (refusal.reason, refusal.http_status) == ("hold_conflict", 409)
    assert [alarm["reason"] for alarm in held.alarms()] == ["hold_conflict"]
    again = held.place_hold(hold_request("H1", amount_minor=0, points=100))
    assert (again.created, again.to_json()) == (False, first.to_json())
    # A hold of value only asked again with points is another hold, and the other way round.
    held.place_hold(hold_request("H2", amount_minor=500))
    assert rejected(held.place_hold,
                    hold_request("H2", amount_minor=500, points=1)).reason == "hold_conflict"
    assert rejected(held.place_hold, hold_request("H1", amount_minor=100)).reason == (
        "hold_conflict")
    assert funds(held)["held_points"] == 100


def test_points_zero_is_the_same_hold_as_no_points() -> None:
    """"points": 0 hashes as the body without it: a hold of value only keeps the hash it had
    before holds held points, so a gateway resending it is answered as a replay."""
    plain = parse_hold_request(hold_request("H1", amount_minor=500))
    zero = parse_hold_request(hold_request("H1", amount_minor=500, points=0))
    assert plain == zero and not plain.holds_points
    with_points = parse_hold_request(hold_request("H1", amount_minor=500, points=1))
    assert with_points.content_hash != plain.content_hash


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"amount_minor": 0, "points": 0}, "amount_invalid"),
        ({"amount_minor": 0}, "amount_invalid"),
        ({"points": -1}, "amount_invalid"),
        ({"points": POINTS_MAX + 1}, "amount_invalid"),
        ({"points": 1.0}, "field_type"),
        ({"points": True}, "field_type"),
        ({"points": None}, "field_type"),
        ({"amount_minor": -1, "points": 5}, "amount_invalid"),
    ],
    ids=lambda value: str(value),
)
def test_malformed_points_are_refused(change: dict[str, Any], reason: str) -> None:
    """A hold holds value or points or both; points are an exact non-negative integer."""
    with pytest.raises(BatchInvalid) as caught:
        parse_hold_request(hold_request("H1") | change)
    assert caught.value.reason == reason


# -- voiding and expiry -----------------------------------------------------------------------


def test_voiding_a_points_hold_frees_its_points_and_value(held: Books, clock: Clock) -> None:
    held.place_hold(hold_request("H1", amount_minor=700, points=120))
    clock.advance(10)
    answer = held.void_hold("H1")
    assert answer.to_json() == {"hold_id": "H1", "status": "voided", "available_minor": 4000,
                                "available_points": 200}
    assert held.void_hold("H1").to_json() == answer.to_json()
    assert funds(held)["held_points"] == 0
    assert held.hold("H1")["closed_at"] == START_S + 10  # type: ignore[index]
    sale = batch("gw1-1", redeeming("T1-3", 100, hold_id="H1"))
    assert_txn_refused(held, sale, "hold_voided")


def test_a_points_hold_expires_after_its_ttl_and_the_sweep_marks_it(
    held: Books, clock: Clock
) -> None:
    held.place_hold(hold_request("H1", amount_minor=0, points=200, ttl_s=60))
    held.place_hold(hold_request("H2", amount_minor=100, ttl_s=60))
    clock.advance(59)
    assert funds(held)["available_points"] == 0
    clock.advance(1)
    assert funds(held)["available_points"] == 200
    assert held.hold("H1")["status"] == "expired"  # type: ignore[index]
    assert held.hold_totals() == {"open": 0, "posted": 0, "voided": 0, "expired": 2,
                                  "posted_late": 0}
    assert held.expire_holds() == 2
    assert held.expire_holds() == 0
    # The points are free again for a new hold.
    assert held.place_hold(hold_request("H3", amount_minor=0, points=200)).available_points == 0


# -- settlement -------------------------------------------------------------------------------


def test_settlement_posts_the_points_hold_and_releases_the_rest(
    held: Books, clock: Clock
) -> None:
    """A purchase redeeming fewer points than held posts the hold; the rest is free again."""
    held.place_hold(hold_request("H1", amount_minor=500, points=150))
    clock.advance(5)
    result = held.post_batch(batch("gw1-1", redeeming("T1-3", 120, 400, hold_id="H1")))
    assert (result.status, result.posted) == ("posted", 1)
    detail = held.hold("H1")
    assert detail is not None
    assert (detail["status"], detail["posted_txn_id"], detail["posted_minor"],
            detail["released_minor"], detail["posted_points"], detail["released_points"]) == (
        "posted", "T1-3", 400, 100, 120, 30)
    assert funds(held) == {"value_minor": 3600, "held_minor": 0, "available_minor": 3600,
                           "points": 80, "held_points": 0, "available_points": 80}
    assert held.hold_totals()["posted"] == 1
    assert_balanced(held)
    # Sent again: a duplicate, nothing changes.
    assert held.post_batch(batch("gw1-1", redeeming("T1-3", 120, 400, hold_id="H1"))
                           ).status == "duplicate"
    assert funds(held)["points"] == 80


def test_settlement_refuses_redeeming_more_points_than_held(held: Books) -> None:
    """More points than the hold holds is hold_exceeded; the hold stays open, nothing posts."""
    held.place_hold(hold_request("H1", amount_minor=0, points=100))
    before = held.hold("H1")
    assert_txn_refused(held, batch("gw1-1", redeeming("T1-3", 101, hold_id="H1")),
                       "hold_exceeded")
    assert held.hold("H1") == before
    assert funds(held)["points"] == 200
    # A hold of value only holds no points: a sale naming it redeems none.
    held.place_hold(hold_request("H2", amount_minor=1000))
    assert_txn_refused(held, batch("gw1-2", redeeming("T1-4", 10, 500, hold_id="H2")),
                       "hold_exceeded")
    # Exactly what is held posts.
    assert held.post_batch(batch("gw1-3", redeeming("T1-5", 100, hold_id="H1"))).posted == 1
    assert funds(held)["points"] == 100


def test_an_expired_points_hold_is_still_posted_and_counted_late(
    held: Books, clock: Clock
) -> None:
    held.place_hold(hold_request("H1", amount_minor=0, points=100, ttl_s=60))
    clock.advance(600)
    held.post_batch(batch("gw1-1", redeeming("T1-3", 100, hold_id="H1")))
    detail = held.hold("H1")
    assert detail is not None
    assert (detail["status"], detail["posted_late"], detail["released_points"]) == (
        "posted", True, 0)
    assert held.hold_totals()["posted_late"] == 1
    assert rejected(held.void_hold, "H1").reason == "hold_posted"


def test_two_stores_cannot_redeem_the_same_points(held: Books) -> None:
    """200 points: 150 held for store A, then 150 asked by store B is refused; A settles,
    B's points never went below zero."""
    held.place_hold(hold_request("gwA-a1-1", amount_minor=0, points=150))
    refusal = rejected(held.place_hold, hold_request("gwB-a1-1", amount_minor=0, points=150))
    assert refusal.reason == "insufficient_points"
    held.post_batch(batch("gwA-1", redeeming("A1-1", 150, hold_id="gwA-a1-1")))
    assert funds(held)["points"] == 50
    assert rejected(held.place_hold,
                    hold_request("gwB-a1-2", amount_minor=0, points=150)).reason == (
        "insufficient_points")


# -- books made before holds held points ------------------------------------------------------

NEW_TABLES = ("reward_holds", "point_hold_postings", "point_holds")
"""The tables this change added (and the later reward_holds, which references them), dropped
to make books as they were before it (the referencing tables first)."""


def test_books_made_before_holds_held_points_gain_them_on_open(dsn: str, clock: Clock) -> None:
    """Books without point_holds: a hold of value placed then is replayed, voided and posted
    as before; points are held in the table created on open; reopening changes nothing."""
    books = open_books(dsn, clock)
    try:
        books.post_batch(earning())
        books.place_hold(hold_request("OLD1", amount_minor=1000))
        books.place_hold(hold_request("OLD2", amount_minor=500))
    finally:
        books.close()
    database = open_database(dsn)
    try:
        for table in NEW_TABLES:
            database.execute(f"DROP TABLE {table}")
    finally:
        database.close()
    for attempt in range(2):
        books = open_books(dsn, clock)
        try:
            if attempt == 0:
                replay = books.place_hold(hold_request("OLD1", amount_minor=1000))
                assert (replay.created, replay.available_minor) == (False, 3000)
                assert replay.available_points == 200
                assert books.place_hold(
                    hold_request("NEW1", amount_minor=200, points=150)).available_points == 50
                assert books.void_hold("OLD2").available_points == 50
                books.post_batch(batch("gw1-1", purchase("T1-3", card_value_minor=900,
                                                         points=0, hold_id="OLD1")))
                books.post_batch(batch("gw1-2", redeeming("T1-4", 150, 200, hold_id="NEW1")))
            assert funds(books) == {"value_minor": 2900, "held_minor": 0,
                                    "available_minor": 2900, "points": 50, "held_points": 0,
                                    "available_points": 50}
            assert books.hold_totals() == {"open": 0, "posted": 2, "voided": 1, "expired": 0,
                                           "posted_late": 0}
            assert_balanced(books)
        finally:
            books.close()


# -- HTTP -------------------------------------------------------------------------------------


@pytest.fixture
def server(dsn: str, clock: Clock) -> Iterator[LedgerServer]:
    running = serve(dsn, clock=clock)
    running.books.post_batch(earning())
    yield running
    running.stop()


def test_http_points_holds_through_the_client(server: LedgerServer) -> None:
    """POST /v1/holds with points; GET /v1/cards/<card> shows held and available points;
    insufficient_points comes back typed."""
    client = LedgerClient(server.url, timeout_s=30)
    answer = client.place_hold("H1", "C1", "EUR", 0, 120, "T1", "M1", points=150)
    assert answer == {"hold_id": "H1", "status": "open", "available_minor": 4000,
                      "available_points": 50}
    card = client.card("C1")
    assert (card["points"], card["held_points"], card["available_points"]) == (200, 150, 50)
    with pytest.raises(HoldRefused) as caught:
        client.place_hold("H2", "C1", "EUR", 0, 120, "T1", "M1", points=51)
    assert (caught.value.reason, caught.value.http_status) == ("insufficient_points", 409)
    assert client.hold("H1")["points"] == 150
    assert client.void_hold("H1")["available_points"] == 200
