"""The customer tables' SQL (ledger/schema.py) and the history of a card read from the books.

Each function takes a `Session` inside `Books.read` or `Books.transact`; nothing here knows a
personal value in clear (fields arrive sealed, phone numbers and e-mail addresses as keyed
digests: ledger/personal_crypto.py). A history is summed from the entries, never cached.
"""

from __future__ import annotations

from typing import Any

from ledger.db import Session
from ledger.errors import BatchTooLarge
from ledger.limits import HISTORY_TXNS_MAX

CUSTOMER_FIELDS = ("customer_id", "created_at", "updated_at", "key_id", "erased_at")
HISTORY_FIELDS = ("time", "txn_id", "store", "terminal", "merchant", "kind", "currency",
                  "amount_minor", "card_value_minor", "bonus_minor", "discount_minor", "points",
                  "redeem_points", "value_change_minor", "points_change", "expired_value_minor",
                  "expired_points", "value_balance_minor", "points_balance")
"""One transaction of a card's history: what it was (store = the gateway that posted it),
its program effects as the books have them (bonus, discount, points earned or taken back,
points redeemed, value and points that expired) and the card's running balances after it."""
AUDIT_FIELDS = ("id", "at", "login", "customer_id", "action", "detail")


def customer(session: Session, customer_id: str, lock: bool = False) -> dict[str, Any] | None:
    """The customer's row (no personal value), or None; `lock` for a change to it."""
    rows = session.fetch(
        "SELECT customer_id, created_at, updated_at, key_id, erased_at FROM customers"
        " WHERE customer_id = ?" + (session.lock_rows if lock else ""), (customer_id,))
    return dict(zip(CUSTOMER_FIELDS, rows[0], strict=True)) if rows else None


def key_ids(session: Session) -> set[str]:
    """The ids of the keys the books' customers are sealed under."""
    return {row[0] for row in session.fetch(
        "SELECT DISTINCT key_id FROM customers WHERE key_id IS NOT NULL")}


def insert_customer(session: Session, customer_id: str, now: int, key_id: str) -> None:
    session.execute("INSERT INTO customers (customer_id, created_at, updated_at, key_id,"
                    " erased_at) VALUES (?, ?, ?, ?, NULL)", (customer_id, now, now, key_id))


def touch(session: Session, customer_id: str, now: int) -> None:
    """Record that the customer changed at `now`."""
    session.execute("UPDATE customers SET updated_at = ? WHERE customer_id = ?",
                    (now, customer_id))


def sealed_fields(session: Session, customer_id: str) -> dict[str, str]:
    """{field: sealed value} of the customer."""
    return dict(session.fetch("SELECT field, sealed FROM customer_fields WHERE customer_id = ?",
                              (customer_id,)))


def put_field(session: Session, customer_id: str, field: str, sealed: str | None) -> None:
    """Set a sealed field, or remove it (None)."""
    if sealed is None:
        session.execute("DELETE FROM customer_fields WHERE customer_id = ? AND field = ?",
                        (customer_id, field))
        return
    session.execute(
        "INSERT INTO customer_fields (customer_id, field, sealed) VALUES (?, ?, ?)"
        " ON CONFLICT (customer_id, field) DO UPDATE SET sealed = excluded.sealed",
        (customer_id, field, sealed))


def lookup_owner(session: Session, lookup: str) -> str | None:
    """The customer whose phone or e-mail has this keyed digest, or None."""
    rows = session.fetch("SELECT customer_id FROM customer_lookups WHERE lookup = ?", (lookup,))
    return str(rows[0][0]) if rows else None


def put_lookup(session: Session, customer_id: str, kind: str, lookup: str | None) -> None:
    """Replace the customer's digest of `kind` (phone or email); None removes it. A digest
    another customer holds breaks the unique key (the caller checked it first; a race is
    retried by `Database.transact` and then finds the owner)."""
    session.execute("DELETE FROM customer_lookups WHERE customer_id = ? AND kind = ?",
                    (customer_id, kind))
    if lookup is not None:
        session.execute("INSERT INTO customer_lookups (lookup, customer_id, kind)"
                        " VALUES (?, ?, ?)", (lookup, customer_id, kind))


