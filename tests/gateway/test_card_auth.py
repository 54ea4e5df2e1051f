"""The gateway's SUN check: genuine, of this card, and newer than the last accepted tap."""

from __future__ import annotations

import pytest

from firmware.card_sun import read_sun_url
from gateway.card_auth import CardAuthenticator, CardKeys
from protocol.errors import ValidationError
from tests.support.card_loads import approve_load
from tools.cards import new_master_keys
from tools.personalize import personalize
from tools.simulator.ntag424_card import Ntag424Card

UID = bytes.fromhex("04abcdef012345")
OTHER = bytes.fromhex("04abcdef012399")


def _setup() -> tuple[CardAuthenticator, Ntag424Card, Ntag424Card]:
    import secrets

    masters = new_master_keys(b"gw-test")
    cards = []
    for uid in (UID, OTHER):
        card = Ntag424Card(uid)
        personalize(card.apdu, masters, "https://t.example/c", secrets.token_bytes)
        cards.append(card)
    keys = CardKeys(masters.master(1), masters.master(2), masters.system_id)
    return CardAuthenticator(keys), cards[0], cards[1]


def _reason(authenticator: CardAuthenticator, fields: dict[str, object]) -> str:
    with pytest.raises(ValidationError) as caught:
        authenticator.read_counter(fields)
    return caught.value.reason


def test_a_fresh_tap_gives_its_read_counter() -> None:
    authenticator, card, _ = _setup()
    url = read_sun_url(card.apdu)
    assert authenticator.read_counter({"card": UID.hex(), "sun": url}) == 2


def test_a_forged_mac_a_foreign_sun_and_no_sun_are_card_auth_failed() -> None:
    authenticator, card, other = _setup()
    url = read_sun_url(card.apdu)
    forged = url[:-1] + ("0" if url[-1] != "0" else "1")
    assert _reason(authenticator, {"card": UID.hex(), "sun": forged}) == "card_auth_failed"
    theirs = read_sun_url(other.apdu)
    assert _reason(authenticator, {"card": UID.hex(), "sun": theirs}) == "card_auth_failed"
    assert _reason(authenticator, {"card": UID.hex()}) == "card_auth_failed"


def test_a_tap_not_newer_than_the_last_accepted_is_card_replayed() -> None:
    authenticator, card, _ = _setup()
    url = read_sun_url(card.apdu)
    counter = authenticator.read_counter({"card": UID.hex(), "sun": url})
    with pytest.raises(ValidationError) as caught:
        authenticator.check_newer(counter, counter)
    assert caught.value.reason == "card_replayed"


def test_malformed_sun_urls_are_refused_with_a_reason() -> None:
    authenticator, _, _ = _setup()
    for bad in ("https://t.example/c?picc_data=zz&cmac=00", "https://t.example/c",
                "https://t.example/c?picc_data=" + "0" * 32 + "&cmac=" + "0" * 15):
        assert _reason(authenticator, {"card": UID.hex(), "sun": bad}) == "sun_malformed"


def test_read_counters_are_right_both_ways_for_a_card_book() -> None:
    """An offline sale tapped before a later online tap reached the gateway first is taken
    (its lower counter was never seen); a replay of any counter seen is refused, online or
    offline; online taps must always be newer (docs/cards.md, "Read counters")."""
    from gateway.cards import SUN_WINDOW, CardBook
    from protocol import txn
    from tools.demo import DEMO_PROGRAMS

    authenticator, card, _ = _setup()
    book = CardBook(DEMO_PROGRAMS, authenticator=authenticator,
                    offline_limits={"txn_minor_max": 5000})
    base = {"terminal": "T1", "merchant": "M1", "card": UID.hex(), "currency": "EUR",
            "bonus_minor": 0, "points": 0, "time": 1_764_000_000, "auth_mode": txn.AUTH_ONLINE}

    def record(seq: int, kind: int, value: int, sun: str, **extra: object) -> dict:
        return dict(base, seq=seq, kind=kind, amount_minor=value, card_value_minor=value,
                    sun=sun, **extra)

    def reason(fields: dict) -> str:
        with pytest.raises(ValidationError) as caught:
            book.check(fields)
        return caught.value.reason

    issue = record(1, txn.KIND_ISSUE, 5000, read_sun_url(card.apdu), program="gift")
    issue.update(book.apply(issue, book.check(approve_load(book, issue))))
    offline_tap = read_sun_url(card.apdu)  # tapped at a counter that is offline
    online_tap = read_sun_url(card.apdu)  # the same card, later, at another counter
    online = record(2, txn.KIND_PURCHASE, 100, online_tap)
    book.apply(online, book.check(online))
    late = record(3, txn.KIND_PURCHASE, 200, offline_tap, auth_mode=txn.AUTH_OFFLINE)
    book.apply(late, book.check(late))  # taken: it happened before, never seen
    assert book.sun_late_offline == 1
    # Replays of what was seen, offline or online, and an online tap not newer: refused.
    assert reason(dict(late, seq=4)) == "card_replayed"
    assert reason(record(4, txn.KIND_PURCHASE, 100, offline_tap)) == "card_replayed"
    assert reason(record(4, txn.KIND_PURCHASE, 100, online_tap,
                         auth_mode=txn.AUTH_OFFLINE)) == "card_replayed"
    assert book.cards[UID.hex()]["sun_seen"][-1] == book.cards[UID.hex()]["sun_counter"]
    # An offline tap older than the window is a replay too (the seen set is bounded).
    old_tap = read_sun_url(card.apdu)
    for _ in range(SUN_WINDOW):
        newest = read_sun_url(card.apdu)
    book.apply(record(4, txn.KIND_PURCHASE, 100, newest),
               book.check(record(4, txn.KIND_PURCHASE, 100, newest)))
    assert reason(record(5, txn.KIND_PURCHASE, 100, old_tap,
                         auth_mode=txn.AUTH_OFFLINE)) == "card_replayed"
    assert len(book.cards[UID.hex()]["sun_seen"]) <= SUN_WINDOW
