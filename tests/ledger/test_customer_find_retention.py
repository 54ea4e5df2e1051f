"""Finding a customer by phone or e-mail, erasing inactive customers (retention), and the
first name a store's gateway is told for a linked card (ledger/customers.py), through the
ledger's HTTP API with its logins, on SQLite and on PostgreSQL. The ledger's clock is the
test's: days pass by setting it, never by sleeping."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.auth import dump_logins, new_login
from ledger.customers import Customers
from ledger.limits import CUSTOMER_INACTIVE_DAYS_MIN
from ledger.personal_crypto import CustomerKey
from ledger.reports import DAY_S
from ledger.server import serve
from tests.ledger.builders import at, batch, issue, purchase, snapshot
from tests.ledger.test_customers import Ledger, key  # noqa: F401 - the key fixture

NAME = "Ysolde Marchbanks"
PHONE, PHONE_OTHERWISE, PHONE_E164 = "+44 20 7946 0321", "+44 (20) 7946-0321", "+442079460321"
EMAIL = "ysolde@example.org"
DAY_0 = at("2025-01-01")


class Clock:
    """The ledger's clock, set by the test."""

    def __init__(self, now_s: int) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return float(self.now_s)

    def day(self, days: int) -> None:
        self.now_s = DAY_0 + days * DAY_S


@pytest.fixture
def clock() -> Clock:
    return Clock(DAY_0)


@pytest.fixture
def ledger(dsn: str, tmp_path: Path, key: CustomerKey,  # noqa: F811
           clock: Clock) -> Iterator[Ledger]:
    """The ledger on the test's clock with the customer key, an admin, a reader and store
    gw1's gateway login; cards C1, C2 and C3 issued at gw1 on day 0."""
    made = {"admin": new_login("admin", "admin"), "alice": new_login("alice", "reader"),
            "gw1": new_login("gw1", "gateway", gateway="gw1", terminals=("T1",),
                             merchants=("M1",))}
    logins = tmp_path / "logins.json"
    logins.write_text(dump_logins({name: login for name, (login, _) in made.items()}))
    server = serve(dsn, logins_file=logins, customer_key=key, clock=clock)
    posted = server.books.post_batch(batch("gw1-1", *(
        issue(f"T1-{n}", card, 2000, time=DAY_0) for n, card in enumerate(("C1", "C2", "C3"),
                                                                         start=1))))
    assert posted.status == "posted"
    yield Ledger(server, dsn, {name: token for name, (_, token) in made.items()})
    server.stop()


def _actions(ledger: Ledger, customer_id: str) -> list[tuple[str, str, str]]:
    return [(entry["action"], entry["login"], entry["detail"])
            for entry in Customers(ledger.server.books, None).audit_trail(customer_id)]