def erase(session: Session, customer_id: str, now: int) -> None:
    """Delete every sealed field and digest of the customer; keep its row as a stub."""
    session.execute("DELETE FROM customer_fields WHERE customer_id = ?", (customer_id,))
    session.execute("DELETE FROM customer_lookups WHERE customer_id = ?", (customer_id,))
    session.execute("UPDATE customers SET erased_at = ?, updated_at = ?, key_id = NULL"
                    " WHERE customer_id = ?", (now, now, customer_id))


_ACTIVITY = (
    "SELECT c.customer_id, c.updated_at, MAX(t.time), MAX(b.received_at) FROM customers c"
    " LEFT JOIN customer_cards cc ON cc.customer_id = c.customer_id"
    " LEFT JOIN card_changes ch ON ch.card = cc.card"
    " LEFT JOIN transactions t ON t.txn_id = ch.txn_id"
    " LEFT JOIN batches b ON b.batch_id = t.batch_id"
    " WHERE c.erased_at IS NULL AND c.updated_at < ?{where}"
    " GROUP BY c.customer_id, c.updated_at"
    " HAVING COALESCE(MAX(t.time), 0) < ? AND COALESCE(MAX(b.received_at), 0) < ?"
    " ORDER BY c.updated_at, c.customer_id{limit}")


def inactive(session: Session, before: int, limit: int) -> list[tuple[str, int]]:
    """Customers not erased whose last activity was before `before` (Unix seconds), the
    longest inactive first, at most `limit`: [(customer_id, last activity)]. Activity is a
    change of the customer (updated_at) and a transaction of a card linked to them now, by
    the later of its terminal's time and the ledger's receipt of its batch (so a terminal
    whose clock is behind does not make a regular look gone)."""
    rows = session.fetch(_ACTIVITY.format(where="", limit=" LIMIT ?"),
                         (before, before, before, limit))
    return [(str(row[0]), _last(row)) for row in rows]


def still_inactive(session: Session, customer_id: str, before: int) -> bool:
    """Whether the customer is (still) not erased and inactive since before `before`."""
    return bool(session.fetch(_ACTIVITY.format(where=" AND c.customer_id = ?", limit=""),
                              (before, customer_id, before, before)))


def _last(row: tuple[Any, ...]) -> int:
    return max(int(value) for value in row[1:] if value is not None)


def card_known(session: Session, card: str) -> bool:
    return bool(session.fetch("SELECT 1 FROM cards WHERE card = ?", (card,)))


def card_owner(session: Session, card: str, lock: bool = False) -> str | None:
    """The customer the card is linked to, or None."""
    rows = session.fetch("SELECT customer_id FROM customer_cards WHERE card = ?"
                         + (session.lock_rows if lock else ""), (card,))
    return str(rows[0][0]) if rows else None


def link(session: Session, customer_id: str, card: str, now: int, login: str) -> None:
    session.execute("INSERT INTO customer_cards (card, customer_id, linked_at, login)"
                    " VALUES (?, ?, ?, ?)", (card, customer_id, now, login))


def unlink(session: Session, card: str) -> None:
    session.execute("DELETE FROM customer_cards WHERE card = ?", (card,))


def cards(session: Session, customer_id: str) -> list[dict[str, Any]]:
    """The customer's cards, in card order: {"card", "linked_at", "linked_by"}."""
    rows = session.fetch("SELECT card, linked_at, login FROM customer_cards"
                         " WHERE customer_id = ? ORDER BY card", (customer_id,))
    return [{"card": card, "linked_at": at, "linked_by": login} for card, at, login in rows]


def former_cards(session: Session, customer_id: str) -> list[dict[str, Any]]:
    """Cards the customer had that were replaced (ledger/replace_sql.py keeps who owned the
    old card): {"card", "replaced_by", "replaced_at"}, oldest replacement first. Their
    transactions stay the customer's history after the link moved to the new card."""
    rows = session.fetch("SELECT old_card, new_card, at FROM card_replacements"
                         " WHERE customer_id = ? ORDER BY at, old_card", (customer_id,))
    return [{"card": old, "replaced_by": new, "replaced_at": at} for old, new, at in rows]


