"""Personalizing a factory card: diversified keys, SDM on, a SUN the deployment's keys verify;
an interrupted run resumes, and nothing half-done verifies."""

from __future__ import annotations

import secrets

import pytest

from protocol.errors import ValidationError
from protocol.ntag424 import CardStatusError
from protocol.ntag424_sun import verify_sun_url
from tools.cards import new_master_keys
from tools.personalize import FACTORY_KEY, personalize
from tools.simulator.ntag424_card import Ntag424Card

UID = bytes.fromhex("04c1c2c3c4c5c6")
PREFIX = "https://tilltap.example/c"


def test_a_factory_card_gets_diversified_keys_and_a_verifiable_sun() -> None:
    masters = new_master_keys(b"tilltap-test")
    card = Ntag424Card(UID)
    result = personalize(card.apdu, masters, PREFIX, secrets.token_bytes)
    assert result == {"uid": UID.hex(), "read_counter": 1, "url": result["url"], "fresh": True}
    assert result["url"].startswith(PREFIX + "?picc_data=")
    # A terminal's tap afterwards verifies with the diversified keys, not the factory ones.
    from firmware.card_sun import read_sun_url

    url = read_sun_url(card.apdu)
    file_key = masters.card_key(UID, 2)
    assert verify_sun_url(url, masters.meta_read_key(), file_key)["read_counter"] == 2
    with pytest.raises(ValidationError):  # under the factory K1 the PICCData is noise
        verify_sun_url(url, FACTORY_KEY, FACTORY_KEY)
    assert not verify_sun_url(url, masters.meta_read_key(), FACTORY_KEY)["valid"]


def test_running_again_on_a_personalized_card_resumes_and_only_verifies() -> None:
    masters = new_master_keys(b"tilltap-test")
    card = Ntag424Card(UID)
    personalize(card.apdu, masters, PREFIX, secrets.token_bytes)
    again = personalize(card.apdu, masters, PREFIX, secrets.token_bytes, uid_hint=UID)
    assert again["fresh"] is False and again["read_counter"] == 2


def test_a_card_pulled_mid_way_is_finished_by_the_next_run() -> None:
    masters = new_master_keys(b"tilltap-test")
    card = Ntag424Card(UID)
    calls = {"n": 0}

    def pulled_after_a_few(apdu: bytes) -> bytes:
        calls["n"] += 1
        if calls["n"] > 9:  # somewhere among the ChangeKey commands
            raise OSError("card removed")
        return card.apdu(apdu)

    with pytest.raises(OSError):
        personalize(pulled_after_a_few, masters, PREFIX, secrets.token_bytes)
    card.activate()  # back in the field
    result = personalize(card.apdu, masters, PREFIX, secrets.token_bytes, uid_hint=UID)
    assert result["fresh"] is True and result["uid"] == UID.hex()


def test_a_card_of_another_deployment_is_refused() -> None:
    card = Ntag424Card(UID)
    personalize(card.apdu, new_master_keys(b"deployment-a"), PREFIX, secrets.token_bytes)
    with pytest.raises(CardStatusError):
        personalize(card.apdu, new_master_keys(b"deployment-b"), PREFIX, secrets.token_bytes,
                    uid_hint=UID)
