"""Builders of valid settlement batches for the ledger tests: change one field, keep the rest."""

from __future__ import annotations

from typing import Any

from ledger import Books

DIGEST = "ab" * 32


def txn(txn_id: str, kind: str, card: str = "C1", **fields: Any) -> dict[str, Any]:
    """A valid transaction of `kind` (amounts 0 unless given; program "gift" on issue)."""
    terminal, _, seq = txn_id.rpartition("-")
    document: dict[str, Any] = {
        "txn_id": txn_id,
        "terminal": terminal or "T1",
        "seq": int(seq) if seq.isdigit() else 0,
        "merchant": "M1",
        "time": 1_763_900_000,
        "kind": kind,
        "card": card,
        "currency": "EUR",
        "amount_minor": 0,
        "card_value_minor": 0,
        "bonus_minor": 0,
        "points": 0,
        "ref_txn_id": None,
        "program": "gift" if kind == "issue" else None,
        "digest": DIGEST,
        "auth": "online",
    }
    document.update(fields)
    return document


def issue(txn_id: str, card: str = "C1", amount_minor: int = 5000, **fields: Any) -> dict[str, Any]:
    """A card sold and loaded with `amount_minor` at the counter (card value = amount)."""
    return txn(
        txn_id, "issue", card, amount_minor=amount_minor, card_value_minor=amount_minor, **fields
    )


def topup(
    txn_id: str, card: str = "C1", amount_minor: int = 1000, bonus_minor: int = 0
) -> dict[str, Any]:
    """Value loaded for cash, with an optional promotion bonus (card value = amount + bonus)."""
    return txn(
        txn_id,
        "topup",
        card,
        amount_minor=amount_minor,
        bonus_minor=bonus_minor,
        card_value_minor=amount_minor + bonus_minor,
    )


def purchase(
    txn_id: str,
    card: str = "C1",
    card_value_minor: int = 1000,
    points: int = 10,
    amount_minor: int | None = None,
) -> dict[str, Any]:
    """A sale paid (at least partly) from the card, earning points."""
    total = card_value_minor if amount_minor is None else amount_minor
    return txn(
        txn_id,
        "purchase",
        card,
        amount_minor=total,
        card_value_minor=card_value_minor,
        points=points,
    )


def refund(
    txn_id: str, ref_txn_id: str, card: str = "C1", card_value_minor: int = 0, points: int = 0
) -> dict[str, Any]:
    """Part or all of an earlier purchase given back to the card."""
    return txn(
        txn_id,
        "refund",
        card,
        amount_minor=card_value_minor,
        card_value_minor=card_value_minor,
        points=points,
        ref_txn_id=ref_txn_id,
    )


def batch(
    batch_id: str, *transactions: dict[str, Any], created: int = 1_763_900_100
) -> dict[str, Any]:
    """A settlement batch from gateway gw1."""
    return {
        "batch_id": batch_id,
        "gateway_id": "gw1",
        "created": created,
        "transactions": list(transactions),
    }


def snapshot(books: Books) -> dict[str, Any]:
    """Everything a rejected batch must leave untouched (alarms are compared on their own)."""
    counts = books.counts()
    counts.pop("alarms")
    return {
        "counts": counts,
        "balances": books.balances(),
        "terminals": books.terminal_totals(),
        "trial_balance": books.trial_balance(),
    }


def assert_balanced(books: Books) -> None:
    """The trial balance is zero in every unit."""
    assert all(total == 0 for total in books.trial_balance().values()), books.trial_balance()
