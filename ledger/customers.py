"""Customers at the central ledger: who holds which cards, their history across stores,
export and erasure, with personal data sealed at rest (docs/ledger.md, "Customers").

A customer is a random id (never derived from personal data) with personal fields
(FIELDS), each sealed under the ledger's customer key (ledger/personal_crypto.py), and
linked to cards (a card belongs to at most one customer). The books never see a customer:
erasing one deletes its sealed fields and the digests of its phone and e-mail, keeps its
row as an anonymised stub with its card links and audit trail, and changes no entry, so
balances and the trial balance stay as they were.

`parse_fields` is pure (a request body to normalised values); `Customers` ties it to the
SQL (ledger/customers_sql.py) through `Books.read`/`Books.transact`. Every change, and
every read of personal values (show, export, find, a store's greeting), is one row of
customer_audit (who, what, when; field names and card ids, never values) written in the
same database transaction, and each change, export and find one AUDIT log line once
committed. Retention erases those inactive for a number of days, as `erase` does. No error
or log line carries a personal value: a refusal names the field, not what was sent.

Refusals (all LedgerRejected: nothing changed):

    request_malformed                                         [400] a find or retention body
    field_unknown, field_type, field_missing, field_invalid   [400] the body
    phone_invalid, email_invalid, birthday_invalid            [400] a field's value
    phone_taken, email_taken                                  [409] another customer has it
    card_linked                                               [409] the card is another's
    card_not_linked                                           [409] unlinking a card not its
    customer_card_limit                                       [409] CUSTOMER_CARDS_MAX cards
    customer_erased                                           [409] a change to an erased one
    customer_unknown, card_unknown                            [404] (find: nobody has it)
    history_too_large                                         [413]

and LedgerUnavailable (503) customer_key_missing (the ledger runs without a customer key) or
customer_key_mismatch (the fields were sealed under another key).
"""

from __future__ import annotations

import json
import logging
import re
import secrets
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from ledger import customers_sql
from ledger.auth import covers
from ledger.customer_reports import CONTACT_FIELDS as CONTACT_REPORT_FIELDS
from ledger.db import Session
from ledger.errors import (
    BatchConflict,
    BatchInvalid,
    BatchTooLarge,
    Forbidden,
    LedgerUnavailable,
    NotFound,
)
from ledger.limits import (
    BIRTH_YEAR_MIN,
    CONSENT_SOURCE_CHARS_MAX,
    CUSTOMER_CARDS_MAX,
    CUSTOMER_INACTIVE_DAYS_MAX,
    CUSTOMER_INACTIVE_DAYS_MIN,
    CUSTOMER_NAME_CHARS_MAX,
    CUSTOMER_NOTES_CHARS_MAX,
    HISTORY_TXNS_MAX,
    ID_CHARS_MAX,
    RETENTION_ERASES_MAX,
)
from ledger.personal_crypto import CustomerKey, KeyMismatch
from ledger.reports import DAY_S, Report, parse_report_query, run_report

if TYPE_CHECKING:  # a type only: `tilltap customer` commands import this module, not the books
    from ledger.books import Books

log = logging.getLogger(__name__)

FIELDS = ("name", "phone", "email", "birthday", "language", "marketing_consent", "notes")
"""A customer's personal fields, each sealed on its own; at least one of CONTACT_FIELDS."""
CONTACT_FIELDS = ("name", "phone", "email")
LOOKUP_FIELDS = ("phone", "email")
"""Fields whose keyed digest is unique among customers (a duplicate is *_taken)."""
CONSENT_KEYS = frozenset({"granted", "date", "source"})
CUSTOMER_ID_PREFIX = "cust-"
CUSTOMER_ID_RANDOM_BYTES = 16
EXPORT_FORMAT = "tilltap-customer-export"
EXPORT_VERSION = 1
ENROL_KEYS = ("card", "terminal", "merchant", "phone", "email", "first_name",
              "marketing_consent")
ENROL_FIRST_NAME_CHARS_MAX = 64  # what a terminal's message carries (protocol text)
RETENTION_KEYS = frozenset({"inactive_days", "dry_run"})
RETENTION_REASON = "retention"

_E164 = re.compile(r"\+[1-9][0-9]{6,14}\Z")
_PHONE_SEPARATORS = re.compile(r"[ .()\-]")
_EMAIL_LOCAL = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}\Z")
_EMAIL_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
EMAIL_CHARS_MAX = 254
_LANGUAGE = re.compile(r"[a-z]{2,3}(?:-[A-Za-z0-9]{2,8}){0,3}\Z")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
_CUSTOMER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")


def new_customer_id() -> str:
    """A random customer id: nothing about the person can be read from it."""
    return CUSTOMER_ID_PREFIX + secrets.token_hex(CUSTOMER_ID_RANDOM_BYTES)


