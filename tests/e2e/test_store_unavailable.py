"""While the gateway's store cannot commit, the gateway approves nothing: every authorization
is answered `host_unavailable`, signed and within the terminal's wait, its health file says
`store_unavailable` since when and why, one ALARM is logged, and nothing is acked that was
not committed. Both failures are real: another process holding the store's write lock, and a
full filesystem (a 2 MiB tmpfs filled by a file: SQLite's own SQLITE_FULL). After the lock
is let go, or space freed and the gateway restarted (an ingest commit that fails ends it,
exit 70), approvals and acks come again and nothing is lost or doubled."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.registry import TerminalRegistry
from gateway.stage import EXIT_THREAD_DIED
from gateway.store_health import STORE_RETRY_S
from protocol import messages, sealed, topics, txn
from tests.support.gateway_process import start_gateway
from tests.support.stack import RawTerminal, wait_until
from tools.demo import DEMO_PROGRAMS
from tools.mosquitto import MosquittoBroker

CARD = "04b0b1b2b3b4b5"
AUTH_TIMEOUT_S = 3.0  # the terminal's wait for an answer (docs/protocol.md section 5.2)
DISK_BYTES = 2 * 1024 * 1024
LIMITS = {"txn_minor_max": 1000, "card_offline_minor_max": 5000,
          "terminal_offline_minor_max": 10000, "offline_s_max": 3600, "offline_txn_max": 20}


def _setup(workdir: Path) -> bytes:
    key = os.urandom(32)
    registry = TerminalRegistry()
    registry.add("T1", "M1", key)
    registry.save(workdir / "terminals.json")
    (workdir / "programs.json").write_text(json.dumps(DEMO_PROGRAMS))
    (workdir / "limits.json").write_text(json.dumps(LIMITS))
    return key


def _start(broker: MosquittoBroker, workdir: Path, logs: Path) -> subprocess.Popen[str]:
    with logs.open("a") as log_file:
        return start_gateway(broker, workdir, "--health-out", str(logs.parent / "health.json"),
                             "--limits", str(workdir / "limits.json"),
                             stderr=log_file.fileno())


def _health(tmp_path: Path) -> dict[str, Any]:
    try:
        store: dict[str, Any] = json.loads((tmp_path / "health.json").read_text())["store"]
    except (OSError, ValueError, KeyError):
        return {}
    return store


def _authorize(raw: RawTerminal, request_id: int, amount: int = 100) -> dict[str, Any]:
    """A purchase's signed request; the signed answer, within the terminal's wait."""
    request = sealed.seal(raw.key, messages.TYPE_AUTH_REQUEST, {
        "terminal": raw.terminal, "request": request_id, "seq": raw.seq + 1,
        "time": int(time.time()), "merchant": raw.merchant, "card": CARD,
        "kind": txn.KIND_PURCHASE, "currency": "EUR", "amount_minor": amount,
        "card_value_minor": amount})
    raw.publish(request, leaf=topics.LEAF_AUTH)
    assert wait_until(lambda: request_id in raw.auth_answers(), AUTH_TIMEOUT_S), "no answer"
    return raw.auth_answers()[request_id]


def _records(db: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(db) as reader:
        return reader.execute("SELECT seq, status FROM records WHERE terminal = 'T1'"
                              " ORDER BY seq").fetchall()


def _kept(db: Path) -> int:
    with sqlite3.connect(db) as reader:
        count: int = reader.execute("SELECT COUNT(*) FROM authorizations").fetchone()[0]
    return count


def _stop(gateway: subprocess.Popen[str]) -> None:
    if gateway.poll() is None:
        gateway.terminate()
    gateway.wait(timeout=30)


def test_while_another_process_holds_the_write_lock_nothing_is_approved(
    private_mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    key = _setup(tmp_path)
    logs = tmp_path / "gateway.log"
    gateway = _start(private_mosquitto, tmp_path, logs)
    raw = RawTerminal(private_mosquitto, "T1", key)
    blocker = sqlite3.connect(tmp_path / "gateway.db", isolation_level=None)
    try:
        raw.publish(raw.approved(txn.KIND_ISSUE, CARD, 5000, program="gift"))
        assert wait_until(lambda: raw.acked_through() == 1)
        assert wait_until(lambda: _health(tmp_path).get("status") == "ok")
        blocker.execute("BEGIN EXCLUSIVE")  # the store cannot commit while this is held
        began_s = time.time()
        refused = _authorize(raw, 1)
        assert (refused["approved"], refused["reason"]) == (False, "host_unavailable")
        assert _authorize(raw, 2)["reason"] == "host_unavailable"  # answered at once now
        assert wait_until(lambda: _health(tmp_path).get("status") == "store_unavailable")
        health = _health(tmp_path)
        assert began_s <= health["since"] <= time.time() and "locked" in health["error"]
        assert gateway.poll() is None  # alive, saying it cannot approve
        assert _kept(tmp_path / "gateway.db") == 1  # the issue's approval alone
        blocker.execute("ROLLBACK")
        time.sleep(STORE_RETRY_S)
        approved = _authorize(raw, 3)
        assert approved["approved"] and approved["auth_id"]
        assert wait_until(lambda: _health(tmp_path).get("status") == "ok")
        assert _health(tmp_path)["episodes"] == 1
        raw.publish(raw.record(txn.KIND_PURCHASE, CARD, 100, auth_id=approved["auth_id"]))
        assert wait_until(lambda: raw.acked_through() == 2)
        assert not [a for a in raw.acks() if a.get("rejected")]
        assert _kept(tmp_path / "gateway.db") == 2
    finally:
        blocker.close()
        raw.close()
        _stop(gateway)
    assert gateway.returncode == 0
    text = logs.read_text()
    assert text.count("ALARM the store cannot commit") == 1
    assert "the store commits again" in text


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real filesystem of DISK_BYTES (tmpfs), so a full disk is SQLite's SQLITE_FULL."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill needs root (CI and this machine are)")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs",
                              str(disk)], capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def _fill(disk: Path) -> Path:
    """Write a file until the filesystem is full."""
    filler = disk / "filler"
    chunk = b"\0" * 4096
    with filler.open("wb", buffering=0) as out:
        while True:
            try:
                out.write(chunk)
            except OSError as error:
                assert error.errno == errno.ENOSPC
                return filler


def test_on_a_full_disk_nothing_is_approved_or_acked_and_nothing_is_lost_after(
    private_mosquitto: MosquittoBroker, tmp_path: Path, small_disk: Path
) -> None:
    key = _setup(small_disk)
    logs = tmp_path / "gateway.log"
    gateway = _start(private_mosquitto, small_disk, logs)
    raw = RawTerminal(private_mosquitto, "T1", key)
    try:
        raw.publish(raw.approved(txn.KIND_ISSUE, CARD, 5000, program="gift"))
        assert wait_until(lambda: raw.acked_through() == 1)
        filler = _fill(small_disk)
        refused = _authorize(raw, 1)
        assert (refused["approved"], refused["reason"]) == (False, "host_unavailable")
        assert wait_until(lambda: _health(tmp_path).get("status") == "store_unavailable")
        assert "full" in _health(tmp_path)["error"]
        assert gateway.poll() is None
        # An offline sale (a terminal sells offline when its request goes unanswered) comes
        # in: the ingest commit fails, and the gateway stops rather than live half alive.
        offline = raw.record(txn.KIND_PURCHASE, CARD, 300, auth_mode=txn.AUTH_OFFLINE)
        raw.publish(offline)
        assert gateway.wait(timeout=30) == EXIT_THREAD_DIED
        assert raw.acked_through() == 1  # never acked what was not committed
        filler.unlink()  # space again; the supervisor starts the gateway again
        gateway = _start(private_mosquitto, small_disk, logs)
        raw.publish(offline)  # the terminal's resend
        assert wait_until(lambda: raw.acked_through() == 2)
        approved = _authorize(raw, 2)
        assert approved["approved"]
        raw.publish(raw.record(txn.KIND_PURCHASE, CARD, 100, auth_id=approved["auth_id"]))
        assert wait_until(lambda: raw.acked_through() == 3)
        assert not [a for a in raw.acks() if a.get("rejected")]
    finally:
        raw.close()
        _stop(gateway)
    assert _records(small_disk / "gateway.db") == [(1, "accepted"), (2, "accepted"),
                                                   (3, "accepted")]  # none lost, none twice
    assert _kept(small_disk / "gateway.db") == 2  # the issue's and the one given after
    assert "ALARM the store cannot commit" in logs.read_text()
