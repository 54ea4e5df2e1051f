"""Concurrent requests: the books end as if the requests had come one after the other.

Every test runs on SQLite (one writer: requests take turns) and on PostgreSQL (requests run
side by side, locking only the cards they change). Threads share two `Books` (two ledger
processes' worth of connections on one database) and start together at a barrier; the same
batch, transaction and hold ids are sent twice at once. Whatever the interleaving, each id
is in the books once, the second sender gets the sequential answer (duplicate, already
posted, replay, conflict), nothing surfaces as unavailable (a collision is retried inside
the ledger), the trial balance is zero, and every balance is what the posted transactions
add up to.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ledger import Books, open_books
from ledger.errors import BatchConflict, HoldRefused
from tests.ledger.builders import batch, hold_request, issue, purchase, topup
from tests.support.together import run_together

PAIRS = 4
"""Pairs of threads; both threads of a pair send the same requests (same ids) at once."""
ROUNDS = 6
SHARED_CARDS = ("S0", "S1", "S2")
"""Cards every pair's batches use (one card, every store): their batches wait for each other."""
OPENING_VALUE_MINOR = 1_000_000
POSTED_HOLD_MINOR = 500
"""Each round a pair holds this on its own card; the next round's batch posts the hold."""
POSTED_PURCHASE_MINOR = 400
SHARED_HOLD_MINOR = 300
"""Each round a pair holds this on a shared card and voids it the round after."""


@pytest.fixture
def two_books(dsn: str) -> Iterator[tuple[Books, Books]]:
    """Two books on one database, as two ledger processes have."""
    first, second = open_books(dsn), open_books(dsn)
    yield first, second
    first.close()
    second.close()


def own_card(pair: int) -> str:
    return f"P{pair}A"




def pair_batch(pair: int, round_number: int) -> dict[str, Any]:
    """Round r of pair p: sales and top-ups on its own card and the shared cards, the
    purchase posting its hold of round r-1, and (to cross pairs) the first transaction of
    the next pair's batch of the same round, which two batches then carry at once."""
    terminal = f"P{pair}"
    base = round_number * 100
    transactions = [
        purchase(f"{terminal}-{base + 1}", own_card(pair), 250, points=0),
        topup(f"{terminal}-{base + 2}", own_card(pair), 1000),
    ]
    for index, card in enumerate(SHARED_CARDS):
        transactions.append(purchase(f"{terminal}-{base + 3 + index}", card, 100 + pair,
                                     points=0))
    if round_number > 0:
        transactions.append(purchase(f"{terminal}-{base + 9}", own_card(pair),
                                     POSTED_PURCHASE_MINOR, points=0,
                                     hold_id=f"{terminal}-h{round_number - 1}"))
    neighbour = (pair + 1) % PAIRS
    transactions.append(purchase(f"P{neighbour}-{base + 1}", own_card(neighbour), 250,
                                 points=0))
    return batch(f"gw1-P{pair}-{round_number}", *transactions)


def test_concurrent_posters_post_every_id_exactly_once_and_balance(
    two_books: tuple[Books, Books],
) -> None:
    """Pairs of threads send the same batches and holds at once, on shared and own cards:
    each batch posts once (the twin is a duplicate), each transaction once, each hold once;
    the books balance and every card holds what its transactions add up to."""
    opening = [issue(f"OPEN-{n}", card, OPENING_VALUE_MINOR)
               for n, card in enumerate([*SHARED_CARDS, *(own_card(p) for p in range(PAIRS))])]
    two_books[0].post_batch(batch("gw1-open", *opening))
    statuses: dict[str, list[str]] = {}
    holds_created: Counter[str] = Counter()
    lock = threading.Lock()

    def twin(pair: int, books: Books) -> Callable[[], None]:
        def work() -> None:
            for round_number in range(ROUNDS):
                terminal = f"P{pair}"
                for hold_id, card, amount in (
                        (f"{terminal}-h{round_number}", own_card(pair), POSTED_HOLD_MINOR),
                        (f"{terminal}-s{round_number}", SHARED_CARDS[pair % 3],
                         SHARED_HOLD_MINOR)):
                    answer = books.place_hold(hold_request(hold_id, card, amount, ttl_s=3600))
                    with lock:
                        holds_created[hold_id] += int(answer.created)
                if round_number > 0:
                    voided = books.void_hold(f"{terminal}-s{round_number - 1}")
                    assert voided.status == "voided"
                document = pair_batch(pair, round_number)
                result = books.post_batch(document)
                assert result.refused == (), result
                assert result.posted + result.already_posted == len(document["transactions"])
                with lock:
                    statuses.setdefault(document["batch_id"], []).append(result.status)
        return work

    errors = run_together([twin(pair, two_books[side])
                           for pair in range(PAIRS) for side in (0, 1)])
    assert errors == []
    books = two_books[0]
    assert {tuple(sorted(s)) for s in statuses.values()} == {("duplicate", "posted")}
    assert len(statuses) == PAIRS * ROUNDS
    assert set(holds_created.values()) == {1}  # each hold placed once, the twin a replay
    expected_txns = {t["txn_id"]: t for p in range(PAIRS) for r in range(ROUNDS)
                     for t in pair_batch(p, r)["transactions"]}
    counts = books.counts()
    assert counts["transactions"] == len(expected_txns) + len(opening)
    assert counts["batches"] == PAIRS * ROUNDS + 1
    assert all(total == 0 for total in books.trial_balance().values()), books.trial_balance()
    expected_value = {t["card"]: OPENING_VALUE_MINOR for t in opening}
    for document in expected_txns.values():
        sign = 1 if document["kind"] == "topup" else -1
        expected_value[document["card"]] += sign * document["card_value_minor"]
    balances = {b["card"]: b for b in books.balances()}
    assert {card: b["value_minor"] for card, b in balances.items()} == expected_value
    for pair in range(PAIRS):
        # The last round's hold on its own card is still open; all the others were posted.
        assert balances[own_card(pair)]["held_minor"] == POSTED_HOLD_MINOR
    assert {card: balances[card]["held_minor"] for card in SHARED_CARDS} == {
        card: SHARED_HOLD_MINOR * sum(1 for p in range(PAIRS) if SHARED_CARDS[p % 3] == card)
        for card in SHARED_CARDS}
    totals = books.hold_totals()
    assert (totals["posted"], totals["voided"], totals["open"]) == (
        PAIRS * (ROUNDS - 1), PAIRS * (ROUNDS - 1), 2 * PAIRS)
    assert books.alarms() == []


