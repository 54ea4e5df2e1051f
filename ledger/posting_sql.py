"""SQL of the posting path: read what a batch depends on, write what its plan decided.

Called only inside `Database.transact`. `read_view` first locks the rows of the cards the
batch names, in card order (on PostgreSQL; SQLite's one writer excludes everyone anyway), so
no hold or other batch can change those cards before the plan is written, and two batches
that share cards cannot deadlock: each waits for the other's cards in the same order. What
it reads after the lock is what the batches before it committed. A card, txn or batch id
that a concurrent batch inserts first makes the insert here fail on its unique key, and the
whole transaction is run again (`ledger.db.postgres`). Look-ups are by id lists (one or a
few queries per batch, never one per transaction) and rows go in with
`Session.bulk_insert`. The rules in between are `ledger.plan`'s (pure); the holds a batch
posts are read and closed by `ledger.hold_sql`. The transactions a batch refused are kept
with it (`refused_txns`, each also an alarm row), so the batch sent again is answered with
the same refusals.
"""

from __future__ import annotations

from operator import attrgetter

from ledger import feed_sql, hold_sql, sun_sql
from ledger.db import Row, Session
from ledger.model import KIND_EXPIRE, KIND_REFUND, TXN_STORED_FIELDS, Batch, Txn, TxnRefusal
from ledger.plan import BooksView, CardState, OriginalState, Plan
from ledger.schema import ALARM_COLUMNS, CARD_COLUMNS, ENTRY_COLUMNS, REFUSED_COLUMNS, TXN_COLUMNS
from protocol.accounts import CARD_POINTS, CARD_VALUE


def find_batch_hash(database: Session, batch_id: str) -> str | None:
    """The content hash a batch_id was first posted with, or None if it is new."""
    rows = database.fetch("SELECT content_hash FROM batches WHERE batch_id = ?", (batch_id,))
    return rows[0][0] if rows else None


def find_refusals(database: Session, batch_id: str) -> tuple[TxnRefusal, ...]:
    """The transactions a posted batch refused, in batch order (for its duplicate answer)."""
    rows = database.fetch(
        "SELECT txn_id, reason, detail, content_hash, position FROM refused_txns"
        " WHERE batch_id = ? ORDER BY position",
        (batch_id,),
    )
    return tuple(TxnRefusal(*row) for row in rows)


def read_view(database: Session, batch: Batch, now: int) -> BooksView:
    """The posted txns, cards, refund originals and holds that this batch's ids touch; the
    cards' rows (and the holds' the batch names) locked until the batch commits.

    A refund is on the card of its original and a hold posts on its own card (the plan
    refuses others), so the card locks also keep refund totals and holds from changing."""
    txns = batch.valid_transactions()
    cards = database.fetch_in(
        "SELECT card, program, currency, activated_txn_id FROM cards WHERE {match}"
        f" ORDER BY card{database.lock_rows}",
        "card",
        (txn.card for txn in txns),
    )
    posted = database.fetch_in(
        "SELECT txn_id, content_hash FROM transactions WHERE {match}",
        "txn_id",
        (txn.txn_id for txn in txns),
    )
    refs = [txn.ref_txn_id for txn in txns if txn.ref_txn_id is not None]
    hold_ids = [txn.hold_id for txn in txns if txn.hold_id is not None]
    expiring = sorted({txn.card for txn in txns if txn.kind == KIND_EXPIRE})
    return BooksView(
        posted_hashes=dict(posted),
        cards={row[0]: CardState(*row) for row in cards},
        originals=_read_originals(database, refs) if refs else {},
        holds=hold_sql.read_states(database, hold_ids, now) if hold_ids else {},
        balances=read_balances(database, expiring) if expiring else {},
    )


def read_balances(database: Session, cards: list[str]) -> dict[str, tuple[int, int]]:
    """(value, points) of each card as its entries add up (rows locked above: no batch can
    change them before this one commits); a card without entries holds (0, 0)."""
    totals = {card: [0, 0] for card in cards}
    for owner, account_kind, total in database.fetch_in(
            "SELECT owner, account_kind, CAST(SUM(amount_minor) AS BIGINT) FROM entries"
            f" WHERE account_kind IN ('{CARD_VALUE}', '{CARD_POINTS}') AND {{match}}"
            " GROUP BY owner, account_kind", "owner", cards):
        totals[owner][0 if account_kind == CARD_VALUE else 1] = -int(total)
    return {card: (value, points) for card, (value, points) in totals.items()}


