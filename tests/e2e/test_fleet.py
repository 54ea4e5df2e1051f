"""The fleet as the back office sees it (issue 16, item 1), over the real parts: a ledger
process (`tilltap ledger serve`, TLS and logins), a gateway process (`tilltap gateway run
--fleet-report-every-s`) and a simulated terminal on a real Mosquitto. The terminal's
signed status reaches the ledger's fleet (GET /v1/fleet, what /office/fleet shows) with its
journal backlog while it is connected, and "offline" once the broker publishes its last
will. A manager's browser (headless Chromium) shows the same fleet and the sale the gateway
posted on the card's page."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

from gateway.registry import TerminalRegistry
from ledger.client import LedgerClient
from protocol import txn
from tests.support.gateway_process import start_gateway
from tests.support.ledger_process import LedgerProcess, LoginSpec, running_ledger
from tests.support.stack import wait_until
from tools.demo import DEMO_PROGRAMS
from tools.mosquitto import MosquittoBroker
from tools.simulator.terminal import SimulatedTerminal

GIFT = "04e0e1e2e3e4e5"
LOGINS = {
    "gw1": LoginSpec("gateway", gateway="gw1", terminals=("T1", "T2"), merchants=("M1",)),
    "office": LoginSpec("reader"),
    "mia": LoginSpec("manager", password="a manager's long secret"),
}
CHROMIUM = "/usr/bin/chromium"
BROWSER_TIMEOUT_MS = 10_000
LIMITS = {"txn_minor_max": 2000, "card_offline_minor_max": 3000,
          "terminal_offline_minor_max": 5000, "offline_s_max": 600, "offline_txn_max": 5}
REPORT_EVERY_S = "0.3"
EVENT_WAIT_S = 30.0  # generous: a deadline for an event, never a measured time
STOP_WAIT_S = 30.0


def _files(workdir: Path, ledger: LedgerProcess) -> tuple[bytes, Path]:
    """The registry (T1, and T2 that never connects), programs, limits, the gateway's
    ledger token; T1's key."""
    registry = TerminalRegistry()
    key = os.urandom(32)
    registry.add("T1", "M1", key)
    registry.add("T2", "M1", os.urandom(32))
    registry.save(workdir / "terminals.json")
    (workdir / "programs.json").write_text(json.dumps(DEMO_PROGRAMS))
    (workdir / "limits.json").write_text(json.dumps(LIMITS))
    token = workdir / "gw1.token"
    token.write_text(ledger.tokens["gw1"] + "\n")
    return key, token


def _terminal(fleet: list[dict[str, Any]], terminal: str) -> dict[str, Any] | None:
    for gateway in fleet:
        for row in gateway["terminals"]:
            if gateway["gateway_id"] == "gw1" and row["terminal"] == terminal:
                return dict(row)
    return None


def _stop(gateway: subprocess.Popen[str]) -> None:
    if gateway.poll() is None:
        gateway.terminate()
    gateway.wait(timeout=STOP_WAIT_S)


def test_a_terminals_status_and_backlog_reach_the_fleet_and_its_last_will_marks_it_offline(
    private_mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    with running_ledger(tmp_path, LOGINS) as ledger:
        key, token = _files(tmp_path, ledger)
        run = ("--ledger-url", ledger.url, "--ledger-token-file", str(token), "--ledger-ca",
               ledger.ca, "--limits", str(tmp_path / "limits.json"),
               "--fleet-report-every-s", REPORT_EVERY_S, "--settle-every-s", "0")
        reader = LedgerClient(ledger.url, 30, token=ledger.tokens["office"], ca_file=ledger.ca)
        config = {"terminal": "T1", "merchant": "M1", "key": key, "currency": "EUR",
                  "programs": DEMO_PROGRAMS}
        gateway = start_gateway(private_mosquitto, tmp_path, *run)
        sim = SimulatedTerminal(config, tmp_path, private_mosquitto.host,
                                private_mosquitto.port)
        try:
            sim.terminal.auth_timeout_ms = 300
            sim.service(0)
            assert wait_until(lambda: (sim.service(20), sim.settings.version)[1] >= 1)
            sim.tap(GIFT)
            assert sim.terminal.issue("gift", 2500)["approved"]
            assert sim.drain(time.monotonic() + EVENT_WAIT_S)

            def t1(**wanted: Any) -> bool:
                row = _terminal(reader.fleet(), "T1")
                return row is not None and all(row[k] == v for k, v in wanted.items())

            assert wait_until(lambda: t1(state="online", journal_depth=0), EVENT_WAIT_S)
            t2 = _terminal(reader.fleet(), "T2")
            assert t2 is not None and t2["state"] == "unknown" and t2["heard_at"] is None

            # The gateway goes down; the terminal sells offline: one record unacknowledged.
            _stop(gateway)
            sale = sim.terminal.purchase(500)
            assert sale["approved"] and sale["txn"]["auth_mode"] == txn.AUTH_OFFLINE
            assert sim.journal.depth == 1
            sim.close()  # a clean goodbye: no last will

            # Back up; the terminal reconnects and says what its journal holds.
            gateway = start_gateway(private_mosquitto, tmp_path, *run)
            sim = SimulatedTerminal(config, tmp_path, private_mosquitto.host,
                                    private_mosquitto.port)
            sim.service(0)
            assert wait_until(lambda: t1(state="online", journal_depth=1), EVENT_WAIT_S)
            row = _terminal(reader.fleet(), "T1")
            assert row is not None and row["firmware"] and row["refused"] == 0
            assert row["config_sent"] >= 1 and row["heard_at"] is not None
            [reported] = [g for g in reader.fleet() if g["gateway_id"] == "gw1"]
            assert reported["terminals_registered"] == 2
            _in_the_browser(ledger.url, reader)

            # The terminal drops without a goodbye: the broker publishes its last will.
            link = sim.net.client
            assert link is not None
            link.loop_stop()
            connection = link.socket()
            assert connection is not None
            connection.close()
            sim.net.client = None
            assert wait_until(lambda: t1(state="offline"), EVENT_WAIT_S)
        finally:
            sim.close()
            _stop(gateway)


def _in_the_browser(url: str, reader: LedgerClient) -> None:
    """A manager signs in: the fleet page shows T1 online with its backlog of 1 and T2 never
    heard from, as the API does; the card's page lists the issue the gateway posted."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            context = browser.new_context(ignore_https_errors=True)  # the ledger's test CA
            context.set_default_timeout(BROWSER_TIMEOUT_MS)
            page = context.new_page()
            page.goto(f"{url}/office/")
            page.fill("input[name=name]", "mia")
            page.fill("input[name=password]", LOGINS["mia"].password or "")
            page.click("#sign-in")
            page.wait_for_url("**/office/")
            page.click("nav >> text=Fleet")
            rows = {row.locator("td").nth(0).text_content():
                    [cell.text_content() for cell in row.locator("td").all()]
                    for row in page.locator("#fleet-gw1 tbody tr").all()}
            api = {row["terminal"]: row for g in reader.fleet() for row in g["terminals"]}
            assert rows["T1"][2:4] == ["yes", "online"] and rows["T1"][5] == "1"
            assert rows["T1"][5] == str(api["T1"]["journal_depth"])
            assert rows["T2"][2:4] == ["no", "unknown"]
            page.goto(f"{url}/office/card?card={GIFT}")
            issued = page.locator("#transactions tbody tr").filter(has_text="issue")
            assert issued.count() == 1 and "gw1" in (issued.text_content() or "")
        finally:
            browser.close()
