"""The services' JSON log lines (issue 16 item 2) and the registry read again on SIGHUP
(issue 16 item 3), on real processes: `tilltap gateway run` and `tilltap ledger serve` on
a private Mosquitto, each writing its stderr to a file the test reads as JSON lines.

What an operator's log store must be able to find, one line each: a terminal connecting and
dropping, a batch settled, the ledger going away and coming back (once, however often the
gateway asks meanwhile), the broker going away and coming back, an alarm at the ledger; and
what it must not find: a card's first look-up logged as a refusal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.registry import TerminalRegistry
from ledger.client import LedgerClient
from ledger.errors import HoldRefused
from protocol import txn
from tests.support import REPO_ROOT
from tests.support.gateway_process import start_gateway
from tests.support.stack import RawTerminal, wait_until
from tools.demo import DEMO_PROGRAMS
from tools.mosquitto import MosquittoBroker, pick_free_port
from tools.simulator.terminal import SimulatedTerminal

GIFT = "04e0e1e2e3e4e5"
SECOND_GIFT = "04e0e1e2e3e4e6"
EVENT_WAIT_S = 20.0
LEDGER_START_S = 20.0
STOP_WAIT_S = 30.0
CLIENT_TIMEOUT_S = 5.0
FIXED_KEYS = ["ts", "level", "component", "logger", "event", "message"]


def _lines(path: Path) -> list[dict[str, Any]]:
    """Every complete line of a log file, each parsed as one JSON object (a line that is not
    one fails the test: the format is JSON lines)."""
    text = path.read_text() if path.exists() else ""
    complete = text[:text.rfind("\n") + 1]  # a line being written is read next time
    lines = [json.loads(line) for line in complete.splitlines() if line.strip()]
    for line in lines:
        assert list(line)[:len(FIXED_KEYS)] == FIXED_KEYS, line
    return lines


def _events(path: Path, event: str, **fields: Any) -> list[dict[str, Any]]:
    return [line for line in _lines(path) if line["event"] == event
            and all(line.get(name) == value for name, value in fields.items())]


def _await(path: Path, event: str, **fields: Any) -> dict[str, Any]:
    """The first line of `event` (with those fields), waited for."""
    assert wait_until(lambda: bool(_events(path, event, **fields)), EVENT_WAIT_S), (
        f"no {event} {fields} in {path.name}:\n{path.read_text()[-3000:]}")
    return _events(path, event, **fields)[0]


class Ledger:
    """`tilltap ledger serve` on SQLite, open on loopback, on a fixed port so that it can be
    stopped and started again where the gateway looks for it; stderr appended to `log`."""

    def __init__(self, workdir: Path) -> None:
        self.db = workdir / "ledger.db"
        self.log = workdir / "ledger.log"
        self.port = pick_free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[str] | None = None
        self._log_file: IO[str] | None = None

    def start(self) -> None:
        self._log_file = self.log.open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tools.cli", "ledger", "serve", "--ledger-dsn",
             f"sqlite://{self.db}", "--port", str(self.port)],
            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=self._log_file, text=True)
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == self.url, self.log.read_text()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._log_file is not None:
            self._log_file.close()
        self.process, self._log_file = None, None

    def client(self) -> LedgerClient:
        return LedgerClient(self.url, CLIENT_TIMEOUT_S)

    def card_lookups_unknown(self) -> float:
        """GET /v1/cards/<card> answered 404, as its /metrics counts them."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=CLIENT_TIMEOUT_S) as answer:
            text = answer.read().decode()
        return sum(sample.value for family in text_string_to_metric_families(text)
                   for sample in family.samples
                   if sample.name == "tilltap_ledger_http_requests_total"
                   and sample.labels == {"route": "/v1/cards/{card}", "method": "GET",
                                         "status": "404"})


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    running = Ledger(tmp_path)
    running.start()
    yield running
    running.stop()


def _registry(workdir: Path, keys: dict[str, bytes]) -> None:
    registry = TerminalRegistry()
    for terminal, key in keys.items():
        registry.add(terminal, "M1", key)
    registry.save(workdir / "terminals.json")


