"""The ledger keeps each card's highest SUN read counter: a tap held or posted at one store is
refused when its read is replayed at another (docs/ledger.md, "SUN read counters").

Every test runs on SQLite and on PostgreSQL. Card C1 holds 5000 EUR and 10 points.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ledger import Books, LedgerRejected, open_books
from ledger.client import LedgerClient
from ledger.db import open_database
from ledger.errors import HoldRefused
from ledger.server import serve
from tests.ledger.builders import (
    batch,
    hold_request,
    issue,
    posted_rows,
    purchase,
    read_feed,
    txn,
)


@pytest.fixture
def card(dsn: str) -> Iterator[Books]:
    """Books where C1 was issued with 5000 EUR (no tap proved) and earned 10 points."""
    books = open_books(dsn)
    books.post_batch(batch("gw1-0", issue("T1-1", amount_minor=5000),
                           purchase("T1-2", card_value_minor=0, amount_minor=100, points=10)))
    yield books
    books.close()


def highest(books: Books, card: str = "C1") -> int | None:
    detail = books.card_detail(card)
    assert detail is not None
    counter: int | None = detail["sun_counter"]
    return counter


def refusal(call: Any, *args: Any) -> LedgerRejected:
    with pytest.raises(LedgerRejected) as caught:
        call(*args)
    return caught.value


def alarms(books: Books) -> int:
    return int(books.counts()["alarms"])


def test_a_card_no_tap_has_proved_shows_no_counter(card: Books) -> None:
    assert highest(card) is None


def test_a_hold_is_placed_only_for_a_read_counter_above_the_cards_highest(card: Books) -> None:
    assert card.place_hold(hold_request("gw1-a1-1", sun_counter=7)).status == "open"
    assert highest(card) == 7
    for hold_id, counter in (("gw2-a1-1", 7), ("gw2-a1-2", 6), ("gw2-a1-3", 0)):
        refused = refusal(card.place_hold, hold_request(hold_id, sun_counter=counter))
        assert isinstance(refused, HoldRefused)
        assert (refused.reason, refused.http_status) == ("card_replayed", 409)
        assert card.hold(hold_id) is None  # a refused hold records nothing
    assert highest(card) == 7
    assert card.place_hold(hold_request("gw2-a1-4", sun_counter=8)).status == "open"
    assert highest(card) == 8


def test_a_replayed_read_is_alarmed(card: Books) -> None:
    card.place_hold(hold_request("gw1-a1-1", sun_counter=7))
    before = alarms(card)
    refusal(card.place_hold, hold_request("gw2-a1-1", sun_counter=7))
    assert alarms(card) == before + 1


def test_a_hold_with_points_carries_its_counter_too(card: Books) -> None:
    """A hold with points is a point_holds row: its counter is kept on the card as well."""
    card.place_hold(hold_request("gw1-a1-1", amount_minor=0, points=5, sun_counter=3))
    assert highest(card) == 3
    refused = refusal(card.place_hold, hold_request("gw2-a1-1", points=5, sun_counter=3))
    assert refused.reason == "card_replayed"


def test_the_same_hold_sent_again_answers_the_same_and_another_counter_is_a_conflict(
        card: Books) -> None:
    first = card.place_hold(hold_request("gw1-a1-1", sun_counter=7))
    again = card.place_hold(hold_request("gw1-a1-1", sun_counter=7))
    assert (again.status, again.available_minor, again.created) == (
        "open", first.available_minor, False)
    other = refusal(card.place_hold, hold_request("gw1-a1-1", sun_counter=9))
    assert other.reason == "hold_conflict"
    assert highest(card) == 7


def test_a_hold_refused_for_its_value_uses_no_read(card: Books) -> None:
    """The gateway asks again under the same hold id after it settles (the lag rule): the
    tap of a refused hold must still be new then."""
    short = refusal(card.place_hold, hold_request("gw1-a1-1", amount_minor=9000,
                                                  sun_counter=4))
    assert short.reason == "insufficient_value"
    assert highest(card) is None
    card.post_batch(batch("gw1-1", txn("T1-3", "topup", amount_minor=5000,
                                       card_value_minor=5000)))
    assert card.place_hold(hold_request("gw1-a1-1", amount_minor=9000,
                                        sun_counter=4)).status == "open"
    assert highest(card) == 4


def test_a_hold_that_proves_no_tap_is_judged_as_before(card: Books) -> None:
    card.place_hold(hold_request("gw1-a1-1", sun_counter=7))
    assert card.place_hold(hold_request("gw1-a1-2")).status == "open"
    assert highest(card) == 7


def test_posted_transactions_raise_the_highest_and_never_lower_it(card: Books) -> None:
    card.post_batch(batch("gw1-1", purchase("T1-3", sun_counter=10),
                          purchase("T1-4", sun_counter=5, auth="offline")))
    assert highest(card) == 10
    # An offline sale tapped before the last online tap arrives later: it lowers nothing.
    card.post_batch(batch("gw1-2", purchase("T1-5", sun_counter=9, auth="offline")))
    assert highest(card) == 10
    assert refusal(card.place_hold, hold_request("gw2-a1-1", sun_counter=10)).reason == (
        "card_replayed")
    assert card.place_hold(hold_request("gw2-a1-2", sun_counter=11)).status == "open"


def test_an_issue_with_a_counter_sets_the_new_cards_highest(card: Books) -> None:
    card.post_batch(batch("gw1-1", issue("T1-3", card="C2", sun_counter=1)))
    assert highest(card, "C2") == 1
    assert refusal(card.place_hold, hold_request("gw2-a1-1", card="C2",
                                                 sun_counter=1)).reason == "card_replayed"


def test_a_held_tap_posted_later_leaves_the_highest_where_it_is(card: Books) -> None:
    """The sale of a held tap carries the same counter: posting it is no replay."""
    card.place_hold(hold_request("gw1-a1-1", sun_counter=7))
    card.place_hold(hold_request("gw2-a1-1", sun_counter=8))  # the card, tapped elsewhere
    result = card.post_batch(batch("gw1-1", purchase("T1-3", hold_id="gw1-a1-1",
                                                     sun_counter=7)))
    assert (result.posted, result.refused) == (1, ())
    assert highest(card) == 8


def test_the_card_feed_carries_each_posted_transactions_read_counter(card: Books) -> None:
    card.post_batch(batch("gw1-1", purchase("T1-3", sun_counter=12),
                          purchase("T1-4", card_value_minor=500)))
    served, _ = read_feed(card, expected=3)
    changes = {change["txn_id"]: change for change in served}
    assert changes["T1-3"]["sun_counter"] == 12
    assert changes["T1-4"]["sun_counter"] is None
    assert changes["T1-1"]["sun_counter"] is None


@pytest.mark.parametrize(("counter", "reason"), [(2**24, "field_invalid"),
                                                 (-1, "field_invalid"),
                                                 (True, "field_type"), (7.0, "field_type"),
                                                 ("7", "field_type")])
def test_a_counter_no_card_can_read_is_refused_and_changes_nothing(
        card: Books, counter: object, reason: str) -> None:
    assert refusal(card.place_hold, hold_request("gw1-a1-1", sun_counter=counter)).reason == (
        reason)
    assert card.hold("gw1-a1-1") is None
    result = card.post_batch(batch("gw1-1", purchase("T1-3", sun_counter=counter)))
    assert [r.reason for r in result.refused] == [reason]
    assert highest(card) is None


def test_the_client_sends_the_counter_and_gets_card_replayed_back(dsn: str) -> None:
    server = serve(dsn)
    try:
        server.books.post_batch(batch("gw1-0", issue("T1-1", amount_minor=5000)))
        client = LedgerClient(server.url)
        placed = client.place_hold("gw1-a1-1", "C1", "EUR", 1000, 120, "T1", "M1",
                                   sun_counter=5)
        assert placed["status"] == "open"
        with pytest.raises(HoldRefused) as caught:
            client.place_hold("gw2-a1-1", "C1", "EUR", 1000, 120, "T1", "M1", sun_counter=5)
        assert caught.value.reason == "card_replayed"
        assert client.card("C1")["sun_counter"] == 5
    finally:
        server.stop()


CARDS_BEFORE_SUN_COUNTERS = """CREATE TABLE cards (
    card TEXT PRIMARY KEY, program TEXT, currency TEXT NOT NULL, activated_txn_id TEXT)"""
"""The cards table as books made before SUN read counters have it (its reference to the
transactions table left out: that table does not exist yet here)."""


def test_books_made_before_read_counters_gain_them_on_open(dsn: str) -> None:
    """Opening older books adds the nullable column; a card from before reads null; a tap
    then raises it; opening again changes nothing."""
    database = open_database(dsn)
    try:
        database.execute(CARDS_BEFORE_SUN_COUNTERS)
        database.execute("INSERT INTO cards VALUES ('C0', 'gift', 'EUR', NULL)")
    finally:
        database.close()
    for attempt in range(2):
        books = open_books(dsn)
        try:
            books.post_batch(batch(f"gw1-{attempt}", issue("T1-1", sun_counter=3)))
            assert highest(books) == 3
        finally:
            books.close()
    assert posted_rows(dsn, "SELECT card, sun_counter FROM cards ORDER BY card") == [
        ("C0", None), ("C1", 3)]
