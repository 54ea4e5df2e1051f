"""Holds (two-phase money): place, replay, refuse, void, expire, post through settlement.

Every test that touches books runs on SQLite and on PostgreSQL; the clock is injected so
expiry is exact. Card C1 holds 5000 EUR unless a test says otherwise.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ledger import BatchInvalid, Books, LedgerRejected, LedgerUnavailable, NotFound, open_books
from ledger.client import LedgerClient
from ledger.errors import HoldRefused
from ledger.server import LedgerServer, serve
from ledger.validate import parse_hold_request, parse_txn
from tests.ledger.builders import (
    assert_balanced,
    assert_txn_refused,
    batch,
    hold_request,
    issue,
    purchase,
    snapshot,
    topup,
)

START_S = 1_763_900_000
THREADS = 24
SWEEP_WAIT_S = 10.0


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
    """The books' clock, standing still until a test advances it."""
    return Clock()


@pytest.fixture
def held(dsn: str, clock: Clock) -> Iterator[Books]:
    """Books on `clock` where card C1 was issued with 5000 EUR."""
    books = open_books(dsn, clock)
    books.post_batch(batch("gw1-0", issue("T1-1", amount_minor=5000)))
    yield books
    books.close()


def funds(books: Books, card: str = "C1") -> tuple[int, int, int]:
    """(value_minor, held_minor, available_minor) of a card."""
    balance = books.card_balance(card)
    assert balance is not None
    return balance["value_minor"], balance["held_minor"], balance["available_minor"]


def rejected(call: Any, *args: Any) -> LedgerRejected:
    """The rejection a call raises (it must raise one)."""
    with pytest.raises(LedgerRejected) as caught:
        call(*args)
    return caught.value


# -- placing ----------------------------------------------------------------------------------


def test_a_hold_reduces_available_value_but_not_the_balance(held: Books) -> None:
    """A hold leaves the card's value alone and takes its amount off the available value."""
    answer = held.place_hold(hold_request("H1", amount_minor=1200))
    assert answer.to_json() == {"hold_id": "H1", "status": "open", "available_minor": 3800,
                                "available_points": 0}
    assert answer.created
    assert funds(held) == (5000, 1200, 3800)
    assert held.hold("H1") == {
        "hold_id": "H1",
        "card": "C1",
        "currency": "EUR",
        "amount_minor": 1200,
        "points": 0,
        "terminal": "T1",
        "merchant": "M1",
        "status": "open",
        "placed_at": START_S,
        "expires_at": START_S + 120,
        "closed_at": None,
        "posted_txn_id": None,
        "posted_minor": None,
        "released_minor": None,
        "posted_points": None,
        "released_points": None,
        "posted_late": False,
    }


def test_a_replay_answers_the_same_and_holds_once(held: Books) -> None:
    """The same hold_id with the same content is the first answer again, not a second hold."""
    first = held.place_hold(hold_request("H1", amount_minor=1200))
    held.place_hold(hold_request("H2", amount_minor=300))
    again = held.place_hold(hold_request("H1", amount_minor=1200))
    assert again.to_json() == first.to_json()
    assert not again.created
    assert funds(held) == (5000, 1500, 3500)


def test_same_id_with_other_content_is_a_conflict_with_alarm(held: Books) -> None:
    """The same hold_id with another amount is refused hold_conflict (409) and alarmed."""
    held.place_hold(hold_request("H1", amount_minor=1200))
    refusal = rejected(held.place_hold, hold_request("H1", amount_minor=1300))
    assert isinstance(refusal, HoldRefused)
    assert (refusal.reason, refusal.http_status) == ("hold_conflict", 409)
    [alarm] = held.alarms()
    assert alarm["reason"] == "hold_conflict" and "H1" in alarm["detail"]
    assert funds(held) == (5000, 1200, 3800)


def test_a_hold_beyond_the_value_left_by_other_holds_is_refused(held: Books) -> None:
    """Available value counts other open holds; exactly the rest may still be held."""
    held.place_hold(hold_request("H1", amount_minor=3000))
    refusal = rejected(held.place_hold, hold_request("H2", amount_minor=2001))
    assert (refusal.reason, refusal.http_status) == ("insufficient_value", 409)
    assert held.place_hold(hold_request("H3", amount_minor=2000)).available_minor == 0
    assert funds(held) == (5000, 5000, 0)
    assert held.hold("H2") is None