def normalise_phone(text: str) -> str:
    """An E.164 number (``+`` and 7 to 15 digits) from one written with spaces, dots,
    dashes or brackets; phone_invalid otherwise (the value is never repeated)."""
    phone = _PHONE_SEPARATORS.sub("", text.strip())
    if not _E164.match(phone):
        raise BatchInvalid("phone_invalid", "phone: an E.164 number, + then 7 to 15 digits "
                                            "(country code first)")
    return phone


def normalise_email(text: str) -> str:
    """An e-mail address, lower case (the look-up treats case as the same address);
    email_invalid unless it is local@domain with a dotted domain of letters, digits and
    hyphens."""
    email = text.strip().lower()
    local, at, domain = email.rpartition("@")
    labels = domain.split(".")
    if (not at or len(email) > EMAIL_CHARS_MAX or not _EMAIL_LOCAL.match(local)
            or local.startswith(".") or local.endswith(".") or ".." in local
            or len(labels) < 2 or not all(_EMAIL_LABEL.match(label) for label in labels)):
        raise BatchInvalid("email_invalid", "email: an address such as name@example.org")
    return email


def parse_date(text: object, field: str, today: date, reason: str) -> str:
    """A calendar date YYYY-MM-DD from BIRTH_YEAR_MIN to `today`; `reason` otherwise."""
    if not isinstance(text, str):
        raise BatchInvalid("field_type", f"{field}: a date as text, YYYY-MM-DD")
    try:
        day = date.fromisoformat(text) if _DATE.match(text) else None
    except ValueError:
        day = None
    if day is None or day.year < BIRTH_YEAR_MIN or day > today:
        raise BatchInvalid(reason, f"{field}: a calendar date YYYY-MM-DD from "
                                   f"{BIRTH_YEAR_MIN} to today")
    return day.isoformat()


def _text(value: object, field: str, chars_max: int, multiline: bool = False) -> str:
    if not isinstance(value, str):
        raise BatchInvalid("field_type", f"{field}: text")
    text = value.strip()
    allowed = "\n\t" if multiline else ""
    if not 0 < len(text) <= chars_max or any(
            (ord(c) < 32 and c not in allowed) or ord(c) == 127 for c in text):
        raise BatchInvalid("field_invalid", f"{field}: 1 to {chars_max} characters, no control "
                                            "characters")
    return text


def _consent(value: object, today: date) -> str:
    """A marketing consent as its canonical JSON text."""
    if not isinstance(value, dict):
        raise BatchInvalid("field_type", "marketing_consent: {\"granted\", \"date\", \"source\"}")
    if set(value) != CONSENT_KEYS:
        raise BatchInvalid("field_invalid",
                           "marketing_consent has exactly granted, date and source")
    if not isinstance(value["granted"], bool):
        raise BatchInvalid("field_type", "marketing_consent.granted: true or false")
    consent = {"granted": value["granted"],
               "date": parse_date(value["date"], "marketing_consent.date", today,
                                  "field_invalid"),
               "source": _text(value["source"], "marketing_consent.source",
                               CONSENT_SOURCE_CHARS_MAX)}
    return json.dumps(consent, sort_keys=True, separators=(",", ":"))


def parse_fields(document: object, today: date) -> dict[str, str | None]:
    """The fields a create or update body sets, normalised, as the text each is sealed as;
    None for a field the body clears (`null`). Refused with the field's name only."""
    if not isinstance(document, dict):
        raise BatchInvalid("request_malformed", "send a JSON object of customer fields")
    unknown = set(document) - set(FIELDS)
    if unknown:
        raise BatchInvalid("field_unknown", f"{len(unknown)} unknown keys; a customer has "
                                            f"{', '.join(FIELDS)}")
    parsed: dict[str, str | None] = {}
    for field in FIELDS:
        if field not in document:
            continue
        value = document[field]
        if value is None:
            parsed[field] = None
        elif field == "name":
            parsed[field] = _text(value, field, CUSTOMER_NAME_CHARS_MAX)
        elif field == "notes":
            parsed[field] = _text(value, field, CUSTOMER_NOTES_CHARS_MAX, multiline=True)
        elif field in ("phone", "email", "language"):
            if not isinstance(value, str):
                raise BatchInvalid("field_type", f"{field}: text")
            if field == "phone":
                parsed[field] = normalise_phone(value)
            elif field == "email":
                parsed[field] = normalise_email(value)
            elif not _LANGUAGE.match(value.strip()):
                raise BatchInvalid("field_invalid", "language: a language tag such as en, "
                                                    "de or pt-BR")
            else:
                parsed[field] = value.strip()
        elif field == "birthday":
            parsed[field] = parse_date(value, field, today, "birthday_invalid")
        else:
            parsed[field] = _consent(value, today)
    return parsed


