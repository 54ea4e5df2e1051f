"""Decide what a validated batch writes, given what the books already hold. Pure, no I/O.

`ledger.posting_sql` reads a `BooksView` (only the rows this batch's ids touch), this module
applies the rules that need history, and returns a `Plan` of rows to insert. Each
transaction is judged on its own, in batch order: one that breaks a rule is refused (a
`TxnRefusal` in the plan, with the rule's reason) and changes nothing, and the next is
judged on the books as the transactions before it left them, so a refund whose purchase
was refused earlier in the batch finds no original. Rules:

- a txn_id already posted with the same content is skipped (counted as already_posted);
  with other content it is refused ``txn_conflict``; a txn_id repeated identically inside
  the batch shares the fate of its first (validation refuses one repeated with other content);
- a card keeps the currency of the first transaction that named it (``currency_mismatch``),
  and is issued at most once (``card_already_issued``);
- a refund must name a purchase, issue or topup of the same card, in the books or earlier in
  this batch (``refund_unknown_original``, ``refund_mismatch``: never an expire or a
  cashout); all refunds of one purchase together may not return more card value or points
  than it had, all refunds of one load may not take more card value off the card than it put
  on, nor more bonus than it gave (``refund_exceeds_original``); a refund of a purchase
  carries no bonus, a refund of a load no points (``amount_invalid``);
- a transaction's given legs must change the card as its fields say (``legs_mismatch``): the
  net of its card_value legs, leaving out those of cause "expire" (time passing before or
  after the operation), equals that of the rule-derived legs; for an expire, the net of all
  its card_value legs and of all its card_points legs equals the rule-derived one;
- an expire takes at most what its card holds when it is judged, in value and in points
  (``expire_exceeds_balance``): two stores that served a card may both see it lapse before
  either has read the other's expiry, and the lapse is breakage once;
- a purchase naming a hold posts it: the hold must exist, be neither voided nor posted, be on
  the same card and currency, and hold at least the card value taken (``ledger.hold_rules``);
  an expired hold is posted all the same (the sale happened) and counted as late.

A transaction's legs, its card's change, its refund's count and its hold posting are all
decided first (`_judge`) and then applied together (`_apply`): a transaction posts whole or
not at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from ledger.errors import BatchConflict, BatchInvalid, LedgerRejected
from ledger.hold_rules import STATUS_POSTED, HoldPosting, HoldState, check_posting
from ledger.limits import REFUSAL_DETAIL_CHARS_MAX
from ledger.model import (
    KIND_EXPIRE,
    KIND_ISSUE,
    KIND_PURCHASE,
    KIND_REFUND,
    Batch,
    Txn,
    TxnRefusal,
)
from ledger.posting_rules import CAUSE_EXPIRE, LOAD_KINDS, REFUNDABLE_KINDS, legs_for, rule_legs
from protocol.accounts import CARD_POINTS, CARD_VALUE

EntryRow = tuple[str, str, str, str, int]
"""(txn_id, account_kind, owner, unit, amount_minor): one row of the entries table."""


@dataclass(frozen=True, slots=True)
class CardState:
    """A card as the books know it: its currency is fixed by the first transaction seen."""

    card: str
    program: str | None
    currency: str
    activated_txn_id: str | None


@dataclass(slots=True)
class OriginalState:
    """A transaction a refund may name, with what its refunds have returned so far."""

    txn_id: str
    kind: str
    card: str
    currency: str
    card_value_minor: int
    points: int
    bonus_minor: int
    refunded_card_value_minor: int = 0
    refunded_points: int = 0
    refunded_bonus_minor: int = 0


@dataclass(frozen=True, slots=True)
class BooksView:
    """The part of the books one batch depends on, read inside the posting transaction."""

    posted_hashes: Mapping[str, str]
    cards: Mapping[str, CardState]
    originals: Mapping[str, OriginalState]
    holds: Mapping[str, HoldState] = field(default_factory=dict)
    balances: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    """(value, points) of the cards this batch expires something on, as the books hold them."""


@dataclass(slots=True)
class Plan:
    """Rows to write for one batch; `already_posted` counts txns skipped as known, `refused`
    the transactions refused (by validation or here), in batch order."""

    txns: list[Txn] = field(default_factory=list)
    entries: list[EntryRow] = field(default_factory=list)
    new_cards: list[CardState] = field(default_factory=list)
    changed_cards: list[CardState] = field(default_factory=list)
    hold_postings: list[HoldPosting] = field(default_factory=list)
    already_posted: int = 0
    refused: list[TxnRefusal] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class _Judged:
    """What one transaction changes, decided before anything changes."""

    card: CardState
    refund_totals: tuple[OriginalState, int, int, int] | None
    """The original a refund names, and its card value, points and bonus refunded so far
    with this refund counted."""
    hold_posting: HoldPosting | None
    entries: list[EntryRow]


@dataclass(slots=True)
class _Books:
    """The books as the batch's transactions so far have left them (working copies)."""

    cards: dict[str, CardState]
    originals: dict[str, OriginalState]
    holds: dict[str, HoldState]
    balances: dict[str, tuple[int, int]]


