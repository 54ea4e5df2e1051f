"""Each card's program-engine state kept by the ledger (ledger/engine_sql.py), on SQLite and
PostgreSQL: changed in the transaction of the batch that posts the card, versioned, equal to
the replay of the card's history, dropped (and alarmed once) where it parts from the books,
moved by a replacement, and told in a hold's answer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ledger import Books, engine_sql, open_books
from ledger.engine_sql import StoredEngine
from protocol import engine_replay
from tests.ledger.builders import (
    batch,
    expire,
    hold_request,
    issue,
    purchase,
    refund,
    topup,
)
from tests.support import engine_history
from tests.support.engine_history import DAY0, POINTS, TODAY, posted_batch, time_of
from tests.support.together import run_together
from tools.programs import parse_programs

PROGRAMS = parse_programs(engine_history.PROGRAM_TOML + """
[programs.gift]
version = 1
currency = "EUR"
name = "Gift card"

[programs.gift.gift]
expiry_days = 365
cash_out = false
""")
NOW_S = time_of(TODAY) + 10 * 3600
THREADS = 4
BATCHES_PER_THREAD = 3


@pytest.fixture
def books(dsn: str) -> Iterator[Books]:
    """Books given the programs (a ledger started with --programs)."""
    opened = open_books(dsn, lambda: NOW_S, PROGRAMS)
    yield opened
    opened.close()


def kept(books: Books, card: str) -> StoredEngine | None:
    return books.read(lambda session, _now: engine_sql.read(session, [card]).get(card))


def replay_of(books: Books, card: str) -> dict[str, Any] | None:
    """The replay of the card's posted transactions up to the kept state's day."""
    detail = books.card_detail(card)
    assert detail is not None
    return engine_replay.replayed(card, PROGRAMS["regular"], detail["transactions"], 0,
                                  detail["value_minor"], detail["points"])


def test_posting_keeps_the_state_the_replay_rebuilds(books: Books) -> None:
    """The hand-computed history of tests/support/engine_history.py: one version per
    transaction, the state equal to the replay's, silver with 155 points in three lots."""
    books.post_batch(posted_batch("C1"))
    state = kept(books, "C1")
    assert state is not None and state.state is not None
    assert (state.version, state.reason, state.through_txn_id) == (4, None, "T1-4C1")
    assert state.day == DAY0 + 20  # as of its last transaction's day
    assert state.state == replay_of(books, "C1")
    view = engine_replay.described(state.state, PROGRAMS["regular"], TODAY)
    assert (view["tier"], view["points"], view["discount"]["pct"]) == ("silver", POINTS, 10)


def test_a_batch_that_fails_after_the_state_changed_leaves_it_unchanged(
        books: Books, monkeypatch: pytest.MonkeyPatch) -> None:
    """The state is written in the batch's transaction: rolled back with its entries."""
    books.post_batch(posted_batch("C1"))
    before, counts = kept(books, "C1"), books.counts()
    real = engine_sql.apply_posted

    def apply_then_fail(*args: Any) -> list[tuple[str, str]]:
        real(*args)
        raise RuntimeError("the database went away after the state was written")

    monkeypatch.setattr(engine_sql, "apply_posted", apply_then_fail)
    sale = purchase("T1-9", card="C1", card_value_minor=0, amount_minor=2000, points=20,
                    time=time_of(DAY0 + 22))
    with pytest.raises(RuntimeError):
        books.post_batch(batch("gw1-fails", sale))
    assert kept(books, "C1") == before
    assert books.counts() == counts


def test_a_refused_transaction_changes_no_state(books: Books) -> None:
    """Only the transactions a batch posts move the state: one version for the one sale."""
    books.post_batch(posted_batch("C1"))
    sale = purchase("T1-9", card="C1", card_value_minor=0, amount_minor=2000, points=20,
                    time=time_of(DAY0 + 22))
    result = books.post_batch(batch("gw1-more", sale, refund("T1-10", "NO-SUCH-SALE", card="C1",
                                                             time=time_of(DAY0 + 22))))
    assert [refusal.reason for refusal in result.refused] == ["refund_unknown_original"]
    state = kept(books, "C1")
    assert state is not None and state.state is not None
    assert (state.version, state.through_txn_id) == (5, "T1-9")
    assert state.state == replay_of(books, "C1")


def test_a_state_that_parts_from_the_books_is_dropped_and_alarmed_once(books: Books) -> None:
    """An expiry of a point the engine does not see lapse: the books stand, the state goes
    (replay_disagrees), one alarm; later batches post and keep counting, without a state."""
    books.post_batch(posted_batch("C1"))
    lapse = expire("T1-8", card="C1", points=1, time=time_of(DAY0 + 21))
    assert books.post_batch(batch("gw1-lapse", lapse)).status == "posted"
    sale = purchase("T1-9", card="C1", card_value_minor=0, amount_minor=2000, points=20,
                    time=time_of(DAY0 + 22))
    books.post_batch(batch("gw1-after", sale))
    state = kept(books, "C1")
    assert state is not None
    assert (state.state, state.reason, state.version) == (None, "replay_disagrees", 6)
    assert books.card_balance("C1")["points"] == POINTS - 1 + 20  # type: ignore[index]
    alarms = [alarm for alarm in books.alarms() if alarm["reason"] == "engine_state_dropped"]
    assert len(alarms) == 1 and "card C1:" in alarms[0]["detail"]


