"""A reward item's stock at the ledger (ledger/reward_stock.py, ledger/reward_stock_sql.py):
holds of a counted item are refused ``reward_out_of_stock`` once none is left unheld at the
store, posted redemptions take one each off the count, refunds put none back, every
mistake is refused and changes nothing. Every test runs on SQLite and on PostgreSQL.

The cards (coffee of examples/programs.toml: the mug takes 50 points and 2.50 in cash):
R1..R4 are issued and each buys 200.00 in cash, 100 points each, so each can pay two mugs.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from ledger import Books, open_books
from ledger.auth import dump_logins, new_login
from ledger.client import LedgerClient
from ledger.errors import BatchInvalid, Forbidden, HoldRefused, NotFound
from ledger.server import serve
from tests.ledger.builders import EngineShop, at, hold_request, posted_rows
from tests.support import REPO_ROOT
from tests.support.together import race
from tools.programs import load_programs

COFFEE = load_programs(REPO_ROOT / "examples" / "programs.toml")["coffee"]
START_S = at("2025-03-01", hour=0)
DAY_S = 86_400
NOW_S = START_S + DAY_S  # the books' clock: day 1 of the history
CARDS = ("R1", "R2", "R3", "R4")
MUG_POINTS = 50


@pytest.fixture
def clock() -> list[int]:
    return [NOW_S]


@pytest.fixture
def shop(dsn: str, clock: list[int]) -> Iterator[EngineShop]:
    books = open_books(dsn, lambda: clock[0], {"coffee": COFFEE})
    made = EngineShop(books, COFFEE, START_S)
    for card in CARDS:
        made.post(card, {"op": "issue", "id": "i" + card, "card": card})
        made.post(card, {"op": "purchase", "id": "p" + card, "amount_minor": 20_000})
    yield made
    books.close()


def mug_hold(hold_id: str, card: str, merchant: str = "M1", ttl_s: int = 120) -> dict[str, Any]:
    """A gateway's hold for a mug: its points, no value (the co-payment is cash)."""
    return hold_request(hold_id, card, 0, ttl_s, points=MUG_POINTS, reward="mug",
                        merchant=merchant)


def set_mugs(books: Books, quantity: int, merchant: str = "M1") -> dict[str, Any]:
    return books.change_reward_stock({"program": "coffee", "item": "mug", "merchant": merchant,
                                      "quantity": quantity}, "mia")


def refusal(books: Books, document: dict[str, Any]) -> str:
    with pytest.raises(HoldRefused) as caught:
        books.place_hold(document)
    return caught.value.reason


def shelf(books: Books) -> list[tuple[str, str, int, int, int]]:
    return [(row["item"], row["merchant"], row["quantity"], row["held"], row["available"])
            for row in books.reward_stock("coffee")["items"]]


def test_an_item_not_counted_is_held_without_limit(shop: EngineShop) -> None:
    for number, card in enumerate(CARDS):
        assert shop.books.place_hold(mug_hold(f"H{number}", card)).status == "open"
    assert shelf(shop.books) == []


def test_a_counted_item_is_held_until_none_is_left_and_only_at_its_own_store(
        shop: EngineShop) -> None:
    """2 mugs at M1: two holds placed, the third refused; M2 counts nothing, so it holds."""
    assert set_mugs(shop.books, 2) == {"program": "coffee", "item": "mug", "merchant": "M1",
                                       "quantity": 2, "before": None, "held": 0,
                                       "available": 2}
    assert shop.books.place_hold(mug_hold("H1", "R1")).status == "open"
    assert shop.books.place_hold(mug_hold("H2", "R2")).status == "open"
    assert refusal(shop.books, mug_hold("H3", "R3")) == "reward_out_of_stock"
    assert shop.books.place_hold(mug_hold("H4", "R3", merchant="M2")).status == "open"
    # A hold of points for a plain purchase is no reward: not judged.
    assert shop.books.place_hold(hold_request("H5", "R4", 0, points=10)).status == "open"
    assert shelf(shop.books) == [("mug", "M1", 2, 2, 0)]
    # The refused hold was not placed: asked again after a void, it is.
    shop.books.void_hold("H1")
    assert shop.books.place_hold(mug_hold("H3", "R3")).status == "open"


def test_an_expired_hold_gives_its_item_back(shop: EngineShop, clock: list[int]) -> None:
    set_mugs(shop.books, 1)
    shop.books.place_hold(mug_hold("H1", "R1", ttl_s=60))
    assert refusal(shop.books, mug_hold("H2", "R2")) == "reward_out_of_stock"
    clock[0] += 60
    assert shop.books.place_hold(mug_hold("H2", "R2")).status == "open"


