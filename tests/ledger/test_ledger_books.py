"""The books: posting, exactly-once intake, refunds across batches, reports, and opening."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ledger import BatchConflict, Books, ConfigInvalid, LedgerUnavailable, open_books
from tests.ledger.builders import (
    assert_balanced,
    batch,
    issue,
    purchase,
    refund,
    snapshot,
    topup,
    txn,
)


def test_a_batch_posts_every_kind_and_balances(books: Books) -> None:
    """Issue, topup, purchase and refund post together and the trial balance stays zero."""
    result = books.post_batch(
        batch(
            "gw1-1",
            issue("T1-1", amount_minor=5000),
            topup("T1-2", amount_minor=1000, bonus_minor=100),
            purchase("T1-3", card_value_minor=1500, points=20, amount_minor=2000),
            refund("T1-4", "T1-3", card_value_minor=500, points=5),
        )
    )
    assert result.to_json() == {
        "status": "posted",
        "batch_id": "gw1-1",
        "posted": 4,
        "already_posted": 0,
    }
    assert books.card_balance("C1") == {
        "card": "C1",
        "currency": "EUR",
        "value_minor": 5000 + 1100 - 1500 + 500,
        "points": 15,
        "program": "gift",
        "held_minor": 0,
        "available_minor": 5100,
    }
    assert books.trial_balance() == {"EUR": 0, "PTS": 0}


def test_same_batch_twice_is_a_duplicate_and_nothing_doubles(books: Books) -> None:
    """The same batch_id with the same content is a success ("duplicate") that posts nothing."""
    document = batch("gw1-1", issue("T1-1"), purchase("T1-2"))
    books.post_batch(document)
    before = snapshot(books)
    result = books.post_batch(document)
    assert (result.status, result.posted, result.already_posted) == ("duplicate", 0, 2)
    assert snapshot(books) == before
    assert books.alarms() == []


def test_same_batch_id_with_other_content_is_a_conflict_with_alarm(books: Books) -> None:
    """The same batch_id with other content is refused 409 batch_conflict, alarmed, no change."""
    books.post_batch(batch("gw1-1", issue("T1-1")))
    before = snapshot(books)
    with pytest.raises(BatchConflict) as caught:
        books.post_batch(batch("gw1-1", issue("T1-1"), topup("T1-2")))
    assert (caught.value.reason, caught.value.http_status) == ("batch_conflict", 409)
    assert snapshot(books) == before
    [alarm] = books.alarms()
    assert alarm["reason"] == "batch_conflict" and "gw1-1" in alarm["detail"]


def test_txn_already_posted_by_another_batch_is_skipped(books: Books) -> None:
    """A txn_id posted by an earlier batch with identical content is counted, not posted again."""
    books.post_batch(batch("gw1-1", issue("T1-1"), topup("T1-2", amount_minor=700)))
    result = books.post_batch(
        batch("gw1-2", topup("T1-2", amount_minor=700), topup("T1-3", amount_minor=300))
    )
    assert (result.status, result.posted, result.already_posted) == ("posted", 1, 1)
    assert books.card_balance("C1")["value_minor"] == 5000 + 700 + 300  # type: ignore[index]
    assert books.counts()["transactions"] == 3


def test_txn_with_other_content_rejects_the_whole_batch(books: Books) -> None:
    """A txn_id reused with other content refuses the whole batch 409 txn_conflict, alarmed."""
    books.post_batch(batch("gw1-1", issue("T1-1"), topup("T1-2", amount_minor=700)))
    before = snapshot(books)
    with pytest.raises(BatchConflict) as caught:
        books.post_batch(
            batch("gw1-2", topup("T1-3", amount_minor=1), topup("T1-2", amount_minor=701))
        )
    assert caught.value.reason == "txn_conflict"
    assert snapshot(books) == before
    assert [alarm["reason"] for alarm in books.alarms()] == ["txn_conflict"]


def test_txn_repeated_identically_inside_one_batch_posts_once(books: Books) -> None:
    """A transaction repeated with identical content in one batch is posted once."""
    result = books.post_batch(batch("gw1-1", issue("T1-1"), topup("T1-2"), topup("T1-2")))
    assert (result.posted, result.already_posted) == (2, 1)
    assert books.card_balance("C1")["value_minor"] == 6000  # type: ignore[index]


def test_refund_in_the_same_batch_after_its_purchase_posts(books: Books) -> None:
    """A refund may follow its purchase inside one batch (transactions are taken in order)."""
    books.post_batch(
        batch(
            "gw1-1",
            issue("T1-1"),
            purchase("T1-2", card_value_minor=900, points=9),
            refund("T1-3", "T1-2", card_value_minor=900, points=9),
        )
    )
    assert books.card_balance("C1") == {
        "card": "C1",
        "currency": "EUR",
        "value_minor": 5000,
        "points": 0,
        "program": "gift",
        "held_minor": 0,
        "available_minor": 5000,
    }


def test_refund_before_its_purchase_in_a_batch_is_unknown(books: Books) -> None:
    """A refund placed before its purchase in the same batch has no original yet."""
    with pytest.raises(Exception) as caught:
        books.post_batch(
            batch("gw1-1", refund("T1-3", "T1-2", card_value_minor=1), purchase("T1-2"))
        )
    assert getattr(caught.value, "reason", None) == "refund_unknown_original"


def test_refunds_are_limited_cumulatively_across_batches(books: Books) -> None:
    """Refunds of one purchase in several batches may return exactly its value, not a unit more."""
    books.post_batch(
        batch("gw1-1", issue("T1-1"), purchase("T1-2", card_value_minor=1000, points=10))
    )
    books.post_batch(batch("gw1-2", refund("T1-3", "T1-2", card_value_minor=600, points=6)))
    books.post_batch(batch("gw1-3", refund("T1-4", "T1-2", card_value_minor=400, points=4)))
    with pytest.raises(Exception) as caught:
        books.post_batch(batch("gw1-4", refund("T1-5", "T1-2", card_value_minor=1, points=0)))
    assert getattr(caught.value, "reason", None) == "refund_exceeds_original"
    assert books.card_balance("C1")["value_minor"] == 5000  # type: ignore[index]
    assert_balanced(books)


def test_units_balance_separately_per_currency_and_points(books: Books) -> None:
    """Cards in EUR and JPY and the points unit each balance to zero on their own."""
    books.post_batch(
        batch(
            "gw1-1",
            issue("T1-1", card="E1", amount_minor=5000),
            issue("T1-2", card="Y1", amount_minor=3000, currency="JPY"),
            txn(
                "T1-3",
                "purchase",
                card="Y1",
                currency="JPY",
                amount_minor=700,
                card_value_minor=700,
                points=7,
            ),
        )
    )
    assert books.trial_balance() == {"EUR": 0, "JPY": 0, "PTS": 0}
    assert [(row["card"], row["currency"], row["value_minor"]) for row in books.balances()] == [
        ("E1", "EUR", 5000),
        ("Y1", "JPY", 2300),
    ]


def test_card_first_seen_by_topup_is_issued_later(books: Books) -> None:
    """A card first named by a topup is registered, and a later issue sets its program."""
    books.post_batch(batch("gw1-1", topup("T1-1", card="C7", amount_minor=100)))
    assert books.card_balance("C7")["program"] is None  # type: ignore[index]
    books.post_batch(batch("gw1-2", issue("T1-2", card="C7", amount_minor=900, program="loyalty")))
    assert books.card_balance("C7") == {
        "card": "C7",
        "currency": "EUR",
        "value_minor": 1000,
        "points": 0,
        "program": "loyalty",
        "held_minor": 0,
        "available_minor": 1000,
    }


def test_purchase_beyond_the_balance_is_recorded_as_it_happened(books: Books) -> None:
    """An offline purchase beyond the card's value is settled as reported (balance negative)."""
    books.post_batch(
        batch("gw1-1", issue("T1-1", amount_minor=100), purchase("T1-2", card_value_minor=300))
    )
    assert books.card_balance("C1")["value_minor"] == -200  # type: ignore[index]
    assert_balanced(books)