def test_a_transaction_the_engine_declines_drops_the_state(books: Books) -> None:
    """A top-up of a card whose program holds no value: the books post it, the engine
    declines it (replay_declined), alarmed."""
    books.post_batch(posted_batch("C2"))
    load = topup("T1-8", card="C2", amount_minor=1000, time=time_of(DAY0 + 21))
    assert books.post_batch(batch("gw1-load", load)).status == "posted"
    state = kept(books, "C2")
    assert state is not None and (state.state, state.reason) == (None, "replay_declined")
    assert [alarm["reason"] for alarm in books.alarms()] == ["engine_state_dropped"]


def test_a_card_posted_before_the_ledger_had_programs_is_built_once(dsn: str) -> None:
    """Its next batch replays its history into a kept state (counted from then on)."""
    plain = open_books(dsn, lambda: NOW_S)
    plain.post_batch(posted_batch("C1"))
    plain.close()
    with_programs = open_books(dsn, lambda: NOW_S, PROGRAMS)
    try:
        assert kept(with_programs, "C1") is None
        sale = purchase("T1-9", card="C1", card_value_minor=0, amount_minor=2000, points=20,
                        time=time_of(DAY0 + 22))
        with_programs.post_batch(batch("gw1-later", sale))
        state = kept(with_programs, "C1")
        assert state is not None and state.state is not None and state.version == 1
        assert state.state == replay_of(with_programs, "C1")
    finally:
        with_programs.close()


def test_a_replacement_moves_the_state_and_a_hold_tells_it(books: Books) -> None:
    """The new card gets the old card's lots, tier and discount (its version 1); the old
    card an empty state; a hold's answer carries the new card's snapshot of today."""
    books.post_batch(posted_batch("C1"))
    books.replace_card("C1", "N1", "admin", "lost")
    old, new = kept(books, "C1"), kept(books, "N1")
    assert old is not None and new is not None
    assert old.state is not None and new.state is not None
    assert (old.version, new.version) == (5, 1)
    assert (old.state["lots"], old.state["value_minor"]) == ([], 0)
    view = engine_replay.described(new.state, PROGRAMS["regular"], TODAY)
    assert (view["tier"], view["points"], view["discount"]["tracked_pct"]) == (
        "silver", POINTS, 10)
    assert [lot["earned_day"] for lot in view["points_lots"]] == [DAY0 + 1, DAY0 + 10,
                                                                  DAY0 + 20]
    answer = books.place_hold(hold_request("H1", card="N1", amount_minor=0, points=50))
    assert answer.to_json()["engine"] == {
        "version": 1, "tier": "silver", "discount_pct": 10, "discount_until": "2025-12-17"}
    assert answer.available_points == POINTS - 50


def test_cards_posted_at_once_lose_no_update(dsn: str) -> None:
    """Threads on two books (two ledger processes) post batches of one shared card and of
    their own cards at the same time: every transaction counts once in each version."""
    first = open_books(dsn, lambda: NOW_S, PROGRAMS)
    second = open_books(dsn, lambda: NOW_S, PROGRAMS)
    try:
        first.post_batch(batch("gw1-open", issue("T0-1", card="S"),
                               *(issue(f"T0-{n + 2}", card=f"OWN{n}") for n in range(THREADS))))
        errors = run_together([_poster(first if n % 2 else second, n)
                                for n in range(THREADS)])
        assert errors == []
        shared = kept(first, "S")
        assert shared is not None and shared.state is not None
        assert shared.version == 1 + THREADS * BATCHES_PER_THREAD
        assert shared.state["value_minor"] == 5000 - 100 * THREADS * BATCHES_PER_THREAD
        for n in range(THREADS):
            own = kept(first, f"OWN{n}")
            assert own is not None and own.version == 1 + BATCHES_PER_THREAD
    finally:
        first.close()
        second.close()


def _poster(books: Books, n: int) -> Callable[[], None]:
    def post() -> None:
        for round_ in range(BATCHES_PER_THREAD):
            books.post_batch(batch(
                f"gw{n}-{round_}",
                purchase(f"T{n + 1}-{2 * round_ + 1}", card="S", card_value_minor=100,
                         points=0),
                purchase(f"T{n + 1}-{2 * round_ + 2}", card=f"OWN{n}", card_value_minor=100,
                         points=0)))
    return post