def audit(session: Session, at: int, login: str, customer_id: str, action: str,
          detail: str) -> None:
    """One line of the customer's audit trail (no personal value in `detail`)."""
    session.execute("INSERT INTO customer_audit (at, login, customer_id, action, detail)"
                    " VALUES (?, ?, ?, ?, ?)", (at, login, customer_id, action, detail))


def audit_trail(session: Session, customer_id: str) -> list[dict[str, Any]]:
    """The customer's audit trail, oldest first."""
    rows = session.fetch("SELECT id, at, login, customer_id, action, detail FROM customer_audit"
                         " WHERE customer_id = ? ORDER BY id", (customer_id,))
    return [dict(zip(AUDIT_FIELDS, row, strict=True)) for row in rows]


def card_history(session: Session, card: str) -> list[dict[str, Any]]:
    """Every posted transaction of the card, in the order of its terminal time (then of
    posting), with its effects and the card's running value and points after it;
    history_too_large beyond HISTORY_TXNS_MAX.

    Read through the card feed's rows (card_changes, one per posted transaction, indexed by
    card, naming the gateway that posted it); the changes from the card's own entries (its
    value and points accounts, indexed by owner) and what expired from the transaction's
    breakage entries (its merchant's account)."""
    total = int(session.fetch("SELECT COUNT(*) FROM card_changes WHERE card = ?",
                              (card,))[0][0])
    if total > HISTORY_TXNS_MAX:
        raise BatchTooLarge("history_too_large",
                            f"card {card[:64]} has {total} transactions, at most "
                            f"{HISTORY_TXNS_MAX} are listed")
    rows = session.fetch(
        "SELECT t.time, t.txn_id, c.gateway_id, t.terminal, t.merchant, t.kind, t.currency,"
        " t.amount_minor, t.card_value_minor, t.bonus_minor, t.discount_minor, t.points,"
        " t.redeem_points FROM card_changes c JOIN transactions t ON t.txn_id = c.txn_id"
        " WHERE c.card = ? ORDER BY t.time, c.id", (card,))
    changes: dict[tuple[str, str], int] = {}
    for txn_id, kind, total_minor in session.fetch(
            "SELECT txn_id, account_kind, CAST(SUM(amount_minor) AS BIGINT) FROM entries"
            " WHERE owner = ? AND account_kind IN ('card_value', 'card_points')"
            " GROUP BY txn_id, account_kind", (card,)):
        changes[(txn_id, kind)] = -int(total_minor)  # a liability: credits raise it
    expired: dict[tuple[str, str], int] = {}
    for txn_id, unit, total_minor in session.fetch(
            "SELECT e.txn_id, e.unit, CAST(SUM(e.amount_minor) AS BIGINT)"
            " FROM card_changes c JOIN transactions t ON t.txn_id = c.txn_id"
            " JOIN entries e ON e.owner = t.merchant AND e.account_kind = 'breakage'"
            " AND e.txn_id = t.txn_id WHERE c.card = ? GROUP BY e.txn_id, e.unit", (card,)):
        expired[(txn_id, "points" if unit == "PTS" else "value")] = -int(total_minor)
    value_minor = points = 0
    history = []
    for row in rows:
        item = dict(zip(HISTORY_FIELDS[:13], row, strict=True))
        txn_id = item["txn_id"]
        value_change = changes.get((txn_id, "card_value"), 0)
        points_change = changes.get((txn_id, "card_points"), 0)
        value_minor += value_change
        points += points_change
        item.update(value_change_minor=value_change, points_change=points_change,
                    expired_value_minor=expired.get((txn_id, "value"), 0),
                    expired_points=expired.get((txn_id, "points"), 0),
                    value_balance_minor=value_minor, points_balance=points)
        history.append(item)
    return history
