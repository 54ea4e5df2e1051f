"""A company's shared budget at the ledger (ledger/company_sql.py): holds on its cards are
refused ``company_budget`` past it, its spend and holds read back, its cards added and
removed with every mistake refused unchanged. Every test runs on SQLite and on PostgreSQL;
the books' clock stands at 2025-11-23 12:13:20 UTC (the builders' transaction time + 100).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from ledger import Books, open_books
from ledger.auth import dump_logins, new_login
from ledger.client import LedgerClient
from ledger.db import open_database
from ledger.errors import BatchConflict, BatchInvalid, Forbidden, HoldRefused, NotFound
from ledger.server import serve
from tests.ledger.builders import (
    batch,
    hold_request,
    issue,
    posted_rows,
    purchase,
    refund,
    topup,
)
from tests.support.together import race

NOW_S = 1_763_900_100
DAY_START_S = 1_763_856_000
"""2025-11-23 00:00 UTC: the day the books' clock is in."""
YESTERDAY_S = DAY_START_S - 1


def company(budget_minor: int = 5000, period: str = "day", **fields: Any) -> dict[str, Any]:
    """A POST /v1/companies body: company ACME in EUR."""
    return {"company": "ACME", "name": "Acme Ltd", "currency": "EUR",
            "budget_minor": budget_minor, "period": period} | fields


@pytest.fixture
def acme(dsn: str) -> Iterator[Books]:
    """Cards A1, A2 (ACME, 50.00 a day) and N1 (no company), 100.00 each."""
    books = open_books(dsn, lambda: NOW_S)
    books.post_batch(batch("gw1-0", issue("T1-1", "A1", 10_000), issue("T1-2", "A2", 10_000),
                           issue("T1-3", "N1", 10_000)))
    books.save_company(company(), "mia")
    books.add_company_card("ACME", "A1", "mia")
    books.add_company_card("ACME", "A2", "mia")
    yield books
    books.close()


def refused(books: Books, document: dict[str, Any]) -> str:
    with pytest.raises(HoldRefused) as caught:
        books.place_hold(document)
    return caught.value.reason


def test_holds_of_two_cards_together_reach_the_budget_and_the_next_is_refused(
        acme: Books) -> None:
    """A1 holds 30.00, A2 20.00: 5000 of 5000; A2's next cent is company_budget, while N1
    (no company) is held 60.00 and A1's value alone would cover more."""
    assert acme.place_hold(hold_request("H1", "A1", 3000)).created
    assert acme.place_hold(hold_request("H2", "A2", 2000)).created
    assert refused(acme, hold_request("H3", "A2", 1)) == "company_budget"
    assert acme.place_hold(hold_request("H4", "N1", 6000)).created
    shown = acme.company("ACME")
    assert shown is not None
    assert (shown["spent_minor"], shown["held_minor"], shown["available_minor"]) == (0, 5000, 0)
    assert acme.card_balance("A2")["held_minor"] == 2000  # type: ignore[index]


def test_spend_counts_purchases_less_refunds_of_the_period_and_holds_once(acme: Books) -> None:
    """Today: A1 bought 25.00 (posting its hold of 25.00) and got 5.00 back, A2 bought 10.00
    offline; yesterday A2 bought 40.00 (another period). Spent 2500 - 500 + 1000 = 3000,
    held 0, available 2000: a hold of 20.00 is placed, one of 0.01 more is refused."""
    acme.place_hold(hold_request("H1", "A1", 2500))
    acme.post_batch(batch(
        "gw1-1",
        purchase("T1-10", "A1", 2500, points=0, hold_id="H1"),
        refund("T1-11", "T1-10", "A1", card_value_minor=500),
        purchase("T1-12", "A2", 1000, points=0, auth="offline"),
        purchase("T1-13", "A2", 4000, points=0, time=YESTERDAY_S),
    ))
    shown = acme.company("ACME")
    assert shown is not None
    assert shown["period_start"] == DAY_START_S
    assert (shown["spent_minor"], shown["held_minor"], shown["available_minor"]) == (
        3000, 0, 2000)
    assert shown["cards"] == [{"card": "A1", "spent_minor": 2000, "held_minor": 0},
                              {"card": "A2", "spent_minor": 1000, "held_minor": 0}]
    assert acme.place_hold(hold_request("H2", "A2", 2000)).created
    assert refused(acme, hold_request("H3", "A1", 1)) == "company_budget"