def test_a_refused_hold_id_may_be_placed_later(held: Books) -> None:
    """A refusal records nothing: once value is loaded the same hold_id succeeds."""
    rejected(held.place_hold, hold_request("H1", amount_minor=6000))
    held.post_batch(batch("gw1-1", topup("T1-2", amount_minor=1000)))
    assert held.place_hold(hold_request("H1", amount_minor=6000)).created


def test_a_hold_on_an_unknown_card_or_in_another_currency_is_refused(held: Books) -> None:
    """A card the ledger never settled is card_unknown (404); another currency is refused."""
    refusal = rejected(held.place_hold, hold_request("H1", card="C9"))
    assert isinstance(refusal, NotFound)
    assert (refusal.reason, refusal.http_status) == ("card_unknown", 404)
    refusal = rejected(held.place_hold, hold_request("H1", currency="USD"))
    assert (refusal.reason, refusal.http_status) == ("currency_mismatch", 400)


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"amount_minor": 0}, "amount_invalid"),
        ({"amount_minor": 10**12 + 1}, "amount_invalid"),
        ({"amount_minor": 12.0}, "field_type"),
        ({"amount_minor": True}, "field_type"),
        ({"ttl_s": 0}, "field_invalid"),
        ({"ttl_s": 7 * 24 * 3600 + 1}, "field_invalid"),
        ({"currency": "eur"}, "currency_unknown"),
        ({"hold_id": "with space"}, "field_invalid"),
        ({"terminal": None}, "field_type"),
        ({"extra": 1}, "field_unknown"),
    ],
    ids=lambda value: str(value),
)
def test_malformed_hold_requests_are_refused(change: dict[str, Any], reason: str) -> None:
    """Every field of a hold request is checked exactly, like a settlement transaction's."""
    with pytest.raises(BatchInvalid) as caught:
        parse_hold_request(hold_request("H1") | change)
    assert caught.value.reason == reason


def test_a_hold_request_missing_a_key_or_not_an_object_is_refused() -> None:
    """A missing key is field_missing; a body that is not an object is request_malformed."""
    document = hold_request("H1")
    del document["ttl_s"]
    with pytest.raises(BatchInvalid) as caught:
        parse_hold_request(document)
    assert caught.value.reason == "field_missing"
    with pytest.raises(BatchInvalid) as caught:
        parse_hold_request([document])
    assert caught.value.reason == "request_malformed"


# -- voiding and expiry -----------------------------------------------------------------------


def test_voiding_releases_the_value_and_voiding_again_answers_the_same(
    held: Books, clock: Clock
) -> None:
    """A voided hold no longer counts; a second void is the same answer, not an error."""
    held.place_hold(hold_request("H1", amount_minor=1200))
    clock.advance(10)
    answer = held.void_hold("H1")
    assert answer.to_json() == {"hold_id": "H1", "status": "voided", "available_minor": 5000,
                                "available_points": 0}
    assert held.void_hold("H1").to_json() == answer.to_json()
    assert funds(held) == (5000, 0, 5000)
    assert held.hold("H1")["closed_at"] == START_S + 10  # type: ignore[index]
    assert held.place_hold(hold_request("H1", amount_minor=1200)).status == "voided"


def test_voiding_an_unknown_hold_is_hold_unknown(held: Books) -> None:
    """An id the ledger never held is hold_unknown (404)."""
    refusal = rejected(held.void_hold, "H404")
    assert (refusal.reason, refusal.http_status) == ("hold_unknown", 404)


def test_a_hold_expires_after_its_ttl(held: Books, clock: Clock) -> None:
    """At placed_at + ttl_s the hold stops counting and reads as expired, swept or not."""
    held.place_hold(hold_request("H1", amount_minor=1200, ttl_s=60))
    clock.advance(59)
    assert funds(held) == (5000, 1200, 3800)
    clock.advance(1)
    assert funds(held) == (5000, 0, 5000)
    assert held.hold("H1")["status"] == "expired"  # type: ignore[index]
    assert held.hold_totals() == {
        "open": 0,
        "posted": 0,
        "voided": 0,
        "expired": 1,
        "posted_late": 0,
    }
    assert held.expire_holds() == 1
    assert held.expire_holds() == 0
    detail = held.hold("H1")
    assert detail is not None
    assert (detail["status"], detail["closed_at"]) == ("expired", START_S + 60)


