"""Targeted offers and tiers by rank at the ledger (ledger/offers.py, ledger/card_ops_sql.py),
on SQLite and PostgreSQL: the office's operations with no money posted per card, kept in the
cards' engine states, in the card feed, idempotent, and the offers' report, all computed by
hand.

Program "club": 1 point per euro paid (earn_bp 100, 100 points a unit of 100 cents: 1 point
per 100 cents); targeted offer "comeback": 50 bonus points on a paid purchase; tiers by rank
over 30-day periods: "member" (everybody), "gold" (the top 50 %).

    day 20401 (period 680)  C1 buys 60.00: 60 points; C2 buys 20.00: 20 points; C3 nothing;
                            C4 buys 30.00 and has 10.00 of it refunded: spend 20.00
    today 20430 (681)       comeback granted to C1 and C2, 1 use, last day 20440
                            C1 buys 40.00 online: 40 + 50 = 90 points, the use taken
                            C1 buys 10.00 online: 10 points (no use left)
                            C2 buys 25.00 offline: 25 points (an offline sale uses no grant)
    report                  granted 2, redeemed 1 (C1), uses 1, use revenue 40.00, window
                            revenue 40 + 10 + 25 = 75.00, response 5000 bp
    rank period 680         spends C1 6000, C2 2000, C4 2000, C3 0: gold count ceil(4 * 50 %)
                            = 2, the floor is the 2nd spend, 2000: C1, C2 and C4 (a tie
                            shares the level) are gold, C3 member (no spend)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger import Books, engine_sql, open_books
from ledger.customers import Customers
from ledger.errors import BatchInvalid
from ledger.personal_crypto import load_key_file, new_key_file
from ledger.server import serve
from tests.ledger.builders import batch, issue, purchase, read_feed, refund
from tests.support.engine_history import time_of
from tools.cli import main
from tools.programs import parse_programs

PROGRAMS = parse_programs("""
[programs.club]
version = 1
currency = "EUR"

[programs.club.points]
earn_bp = 100
points_per_unit = 100

[programs.club.promotions]

[[programs.club.promotions.offers]]
id = "comeback"
targeted = true
bonus_points = 50

[[programs.club.promotions.offers]]
id = "everyone"
first_day = 0
last_day = 0
bonus_points = 1

[programs.club.tiers]
basis = "rank"
period_days = 30

[[programs.club.tiers.levels]]
name = "member"
top_pct = 100