def _read_originals(database: Session, refs: list[str]) -> dict[str, OriginalState]:
    """Transactions named by refunds, with the card value, points and bonus refunded so far."""
    originals = {
        row[0]: OriginalState(*row)
        for row in database.fetch_in(
            "SELECT txn_id, kind, card, currency, card_value_minor, points, bonus_minor"
            " FROM transactions WHERE {match}",
            "txn_id",
            refs,
        )
    }
    refunded = database.fetch_in(
        "SELECT ref_txn_id, CAST(SUM(card_value_minor) AS BIGINT), CAST(SUM(points) AS BIGINT),"
        " CAST(SUM(bonus_minor) AS BIGINT)"
        f" FROM transactions WHERE kind = '{KIND_REFUND}' AND {{match}} GROUP BY ref_txn_id",
        "ref_txn_id",
        refs,
    )
    for ref_txn_id, card_value_minor, points, bonus_minor in refunded:
        original = originals[ref_txn_id]
        original.refunded_card_value_minor = card_value_minor
        original.refunded_points = points
        original.refunded_bonus_minor = bonus_minor
    return originals


def write_plan(database: Session, batch: Batch, plan: Plan, received_at: int) -> None:
    """Insert the batch row, its new transactions, their entries, card changes, holds posted,
    and the transactions it refused with an alarm for each."""
    database.execute(
        "INSERT INTO batches (batch_id, content_hash, gateway_id, created, received_at,"
        " txn_count, posted_count) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            batch.batch_id,
            batch.content_hash,
            batch.gateway_id,
            batch.created,
            received_at,
            len(batch.transactions),
            len(plan.txns),
        ),
    )
    database.bulk_insert("transactions", TXN_COLUMNS, (_txn_row(txn, batch) for txn in plan.txns))
    feed_sql.note(database, batch.gateway_id, [(txn.txn_id, txn.card) for txn in plan.txns])
    database.bulk_insert("entries", ENTRY_COLUMNS, plan.entries)
    database.bulk_insert("cards", CARD_COLUMNS, (_card_row(card) for card in plan.new_cards))
    for card in plan.changed_cards:
        database.execute(
            "UPDATE cards SET program = ?, activated_txn_id = ? WHERE card = ?",
            (card.program, card.activated_txn_id, card.card),
        )
    # After the cards rows: an issue's counter raises the card it creates. The batch holds
    # these cards' row locks (read_view), as a hold does.
    sun_sql.raise_to(database, sun_sql.highest_per_card(
        (txn.card, txn.sun_counter) for txn in plan.txns).items())
    hold_sql.record_postings(database, batch.batch_id, plan.hold_postings, received_at)
    database.bulk_insert(
        "refused_txns",
        REFUSED_COLUMNS,
        (
            (batch.batch_id, r.position, r.txn_id, r.reason, r.detail, r.content_hash, received_at)
            for r in plan.refused
        ),
    )
    # An alarm each, in the batch's own transaction: the refusal and its alarm stand or fall
    # together with the postings of the rest of the batch.
    database.bulk_insert(
        "alarms",
        ALARM_COLUMNS,
        (
            (received_at, r.reason, f"batch {batch.batch_id} refused {r.txn_id}: {r.detail}")
            for r in plan.refused
        ),
    )


def insert_alarm(database: Session, at: int, reason: str, detail: str) -> None:
    """Record an alarm row for operators (id reuse with other content, and the like)."""
    database.execute(
        "INSERT INTO alarms (at, reason, detail) VALUES (?, ?, ?)", (at, reason, detail)
    )


_stored_values = attrgetter(*TXN_STORED_FIELDS)


def _txn_row(txn: Txn, batch: Batch) -> Row:
    """A transactions row in TXN_COLUMNS order: its batch, then the stored fields."""
    return (batch.batch_id, *_stored_values(txn))


def _card_row(card: CardState) -> Row:
    """A cards row in CARD_COLUMNS order."""
    return (card.card, card.program, card.currency, card.activated_txn_id)