def plan_batch(batch: Batch, view: BooksView) -> Plan:
    """The rows a batch adds to the books and the transactions it refuses, in batch order."""
    plan = Plan()
    books = _Books(
        dict(view.cards),
        {txn_id: replace(state) for txn_id, state in view.originals.items()},
        dict(view.holds),
        dict(view.balances),
    )
    fates: dict[str, Txn | TxnRefusal] = {}
    for position, item in enumerate(batch.transactions):
        first = fates.get(item.txn_id)
        if first is not None:
            # A copy of an earlier transaction (validation refused other content).
            if isinstance(first, TxnRefusal):
                plan.refused.append(replace(first, position=position))
            else:
                plan.already_posted += 1
            continue
        fates[item.txn_id] = item
        if isinstance(item, TxnRefusal):
            plan.refused.append(item)
            continue
        known = view.posted_hashes.get(item.txn_id)
        if known == item.content_hash:
            plan.already_posted += 1
            continue
        try:
            if known is not None:
                raise BatchConflict(
                    "txn_conflict",
                    f"txn {item.txn_id} was already received with different content",
                )
            judged = _judge(item, books)
        except LedgerRejected as refusal:
            detail = refusal.detail[:REFUSAL_DETAIL_CHARS_MAX]
            refused = TxnRefusal(item.txn_id, refusal.reason, detail, item.content_hash, position)
            fates[item.txn_id] = refused
            plan.refused.append(refused)
            continue
        _apply(item, judged, books, plan)
    for card, state in books.cards.items():
        if card not in view.cards:
            plan.new_cards.append(state)
        elif state != view.cards[card]:
            plan.changed_cards.append(state)
    return plan


def _judge(txn: Txn, books: _Books) -> _Judged:
    """Every rule for one transaction against the books so far; raises `LedgerRejected` to
    refuse it. Changes nothing."""
    card = _card_after(txn, books.cards)
    refunded_kind = KIND_PURCHASE
    refund_totals = None
    if txn.kind == KIND_REFUND:
        refund_totals = _refund_totals(txn, books.originals)
        refunded_kind = refund_totals[0].kind
    hold_posting = None
    if txn.hold_id is not None:
        hold_posting = check_posting(txn, books.holds.get(txn.hold_id))
    if txn.legs is not None:
        _check_given_legs(txn, refunded_kind)
    entries: list[EntryRow] = [(txn.txn_id, *leg) for leg in legs_for(txn, refunded_kind)]
    if txn.kind == KIND_EXPIRE and txn.card in books.balances:
        value, points = books.balances[txn.card]
        if txn.card_value_minor > max(0, value) or txn.points > max(0, points):
            raise BatchInvalid(
                "expire_exceeds_balance",
                f"txn {txn.txn_id}: expires {txn.card_value_minor} and {txn.points} points, "
                f"card {txn.card} holds {value} and {points} (it lapsed already)",
            )
    return _Judged(card, refund_totals, hold_posting, entries)


def _apply(txn: Txn, judged: _Judged, books: _Books, plan: Plan) -> None:
    """Put a judged transaction in the plan and in the working books, all of it at once."""
    books.cards[txn.card] = judged.card
    if judged.refund_totals is not None:
        original, card_value_minor, points, bonus_minor = judged.refund_totals
        original.refunded_card_value_minor = card_value_minor
        original.refunded_points = points
        original.refunded_bonus_minor = bonus_minor
    if judged.hold_posting is not None:
        assert txn.hold_id is not None
        plan.hold_postings.append(judged.hold_posting)
        # A second purchase naming it later in the batch finds it posted.
        books.holds[txn.hold_id] = replace(books.holds[txn.hold_id], status=STATUS_POSTED)
    books.originals[txn.txn_id] = OriginalState(
        txn.txn_id,
        txn.kind,
        txn.card,
        txn.currency,
        txn.card_value_minor,
        txn.points,
        txn.bonus_minor,
    )
    plan.txns.append(txn)
    plan.entries.extend(judged.entries)
    if txn.card in books.balances:  # what the transaction leaves on the card
        value, points = books.balances[txn.card]
        for _, account_kind, owner, _, amount_minor in judged.entries:
            if owner == txn.card and account_kind == CARD_VALUE:
                value -= amount_minor  # a liability: a credit (negative) raises it
            elif owner == txn.card and account_kind == CARD_POINTS:
                points -= amount_minor
        books.balances[txn.card] = (value, points)