def test_a_posted_redemption_takes_one_off_and_a_refund_puts_none_back(shop: EngineShop) -> None:
    """3 mugs. R1 holds and redeems one (posting its hold): 2 left, none held. R2 redeems
    one with no hold (a hold that lapsed): 1 left. R1's mug is refunded in full: still 1
    (REWARD_STOCK_REFUND_NOT_RESTOCKED); a person adds it back: 2."""
    set_mugs(shop.books, 3)
    shop.books.place_hold(mug_hold("gw1-A1", "R1"))
    assert shelf(shop.books) == [("mug", "M1", 3, 1, 2)]
    mug = shop.post("R1", {"op": "reward", "id": "m1", "item": "mug"}, hold_id="gw1-A1")
    assert shelf(shop.books) == [("mug", "M1", 2, 0, 2)]
    shop.post("R2", {"op": "reward", "id": "m2", "item": "mug"})
    assert shelf(shop.books) == [("mug", "M1", 1, 0, 1)]
    shop.post("R1", {"op": "refund", "id": "f1", "of": "m1", "txn": mug, "amount_minor": 750})
    assert shelf(shop.books) == [("mug", "M1", 1, 0, 1)]
    added = shop.books.change_reward_stock({"program": "coffee", "item": "mug",
                                            "merchant": "M1", "add": 1}, "mia")
    assert (added["before"], added["quantity"]) == (1, 2)
    # A redemption at a store that counts nothing changes no count.
    shop.post("R3", {"op": "reward", "id": "m3", "item": "mug"}, merchant="M2")
    assert shelf(shop.books) == [("mug", "M1", 2, 0, 2)]


def test_a_count_can_be_passed_below_zero_and_then_holds_nothing(shop: EngineShop) -> None:
    """A count set to 1 while a hold is open, then two redemptions posted: -1; a shelf to
    count again, and no hold until it is."""
    shop.books.place_hold(mug_hold("gw1-A1", "R1"))
    set_mugs(shop.books, 1)
    shop.post("R1", {"op": "reward", "id": "m1", "item": "mug"}, hold_id="gw1-A1")
    shop.post("R2", {"op": "reward", "id": "m2", "item": "mug"})
    assert shelf(shop.books) == [("mug", "M1", -1, 0, -1)]
    assert refusal(shop.books, mug_hold("H3", "R3")) == "reward_out_of_stock"


def test_uncounting_an_item_lifts_its_limit(shop: EngineShop) -> None:
    set_mugs(shop.books, 0)
    assert refusal(shop.books, mug_hold("H1", "R1")) == "reward_out_of_stock"
    stopped = shop.books.change_reward_stock({"program": "coffee", "item": "mug",
                                              "merchant": "M1", "uncount": True}, "mia")
    assert (stopped["before"], stopped["quantity"], stopped["available"]) == (0, None, None)
    assert shop.books.place_hold(mug_hold("H1", "R1")).status == "open"
    assert shelf(shop.books) == []


def mistakes() -> list[tuple[dict[str, Any], type[Exception], str]]:
    base = {"program": "coffee", "item": "mug", "merchant": "M1"}
    return [
        (base, BatchInvalid, "stock_invalid"),
        (base | {"quantity": 1, "add": 1}, BatchInvalid, "stock_invalid"),
        (base | {"quantity": -1}, BatchInvalid, "stock_invalid"),
        (base | {"quantity": 1_000_001}, BatchInvalid, "stock_invalid"),
        (base | {"quantity": True}, BatchInvalid, "stock_invalid"),
        (base | {"quantity": "3"}, BatchInvalid, "stock_invalid"),
        (base | {"add": 0}, BatchInvalid, "stock_invalid"),
        (base | {"uncount": False}, BatchInvalid, "stock_invalid"),
        (base | {"merchant": "", "quantity": 1}, BatchInvalid, "stock_invalid"),
        (base | {"item": "teapot", "quantity": 1}, BatchInvalid, "reward_unknown"),
        (base | {"program": "nope", "quantity": 1}, NotFound, "program_unknown"),
        (base | {"merchant": "M2", "add": 2}, BatchInvalid, "stock_not_counted"),
    ]


@pytest.mark.parametrize(("document", "error", "reason"), mistakes())
def test_a_mistake_is_refused_with_its_reason_and_changes_nothing(
        shop: EngineShop, dsn: str, document: dict[str, Any], error: type[Exception],
        reason: str) -> None:
    set_mugs(shop.books, 4)
    with pytest.raises(error) as caught:
        shop.books.change_reward_stock(document, "mia")
    assert caught.value.reason == reason  # type: ignore[attr-defined]
    assert shelf(shop.books) == [("mug", "M1", 4, 0, 4)]
    assert posted_rows(dsn, "SELECT COUNT(*) FROM reward_stock_audit") == [(1,)]


