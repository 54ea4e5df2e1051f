"""Customers at the ledger (ledger/customers.py): records sealed at rest, cards linked to
them, their history across stores, export and erasure, on SQLite and on PostgreSQL, through
the ledger's HTTP API with its logins.

The books hold card C1 issued at store gw1 (50.00), a sale of it at store gw2 (12.00, 12
points) and one there that redeemed 10 points for 1.00 off 6.00 (5.00 from the card, 5
points earned: the program engine's legs), C2 issued at gw1 (20.00) with 5.00 of it
expired later, and C3 nobody's.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from ledger.auth import dump_logins, new_login
from ledger.customers import normalise_email, normalise_phone, parse_date
from ledger.db import open_database
from ledger.errors import BatchInvalid
from ledger.personal_crypto import (
    CustomerKey,
    KeyFileInvalid,
    KeyMismatch,
    load_key_file,
    new_key_file,
)
from ledger.schema import (
    CUSTOMER_AUDIT_COLUMNS,
    CUSTOMER_CARD_COLUMNS,
    CUSTOMER_COLUMNS,
    CUSTOMER_FIELD_COLUMNS,
    CUSTOMER_LOOKUP_COLUMNS,
    table_columns,
)
from ledger.server import LedgerServer, ServerRefused, serve
from tests.ledger.builders import at, batch, expire, issue, posted_rows, purchase, snapshot

NAME = "Zelda Quackenbush"
PHONE = "+44 20 7946 0958"
PHONE_E164 = "+442079460958"
EMAIL = "Zelda.Q@Example.ORG"
EMAIL_NORMALISED = "zelda.q@example.org"
NOTES = "prefers oat milk"
PERSONAL = (NAME, PHONE_E164, EMAIL_NORMALISED, NOTES, "1984-02-29")
"""What must never be readable at rest nor appear in a log line."""
CUSTOMER_TABLES = ("customers", "customer_fields", "customer_lookups", "customer_cards",
                   "customer_audit")
FULL = {"name": NAME, "phone": PHONE, "email": EMAIL, "birthday": "1984-02-29",
        "language": "en-GB", "notes": NOTES,
        "marketing_consent": {"granted": True, "date": "2025-06-01", "source": "counter"}}


REDEEM_LEGS = [["card_value", "EUR", 500, "spend"], ["merchant_settlement", "EUR", -500, "spend"],
               ["card_points", "PTS", 10, "redeem"], ["promotion_expense", "PTS", -10, "redeem"],
               ["promotion_expense", "EUR", 100, "redeem"],
               ["merchant_settlement", "EUR", -100, "redeem"],
               ["promotion_expense", "PTS", 5, "earn"], ["card_points", "PTS", -5, "earn"]]


@dataclass
class Ledger:
    server: LedgerServer
    dsn: str
    tokens: dict[str, str]

    def call(self, method: str, path: str, body: Any = None,
             login: str = "admin") -> tuple[int, Any]:
        """One request as `login`: (status, decoded answer)."""
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

    def create(self, body: dict[str, Any]) -> str:
        status, answer = self.call("POST", "/v1/customers", body)
        assert status == 201, answer
        return str(answer["customer_id"])


def _books_history() -> list[dict[str, Any]]:
    first = batch("gw1-1", issue("S1-1", "C1", 5000, time=at("2025-11-01")),
                  issue("S1-2", "C2", 2000, time=at("2025-11-02")),
                  issue("S1-3", "C3", 1000, time=at("2025-11-02")))
    second = batch("gw2-1", purchase("S2-1", "C1", 1200, points=12, time=at("2025-11-03"),
                                     terminal="S2", merchant="M2"),
                   expire("S2-2", "C2", card_value_minor=500, time=at("2025-11-04"),
                          terminal="S2", merchant="M2"),
                   purchase("S2-3", "C1", 500, points=5, amount_minor=600, time=at("2025-11-05"),
                            terminal="S2", merchant="M2", version=1, discount_minor=0,
                            redeem_points=10, legs=REDEEM_LEGS))
    second["gateway_id"] = "gw2"
    return [first, second]


@pytest.fixture
def key(tmp_path: Path) -> CustomerKey:
    new_key_file(tmp_path / "customer.key")
    return load_key_file(tmp_path / "customer.key")


@pytest.fixture
def ledger(dsn: str, tmp_path: Path, key: CustomerKey) -> Iterator[Ledger]:
    """The ledger over HTTP with the customer key and an admin, a reader and a cards login."""
    made = {name: new_login(name, role) for name, role in
            (("admin", "admin"), ("alice", "reader"), ("tech", "cards"))}
    logins = tmp_path / "logins.json"
    logins.write_text(dump_logins({name: login for name, (login, _) in made.items()}))
    server = serve(dsn, logins_file=logins, customer_key=key)
    for document in _books_history():
        assert server.books.post_batch(document).status == "posted"
    yield Ledger(server, dsn, {name: token for name, (_, token) in made.items()})
    server.stop()


def customer_rows(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the customer tables, in a stable order."""
    return {table: sorted(posted_rows(dsn, f"SELECT * FROM {table}"), key=repr)
            for table in CUSTOMER_TABLES}


