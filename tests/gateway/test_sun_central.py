"""A SUN read accepted at one store is refused at another: the gateway's side of the ledger's
read counters (docs/ledger.md, "SUN read counters").

Two card books stand for two stores' gateways, each with its own gateway id, against one real
ledger (its HTTP server on SQLite). The card is an emulated NTAG 424 DNA personalized with
AN10922 keys; a clone is a copy of its state taken before a tap, so its next read carries the
counter of the tap it copied.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from firmware.card_sun import read_sun_url
from gateway.authorize import decide
from gateway.card_auth import CardAuthenticator, CardKeys
from gateway.card_feed import apply_changes
from gateway.cards import SUN_COUNTER_FIELD, CardBook, record_till_amounts
from gateway.ledger_holds import HoldSettings, LedgerHolds
from ledger.client import LedgerClient
from ledger.errors import LedgerUnavailable
from ledger.server import LedgerServer, serve
from protocol import txn
from protocol.errors import ValidationError
from tools.cards import new_master_keys
from tools.demo import DEMO_PROGRAMS
from tools.personalize import personalize
from tools.simulator.ntag424_card import Ntag424Card

UID = bytes.fromhex("04c0ffee000001")
CARD = UID.hex()


class Keys:
    """The chain's card masters, and a card personalized with them."""

    def __init__(self) -> None:
        masters = new_master_keys(b"sun-central")
        self.authenticator = CardAuthenticator(
            CardKeys(masters.master(1), masters.master(2), masters.system_id))
        self.card = Ntag424Card(UID)
        personalize(self.card.apdu, masters, "https://t.example/c", secrets.token_bytes)

    def clone(self) -> Ntag424Card:
        """A copy of the card as it is now: its next read repeats the card's next one."""
        return Ntag424Card.from_state(self.card.state())