def test_a_customer_is_found_by_phone_or_email_as_keyed(
        ledger: Ledger, caplog: pytest.LogCaptureFixture) -> None:
    """Found by the phone written otherwise and the e-mail in upper case (normalised as at
    creation, matched by digest), audited on the customer; nobody's number is 404
    customer_unknown, a bad number 400 phone_invalid; a reader may not; the value is in no
    log line."""
    caplog.set_level(logging.DEBUG)
    customer_id = ledger.create({"name": NAME, "phone": PHONE, "email": EMAIL})
    for body in ({"phone": PHONE_OTHERWISE}, {"email": EMAIL.upper()}):
        assert ledger.call("POST", "/v1/customers/find", body) == (
            200, {"customer_id": customer_id})
    assert _actions(ledger, customer_id)[-2:] == [("find", "admin", "by phone"),
                                                  ("find", "admin", "by email")]
    refusals = [({"phone": "+44 20 7946 0999"}, 404, "customer_unknown"),
                ({"email": "nobody@example.org"}, 404, "customer_unknown"),
                ({"phone": "020 7946 0321"}, 400, "phone_invalid"),
                ({"email": "ysolde@localhost"}, 400, "email_invalid"),
                ({"phone": PHONE, "email": EMAIL}, 400, "request_malformed"),
                ({"name": NAME}, 400, "request_malformed"),
                ({"phone": 442079460321}, 400, "field_type")]
    for body, status, reason in refusals:
        answer = ledger.call("POST", "/v1/customers/find", body)
        assert answer[0] == status and answer[1]["error"] == reason, (body, answer)
    status, answer = ledger.call("POST", "/v1/customers/find", {"phone": PHONE}, login="alice")
    assert (status, answer["error"]) == (403, "not_permitted")
    status, answer = ledger.call("POST", "/v1/customers/find", {"phone": PHONE}, login="gw1")
    assert (status, answer["error"]) == (403, "not_permitted")
    assert ledger.call("GET", "/v1/customers/find")[0] == 405
    logged = "\n".join(record.getMessage() + repr(record.__dict__)
                       for record in caplog.records)
    assert f"AUDIT customer {customer_id} found by admin: by phone" in logged
    # Parts of the phone as written, never bare digits: a record's times are digits too.
    for value in (PHONE_E164, "7946 0", "7946-0", EMAIL, "Ysolde"):
        assert value not in logged, value


def test_retention_erases_only_customers_inactive_for_the_days_given(
        ledger: Ledger, clock: Clock) -> None:
    """On day 400, with 365 days: a customer whose card was last used on day 0 and one with
    no card are erased (a dry run first lists them and changes nothing); one whose card was
    used on day 100, one changed on day 50 and one already erased are not. Each erase is
    audited "retention", the books are untouched, and a second run finds nobody."""
    idle = ledger.create({"name": NAME, "phone": PHONE})
    cardless = ledger.create({"email": EMAIL})
    regular = ledger.create({"name": "Regular"})
    changed = ledger.create({"name": "Changed"})
    gone = ledger.create({"name": "Gone"})
    for customer_id, card in ((idle, "C1"), (regular, "C2"), (changed, "C3")):
        assert ledger.call("PUT", f"/v1/customers/{customer_id}/cards/{card}")[0] == 200
    assert ledger.call("DELETE", f"/v1/customers/{gone}")[0] == 200
    clock.day(50)
    assert ledger.call("PATCH", f"/v1/customers/{changed}", {"notes": "moved"})[0] == 200
    clock.day(100)
    used = batch("gw1-2", purchase("T1-4", "C2", 500, points=0, time=clock.now_s))
    assert ledger.server.books.post_batch(used).status == "posted"
    clock.day(400)
    books_before = snapshot(ledger.server.books)

    status, listed = ledger.call("POST", "/v1/customers/retention",
                                 {"inactive_days": 365, "dry_run": True})
    assert status == 200, listed
    assert (listed["dry_run"], listed["erased"], listed["more"]) == (True, 0, False)
    assert listed["before"] == DAY_0 + 35 * DAY_S
    assert {row["customer_id"]: row["last_activity"] for row in listed["customers"]} == {
        idle: DAY_0, cardless: DAY_0}
    assert ledger.call("GET", f"/v1/customers/{idle}")[1]["name"] == NAME

    status, done = ledger.call("POST", "/v1/customers/retention",
                               {"inactive_days": 365, "dry_run": False})
    assert status == 200 and done["erased"] == 2
    assert sorted(row["customer_id"] for row in done["customers"]) == sorted([idle, cardless])
    assert snapshot(ledger.server.books) == books_before
    for customer_id in (idle, cardless):
        record = ledger.call("GET", f"/v1/customers/{customer_id}")[1]
        assert record["erased_at"] == clock.now_s and record["name"] is None
    assert _actions(ledger, idle)[-1] == (
        "erase", "admin", "retention: inactive 365 days; fields name, phone")
    assert [c["card"] for c in ledger.call("GET", f"/v1/customers/{idle}")[1]["cards"]] == [
        "C1"]
    for customer_id in (regular, changed):
        assert ledger.call("GET", f"/v1/customers/{customer_id}")[1]["erased_at"] is None
    # The phone is free again, as after any erase.
    assert ledger.call("POST", "/v1/customers/find", {"phone": PHONE})[0] == 404
    again = ledger.call("POST", "/v1/customers/retention",
                        {"inactive_days": 365, "dry_run": False})[1]
    assert (again["customers"], again["erased"]) == ([], 0)


