"""Customer reports (ledger/customer_reports.py) against hand-computed figures, on SQLite and
PostgreSQL, from the books, over HTTP with the customer key and through `tilltap report`.

The history is `builders.report_history` (see tests/ledger/test_ledger_reports.py) with its
cards linked to customers (`enrol`):

    customer  cards  consent                 purchases (EUR, amount_minor)
    Ann       A, B   granted                 A 1000 (11-10), 3000 (11-20), 2000 (11-28),
                                             500 (12-01); B 4000 (10-15), 500 (11-29)
    Ben       C      refused                 C 1500 (11-05), 1500 (11-06), 500 refunded
    Cy        E      granted, no phone       E 1000 on 11-15, 11-16 twice, 11-28
    Dee       F      none held               (F never buys)
    (nobody)  D                              D 800 (10-20)
    (nobody)  K                              K 9900 SEK (11-30)

As of 2025-11-30 over 90 days: Ann 5 purchases 10500 (last 11-29), Cy 4 / 4000 (11-28),
Ben 2 / 2500 (11-06), D 1 / 800 (10-20); EUR revenue 17800. K alone in SEK.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ledger import BatchInvalid, Books, open_books
from ledger.auth import dump_logins, new_login
from ledger.customer_reports import LAPSING_COLUMNS, class_sizes, largest_remainder_bp
from ledger.customers import Customers
from ledger.personal_crypto import CustomerKey, load_key_file, new_key_file
from ledger.server import serve
from tests.ledger.builders import at, report_history
from tools import report as report_cli

AS_OF = "2025-11-30"
CONSENT_DAY = "2025-06-01"
PEOPLE: dict[str, dict[str, Any]] = {
    "Ann": {"name": "Ann Example", "phone": "+441632960001", "email": "ann@example.org",
            "language": "en", "marketing_consent": {"granted": True, "date": CONSENT_DAY,
                                                    "source": "counter"}},
    "Ben": {"name": "Ben Example", "phone": "+441632960002", "email": "ben@example.org",
            "marketing_consent": {"granted": False, "date": CONSENT_DAY, "source": "web"}},
    "Cy": {"name": "Cy Example", "email": "cy@example.org", "language": "de",
           "marketing_consent": {"granted": True, "date": CONSENT_DAY, "source": "web"}},
    "Dee": {"name": "Dee Example", "phone": "+441632960004"},
}
CARDS = {"Ann": ("A", "B"), "Ben": ("C",), "Cy": ("E",), "Dee": ("F",)}
SECRETS = ("Example", "+4416329600", "@example.org")
"""Parts of every personal value above: never in a log line."""


def enrol(books: Books, key: CustomerKey) -> dict[str, str]:
    """The customers of the module's table with their cards linked: {person: customer id}."""
    customers = Customers(books, key)
    ids = {}
    for person, fields in PEOPLE.items():
        ids[person] = customers.create(fields, "test")["customer_id"]
        for card in CARDS[person]:
            customers.link(ids[person], card, "test")
    return ids


@pytest.fixture
def key(tmp_path: Path) -> CustomerKey:
    new_key_file(tmp_path / "customer.key")
    return load_key_file(tmp_path / "customer.key")


@pytest.fixture
def books(dsn: str) -> Iterator[Books]:
    """Books holding the report history, with the clock on the evening of 2025-11-30."""
    opened = open_books(dsn, clock=lambda: at(AS_OF, hour=23))
    opened.post_batch(report_history())
    yield opened
    opened.close()


@pytest.fixture
def ids(books: Books, key: CustomerKey) -> dict[str, str]:
    return enrol(books, key)


def report(books: Books, name: str, **parameters: str) -> Any:
    return books.report(name, {"as_of": AS_OF, **parameters})


# -- value classes ----------------------------------------------------------------------------


