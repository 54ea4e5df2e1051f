"""The ledger's value types: a validated settlement batch, its transactions, and results.

They are frozen dataclasses so a batch that passed validation cannot be altered on its way
to the database. The content hashes are computed once, at validation, from the JSON the
gateway sent, because idempotency is judged on what was sent, not on what we parsed.

`Txn` is the one list of a transaction's fields. The other tiers derive theirs from it: the
keys a batch's transaction carries (TXN_KEYS, TXN_OPTIONAL_KEYS: validation, and the
gateway's settlement), and the columns of the transactions table (TXN_STORED_FIELDS:
`ledger.schema`, the INSERT of `ledger.posting_sql`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import MISSING, dataclass, fields
from typing import Any, NamedTuple

KIND_ISSUE = "issue"
KIND_TOPUP = "topup"
KIND_PURCHASE = "purchase"
KIND_REFUND = "refund"
KIND_EXPIRE = "expire"
KIND_CASHOUT = "cashout"
"""Card value paid out in cash at the counter (programs whose terms allow cash_out)."""
KINDS = (KIND_ISSUE, KIND_TOPUP, KIND_PURCHASE, KIND_REFUND, KIND_EXPIRE, KIND_CASHOUT)
KIND_TRANSFER = "transfer"
"""A replaced card's value and points moved to its new card (ledger/replace_sql.py). Posted
only by the ledger itself, never in a gateway's batch: not one of KINDS."""
KIND_GRANT = "grant"
"""A targeted offer issued to a card (ledger/card_ops_sql.py): no money; posted only by the
ledger itself, never in a gateway's batch."""
KIND_RANK = "rank"
"""A card's tier for the next period by its rank in the chain (ledger/card_ops_sql.py): no
money; posted only by the ledger itself, never in a gateway's batch."""


_CANONICAL_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def canonical_json(document: Any) -> str:
    """The canonical JSON text of a value: sorted keys, no spaces, ASCII only."""
    return _CANONICAL_ENCODER.encode(document)


def content_hash(document: Any) -> str:
    """SHA-256 hex of the canonical JSON of a value: the identity of what was sent."""
    return sha256_hex(canonical_json(document))


def sha256_hex(text: str) -> str:
    """SHA-256 hex of an ASCII text (canonical JSON is ASCII by construction)."""
    return hashlib.sha256(text.encode("ascii")).hexdigest()


class GivenLeg(NamedTuple):
    """One leg of a transaction's "legs" as the program engine computed it (owner implied)."""

    account_kind: str
    unit: str
    amount_minor: int
    """Positive = debit, negative = credit; never zero."""
    cause: str


@dataclass(frozen=True, slots=True)
class Txn:
    """One settled card transaction, exactly as the gateway reported it, plus its content hash."""

    txn_id: str
    terminal: str
    seq: int
    merchant: str
    time: int
    kind: str
    card: str
    currency: str
    amount_minor: int
    card_value_minor: int
    bonus_minor: int
    points: int
    ref_txn_id: str | None
    program: str | None
    digest: str
    auth: str
    content_hash: str
    hold_id: str | None = None
    """The ledger hold this purchase settles (optional key; absent and null are the same)."""
    legs: tuple[GivenLeg, ...] | None = None
    """The engine's legs, posted instead of the rule-derived ones; None: the rules decide."""
    version: int | None = None
    """The version of the card's program the operation was computed with (optional)."""
    discount_minor: int | None = None
    """A purchase's discount off amount_minor (optional, informational: it posts nothing)."""
    redeem_points: int | None = None
    """Points a purchase redeemed, or a refund gave back (optional; posted only by legs)."""
    sun_counter: int | None = None
    """The SUN read counter of the tap the transaction was made on (optional: a gateway
    without card keys has none); it raises the card's highest (`ledger.sun_sql`)."""
    reward: str | None = None
    """The catalogue item a reward redemption handed over (optional, a purchase's only: its
    points posted as a points redemption by its legs; reported per item)."""
    grants: str | None = None
    """The card's targeted offers a purchase got (optional, canonical JSON of a list of
    offer ids, "[]" for none), sent by the gateway that priced it: a replay takes a use of
    those alone (engine_promotions GRANTS_AS_POSTED). Absent: any it may (older gateways)."""
    card_op: str | None = None
    """The terms of an operation with no money the ledger posts itself (KIND_GRANT,
    KIND_RANK), canonical JSON; never a key of a gateway's batch (TXN_LEDGER_ONLY_FIELDS)."""