def test_create_link_history_export_and_erase(ledger: Ledger) -> None:
    """A customer with two cards sees both cards' sales from both stores with running
    balances; its export holds everything; erased, its personal data is gone, its stub,
    cards and history stay, and the books are as before."""
    customer_id = ledger.create(FULL)
    assert customer_id.startswith("cust-") and len(customer_id) == 37
    for card in ("C1", "C2"):
        status, answer = ledger.call("PUT", f"/v1/customers/{customer_id}/cards/{card}")
        assert (status, answer["changed"]) == (200, True)
    status, answer = ledger.call("PUT", f"/v1/customers/{customer_id}/cards/C1")
    assert (status, answer["changed"]) == (200, False)

    status, record = ledger.call("GET", f"/v1/customers/{customer_id}")
    assert status == 200
    assert (record["name"], record["phone"], record["email"]) == (NAME, PHONE_E164,
                                                                  EMAIL_NORMALISED)
    assert record["marketing_consent"] == FULL["marketing_consent"]
    assert [card["card"] for card in record["cards"]] == ["C1", "C2"]

    status, history = ledger.call("GET", f"/v1/customers/{customer_id}/history")
    assert status == 200
    rows = [(r["card"], r["txn_id"], r["store"], r["value_change_minor"],
             r["value_balance_minor"], r["points_balance"], r["expired_value_minor"])
            for r in history["transactions"]]
    assert rows == [("C1", "S1-1", "gw1", 5000, 5000, 0, 0),
                    ("C2", "S1-2", "gw1", 2000, 2000, 0, 0),
                    ("C1", "S2-1", "gw2", -1200, 3800, 12, 0),
                    ("C2", "S2-2", "gw2", -500, 1500, 0, 500),
                    ("C1", "S2-3", "gw2", -500, 3300, 7, 0)]
    redeemed = history["transactions"][-1]
    assert (redeemed["redeem_points"], redeemed["points_change"], redeemed["points"],
            redeemed["amount_minor"]) == (10, -5, 5, 600)
    assert history["cards"] == [
        {"card": "C1", "currency": "EUR", "value_minor": 3300, "points": 7, "transactions": 3,
         "replaced_by": None},
        {"card": "C2", "currency": "EUR", "value_minor": 1500, "points": 0, "transactions": 2,
         "replaced_by": None}]
    status, card_history = ledger.call("GET", "/v1/cards/C1/history", login="alice")
    assert status == 200 and card_history["customer_id"] == customer_id
    assert [r["terminal"] for r in card_history["transactions"]] == ["S1", "S2", "S2"]

    books_before = snapshot(ledger.server.books)
    status, export = ledger.call("GET", f"/v1/customers/{customer_id}/export")
    assert status == 200 and export["format"] == "tilltap-customer-export"
    assert export["customer"] == record | {"updated_at": export["customer"]["updated_at"]}
    assert export["history"] == history
    assert [entry["action"] for entry in export["audit"]] == [
        "create", "link", "link", "show", "export"]

    status, erased = ledger.call("DELETE", f"/v1/customers/{customer_id}")
    assert status == 200 and erased["erased_at"] is not None
    assert snapshot(ledger.server.books) == books_before
    assert ledger.server.books.trial_balance() == {"EUR": 0, "PTS": 0}
    status, stub = ledger.call("GET", f"/v1/customers/{customer_id}")
    assert status == 200 and stub["erased_at"] == erased["erased_at"]
    assert all(stub[field] is None for field in FULL)
    assert [card["card"] for card in stub["cards"]] == ["C1", "C2"]
    status, after = ledger.call("GET", f"/v1/customers/{customer_id}/history")
    assert after == history
    rows_now = customer_rows(ledger.dsn)
    assert rows_now["customer_fields"] == [] and rows_now["customer_lookups"] == []
    assert [row[1:] for row in posted_rows(ledger.dsn, "SELECT customer_id, key_id FROM"
                                           " customers")] == [(None,)]
    # The phone is free again: its digest went with the rest.
    other = ledger.create({"phone": PHONE, "name": "Someone Else"})
    assert other != customer_id