def test_a_month_budget_counts_the_whole_month(acme: Books) -> None:
    """Changed to 100.00 a month, yesterday's 40.00 counts: a hold of 60.00 reaches it."""
    acme.post_batch(batch("gw1-1", purchase("T1-13", "A2", 4000, points=0, time=YESTERDAY_S)))
    changed = acme.save_company(company(10_000, "month"), "mia")
    assert changed["outcome"] == "changed"
    assert acme.place_hold(hold_request("H1", "A1", 6000)).created
    assert refused(acme, hold_request("H2", "A1", 1)) == "company_budget"
    assert acme.save_company(company(10_000, "month"), "mia")["outcome"] == "unchanged"


def test_a_voided_or_expired_hold_gives_its_budget_back(acme: Books) -> None:
    """Voiding A1's 50.00 frees the budget for A2's 50.00."""
    acme.place_hold(hold_request("H1", "A1", 5000))
    assert refused(acme, hold_request("H2", "A2", 5000)) == "company_budget"
    acme.void_hold("H1")
    assert acme.place_hold(hold_request("H3", "A2", 5000)).created


def test_a_removed_card_is_no_longer_judged_and_its_spend_leaves_the_company(
        acme: Books) -> None:
    """A1 holds 50.00; A2 is refused, then taken out of ACME, and is held."""
    acme.place_hold(hold_request("H1", "A1", 5000))
    assert refused(acme, hold_request("H2", "A2", 100)) == "company_budget"
    acme.remove_company_card("ACME", "A2", "mia")
    assert acme.place_hold(hold_request("H3", "A2", 100)).created
    shown = acme.company("ACME")
    assert shown is not None and [c["card"] for c in shown["cards"]] == ["A1"]


def mistakes() -> list[tuple[Callable[[Books], Any], type[Exception], str]]:
    return [
        (lambda b: b.add_company_card("ACME", "C9", "mia"), NotFound, "card_unknown"),
        (lambda b: b.add_company_card("NOPE", "N1", "mia"), NotFound, "company_unknown"),
        (lambda b: b.add_company_card("ACME", "G1", "mia"), BatchInvalid, "currency_mismatch"),
        (lambda b: b.add_company_card("OTHER", "A1", "mia"), BatchConflict, "card_in_company"),
        (lambda b: b.remove_company_card("ACME", "N1", "mia"), NotFound,
         "card_not_in_company"),
        (lambda b: b.remove_company_card("NOPE", "A1", "mia"), NotFound, "company_unknown"),
        (lambda b: b.save_company(company(currency="GBP"), "mia"), BatchConflict,
         "company_currency"),
        (lambda b: b.save_company(company(budget_minor=0), "mia"), BatchInvalid,
         "company_invalid"),
    ]


@pytest.mark.parametrize("number", range(len(mistakes())))
def test_a_mistake_is_refused_with_its_reason_and_changes_nothing(
        acme: Books, number: int) -> None:
    """Unknown card or company, another currency, a card of another company, a card not in
    it, a new currency, a bad budget: refused, and the companies read the same after."""
    acme.post_batch(batch("gw1-1", issue("T1-20", "G1", 1000, currency="GBP")))
    acme.save_company(company(company="OTHER", name="Other"), "mia")
    before = (acme.company("ACME"), acme.company("OTHER"))
    call, error, reason = mistakes()[number]
    with pytest.raises(error) as caught:
        call(acme)
    assert caught.value.reason == reason  # type: ignore[attr-defined]
    assert (acme.company("ACME"), acme.company("OTHER")) == before