def parse_enrolment(document: object) -> dict[str, Any]:
    """An enrolment body (POST /v1/enrolments): card, terminal and merchant ids, a phone
    and/or an email (normalised), an optional first_name, marketing_consent true/false."""
    if not isinstance(document, dict):
        raise BatchInvalid("request_malformed", "send a JSON object: an enrolment")
    unknown = set(document) - set(ENROL_KEYS)
    if unknown:
        raise BatchInvalid("field_unknown", f"{len(unknown)} unknown keys; an enrolment has "
                                            f"{', '.join(ENROL_KEYS)}")
    request: dict[str, Any] = {}
    for field in ("card", "terminal", "merchant"):
        value = document.get(field)
        if not isinstance(value, str) or not _CUSTOMER_ID.match(value):
            raise BatchInvalid("field_invalid" if field in document else "field_missing",
                               f"{field}: an id")
        request[field] = value
    if not isinstance(document.get("marketing_consent"), bool):
        raise BatchInvalid("field_type" if "marketing_consent" in document else
                           "field_missing", "marketing_consent: true or false")
    request["marketing_consent"] = document["marketing_consent"]
    for field, normalise in (("phone", normalise_phone), ("email", normalise_email)):
        value = document.get(field)
        if value is None:
            continue
        if not isinstance(value, str):
            raise BatchInvalid("field_type", f"{field}: text")
        request[field] = normalise(value)
    if not request.get("phone") and not request.get("email"):
        raise BatchInvalid("field_missing", "an enrolment has a phone or an email")
    if document.get("first_name") is not None:
        request["first_name"] = _text(document["first_name"], "first_name",
                                      ENROL_FIRST_NAME_CHARS_MAX)
    return request


def parse_find(document: object) -> tuple[str, str]:
    """A find body (POST /v1/customers/find): exactly one of {"phone": text} and
    {"email": text}, as (kind, text); the value is normalised by `Customers.find`."""
    if not isinstance(document, dict) or len(document) != 1 or not set(document) <= set(
            LOOKUP_FIELDS):
        raise BatchInvalid("request_malformed", "send {\"phone\": text} or {\"email\": text}")
    [(kind, text)] = document.items()
    if not isinstance(text, str):
        raise BatchInvalid("field_type", f"{kind}: text")
    return kind, text


def parse_retention(document: object) -> tuple[int, bool]:
    """A retention body (POST /v1/customers/retention): {"inactive_days": N from
    CUSTOMER_INACTIVE_DAYS_MIN to _MAX, "dry_run": true|false}."""
    if not isinstance(document, dict) or set(document) != RETENTION_KEYS:
        raise BatchInvalid("request_malformed",
                           "send {\"inactive_days\": N, \"dry_run\": true|false}")
    days, dry_run = document["inactive_days"], document["dry_run"]
    if type(days) is not int or not CUSTOMER_INACTIVE_DAYS_MIN <= days <= (
            CUSTOMER_INACTIVE_DAYS_MAX):
        raise BatchInvalid("field_invalid", f"inactive_days: a whole number of days from "
                                            f"{CUSTOMER_INACTIVE_DAYS_MIN} to "
                                            f"{CUSTOMER_INACTIVE_DAYS_MAX}")
    if not isinstance(dry_run, bool):
        raise BatchInvalid("field_type", "dry_run: true or false")
    return days, dry_run


def _fields_shown(values: dict[str, str]) -> dict[str, Any]:
    """Opened values as an answer shows them (every field, null when not held)."""
    shown: dict[str, Any] = {field: values.get(field) for field in FIELDS}
    if shown["marketing_consent"] is not None:
        shown["marketing_consent"] = json.loads(shown["marketing_consent"])
    return shown