def test_a_reward_on_a_hold_of_value_only_is_refused(shop: EngineShop) -> None:
    with pytest.raises(BatchInvalid) as caught:
        shop.books.place_hold(hold_request("H1", "R1", 500, reward="mug"))
    assert caught.value.reason == "field_invalid"


def test_every_change_is_in_the_audit_with_its_login(shop: EngineShop, dsn: str) -> None:
    set_mugs(shop.books, 4)
    shop.books.change_reward_stock({"program": "coffee", "item": "mug", "merchant": "M1",
                                    "add": -1}, "ole")
    shop.books.change_reward_stock({"program": "coffee", "item": "mug", "merchant": "M1",
                                    "uncount": True}, "mia")
    assert posted_rows(dsn, "SELECT login, item, merchant, action, quantity"
                            " FROM reward_stock_audit ORDER BY id") == [
        ("mia", "mug", "M1", "set", 4), ("ole", "mug", "M1", "add", -1),
        ("mia", "mug", "M1", "uncount", None)]


MUGS = 5


def test_concurrent_holds_on_two_ledger_processes_never_hand_over_more_than_the_count(
        dsn: str) -> None:
    """Eight cards on eight threads each ask for a mug twice, through two books (two ledger
    processes), of 5 counted: exactly 5 placed, 11 refused reward_out_of_stock."""
    books = [open_books(dsn, lambda: NOW_S, {"coffee": COFFEE}),
             open_books(dsn, lambda: NOW_S, {"coffee": COFFEE})]
    try:
        shop = EngineShop(books[0], COFFEE, START_S)
        cards = [f"K{n}" for n in range(8)]
        for card in cards:
            shop.post(card, {"op": "issue", "id": "i" + card, "card": card})
            shop.post(card, {"op": "purchase", "id": "p" + card, "amount_minor": 20_000})
        set_mugs(books[1], MUGS)
        placed, refusals = race([
            [(f"H{number}-{index}", partial(books[number % 2].place_hold,
                                             mug_hold(f"H{number}-{index}", cards[number])))
             for index in range(2)] for number in range(len(cards))])
        assert len(placed) == MUGS
        assert refusals == {"reward_out_of_stock": 2 * len(cards) - MUGS}
        assert shelf(books[0]) == [("mug", "M1", MUGS, MUGS, 0)]
    finally:
        for opened in books:
            opened.close()


def test_over_http_an_admin_counts_a_reader_reads_and_a_gateway_is_refused_out_of_stock(
        dsn: str, tmp_path: Path) -> None:
    made = {"gw1": new_login("gw1", "gateway", "gw1", ("T1",), ("M1",)),
            "alice": new_login("alice", "reader"), "boss": new_login("boss", "admin")}
    logins = tmp_path / "logins.json"
    logins.write_text(dump_logins({name: login for name, (login, _) in made.items()}))
    server = serve(dsn, clock=lambda: NOW_S, logins_file=logins, programs={"coffee": COFFEE})
    try:
        shop = EngineShop(server.books, COFFEE, START_S)
        for card in ("R1", "R2"):
            shop.post(card, {"op": "issue", "id": "i" + card, "card": card})
            shop.post(card, {"op": "purchase", "id": "p" + card, "amount_minor": 20_000})
        boss, alice, gateway = (LedgerClient(server.url, 30, token=made[name][1])
                                for name in ("boss", "alice", "gw1"))
        body = {"program": "coffee", "item": "mug", "merchant": "M1", "quantity": 1}
        assert boss.change_reward_stock(body)["available"] == 1
        with pytest.raises(Forbidden):
            alice.change_reward_stock(body)
        with pytest.raises(BatchInvalid) as mistaken:
            boss.change_reward_stock(body | {"item": "teapot"})
        assert mistaken.value.reason == "reward_unknown"
        placed = gateway.place_hold("gw1-H1", "R1", "EUR", 0, 60, "T1", "M1", points=50,
                                    reward="mug")
        assert placed["status"] == "open"
        with pytest.raises(HoldRefused) as refused:
            gateway.place_hold("gw1-H2", "R2", "EUR", 0, 60, "T1", "M1", points=50,
                               reward="mug")
        assert refused.value.reason == "reward_out_of_stock"
        listed = alice.reward_stock("coffee")
        assert [(row["item"], row["quantity"], row["held"], row["available"], row["login"])
                for row in listed["items"]] == [("mug", 1, 1, 0, "boss")]
        assert alice.reward_stock()["items"] == listed["items"]
        assert alice.reward_stock("tea") == {"items": [], "truncated": False}
    finally:
        server.stop()
