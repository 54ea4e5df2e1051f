"""Enrolment at the counter at the ledger (POST /v1/enrolments, ledger/customers.py
`Customers.enrol`): a card joins the customer with the phone or e-mail, or a new customer is
made; who may enrol (ledger/auth.py `enrol_customer`), on SQLite and PostgreSQL, over HTTP.

The books hold C1 and C2 sold by merchant M1 (terminal S1, store gw1), C3 sold by M2
(terminal S2, store gw2) and C4 sold by M1.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.auth import dump_logins, new_login
from ledger.personal_crypto import load_key_file, new_key_file
from ledger.server import LedgerServer, serve
from tests.ledger.builders import batch, issue, posted_rows

PHONE, PHONE_E164 = "+351 912 345 678", "+351912345678"
EMAIL = "ana.silva@example.org"
OTHER_EMAIL = "bruno@example.org"
ENROL = "/v1/enrolments"


class Ledger:
    def __init__(self, server: LedgerServer, dsn: str, tokens: dict[str, str]) -> None:
        self.server, self.dsn, self.tokens = server, dsn, tokens

    def call(self, method: str, path: str, body: Any = None,
             login: str = "gw1") -> tuple[int, Any]:
        request = urllib.request.Request(
            self.server.url + path, method=method,
            data=None if body is None else json.dumps(body).encode())
        request.add_header("Authorization", f"Bearer {self.tokens[login]}")
        if body is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as answer:
                return answer.status, json.loads(answer.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())


def enrolment(card: str, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"card": card, "terminal": "S1", "merchant": "M1",
                            "marketing_consent": True}
    body.update(fields)
    return body


@pytest.fixture
def ledger(dsn: str, tmp_path: Path) -> Iterator[Ledger]:
    new_key_file(tmp_path / "customer.key")
    made = {"admin": new_login("admin", "admin"), "alice": new_login("alice", "reader"),
            "gw1": new_login("gw1", "gateway", gateway="gw1", terminals=("S1",),
                             merchants=("M1",))}
    logins = tmp_path / "logins.json"
    logins.write_text(dump_logins({name: login for name, (login, _) in made.items()}))
    server = serve(dsn, logins_file=logins,
                   customer_key=load_key_file(tmp_path / "customer.key"))
    sold = batch("gw1-1", issue("S1-1", "C1"), issue("S1-2", "C2"), issue("S1-3", "C4"))
    other = batch("gw2-1", issue("S2-1", "C3", terminal="S2", merchant="M2"))
    other["gateway_id"] = "gw2"
    for document in (sold, other):
        assert server.books.post_batch(document).status == "posted"
    yield Ledger(server, dsn, {name: token for name, (_, token) in made.items()})
    server.stop()


def test_a_counter_enrols_a_card_and_a_second_card_joins_by_phone(ledger: Ledger) -> None:
    status, first = ledger.call("POST", ENROL, enrolment("C1", phone=PHONE,
                                                          first_name="Ana"))
    assert status == 200, first
    assert (first["joined"], first["changed"], first["first_name"]) == (False, True, "Ana")
    customer_id = first["customer_id"]
    status, record = ledger.call("GET", f"/v1/customers/{customer_id}", login="admin")
    assert status == 200
    assert (record["name"], record["phone"], record["email"]) == ("Ana", PHONE_E164, None)
    assert record["marketing_consent"]["granted"] is True
    assert record["marketing_consent"]["source"] == "counter S1"
    assert [card["card"] for card in record["cards"]] == ["C1"]
    assert record["cards"][0]["linked_by"] == "gw1"

    # The same phone, written otherwise, with another card: it joins; the counter's other
    # values (a new e-mail, another first name) are not written to the customer.
    status, second = ledger.call("POST", ENROL, enrolment(
        "C2", phone="+351-912-345-678", email=OTHER_EMAIL, first_name="Zed",
        marketing_consent=False))
    assert status == 200, second
    assert (second["customer_id"], second["joined"], second["first_name"]) == (
        customer_id, True, "Ana")
    status, record = ledger.call("GET", f"/v1/customers/{customer_id}", login="admin")
    assert [card["card"] for card in record["cards"]] == ["C1", "C2"]
    assert (record["email"], record["name"]) == (None, "Ana")
    assert record["marketing_consent"]["granted"] is True
    # Again: nothing changes.
    status, again = ledger.call("POST", ENROL, enrolment("C2", phone=PHONE))
    assert status == 200 and (again["joined"], again["changed"]) == (True, False)
    assert posted_rows(ledger.dsn, "SELECT COUNT(*) FROM customers") == [(1,)]
    audit = ledger.call("GET", f"/v1/customers/{customer_id}/export", login="admin")[1]["audit"]
    actions = [row["action"] for row in audit]
    assert actions.count("link") == 2 and actions.count("create") == 1


def test_refusals_change_nothing(ledger: Ledger) -> None:
    status, first = ledger.call("POST", ENROL, enrolment("C1", phone=PHONE))
    assert status == 200
    assert ledger.call("POST", ENROL, enrolment("C4", email=OTHER_EMAIL))[0] == 200
    before = posted_rows(ledger.dsn, "SELECT COUNT(*) FROM customer_cards")
    cases = [
        (enrolment("C9", phone="+351 911 111 111"), 404, "card_unknown"),
        (enrolment("C1", phone="+351 911 111 111"), 409, "card_linked"),
        (enrolment("C2", phone=PHONE, email=OTHER_EMAIL), 409, "email_taken"),
        (enrolment("C2"), 400, "field_missing"),
        (enrolment("C2", phone="12"), 400, "phone_invalid"),
        (enrolment("C2", email="not-an-address"), 400, "email_invalid"),
        (enrolment("C2", phone=PHONE, marketing_consent="yes"), 400, "field_type"),
        (enrolment("C2", phone=PHONE, birthday="1980-01-01"), 400, "field_unknown"),
    ]
    for body, expected_status, reason in cases:
        status, answer = ledger.call("POST", ENROL, body)
        assert (status, answer["error"]) == (expected_status, reason), body
        assert PHONE_E164 not in answer["detail"] and "12" not in answer["detail"]
    assert posted_rows(ledger.dsn, "SELECT COUNT(*) FROM customer_cards") == before
    assert posted_rows(ledger.dsn, "SELECT COUNT(*) FROM customers") == [(2,)]


def test_a_gateway_enrols_at_its_own_counters_for_its_merchants_cards_only(
        ledger: Ledger) -> None:
    refused = [enrolment("C1", phone=PHONE, terminal="S2"),
               enrolment("C1", phone=PHONE, merchant="M2"),
               enrolment("C3", phone=PHONE),  # sold by M2
               {"card": "C1", "phone": PHONE, "marketing_consent": True}]
    for body in refused:
        status, answer = ledger.call("POST", ENROL, body)
        assert (status, answer["error"]) == (403, "not_permitted"), body
    assert posted_rows(ledger.dsn, "SELECT COUNT(*) FROM customers") == [(0,)]
    # A reader may not enrol; an admin may, for any merchant's card.
    assert ledger.call("POST", ENROL, enrolment("C1", phone=PHONE), login="alice")[0] == 403
    status, answer = ledger.call("POST", ENROL, enrolment("C3", phone=PHONE, terminal="S2",
                                                          merchant="M2"), login="admin")
    assert status == 200 and answer["joined"] is False


def test_a_gateway_login_reads_changes_and_exports_no_customer(ledger: Ledger) -> None:
    status, answer = ledger.call("POST", ENROL, enrolment("C1", phone=PHONE, email=EMAIL))
    assert status == 200
    customer_id = answer["customer_id"]
    for method, path, body in (
            ("GET", f"/v1/customers/{customer_id}", None),
            ("GET", f"/v1/customers/{customer_id}/export", None),
            ("GET", f"/v1/customers/{customer_id}/history", None),
            ("PATCH", f"/v1/customers/{customer_id}", {"name": "X"}),
            ("POST", "/v1/customers", {"name": "X"}),
            ("PUT", f"/v1/customers/{customer_id}/cards/C2", None),
            ("DELETE", f"/v1/customers/{customer_id}", None)):
        status, refused = ledger.call(method, path, body)
        assert (status, refused["error"]) == (403, "not_permitted"), (method, path)


def test_no_log_line_of_an_enrolment_holds_its_values(
        ledger: Ledger, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        ledger.call("POST", ENROL, enrolment("C1", phone=PHONE, email=EMAIL,
                                             first_name="Ana"))
        ledger.call("POST", ENROL, enrolment("C2", phone=PHONE, email=OTHER_EMAIL))
        ledger.call("POST", ENROL, enrolment("C9", phone=PHONE))
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert "enrolled by gw1: card C1 at counter S1" in text  # the audit line is there
    for value in (PHONE_E164, "912345678", EMAIL, OTHER_EMAIL, "Ana"):
        assert value not in text