class Customers:
    """The customer operations on one set of books, under the ledger's customer key (None:
    the ledger runs without one, and every operation on personal values is refused
    customer_key_missing)."""

    def __init__(self, books: Books, key: CustomerKey | None) -> None:
        self._books = books
        self._key = key

    @property
    def keyed(self) -> bool:
        """Whether the ledger holds a customer key (without one, personal data is refused)."""
        return self._key is not None

    def check_key(self) -> None:
        """KeyMismatch when the books hold customers sealed under another key (checked when
        the ledger starts, so a wrong key file fails at once, not request by request)."""
        if self._key is None:
            return
        key_id = self._key.key_id
        others = self._books.read(lambda session, now: customers_sql.key_ids(session)) - {key_id}
        if others:
            raise KeyMismatch("the books' customers are sealed under another customer key")

    def create(self, document: object, login: str) -> dict[str, Any]:
        """A new customer with the body's fields: its whole record (as `show`)."""
        key = self._require_key()
        fields = {k: v for k, v in parse_fields(document, self._today()).items()
                  if v is not None}
        if not any(field in fields for field in CONTACT_FIELDS):
            raise BatchInvalid("field_missing", "a customer has a name, a phone or an email")
        customer_id = new_customer_id()

        def work(session: Session, now: int) -> None:
            customers_sql.insert_customer(session, customer_id, now, key.key_id)
            self._write_fields(session, key, customer_id, fields)
            customers_sql.audit(session, now, login, customer_id, "create",
                                _names(fields))

        self._books.transact(work)
        self._log(customer_id, "created", login, _names(fields))
        return self.show(customer_id, login, audited=False)

    def update(self, customer_id: str, document: object, login: str) -> dict[str, Any]:
        """Set the body's fields (null clears one): the whole record after."""
        key = self._require_key()
        fields = parse_fields(document, self._today())
        if not fields:
            raise BatchInvalid("field_missing", f"send at least one of {', '.join(FIELDS)}")

        def work(session: Session, now: int) -> None:
            self._changeable(session, customer_id)
            held = set(customers_sql.sealed_fields(session, customer_id))
            after = (held | {f for f, v in fields.items() if v is not None}) - {
                f for f, v in fields.items() if v is None}
            if not after & set(CONTACT_FIELDS):
                raise BatchInvalid("field_missing", "a customer keeps a name, a phone or an "
                                                    "email")
            self._write_fields(session, key, customer_id, fields)
            customers_sql.touch(session, customer_id, now)
            customers_sql.audit(session, now, login, customer_id, "update", _names(fields))

        self._books.transact(work)
        self._log(customer_id, "updated", login, _names(fields))
        return self.show(customer_id, login, audited=False)

    def show(self, customer_id: str, login: str, audited: bool = True) -> dict[str, Any]:
        """The customer's record: its fields opened, its cards; an erased customer's stub
        (fields null, erased_at set). A read of personal values is audited."""
        def work(session: Session, now: int) -> dict[str, Any]:
            record = self._record(session, customer_id)
            if audited and record["erased_at"] is None:
                customers_sql.audit(session, now, login, customer_id, "show", "")
            return record

        return self._books.transact(work) if audited else self._books.read(
            lambda session, now: self._record(session, customer_id))

    def link(self, customer_id: str, card: str, login: str) -> dict[str, Any]:
        """Link a card the ledger knows to the customer: {"customer_id", "card", "linked",
        "changed"} (changed False when it was linked to this customer already)."""
        def work(session: Session, now: int) -> bool:
            self._changeable(session, customer_id)
            if not customers_sql.card_known(session, card):
                raise NotFound("card_unknown", f"the ledger has no card {card[:64]!r}")
            owner = customers_sql.card_owner(session, card, lock=True)
            if owner == customer_id:
                return False
            if owner is not None:
                raise BatchConflict("card_linked", f"card {card[:64]!r} belongs to another "
                                                   "customer: unlink it there first")
            if len(customers_sql.cards(session, customer_id)) >= CUSTOMER_CARDS_MAX:
                raise BatchConflict("customer_card_limit", f"a customer has at most "
                                                           f"{CUSTOMER_CARDS_MAX} cards")
            customers_sql.link(session, customer_id, card, now, login)
            customers_sql.touch(session, customer_id, now)
            customers_sql.audit(session, now, login, customer_id, "link", f"card {card}")
            return True

        changed = self._books.transact(work)
        if changed:
            self._log(customer_id, "linked", login, f"card {card[:64]}")
        return {"customer_id": customer_id, "card": card, "linked": True, "changed": changed}

    def unlink(self, customer_id: str, card: str, login: str) -> dict[str, Any]:
        """Unlink the customer's card: {"customer_id", "card", "linked": false, "changed"}."""
        def work(session: Session, now: int) -> None:
            self._changeable(session, customer_id)
            if not customers_sql.card_known(session, card):
                raise NotFound("card_unknown", f"the ledger has no card {card[:64]!r}")
            if customers_sql.card_owner(session, card, lock=True) != customer_id:
                raise BatchConflict("card_not_linked", f"card {card[:64]!r} is not linked to "
                                                       f"customer {customer_id}")
            customers_sql.unlink(session, card)
            customers_sql.touch(session, customer_id, now)
            customers_sql.audit(session, now, login, customer_id, "unlink", f"card {card}")

        self._books.transact(work)
        self._log(customer_id, "unlinked", login, f"card {card[:64]}")
        return {"customer_id": customer_id, "card": card, "linked": False, "changed": True}

    def history(self, customer_id: str) -> dict[str, Any]:
        """Every transaction of the customer's cards, across stores, by time: each row a
        card's history row (ledger/customers_sql.py) with its card; per card its balances."""
        def work(session: Session, now: int) -> dict[str, Any]:
            self._existing(session, customer_id)
            return _merged_history(session, customer_id)

        return self._books.read(work)

    def card_history(self, card: str) -> dict[str, Any]:
        """{"card", "customer_id" (or null), "transactions": [...]} (ledger/customers_sql.py);
        NotFound card_unknown."""
        def work(session: Session, now: int) -> dict[str, Any]:
            if not customers_sql.card_known(session, card):
                raise NotFound("card_unknown", f"the ledger has no card {card[:64]!r}")
            return {"card": card, "customer_id": customers_sql.card_owner(session, card),
                    "transactions": customers_sql.card_history(session, card)}

        return self._books.read(work)

    def export(self, customer_id: str, login: str) -> dict[str, Any]:
        """Everything the ledger holds about the customer, as one JSON document: its record,
        its cards with their histories and balances, and its audit trail (this export
        included)."""
        def work(session: Session, now: int) -> dict[str, Any]:
            record = self._record(session, customer_id)
            customers_sql.audit(session, now, login, customer_id, "export", "")
            return {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "exported_at": now,
                    "customer": record, "history": _merged_history(session, customer_id),
                    "audit": customers_sql.audit_trail(session, customer_id)}

        document = self._books.transact(work)
        self._log(customer_id, "exported", login, "")
        return document

    def erase(self, customer_id: str, login: str) -> dict[str, Any]:
        """Delete the customer's personal data (sealed fields, digests); the row stays as a
        stub with its cards and audit trail, the books unchanged. customer_erased the
        second time."""
        def work(session: Session, now: int) -> int:
            self._changeable(session, customer_id)
            erased = set(customers_sql.sealed_fields(session, customer_id))
            customers_sql.erase(session, customer_id, now)
            customers_sql.audit(session, now, login, customer_id, "erase",
                                _names(dict.fromkeys(erased)))
            return now

        erased_at = self._books.transact(work)
        self._log(customer_id, "erased", login, "")
        return {"customer_id": customer_id, "erased_at": erased_at}

    def enrol(self, document: object, login: str,
              merchants: tuple[str, ...] | None = None) -> dict[str, Any]:
        """Enrolment at a terminal's counter (docs/ledger.md "Enrolment at the counter"):
        the card joins the customer who has the phone number or e-mail address given, or a
        new customer is made with them (and the first name as its name, and the marketing
        answer with source "counter <terminal>") and the card linked to it, in one
        transaction. `merchants`: a gateway's own merchants; a card whose issue was sold
        under another merchant is not_permitted. Answers {"customer_id", "card", "joined",
        "changed", "first_name"} (first_name: the first word of the customer's name, or
        null). Refused: card_unknown, card_linked (the card is another customer's),
        email_taken (the phone and the e-mail belong to two customers), customer_card_limit
        and the field reasons of a create."""
        key = self._require_key()
        request = parse_enrolment(document)
        card, terminal = request["card"], request["terminal"]
        lookups = {field: key.lookup(field, request[field])
                   for field in LOOKUP_FIELDS if request.get(field)}
        today = self._today()

        def work(session: Session, now: int) -> tuple[str, bool, bool, str | None]:
            if not customers_sql.card_known(session, card):
                raise NotFound("card_unknown", f"the ledger has no card {card[:64]!r}")
            sold_by = _card_merchant(session, card)
            if merchants is not None and sold_by is not None and not covers(merchants,
                                                                            sold_by):
                raise Forbidden("not_permitted", f"card {card[:64]!r} was sold by another "
                                                 "merchant")
            owners = {customers_sql.lookup_owner(session, lookup)
                      for lookup in lookups.values()} - {None}
            if len(owners) > 1:
                raise BatchConflict("email_taken", "the phone and the email belong to two "
                                                   "customers")
            holder = customers_sql.card_owner(session, card, lock=True)
            joined = bool(owners)
            customer_id = str(owners.pop()) if owners else new_customer_id()
            if joined:
                self._changeable(session, customer_id)
                if holder == customer_id:  # enrolled before: nothing changes
                    return customer_id, True, False, self._first_name(session, key,
                                                                      customer_id)
            if holder is not None:
                raise BatchConflict("card_linked", f"card {card[:64]!r} belongs to another "
                                                   "customer")
            if joined:
                if len(customers_sql.cards(session, customer_id)) >= CUSTOMER_CARDS_MAX:
                    raise BatchConflict("customer_card_limit", f"a customer has at most "
                                                               f"{CUSTOMER_CARDS_MAX} cards")
            else:
                fields = {field: request[field] for field in ("phone", "email")
                          if request.get(field)}
                if request.get("first_name"):
                    fields["name"] = request["first_name"]
                fields["marketing_consent"] = json.dumps(
                    {"granted": request["marketing_consent"], "date": today.isoformat(),
                     "source": f"counter {terminal}"}, sort_keys=True, separators=(",", ":"))
                customers_sql.insert_customer(session, customer_id, now, key.key_id)
                self._write_fields(session, key, customer_id, fields)
                customers_sql.audit(session, now, login, customer_id, "create",
                                    f"{_names(fields)} at counter {terminal}")
            customers_sql.link(session, customer_id, card, now, login)
            customers_sql.touch(session, customer_id, now)
            customers_sql.audit(session, now, login, customer_id, "link",
                                f"card {card} at counter {terminal}")
            return customer_id, joined, True, self._first_name(session, key, customer_id)

        customer_id, joined, changed, first_name = self._books.transact(work)
        if changed:
            self._log(customer_id, "joined" if joined else "enrolled", login,
                      f"card {card} at counter {terminal}")
        return {"customer_id": customer_id, "card": card, "joined": joined,
                "changed": changed, "first_name": first_name}

    @staticmethod
    def _first_name(session: Session, key: CustomerKey, customer_id: str) -> str | None:
        """The first word of the customer's name, for the counter's display, or None."""
        sealed = customers_sql.sealed_fields(session, customer_id).get("name")
        if sealed is None:
            return None
        try:
            words = key.open(customer_id, "name", sealed).split()
        except KeyMismatch as error:
            raise LedgerUnavailable(str(error), reason="customer_key_mismatch") from error
        return words[0][:ENROL_FIRST_NAME_CHARS_MAX] if words else None

    def find(self, kind: str, text: str, login: str) -> str:
        """The id of the customer with this phone number or e-mail address (`kind`), found
        through its keyed digest (the value is never compared in clear); audited on the
        customer found. customer_unknown when nobody has it."""
        key = self._require_key()
        if kind not in LOOKUP_FIELDS:
            raise BatchInvalid("field_unknown", f"find by one of {', '.join(LOOKUP_FIELDS)}")
        value = normalise_phone(text) if kind == "phone" else normalise_email(text)
        lookup = key.lookup(kind, value)

        def work(session: Session, now: int) -> str:
            owner = customers_sql.lookup_owner(session, lookup)
            if owner is None:
                raise NotFound("customer_unknown", f"no customer has this {kind}")
            customers_sql.audit(session, now, login, owner, "find", f"by {kind}")
            return owner

        customer_id = self._books.transact(work)
        self._log(customer_id, "found", login, f"by {kind}")
        return customer_id

    def counter_view(self, card: str, login: str) -> dict[str, str]:
        """What a store's gateway asking about the card is told of its customer: `greeting`,
        the first name a counter greets them by (as an enrolment answers it: the first word
        of the customer's name), and `birthday`, its month and day "MM-DD" (never the year),
        for birthday-week offers; each only when the customer has it. Audited ("greet", the
        card, and ", birthday" when that was read) on the customer. Empty, and nothing read,
        when the card is nobody's, its customer is erased, or the ledger holds no customer
        key: a card's answer never fails for a customer's sake."""
        key = self._key
        if key is None or self._books.read(
                lambda session, now: customers_sql.card_owner(session, card)) is None:
            return {}

        def work(session: Session, now: int) -> dict[str, str]:
            owner = customers_sql.card_owner(session, card)
            row = customers_sql.customer(session, owner) if owner is not None else None
            if owner is None or row is None or row["erased_at"] is not None or (
                    row["key_id"] != key.key_id):
                return {}
            view = {}
            name = self._first_name(session, key, owner)
            if name is not None:
                view["greeting"] = name
            sealed = customers_sql.sealed_fields(session, owner).get("birthday")
            if sealed is not None:
                try:
                    view["birthday"] = key.open(owner, "birthday", sealed)[5:]  # MM-DD
                except KeyMismatch as error:
                    raise LedgerUnavailable(str(error),
                                            reason="customer_key_mismatch") from error
            if view:
                customers_sql.audit(session, now, login, owner, "greet", f"card {card}" + (
                    ", birthday" if "birthday" in view else ""))
            return view

        try:
            return self._books.transact(work)
        except LedgerUnavailable as error:  # a sealed value that does not open: none of it
            log.warning("no greeting for card %s: %s", card[:ID_CHARS_MAX], error.detail,
                        extra={"event": "greeting_unavailable", "reason": error.reason})
            return {}

    def retention(self, document: object, login: str) -> dict[str, Any]:
        """Erase the customers inactive for the body's `inactive_days` (parse_retention):
        no change to the customer and no transaction on any card linked to them since
        (customers_sql.inactive), each as `erase` does, audited with RETENTION_REASON, at
        most RETENTION_ERASES_MAX per call (`more` true: ask again); a dry run erases
        nothing and lists them. Answers {"inactive_days", "before" (Unix seconds: inactive
        since before it), "dry_run", "customers": [{"customer_id", "last_activity"}],
        "erased", "more"}. Needs no customer key: nothing personal is read."""
        days, dry_run = parse_retention(document)
        now_s = self._books.read(lambda session, now: now)
        before = now_s - days * DAY_S
        found = self._books.read(lambda session, now: customers_sql.inactive(
            session, before, RETENTION_ERASES_MAX))
        listed = []
        for customer_id, last_activity in found:
            if not dry_run and not self._erase_inactive(customer_id, before, days, login):
                continue  # active again, or erased, since it was listed
            listed.append({"customer_id": customer_id, "last_activity": last_activity})
        return {"inactive_days": days, "before": before, "dry_run": dry_run,
                "customers": listed, "erased": 0 if dry_run else len(listed),
                "more": len(found) == RETENTION_ERASES_MAX}

    def _erase_inactive(self, customer_id: str, before: int, days: int, login: str) -> bool:
        """Erase the customer if it is still inactive since before `before` (checked again
        under its row's lock, in the erasing transaction); whether it was erased."""
        def work(session: Session, now: int) -> bool:
            row = customers_sql.customer(session, customer_id, lock=True)
            if row is None or not customers_sql.still_inactive(session, customer_id, before):
                return False
            erased = set(customers_sql.sealed_fields(session, customer_id))
            customers_sql.erase(session, customer_id, now)
            fields = _names(dict.fromkeys(erased))
            customers_sql.audit(session, now, login, customer_id, "erase",
                                f"{RETENTION_REASON}: inactive {days} days"
                                + (f"; {fields}" if fields else ""))
            return True

        erased = self._books.transact(work)
        if erased:
            self._log(customer_id, "erased", login, f"{RETENTION_REASON}: inactive {days} days")
        return erased

    def report(self, name: str, parameters: Mapping[str, str], login: str,
               contacts: bool) -> Report:
        """A named report (ledger/reports.py). customer_lapsing, when `contacts` (the caller
        may read customers) and the ledger holds the customer key, with the contact fields
        of each customer whose marketing consent is granted (null for the others), in one
        transaction that audits every customer whose consent was read; its summary's
        "contacts" says "shown", "not_permitted" or "customer_key_missing"."""
        if name != "customer_lapsing" or not contacts or self._key is None:
            report = self._books.report(name, parameters)
            if name == "customer_lapsing":
                report.summary["contacts"] = ("not_permitted" if not contacts
                                              else "customer_key_missing")
            return report
        query = parse_report_query(name, parameters, self._today())

        def work(session: Session, now: int) -> tuple[Report, int]:
            report = run_report(session, query)
            read = 0
            for row in report.rows:
                if row["customer_id"] is None:
                    continue
                opened = self._contacts(session, row["customer_id"])
                if opened is None:
                    continue  # erased: nothing to read
                read += 1
                row.update(opened)
                shown = sorted(field for field in CONTACT_REPORT_FIELDS if opened.get(field))
                customers_sql.audit(session, now, login, row["customer_id"], "report",
                                    f"customer_lapsing: {_names(dict.fromkeys(shown))}"
                                    if shown else "customer_lapsing: consent only")
            shown_count = sum(1 for row in report.rows if row["marketing_consent"])
            report.summary.update(contacts="shown", contacts_shown=shown_count)
            return report, read

        report, read = self._books.transact(work)
        log.info("AUDIT customer report customer_lapsing by %s: %d customers read, contacts "
                 "of %d shown", login, read, report.summary["contacts_shown"])
        return report

    def _contacts(self, session: Session, customer_id: str) -> dict[str, Any] | None:
        """{"marketing_consent": granted, and CONTACT_REPORT_FIELDS (null without consent)}
        of a customer, or None once erased; a field is opened only when consent allows."""
        key = self._require_key()
        row = self._existing(session, customer_id)
        if row["erased_at"] is not None:
            return None
        if row["key_id"] != key.key_id:
            raise LedgerUnavailable("customer sealed under another key",
                                    reason="customer_key_mismatch")
        sealed = customers_sql.sealed_fields(session, customer_id)
        try:
            consent = (json.loads(key.open(customer_id, "marketing_consent",
                                           sealed["marketing_consent"]))
                       if "marketing_consent" in sealed else None)
            granted = bool(consent and consent["granted"])
            opened: dict[str, Any] = {"marketing_consent": granted}
            for field in CONTACT_REPORT_FIELDS:
                opened[field] = (key.open(customer_id, field, sealed[field])
                                 if granted and field in sealed else None)
        except KeyMismatch as error:
            raise LedgerUnavailable(str(error), reason="customer_key_mismatch") from error
        return opened

    def audit_trail(self, customer_id: str) -> list[dict[str, Any]]:
        """The customer's audit trail, oldest first."""
        def work(session: Session, now: int) -> list[dict[str, Any]]:
            self._existing(session, customer_id)
            return customers_sql.audit_trail(session, customer_id)

        return self._books.read(work)

    def _require_key(self) -> CustomerKey:
        if self._key is None:
            raise LedgerUnavailable("the ledger runs without a customer key (ledger serve "
                                    "--customer-key FILE)", reason="customer_key_missing")
        return self._key

    def _today(self) -> date:
        return datetime.fromtimestamp(self._books.read(lambda session, now: now), UTC).date()

    def _existing(self, session: Session, customer_id: str,
                  lock: bool = False) -> dict[str, Any]:
        row = (customers_sql.customer(session, customer_id, lock)
               if _CUSTOMER_ID.match(customer_id) else None)
        if row is None:
            raise NotFound("customer_unknown",
                           f"the ledger has no customer {customer_id[:ID_CHARS_MAX]!r}")
        return row

    def _changeable(self, session: Session, customer_id: str) -> dict[str, Any]:
        """The customer's row, locked; customer_erased once erased."""
        row = self._existing(session, customer_id, lock=True)
        if row["erased_at"] is not None:
            raise BatchConflict("customer_erased", f"customer {customer_id} was erased")
        return row

    def _record(self, session: Session, customer_id: str) -> dict[str, Any]:
        row = self._existing(session, customer_id)
        values: dict[str, str] = {}
        if row["erased_at"] is None:
            key = self._require_key()
            if row["key_id"] != key.key_id:
                raise LedgerUnavailable("customer sealed under another key",
                                        reason="customer_key_mismatch")
            try:
                values = {field: key.open(customer_id, field, sealed) for field, sealed
                          in customers_sql.sealed_fields(session, customer_id).items()}
            except KeyMismatch as error:
                raise LedgerUnavailable(str(error), reason="customer_key_mismatch") from error
        return {"customer_id": customer_id, "created_at": row["created_at"],
                "updated_at": row["updated_at"], "erased_at": row["erased_at"],
                **_fields_shown(values), "cards": customers_sql.cards(session, customer_id)}

    def _write_fields(self, session: Session, key: CustomerKey, customer_id: str,
                      fields: Mapping[str, str | None]) -> None:
        """Seal and store the fields (None removes one), phone and e-mail digests with them;
        a digest another customer holds is *_taken."""
        for field in LOOKUP_FIELDS:
            if field not in fields:
                continue
            value = fields[field]
            lookup = None if value is None else key.lookup(field, value)
            if lookup is not None:
                owner = customers_sql.lookup_owner(session, lookup)
                if owner is not None and owner != customer_id:
                    raise BatchConflict(f"{field}_taken", f"another customer has this {field}")
            customers_sql.put_lookup(session, customer_id, field, lookup)
        for field, value in fields.items():
            customers_sql.put_field(session, customer_id, field, None if value is None
                                    else key.seal(customer_id, field, value))

    @staticmethod
    def _log(customer_id: str, action: str, login: str, detail: str) -> None:
        log.info("AUDIT customer %s %s by %s%s", customer_id, action, login,
                 f": {detail}" if detail else "")


