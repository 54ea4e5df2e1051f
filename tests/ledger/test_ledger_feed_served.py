"""The card feed filtered for one gateway (GET /v1/changes?for=, ledger/feed_sql.py): the
changes other gateways posted of the cards it serves, none of the others, and a cursor
that still moves past what was left out. On both engines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger import Books, feed_sql
from ledger.db import open_database
from ledger.feed_sql import parse_cursor
from tests.ledger.builders import batch, issue, purchase, read_feed, topup
from tests.ledger.test_ledger_auth import Deployment
from tests.support.stack import wait_until

FEED_WAIT_S = 30.0
"""How long a read may wait for changes another transaction on the server holds back."""


def post(books: Books, gateway: str, batch_id: str, *txns: dict[str, Any]) -> None:
    answer = books.post_batch(dict(batch(batch_id, *txns), gateway_id=gateway))
    assert not answer.to_json()["refused"]


def served(books: Books, gateway: str, cursor: str = "0.0") -> tuple[list[str], str]:
    """The txn ids of `gateway`'s filtered feed after `cursor`, and its next cursor."""
    parsed = parse_cursor(cursor)
    assert parsed is not None
    answer = books.card_changes(parsed, served_by=gateway)
    return [change["txn_id"] for change in answer["changes"]], answer["next"]


def chain(books: Books) -> str:
    """gw1 sells C1, gw2 sells C2, gw3 sells C3; each card then used at another store.
    Returns the unfiltered feed's end once all seven are served (past every writer)."""
    post(books, "gw1", "gw1-B1", issue("T1-1", "C1", 5_000))
    post(books, "gw2", "gw2-B1", issue("T2-1", "C2", 5_000))
    post(books, "gw3", "gw3-B1", issue("T3-1", "C3", 5_000))
    post(books, "gw2", "gw2-B2", purchase("T2-2", "C1", 700))   # C1 at gw2's store
    post(books, "gw1", "gw1-B2", topup("T1-2", "C2", 300))      # C2 at gw1's store
    post(books, "gw3", "gw3-B2", purchase("T3-2", "C3", 100))   # C3 at home only
    post(books, "gw3", "gw3-B3", purchase("T3-3", "C1", 200))   # C1 at gw3's store
    changes, end = read_feed(books, expected=7)
    assert len(changes) == 7
    return end


def test_a_gateway_is_sent_the_changes_others_posted_of_the_cards_it_posted(
        books: Books) -> None:
    end = chain(books)
    # gw1 posted C1 and C2: the others' changes of them (whenever posted, as the filter is
    # read at read time), never its own, never C3.
    assert served(books, "gw1") == (["T2-1", "T2-2", "T3-3"], end)
    assert served(books, "gw2") == (["T1-1", "T1-2", "T3-3"], end)  # C2 and C1
    assert served(books, "gw3") == (["T1-1", "T2-2"], end)  # C1; C3 only it used
    assert served(books, "gw9") == ([], end)  # serves nothing: the cursor still moves


def test_a_card_taken_on_brings_its_changes_whenever_they_were_posted(books: Books) -> None:
    end = chain(books)
    # gw9 takes C3 on (a look-up): the filter is read at read time, so C3's changes after
    # the cursor it reads from come, including those posted before it took the card on.
    books.serve("gw9", ["C3", "C7"])  # C7: a card the ledger does not know, not noted
    books.serve("gw9", ["C3"])  # noted once
    assert served(books, "gw9") == (["T3-1", "T3-2"], end)
    post(books, "gw1", "gw1-B3", purchase("T1-3", "C3", 50), issue("T1-4", "C7", 100))
    changes, _ = read_feed(books, end, expected=2)
    assert [c["txn_id"] for c in changes] == ["T1-3", "T1-4"]
    assert served(books, "gw9", end)[0] == ["T1-3"]
    assert served(books, "gw2", end)[0] == []  # not one of gw2's cards


def test_a_full_page_ends_at_its_last_change_and_a_short_one_at_the_horizon(
        books: Books, dsn: str) -> None:
    end = chain(books)

    def page(cursor: str, limit: int) -> tuple[list[str], str]:
        parsed = parse_cursor(cursor)
        assert parsed is not None
        database = open_database(dsn)
        try:
            with database.read() as session:
                answer = feed_sql.after(session, *parsed, limit=limit, served_by="gw1")
        finally:
            database.close()
        return [change["txn_id"] for change in answer["changes"]], answer["next"]

    first, cursor = page("0.0", 1)
    assert first == ["T2-1"] and cursor != end  # a full page: more may follow
    assert page(cursor, 2) == (["T2-2", "T3-3"], end)  # full, ending at the last change
    assert page(cursor, 3) == (["T2-2", "T3-3"], end)  # short: at the horizon
    assert page(end, 1) == ([], end)