TXN_FIELDS = tuple(field.name for field in fields(Txn))
"""Every field of a transaction, in `Txn` order."""
TXN_COMPUTED_FIELDS = ("content_hash",)
"""Fields the ledger computes from what was sent: never a key of a batch's transaction."""
TXN_KEYS = tuple(
    field.name
    for field in fields(Txn)
    if field.default is MISSING and field.name not in TXN_COMPUTED_FIELDS
)
"""The keys every transaction of a batch carries (docs/ledger.md), in `Txn` order."""
TXN_LEDGER_ONLY_FIELDS = ("card_op",)
"""Fields only the ledger writes (its own operations): a gateway's batch never carries them."""
TXN_OPTIONAL_KEYS = tuple(field.name for field in fields(Txn) if field.default is not MISSING
                          and field.name not in TXN_LEDGER_ONLY_FIELDS)
"""Keys a transaction may leave out (its fields with a default): absent and null are the same."""
TXN_UNSTORED_FIELDS = ("hold_id", "legs")
"""Fields that are no column of the transactions table: a posted hold is a hold_postings row,
the legs are the entries rows."""
TXN_STORED_FIELDS = tuple(name for name in TXN_FIELDS if name not in TXN_UNSTORED_FIELDS)
"""The fields a transactions row holds, in `Txn` order (the row also names its batch)."""
assert set(TXN_COMPUTED_FIELDS) | set(TXN_UNSTORED_FIELDS) <= set(TXN_FIELDS)


@dataclass(frozen=True, slots=True)
class TxnRefusal:
    """One transaction of a batch the ledger refused on its own: the rest of the batch posts.

    `position` is its index in the batch's "transactions" (a batch answers its refusals in
    batch order, the same order every time); `content_hash` is the transaction's identity
    as for a `Txn`, so a person can tell a transaction sent again unchanged from a fixed one.
    """

    txn_id: str
    reason: str
    detail: str
    content_hash: str
    position: int

    def to_json(self) -> dict[str, Any]:
        """One item of the "refused" list of a POST /v1/batches answer."""
        return {"txn_id": self.txn_id, "reason": self.reason, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Batch:
    """A settlement batch whose envelope is valid; its transactions keep the order the gateway
    gave them, each parsed into a `Txn` or refused by validation (a `TxnRefusal`)."""

    batch_id: str
    gateway_id: str
    created: int
    transactions: tuple[Txn | TxnRefusal, ...]
    content_hash: str

    def valid_transactions(self) -> list[Txn]:
        """The transactions that passed validation, in batch order."""
        return [txn for txn in self.transactions if isinstance(txn, Txn)]


STATUS_POSTED = "posted"
"""Every transaction of the batch is in the books (posted now, or before)."""
STATUS_PARTIAL = "partial"
"""Some transactions were refused (listed in `refused`); every other one is in the books."""
STATUS_DUPLICATE = "duplicate"
"""The batch was judged before: nothing changed, and the answer repeats its refusals."""


@dataclass(frozen=True, slots=True)
class PostResult:
    """What post_batch did. Every transaction of the batch is counted once: `posted` (now),
    `already_posted` (by an earlier batch, or earlier in this one) or `refused`."""

    status: str
    batch_id: str
    posted: int
    already_posted: int
    refused: tuple[TxnRefusal, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The body of a 200 answer to POST /v1/batches."""
        return {
            "status": self.status,
            "batch_id": self.batch_id,
            "posted": self.posted,
            "already_posted": self.already_posted,
            "refused": [refusal.to_json() for refusal in self.refused],
        }
