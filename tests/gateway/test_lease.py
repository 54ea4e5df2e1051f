"""The store's lease (gateway/lease.py): one active gateway process per store, taken over by
a standby when the lease expires or its holder is gone, and fenced so that the old holder can
never write after losing it. Time is a fake wall clock, so expiry needs no sleeping."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from gateway.lease import LEASE_S_MIN, Lease, LeaseLost, this_host
from gateway.store import GatewayStore
from tests.support import REPO_ROOT

LEASE_S = 10.0
RACERS = 4
RACE_TIMEOUT_S = 60.0


class Clock:
    def __init__(self) -> None:
        self.now_s = 1_000_000.0

    def __call__(self) -> float:
        return self.now_s


class Lost:
    """An `on_lost` that remembers instead of ending the process."""

    def __init__(self) -> None:
        self.errors: list[LeaseLost] = []

    def __call__(self, error: LeaseLost) -> None:
        self.errors.append(error)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _claim(path: Path, clock: Clock, on_lost: Lost | None = None) -> Lease:
    return Lease(str(path), LEASE_S, on_lost or Lost(), clock)


def test_a_free_lease_is_taken_with_the_first_epoch_and_a_held_one_is_not(
        tmp_path: Path, clock: Clock) -> None:
    first, second = _claim(tmp_path / "gw.db", clock), _claim(tmp_path / "gw.db", clock)
    assert first.try_take() and first.epoch == 1
    assert not second.try_take() and second.epoch is None
    clock.now_s += LEASE_S - 0.1
    assert not second.try_take()


def test_renewal_keeps_the_lease_past_its_first_expiry(tmp_path: Path, clock: Clock) -> None:
    holder, standby = _claim(tmp_path / "gw.db", clock), _claim(tmp_path / "gw.db", clock)
    assert holder.try_take()
    for _ in range(5):
        clock.now_s += LEASE_S / 2
        assert holder.renew()
        assert not standby.try_take()
    assert holder.epoch == 1


def test_an_expired_lease_is_taken_over_with_the_next_epoch_and_the_old_holder_learns_it(
        tmp_path: Path, clock: Clock) -> None:
    lost = Lost()
    holder, standby = _claim(tmp_path / "gw.db", clock, lost), _claim(tmp_path / "gw.db", clock)
    assert holder.try_take()
    clock.now_s += LEASE_S
    assert standby.try_take() and standby.epoch == 2
    with pytest.raises(LeaseLost):
        holder.renew()
    with pytest.raises(LeaseLost):
        holder.confirm()
    assert [(e.epoch, e.now_epoch, e.holder) for e in lost.errors] == [
        (1, 2, standby.holder)] * 2
    standby.confirm()  # the new holder is fine


def test_the_fence_refuses_the_old_holders_write_inside_its_transaction(
        tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "gw.db"
    lost = Lost()
    holder = _claim(path, clock, lost)
    assert holder.try_take()
    old_store = GatewayStore(str(path), holder.fence)
    old_store.add_counters({"written": 1})
    clock.now_s += LEASE_S  # the holder was paused past its lease ...
    standby = _claim(path, clock)
    assert standby.try_take()
    new_store = GatewayStore(str(path), standby.fence)
    with pytest.raises(LeaseLost):  # ... and resumes: nothing it writes commits
        old_store.add_counters({"written": 10})
    assert len(lost.errors) == 1
    new_store.add_counters({"written": 100})
    assert new_store.counters()["written"] == 101
    old_store.close()
    new_store.close()


def test_a_lease_whose_holder_process_is_gone_is_taken_at_once(
        tmp_path: Path, clock: Clock) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = tmp_path / "gw.db"
    holder = _claim(path, clock)
    assert holder.try_take()
    holder.close()
    with sqlite3.connect(path) as db:  # as if that process had held it, then been killed
        db.execute("UPDATE lease SET holder = ?", (f"{this_host()} {dead.pid} 0a0b0c0d",))
    standby = _claim(path, clock)
    assert standby.try_take() and standby.epoch == 2


def test_a_lease_held_on_another_host_is_waited_out(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "gw.db"
    holder = _claim(path, clock)
    assert holder.try_take()
    holder.close()
    with sqlite3.connect(path) as db:  # its pid means nothing here: only expiry tells
        db.execute("UPDATE lease SET holder = 'elsewhere pid:[1] 999999 0a0b0c0d'")
    standby = _claim(path, clock)
    assert not standby.try_take()
    clock.now_s += LEASE_S
    assert standby.try_take()


def test_a_released_lease_is_taken_at_once_and_a_stopped_standby_takes_nothing(
        tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "gw.db"
    holder, standby = _claim(path, clock), _claim(path, clock)
    assert holder.try_take()
    stopped = threading.Event()
    stopped.set()
    assert not standby.wait(stopped)
    holder.release()
    assert standby.wait(threading.Event()) and standby.epoch == 2


def test_a_lease_shorter_than_the_minimum_is_a_programmer_error(tmp_path: Path) -> None:
    with pytest.raises(AssertionError):
        Lease(str(tmp_path / "gw.db"), LEASE_S_MIN / 2)


_RACER = """
import sys, threading
from gateway.lease import Lease
from gateway.store import GatewayStore
lost = []
lease = Lease(sys.argv[1], 5.0, lost.append)
assert lease.wait(threading.Event())
store = GatewayStore(sys.argv[1], lease.fence)
# While it holds the lease no other process holds it: the count it finds is 0.
store.add_counters({"holding": 1})
alone = store.counters()["holding"] == 1
store.add_counters({"holding": -1, "turns": 1})
store.close()
lease.release()
print(lease.epoch, alone, not lost)
"""


def test_processes_racing_for_the_lease_each_get_a_distinct_epoch_one_at_a_time(
        tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    GatewayStore(str(path)).close()
    racers = [subprocess.Popen([sys.executable, "-c", _RACER, str(path)], cwd=REPO_ROOT,
                               stdout=subprocess.PIPE, text=True) for _ in range(RACERS)]
    said = [racer.communicate(timeout=RACE_TIMEOUT_S)[0].split() for racer in racers]
    assert all(racer.returncode == 0 for racer in racers), said
    assert sorted(int(epoch) for epoch, _, _ in said) == list(range(1, RACERS + 1))
    assert all(alone == "True" and kept == "True" for _, alone, kept in said), said
    store = GatewayStore(str(path))
    assert store.counters()["turns"] == RACERS
    store.close()
