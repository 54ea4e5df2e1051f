"""SQL of the office's card operations: program operations with no money that the ledger
posts itself, because they need the chain rather than one counter (issue 18 items 5 and 7).

    grant   a targeted offer issued to a card: {"offer", "uses", "last_day"}
            (protocol/engine_promotions.py `grant`); the office picks the cards: a list, a
            list of customers, or a segment of the customer reports (ledger/offers.py)
    rank    a card's tier for the next period by its rank in the chain: {"level", "period"}
            (protocol/engine_rank.py; ledger/rank.py ranks the cards)

Each is posted as a card replacement's transfer is (ledger/replace_sql.py), in the caller's
one database transaction: the cards' rows locked in card order (as a batch locks them); one
desk batch (gateway DESK); per card one `transactions` row of the operation's kind with all
amounts 0 and the terms in `card_op` (canonical JSON), no entries (nothing moves), one card
feed row (every gateway serving the card applies it from the feed, one taking the card on
replays it: protocol/engine_replay.py `posted_op`); and the card's kept engine state
advanced by the same operation (engine_sql.apply_posted). So the ledger, every gateway and
every replay apply the same operation, and agree on the card's grants and tier.

Judged before anything is written, card by card (the others still post):
    card_unknown            the ledger has no such card
    program_mismatch        the card is in another program than the operation's
    engine_state_unknown    the ledger keeps no engine state for the card (started without
                            programs, or the state was dropped: ledger/card_engine.py); an
                            operation the ledger cannot judge is not posted
    the engine's reason     the engine declines the operation on the card's kept state (a
                            period already ranked: RANK_PERIOD_ONCE, say)
Idempotent: a transaction's id names the operation and the card (`grant_txn_id`,
`rank_txn_id`): posting it again finds it and writes nothing for that card ("already").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ledger import engine_sql, feed_sql
from ledger.db import Session
from ledger.model import Txn, canonical_json, content_hash, sha256_hex
from ledger.replace_sql import DESK
from ledger.schema import TXN_COLUMNS
from protocol import engine
from protocol.engine_replay import DAY_S

ENGINE_STATE_UNKNOWN = "engine_state_unknown"


@dataclass(frozen=True, slots=True)
class CardOp:
    """One operation with no money for one card: its kind, transaction id and terms."""

    card: str
    kind: str
    txn_id: str
    terms: dict[str, Any]


def grant_txn_id(issue: str, card: str) -> str:
    """The transaction id of issue `issue`'s grant to `card`."""
    return f"grant-{issue}-{card}"


def rank_txn_id(program: str, period: int, card: str) -> str:
    """The transaction id of a card's rank in `program` for `period`."""
    return f"rank-{program}-{period}-{card}"


def post(session: Session, programs: engine_sql.Programs | None, program_id: str,
         batch_id: str, ops: list[CardOp], now: int) -> dict[str, Any]:
    """Post `ops` (see the module) as one desk batch (its id `batch_id` and a digest of the
    transactions it posts): {"posted": [cards], "already":
    [cards], "declined": {card: reason}}. Nothing is written when nothing is posted."""
    result: dict[str, Any] = {"posted": [], "already": [], "declined": {}}
    if not ops:
        return result
    ops = sorted(ops, key=lambda op: op.card)
    known = {row[0]: row for row in session.fetch_in(
        "SELECT card, program, currency FROM cards WHERE {match} ORDER BY card"
        + session.lock_rows, "card", [op.card for op in ops])}
    done = {row[0] for row in session.fetch_in(
        "SELECT txn_id FROM transactions WHERE {match}", "txn_id", [op.txn_id for op in ops])}
    program = None if programs is None else programs.get(program_id)
    kept = engine_sql.read(session, [op.card for op in ops if op.card in known])
    day = now // DAY_S
    txns: list[Txn] = []
    for op in ops:
        if op.txn_id in done:
            result["already"].append(op.card)
            continue
        reason = _judge(op, known.get(op.card), program_id, program, kept.get(op.card), day)
        if reason is not None:
            result["declined"][op.card] = reason
            continue
        txns.append(_txn(op, known[op.card][2], program_id, now))
        result["posted"].append(op.card)
    if not txns:
        return result
    # One batch per set of new transactions: issuing again to more cards is another batch.
    batch_id = f"{batch_id}-{content_hash([txn.txn_id for txn in txns])[:16]}"
    session.execute(
        "INSERT INTO batches (batch_id, content_hash, gateway_id, created, received_at,"
        " txn_count, posted_count) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (batch_id, content_hash([txn.content_hash for txn in txns]), DESK, now, now,
         len(txns), len(txns)))
    session.bulk_insert("transactions", TXN_COLUMNS, (
        tuple(batch_id if column == "batch_id" else getattr(txn, column)
              for column in TXN_COLUMNS) for txn in txns))
    feed_sql.note(session, DESK, [(txn.txn_id, txn.card) for txn in txns])
    assert programs is not None  # _judge refused every op without programs
    engine_sql.apply_posted(session, programs, batch_id, DESK, txns, now)
    return result


def _judge(op: CardOp, card: tuple[Any, ...] | None, program_id: str,
           program: dict[str, Any] | None, kept: engine_sql.StoredEngine | None,
           day: int) -> str | None:
    """Why `op` is not posted, or None (see the module)."""
    if card is None:
        return "card_unknown"
    if card[1] != program_id:
        return "program_mismatch"
    if program is None or kept is None or kept.state is None or kept.program != program_id:
        return ENGINE_STATE_UNKNOWN
    _, effects = engine.apply(kept.state, program, {**op.terms, "op": op.kind,
                                                    "id": op.txn_id},
                              max(day, kept.state["day"]))
    declined = effects.get("declined")
    return None if declined is None else str(declined)


def _txn(op: CardOp, currency: str, program_id: str, now: int) -> Txn:
    terms = canonical_json(op.terms)
    document = {"txn_id": op.txn_id, "terminal": DESK, "seq": 0, "merchant": DESK,
                "kind": op.kind, "card": op.card, "currency": currency, "amount_minor": 0,
                "card_value_minor": 0, "bonus_minor": 0, "points": 0, "ref_txn_id": None,
                "program": program_id, "auth": "online", "card_op": terms, "time": now}
    return Txn(txn_id=op.txn_id, terminal=DESK, seq=0, merchant=DESK, time=now,
               kind=op.kind, card=op.card, currency=currency, amount_minor=0,
               card_value_minor=0, bonus_minor=0, points=0, ref_txn_id=None,
               program=program_id, digest=sha256_hex(canonical_json(document)),
               auth="online", content_hash=content_hash(document), card_op=terms)


def card_ops(session: Session, kind: str, program_id: str) -> list[dict[str, Any]]:
    """Every posted operation of `kind` in `program_id`: [{"txn_id", "card", "time",
    **terms}] in posting order."""
    rows = session.fetch(
        "SELECT txn_id, card, time, card_op FROM transactions WHERE kind = ? AND program = ?"
        " ORDER BY time, txn_id", (kind, program_id))
    return [{"txn_id": txn_id, "card": card, "time": int(time), **json.loads(terms)}
            for txn_id, card, time, terms in rows]
