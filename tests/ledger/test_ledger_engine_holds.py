"""A hold is judged by the card's kept engine state beside its books (hold_rules
check_engine, ledger/card_engine.py hold_terms): points past their lot's expiry, not yet
posted as lapsed, are not held (insufficient_points), nor is value that has expired
(card_expired). A ledger without the programs, or a card without a kept state, is judged by
its books alone. Every test runs on SQLite and on PostgreSQL.

By hand (examples/programs.toml): coffee earns 5 % in points, 10 points a euro, and a lot
expires 90 days after its earn day; a purchase of 200.00 in cash earns 200.00 * 5 % = 10.00
= 100 points. The gift card's value expires 365 days after its issue.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from ledger import Books, open_books
from ledger.errors import HoldRefused
from tests.ledger.builders import EngineShop, at, hold_request
from tests.support import REPO_ROOT
from tools.programs import load_programs

PROGRAMS = load_programs(REPO_ROOT / "examples" / "programs.toml")
START_S = at("2025-03-01", hour=0)
DAY_S = 86_400


class Clock:
    def __init__(self) -> None:
        self.day = 0

    def __call__(self) -> float:
        return START_S + self.day * DAY_S + 3600  # 01:00 on the engine day


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def opened(dsn: str, clock: Clock) -> Iterator[Callable[[bool], Books]]:
    """Books with the example programs (the ledger keeps engine states), or without."""
    made: list[Books] = []

    def open_(with_programs: bool = True) -> Books:
        books = open_books(dsn, clock, PROGRAMS if with_programs else None)
        made.append(books)
        return books

    yield open_
    for books in made:
        books.close()


def points_hold(hold_id: str, card: str, points: int) -> dict[str, object]:
    return hold_request(hold_id, card, 0, points=points)


def refusal(books: Books, document: dict[str, object]) -> str:
    with pytest.raises(HoldRefused) as caught:
        books.place_hold(document)
    return caught.value.reason


def coffee_card(books: Books, card: str = "K1") -> EngineShop:
    """K1 earns 100 points on day 0 and 50 on day 30 (purchases of 200.00 and 100.00)."""
    shop = EngineShop(books, PROGRAMS["coffee"], START_S)
    shop.post(card, {"op": "issue", "id": "i1", "card": card})
    shop.post(card, {"op": "purchase", "id": "p1", "amount_minor": 20_000})
    shop.post(card, {"op": "purchase", "id": "p2", "amount_minor": 10_000}, day=30)
    return shop


def test_points_past_their_expiry_are_not_held_though_the_books_still_have_them(
        opened: Callable[[bool], Books], clock: Clock) -> None:
    """Day 89: all 150 live. Day 90: day 0's 100 expired (no lapse posted: the books still
    say 150), so 50 are held and the 51st refused; the answer leaves 0 live points. Day 120:
    day 30's lot expired too: nothing."""
    books = opened(True)
    coffee_card(books)
    clock.day = 89
    first = books.place_hold(points_hold("H1", "K1", 150))
    assert (first.status, first.available_points) == ("open", 0)
    books.void_hold("H1")
    clock.day = 90
    assert books.card_balance("K1")["points"] == 150
    assert refusal(books, points_hold("H2", "K1", 51)) == "insufficient_points"
    placed = books.place_hold(points_hold("H3", "K1", 40))
    assert placed.available_points == 10  # live 50 - 40 (the books alone would say 110)
    assert refusal(books, points_hold("H4", "K1", 11)) == "insufficient_points"
    books.void_hold("H3")
    clock.day = 120
    assert refusal(books, points_hold("H5", "K1", 1)) == "insufficient_points"


def test_a_ledger_without_the_programs_holds_what_the_books_say(
        opened: Callable[[bool], Books], clock: Clock) -> None:
    books = opened(False)
    coffee_card(books)
    clock.day = 120
    assert books.place_hold(points_hold("H1", "K1", 150)).status == "open"


def test_a_hold_of_value_on_an_expired_gift_card_is_card_expired(
        opened: Callable[[bool], Books], clock: Clock) -> None:
    """Issued with 50.00 on day 0: day 364 a hold of 10.00 is placed (and voided); day 365
    the value has expired (the books still hold it): card_expired."""
    books = opened(True)
    shop = EngineShop(books, PROGRAMS["gift"], START_S)
    shop.post("G1", {"op": "issue", "id": "i1", "card": "G1", "value_minor": 5000})
    clock.day = 364
    assert books.place_hold(hold_request("H1", "G1", 1000)).status == "open"
    books.void_hold("H1")
    clock.day = 365
    assert books.card_balance("G1")["value_minor"] == 5000
    assert refusal(books, hold_request("H2", "G1", 1000)) == "card_expired"
    # A replay of the hold placed before is answered as before, whatever the day.
    assert books.place_hold(hold_request("H1", "G1", 1000)).status == "voided"


def test_a_card_whose_state_is_not_kept_is_judged_by_its_books(
        opened: Callable[[bool], Books], clock: Clock) -> None:
    """The card's program is not in the ledger's programs file: no state is kept."""
    books = opened(True)
    shop = EngineShop(books, dict(PROGRAMS["coffee"], id="elsewhere"), START_S)
    shop.post("E1", {"op": "issue", "id": "i1", "card": "E1"})
    shop.post("E1", {"op": "purchase", "id": "p1", "amount_minor": 20_000})
    clock.day = 200
    assert books.place_hold(points_hold("H1", "E1", 100)).status == "open"
