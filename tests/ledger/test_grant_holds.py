"""A hold takes a use of the card's targeted offers it names (ledger/grant_holds_sql.py,
hold_rules.check_grants, issue 14), on SQLite and PostgreSQL.

Card C1 of program "club" is granted the targeted offer "comeback" with one use (as
tests/ledger/test_ledger_offers.py issues it). Two stores each price a sale with it on their
own copy of the card: the first hold naming the offer takes the use, the second is refused
offer_used while the first is open; voided or expired, the first gives the use back; posted
(its purchase gets the offer), the use is spent in the card's kept engine state and every
later hold naming it is refused.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from ledger import Books, open_books, schema
from ledger.client import LedgerClient
from ledger.db import open_database
from ledger.errors import BatchInvalid, HoldRefused
from ledger.server import serve
from tests.ledger.builders import batch, hold_request, issue, purchase, read_feed, topup
from tests.ledger.test_ledger_offers import LAST_DAY, NOW_S, PROGRAMS, club, grants_of

GRANTED_AT_S = NOW_S  # the books' clock when the offer is issued


class Clock:
    """The books' clock, moved by the test (a hold expires by it)."""

    def __init__(self) -> None:
        self.now_s = float(GRANTED_AT_S)

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def books(dsn: str, clock: Clock) -> Iterator[Books]:
    opened = open_books(dsn, clock, PROGRAMS)
    opened.post_batch(batch("b1", club(issue("T1-1", "C1", 0, time=NOW_S - 60)),
                            club(issue("T1-2", "C2", 0, time=NOW_S - 60))))
    opened.issue_offer("club", "comeback", "winter", 1, LAST_DAY, "tester", cards=["C1"])
    yield opened
    opened.close()


def grant_hold(hold_id: str, card: str = "C1", merchant: str = "M1", **fields: object
               ) -> dict[str, object]:
    """A hold of no value and no points that takes a use of the comeback offer (a sale paid
    in cash that gets it), from store `merchant`."""
    return hold_request(hold_id, card, 0, merchant=merchant, grants=["comeback"], **fields)


def test_the_last_use_is_held_by_one_store_only(books: Books) -> None:
    placed = books.place_hold(grant_hold("A-1", merchant="M1"))
    assert (placed.status, placed.created) == ("open", True)
    with pytest.raises(HoldRefused) as refused:
        books.place_hold(grant_hold("B-1", merchant="M2"))
    assert refused.value.reason == "offer_used"
    # A replay of the first is answered as placed: it holds the use already.
    assert books.place_hold(grant_hold("A-1", merchant="M1")).status == "open"
    # Value held on the card alongside takes no use: the other card has no grant at all.
    with pytest.raises(HoldRefused) as other_card:
        books.place_hold(grant_hold("B-2", card="C2", merchant="M2"))
    assert other_card.value.reason == "offer_used"
    assert grants_of(books, "C1") == {"comeback": [1, LAST_DAY]}  # nothing spent yet


def test_a_voided_or_expired_hold_gives_the_use_back(books: Books, clock: Clock) -> None:
    books.place_hold(grant_hold("A-1"))
    books.void_hold("A-1")
    books.place_hold(grant_hold("B-1", merchant="M2", ttl_s=30))
    with pytest.raises(HoldRefused):
        books.place_hold(grant_hold("A-2"))
    clock.now_s += 31  # B-1 expired unposted
    assert books.place_hold(grant_hold("A-2")).status == "open"


def test_the_posted_purchase_spends_the_use_for_every_store(books: Books, clock: Clock) -> None:
    books.place_hold(grant_hold("A-1"))
    clock.now_s += 60
    posted = books.post_batch(batch("b2", purchase("T1-3", "C1", 0, 90, 4000,
                                                   time=int(clock.now_s), hold_id="A-1")))
    assert posted.status == "posted"
    assert grants_of(books, "C1") is None  # the one use taken by the engine
    for store in ("M1", "M2"):
        with pytest.raises(HoldRefused) as refused:
            books.place_hold(grant_hold(f"{store}-2", merchant=store))
        assert refused.value.reason == "offer_used"
    # A sale without the offer is held as before.
    assert books.place_hold(hold_request("A-3", "C1", 0, points=10)).status == "open"


def test_a_grants_list_is_checked(books: Books) -> None:
    for grants in ([], ["comeback", "comeback"], "comeback", [7], ["x"] * 17):
        with pytest.raises(BatchInvalid) as invalid:
            books.place_hold(hold_request("A-1", "C1", 0, grants=grants))
        assert invalid.value.reason in ("field_invalid", "field_type"), grants
    with pytest.raises(BatchInvalid) as nothing:
        books.place_hold(hold_request("A-1", "C1", 0))
    assert nothing.value.reason == "amount_invalid"
    # The same hold id with other grants is another hold: a conflict, not a replay.
    books.place_hold(grant_hold("A-1"))
    with pytest.raises(HoldRefused) as conflict:
        books.place_hold(hold_request("A-1", "C1", 0, grants=["everyone"]))
    assert conflict.value.reason == "hold_conflict"