def test_unknown_card_has_no_balance(books: Books) -> None:
    """card_balance of a card the ledger never saw is None."""
    assert books.card_balance("nope") is None


def test_terminal_totals_count_and_sum_per_kind(books: Books) -> None:
    """Terminal totals count transactions and sum amounts, card value and points per kind."""
    books.post_batch(
        batch(
            "gw1-1",
            issue("T1-1", amount_minor=5000),
            purchase("T1-2", card_value_minor=800, points=8, amount_minor=1000),
            purchase("T1-3", card_value_minor=200, points=2),
            topup("T2-1", amount_minor=300, bonus_minor=30),
        )
    )
    assert books.terminal_totals() == {
        "T1": {
            "count": 3,
            "by_kind": {
                "issue": {"count": 1, "amount_minor": 5000, "card_value_minor": 5000, "points": 0},
                "purchase": {
                    "count": 2,
                    "amount_minor": 1200,
                    "card_value_minor": 1000,
                    "points": 10,
                },
            },
        },
        "T2": {
            "count": 1,
            "by_kind": {
                "topup": {"count": 1, "amount_minor": 300, "card_value_minor": 330, "points": 0}
            },
        },
    }


def test_an_empty_batch_posts_and_then_is_a_duplicate(books: Books) -> None:
    """A batch without transactions is accepted once and recognised when sent again."""
    assert books.post_batch(batch("gw1-0")).status == "posted"
    assert books.post_batch(batch("gw1-0")).status == "duplicate"
    assert books.counts()["batches"] == 1