[[programs.club.tiers.levels]]
name = "gold"
top_pct = 50
discount_pct = 5
""")
FIRST_DAY, TODAY, LAST_DAY = 20_401, 20_430, 20_440
NOW_S = time_of(TODAY) + 3600  # the ledger's clock: 02:00 UTC, after the grants' 01:00


@pytest.fixture
def books(dsn: str) -> Iterator[Books]:
    opened = open_books(dsn, lambda: NOW_S, PROGRAMS)
    yield opened
    opened.close()


def club(txn: dict[str, object]) -> dict[str, object]:
    return {**txn, "program": "club"} if txn["kind"] == "issue" else txn


def bought_in_period_680(books: Books) -> None:
    at = time_of(FIRST_DAY)
    books.post_batch(batch("b1", *[club(issue(f"T1-{n}", card, 0, time=at))
                                   for n, card in enumerate(("C1", "C2", "C3", "C4"), 1)],
                           purchase("T1-5", "C1", 0, 60, 6000, time=at + 60),
                           purchase("T1-6", "C2", 0, 20, 2000, time=at + 120),
                           purchase("T1-7", "C4", 0, 30, 3000, time=at + 180),
                           refund("T1-8", "T1-7", "C4", 0, 10, amount_minor=1000,
                                  time=at + 240)))


def grants_of(books: Books, card: str) -> dict[str, list[int]] | None:
    stored = books.read(lambda session, _now: engine_sql.read(session, [card]).get(card))
    assert stored is not None and stored.state is not None, stored
    return stored.state.get("grants")


def test_an_offer_is_granted_once_per_card_kept_in_its_state_and_in_the_feed(
        books: Books) -> None:
    bought_in_period_680(books)
    done = books.issue_offer("club", "comeback", "winter", 1, LAST_DAY, "tester",
                             cards=["C1", "C2", "C9"])
    assert (done["posted"], done["already"], done["declined"]) == (
        ["C1", "C2"], [], {"C9": "card_unknown"})
    assert grants_of(books, "C1") == {"comeback": [1, LAST_DAY]}
    assert grants_of(books, "C3") is None
    again = books.issue_offer("club", "comeback", "winter", 1, LAST_DAY, "tester",
                              cards=["C1", "C2", "C3"])
    assert (again["posted"], again["already"]) == (["C3"], ["C1", "C2"])
    changes = [change for change in read_feed(books, expected=12)[0]
               if change["kind"] == "grant"]
    assert [(change["card"], change["gateway_id"], change["amount_minor"])
            for change in changes] == [("C1", "DESK", 0), ("C2", "DESK", 0), ("C3", "DESK", 0)]
    assert changes[0]["card_op"] == '{"last_day":20440,"offer":"comeback","uses":1}'
    assert all(total == 0 for total in books.trial_balance().values())


@pytest.mark.parametrize(("offer", "uses", "last_day", "reason"), [
    ("everyone", 1, LAST_DAY, "offer_unknown"),  # not targeted
    ("nope", 1, LAST_DAY, "offer_unknown"),
    ("comeback", 0, LAST_DAY, "request_malformed"),
    ("comeback", 101, LAST_DAY, "request_malformed"),
    ("comeback", 1, TODAY - 1, "request_malformed"),  # its last day is past
])
def test_a_wrong_offer_issue_is_refused_and_grants_nothing(
        books: Books, offer: str, uses: int, last_day: int, reason: str) -> None:
    bought_in_period_680(books)
    with pytest.raises(BatchInvalid) as refused:
        books.issue_offer("club", offer, "w", uses, last_day, "tester", cards=["C1"])
    assert refused.value.reason == reason
    assert grants_of(books, "C1") is None


def test_the_report_counts_the_uses_the_ledgers_engine_took_and_the_response(
        books: Books) -> None:
    bought_in_period_680(books)
    books.issue_offer("club", "comeback", "winter", 1, LAST_DAY, "tester",
                      cards=["C1", "C2"])
    after = NOW_S + 600
    posted = books.post_batch(batch(
        "b2", purchase("T1-9", "C1", 0, 90, 4000, time=after),
        purchase("T1-10", "C1", 0, 10, 1000, time=after + 60),
        purchase("T1-11", "C2", 0, 25, 2500, time=after + 120, auth="offline")))
    assert posted.status == "posted"
    assert grants_of(books, "C1") is None  # the one use taken
    assert grants_of(books, "C2") == {"comeback": [1, LAST_DAY]}  # offline: kept
    report = books.offer_report("club", "comeback")
    assert {key: report[key] for key in (
        "granted_cards", "redeemed_cards", "uses", "use_revenue_minor",
        "window_revenue_minor", "response_bp")} == {
        "granted_cards": 2, "redeemed_cards": 1, "uses": 1, "use_revenue_minor": 4000,
        "window_revenue_minor": 7500, "response_bp": 5000}
    assert report["issues"] == [{"issue": "winter", "cards": 2, "uses": 1,
                                 "last_day": LAST_DAY}]


def test_ranking_posts_each_cards_level_once_and_the_tier_follows(books: Books) -> None:
    bought_in_period_680(books)
    done = books.rank_cards("club", None, "tester")
    assert (done["period"], done["first_day"], done["last_day"]) == (680, 20_400, 20_429)
    assert done["levels"] == {"member": 1, "gold": 3}
    assert done["posted"] == ["C1", "C2", "C3", "C4"]
    tiers = {card: books.read(lambda session, _now, card=card: engine_sql.read(
        session, [card])[card].state)["tier"] for card in ("C1", "C2", "C3", "C4")}
    assert tiers == {"C1": "gold", "C2": "gold", "C3": "member", "C4": "gold"}
    again = books.rank_cards("club", 680, "tester")
    assert (again["posted"], again["already"]) == ([], ["C1", "C2", "C3", "C4"])
    with pytest.raises(BatchInvalid) as refused:
        books.rank_cards("club", 681, "tester")
    assert refused.value.reason == "period_not_ended"
    assert all(total == 0 for total in books.trial_balance().values())


def test_an_offer_goes_to_one_card_of_each_customer_and_to_a_segment(
        books: Books, tmp_path: Path) -> None:
    """Customer A holds C1 (bought on day 20401) and C3 (only issued): A's card is C1, the
    one with the latest transaction (GRANT_ONE_CARD_PER_CUSTOMER); customer B holds C2; C4
    is nobody's. The top 30 % of the 3 buyers by revenue in 60 days is ceil(0.9) = 1: A
    (60.00). Lapsing regulars (1 purchase, none for 20 days; all bought 29 days ago): A, B
    and C4 itself."""
    bought_in_period_680(books)
    new_key_file(tmp_path / "customer.key")
    customers = Customers(books, load_key_file(tmp_path / "customer.key"))
    a = customers.create({"name": "A"}, "test")["customer_id"]
    b = customers.create({"name": "B"}, "test")["customer_id"]
    for customer_id, card in ((a, "C1"), (a, "C3"), (b, "C2")):
        customers.link(customer_id, card, "test")
    done = books.issue_offer("club", "comeback", "one", 2, LAST_DAY, "tester", customers=[a])
    assert done["posted"] == ["C1"]
    top = books.issue_offer("club", "comeback", "top", 1, LAST_DAY, "tester",
                            segment={"name": "top", "top_percent": 30, "window_days": 60})
    assert top["cards"] == ["C1"]
    lapsing = books.issue_offer("club", "comeback", "lapsing", 1, LAST_DAY, "tester",
                                segment={"name": "lapsing", "days": 20, "min_purchases": 1,
                                         "window_days": 60})
    assert lapsing["posted"] == ["C1", "C2", "C4"]
    assert grants_of(books, "C1") == {"comeback": [1, LAST_DAY]}  # GRANT_REPLACES
    with pytest.raises(BatchInvalid):
        books.issue_offer("club", "comeback", "bad", 1, LAST_DAY, "tester",
                          segment={"name": "top"})


def test_the_commands_issue_report_and_rank_through_the_ledgers_api(
        dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`tilltap offer issue|report` and `tilltap programs rank` against the ledger's HTTP API
    (an open ledger on loopback): what the books do above, and a person's mistakes in one
    line with exit 2."""
    server = serve(dsn, clock=lambda: NOW_S, programs=PROGRAMS)
    try:
        bought_in_period_680(server.books)
        url = ["--ledger-url", server.url]

        def run(*argv: str) -> tuple[int, dict[str, object] | str]:
            capsys.readouterr()
            status = main([*argv, *url])
            out, err = capsys.readouterr()
            return status, json.loads(out) if status == 0 else err

        status, issued = run("offer", "issue", "--program", "club", "--offer", "comeback",
                             "--issue", "dec", "--uses", "1", "--until", "2025-12-18",
                             "--card", "C1", "--card", "C2")
        assert status == 0 and isinstance(issued, dict), issued
        assert (issued["posted"], issued["last_day"]) == (["C1", "C2"], LAST_DAY)
        status, report = run("offer", "report", "--program", "club", "--offer", "comeback")
        assert status == 0 and isinstance(report, dict)
        assert (report["granted_cards"], report["uses"]) == (2, 0)
        status, ranked = run("programs", "rank", "--program", "club")
        assert status == 0 and isinstance(ranked, dict)
        assert (ranked["period"], ranked["levels"]) == (680, {"member": 1, "gold": 3})
        for argv, said in (
                (("offer", "issue", "--program", "club", "--offer", "everyone", "--issue", "x",
                  "--uses", "1", "--until", "2025-12-18", "--card", "C1"), "offer_unknown"),
                (("offer", "issue", "--program", "club", "--offer", "comeback", "--issue", "x",
                  "--uses", "1", "--until", "18.12.2025", "--card", "C1"), "YYYY-MM-DD"),
                (("offer", "issue", "--program", "club", "--offer", "comeback", "--issue", "x",
                  "--uses", "1", "--until", "2025-12-18", "--segment", "top"), "--top-percent"),
                (("offer", "issue", "--program", "club", "--offer", "comeback", "--issue", "x",
                  "--uses", "1", "--until", "2025-12-18"), "say whom"),
                (("programs", "rank", "--program", "club", "--period", "681"),
                 "period_not_ended")):
            status, err = run(*argv)
            assert status == 2 and isinstance(err, str) and said in err, (argv, err)
            assert len(err.strip().splitlines()) == 1, err
    finally:
        server.stop()
