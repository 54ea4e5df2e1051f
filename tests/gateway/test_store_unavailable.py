"""While the store cannot commit, nothing is approved: the store's health says so from the
first failed commit to the next good one (one ALARM per episode), a commit that fails is
rolled back and raises StoreUnavailable, and the authorization stage answers
`host_unavailable`, signed, instead of an approval it could not keep, releasing its hold."""

from __future__ import annotations

import logging
import queue
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from gateway import authorizations
from gateway.acks import AckOut
from gateway.authorize import AuthorizeStage
from gateway.cards import CardBook
from gateway.ingest import IngestStage
from gateway.registry import TerminalRegistry
from gateway.stats import Stats
from gateway.store import GatewayStore
from gateway.store_health import (
    STATUS_OK,
    STATUS_UNAVAILABLE,
    STORE_RETRY_S,
    StoreHealth,
    StoreUnavailable,
    is_store_fault,
)
from gateway.verify import Verifier
from protocol import messages, sealed, topics, txn
from tests.support.card_loads import load_auth_id
from tools.demo import DEMO_PROGRAMS

KEY = bytes(range(32))
CARD = "04a1"
NOW_S = int(time.time())  # the card book decides on the real clock


class Clock:
    def __init__(self) -> None:
        self.now_s = float(NOW_S)

    def __call__(self) -> float:
        return self.now_s


class FailingStore(GatewayStore):
    """A real store whose commits fail while `failing` is set, as a full disk's would."""

    failing = False

    @contextmanager
    def transaction(self, wait_ms: int | None = None) -> Iterator[sqlite3.Connection]:
        if self.failing:
            self.health.failed(sqlite3.OperationalError("database or disk is full"))
            raise StoreUnavailable("OperationalError: database or disk is full")
        with super().transaction(wait_ms) as db:
            yield db


def _registry() -> TerminalRegistry:
    registry = TerminalRegistry()
    registry.add("T1", "M1", KEY)
    return registry


def test_health_is_one_episode_from_the_first_failed_commit_to_the_next_good_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    health = StoreHealth(clock)
    assert health.snapshot() == {"status": STATUS_OK, "episodes": 0}
    with caplog.at_level(logging.WARNING, logger="gateway.store_health"):
        health.failed(sqlite3.OperationalError("database is locked"))
        clock.now_s += 5
        health.failed(sqlite3.OperationalError("database or disk is full"))
    assert health.snapshot() == {"status": STATUS_UNAVAILABLE, "since": NOW_S,
                                 "error": "OperationalError: database or disk is full",
                                 "episodes": 1}
    assert [r.message.split(" (")[0] for r in caplog.records] == [
        "ALARM the store cannot commit"]
    # While unavailable, a writer that can answer otherwise tries once per STORE_RETRY_S.
    assert not health.may_try()
    clock.now_s += STORE_RETRY_S
    assert health.may_try()
    assert not health.may_try()
    health.committed()
    assert health.available() and health.may_try()
    assert health.snapshot() == {"status": STATUS_OK, "episodes": 1}
    assert "commits again" in caplog.records[-1].message


def test_only_errors_of_the_store_itself_count_as_it_being_unavailable() -> None:
    assert is_store_fault(sqlite3.OperationalError("database is locked"))
    assert is_store_fault(OSError(28, "No space left on device"))
    assert not is_store_fault(sqlite3.IntegrityError("UNIQUE constraint failed"))
    assert not is_store_fault(ValueError("a programmer's error"))