def _gateway(broker: MosquittoBroker, workdir: Path, *extra: str
             ) -> tuple[subprocess.Popen[str], Path]:
    """A gateway process on `workdir`'s files, its stderr in gateway.log."""
    (workdir / "programs.json").write_text(json.dumps(DEMO_PROGRAMS))
    log = workdir / "gateway.log"
    with log.open("a") as log_file:
        process = start_gateway(broker, workdir, *extra, stderr=log_file.fileno())
    return process, log


def _stop(gateway: subprocess.Popen[str]) -> None:
    if gateway.poll() is None:
        gateway.terminate()
    gateway.wait(timeout=STOP_WAIT_S)


def test_a_sale_a_terminal_drop_an_alarm_and_a_ledger_outage_are_one_line_each(
    private_mosquitto: MosquittoBroker, tmp_path: Path, ledger: Ledger
) -> None:
    key = os.urandom(32)
    _registry(tmp_path, {"T1": key})
    gateway, log = _gateway(private_mosquitto, tmp_path, "--ledger-url", ledger.url,
                            "--feed-poll-s", "0.2", "--settle-every-s", "0")
    sim = SimulatedTerminal({"terminal": "T1", "merchant": "M1", "key": key, "currency": "EUR",
                             "programs": DEMO_PROGRAMS}, tmp_path, private_mosquitto.host,
                            private_mosquitto.port)
    try:
        started = _await(log, "gateway_started")
        assert (started["gateway"], started["component"], started["terminals"]) == ("gw1",
                                                                                   "gateway", 1)
        assert _await(log, "broker_connected")["broker"] == f"127.0.0.1:{private_mosquitto.port}"

        # The terminal connects: its signed "online" status.
        sim.service(0)
        connected = _await(log, "terminal_connected", terminal="T1")
        assert connected["merchant"] == "M1" and connected["level"] == "info"

        # A card's first tap is a look-up at the ledger (404: not known yet), then a sale
        # that is settled within a second or so.
        before = ledger.card_lookups_unknown()
        sim.tap(GIFT)
        assert sim.terminal.issue("gift", 10_000)["approved"]
        assert sim.drain(time.monotonic() + EVENT_WAIT_S)
        posted = _await(log, "settlement_posted")
        assert posted["posted"] == 1 and posted["refused"] == 0 and posted["batch"]
        assert ledger.card_lookups_unknown() > before  # the look-up was made ...
        refusals = [line for line in _lines(ledger.log)
                    if "refused" in line["message"] or line["event"] == "request_refused"]
        assert refusals == []  # ... and is not logged as a refusal

        # The terminal drops without a goodbye: the broker publishes its last will.
        link = sim.net.client
        assert link is not None
        link.loop_stop()
        connection = link.socket()
        assert connection is not None
        connection.close()
        sim.net.client = None
        lost = _await(log, "terminal_lost", terminal="T1")
        assert lost["level"] == "warning"

        # An alarm at the ledger: one hold id asked twice with different amounts.
        client = ledger.client()
        client.place_hold("gw9-a1", GIFT, "EUR", 100, 600, "T1", "M1")
        with pytest.raises(HoldRefused):
            client.place_hold("gw9-a1", GIFT, "EUR", 200, 600, "T1", "M1")
        alarm = _await(ledger.log, "alarm", reason="hold_conflict")
        assert alarm["component"] == "ledger" and alarm["level"] == "warning"

        # The ledger goes away while the gateway reads its feed five times a second, and
        # comes back: one line each.
        ledger.stop()
        away = _await(log, "ledger_unavailable")
        assert away["ledger"] == f"127.0.0.1:{ledger.port}" and away["level"] == "warning"
        time.sleep(1.0)  # several reads fail meanwhile
        assert len(_events(log, "ledger_unavailable")) == 1
        ledger.start()
        _await(log, "ledger_back", ledger=f"127.0.0.1:{ledger.port}")
        assert len(_events(log, "ledger_unavailable")) == len(_events(log, "ledger_back")) == 1
        assert gateway.poll() is None
    finally:
        sim.close()
        _stop(gateway)
    assert gateway.returncode == 0
    assert _events(log, "gateway_stopped")
    assert not _events(log, "broker_lost")  # a stop is no lost broker
    assert all(line["gateway"] == "gw1" for line in _lines(log))
    assert key.hex() not in log.read_text()