def test_an_expired_hold_frees_value_for_a_new_one(held: Books, clock: Clock) -> None:
    """Value held by an expired hold can be held again (placing persists the expiry)."""
    held.place_hold(hold_request("H1", amount_minor=5000, ttl_s=30))
    assert rejected(held.place_hold, hold_request("H2")).reason == "insufficient_value"
    clock.advance(30)
    assert held.place_hold(hold_request("H2", amount_minor=5000)).available_minor == 0
    assert held.expire_holds() == 0


def test_an_expired_hold_may_still_be_voided(held: Books, clock: Clock) -> None:
    """Voiding an expired hold marks it voided, so settlement can no longer post it."""
    held.place_hold(hold_request("H1", ttl_s=30))
    clock.advance(31)
    assert held.void_hold("H1").status == "voided"
    sale = batch("gw1-1", purchase("T1-2", card_value_minor=500, hold_id="H1"))
    assert_txn_refused(held, sale, "hold_voided")


# -- settlement -------------------------------------------------------------------------------


def test_settlement_posts_the_hold_and_releases_the_remainder(held: Books, clock: Clock) -> None:
    """A purchase naming its hold posts it in the batch; the unused part is free again."""
    held.place_hold(hold_request("H1", amount_minor=1500))
    held.place_hold(hold_request("H2", amount_minor=700))
    clock.advance(5)
    result = held.post_batch(
        batch("gw1-1", purchase("T1-2", card_value_minor=1200, points=0, hold_id="H1"))
    )
    assert (result.status, result.posted) == ("posted", 1)
    assert funds(held) == (3800, 700, 3100)
    detail = held.hold("H1")
    assert detail is not None
    assert (detail["status"], detail["closed_at"]) == ("posted", START_S + 5)
    assert (detail["posted_txn_id"], detail["posted_minor"], detail["released_minor"]) == (
        "T1-2",
        1200,
        300,
    )
    assert detail["posted_late"] is False
    assert held.hold_totals()["posted"] == 1
    assert_balanced(held)


def test_resending_the_batch_that_posted_a_hold_is_a_duplicate(held: Books) -> None:
    """Posting is idempotent with holds too: the resent batch and txn change nothing."""
    held.place_hold(hold_request("H1", amount_minor=1500))
    document = batch("gw1-1", purchase("T1-2", card_value_minor=1500, hold_id="H1"))
    held.post_batch(document)
    before = snapshot(held)
    assert held.post_batch(document).status == "duplicate"
    assert snapshot(held) == before
    again = held.post_batch(batch("gw1-2", purchase("T1-2", card_value_minor=1500, hold_id="H1")))
    assert (again.posted, again.already_posted) == (0, 1)
    assert held.balances() == before["balances"]
    assert held.hold_totals()["posted"] == 1


@pytest.mark.parametrize(
    "prepare, txn_fields, reason",
    [
        (None, {"hold_id": "H404"}, "hold_unknown"),
        ("void", {}, "hold_voided"),
        ("post", {}, "hold_posted"),
        (None, {"card_value_minor": 1501}, "hold_exceeded"),
        (None, {"card": "C2"}, "hold_mismatch"),
    ],
)
def test_settlement_refuses_a_hold_it_cannot_post_and_changes_nothing(
    held: Books, prepare: str | None, txn_fields: dict[str, Any], reason: str
) -> None:
    """Unknown, voided, already posted, exceeded or another card's hold refuse the purchase
    naming it, which posts nothing and leaves the hold as it was."""
    held.post_batch(batch("gw1-c2", issue("T2-1", card="C2")))
    held.place_hold(hold_request("H1", amount_minor=1500))
    if prepare == "void":
        held.void_hold("H1")
    if prepare == "post":
        held.post_batch(batch("gw1-p", purchase("T1-9", card_value_minor=100, hold_id="H1")))
    balances, hold = held.balances(), held.hold("H1")
    fields = {"card_value_minor": 1000, "hold_id": "H1"} | txn_fields
    assert_txn_refused(held, batch("gw1-1", purchase("T1-2", **fields)), reason)
    assert (held.balances(), held.hold("H1")) == (balances, hold)