def test_concurrent_holds_on_one_card_never_promise_more_than_it_has(
    two_books: tuple[Books, Books],
) -> None:
    """Sixteen threads racing holds on one card place exactly as many as its value covers;
    every other one is refused insufficient_value, none fails otherwise."""
    value_minor, amount_minor, threads, holds_each = 10_000, 300, 16, 5
    two_books[0].post_batch(batch("gw1-open", issue("OPEN-1", "C1", value_minor)))
    refusals: Counter[str] = Counter()
    placed: list[int] = []
    lock = threading.Lock()

    def racer(number: int) -> Callable[[], None]:
        def work() -> None:
            for index in range(holds_each):
                request = hold_request(f"gw1-{number}-{index}", "C1", amount_minor)
                try:
                    answer = two_books[number % 2].place_hold(request)
                except HoldRefused as refusal:
                    with lock:
                        refusals[refusal.reason] += 1
                    continue
                with lock:
                    placed.append(answer.available_minor)
        return work

    assert run_together([racer(n) for n in range(threads)]) == []
    assert len(placed) == value_minor // amount_minor
    assert set(refusals) == {"insufficient_value"}
    assert sorted(placed, reverse=True) == [value_minor - amount_minor * n
                                            for n in range(1, len(placed) + 1)]
    balance = two_books[1].card_balance("C1")
    assert balance is not None and balance["held_minor"] == amount_minor * len(placed)


def test_one_batch_id_with_two_contents_at_once_posts_one_and_refuses_the_other(
    two_books: tuple[Books, Books],
) -> None:
    """Two batches under one id but with other content, sent at once: one posts, the other
    is refused batch_conflict (alarmed), as when they come one after the other."""
    two_books[0].post_batch(batch("gw1-open", issue("OPEN-1", "C1", 100_000)))
    outcomes: list[str] = []
    lock = threading.Lock()

    def sender(seq: int, number: int) -> Callable[[], None]:
        def work() -> None:
            document = batch(f"gw1-race-{number}", purchase(f"T{seq}-{number}", "C1", 100,
                                                            points=0))
            try:
                status = two_books[seq % 2].post_batch(document).status
            except BatchConflict as conflict:
                status = conflict.reason
            with lock:
                outcomes.append(status)
        return work

    races = 5
    assert run_together([sender(seq, n) for n in range(races) for seq in (1, 2)]) == []
    assert Counter(outcomes) == {"posted": races, "batch_conflict": races}
    books = two_books[0]
    assert books.counts()["transactions"] == 1 + races
    assert books.card_balance("C1")["value_minor"] == 100_000 - 100 * races  # type: ignore[index]
    assert Counter(a["reason"] for a in books.alarms()) == {"batch_conflict": races}


def test_a_card_first_seen_in_two_batches_at_once_is_registered_once(
    two_books: tuple[Books, Books],
) -> None:
    """Two batches that both bring a new card (its top-ups) post both; the card is one row
    with the value of both."""
    outcomes: list[str] = []
    lock = threading.Lock()

    def sender(number: int) -> Callable[[], None]:
        def work() -> None:
            cards = [f"N{n}" for n in range(6)]
            if number % 2:
                cards.reverse()  # the other order: their inserts would cross
            document = batch(f"gw1-new-{number}", *(topup(f"T{number}-{i}", card, 100)
                                                    for i, card in enumerate(cards)))
            result = two_books[number % 2].post_batch(document)
            with lock:
                outcomes.append(result.status)
        return work

    senders = 6
    assert run_together([sender(n) for n in range(senders)]) == []
    assert outcomes == ["posted"] * senders
    balances = two_books[0].balances()
    assert [(b["card"], b["value_minor"]) for b in balances] == [
        (f"N{n}", 100 * senders) for n in range(6)]