def test_update_sets_and_clears_fields_and_moves_the_phone(ledger: Ledger) -> None:
    """An update changes only what it names, null clears a field, and the old phone number
    becomes free for another customer."""
    customer_id = ledger.create({"name": NAME, "phone": PHONE})
    status, record = ledger.call("PATCH", f"/v1/customers/{customer_id}",
                                 {"phone": "+1 415 555 0100", "notes": NOTES, "name": None,
                                  "email": EMAIL})
    assert status == 200
    assert (record["name"], record["phone"], record["notes"]) == (None, "+14155550100", NOTES)
    ledger.create({"phone": PHONE})
    status, answer = ledger.call("PATCH", f"/v1/customers/{customer_id}",
                                 {"phone": None, "email": None})
    assert (status, answer["error"]) == (400, "field_missing")


BAD_CREATES = [
    ({"name": "X", "phone": "0207 946 0958"}, 400, "phone_invalid"),
    ({"name": "X", "phone": "+0123456789"}, 400, "phone_invalid"),
    ({"name": "X", "email": "zelda@example"}, 400, "email_invalid"),
    ({"name": "X", "email": "no at sign"}, 400, "email_invalid"),
    ({"name": "X", "birthday": "1984-02-30"}, 400, "birthday_invalid"),
    ({"name": "X", "birthday": "2999-01-01"}, 400, "birthday_invalid"),
    ({"name": "X", "birthday": "29.02.1984"}, 400, "birthday_invalid"),
    ({"name": "X", "birthday": 19840229}, 400, "field_type"),
    ({"name": "X", "shoe_size": 9}, 400, "field_unknown"),
    ({"language": "en"}, 400, "field_missing"),
    ({"name": "X", "marketing_consent": {"granted": "yes", "date": "2025-01-01",
                                         "source": "web"}}, 400, "field_type"),
    ({"name": "X", "phone": "+442079460958"}, 409, "phone_taken"),
    ({"name": "X", "email": "ZELDA.q@example.org"}, 409, "email_taken"),
]


def test_bad_input_is_refused_with_its_reason_and_changes_nothing(ledger: Ledger) -> None:
    """Invalid fields, duplicates, a card linked elsewhere, unknown ids and erasing twice:
    each a 4xx with its reason code, and no row of the customers or the books changes."""
    first = ledger.create(FULL)
    second = ledger.create({"name": "Second Customer"})
    assert ledger.call("PUT", f"/v1/customers/{first}/cards/C1")[0] == 200
    erased = ledger.create({"name": "Gone Soon"})
    assert ledger.call("DELETE", f"/v1/customers/{erased}")[0] == 200
    before = customer_rows(ledger.dsn), snapshot(ledger.server.books)
    requests: list[tuple[str, str, Any, int, str]] = [
        ("POST", "/v1/customers", body, status, reason) for body, status, reason in BAD_CREATES]
    requests += [
        ("PATCH", f"/v1/customers/{second}", {"email": EMAIL}, 409, "email_taken"),
        ("PATCH", f"/v1/customers/{second}", {"birthday": "1900-13-01"}, 400,
         "birthday_invalid"),
        ("PUT", f"/v1/customers/{second}/cards/C1", None, 409, "card_linked"),
        ("PUT", f"/v1/customers/{second}/cards/C9", None, 404, "card_unknown"),
        ("DELETE", f"/v1/customers/{second}/cards/C3", None, 409, "card_not_linked"),
        ("GET", "/v1/customers/cust-00000000000000000000000000000000", None, 404,
         "customer_unknown"),
        ("PUT", "/v1/customers/nobody/cards/C3", None, 404, "customer_unknown"),
        ("GET", "/v1/cards/C9/history", None, 404, "card_unknown"),
        ("DELETE", f"/v1/customers/{erased}", None, 409, "customer_erased"),
        ("PATCH", f"/v1/customers/{erased}", {"name": "Back"}, 409, "customer_erased"),
        ("PUT", f"/v1/customers/{erased}/cards/C3", None, 409, "customer_erased"),
    ]
    for method, path, body, status, reason in requests:
        got_status, answer = ledger.call(method, path, body)
        assert (got_status, answer["error"]) == (status, reason), (method, path, body)
    assert (customer_rows(ledger.dsn), snapshot(ledger.server.books)) == before