def test_two_connections_posting_the_same_batch_post_it_once(dsn: str) -> None:
    """Two books on one database posting one batch at once: one "posted", one "duplicate"."""
    first, second = open_books(dsn), open_books(dsn)
    document = batch(
        "gw1-1", *[topup(f"T1-{n}", card=f"C{n % 5}", amount_minor=n) for n in range(1, 400)]
    )
    statuses: list[str] = []
    threads = [
        threading.Thread(target=lambda b=b: statuses.append(b.post_batch(document).status))
        for b in (first, second)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == ["duplicate", "posted"]
    assert first.counts()["transactions"] == 399
    first.close()
    second.close()


@pytest.mark.parametrize(
    "prefix", ["sqlite://", "sqlite:///", ""], ids=["url", "url-4-slashes", "path"]
)
def test_sqlite_books_persist_and_reopen(tmp_path: Path, prefix: str) -> None:
    """A SQLite file opened by URL (3 or 4 slashes) or path keeps its books across a reopen."""
    path = tmp_path / "books.db"
    dsn = f"{prefix}{path}"
    books = open_books(dsn)
    books.post_batch(batch("gw1-1", issue("T1-1")))
    books.close()
    reopened = open_books(dsn)
    assert reopened.card_balance("C1")["value_minor"] == 5000  # type: ignore[index]
    assert reopened.dialect == "sqlite"
    reopened.close()


def test_memory_books_work() -> None:
    """ ":memory:" opens private in-memory books."""
    books = open_books(":memory:")
    books.post_batch(batch("gw1-1", issue("T1-1")))
    assert books.trial_balance() == {"EUR": 0}
    books.close()


@pytest.mark.parametrize("dsn", ["mysql://db/ledger", "sqlite://relative.db", ""])
def test_unusable_dsn_is_a_config_error(dsn: str) -> None:
    """A DSN of another engine, a relative sqlite URL or nothing is refused as dsn_invalid."""
    with pytest.raises(ConfigInvalid) as caught:
        open_books(dsn)
    assert caught.value.reason == "dsn_invalid"


def test_unreachable_postgres_is_unavailable() -> None:
    """Opening books on a PostgreSQL that does not answer raises LedgerUnavailable."""
    with pytest.raises(LedgerUnavailable):
        open_books("postgresql://postgres@127.0.0.1:1/none")


def test_closed_books_are_unavailable(dsn: str) -> None:
    """Using books after close() raises LedgerUnavailable, never a driver exception."""
    books = open_books(dsn)
    books.close()
    with pytest.raises(LedgerUnavailable):
        books.trial_balance()


def test_postgres_books_reconnect_after_the_server_drops_them(pg_admin_dsn: str) -> None:
    """After PostgreSQL kills the connection, one call fails unavailable and the next reconnects."""
    import psycopg

    from tests.support.postgres import temporary_database

    with temporary_database(pg_admin_dsn) as dsn:
        books = open_books(dsn)
        books.post_batch(batch("gw1-1", issue("T1-1")))
        database = dsn.rsplit("/", 1)[1]
        with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s",
                (database,),
            )
        with pytest.raises(LedgerUnavailable):
            books.trial_balance()
        assert books.card_balance("C1")["value_minor"] == 5000  # type: ignore[index]
        books.close()
