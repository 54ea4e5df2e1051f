"""A standby gateway per store (issue 14 item 6): two `tilltap gateway run` processes on one
store database and one broker login, over the broker as a store deploys it. One holds the
store's lease and serves; the other waits. Killed (SIGKILL) mid-load, the active one is
replaced by the standby, which carries on from the store as a restart does: every record is
acked to its terminal and posted once, each terminal's sequence and chain go on, and the
ledger holds the killed one placed are posted by their records or voided. Paused past its
lease, an active one is fenced off: resumed, it stops without writing or taking the broker
session back (gateway/lease.py, docs/architecture.md "Standby gateway")."""

from __future__ import annotations

import json
import os
import queue
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import IO, Any

import pytest

from gateway.lease import EXIT_LEASE_LOST, LeaseLost
from gateway.ledger_holds import VOID_SWEEP_INTERVAL_S
from gateway.mqtt import MqttLink, queue_route
from gateway.registry import TerminalRegistry
from gateway.stats import Stats
from ledger.client import LedgerClient
from ledger.server import serve
from protocol import topics, txn
from tests.support.gateway_process import start_gateway, start_standby
from tests.support.stack import RawTerminal, wait_until
from tests.support.store_broker import StoreBroker, broker_ca, terminal_login
from tools.demo import DEMO_PROGRAMS, Expected
from tools.simulator.terminal import SimulatedTerminal

LEASE_S = "2"  # short, so the paused case waits little; a killed holder is seen at once
HOLD_TTL_S = 8.0  # the shortest the gateway takes: holds the killed one left end soon
OPERATIONS_PER_TERMINAL = 40
TERMINALS = ("T1", "T2")
CARDS = [f"04e0e1e2e3e4e{i}" for i in range(4)]
HOLDS_END_S = HOLD_TTL_S + VOID_SWEEP_INTERVAL_S + 10.0  # + a start and the test's polling
DRAIN_S = 30.0
STOP_S = 20.0
CLIENT_ID = "tilltap-gateway-gw1"


def _store(tmp_path: Path, broker: StoreBroker) -> tuple[TerminalRegistry, dict[str, bytes]]:
    keys = {terminal: os.urandom(32) for terminal in TERMINALS}
    registry = TerminalRegistry()
    for terminal, key in keys.items():
        registry.add(terminal, "M1", key)
    registry.save(tmp_path / "terminals.json")
    (tmp_path / "programs.json").write_text(json.dumps(DEMO_PROGRAMS))
    broker.terminal_logins("M1", list(TERMINALS))
    return registry, keys


def _log(tmp_path: Path, name: str) -> IO[str]:
    return (tmp_path / f"{name}.log").open("w")


def _terminal(broker: StoreBroker, tmp_path: Path, terminal: str, key: bytes,
              seed: int) -> SimulatedTerminal:
    login = terminal_login(broker, "M1", terminal)
    assert login is not None
    config: dict[str, Any] = {"terminal": terminal, "merchant": "M1", "key": key,
                              "currency": "EUR", "programs": DEMO_PROGRAMS,
                              "broker_user": login[0], "broker_password": login[1],
                              "broker_ca": broker_ca(broker)}
    return SimulatedTerminal(config, tmp_path, broker.host, broker.port, seed)


def _sell(sim: SimulatedTerminal, expected: Expected, progress: list[int],
          errors: list[BaseException]) -> None:
    try:
        for number in range(OPERATIONS_PER_TERMINAL):
            sim.tap(CARDS[number % len(CARDS)])
            expected.record(sim.terminal.purchase(100 + number, pay_from_card=True))
            sim.service(0)
            progress.append(number)
    except BaseException as error:  # re-raised by the test's own thread
        errors.append(error)


def _lease(tmp_path: Path) -> tuple[int, str]:
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        epoch, holder = db.execute("SELECT epoch, holder FROM lease").fetchone()
    return epoch, holder


def _records(tmp_path: Path) -> list[tuple[str, int, str, str]]:
    with sqlite3.connect(tmp_path / "gateway.db") as db:
        return db.execute("SELECT terminal, seq, txn_id, status FROM records WHERE terminal"
                          " != 'gw1' ORDER BY terminal, seq").fetchall()


def _totals_match(ledger: LedgerClient, expected: Expected) -> bool:
    totals = ledger.terminal_totals()
    for terminal, approved in expected.per_terminal.items():
        posted = totals.get(terminal, {"count": 0, "by_kind": {}})
        amount = sum(kind["amount_minor"] for kind in posted["by_kind"].values())
        if (posted["count"], amount) != (approved["count"], approved["amount_minor"]):
            return False
    return True