def test_the_stores_serving_a_replaced_card_are_sent_the_new_cards_changes(
        books: Books) -> None:
    end = chain(books)
    books.serve("gw9", ["C3"])
    books.replace_card("C3", "N3", "admin", "lost")
    changes, end = read_feed(books, end, expected=2)
    assert {c["card"] for c in changes} == {"C3", "N3"}  # the transfer, one row per card
    post(books, "gw1", "gw1-B3", purchase("T1-3", "N3", 60))
    later, _ = read_feed(books, end)
    assert [c["txn_id"] for c in later] == ["T1-3"]
    # gw3 posted C3's sales and gw9 took it on: both follow N3; gw2 never had it.
    assert served(books, "gw3", end)[0] == ["T1-3"]
    assert served(books, "gw9", end)[0] == ["T1-3"]
    assert served(books, "gw2", end)[0] == []


@pytest.fixture
def deployed(dsn: str, tmp_path: Path) -> Iterator[Deployment]:
    """A ledger over TLS with logins gw1, gw2 (gateways) and alice (a reader)."""
    deployment = Deployment(dsn, tmp_path)
    yield deployment
    deployment.server.stop()


def test_over_http_a_gateway_notes_and_reads_only_for_itself(deployed: Deployment) -> None:
    """A gateway login's look-up notes that it serves the card; its feed read names itself
    only; POST /v1/served is a gateway's; an operator may read any gateway's feed but not
    note a card for one."""
    gw1, gw2, alice = (deployed.client(name) for name in ("gw1", "gw2", "alice"))
    assert gw1.post_batch(batch("gw1-000001", issue("T1-1", "C1", 5000),
                                issue("T1-2", "C2", 5000)))["posted"] == 2
    end = gw2.card_changes("end", serving="gw2")["next"]
    gw2.card("C1")  # its login's gateway: gw2 serves C1 from now on
    assert gw1.post_batch(batch("gw1-000002", purchase("T1-3", "C1", 100),
                                purchase("T1-4", "C2", 100)))["posted"] == 2
    # Another write transaction open on the same PostgreSQL server (another test run's)
    # holds the feed back until it ends (docs/ledger.md "Card feed"): wait for both to show.
    assert wait_until(lambda: len(gw2.card_changes(end)["changes"]) == 2, FEED_WAIT_S)
    assert [c["txn_id"] for c in gw2.card_changes(end, serving="gw2")["changes"]] == ["T1-3"]
    assert [c["txn_id"] for c in alice.card_changes(end, serving="gw2")["changes"]] == ["T1-3"]
    assert len(gw2.card_changes(end)["changes"]) == 2  # unfiltered, as before
    assert gw2.serve_cards(["C2"]) == {"gateway": "gw2", "cards": 1}
    assert [c["txn_id"] for c in gw2.card_changes(end, serving="gw2")["changes"]] == [
        "T1-3", "T1-4"]
    token = deployed.tokens["gw2"]
    refused = {
        "another's feed": ("GET", f"/v1/changes?after={end}&for=gw1", token, None, 403),
        "another's look-up": ("GET", "/v1/cards/C1?for=gw1", token, None, 403),
        "another's cards": ("POST", "/v1/served", token, {"cards": ["C1"], "for": "gw1"}, 403),
        "an operator's note": ("POST", "/v1/served", deployed.tokens["alice"],
                               {"cards": ["C1"], "for": "gw1"}, 403),
        "an operator's look-up": ("GET", "/v1/cards/C1?for=gw1", deployed.tokens["alice"],
                                  None, 400),
        "not a list": ("POST", "/v1/served", token, {"cards": "C1"}, 400),
        "too many": ("POST", "/v1/served", token, {"cards": ["C1"] * 1001}, 400),
        "another parameter": ("GET", "/v1/cards/C1?fro=gw2", token, None, 400),
    }
    for name, (method, path, login, body, status) in refused.items():
        assert (name, deployed.raw(method, path, login, body)[0]) == (name, status)
    # None of it noted anything: gw1 still serves only the cards it posted.
    assert gw1.card_changes(end, serving="gw1")["changes"] == []
