"""Loads as a terminal makes them, for tests that drive the card book directly."""

from __future__ import annotations

from typing import Any

from gateway.cards import CardBook
from protocol import txn


def approve_load(book: CardBook, record: dict[str, Any]) -> dict[str, Any]:
    """As a terminal does before it journals an issue or top-up (value is loaded only as the
    gateway approved it): ask, and carry the approval's auth id. A declined request, or a
    record that names its own auth id or is not an online load, is left as it is."""
    if (record["kind"] in (txn.KIND_ISSUE, txn.KIND_TOPUP) and record["card_value_minor"]
            and record["auth_mode"] == txn.AUTH_ONLINE and "auth_id" not in record):
        asked = {"kind": record["kind"], "card": record["card"],
                 "currency": record["currency"], "amount_minor": record["amount_minor"],
                 "card_value_minor": 0, "time": record["time"],
                 "terminal": record["terminal"], "seq": record["seq"]}
        for name in ("program", "sun"):  # one tap: its request and its record carry it
            if record.get(name) is not None:
                asked[name] = record[name]
        answer = book.authorize(asked, record["time"])
        if answer["approved"]:
            record["auth_id"] = answer["auth_id"]
    return record


def load_auth_id(book: CardBook, card: str, kind: int, amount_minor: int, time_s: float,
                 program: str | None = None, terminal: str = "T1", seq: int = 1,
                 currency: str = "EUR") -> str:
    """The auth id of an approved issue or top-up, for a record built (and signed) apart."""
    record = approve_load(book, {
        "kind": kind, "card": card, "currency": currency, "amount_minor": amount_minor,
        "card_value_minor": amount_minor, "time": int(time_s), "terminal": terminal,
        "seq": seq, "auth_mode": txn.AUTH_ONLINE, "program": program})
    assert "auth_id" in record, "the load was declined"
    return str(record["auth_id"])