def test_two_purchases_of_one_batch_cannot_post_the_same_hold(held: Books) -> None:
    """The second purchase naming a hold already posted earlier in the batch is hold_posted;
    the first posts it."""
    held.place_hold(hold_request("H1", amount_minor=1500))
    sales = batch(
        "gw1-1",
        purchase("T1-2", card_value_minor=500, hold_id="H1"),
        purchase("T1-3", card_value_minor=500, hold_id="H1"),
    )
    assert_txn_refused(held, sales, "hold_posted")
    assert held.hold("H1")["posted_txn_id"] == "T1-2"  # type: ignore[index]
    assert funds(held) == (4500, 0, 4500)


def test_a_transaction_posts_its_legs_and_its_hold_together_or_not_at_all(held: Books) -> None:
    """A purchase refused for its hold posts neither its legs nor the hold, which stays open;
    the purchase before it in the batch posts its own hold."""
    held.place_hold(hold_request("H1", amount_minor=1000))
    held.place_hold(hold_request("H2", amount_minor=1000))
    sales = batch(
        "gw1-1",
        purchase("T1-2", card_value_minor=1000, hold_id="H1"),
        purchase("T1-3", card_value_minor=1001, hold_id="H2"),
    )
    assert_txn_refused(held, sales, "hold_exceeded")
    assert [held.hold(h)["status"] for h in ("H1", "H2")] == ["posted", "open"]  # type: ignore[index]
    assert funds(held) == (4000, 1000, 3000)


def test_an_expired_hold_is_still_posted_and_counted_late(held: Books, clock: Clock) -> None:
    """The sale happened: an expired hold posts all the same, and counts as posted late."""
    held.place_hold(hold_request("H1", amount_minor=1000, ttl_s=60))
    clock.advance(600)
    held.post_batch(batch("gw1-1", purchase("T1-2", card_value_minor=800, hold_id="H1")))
    detail = held.hold("H1")
    assert detail is not None
    assert (detail["status"], detail["posted_late"], detail["released_minor"]) == (
        "posted",
        True,
        200,
    )
    assert held.hold_totals()["posted_late"] == 1
    assert funds(held) == (4200, 0, 4200)


def test_voiding_a_posted_hold_is_hold_posted(held: Books) -> None:
    """Once settlement posted a hold it cannot be voided (409 hold_posted)."""
    held.place_hold(hold_request("H1", amount_minor=1000))
    held.post_batch(batch("gw1-1", purchase("T1-2", card_value_minor=1000, hold_id="H1")))
    refusal = rejected(held.void_hold, "H1")
    assert isinstance(refusal, HoldRefused)
    assert (refusal.reason, refusal.http_status) == ("hold_posted", 409)


def test_null_hold_id_is_the_same_transaction_as_no_hold_id(held: Books) -> None:
    """A sender writing "hold_id": null resends the same txn as one that leaves it out."""
    held.post_batch(batch("gw1-1", purchase("T1-2", card_value_minor=100)))
    result = held.post_batch(batch("gw1-2", purchase("T1-2", card_value_minor=100, hold_id=None)))
    assert (result.posted, result.already_posted) == (0, 1)
    assert held.alarms() == []


def test_only_a_purchase_may_name_a_hold() -> None:
    """A hold_id on another kind is field_invalid (only a sale takes held value)."""
    with pytest.raises(BatchInvalid) as caught:
        parse_txn(topup("T1-2") | {"hold_id": "H1"})
    assert caught.value.reason == "field_invalid"


# -- concurrency ------------------------------------------------------------------------------


def place_from_threads(place: Any, count: int) -> tuple[list[str], list[str]]:
    """Run place(number) on `count` threads at once: (hold ids placed, refusal reasons)."""
    placed: list[str] = []
    refused: list[str] = []
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def worker(number: int) -> None:
        start.wait()
        try:
            placed.append(place(number))
        except LedgerRejected as refusal:
            refused.append(refusal.reason)
        except BaseException as error:  # collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(number,)) for number in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return placed, refused