def test_roles_decide_who_reads_and_changes_customers(ledger: Ledger) -> None:
    """A reader may read a card's history but no customer; a cards login neither; only a
    role that may erase erases."""
    customer_id = ledger.create({"name": NAME})
    for login in ("alice", "tech"):
        assert ledger.call("GET", f"/v1/customers/{customer_id}", login=login)[0] == 403
        assert ledger.call("POST", "/v1/customers", {"name": "X"}, login=login)[0] == 403
        assert ledger.call("DELETE", f"/v1/customers/{customer_id}", login=login)[0] == 403
    assert ledger.call("GET", "/v1/cards/C1/history", login="tech")[0] == 403
    assert ledger.call("GET", "/v1/cards/C1/history", login="alice")[0] == 200
    assert posted_rows(ledger.dsn, "SELECT COUNT(*) FROM customers") == [(1,)]


def test_personal_fields_are_unreadable_at_rest(ledger: Ledger, dsn: str,
                                                tmp_path: Path) -> None:
    """Neither the database (the SQLite file and its journal, every PostgreSQL customer
    table) nor a changed customer holds a name, phone, e-mail, note or birthday in clear."""
    customer_id = ledger.create(FULL)
    ledger.call("PATCH", f"/v1/customers/{customer_id}", {"notes": NOTES + " again"})
    ledger.call("GET", f"/v1/customers/{customer_id}/export")
    if dsn.startswith("sqlite://"):
        stored = b"".join(path.read_bytes() for path in tmp_path.glob("ledger.db*"))
    else:
        stored = repr(customer_rows(dsn)).encode()
    assert customer_id.encode() in stored  # the read is not vacuous
    # (Fragments are chosen so random hex ids and base64 ciphertext cannot contain them.)
    readable = [value for value in (*PERSONAL, EMAIL, "Quackenbush", "oat milk")
                if value.encode() in stored]
    assert readable == []
    sealed = posted_rows(dsn, "SELECT field, sealed FROM customer_fields ORDER BY field")
    assert [field for field, _ in sealed] == sorted(FULL)


def test_a_sealed_field_opens_only_for_its_customer_field_and_key(key: CustomerKey) -> None:
    """The associated data binds a ciphertext to its customer and field; another key fails."""
    sealed = key.seal("cust-a", "name", NAME)
    assert key.open("cust-a", "name", sealed) == NAME
    for customer_id, field in (("cust-b", "name"), ("cust-a", "notes")):
        with pytest.raises(KeyMismatch):
            key.open(customer_id, field, sealed)
    with pytest.raises(KeyMismatch):
        CustomerKey(os.urandom(32)).open("cust-a", "name", sealed)
    assert key.lookup("phone", PHONE_E164) != key.lookup("email", PHONE_E164)
    assert key.lookup("phone", PHONE_E164) != CustomerKey(os.urandom(32)).lookup(
        "phone", PHONE_E164)