def test_a_standby_takes_over_from_a_killed_active_losing_and_doubling_nothing(
        store_broker: StoreBroker, tmp_path: Path) -> None:
    _, keys = _store(tmp_path, store_broker)
    ledger_server = serve(f"sqlite:///{tmp_path / 'ledger.db'}")
    ledger = LedgerClient(ledger_server.url)
    options = ("--ledger-url", ledger_server.url, "--lease-s", LEASE_S,
               "--hold-ttl-s", str(HOLD_TTL_S))
    active_log, standby_log = _log(tmp_path, "active"), _log(tmp_path, "standby")
    active = start_gateway(store_broker, tmp_path, *options, stderr=active_log.fileno())
    standby, said = start_standby(store_broker, tmp_path, *options,
                                  stderr=standby_log.fileno())
    sims = [_terminal(store_broker, tmp_path, terminal, keys[terminal], seed)
            for seed, terminal in enumerate(TERMINALS)]
    try:
        expected = Expected()
        for card in CARDS:
            sims[0].tap(card)
            expected.record(sims[0].terminal.issue("gift", 100_000))
        progress: list[int] = []
        errors: list[BaseException] = []
        threads = [threading.Thread(target=_sell, args=(sim, expected, progress, errors))
                   for sim in sims]
        for thread in threads:
            thread.start()
        assert wait_until(lambda: len(progress) >= OPERATIONS_PER_TERMINAL or bool(errors))
        assert not errors, errors
        active.send_signal(signal.SIGKILL)  # mid-load: purchases authorized and in flight
        active.wait()
        assert wait_until(lambda: "gateway ready" in said), "the standby did not take over"
        for thread in threads:
            thread.join()
        assert not errors, errors
        for sim in sims:  # every approved record acked, by one gateway or the other
            assert sim.drain(time.monotonic() + DRAIN_S), sim.config["terminal"]

        epoch, holder = _lease(tmp_path)
        assert epoch == 2 and f" {standby.pid} " in holder
        # Each terminal's records are its seqs 1..n, each once, all accepted: its sequence
        # and chain went on across the switch; and they are exactly the approved ones.
        records = _records(tmp_path)
        for sim in sims:
            name = sim.config["terminal"]
            seqs = [seq for terminal, seq, _, _ in records if terminal == name]
            assert seqs == list(range(1, sim.journal.last_seq + 1)), name
        assert {status for _, _, _, status in records} == {"accepted"}
        assert {txn_id for _, _, txn_id, _ in records} == set(expected.kind_of)
        # Posted once each (the ledger's counts and sums per terminal are the approvals'),
        # and no hold left open: those of the killed one posted by records, or voided.
        assert wait_until(lambda: _totals_match(ledger, expected), DRAIN_S)
        assert wait_until(lambda: ledger.hold_totals().get("open", 0) == 0, HOLDS_END_S), \
            ledger.hold_totals()
        for card, book in expected.cards.items():
            found = ledger.card(card)
            assert (found["value_minor"], found["held_minor"]) == (book["value"], 0), card
        assert expected.kinds.get(txn.KIND_NAMES[txn.KIND_PURCHASE], 0) >= \
            OPERATIONS_PER_TERMINAL  # the load really flowed
        standby.send_signal(signal.SIGTERM)
        assert standby.wait(STOP_S) == 0
        assert "active: lease taken (epoch 1)" in (tmp_path / "active.log").read_text()
        standby_said = (tmp_path / "standby.log").read_text()
        assert "standby: waiting for the lease" in standby_said
        assert "active: lease taken (epoch 2)" in standby_said
    finally:
        for sim in sims:
            sim.close()
        for process in (active, standby):
            if process.poll() is None:
                process.kill()
                process.wait()
        active_log.close()
        standby_log.close()
        ledger_server.stop()


def _stop_between_writes(process: subprocess.Popen[str], db_path: Path) -> None:
    """SIGSTOP `process` at a moment it holds no write lock on the store: a process frozen
    while it holds one keeps every writer out until it is killed (docs/architecture.md)."""
    probe = sqlite3.connect(db_path, timeout=0, isolation_level=None)
    try:
        while True:
            os.kill(process.pid, signal.SIGSTOP)
            try:
                probe.execute("BEGIN IMMEDIATE")
                probe.execute("ROLLBACK")
                return
            except sqlite3.OperationalError:  # caught mid-write: let it finish, try again
                os.kill(process.pid, signal.SIGCONT)
                time.sleep(0.05)
    finally:
        probe.close()