def test_adding_a_card_twice_changes_nothing_and_an_unknown_company_reads_none(
        acme: Books) -> None:
    assert acme.add_company_card("ACME", "A1", "mia")["changed"] is False
    assert acme.company("NOPE") is None


def test_every_change_is_in_the_audit_with_its_login(acme: Books, dsn: str) -> None:
    """Created, two cards added, a card removed: four rows, each with who and what."""
    acme.remove_company_card("ACME", "A2", "joe")
    rows = posted_rows(dsn, "SELECT login, action, detail FROM company_audit ORDER BY id")
    assert rows == [("mia", "created", "budget 5000 EUR a day"), ("mia", "card_added", "A1"),
                    ("mia", "card_added", "A2"), ("joe", "card_removed", "A2")]


def test_over_http_an_admin_manages_a_reader_reads_and_a_gateway_is_refused_company_budget(
        dsn: str, tmp_path: Path) -> None:
    """POST /v1/companies (201, then 200), POST and DELETE .../cards, GET: an admin's; a
    reader reads but may not change; a gateway's hold past the budget is HoldRefused
    company_budget, as its client sees it."""
    made = {"gw1": new_login("gw1", "gateway", "gw1", ("T1",), ("M1",)),
            "alice": new_login("alice", "reader"), "root": new_login("root", "admin")}
    logins = tmp_path / "logins.json"
    logins.write_text(dump_logins({name: login for name, (login, _) in made.items()}))
    server = serve(dsn, logins_file=logins)
    try:
        server.books.post_batch(batch("gw1-0", issue("T1-1", "A1", 10_000),
                                      issue("T1-2", "A2", 10_000)))
        root, alice, gateway = (LedgerClient(server.url, 30, token=made[name][1])
                                for name in ("root", "alice", "gw1"))
        assert root.save_company("ACME", "Acme Ltd", "EUR", 5000, "day")["outcome"] == "created"
        assert root.save_company("ACME", "Acme", "EUR", 5000, "day")["outcome"] == "changed"
        assert root.add_company_card("ACME", "A1")["changed"] is True
        assert root.add_company_card("ACME", "A2")["changed"] is True
        with pytest.raises(Forbidden):
            alice.add_company_card("ACME", "A1")
        with pytest.raises(BatchInvalid) as malformed:
            root.save_company("ACME", "Acme", "EUR", 0, "day")
        assert malformed.value.reason == "company_invalid"
        assert gateway.place_hold("gw1-H1", "A1", "EUR", 4000, 60, "T1", "M1")["status"] == "open"
        with pytest.raises(HoldRefused) as refused:
            gateway.place_hold("gw1-H2", "A2", "EUR", 1001, 60, "T1", "M1")
        assert refused.value.reason == "company_budget"
        shown = alice.company("ACME")
        assert (shown["name"], shown["spent_minor"], shown["held_minor"],
                shown["available_minor"]) == ("Acme", 0, 4000, 1000)
        assert root.remove_company_card("ACME", "A2") == {"company": "ACME", "card": "A2"}
        assert [c["card"] for c in alice.company("ACME")["cards"]] == ["A1"]
        with pytest.raises(NotFound) as unknown:
            alice.company("NOPE")
        assert unknown.value.reason == "company_unknown"
    finally:
        server.stop()


CONCURRENT_CARDS = 8
HOLDS_EACH = 6
HOLD_MINOR = 300
BUDGET_MINOR = 10_000