def test_concurrent_holds_over_several_connections_never_over_commit(held: Books, dsn: str) -> None:
    """Threads on four connections race 700-holds on a 5000 card: exactly seven fit."""
    connections = [open_books(dsn) for _ in range(4)]
    try:
        placed, refused = place_from_threads(
            lambda n: (
                connections[n % 4]
                .place_hold(hold_request(f"H{n}", amount_minor=700, ttl_s=600))
                .hold_id
            ),
            THREADS,
        )
    finally:
        for books in connections:
            books.close()
    assert len(placed) == 7
    assert refused == ["insufficient_value"] * (THREADS - 7)
    value, held_minor, available = funds(held)
    assert (value, held_minor, available) == (5000, 4900, 100)


# -- HTTP -------------------------------------------------------------------------------------


@pytest.fixture
def server(dsn: str, clock: Clock) -> Iterator[LedgerServer]:
    """A ledger server on `clock` where card C1 holds 5000 EUR."""
    running = serve(dsn, clock=clock)
    running.books.post_batch(batch("gw1-0", issue("T1-1", amount_minor=5000)))
    yield running
    running.stop()


@pytest.fixture
def client(server: LedgerServer) -> LedgerClient:
    """A client of the `server` fixture."""
    return LedgerClient(server.url, timeout_s=30)


def raw(
    server: LedgerServer, method: str, path: str, body: bytes = b"", content_type: str = ""
) -> tuple[int, dict[str, Any]]:
    """One request with exact bytes: the status and the decoded JSON answer."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    headers = {"Content-Type": content_type} if content_type else {}
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    answer = json.loads(response.read())
    connection.close()
    return response.status, answer


def place_raw(server: LedgerServer, document: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """POST /v1/holds with a JSON body."""
    return raw(server, "POST", "/v1/holds", json.dumps(document).encode(), "application/json")


def test_http_place_is_201_and_a_replay_200_with_the_same_body(server: LedgerServer) -> None:
    """A new hold is answered 201, its replay 200, both with the same JSON."""
    created = place_raw(server, hold_request("H1", amount_minor=1200))
    assert created == (201, {"hold_id": "H1", "status": "open", "available_minor": 3800,
                             "available_points": 0})
    assert place_raw(server, hold_request("H1", amount_minor=1200)) == (200, created[1])


def test_http_hold_round_trip_through_the_client(client: LedgerClient, clock: Clock) -> None:
    """Place, read, post through a batch, and read back over HTTP with LedgerClient."""
    answer = client.place_hold("H1", "C1", "EUR", 1500, 120, "T1", "M1")
    assert answer == {"hold_id": "H1", "status": "open", "available_minor": 3500,
                      "available_points": 0}
    card = client.card("C1")
    assert (card["value_minor"], card["held_minor"], card["available_minor"]) == (5000, 1500, 3500)
    assert client.hold("H1")["status"] == "open"
    client.post_batch(batch("gw1-1", purchase("T1-2", card_value_minor=1000, hold_id="H1")))
    assert client.hold("H1")["released_minor"] == 500
    assert client.card("C1")["available_minor"] == 4000
    assert client.hold_totals() == {
        "open": 0,
        "posted": 1,
        "voided": 0,
        "expired": 0,
        "posted_late": 0,
    }
    assert [b["available_minor"] for b in client.balances()] == [4000]


def test_http_refusals_come_back_typed_with_their_reasons(client: LedgerClient) -> None:
    """insufficient_value and hold_conflict are HoldRefused (409), card_unknown NotFound (404)."""
    client.place_hold("H1", "C1", "EUR", 4000, 120, "T1", "M1")
    cases = [
        (("H2", "C1", "EUR", 1001, 120, "T1", "M1"), HoldRefused, "insufficient_value", 409),
        (("H1", "C1", "EUR", 4001, 120, "T1", "M1"), HoldRefused, "hold_conflict", 409),
        (("H3", "C9", "EUR", 1, 120, "T1", "M1"), NotFound, "card_unknown", 404),
        (("H4", "C1", "EUR", 1.5, 120, "T1", "M1"), BatchInvalid, "field_type", 400),
    ]
    for arguments, kind, reason, status in cases:
        with pytest.raises(kind) as caught:
            client.place_hold(*arguments)  # type: ignore[arg-type]
        assert (caught.value.reason, caught.value.http_status) == (reason, status)
    assert [alarm["reason"] for alarm in client.alarms()] == ["hold_conflict"]


def test_http_void_answers_and_refuses(client: LedgerClient) -> None:
    """DELETE voids (200), an unknown id is 404 hold_unknown, a posted hold 409 hold_posted."""
    client.place_hold("H/1", "C1", "EUR", 1000, 120, "T1", "M1")
    assert client.void_hold("H/1") == {
        "hold_id": "H/1",
        "status": "voided",
        "available_minor": 5000,
        "available_points": 0,
    }
    with pytest.raises(NotFound) as missing:
        client.void_hold("H404")
    assert missing.value.reason == "hold_unknown"
    with pytest.raises(NotFound):
        client.hold("H404")
    client.place_hold("H2", "C1", "EUR", 1000, 120, "T1", "M1")
    client.post_batch(batch("gw1-1", purchase("T1-2", card_value_minor=1000, hold_id="H2")))
    with pytest.raises(HoldRefused) as posted:
        client.void_hold("H2")
    assert (posted.value.reason, posted.value.http_status) == ("hold_posted", 409)


def test_http_bad_hold_bodies_and_methods(
    server: LedgerServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Broken JSON is 400 request_malformed, a big body 413 request_too_large, PUT 405."""
    assert raw(server, "POST", "/v1/holds", b"{nope", "application/json")[1]["error"] == (
        "request_malformed"
    )
    assert raw(server, "POST", "/v1/holds", b"[]", "application/json")[1]["error"] == (
        "request_malformed"
    )
    big = json.dumps(hold_request("H1", merchant="M" * 5000)).encode()
    assert raw(server, "POST", "/v1/holds", big, "application/json")[:1] == (413,)
    assert raw(server, "POST", "/v1/holds", big, "application/json")[1]["error"] == (
        "request_too_large"
    )
    assert raw(server, "PUT", "/v1/holds")[0] == 405
    assert raw(server, "POST", "/v1/holds/H1")[1]["error"] == "method_not_allowed"
    assert raw(server, "POST", "/v1/holds", b"{}", "text/plain")[0] == 415