def _card_after(txn: Txn, cards: Mapping[str, CardState]) -> CardState:
    """The card as this transaction leaves it: registered on first sight, its currency
    fixed, activated once."""
    state = cards.get(txn.card)
    if state is None:
        state = CardState(txn.card, txn.program, txn.currency, None)
    if state.currency != txn.currency:
        raise BatchInvalid(
            "currency_mismatch",
            f"txn {txn.txn_id}: card {txn.card} is in {state.currency}, not {txn.currency}",
        )
    if txn.kind == KIND_ISSUE:
        if state.activated_txn_id is not None:
            raise BatchInvalid(
                "card_already_issued",
                f"txn {txn.txn_id}: card {txn.card} was issued by {state.activated_txn_id}",
            )
        state = replace(state, program=txn.program, activated_txn_id=txn.txn_id)
    return state


def _refund_totals(
    txn: Txn, originals: Mapping[str, OriginalState]
) -> tuple[OriginalState, int, int, int]:
    """Check a refund against its original: the original (whose kind decides the refund's
    legs), and the card value, points and bonus its refunds return with this one."""
    assert txn.ref_txn_id is not None, "validation requires ref_txn_id on refunds"
    original = originals.get(txn.ref_txn_id)
    if original is None:
        raise BatchInvalid(
            "refund_unknown_original",
            f"txn {txn.txn_id}: the ledger has no transaction {txn.ref_txn_id}",
        )
    if original.kind not in REFUNDABLE_KINDS or original.card != txn.card:
        raise BatchInvalid(
            "refund_mismatch",
            f"txn {txn.txn_id}: {txn.ref_txn_id} is not a purchase, issue or topup"
            f" of card {txn.card}",
        )
    if original.kind == KIND_PURCHASE and txn.bonus_minor:
        raise BatchInvalid(
            "amount_invalid", f"txn {txn.txn_id}: a refund of a purchase reverses no bonus"
        )
    if original.kind in LOAD_KINDS and (txn.points or txn.redeem_points):
        raise BatchInvalid(
            "amount_invalid", f"txn {txn.txn_id}: a refund of a load takes back no points"
        )
    card_value_minor = original.refunded_card_value_minor + txn.card_value_minor
    points = original.refunded_points + txn.points
    bonus_minor = original.refunded_bonus_minor + txn.bonus_minor
    if (
        card_value_minor > original.card_value_minor
        or points > original.points
        or bonus_minor > original.bonus_minor
    ):
        raise BatchInvalid(
            "refund_exceeds_original",
            f"txn {txn.txn_id}: refunds of {txn.ref_txn_id} would return {card_value_minor}"
            f" of {original.card_value_minor} card value, {points} of {original.points} points"
            f" and {bonus_minor} of {original.bonus_minor} bonus",
        )
    return original, card_value_minor, points, bonus_minor


def _check_given_legs(txn: Txn, refunded_kind: str) -> None:
    """Refuse given legs that change the card otherwise than the transaction's fields say.

    The engine may add legs of cause "expire" to any operation (value or points that lapsed
    as time passed); only an expire's own amounts account for those, so elsewhere they are
    left out of the comparison.
    """
    assert txn.legs is not None
    expected = rule_legs(txn, refunded_kind)
    accounts = (CARD_VALUE, CARD_POINTS) if txn.kind == KIND_EXPIRE else (CARD_VALUE,)
    for account_kind in accounts:
        given_net = sum(
            leg.amount_minor
            for leg in txn.legs
            if leg.account_kind == account_kind
            and (txn.kind == KIND_EXPIRE or leg.cause != CAUSE_EXPIRE)
        )
        expected_net = sum(leg.amount_minor for leg in expected if leg.account_kind == account_kind)
        if given_net != expected_net:
            raise BatchInvalid(
                "legs_mismatch",
                f"txn {txn.txn_id}: its {account_kind} legs net {given_net},"
                f" its fields ({txn.kind}) say {expected_net}",
            )