def test_concurrent_holds_on_the_cards_of_one_company_never_pass_its_budget(
        dsn: str) -> None:
    """Eight threads, each holding 3.00 six times on its own card of a company of 100.00 a
    day, on two books (two ledger processes): 48 x 300 = 14400 asked, so exactly
    10000 // 300 = 33 are placed (9900) and 15 refused company_budget, whatever the order;
    each card alone has 100.00, so no hold is refused for its card's value."""
    books = [open_books(dsn, lambda: NOW_S), open_books(dsn, lambda: NOW_S)]
    try:
        cards = [f"K{n}" for n in range(CONCURRENT_CARDS)]
        books[0].post_batch(batch("gw1-0", *(issue(f"T1-{n + 1}", card, 10_000)
                                             for n, card in enumerate(cards))))
        books[0].save_company(company(BUDGET_MINOR), "mia")
        for card in cards:
            books[1].add_company_card("ACME", card, "mia")
        placed, refusals = race([
            [(f"H{number}-{index}", partial(books[number % 2].place_hold, hold_request(
                f"H{number}-{index}", cards[number], HOLD_MINOR))) for index in range(HOLDS_EACH)]
            for number in range(CONCURRENT_CARDS)])
        assert len(placed) == BUDGET_MINOR // HOLD_MINOR
        assert refusals == {"company_budget": CONCURRENT_CARDS * HOLDS_EACH - len(placed)}
        shown = books[0].company("ACME")
        assert shown is not None
        assert shown["held_minor"] == HOLD_MINOR * len(placed) <= BUDGET_MINOR
        assert shown["available_minor"] == BUDGET_MINOR - HOLD_MINOR * len(placed)
    finally:
        for opened in books:
            opened.close()


def test_a_replaced_company_card_hands_its_place_to_the_new_card_and_its_spend_stays(
        acme: Books) -> None:
    """A1 spent 30.00 today and is replaced by R1: R1 joins ACME (70.00 of value moved to
    it), A1 stays in it, so 3000 spent still counts and R1 may hold 20.00, not 20.01."""
    acme.post_batch(batch("gw1-1", purchase("T1-10", "A1", 3000, points=0)))
    done = acme.replace_card("A1", "R1", "mia", "lost")
    assert (done["company"], done["value_minor"]) == ("ACME", 7000)
    shown = acme.company("ACME")
    assert shown is not None
    assert [card["card"] for card in shown["cards"]] == ["A1", "A2", "R1"]
    assert shown["spent_minor"] == 3000
    assert refused(acme, hold_request("H1", "R1", 2001)) == "company_budget"
    assert acme.place_hold(hold_request("H2", "R1", 2000)).created
    assert acme.replace_card("N1", "R2", "mia", "lost")["company"] is None


def test_a_replacement_by_a_card_of_another_company_is_refused_and_changes_nothing(
        acme: Books) -> None:
    """R1, registered and put in OTHER, cannot replace A1 of ACME: card_in_company, and A1
    is neither blocked nor emptied."""
    acme.register_card("R1", "gift", "EUR", "M1", 0)
    acme.save_company(company(company="OTHER", name="Other"), "mia")
    acme.add_company_card("OTHER", "R1", "mia")
    with pytest.raises(BatchConflict) as conflict:
        acme.replace_card("A1", "R1", "mia", "lost")
    assert conflict.value.reason == "card_in_company"
    detail = acme.card_detail("A1")
    assert detail is not None and (detail["blocked"], detail["value_minor"]) == (False, 10_000)