def test_value_classes_rank_customers_with_their_cards_together(
        books: Books, ids: dict[str, str]) -> None:
    """Four EUR customers: the top 20 % is ceil(0.8) = 1 (Ann), the next 30 % brings the
    count to ceil(2.0) = 2 (Cy), the rest is Ben and the unlinked card D. Class shares of
    17800 by largest remainder: floors 5898 (rem 15600), 2247 (rem 3400), 1853 (rem 16600),
    the 2 missing basis points to the rest and the top. A customer's share is rounded half
    up (2500 / 17800 = 1404.49 bp -> 1404). K alone in SEK is the whole top class."""
    result = report(books, "customer_value")
    assert result.query.parameters == {"top_percent": 20, "next_percent": 30}
    assert [(r["currency"], r["class"], r["rank"], r["customer_id"], r["cards"],
             r["purchases"], r["revenue_minor"], r["share_bp"]) for r in result.rows] == [
        ("EUR", "top", 1, ids["Ann"], ["A", "B"], 5, 10_500, 5899),
        ("EUR", "next", 2, ids["Cy"], ["E"], 4, 4000, 2247),
        ("EUR", "rest", 3, ids["Ben"], ["C"], 2, 2500, 1404),
        ("EUR", "rest", 4, None, ["D"], 1, 800, 449),
        ("SEK", "top", 1, None, ["K"], 1, 9900, 10_000),
    ]
    assert result.summary == {
        "EUR": {"customers": 4, "revenue_minor": 17_800, "classes": [
            {"class": "top", "customers": 1, "revenue_minor": 10_500, "share_bp": 5899},
            {"class": "next", "customers": 1, "revenue_minor": 4000, "share_bp": 2247},
            {"class": "rest", "customers": 2, "revenue_minor": 3300, "share_bp": 1854}]},
        "SEK": {"customers": 1, "revenue_minor": 9900, "classes": [
            {"class": "top", "customers": 1, "revenue_minor": 9900, "share_bp": 10_000},
            {"class": "next", "customers": 0, "revenue_minor": 0, "share_bp": 0},
            {"class": "rest", "customers": 0, "revenue_minor": 0, "share_bp": 0}]},
    }


def test_value_classes_take_their_sizes_and_window_from_the_parameters(
        books: Books, ids: dict[str, str]) -> None:
    """50/25 over 30 days: B's purchase of 10-15 and D's of 10-20 fall out, so three EUR
    customers (Ann 4 / 6500, Cy 4000, Ben 2500; 13000): top ceil(1.5) = 2, next ceil(2.25)
    - 2 = 1. Shares: 10500 -> 8076.92 and 2500 -> 1923.08: floors 8076 and 1923, the one
    missing basis point to the larger remainder (the top)."""
    result = report(books, "customer_value", window_days="30", top_percent="50",
                    next_percent="25")
    eur = result.summary["EUR"]
    assert [(c["class"], c["customers"], c["revenue_minor"], c["share_bp"])
            for c in eur["classes"]] == [("top", 2, 10_500, 8077), ("next", 1, 2500, 1923),
                                         ("rest", 0, 0, 0)]
    assert [(r["customer_id"], r["purchases"], r["revenue_minor"]) for r in result.rows
            if r["currency"] == "EUR"] == [(ids["Ann"], 4, 6500), (ids["Cy"], 4, 4000),
                                           (ids["Ben"], 2, 2500)]


def test_unlinked_cards_are_each_a_customer_of_their_own(books: Books) -> None:
    """With no customer at all, the classes are the cards: A 6000, B 4500, E 4000, C 2500,
    D 800 over 90 days; top ceil(1.0) = 1, next ceil(2.5) - 1 = 2."""
    result = report(books, "customer_value")
    assert [(r["class"], r["cards"]) for r in result.rows if r["currency"] == "EUR"] == [
        ("top", ["A"]), ("next", ["B"]), ("next", ["E"]), ("rest", ["C"]), ("rest", ["D"])]
    assert all(r["customer_id"] is None for r in result.rows)
    assert result.summary["EUR"]["revenue_minor"] == 17_800


def test_class_shares_add_up_to_exactly_one_hundred_percent() -> None:
    """Thirds: each 3333.33 bp; rounded alone they would add up to 9999, so the largest
    remainder rule gives the missing one to the first (ties go to the higher class)."""
    assert largest_remainder_bp([1, 1, 1], 3) == [3334, 3333, 3333]
    assert largest_remainder_bp([1, 2, 3], 6) == [1667, 3333, 5000]
    assert largest_remainder_bp([5, 0, 0], 0) == [0, 0, 0]
    assert sum(largest_remainder_bp([7, 11, 13], 31)) == 10_000
    assert class_sizes(7, 20, 30) == (2, 2, 3)  # ceil 1.4 = 2, ceil 3.5 = 4
    assert class_sizes(0, 20, 30) == (0, 0, 0)
    assert class_sizes(10, 20, 80) == (2, 8, 0)


@pytest.mark.parametrize(("parameters", "words"), [
    ({"top_percent": "80", "next_percent": "30"}, "at most 100"),
    ({"top_percent": "0"}, "top_percent"),
    ({"next_percent": "101"}, "next_percent"),
    ({"months": "3"}, "takes no"),
])
def test_bad_class_parameters_are_refused(books: Books, parameters: dict[str, str],
                                          words: str) -> None:
    with pytest.raises(BatchInvalid) as refused:
        books.report("customer_value", parameters)
    assert refused.value.reason == "parameter_invalid" and words in refused.value.detail


# -- lapsing ----------------------------------------------------------------------------------


def lapsing_rows(result: Any) -> list[tuple[Any, ...]]:
    return [tuple(row[column] for column in LAPSING_COLUMNS) for row in result.rows]


