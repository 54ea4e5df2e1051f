"""Builders of valid settlement batches for the ledger tests: change one field, keep the rest."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from ledger import Books, LedgerRejected, PostResult
from ledger.db import open_database
from ledger.feed_sql import parse_cursor
from protocol import engine

DIGEST = "ab" * 32
FEED_WAIT_S = 10.0
"""PostgreSQL serves a change only once every older writer on the server has ended, and the
test server is shared: a read of the feed waits that out, up to this long."""


def at(day: str, hour: int = 12) -> int:
    """Unix time of `hour` o'clock UTC on the ISO date `day` (for transaction times)."""
    return int(datetime.fromisoformat(day).replace(hour=hour, tzinfo=UTC).timestamp())


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
    txn_id: str, card: str = "C1", amount_minor: int = 1000, bonus_minor: int = 0, **fields: Any
) -> dict[str, Any]:
    """Value loaded for cash, with an optional promotion bonus (card value = amount + bonus)."""
    return txn(
        txn_id,
        "topup",
        card,
        amount_minor=amount_minor,
        bonus_minor=bonus_minor,
        card_value_minor=amount_minor + bonus_minor,
        **fields,
    )


def purchase(
    txn_id: str,
    card: str = "C1",
    card_value_minor: int = 1000,
    points: int = 10,
    amount_minor: int | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A sale paid (at least partly) from the card, earning points (posting a hold if given)."""
    total = card_value_minor if amount_minor is None else amount_minor
    return txn(
        txn_id,
        "purchase",
        card,
        amount_minor=total,
        card_value_minor=card_value_minor,
        points=points,
        **fields,
    )


def refund(
    txn_id: str,
    ref_txn_id: str,
    card: str = "C1",
    card_value_minor: int = 0,
    points: int = 0,
    bonus_minor: int = 0,
    amount_minor: int | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Part or all of an earlier purchase given back to the card, or of an earlier issue or
    topup taken off it (card value = cash paid back + bonus reversed; amount = the cash)."""
    return txn(
        txn_id,
        "refund",
        card,
        amount_minor=card_value_minor - bonus_minor if amount_minor is None else amount_minor,
        card_value_minor=card_value_minor,
        bonus_minor=bonus_minor,
        points=points,
        ref_txn_id=ref_txn_id,
        **fields,
    )


def expire(
    txn_id: str, card: str = "C1", card_value_minor: int = 0, points: int = 0, **fields: Any
) -> dict[str, Any]:
    """Value and/or points that lapsed, moved to the merchant's breakage."""
    return txn(
        txn_id,
        "expire",
        card,
        amount_minor=card_value_minor,
        card_value_minor=card_value_minor,
        points=points,
        **fields,
    )


def cashout(
    txn_id: str, card: str = "C1", amount_minor: int = 1000, **fields: Any
) -> dict[str, Any]:
    """Card value paid out in cash at the counter (card value = amount)."""
    return txn(
        txn_id, "cashout", card, amount_minor=amount_minor, card_value_minor=amount_minor, **fields
    )


def hold_request(
    hold_id: str, card: str = "C1", amount_minor: int = 1000, ttl_s: int = 120, **fields: Any
) -> dict[str, Any]:
    """A valid POST /v1/holds body from terminal T1 of merchant M1."""
    document: dict[str, Any] = {
        "hold_id": hold_id,
        "card": card,
        "currency": "EUR",
        "amount_minor": amount_minor,
        "ttl_s": ttl_s,
        "terminal": "T1",
        "merchant": "M1",
    }
    document.update(fields)
    return document


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


def posted_rows(dsn: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    """Rows straight from the books' database (a second connection, after the commit)."""
    database = open_database(dsn)
    try:
        return [tuple(row) for row in database.fetch(sql, params)]
    finally:
        database.close()


def posted_legs(dsn: str, txn_id: str) -> list[tuple[Any, ...]]:
    """The entries one transaction posted, in posting order."""
    return posted_rows(
        dsn,
        "SELECT account_kind, owner, unit, amount_minor FROM entries WHERE txn_id = ? ORDER BY id",
        txn_id,
    )


def account_totals(dsn: str) -> dict[tuple[str, str], int]:
    """Every account kind's total per unit, over all owners, zero totals left out."""
    rows = posted_rows(
        dsn,
        "SELECT account_kind, unit, CAST(SUM(amount_minor) AS BIGINT) FROM entries"
        " GROUP BY account_kind, unit",
    )
    return {(kind, unit): total for kind, unit, total in rows if total}


def report_history() -> dict[str, Any]:
    """Seven cards over two months, for the report tests (see test_ledger_reports.py)."""
    cards = [("A", "gift"), ("B", "gift"), ("C", "gift"), ("D", "loyalty"), ("E", "loyalty")]
    cards.append(("F", "gift"))
    issues = [
        issue(f"T0-{n}", card=card, amount_minor=10_000, program=program, time=at("2025-10-01"))
        for n, (card, program) in enumerate(cards, start=1)
    ]
    return batch(
        "gw1-history",
        *issues,
        purchase("T1-1", "B", 4000, points=0, time=at("2025-10-15")),
        purchase("T2-1", "D", 800, points=8, time=at("2025-10-20")),
        issue("T0-7", "K", 20_000, currency="SEK", program="gift", time=at("2025-11-01")),
        topup("T1-2", "B", 1000, bonus_minor=100, time=at("2025-11-02")),
        purchase("T3-1", "C", 1500, points=0, time=at("2025-11-05")),
        purchase("T3-2", "C", 1500, points=0, time=at("2025-11-06")),
        refund("T3-3", "T3-1", "C", card_value_minor=500, time=at("2025-11-07")),
        purchase("T1-3", "A", 1000, points=0, time=at("2025-11-10")),
        purchase("T2-2", "E", 1000, points=10, time=at("2025-11-15")),
        purchase("T2-3", "E", 1000, points=10, time=at("2025-11-16", hour=9)),
        purchase("T2-4", "E", 1000, points=10, time=at("2025-11-16", hour=18)),
        purchase("T1-4", "A", 2000, points=0, amount_minor=3000, time=at("2025-11-20")),
        expire("T9-1", "E", points=15, time=at("2025-11-25")),
        expire("T9-2", "F", card_value_minor=2000, merchant="M2", time=at("2025-11-26")),
        purchase("T1-5", "A", 2000, points=0, time=at("2025-11-28")),
        purchase("T2-5", "E", 1000, points=10, time=at("2025-11-28")),
        purchase("T1-6", "B", 500, points=0, time=at("2025-11-29")),
        purchase("T4-1", "K", 9900, points=0, currency="SEK", time=at("2025-11-30")),
        purchase("T1-7", "A", 500, points=0, time=at("2025-12-01")),
    )


def replace_last(*bad: dict[str, Any]) -> Any:
    """Mutation of a batch: its last transaction is replaced by `bad` (one or more)."""

    def mutate(document: dict[str, Any]) -> None:
        document["transactions"][-1:] = list(bad)

    return mutate


def assert_txn_refused(books: Books, bad: dict[str, Any], reason: str) -> PostResult:
    """Posting `bad` refuses its last transaction alone, with `reason`: every other one is in
    the books, the refused one posts nothing and is kept in the quarantine (and alarmed);
    sent again, the batch answers the same refusal and changes nothing."""
    refused_id = bad["transactions"][-1]["txn_id"]
    before = books.counts()
    result = books.post_batch(bad)
    assert result.status == "partial", result
    assert [(r.txn_id, r.reason) for r in result.refused] == [(refused_id, reason)], result
    assert result.posted + result.already_posted == len(bad["transactions"]) - 1
    after = books.counts()
    assert after["transactions"] == before["transactions"] + result.posted
    assert after["refused_txns"] == before["refused_txns"] + 1
    assert after["alarms"] == before["alarms"] + 1
    assert books.alarms()[-1]["reason"] == reason
    [kept] = books.refused_transactions(bad["batch_id"])
    assert (kept["txn_id"], kept["reason"]) == (refused_id, reason)
    # Not in the books, unless it is another transaction's id (the conflict).
    assert reason == "txn_conflict" or kept["posted_batch_id"] is None
    assert_balanced(books)
    settled = snapshot(books)
    again = books.post_batch(bad)
    assert (again.status, again.refused) == ("duplicate", result.refused)
    assert snapshot(books) == settled
    return result


def assert_refused_unchanged(books: Books, bad: dict[str, Any], reason: str,
                             http_status: int | None = None) -> None:
    """Posting `bad` is refused whole with `reason` (a fault of its envelope: a 4xx, the
    sender's fault; `http_status` when given) and the books are as they were."""
    before = snapshot(books)
    try:
        books.post_batch(bad)
    except LedgerRejected as refusal:
        assert refusal.reason == reason, refusal.detail
        assert 400 <= refusal.http_status < 500
        assert http_status is None or refusal.http_status == http_status
    else:
        raise AssertionError(f"batch {bad['batch_id']} was posted; expected {reason}")
    assert snapshot(books) == before


def read_feed(books: Books, cursor: str = "0.0",
              expected: int = 1) -> tuple[list[dict[str, Any]], str]:
    """The changes after `cursor`, read again until at least `expected` are served (or
    FEED_WAIT_S passed: what was read then)."""
    parsed = parse_cursor(cursor)
    assert parsed is not None
    deadline = time.monotonic() + FEED_WAIT_S
    while True:
        answer = books.card_changes(parsed)
        if len(answer["changes"]) >= expected or time.monotonic() > deadline:
            return answer["changes"], answer["next"]
        time.sleep(0.05)


DAY_S = 86_400


class EngineShop:
    """Cards of one program through the engine, each operation posted as the gateway
    settles it (the engine's legs, version and the reward item), one batch each."""

    def __init__(self, books: Books, program: dict[str, Any], start_s: int) -> None:
        self.books = books
        self.program = program
        self.start_s = start_s  # engine day 0 starts here
        self.states: dict[str, Any] = {}
        self.posted = 0

    def post(self, card: str, op: dict[str, Any], hold_id: str | None = None,
             merchant: str = "M1", day: int = 0) -> str:
        """Apply `op` on engine day `day` and post it; its txn_id (a refund names its sale's
        in op["txn"])."""
        self.states[card], effects = engine.apply(self.states.get(card), self.program, op,
                                                  self.start_s // DAY_S + day)
        assert "declined" not in effects, effects
        self.posted += 1
        txn_id = f"S1-{self.posted}"  # its own till: no other builder's ids
        common: dict[str, Any] = {"time": self.start_s + day * DAY_S,
                                  "version": effects["version"], "legs": effects["legs"],
                                  "merchant": merchant}
        if hold_id is not None:
            common["hold_id"] = hold_id
        if op["op"] == "issue":
            made = issue(txn_id, card, effects["value_minor"], program=self.program["id"],
                         **common)
        elif op["op"] in ("purchase", "reward"):
            extra = {"reward": effects["item"]} if op["op"] == "reward" else {}
            made = purchase(txn_id, card, effects["card_minor"], effects["points_earned"],
                            effects["amount_minor"], discount_minor=effects["discount_minor"],
                            redeem_points=effects["points_redeemed"], **extra, **common)
        else:
            made = refund(txn_id, op["txn"], card, 0, effects["points_reversed"],
                          amount_minor=effects["amount_minor"],
                          redeem_points=effects["points_restored"], **common)
        assert self.books.post_batch(batch(f"gw1-shop-{self.posted}", made)).posted == 1
        return txn_id
