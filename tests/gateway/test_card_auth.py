"""The gateway's SUN check: genuine, of this card, and newer than the last accepted tap."""

from __future__ import annotations

import pytest

from firmware.card_sun import read_sun_url
from gateway.card_auth import CardAuthenticator, CardKeys
from protocol.errors import ValidationError
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