def test_http_concurrent_holds_never_over_commit(client: LedgerClient) -> None:
    """Twenty-four clients racing 700-holds on 5000 over HTTP: exactly seven are placed."""
    placed, refused = place_from_threads(
        lambda n: client.place_hold(f"H{n}", "C1", "EUR", 700, 600, "T1", "M1")["hold_id"],
        THREADS,
    )
    assert len(placed) == 7
    assert refused == ["insufficient_value"] * (THREADS - 7)
    assert client.card("C1")["available_minor"] == 100


def test_the_server_sweeps_expired_holds(
    dsn: str, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's background sweep marks due holds expired without any request."""
    swept: list[int] = []
    expire_holds = Books.expire_holds

    def spy(books: Books) -> int:
        swept.append(expire_holds(books))
        return swept[-1]

    monkeypatch.setattr(Books, "expire_holds", spy)
    monkeypatch.setattr("ledger.server.HOLD_SWEEP_INTERVAL_S", 0.02)
    running = serve(dsn, clock=clock)
    try:
        running.books.post_batch(batch("gw1-0", issue("T1-1")))
        running.books.place_hold(hold_request("H1", ttl_s=5))
        clock.advance(5)
        deadline = time.monotonic() + SWEEP_WAIT_S
        while 1 not in swept and time.monotonic() < deadline:
            time.sleep(0.02)
        assert 1 in swept
        assert running.books.hold("H1")["status"] == "expired"  # type: ignore[index]
    finally:
        running.stop()


def test_placing_a_hold_at_an_unreachable_ledger_is_unavailable() -> None:
    """No ledger listening: place_hold raises LedgerUnavailable so the gateway stands in."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = LedgerClient(f"http://127.0.0.1:{port}", timeout_s=5)
    with pytest.raises(LedgerUnavailable):
        client.place_hold("H1", "C1", "EUR", 100, 60, "T1", "M1")
    with pytest.raises(LedgerUnavailable):
        client.void_hold("H1")
