"""The card feed (GET /v1/changes, ledger/feed_sql.py): every posted transaction once, in an
order no later commit can break; and which of a card's changes its balances include."""

from __future__ import annotations

import psycopg
import pytest

from ledger import Books
from ledger.feed_sql import parse_cursor
from tests.ledger.builders import batch, issue, purchase, read_feed, refund, topup

"""On a PostgreSQL server other clients share, their writes may hold the feed back a while
(the horizon is the server's oldest running writer); the reads below wait that out."""


def test_each_posted_transaction_is_in_the_feed_once_with_its_terms(books: Books) -> None:
    books.post_batch(batch("B1", issue("T1-1", "C1", 5_000), topup("T1-2", "C1", 1_000)))
    books.post_batch(dict(batch("B2", purchase("T2-1", "C1", 700, points=7)),
                          gateway_id="gw2"))
    changes, cursor = read_feed(books, expected=3)
    assert [(c["txn_id"], c["gateway_id"], c["kind"]) for c in changes] == [
        ("T1-1", "gw1", "issue"), ("T1-2", "gw1", "topup"), ("T2-1", "gw2", "purchase")]
    assert changes[2]["card_value_minor"] == 700 and changes[2]["points"] == 7
    assert books.card_changes(parse_cursor(cursor)) == {"changes": [], "next": cursor}
    books.post_batch(batch("B3", topup("T1-3", "C1", 200)))
    books.post_batch(batch("B3", topup("T1-3", "C1", 200)))  # a duplicate posts nothing
    later, _ = read_feed(books, cursor)
    assert [c["txn_id"] for c in later] == ["T1-3"]


def test_a_refused_transaction_is_not_in_the_feed(books: Books) -> None:
    answer = books.post_batch(batch("B1", issue("T1-1", "C1", 500),
                                    refund("T1-2", "T9-9", "C1", 100)))  # no such sale
    assert [r["txn_id"] for r in answer.to_json()["refused"]] == ["T1-2"]
    changes, _ = read_feed(books)
    assert [c["txn_id"] for c in changes] == ["T1-1"]


def test_a_cards_balances_say_which_of_its_changes_they_include(books: Books) -> None:
    books.post_batch(batch("B1", issue("T1-1", "C1", 5_000)))
    changes, _ = read_feed(books)
    position = books.card_detail("C1")["feed"]
    for change in changes:
        assert (change["xid"] < position["horizon"] or change["id"] <= position["through"]
                or change["txn_id"] in position["known"])


def test_a_change_is_served_only_once_every_older_writer_has_ended(
        books: Books, dsn: str) -> None:
    """PostgreSQL: a batch that commits while an older transaction is still open is held back
    until that one ends (it might still add a change ahead of the batch's)."""
    if books.dialect != "postgresql":
        pytest.skip("SQLite has one writer: its changes commit in id order")
    with psycopg.connect(dsn) as older:
        with older.transaction():
            older.execute("SELECT pg_current_xact_id()")  # it has an xid, and is running
            books.post_batch(batch("B1", issue("T1-1", "C1", 5_000)))
            held = books.card_changes((0, 0))
            assert held == {"changes": [], "next": "0.0"}
        served, _ = read_feed(books)
    assert [c["txn_id"] for c in served] == ["T1-1"]


def test_a_new_reader_starts_at_the_end(books: Books) -> None:
    books.post_batch(batch("B1", issue("T1-1", "C1", 5_000)))
    read_feed(books)  # served: a change still held back would come after the end
    end = books.card_changes(None)
    assert end["changes"] == []
    books.post_batch(batch("B2", topup("T1-2", "C1", 100)))
    changes, _ = read_feed(books, end["next"])
    assert [c["txn_id"] for c in changes] == ["T1-2"]