def test_an_active_paused_past_its_lease_is_fenced_off_when_it_resumes(
        store_broker: StoreBroker, tmp_path: Path) -> None:
    _, keys = _store(tmp_path, store_broker)
    active_log = _log(tmp_path, "active")
    active = start_gateway(store_broker, tmp_path, "--lease-s", LEASE_S,
                           stderr=active_log.fileno())
    standby, said = start_standby(store_broker, tmp_path, "--lease-s", LEASE_S)
    raw = RawTerminal(store_broker, "T1", keys["T1"])
    try:
        raw.publish(raw.approved(txn.KIND_ISSUE, CARDS[0], 5000, program="gift"))
        assert wait_until(lambda: raw.acked_through() == 1)
        _stop_between_writes(active, tmp_path / "gateway.db")
        # Alive but silent: the standby waits out the lease, then takes it and the broker
        # session (the broker puts the paused one's connection off).
        assert wait_until(lambda: "gateway ready" in said), "the standby did not take over"
        raw.publish(raw.record(txn.KIND_PURCHASE, CARDS[0], 100))
        assert wait_until(lambda: raw.acked_through() == 2)
        os.kill(active.pid, signal.SIGCONT)
        assert active.wait(STOP_S) == EXIT_LEASE_LOST
        assert "lease lost" in (tmp_path / "active.log").read_text()
        # The standby kept the session: it still serves.
        raw.publish(raw.record(txn.KIND_PURCHASE, CARDS[0], 200))
        assert wait_until(lambda: raw.acked_through() == 3)
        assert [(seq, status) for _, seq, _, status in _records(tmp_path)] == [
            (1, "accepted"), (2, "accepted"), (3, "accepted")]
        assert _lease(tmp_path)[0] == 2
        standby.send_signal(signal.SIGTERM)
        assert standby.wait(STOP_S) == 0
    finally:
        raw.close()
        for process in (active, standby):
            if process.poll() is None:
                os.kill(process.pid, signal.SIGCONT)
                process.kill()
                process.wait()
        active_log.close()


def _link(broker: StoreBroker, inbox: queue.Queue[tuple[str, bytes] | None],
          deaths: list[BaseException], before_connect: Any = None) -> MqttLink:
    login = broker.gateway_login
    return MqttLink(broker.host, broker.port, CLIENT_ID, Stats(),
                    {topics.LEAF_TXN: queue_route(inbox)}, login=login, ca_path=broker.ca,
                    on_death=lambda name, error: deaths.append(error),
                    before_connect=before_connect)


def _payload(inbox: queue.Queue[tuple[str, bytes] | None]) -> bytes:
    message = inbox.get(timeout=STOP_S)
    assert message is not None
    return message[1]


# The old link's paho thread ends on the refused reconnect: in a gateway, `on_death` would
# have ended the process first.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_the_new_holder_gets_the_session_queue_and_the_old_one_is_put_off_for_good(
        store_broker: StoreBroker, tmp_path: Path) -> None:
    _, keys = _store(tmp_path, store_broker)
    deaths: list[BaseException] = []
    inbox_old: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
    inbox_new: queue.Queue[tuple[str, bytes] | None] = queue.Queue()
    first = _link(store_broker, queue.Queue(), deaths)
    first.start()  # subscribes; the session outlives the connection
    first.stop()
    raw = RawTerminal(store_broker, "T1", keys["T1"])
    links: list[MqttLink] = []
    try:
        queued = raw.record(txn.KIND_ISSUE, CARDS[0], 5000, program="gift")
        raw.publish(queued)  # no subscriber connected: the broker keeps it in the session
        holder = {"epoch": 1}

        def still_mine() -> None:
            if holder["epoch"] != 1:
                raise LeaseLost(1, "the new one", holder["epoch"])

        old = _link(store_broker, inbox_old, deaths, still_mine)
        links.append(old)
        old.start()
        assert _payload(inbox_old) == queued  # inherited from the session
        holder["epoch"] = 2  # a standby takes the lease, then connects
        new = _link(store_broker, inbox_new, deaths)
        links.append(new)
        new.start()
        assert wait_until(lambda: old.stats.snapshot().get("mqtt_disconnects", 0) >= 1)
        # The old one tries to connect again and is refused by its lease, not by the broker.
        assert wait_until(lambda: any(isinstance(e, LeaseLost) for e in deaths))
        assert new.client.is_connected()
        again = raw.record(txn.KIND_PURCHASE, CARDS[0], 100)
        raw.publish(again)
        assert _payload(inbox_new) == again
        assert new.stats.snapshot().get("mqtt_disconnects", 0) == 0
    finally:
        raw.close()
        for link in links:
            link.stop()