def test_the_broker_lost_and_back_are_one_line_each(
    private_mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    _registry(tmp_path, {"T1": os.urandom(32)})
    gateway, log = _gateway(private_mosquitto, tmp_path)
    try:
        _await(log, "broker_connected")
        private_mosquitto.kill()
        lost = _await(log, "broker_lost")
        assert lost["level"] == "warning" and lost["broker"].endswith(f":{private_mosquitto.port}")
        private_mosquitto.start()  # the same port
        _await(log, "broker_back")
        assert len(_events(log, "broker_lost")) == len(_events(log, "broker_back")) == 1
        assert len(_events(log, "broker_connected")) == 1
        assert gateway.poll() is None
    finally:
        _stop(gateway)
    assert gateway.returncode == 0


def _terminal_unknown_notices(raw: RawTerminal) -> int:
    return sum(1 for notice in raw.notices() if notice["reason"] == "terminal_unknown")


def _configs(raw: RawTerminal) -> int:
    with raw._lock:
        return sum(1 for topic, _ in raw.downlinks if topic.endswith("/config"))


def test_sighup_reads_the_registry_again_and_a_bad_file_keeps_the_one_in_use(
    private_mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    keys = {"T1": os.urandom(32), "T2": os.urandom(32)}
    _registry(tmp_path, {"T1": keys["T1"]})
    gateway, log = _gateway(private_mosquitto, tmp_path)
    raw = RawTerminal(private_mosquitto, "T2", keys["T2"])
    try:
        _await(log, "gateway_started")
        # Before: T2 is no terminal of this store, its signed record is refused.
        raw.publish(raw.record(txn.KIND_ISSUE, GIFT, 5000, program="gift"))
        assert wait_until(lambda: _terminal_unknown_notices(raw) == 1)
        assert raw.acks() == [] and _configs(raw) == 0
        raw.seq, raw.prev = 0, txn.GENESIS_DIGEST  # that record never was

        # Provisioned while the gateway runs, then SIGHUP: served from then on.
        _registry(tmp_path, keys)
        gateway.send_signal(signal.SIGHUP)
        reloaded = _await(log, "registry_reloaded")
        assert (reloaded["terminals"], reloaded["added"], reloaded["removed"]) == (2, 1, 0)
        assert reloaded["added_terminals"] == ["T2"]
        assert wait_until(lambda: _configs(raw) >= 1)  # its signed configuration
        raw.publish(raw.approved(txn.KIND_ISSUE, GIFT, 5000, program="gift"))
        assert wait_until(lambda: raw.acked_through() == 1)
        assert not [ack for ack in raw.acks() if ack.get("rejected")]

        # A file that is no registry: logged, the gateway serves on with what it had.
        (tmp_path / "terminals.json").write_text('{"terminals": {"T3": ')
        gateway.send_signal(signal.SIGHUP)
        failed = _await(log, "registry_reload_failed")
        assert failed["level"] == "error" and failed["terminals"] == 2
        raw.publish(raw.approved(txn.KIND_ISSUE, SECOND_GIFT, 1000, program="gift"))
        assert wait_until(lambda: raw.acked_through() == 2)
        assert not [ack for ack in raw.acks() if ack.get("rejected")]

        # T2 taken out again: refused from then on.
        _registry(tmp_path, {"T1": keys["T1"]})
        gateway.send_signal(signal.SIGHUP)
        _await(log, "registry_reloaded", removed=1)
        raw.publish(raw.record(txn.KIND_ISSUE, "04e0e1e2e3e4e7", 1000, program="gift"))
        assert wait_until(lambda: _terminal_unknown_notices(raw) == 2)
        assert raw.acked_through() == 2
        assert gateway.poll() is None
    finally:
        raw.close()
        _stop(gateway)
    assert gateway.returncode == 0
    text = log.read_text()
    assert keys["T1"].hex() not in text and keys["T2"].hex() not in text