def test_holds_racing_the_batches_that_post_them_never_pass_the_budget(dsn: str) -> None:
    """Eight threads, each on its own card of a company of 100.00 a day, hold 3.00 and at
    once post the purchase that settles the hold, six times, on two books: a hold turning
    into spend at the moment another card's hold is judged is counted once, held or spent,
    never neither. 10000 // 300 = 33 holds are placed and posted, 15 refused, and spent
    ends at 9900."""
    books = [open_books(dsn, lambda: NOW_S), open_books(dsn, lambda: NOW_S)]
    try:
        cards = [f"K{n}" for n in range(CONCURRENT_CARDS)]
        books[0].post_batch(batch("gw1-0", *(issue(f"T1-{n + 1}", card, 10_000)
                                             for n, card in enumerate(cards))))
        books[0].save_company(company(BUDGET_MINOR), "mia")
        for card in cards:
            books[0].add_company_card("ACME", card, "mia")
        def hold_and_post(mine: Books, number: int, index: int) -> None:
            """Hold (refused: the race counts it), then post the sale naming the hold."""
            hold_id = f"H{number}-{index}"
            mine.place_hold(hold_request(hold_id, cards[number], HOLD_MINOR))
            sale = purchase(f"S{number}-{index + 1}", cards[number], HOLD_MINOR, points=0,
                            hold_id=hold_id)
            assert mine.post_batch(batch(f"gw1-{hold_id}", sale)).posted == 1

        posted, refusals = race([
            [(f"H{number}-{index}", partial(hold_and_post, books[number % 2], number, index))
             for index in range(HOLDS_EACH)] for number in range(CONCURRENT_CARDS)])
        assert len(posted) == BUDGET_MINOR // HOLD_MINOR
        assert refusals == {"company_budget": CONCURRENT_CARDS * HOLDS_EACH - len(posted)}
        shown = books[1].company("ACME")
        assert shown is not None
        assert (shown["spent_minor"], shown["held_minor"]) == (HOLD_MINOR * len(posted), 0)
    finally:
        for opened in books:
            opened.close()


COMPANY_TABLES = ("company_audit", "company_cards", "companies")
"""The tables of companies, dropped (cards before companies) to make books as they were
before them."""


def test_books_made_before_companies_gain_their_tables_on_open(dsn: str) -> None:
    """Books without the company tables: holds are placed as before, then a company is made
    on the tables created on the next open."""
    books = open_books(dsn, lambda: NOW_S)
    try:
        books.post_batch(batch("gw1-0", issue("T1-1", "A1", 10_000)))
    finally:
        books.close()
    database = open_database(dsn)
    try:
        for table in COMPANY_TABLES:
            database.execute(f"DROP TABLE {table}")
    finally:
        database.close()
    books = open_books(dsn, lambda: NOW_S)
    try:
        assert books.place_hold(hold_request("H1", "A1", 6000)).created
        books.save_company(company(), "mia")
        books.add_company_card("ACME", "A1", "mia")
        assert refused(books, hold_request("H2", "A1", 1)) == "company_budget"
    finally:
        books.close()


LAST_MONTH_S = 1_761_955_200 - 1
"""2025-10-31 23:59:59 UTC: the month before the books' clock."""


def test_a_card_joining_brings_its_spend_of_this_month_and_a_rejoined_card_is_counted_once(
        dsn: str) -> None:
    """N1 (no company) bought 10.00 today, 4.00 yesterday and 7.00 last month, and got 1.00
    back today; put in a month company it brings 1000 - 100 + 400 = 1300 (last month is no
    period of now); 2.00 more while in it: 1500. Taken out, it buys 3.00 (kept nowhere);
    put back, its days are filled again from its history: 1800, not 1500 + 1800."""
    books = open_books(dsn, lambda: NOW_S)
    try:
        books.post_batch(batch(
            "gw1-0", issue("T1-1", "N1", 10_000),
            purchase("T1-2", "N1", 1000, points=0),
            purchase("T1-3", "N1", 400, points=0, time=YESTERDAY_S),
            purchase("T1-4", "N1", 700, points=0, time=LAST_MONTH_S),
            refund("T1-5", "T1-2", "N1", card_value_minor=100)))
        books.save_company(company(10_000, "month"), "mia")
        books.add_company_card("ACME", "N1", "mia")
        assert books.company("ACME")["spent_minor"] == 1300  # type: ignore[index]
        books.post_batch(batch("gw1-1", purchase("T1-6", "N1", 200, points=0)))
        assert books.company("ACME")["spent_minor"] == 1500  # type: ignore[index]
        books.remove_company_card("ACME", "N1", "mia")
        books.post_batch(batch("gw1-2", purchase("T1-7", "N1", 300, points=0)))
        books.add_company_card("ACME", "N1", "mia")
        shown = books.company("ACME")
        assert shown is not None
        assert shown["spent_minor"] == 1800
        assert shown["cards"] == [{"card": "N1", "spent_minor": 1800, "held_minor": 0}]
    finally:
        books.close()


