"""The books: posting, exactly-once intake, refunds across batches, reports, and opening."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from ledger import BatchConflict, Books, ConfigInvalid, LedgerUnavailable, open_books
from tests.ledger.builders import (
    assert_balanced,
    assert_txn_refused,
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
        "refused": [],
    }
    assert books.card_balance("C1") == {
        "card": "C1",
        "currency": "EUR",
        "value_minor": 5000 + 1100 - 1500 + 500,
        "points": 15,
        "program": "gift",
        "held_minor": 0,
        "available_minor": 5100,
        "held_points": 0,
        "available_points": 15,
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


def test_txn_with_other_content_is_refused_alone_and_alarmed(books: Books) -> None:
    """A txn_id reused with other content is refused txn_conflict, alarmed; the rest posts and
    the transaction in the books stays as it was."""
    books.post_batch(batch("gw1-1", issue("T1-1"), topup("T1-2", amount_minor=700)))
    assert_txn_refused(
        books,
        batch("gw1-2", topup("T1-3", amount_minor=1), topup("T1-2", amount_minor=701)),
        "txn_conflict",
    )
    assert books.card_balance("C1")["value_minor"] == 5000 + 700 + 1  # type: ignore[index]
    assert [alarm["reason"] for alarm in books.alarms()] == ["txn_conflict"]
    assert books.refused_transactions()[0]["posted_batch_id"] == "gw1-1"


def test_txn_with_other_content_inside_one_batch_refuses_it_whole(books: Books) -> None:
    """A txn_id twice in one batch with other content leaves the answer no way to name the
    refused one: the batch is refused whole, 409 txn_conflict, alarmed, nothing kept."""
    before = snapshot(books)
    twice = batch("gw1-1", issue("T1-1"), topup("T1-2"), topup("T1-2", amount_minor=701))
    with pytest.raises(BatchConflict) as caught:
        books.post_batch(twice)
    assert (caught.value.reason, caught.value.http_status) == ("txn_conflict", 409)
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
        "held_points": 0,
        "available_points": 0,
    }


def test_refund_before_its_purchase_in_a_batch_is_unknown(books: Books) -> None:
    """A refund placed before its purchase in the same batch has no original yet: it is
    refused, the purchase after it posts."""
    result = books.post_batch(
        batch("gw1-1", refund("T1-3", "T1-2", card_value_minor=1), purchase("T1-2"))
    )
    assert [(r.txn_id, r.reason) for r in result.refused] == [
        ("T1-3", "refund_unknown_original")
    ]
    assert (result.status, result.posted) == ("partial", 1)


def test_a_refund_of_a_purchase_refused_earlier_in_the_batch_is_refused_too(
    books: Books,
) -> None:
    """Order holds: a refused purchase is not in the books, so its refund later in the same
    batch finds no original; the transactions around them post."""
    result = books.post_batch(
        batch(
            "gw1-1",
            issue("T1-1"),
            purchase("T1-2", card_value_minor=900) | {"bonus_minor": 5},
            refund("T1-3", "T1-2", card_value_minor=900),
            topup("T1-4", amount_minor=100),
        )
    )
    assert [(r.txn_id, r.reason, r.position) for r in result.refused] == [
        ("T1-2", "amount_invalid", 1),
        ("T1-3", "refund_unknown_original", 2),
    ]
    assert (result.status, result.posted, result.already_posted) == ("partial", 2, 0)
    assert books.card_balance("C1")["value_minor"] == 5100  # type: ignore[index]
    assert_balanced(books)


def test_a_refused_transaction_may_come_again_in_a_later_batch(books: Books) -> None:
    """A refused transaction is not in the books: its txn_id stays free. Sent again (fixed,
    or unchanged once what it needed has posted) in a later batch, it is judged afresh, and
    the quarantine shows the batch that posted it."""
    books.post_batch(batch("gw1-1", issue("T1-1")))
    early = refund("T1-3", "T1-2", card_value_minor=100)
    first = books.post_batch(batch("gw1-2", early))
    assert [r.reason for r in first.refused] == ["refund_unknown_original"]
    later = books.post_batch(batch("gw1-3", purchase("T1-2", card_value_minor=900), early))
    assert (later.status, later.posted, later.refused) == ("posted", 2, ())
    assert books.card_balance("C1")["value_minor"] == 5000 - 900 + 100  # type: ignore[index]
    [kept] = books.refused_transactions()
    assert (kept["batch_id"], kept["txn_id"], kept["posted_batch_id"]) == ("gw1-2", "T1-3", "gw1-3")
    # The first batch, sent again, still answers what it did then.
    assert books.post_batch(batch("gw1-2", early)).refused == first.refused


def test_a_batch_of_refused_transactions_only_is_kept_and_its_id_burned(books: Books) -> None:
    """A batch whose every transaction is refused is still a batch the ledger judged: "partial"
    with nothing posted, and the same id with other content is a batch_conflict."""
    result = books.post_batch(batch("gw1-1", refund("T1-3", "T1-2", card_value_minor=1)))
    assert (result.status, result.posted, len(result.refused)) == ("partial", 0, 1)
    with pytest.raises(BatchConflict):
        books.post_batch(batch("gw1-1", issue("T1-1")))


def test_an_identical_copy_of_a_refused_transaction_is_refused_with_it(books: Books) -> None:
    """A transaction repeated identically in a batch shares its first's fate: every one of the
    batch's transactions is counted once, posted, already posted or refused."""
    bad = refund("T1-3", "T1-2", card_value_minor=1)
    result = books.post_batch(batch("gw1-1", issue("T1-1"), bad, bad))
    assert [(r.txn_id, r.position) for r in result.refused] == [("T1-3", 1), ("T1-3", 2)]
    assert (result.posted, result.already_posted) == (1, 0)


def test_refunds_are_limited_cumulatively_across_batches(books: Books) -> None:
    """Refunds of one purchase in several batches may return exactly its value, not a unit more."""
    books.post_batch(
        batch("gw1-1", issue("T1-1"), purchase("T1-2", card_value_minor=1000, points=10))
    )
    books.post_batch(batch("gw1-2", refund("T1-3", "T1-2", card_value_minor=600, points=6)))
    books.post_batch(batch("gw1-3", refund("T1-4", "T1-2", card_value_minor=400, points=4)))
    one_more = batch("gw1-4", refund("T1-5", "T1-2", card_value_minor=1, points=0))
    assert_txn_refused(books, one_more, "refund_exceeds_original")
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
        "held_points": 0,
        "available_points": 0,
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
