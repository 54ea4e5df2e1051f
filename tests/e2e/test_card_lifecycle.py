"""A card's life through the real stacks: personalized at a technician's reader (`tilltap
card personalize` through pyscard -> pcscd -> vpcd, and through nfcpy's udp driver),
registered in the ledger, tapped at a terminal (the firmware's PN532 driver reads its SUN),
proven genuine by the gateway, settled; a clone of the card is refused as a replay."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from gateway.card_auth import CardKeys
from gateway.registry import TerminalRegistry
from gateway.service import Gateway
from ledger.client import LedgerClient
from ledger.server import serve
from tests.support import REPO_ROOT
from tools.cards import new_master_keys, write_master_keys
from tools.demo import DEMO_PROGRAMS
from tools.mosquitto import MosquittoBroker
from tools.simulator.ntag424_card import Ntag424Card
from tools.simulator.terminal import SimulatedTerminal
from tools.transports.nfc_card import NfcUdpCard, free_udp_port
from tools.transports.vpcd_card import VpcdCard

PREFIX = "https://tilltap.example/c"


def _personalize(reader: str, keys_file: Path, ledger_url: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "tools.cli", "card", "personalize", "--count", "1",
         "--reader", reader, "--master-key", str(keys_file), "--url-prefix", PREFIX,
         "--program", "gift", "--value-minor", "5000", "--merchant", "M1",
         "--ledger-url", ledger_url],
        cwd=REPO_ROOT, check=True, capture_output=True, text=True, timeout=120)


@contextmanager
def _store(broker: MosquittoBroker, tmp_path: Path) -> Iterator[tuple[Path, str, Gateway, dict]]:
    keys_file = tmp_path / "card-masters.json"
    write_master_keys(keys_file, new_master_keys(b"tilltap-e2e"))
    ledger = serve(f"sqlite:///{tmp_path / 'ledger.db'}")
    registry = TerminalRegistry()
    key = bytes(range(32))
    registry.add("T1", "M1", key)
    gateway = Gateway("gw1", broker.host, broker.port, str(tmp_path / "gateway.db"), registry,
                      DEMO_PROGRAMS, ledger.url, card_keys=CardKeys.load(keys_file))
    gateway.start()
    config = {"terminal": "T1", "merchant": "M1", "key": key, "currency": "EUR",
              "programs": DEMO_PROGRAMS}
    try:
        yield keys_file, ledger.url, gateway, config
    finally:
        gateway.stop()
        ledger.stop()


def _sell_settle_and_catch_a_clone(card: Ntag424Card, broker: MosquittoBroker, tmp_path: Path,
                                   ledger_url: str, gateway: Gateway, config: dict) -> None:
    clone = Ntag424Card.from_state(card.state())  # copied before the customer's tap
    sim = SimulatedTerminal(config, tmp_path, broker.host, broker.port, sun=True)
    try:
        sim.tap(card)
        sale = sim.terminal.purchase(1250)
        assert sale["approved"], sale
        assert sale["txn"]["sun"].startswith(PREFIX + "?picc_data=")
        sim.tap(clone)
        assert sim.terminal.purchase(100)["reason"] == "card_replayed"
        assert sim.drain(time.monotonic() + 10)
        gateway.settle()
        ledger = LedgerClient(ledger_url)
        assert ledger.card(card.uid.hex())["value_minor"] == 5000 - 1250
        assert ledger.terminal_totals()["T1"]["count"] == 1
    finally:
        sim.close()


def test_personalize_at_pcsc_tap_settle_and_refuse_a_clone(
    private_mosquitto: MosquittoBroker, tmp_path: Path, pcscd: object
) -> None:
    card = Ntag424Card(bytes.fromhex("04f1f2f3f4f5f6"))
    with _store(private_mosquitto, tmp_path) as (keys_file, ledger_url, gateway, config):
        virtual = VpcdCard(card)
        virtual.insert()
        try:
            _personalize("pcsc", keys_file, ledger_url)
        finally:
            virtual.close()
        _sell_settle_and_catch_a_clone(card, private_mosquitto, tmp_path, ledger_url, gateway,
                                       config)


def test_personalize_at_nfcpy_udp_tap_settle_and_refuse_a_clone(
    private_mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    card = Ntag424Card(bytes.fromhex("04e7e8e9eaebec"))
    port = free_udp_port()
    with _store(private_mosquitto, tmp_path) as (keys_file, ledger_url, gateway, config):
        served = NfcUdpCard(card, port, fwi=8)
        served.start()
        try:
            _personalize(f"udp:127.0.0.1:{port}", keys_file, ledger_url)
        finally:
            served.stop()
        _sell_settle_and_catch_a_clone(card, private_mosquitto, tmp_path, ledger_url, gateway,
                                       config)