def test_a_batch_of_more_card_days_than_one_statement_takes_keeps_them_all(acme: Books,
                                                                          dsn: str) -> None:
    """A1 (in ACME) is posted 0.01 on each of 301 days back from today, in one batch: 301
    rows of company_card_days (DAYS_PER_STATEMENT_MAX 300 a statement); of them 2025-11-01
    to 2025-11-23 are this month's, 23 days: spent 23 a month, 1 a day."""
    acme.post_batch(batch("gw1-1", *(purchase(f"T1-{100 + back}", "A1", 1, points=0,
                                              time=NOW_S - back * 86_400)
                                     for back in range(301))))
    assert posted_rows(dsn, "SELECT COUNT(*), SUM(spent_minor) FROM company_card_days"
                            " WHERE card = ?", "A1") == [(301, 301)]
    assert acme.company("ACME")["spent_minor"] == 1  # type: ignore[index]
    acme.save_company(company(period="month"), "mia")
    assert acme.company("ACME")["spent_minor"] == 23  # type: ignore[index]


@pytest.mark.parametrize("joined_first", [True, False])
def test_a_refund_of_a_top_up_gives_no_spend_back(dsn: str, joined_first: bool) -> None:
    """N1 is topped up 20.00, buys 10.00, gets 3.00 of the sale back and has 5.00 of the
    top-up taken off (a refund of the top-up): spent 1000 - 300 = 700, the top-up's refund
    not counted, whether posted while the card is in the company (the batches keep its days)
    or before it joined (its days filled from its history)."""
    books = open_books(dsn, lambda: NOW_S)
    try:
        books.post_batch(batch("gw1-0", issue("T1-1", "N1", 10_000)))
        books.save_company(company(), "mia")
        if joined_first:
            books.add_company_card("ACME", "N1", "mia")
        books.post_batch(batch(
            "gw1-1", topup("T1-2", "N1", 2000), purchase("T1-3", "N1", 1000, points=0),
            refund("T1-4", "T1-3", "N1", card_value_minor=300),
            refund("T1-5", "T1-2", "N1", card_value_minor=500)))
        if not joined_first:
            books.add_company_card("ACME", "N1", "mia")
        assert books.company("ACME")["spent_minor"] == 700  # type: ignore[index]
        balance = books.card_balance("N1")
        assert balance is not None
        assert balance["value_minor"] == 10_000 + 2000 - 1000 + 300 - 500
    finally:
        books.close()


def test_a_refund_of_yesterdays_sale_never_adds_to_todays_budget(acme: Books) -> None:
    """A1 bought 40.00 yesterday and 30.00 today; 40.00 of yesterday's sale comes back
    today: the day's net is -1000, spent 0, so 50.00 may be held today, not 60.00."""
    acme.post_batch(batch("gw1-1", purchase("T1-10", "A1", 4000, points=0, time=YESTERDAY_S),
                          purchase("T1-11", "A1", 3000, points=0),
                          refund("T1-12", "T1-10", "A1", card_value_minor=4000)))
    shown = acme.company("ACME")
    assert shown is not None
    assert (shown["spent_minor"], shown["available_minor"]) == (0, 5000)
    assert shown["cards"][0] == {"card": "A1", "spent_minor": -1000, "held_minor": 0}
    assert refused(acme, hold_request("H1", "A2", 5001)) == "company_budget"
    assert acme.place_hold(hold_request("H2", "A2", 5000)).created
