"""The technician's desk through the real stacks: personalize a batch of emulated NTAG 424
DNA cards at a PC/SC reader (pyscard -> pcscd -> vpcd) and at an nfcpy udp reader, inspect
one, and register each card once, after its SUN verified."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from protocol.ntag424_sun import verify_sun_url
from tools.card_station import inspect_card, personalize_batch
from tools.cards import new_master_keys
from tools.simulator.ntag424_card import Ntag424Card
from tools.transports import open_reader
from tools.transports.nfc_card import NfcUdpCard, free_udp_port
from tools.transports.vpcd_card import VpcdCard

PREFIX = "https://tilltap.example/c"


@pytest.fixture
def udp_card() -> Iterator[tuple[Ntag424Card, str]]:
    card = Ntag424Card(bytes.fromhex("04d1d2d3d4d5d6"))
    port = free_udp_port()
    served = NfcUdpCard(card, port, fwi=8)
    served.start()
    try:
        yield card, f"udp:127.0.0.1:{port}"
    finally:
        served.stop()


def test_personalize_at_a_pcsc_reader_registers_each_card_once(pcscd: object) -> None:
    masters = new_master_keys(b"tilltap-desk")
    registered: list[str] = []
    card = Ntag424Card(bytes.fromhex("04e1e2e3e4e5e6"))
    virtual = VpcdCard(card)
    virtual.insert()
    try:
        summary = personalize_batch("pcsc", 1, masters, PREFIX, registered.append,
                                    card_wait_s=10)
        assert summary["failed"] == [] and registered == ["04e1e2e3e4e5e6"]
        again = personalize_batch("pcsc", 1, masters, PREFIX, registered.append, card_wait_s=10)
        assert again["personalized"][0]["fresh"] is False  # resumed, verified, not redone
        with open_reader("pcsc", card_wait_s=10) as reader:
            report = inspect_card(reader.transmit, reader.uid(), masters)
        assert report["uid"] == "04e1e2e3e4e5e6" and report["sun"]["valid"] is True
        assert report["version"]["hardware"]["vendor_id"] == 0x04  # NXP
    finally:
        virtual.close()


def test_personalize_at_an_nfcpy_reader(udp_card: tuple[Ntag424Card, str]) -> None:
    card, reader = udp_card
    masters = new_master_keys(b"tilltap-desk")
    registered: list[str] = []
    summary = personalize_batch(reader, 1, masters, PREFIX, registered.append, card_wait_s=10)
    assert summary["failed"] == [] and registered == [card.uid.hex()]
    from firmware.card_sun import read_sun_url

    url = read_sun_url(card.apdu)
    result = verify_sun_url(url, masters.meta_read_key(),
                            lambda uid: masters.card_key(uid, 2))
    assert result["valid"] and result["uid"] == card.uid


def test_a_card_of_another_deployment_is_not_registered(
        udp_card: tuple[Ntag424Card, str]) -> None:
    card, reader = udp_card
    registered: list[str] = []
    personalize_batch(reader, 1, new_master_keys(b"deployment-a"), PREFIX, registered.append,
                      card_wait_s=10)
    other = personalize_batch(reader, 1, new_master_keys(b"deployment-b"), PREFIX,
                              registered.append, card_wait_s=10)
    assert registered == [card.uid.hex()]
    assert other["failed"][0]["reason"] == "card_auth_failed"