def test_retention_refuses_a_short_period_and_a_reader(ledger: Ledger) -> None:
    """Fewer than CUSTOMER_INACTIVE_DAYS_MIN days is field_invalid; a missing key is
    request_malformed; a reader is not_permitted; nothing is erased."""
    customer_id = ledger.create({"name": NAME})
    refusals: list[tuple[Any, str, str]] = [
        ({"inactive_days": CUSTOMER_INACTIVE_DAYS_MIN - 1, "dry_run": False}, "admin",
         "field_invalid"),
        ({"inactive_days": "400", "dry_run": False}, "admin", "field_invalid"),
        ({"inactive_days": 400, "dry_run": "no"}, "admin", "field_type"),
        ({"inactive_days": 400}, "admin", "request_malformed"),
        ({"inactive_days": 400, "dry_run": False}, "alice", "not_permitted")]
    for body, login, reason in refusals:
        status, answer = ledger.call("POST", "/v1/customers/retention", body, login=login)
        assert status in (400, 403) and answer["error"] == reason, (body, answer)
    assert ledger.call("GET", f"/v1/customers/{customer_id}")[1]["erased_at"] is None


def test_a_gateway_is_told_the_first_name_of_a_linked_cards_customer(ledger: Ledger) -> None:
    """GET /v1/cards/<card> as a gateway carries `greeting`, the first word of the name,
    audited "greet"; not for a reader, a card of nobody, a customer without a name, nor
    once the customer is erased."""
    named = ledger.create({"name": NAME, "phone": PHONE})
    nameless = ledger.create({"email": EMAIL})
    for customer_id, card in ((named, "C1"), (nameless, "C2")):
        assert ledger.call("PUT", f"/v1/customers/{customer_id}/cards/{card}")[0] == 200
    status, answer = ledger.call("GET", "/v1/cards/C1", login="gw1")
    assert status == 200 and answer["greeting"] == "Ysolde"
    assert _actions(ledger, named)[-1] == ("greet", "gw1", "card C1")
    assert "greeting" not in ledger.call("GET", "/v1/cards/C1", login="alice")[1]
    for card in ("C2", "C3"):
        status, answer = ledger.call("GET", f"/v1/cards/{card}", login="gw1")
        assert status == 200 and "greeting" not in answer, answer
    assert ledger.call("DELETE", f"/v1/customers/{named}")[0] == 200
    assert "greeting" not in ledger.call("GET", "/v1/cards/C1", login="gw1")[1]


def test_a_gateway_is_told_a_linked_customers_birthday_month_and_day_only(
        ledger: Ledger) -> None:
    """`birthday` "MM-DD" (never the year) with the card's answer, for a gateway only,
    audited with the greeting; a customer without a name is not greeted but has it."""
    customer_id = ledger.create({"phone": PHONE, "birthday": "1988-02-29"})
    assert ledger.call("PUT", f"/v1/customers/{customer_id}/cards/C1")[0] == 200
    status, answer = ledger.call("GET", "/v1/cards/C1", login="gw1")
    assert status == 200 and answer["birthday"] == "02-29" and "greeting" not in answer
    assert "1988" not in json.dumps(answer)
    assert _actions(ledger, customer_id)[-1] == ("greet", "gw1", "card C1, birthday")
    assert "birthday" not in ledger.call("GET", "/v1/cards/C1", login="alice")[1]
