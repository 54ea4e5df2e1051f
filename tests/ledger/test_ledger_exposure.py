"""Overdrafts at the center (ledger/exposure_sql.py): a card an offline or stand-in sale took
below zero is blocked for every store in the same transaction, alarmed, and reported per
card, store and terminal."""

from __future__ import annotations

from ledger import Books
from tests.ledger.builders import batch, issue, purchase, topup


def _report(books: Books) -> dict:
    return books.report("exposure").to_json()


def test_an_offline_sale_past_the_value_blocks_the_card_for_every_store(books: Books) -> None:
    books.post_batch(batch("B1", issue("A1-1", "C1", 1_000), issue("A1-2", "C2", 1_000)))
    books.post_batch(dict(batch("B2", purchase("B1-1", "C1", 1_500, points=0, auth="offline"),
                                purchase("B1-2", "C2", 900, points=0, auth="offline")),
                          gateway_id="gwB"))
    detail = books.card_detail("C1")
    assert detail["value_minor"] == -500 and detail["blocked"]
    assert detail["block"]["login"] == "ledger" and "overdraft" in detail["block"]["reason"]
    assert not books.card_detail("C2")["blocked"]  # within its value
    assert [a["reason"] for a in books.alarms()] == ["overdraft"]
    assert [c["card"] for c in books.block_changes(0)["blocks"]] == ["C1"]  # the feed
    report = _report(books)
    assert report["rows"] == [{"card": "C1", "currency": "EUR", "value_minor": -500,
                               "blocked": True}]
    assert report["summary"]["sales"] == [{"gateway_id": "gwB", "merchant": "M1",
                                           "terminal": "B1", "card": "C1",
                                           "unheld_minor": 1_500}]
    assert report["summary"]["by_gateway"] == {"gwB": 1_500}


def test_a_card_already_blocked_or_an_online_sale_blocks_nothing_more(books: Books) -> None:
    books.post_batch(batch("B1", issue("A1-1", "C1", 1_000)))
    books.post_batch(batch("B2", purchase("A1-2", "C1", 1_200, points=0, auth="stand_in")))
    books.post_batch(batch("B3", purchase("A1-3", "C1", 100, points=0, auth="offline")))
    books.post_batch(batch("B3", purchase("A1-3", "C1", 100, points=0, auth="offline")))
    assert len(books.block_changes(0)["blocks"]) == 1
    assert len(books.alarms()) == 1
    books.block_card("C1", False, "paid back at the counter", "admin")
    books.post_batch(batch("B4", topup("A1-4", "C1", 500)))
    assert not books.card_detail("C1")["blocked"]
    assert _report(books)["rows"] == []  # back above zero
