"""Enrolment at the counter end to end (issue 17 item 1; docs/protocol.md section 5.11,
docs/ledger.md "Enrolment at the counter"): a simulated terminal (the real firmware) on a
private Mosquitto, `tilltap gateway run` as its own process with its ledger login, and the
central ledger with its customer key and logins, on SQLite and on PostgreSQL.

A card sold at the counter is enrolled with a phone number and a first name: the ledger then
has a customer with that phone and the card, read back through its API with an admin's key.
A second card enrolled with the same phone (written otherwise) joins the same customer. An
approved sale of the first card greets the customer by first name. Neither the phone number,
the e-mail address nor the name is anywhere in the gateway's store files or its stderr.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.registry import TerminalRegistry
from ledger.auth import dump_logins, new_login
from ledger.client import LedgerClient
from ledger.errors import NotFound
from ledger.personal_crypto import load_key_file, new_key_file
from ledger.server import LedgerServer, serve
from tests.support.gateway_process import start_gateway
from tests.support.stack import wait_until
from tools.demo import DEMO_PROGRAMS
from tools.mosquitto import MosquittoBroker
from tools.simulator.terminal import SimulatedTerminal

CARD, SECOND_CARD, STRANGER = "04e0e1e2e3e4e5", "04e0e1e2e3e4e6", "04e0e1e2e3e4e7"
PHONE, PHONE_OTHERWISE, PHONE_E164 = "+351 912 345 678", "+351-912-345-678", "+351912345678"
EMAIL = "zuleika.quist@example.org"
FIRST_NAME = "Zuleika"
PERSONAL = (PHONE_E164, "912345678", "912 345 678", "912-345-678", EMAIL, FIRST_NAME)
WAIT_S = 20.0
STOP_WAIT_S = 30.0


@pytest.fixture
def ledger(chain_ledger_dsn: str, tmp_path: Path) -> Iterator[tuple[LedgerServer, str, str]]:
    """The ledger with its customer key: (server, the gateway's token, an admin's token)."""
    new_key_file(tmp_path / "customer.key")
    gateway_login, gateway_token = new_login("gw1", "gateway", gateway="gw1",
                                             terminals=("T1",), merchants=("M1",))
    admin_login, admin_token = new_login("admin", "admin")
    logins = tmp_path / "logins.json"
    logins.write_text(dump_logins({"gw1": gateway_login, "admin": admin_login}))
    server = serve(chain_ledger_dsn, logins_file=logins,
                   customer_key=load_key_file(tmp_path / "customer.key"))
    yield server, gateway_token, admin_token
    server.stop()


def _admin_get(server: LedgerServer, token: str, path: str) -> Any:
    client = LedgerClient(server.url, token=token)
    return client._request("GET", path)  # noqa: SLF001 - the API as an operator reads it


def _sell(sim: SimulatedTerminal, card: str, ledger: LedgerClient) -> None:
    """Issue `card` at the counter and wait until the ledger has its sale."""
    sim.tap(card)
    assert sim.terminal.issue("gift", 5_000)["approved"]
    assert sim.drain(time.monotonic() + WAIT_S)

    def known() -> bool:
        try:
            ledger.card(card)
        except NotFound:
            return False
        return True

    assert wait_until(known, WAIT_S), f"the ledger never got card {card}"


def test_a_card_enrolled_at_the_counter_is_a_customer_at_the_ledger_and_nothing_personal_stays(
        private_mosquitto: MosquittoBroker, tmp_path: Path,
        ledger: tuple[LedgerServer, str, str]) -> None:
    server, gateway_token, admin_token = ledger
    key = os.urandom(32)
    registry = TerminalRegistry()
    registry.add("T1", "M1", key)
    registry.save(tmp_path / "terminals.json")
    (tmp_path / "programs.json").write_text(json.dumps(DEMO_PROGRAMS))
    token_file = tmp_path / "gw1.token"
    token_file.write_text(gateway_token + "\n")
    token_file.chmod(0o600)
    log = tmp_path / "gateway.log"
    with log.open("a") as log_file:
        gateway = start_gateway(private_mosquitto, tmp_path, "--ledger-url", server.url,
                                "--ledger-token-file", str(token_file),
                                "--settle-every-s", "0", "--post-within-s", "0.2",
                                stderr=log_file.fileno())
    sim = SimulatedTerminal({"terminal": "T1", "merchant": "M1", "key": key,
                             "currency": "EUR", "programs": DEMO_PROGRAMS}, tmp_path,
                            private_mosquitto.host, private_mosquitto.port)
    admin = LedgerClient(server.url, token=admin_token)
    try:
        sim.service(0)
        _sell(sim, CARD, admin)
        _sell(sim, SECOND_CARD, admin)

        sim.tap(CARD)
        enrolled = sim.terminal.enrol(phone=PHONE, first_name=FIRST_NAME, consent=True)
        assert enrolled["approved"], enrolled
        assert enrolled["response"]["first_name"] == FIRST_NAME
        assert "joined" not in enrolled["response"]

        history = _admin_get(server, admin_token, f"/v1/cards/{CARD}/history")
        customer_id = history["customer_id"]
        assert customer_id is not None
        record = _admin_get(server, admin_token, f"/v1/customers/{customer_id}")
        assert (record["phone"], record["name"]) == (PHONE_E164, FIRST_NAME)
        assert record["marketing_consent"]["granted"] is True
        assert [card["card"] for card in record["cards"]] == [CARD]

        # A second card, the same phone written otherwise (and an e-mail): the same customer.
        sim.tap(SECOND_CARD)
        joined = sim.terminal.enrol(phone=PHONE_OTHERWISE, email=EMAIL)
        assert joined["approved"], joined
        assert (joined["response"]["first_name"], joined["response"]["joined"]) == (
            FIRST_NAME, True)
        record = _admin_get(server, admin_token, f"/v1/customers/{customer_id}")
        assert sorted(card["card"] for card in record["cards"]) == sorted([CARD, SECOND_CARD])

        # A card the ledger never heard of is declined, and nothing is made for it.
        sim.tap(STRANGER)
        stranger = sim.terminal.enrol(email=EMAIL)
        assert (stranger["approved"], stranger["reason"]) == (False, "card_unknown")

        # The regular is greeted at the next sale; the record carries no name.
        sim.tap(CARD)
        sale = sim.terminal.purchase(1_000)
        assert sale["approved"] and sale["response"]["first_name"] == FIRST_NAME
        assert "first_name" not in sale["txn"]
        assert sim.drain(time.monotonic() + WAIT_S)
    finally:
        sim.close()
        if gateway.poll() is None:
            gateway.terminate()
        gateway.wait(timeout=STOP_WAIT_S)
    assert gateway.returncode == 0

    # The gateway's store (database, journal and write-ahead files) and its stderr hold no
    # personal value; the log does hold the enrolments (by card and terminal).
    stored = [path for path in tmp_path.iterdir() if path.name.startswith("gateway.db")]
    assert stored
    text = log.read_text()
    assert "card_enrolled" in text and CARD in text
    for path in [*stored, log]:
        data = path.read_bytes()
        for value in PERSONAL:
            assert value.encode() not in data, (path.name, value)
    assert subprocess.run(["grep", "-rlF", PHONE_E164, *map(str, stored), str(log)],
                          check=False).returncode == 1