def _card_merchant(session: Session, card: str) -> str | None:
    """The merchant whose terminal sold (issued) the card, or None (registered centrally,
    or its issue not posted yet)."""
    rows = session.fetch("SELECT t.merchant FROM cards c JOIN transactions t"
                         " ON t.txn_id = c.activated_txn_id WHERE c.card = ?", (card,))
    return str(rows[0][0]) if rows else None


def _names(fields: dict[str, Any]) -> str:
    """Field names for the audit trail (never their values)."""
    return "fields " + ", ".join(sorted(fields)) if fields else ""


def _merged_history(session: Session, customer_id: str) -> dict[str, Any]:
    """The histories of the customer's cards merged by time, and each card's balances: the
    cards linked now and those they had that were replaced (with `replaced_by`), so a lost
    card's sales stay in its owner's history after the transfer."""
    linked = customers_sql.cards(session, customer_id)
    linked_ids = {card["card"] for card in linked}
    former = [card for card in customers_sql.former_cards(session, customer_id)
              if card["card"] not in linked_ids]
    rows: list[tuple[int, int, int, dict[str, Any]]] = []
    balances = []
    for card_index, card in enumerate([*linked, *former]):
        history = customers_sql.card_history(session, card["card"])
        for position, item in enumerate(history):
            rows.append((item["time"], card_index, position, {"card": card["card"], **item}))
        last = history[-1] if history else None
        balances.append({"card": card["card"],
                         "currency": last["currency"] if last else None,
                         "value_minor": last["value_balance_minor"] if last else 0,
                         "points": last["points_balance"] if last else 0,
                         "transactions": len(history),
                         "replaced_by": card.get("replaced_by")})
        if len(rows) > HISTORY_TXNS_MAX:
            raise BatchTooLarge("history_too_large", f"customer {customer_id} has more than "
                                                     f"{HISTORY_TXNS_MAX} transactions")
    rows.sort(key=lambda row: row[:3])
    return {"customer_id": customer_id, "cards": balances,
            "transactions": [row[3] for row in rows]}