def test_a_commit_past_the_lock_wait_raises_store_unavailable_and_leaves_nothing_open(
    tmp_path: Path,
) -> None:
    store = GatewayStore(str(tmp_path / "gw.db"))
    blocker = sqlite3.connect(tmp_path / "gw.db", isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        with pytest.raises(StoreUnavailable, match="locked"):
            authorizations.keep(store, "a1-1", "T1", CARD, {}, txn.AUTH_ONLINE, wait_ms=100)
        health = store.health.snapshot()
        assert health["status"] == STATUS_UNAVAILABLE and "locked" in health["error"]
        blocker.execute("ROLLBACK")
        authorizations.keep(store, "a1-2", "T1", CARD, {}, txn.AUTH_ONLINE, wait_ms=100)
        assert store.health.snapshot() == {"status": STATUS_OK, "episodes": 1}
        assert set(authorizations.recall(store, ["a1-1", "a1-2"])) == {"a1-2"}
    finally:
        blocker.close()
        store.close()


def test_an_error_of_the_code_in_a_transaction_is_not_the_store_being_unavailable(
    tmp_path: Path,
) -> None:
    store = GatewayStore(str(tmp_path / "gw.db"))
    with pytest.raises(ZeroDivisionError), store.transaction() as db:
        db.execute("INSERT INTO counters (name, value) VALUES ('x', 1)")
        _ = 1 / 0
    assert store.health.available()
    assert "x" not in store.counters()  # rolled back all the same
    store.close()


def _request(request_id: int, kind: int = txn.KIND_PURCHASE, amount: int = 100) -> bytes:
    return sealed.seal(KEY, messages.TYPE_AUTH_REQUEST, {
        "terminal": "T1", "request": request_id, "seq": 2, "time": NOW_S, "merchant": "M1",
        "card": CARD, "kind": kind, "currency": "EUR", "amount_minor": amount,
        "card_value_minor": amount})


def _issued(tmp_path: Path) -> tuple[FailingStore, CardBook, Clock]:
    """A store and card book with CARD issued (50.00 EUR of gift value)."""
    store = FailingStore(str(tmp_path / "gw.db"))
    clock = Clock()
    store.health = StoreHealth(clock)
    cards = CardBook(DEMO_PROGRAMS)
    ingest = IngestStage(store, cards, Stats(), queue.Queue(), queue.Queue())
    issue = txn.seal(KEY, {
        "terminal": "T1", "seq": 1, "prev": txn.GENESIS_DIGEST, "time": NOW_S,
        "merchant": "M1", "card": CARD, "kind": txn.KIND_ISSUE, "currency": "EUR",
        "amount_minor": 5000, "card_value_minor": 5000, "bonus_minor": 0, "points": 0,
        "auth_mode": txn.AUTH_ONLINE, "program": "gift",
        "auth_id": load_auth_id(cards, CARD, txn.KIND_ISSUE, 5000, NOW_S, "gift")})
    ingest.process([Verifier(_registry()).transaction(topics.up("M1", "T1", topics.LEAF_TXN),
                                                      issue, NOW_S)])
    return store, cards, clock


def test_the_authorization_stage_approves_nothing_it_could_not_keep(tmp_path: Path) -> None:
    store, cards, clock = _issued(tmp_path)
    answers: list[dict[str, Any]] = []
    stats = Stats()
    notices: queue.Queue[AckOut | None] = queue.Queue()
    stage = AuthorizeStage(
        Verifier(_registry()), _registry(), cards, stats,
        lambda topic, payload: answers.append(
            sealed.open_message(payload, messages.TYPE_AUTH_RESPONSE, KEY)),
        queue.Queue(), notices, store=store)
    topic = topics.up("M1", "T1", topics.LEAF_AUTH)
    stage.handle((topic, _request(1), time.monotonic()))
    assert answers[-1]["approved"] and answers[-1]["auth_id"] == "a0-2"  # a0-1: the issue

    store.failing = True  # its own commit fails: no approval, no exception, no hold kept
    stage.handle((topic, _request(2), time.monotonic()))
    assert (answers[-1]["request"], answers[-1]["approved"], answers[-1]["reason"]) == (
        2, False, "host_unavailable")
    assert [auth_id for auth_id, _ in cards.holds.of_card(CARD)] == ["a0-2"]
    placed = cards.holds.placed
    # While the store is unavailable, requests are answered at once, nothing decided...
    stage.handle((topic, _request(3), time.monotonic()))
    assert (answers[-1]["approved"], answers[-1]["reason"]) == (False, "host_unavailable")
    assert cards.holds.placed == placed
    # ... even once the store could commit again, until the next try (STORE_RETRY_S).
    store.failing = False
    stage.handle((topic, _request(4), time.monotonic()))
    assert (answers[-1]["approved"], answers[-1]["reason"]) == (False, "host_unavailable")
    clock.now_s += STORE_RETRY_S
    stage.handle((topic, _request(5), time.monotonic()))
    assert answers[-1]["approved"] and answers[-1]["request"] == 5
    assert store.health.snapshot() == {"status": STATUS_OK, "episodes": 1}
    kept = authorizations.recall(store, [a["auth_id"] for a in answers if a["approved"]])
    assert len(kept) == 2  # every approval given is kept
    assert stats.snapshot()["auth_store_unavailable"] == 3
    assert notices.empty()
    store.close()


def test_an_approval_that_waits_past_the_lock_is_answered_host_unavailable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    store, cards, _ = _issued(tmp_path)
    monkeypatch.setattr("gateway.authorize.AUTH_COMMIT_WAIT_MS", 100, raising=False)
    answers: list[dict[str, Any]] = []
    stage = AuthorizeStage(
        Verifier(_registry()), _registry(), cards, Stats(),
        lambda topic, payload: answers.append(
            sealed.open_message(payload, messages.TYPE_AUTH_RESPONSE, KEY)),
        queue.Queue(), queue.Queue(), store=store)
    blocker = sqlite3.connect(tmp_path / "gw.db", isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        stage.handle((topics.up("M1", "T1", topics.LEAF_AUTH), _request(7), time.monotonic()))
    finally:
        blocker.close()
    assert (answers[-1]["approved"], answers[-1]["reason"]) == (False, "host_unavailable")
    assert not cards.holds.of_card(CARD)
    assert store.health.snapshot()["status"] == STATUS_UNAVAILABLE
    store.close()