def test_lapsing_customers_from_the_books_alone_carry_no_contacts(
        books: Books, ids: dict[str, str]) -> None:
    """Once in 90 days and away 2 days or more: Cy (4, last 11-28), Ben (2, 11-06) and the
    card D (1, 10-20), biggest spender first. Ann is not lapsed although A's last purchase
    was 2 days ago: her card B bought the day before."""
    result = report(books, "customer_lapsing", days="2", min_purchases="1")
    assert lapsing_rows(result) == [
        ("EUR", ids["Cy"], ["E"], 4, 4000, "2025-11-28", 2, None, None, None, None, None),
        ("EUR", ids["Ben"], ["C"], 2, 2500, "2025-11-06", 24, None, None, None, None, None),
        ("EUR", None, ["D"], 1, 800, "2025-10-20", 41, None, None, None, None, None),
    ]
    assert result.summary == {"customers": 3, "contacts": "not_read", "contacts_shown": 0}
    card_level = {row["card"] for row in report(books, "lapsing", days="2", min_purchases="1",
                                                window_days="90").rows}
    assert "A" in card_level  # the card report, by card, does list A


def test_lapsing_contacts_only_where_consent_is_granted_and_every_read_audited(
        books: Books, key: CustomerKey, ids: dict[str, str],
        caplog: pytest.LogCaptureFixture) -> None:
    """Cy consented: name, e-mail and language (no phone held); Ben refused: nothing but his
    refusal; D is nobody's. Cy and Ben each get a "report" line in their audit trail, Ann
    (not listed) none; no log line holds a personal value."""
    customers = Customers(books, key)
    caplog.set_level(logging.DEBUG)
    result = customers.report("customer_lapsing", {"as_of": AS_OF, "days": "2",
                                                   "min_purchases": "1"}, "mia", True)
    assert lapsing_rows(result) == [
        ("EUR", ids["Cy"], ["E"], 4, 4000, "2025-11-28", 2, True, "Cy Example", None,
         "cy@example.org", "de"),
        ("EUR", ids["Ben"], ["C"], 2, 2500, "2025-11-06", 24, False, None, None, None,
         None),
        ("EUR", None, ["D"], 1, 800, "2025-10-20", 41, None, None, None, None, None),
    ]
    assert result.summary == {"customers": 3, "contacts": "shown", "contacts_shown": 1}
    trails = {person: [(e["login"], e["action"], e["detail"])
                       for e in customers.audit_trail(ids[person]) if e["action"] == "report"]
              for person in ("Ann", "Ben", "Cy")}
    assert trails == {"Ann": [],
                      "Ben": [("mia", "report", "customer_lapsing: consent only")],
                      "Cy": [("mia", "report",
                              "customer_lapsing: fields email, language, name")]}
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "AUDIT customer report customer_lapsing by mia" in logged
    assert not any(secret in logged for secret in SECRETS)


def test_lapsing_without_permission_key_or_personal_data_shows_no_contacts(
        books: Books, key: CustomerKey, ids: dict[str, str]) -> None:
    """A caller who may not read customers, a ledger without the key: no contact, nothing
    audited. An erased customer stays listed by its id, without contacts."""
    parameters = {"as_of": AS_OF, "days": "2", "min_purchases": "1"}
    keyed = Customers(books, key)
    for customers, contacts, said in ((keyed, False, "not_permitted"),
                                      (Customers(books, None), True, "customer_key_missing")):
        result = customers.report("customer_lapsing", parameters, "someone", contacts)
        assert result.summary["contacts"] == said
        assert all(row[field] is None for row in result.rows
                   for field in ("marketing_consent", "name", "phone", "email", "language"))
    assert not any(e["action"] == "report" for e in keyed.audit_trail(ids["Cy"]))
    keyed.erase(ids["Cy"], "test")
    result = keyed.report("customer_lapsing", parameters, "mia", True)
    [cy] = [row for row in result.rows if row["customer_id"] == ids["Cy"]]
    assert (cy["marketing_consent"], cy["name"], cy["email"]) == (None, None, None)
    assert result.summary["contacts_shown"] == 0


# -- retention --------------------------------------------------------------------------------

RETENTION = "cohort month months_after customers active retention_bp"


def retention_rows(result: Any) -> list[tuple[Any, ...]]:
    return [tuple(row[column] for column in RETENTION.split()) for row in result.rows]


