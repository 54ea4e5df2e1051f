"""SQL of a card replacement: a lost or damaged card's value and points move to a new card.

`replace` does all of it in the caller's one database transaction, so it happens whole or
not at all:

1. lock both cards' rows (in card order, as a batch locks its cards) and judge: the old card
   must be known, never replaced before, not blocked by the ledger for an overdraft (its
   value is owed, not held: exposure_sql), hold no open unexpired hold and carry no
   negative value; the new card must be unknown, or known only by its registration (an
   issue of zero value, nothing else posted, no value, no points) in the same program and
   currency. Anything else raises and writes nothing;
2. block the old card (reason "replaced by NEW", the operator's login), unless a person
   blocked it already (lost or stolen: usually the first thing done at the counter);
3. register the new card (unknown before) with the old card's program and currency, and
   post one `transfer` transaction (`posting_rules.transfer_legs`): card_value and
   card_points from the old card to the new, balanced per unit. Its row names the old card,
   its entries both; the card feed gets a row for each card (so each card's history shows
   it, and a gateway that takes the new card on knows the balances include it);
4. keep the replacement (`card_replacements`: old, new, transaction, reason, time, login,
   customer) for audit, and move the old card's customer link to the new card (with a
   customer audit row);
5. move the old card's kept program-engine state (tier, discount, points lots, sales) to the
   new card (`engine_sql.move`), when the ledger has programs;
6. put the new card in the old card's company, if it is in one (`company_sql.
   follow_replacement`): the value moved stays under the company's shared budget, and the
   old card stays in the company, blocked, so its spend of the period still counts.

A refund posted on the new card may name a sale of the old card (`follow_replacements`): the
gateways moved the old card's refundable sales to it.

A sale of the old card that reaches the ledger later (made offline, or by a gateway standing
in, before the block reached its till) is posted as happened, alarmed `replaced_card_used`
(`alarm_late_uses`, in the batch's own transaction) and, once it takes the old card below
zero, listed by the exposure report.

The batch row that holds the transfer is the desk's (gateway "DESK"), like a registration's:
every gateway applies it from the feed (gateway/card_feed.py).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ledger import block_sql, company_sql, customers_sql, engine_sql, feed_sql, hold_sql
from ledger.db import Session
from ledger.errors import BatchConflict, BatchInvalid, HoldRefused, NotFound
from ledger.exposure_sql import OVERDRAFT_LOGIN
from ledger.limits import ID_CHARS_MAX
from ledger.model import KIND_ISSUE, KIND_TRANSFER, Txn, content_hash
from ledger.plan import BooksView
from ledger.posting_rules import transfer_legs
from ledger.schema import (
    ALARM_COLUMNS,
    CARD_COLUMNS,
    ENTRY_COLUMNS,
    REPLACEMENT_COLUMNS,
    TXN_COLUMNS,
)

DESK = "DESK"
"""The gateway id and terminal of operations done at the ledger (a registration's too)."""
REPLACEMENT_CHAIN_MAX = 16
"""Replacements of replacements followed for a refund's original (a card lost 16 times)."""
REPLACED_REASON = "replaced by {new}"
"""The old card's block reason."""
LATE_USE_REASON = "replaced_card_used"
"""The alarm of a transaction posted on a card after it was replaced: sold offline or
standing in on the old card (its value moved: the sale is exposure, in the exposure report
once it takes the old card below zero)."""
REPLACEMENT_FIELDS = ("old_card", "new_card", "txn_id", "reason", "at", "login", "customer_id")
"""One replacement as the API shows it (a card_replacements row)."""


def replace(session: Session, old: str, new: str, login: str, reason: str,
            now: int, programs: engine_sql.Programs | None = None) -> dict[str, Any]:
    """Replace card `old` by card `new` (see the module): the replacement as kept, with the
    value and points moved. `programs`: the ledger's, to move the old card's kept engine
    state (ledger/engine_sql.py)."""
    if old == new:
        raise BatchInvalid("card_same", "a card cannot replace itself")
    cards = {row[0]: row for row in session.fetch(
        "SELECT card, program, currency, activated_txn_id FROM cards WHERE card IN (?, ?)"
        f" ORDER BY card{session.lock_rows}", (old, new))}
    if old not in cards:
        raise NotFound("card_unknown", f"the ledger has no card {old[:64]!r}")
    _, program, currency, activated = cards[old]
    _check_old(session, old, now)
    funds = hold_sql.card_funds(session, old, now)
    if funds.value_minor < 0:
        raise BatchConflict("card_overdrawn",
                            f"card {old[:64]} owes {-funds.value_minor}: nothing to move")
    if new in cards:
        _check_new(session, cards[new], program, currency)
    txn_id = transfer_id(new)
    merchant = _merchant(session, old, activated)
    points = max(funds.points, 0)
    owed_points = min(funds.points, 0)  # points owed stay owed on the old card's account
    transaction = {"txn_id": txn_id, "terminal": DESK, "seq": 0, "merchant": merchant,
                   "kind": KIND_TRANSFER, "card": old, "currency": currency,
                   "amount_minor": funds.value_minor, "card_value_minor": funds.value_minor,
                   "bonus_minor": 0, "points": points, "ref_txn_id": None, "program": program,
                   "auth": "online", "replaced_by": new}
    digest = hashlib.sha256(json.dumps(transaction, sort_keys=True).encode()).hexdigest()
    batch_id = txn_id
    session.execute(
        "INSERT INTO batches (batch_id, content_hash, gateway_id, created, received_at,"
        " txn_count, posted_count) VALUES (?, ?, ?, ?, ?, 1, 1)",
        (batch_id, content_hash(transaction), DESK, now, now))
    stored = {**transaction, "time": now, "digest": digest, "content_hash": content_hash(
        transaction), "batch_id": batch_id, "hold_id": None, "legs": None}
    session.bulk_insert("transactions", TXN_COLUMNS,
                        [tuple(stored.get(column) for column in TXN_COLUMNS)])
    if new not in cards:
        session.bulk_insert("cards", CARD_COLUMNS, [(new, program, currency, txn_id)])
    # Before the transfer's entries and feed rows: an old card's state never kept is built
    # from its history as it was.
    engine_sql.move(session, programs, old, new, funds.value_minor, points, txn_id, now)
    legs = transfer_legs(old, new, currency, funds.value_minor, points)
    session.bulk_insert("entries", ENTRY_COLUMNS, [(txn_id, *leg) for leg in legs])
    feed_sql.note(session, DESK, [(txn_id, old), (txn_id, new)])
    feed_sql.hand_over(session, old, new)  # the stores serving the old card follow the new
    if not block_sql.is_blocked(session, old):
        block_sql.change(session, old, True, REPLACED_REASON.format(new=new), login, now)
    customer_id = customers_sql.card_owner(session, old, lock=True)
    if customer_id is not None:
        session.execute("UPDATE customer_cards SET card = ?, linked_at = ?, login = ?"
                        " WHERE card = ?", (new, now, login, old))
        customers_sql.audit(session, now, login, customer_id, "card_replaced",
                            f"card {old} replaced by {new}")
    session.bulk_insert("card_replacements", REPLACEMENT_COLUMNS,
                        [(old, new, txn_id, reason, now, login, customer_id)])
    company = company_sql.follow_replacement(session, old, new, login, now)
    return {"old_card": old, "new_card": new, "txn_id": txn_id, "reason": reason, "at": now,
            "login": login, "customer_id": customer_id, "currency": currency,
            "program": program, "value_minor": funds.value_minor, "points": points,
            "points_owed": -owed_points, "company": company}


def transfer_id(new: str) -> str:
    """The transfer's txn_id (and its batch's id): a card is the new card of one
    replacement at most; an id too long for a txn_id (ID_CHARS_MAX) is named by its digest."""
    txn_id = f"XFER-{new}"
    if len(txn_id) <= ID_CHARS_MAX:
        return txn_id
    return "XFER-" + hashlib.sha256(new.encode()).hexdigest()[:32]


def _check_old(session: Session, old: str, now: int) -> None:
    """Refuse an old card that was replaced, is blocked for an overdraft, or holds value."""
    if replacement_of(session, old) is not None:
        raise BatchConflict("card_replaced", f"card {old[:64]} was replaced before")
    block = block_sql.latest(session, old)
    if block is not None and block["blocked"] and block["login"] == OVERDRAFT_LOGIN:
        raise HoldRefused("card_blocked", f"card {old[:64]} is blocked: {block['reason']}")
    funds = hold_sql.card_funds(session, old, now)
    if funds.held_minor or funds.held_points:
        raise BatchConflict("card_held",
                            f"card {old[:64]} has open holds ({funds.held_minor} value,"
                            f" {funds.held_points} points): wait for their sales or voids")


def _check_new(session: Session, row: tuple[Any, ...], program: str | None,
               currency: str) -> None:
    """A known new card may only be registered: same program and currency, no value, no
    points, nothing posted but its registration's zero-value issue."""
    new, new_program, new_currency, _ = row
    if new_program != program or new_currency != currency:
        raise BatchInvalid("card_program_mismatch",
                           f"card {new[:64]} is in program {new_program} ({new_currency}),"
                           f" the old card in {program} ({currency})")
    history = session.fetch("SELECT kind, amount_minor FROM transactions WHERE card = ?",
                            (new,))
    funds = hold_sql.card_funds(session, new, 0)
    if (any(kind != KIND_ISSUE or amount for kind, amount in history) or funds.value_minor
            or funds.points or replacement_of(session, new, as_new=True) is not None):
        raise BatchConflict("card_has_history",
                            f"card {new[:64]} has value or history: only a new card may"
                            " replace another")


def _merchant(session: Session, old: str, activated: str | None) -> str:
    """The merchant the card was issued by (its latest transaction's, if not issued here)."""
    rows = session.fetch("SELECT merchant FROM transactions WHERE txn_id = ?", (activated,))
    if not rows:
        rows = session.fetch("SELECT merchant FROM transactions WHERE card = ?"
                             " ORDER BY time DESC LIMIT 1", (old,))
    return str(rows[0][0]) if rows else DESK


def alarm_late_uses(session: Session, batch_id: str, txns: list[Txn],
                    now: int) -> list[tuple[str, str]]:
    """Alarm each of a batch's posted transactions on a card replaced before it was posted
    (kept as happened: the sale was made); [(card, txn_id)]."""
    cards = sorted({txn.card for txn in txns})
    if not cards:
        return []
    replaced = {row[0] for row in session.fetch_in(
        "SELECT old_card FROM card_replacements WHERE {match}", "old_card", cards)}
    used = [(txn.card, txn.txn_id) for txn in txns if txn.card in replaced]
    session.bulk_insert("alarms", ALARM_COLUMNS, [
        (now, LATE_USE_REASON, f"card {card[:64]} was replaced, yet batch {batch_id[:64]}"
                               f" posted {txn_id[:64]} on it")
        for card, txn_id in used])
    return used


def follow_replacements(session: Session, view: BooksView) -> None:
    """Make each refund original in `view` the sale of the card that replaced its card (and
    of the card that replaced that one, ...): the gateways move a replaced card's sales to
    its new card, whose refunds then name them (plan.py: a refund is of its own card's
    sale). Changes the view's originals in place, before the batch is planned."""
    successor: dict[str, str] = {}
    pending = {original.card for original in view.originals.values()}
    for _ in range(REPLACEMENT_CHAIN_MAX):
        if not pending:
            break
        found: dict[str, str] = dict(session.fetch_in(
            "SELECT old_card, new_card FROM card_replacements WHERE {match}", "old_card",
            sorted(pending)))
        successor.update(found)
        pending = set(found.values()) - successor.keys()
    for original in view.originals.values():
        for _ in range(REPLACEMENT_CHAIN_MAX):
            if original.card not in successor:
                break
            original.card = successor[original.card]


def replacement_of(session: Session, card: str, as_new: bool = False) -> dict[str, Any] | None:
    """The replacement of `card` (as the old card; `as_new`: as the new one), or None."""
    column = "new_card" if as_new else "old_card"
    rows = session.fetch(f"SELECT {', '.join(REPLACEMENT_FIELDS)} FROM card_replacements"
                         f" WHERE {column} = ?", (card,))
    return dict(zip(REPLACEMENT_FIELDS, rows[0], strict=True)) if rows else None