def test_a_ledger_without_programs_does_not_judge_grants(dsn: str) -> None:
    """It keeps no engine state, so it cannot know a card's grants: the books alone judge."""
    plain = open_books(dsn, lambda: NOW_S)
    try:
        plain.post_batch(batch("b1", issue("T1-1", "C1", 0, time=NOW_S - 60)))
        assert plain.place_hold(grant_hold("A-1")).status == "open"
        assert plain.place_hold(grant_hold("B-1", merchant="M2")).status == "open"
    finally:
        plain.close()


def test_offer_used_is_a_409_over_http(dsn: str) -> None:
    server = serve(dsn, clock=lambda: NOW_S, programs=PROGRAMS)
    try:
        server.books.post_batch(batch("b1", club(issue("T1-1", "C1", 0, time=NOW_S - 60))))
        server.books.issue_offer("club", "comeback", "winter", 1, LAST_DAY, "tester",
                                 cards=["C1"])
        client = LedgerClient(server.url, 10)
        first = client.place_hold("A-1", "C1", "EUR", 0, 120, "T1", "M1", grants=("comeback",))
        assert first["status"] == "open"
        with pytest.raises(HoldRefused) as refused:
            client.place_hold("B-1", "C1", "EUR", 0, 120, "T9", "M2", grants=("comeback",))
        assert (refused.value.reason, refused.value.http_status) == ("offer_used", 409)
    finally:
        server.stop()


def test_books_made_before_holds_of_no_value_take_them_after_opening(dsn: str) -> None:
    """A holds table created with the old check (amount_minor > 0) is loosened when the
    books open; its rows stay (ledger/schema.py `_allow_holds_of_no_value`)."""
    [created] = [statement for statement in schema._STATEMENTS
                 if "CREATE TABLE IF NOT EXISTS holds (" in statement]
    old = created.replace("CHECK (amount_minor >= 0)", "CHECK (amount_minor > 0)")
    assert old != created
    open_books(dsn).close()
    database = open_database(dsn)
    try:
        with database.schema_transaction() as session:  # the table as those books had it
            cascade = " CASCADE" if database.dialect == "postgresql" else ""
            session.execute(f"DROP TABLE holds{cascade}")
            session.execute(old)
    finally:
        database.close()
    books = open_books(dsn, lambda: NOW_S, PROGRAMS)
    try:
        books.post_batch(batch("b1", club(issue("T1-1", "C1", 0, time=NOW_S - 60))))
        books.issue_offer("club", "comeback", "winter", 1, LAST_DAY, "tester", cards=["C1"])
        assert books.place_hold(grant_hold("A-1")).status == "open"
    finally:
        books.close()
    reopened = open_books(dsn, lambda: NOW_S, PROGRAMS)  # loosened once: opens as before
    try:
        assert reopened.hold("A-1")["status"] == "open"
    finally:
        reopened.close()


@pytest.mark.parametrize(("said", "kept"), [
    ([], {"comeback": [1, LAST_DAY]}),  # priced before the grant reached its store
    (["comeback"], None),  # it got the offer: the use is spent
    (None, None),  # not said (a gateway from before): any use it may, as before
])
def test_a_posted_purchase_takes_a_use_only_of_the_offers_its_gateway_says_it_got(
        books: Books, said: list[str] | None, kept: dict[str, list[int]] | None) -> None:
    """Rule GRANTS_AS_POSTED: the ledger's copy of the card applies a purchase with the
    targeted offers its gateway priced it with ("grants"), so a sale priced before the
    office's grant and posted after it takes no use. Kept in the books and in the feed and
    a look-up's replay terms (JSON text)."""
    fields = {} if said is None else {"grants": said}
    posted = books.post_batch(batch("b2", purchase("T1-3", "C1", 0, 40, 4000,
                                                   time=NOW_S + 60, **fields)))
    assert posted.status == "posted"
    assert grants_of(books, "C1") == kept
    [change] = [c for c in read_feed(books, expected=4)[0] if c["txn_id"] == "T1-3"]
    assert change["grants"] == (None if said is None else json.dumps(said))
    detail = books.card_detail("C1")
    assert detail is not None
    [replayed] = [t for t in detail["transactions"] if t["txn_id"] == "T1-3"]
    assert replayed["grants"] == change["grants"]


def test_grants_on_a_posted_transaction_are_checked(books: Books) -> None:
    for number, fields in enumerate(({"grants": "comeback"}, {"grants": ["a", "a"]},
                                     {"grants": [7]}, {"grants": ["x"] * 17}), start=2):
        answer = books.post_batch(batch(f"b{number}", purchase(
            "T1-4", "C1", 0, 10, 1000, time=NOW_S + 60, **fields)))
        assert [r.reason for r in answer.refused] in (["field_invalid"], ["field_type"]), fields
    answer = books.post_batch(batch("b-topup", topup("T1-5", "C1", 1000, time=NOW_S + 60,
                                                     grants=[])))
    assert [r.reason for r in answer.refused] == ["field_invalid"]