class DownLedger:
    """A ledger out of reach: every call goes unanswered."""

    def place_hold(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        raise LedgerUnavailable("connection refused")

    def void_hold(self, hold_id: str) -> dict[str, Any]:
        raise LedgerUnavailable("connection refused")


class Store:
    """One store's gateway: its card book, confirmed at `ledger` under `gateway_id`."""

    def __init__(self, gateway_id: str, keys: Keys, ledger: Any) -> None:
        self.gateway_id = gateway_id
        self.book = CardBook(DEMO_PROGRAMS, authenticator=keys.authenticator, ledger=True)
        self.holds = LedgerHolds(gateway_id, self.book, ledger, HoldSettings())
        self.holds.stand_in.fresh()  # it has just read the ledger's card feed

    def take_on(self, found: dict[str, Any]) -> None:
        """The card as the ledger answered GET /v1/cards (the card directory's look-up)."""
        self.book.adopt(CARD, found, time.time())

    def buy(self, tapped: Ntag424Card, value_minor: int = 500, seq: int = 1) -> dict[str, Any]:
        """A purchase paid from the card, on one read of `tapped`: the decision, and the
        request under "asked"."""
        asked = {"terminal": "T1", "request": seq, "seq": seq, "time": int(time.time()),
                 "merchant": "M1", "card": CARD, "kind": txn.KIND_PURCHASE, "currency": "EUR",
                 "amount_minor": value_minor, "card_value_minor": value_minor,
                 "sun": read_sun_url(tapped.apdu)}
        decision = decide(self.book, self.holds, dict(asked), time.time())
        return dict(decision, asked=asked)

    def feed(self, *counters: int | None) -> None:
        """Changes another store (gwX) posted for the card, each a tap with its counter."""
        changes = [{"xid": 0, "id": 10_000 + n, "gateway_id": "gwX", "txn_id": f"X1-{n}",
                    "card": CARD, "terminal": "X1", "merchant": "MX", "kind": "topup",
                    "amount_minor": 0, "card_value_minor": 0, "bonus_minor": 0, "points": 0,
                    "ref_txn_id": None, "program": "gift", "time": int(time.time()),
                    "discount_minor": None, "redeem_points": None, "auth": "online",
                    "sun_counter": counter} for n, counter in enumerate(counters)]
        with self.book.lock:
            apply_changes(self.book.states, changes, self.gateway_id)

    def highest(self) -> int | None:
        counter: int | None = self.book.cards[CARD]["sun_counter"]
        return counter


def counter_of(keys: Keys, url: str) -> int:
    counter = keys.authenticator.read_counter({"card": CARD, "sun": url})
    assert counter is not None
    return counter


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[LedgerServer]:
    server = serve(f"sqlite:///{tmp_path / 'ledger.db'}")
    LedgerClient(server.url).register_card(CARD, "gift", "EUR", "M1", 5_000)
    yield server
    server.stop()


@pytest.fixture
def keys() -> Keys:
    return Keys()


def chain(ledger: LedgerServer, keys: Keys) -> tuple[LedgerClient, Store, Store]:
    """Stores A and B, both serving the card the ledger registered."""
    client = LedgerClient(ledger.url)
    a, b = Store("gwA", keys, client), Store("gwB", keys, client)
    for store in (a, b):
        store.take_on(client.card(CARD))
    return client, a, b


def test_a_hold_carries_the_taps_read_counter_to_the_ledger(
        ledger: LedgerServer, keys: Keys) -> None:
    client, a, _ = chain(ledger, keys)
    sale = a.buy(keys.card)
    assert sale["approved"], sale
    assert client.card(CARD)["sun_counter"] == counter_of(keys, sale["asked"]["sun"])


def test_a_read_held_at_one_store_is_refused_when_replayed_at_the_other(
        ledger: LedgerServer, keys: Keys) -> None:
    _, a, b = chain(ledger, keys)
    clone = keys.clone()
    assert a.buy(keys.card)["approved"]
    replay = b.buy(clone)
    assert (replay["approved"], replay["reason"]) == (False, "card_replayed")
    assert b.book.holds.of_card(CARD) == []  # its local hold ended with the decline
    assert b.holds.stats.snapshot()["ledger_hold.declined.card_replayed"] == 1
    assert b.buy(keys.card)["approved"]  # the card's own next tap is new everywhere


def test_a_card_taken_on_from_the_ledger_starts_from_its_highest_counter(
        ledger: LedgerServer, keys: Keys) -> None:
    client, a, _ = chain(ledger, keys)
    clone = keys.clone()
    assert a.buy(keys.card)["approved"]
    late = Store("gwC", keys, client)
    late.take_on(client.card(CARD))
    replay = late.buy(clone)
    assert (replay["approved"], replay["reason"]) == (False, "card_replayed")
    # Refused by the store itself: the ledger was not asked.
    assert "ledger_hold.declined.card_replayed" not in late.holds.stats.snapshot()


def test_the_card_feed_raises_a_stores_counter_and_never_lowers_it(
        ledger: LedgerServer, keys: Keys) -> None:
    _, _, b = chain(ledger, keys)
    b.feed(40)
    assert b.highest() == 40
    b.feed(30, None)  # an offline sale tapped earlier, and a change without a tap
    assert b.highest() == 40
    assert 30 in b.book.cards[CARD]["sun_seen"]  # its read is used, also offline
    assert CARD in b.book.states.dirty  # kept in the store with the feed's cursor


def test_standing_in_a_store_refuses_a_read_the_feed_brought_from_another_store(
        ledger: LedgerServer, keys: Keys) -> None:
    """With the ledger out of reach only the store's own counter stands between a clone and
    the card's value: the feed has raised it to the other store's tap."""
    client, _, _ = chain(ledger, keys)
    found = client.card(CARD)
    fed, unfed = Store("gwB", keys, DownLedger()), Store("gwC", keys, DownLedger())
    for store in (fed, unfed):
        store.take_on(found)
    clone, twin = keys.clone(), keys.clone()
    tapped_elsewhere = counter_of(keys, read_sun_url(keys.card.apdu))  # accepted at store A
    fed.feed(tapped_elsewhere)
    refused = fed.buy(clone)
    assert (refused["approved"], refused["reason"]) == (False, "card_replayed")
    stood_in = unfed.buy(twin)  # a store that had not heard of it would have stood in
    assert stood_in["approved"] and stood_in["auth_mode"] == txn.AUTH_STAND_IN


def test_a_record_of_an_approval_given_here_is_taken_after_the_feed_brought_a_later_tap(
        ledger: LedgerServer, keys: Keys) -> None:
    """Approved at B, the card tapped at A before B's record arrived: B's record still
    settles (its tap was new when B approved it), and keeps its counter for settlement."""
    _, _, b = chain(ledger, keys)
    sale = b.buy(keys.card)
    assert sale["approved"], sale
    later = counter_of(keys, read_sun_url(keys.card.apdu))  # the card at store A
    b.feed(later)
    fields = _record(sale, 1)
    with b.book.lock:
        settles = b.book.apply(fields, b.book.check(fields))
    assert settles[SUN_COUNTER_FIELD] == counter_of(keys, sale["asked"]["sun"])
    assert b.highest() == later
    # The same read in a record naming no approval given here is a replay.
    again = dict(fields, seq=2, auth_mode=txn.AUTH_OFFLINE)
    del again["auth_id"]
    with b.book.lock, pytest.raises(ValidationError) as caught:
        b.book.check(again)
    assert caught.value.reason == "card_replayed"


def _record(sale: dict[str, Any], seq: int) -> dict[str, Any]:
    """The record a till journals for an approved sale: the tap and amounts approved."""
    fields = dict(sale["asked"], seq=seq, prev=bytes(32), bonus_minor=0, points=0,
                  auth_mode=txn.AUTH_ONLINE, auth_id=sale["auth_id"])
    fields.update(record_till_amounts(sale))
    return fields


def test_records_of_two_approvals_are_taken_in_either_order(
        ledger: LedgerServer, keys: Keys) -> None:
    """Two counters of one store approve the card, one tap after the other; the later
    tap's record arrives first. The earlier one's record is still taken: each tap was new
    when it was approved."""
    _, a, _ = chain(ledger, keys)
    first, second = a.buy(keys.card, 300, seq=1), a.buy(keys.card, 200, seq=2)
    assert first["approved"] and second["approved"]
    for sale, seq in ((second, 2), (first, 1)):
        fields = _record(sale, seq)
        with a.book.lock:
            a.book.apply(fields, a.book.check(fields))
    assert a.highest() == counter_of(keys, second["asked"]["sun"])