def test_the_key_file_is_private_never_overwritten_and_must_match_the_books(
        tmp_path: Path, dsn: str, key: CustomerKey) -> None:
    """`new_key_file` writes mode 0600 and refuses an existing file; a key readable by
    others is refused; a ledger whose customers were sealed under another key won't start."""
    path = tmp_path / "customer.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(KeyFileInvalid):
        new_key_file(path)
    path.chmod(0o644)
    with pytest.raises(KeyFileInvalid):
        load_key_file(path)
    server = serve(dsn, customer_key=key)
    server.stop()
    server = serve(dsn, customer_key=key)
    try:
        status, _ = _open_call(server, "POST", "/v1/customers", {"name": NAME})
        assert status == 201
    finally:
        server.stop()
    with pytest.raises(ServerRefused):
        serve(dsn, customer_key=CustomerKey(os.urandom(32)))
    server = serve(dsn)  # without a key the books still serve; customers are refused
    try:
        status, answer = _open_call(server, "POST", "/v1/customers", {"name": NAME})
        assert (status, answer["error"]) == (503, "customer_key_missing")
    finally:
        server.stop()


def _open_call(server: LedgerServer, method: str, path: str, body: Any) -> tuple[int, Any]:
    request = urllib.request.Request(server.url + path, method=method,
                                     data=json.dumps(body).encode())
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_no_log_line_holds_personal_data(ledger: Ledger,
                                         caplog: pytest.LogCaptureFixture) -> None:
    """Every operation and every refusal (even of a value quoted back nowhere) logs the
    customer id, the action and the login, never a personal value."""
    caplog.set_level(logging.DEBUG)
    customer_id = ledger.create(FULL)
    ledger.call("PATCH", f"/v1/customers/{customer_id}", {"name": NAME + " Jr"})
    ledger.call("PUT", f"/v1/customers/{customer_id}/cards/C1")
    ledger.call("GET", f"/v1/customers/{customer_id}/export")
    ledger.call("POST", "/v1/customers", {"name": NAME, "phone": PHONE})  # phone_taken
    ledger.call("POST", "/v1/customers", {"name": NAME, "phone": "+0" + NOTES})
    ledger.call("POST", "/v1/customers", {"name": NAME, "email": NOTES})
    ledger.call("DELETE", f"/v1/customers/{customer_id}")
    lines = [record.getMessage() for record in caplog.records]
    assert any(f"AUDIT customer {customer_id} erased by admin" in line for line in lines)
    for line in lines:
        for value in (*PERSONAL, "Quackenbush", "oat milk"):
            assert value not in line, line


def test_values_are_normalised_and_checked() -> None:
    """Phones become E.164, e-mails lower case; impossible dates are refused."""
    assert normalise_phone(" +49 (30) 1234-5678 ") == "+493012345678"
    assert normalise_email(" Ada@Example.Org ") == "ada@example.org"
    today = date(2026, 1, 1)
    assert parse_date("2000-02-29", "birthday", today, "birthday_invalid") == "2000-02-29"
    for text in ("1899-12-31", "2026-01-02", "2001-02-29", "2000-2-1"):
        with pytest.raises(BatchInvalid):
            parse_date(text, "birthday", today, "birthday_invalid")
    for phone in ("+12345", "+1234567890123456", "12345678", "+44 20 x946"):
        with pytest.raises(BatchInvalid):
            normalise_phone(phone)
    for email in ("a@b", "a..b@example.org", "@example.org", "a@-x.org", "a b@example.org"):
        with pytest.raises(BatchInvalid):
            normalise_email(email)


@pytest.mark.parametrize(("table", "columns", "set_otherwise"), [
    ("customers", CUSTOMER_COLUMNS, ()),
    ("customer_fields", CUSTOMER_FIELD_COLUMNS, ()),
    ("customer_lookups", CUSTOMER_LOOKUP_COLUMNS, ()),
    ("customer_cards", CUSTOMER_CARD_COLUMNS, ()),
    ("customer_audit", CUSTOMER_AUDIT_COLUMNS, ("id",)),
])
def test_the_customer_tables_have_their_documented_columns(
        books: object, dsn: str, table: str, columns: tuple[str, ...],
        set_otherwise: tuple[str, ...]) -> None:
    """The customer tables exist on both engines with exactly their column lists."""
    database = open_database(dsn)
    try:
        assert table_columns(database, table) == {*columns, *set_otherwise}
    finally:
        database.close()