def test_retention_counts_each_cohort_and_who_bought_again_each_month(
        books: Books, ids: dict[str, str]) -> None:
    """First purchases: Ann (B, 10-15) and D (10-20) in October; Ben, Cy and K in November.
    Of October's two, Ann bought again in November (A, B) and December (A on 12-01)."""
    assert retention_rows(report(books, "customer_retention")) == [
        ("2025-10", "2025-10", 0, 2, 2, 10_000),
        ("2025-10", "2025-11", 1, 2, 1, 5000),
        ("2025-11", "2025-11", 0, 3, 3, 10_000),
    ]
    december = books.report("customer_retention", {"as_of": "2025-12-31", "months": "2"})
    assert retention_rows(december) == [
        ("2025-11", "2025-11", 0, 3, 3, 10_000),
        ("2025-11", "2025-12", 1, 3, 0, 0),
    ]
    assert december.summary == {"cohorts": 1, "customers": 3}
    everyone = books.report("customer_retention", {"as_of": "2025-12-31"})
    assert ("2025-10", "2025-12", 2, 2, 1, 5000) in retention_rows(everyone)


def test_retention_by_card_when_nobody_is_linked(books: Books) -> None:
    """Unlinked, A (first purchase 11-10) is a November customer and B an October one, so
    October's cohort B, D: only B bought again in November."""
    assert retention_rows(report(books, "customer_retention")) == [
        ("2025-10", "2025-10", 0, 2, 2, 10_000),
        ("2025-10", "2025-11", 1, 2, 1, 5000),
        ("2025-11", "2025-11", 0, 4, 4, 10_000),
    ]


# -- over HTTP and from the command line ------------------------------------------------------


@dataclass
class Served:
    url: str
    tokens: dict[str, Path]


@pytest.fixture
def served(dsn: str, tmp_path: Path, key: CustomerKey) -> Iterator[tuple[Served, dict[str, str]]]:
    made = {name: new_login(name, role) for name, role in (("root", "admin"),
                                                            ("alice", "reader"))}
    logins = tmp_path / "logins.json"
    logins.write_text(dump_logins({name: login for name, (login, _) in made.items()}))
    server = serve(dsn, logins_file=logins, customer_key=key)
    server.books.post_batch(report_history())
    people = enrol(server.books, key)
    tokens = {}
    for name, (_, token) in made.items():
        tokens[name] = tmp_path / f"{name}.token"
        tokens[name].write_text(token + "\n")
        tokens[name].chmod(0o600)
    yield Served(server.url, tokens), people
    server.stop()


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    parser = argparse.ArgumentParser()
    report_cli.add_arguments(parser)
    status = report_cli.run(parser.parse_args(list(args)), out, err)
    return status, out.getvalue(), err.getvalue()


def test_reports_over_http_and_the_cli_give_the_books_figures(
        served: tuple[Served, dict[str, str]], dsn: str) -> None:
    """GET /v1/reports/customer_* answers what the books compute; an admin (who may read
    customers) gets Cy's contact, a reader the same rows without it; `tilltap report` prints
    CSV and JSON, from the URL and from the database alike (contacts from the URL only)."""
    server, people = served
    lapsing = ("customer_lapsing", "--as-of", AS_OF, "--days", "2", "--min-purchases", "1")
    status, text, err = cli(*lapsing, "--ledger-url", server.url, "--ledger-token-file",
                            str(server.tokens["root"]), "--format", "json")
    assert status == 0, err
    document = json.loads(text)
    assert document["summary"]["contacts"] == "shown"
    assert [(r["customer_id"], r["email"]) for r in document["rows"]] == [
        (people["Cy"], "cy@example.org"), (people["Ben"], None), (None, None)]
    status, text, err = cli(*lapsing, "--ledger-url", server.url, "--ledger-token-file",
                            str(server.tokens["alice"]))
    assert status == 0, err
    assert text.splitlines() == [
        ",".join(LAPSING_COLUMNS),
        f"EUR,{people['Cy']},E,4,4000,2025-11-28,2,,,,,",
        f"EUR,{people['Ben']},C,2,2500,2025-11-06,24,,,,,",
        "EUR,,D,1,800,2025-10-20,41,,,,,"]
    for name in ("customer_value", "customer_retention"):
        answers = []
        for source in (("--ledger-url", server.url, "--ledger-token-file",
                        str(server.tokens["alice"])), ("--ledger-dsn", dsn)):
            status, text, err = cli(name, "--as-of", AS_OF, "--format", "json", *source)
            assert status == 0, err
            answers.append(json.loads(text))
        assert answers[0] == answers[1] and answers[0]["rows"]
    status, text, _ = cli("customer_value", "--as-of", AS_OF, "--ledger-dsn", dsn,
                          "--top-percent", "50", "--next-percent", "50")
    assert status == 0
    assert text.splitlines()[1] == f"EUR,top,1,{people['Ann']},A B,5,10500,5899"
    status, _, err = cli("customer_value", "--ledger-dsn", dsn, "--top-percent", "99",
                         "--next-percent", "2")
    assert status == 2 and "at most 100" in err
