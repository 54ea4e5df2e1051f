"""Property: over random transaction sequences the books balance and refunds never create value.

Hypothesis draws batches of issues, topups, purchases, cashouts and refunds (of purchases and
of loads; some refunds too large, of unknown originals, taking points back from a load, or
naming a cashout, which no refund may). A small model of the rules predicts which
transactions the ledger must refuse, each alone, the rest of its batch posting; after every
batch the answer must name exactly those, the books must agree with the model, the trial
balance must be zero in every unit, no card may hold more value than was ever loaded onto it,
and no card may hold negative points.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ledger import Books
from tests.ledger.builders import assert_balanced, batch, cashout, issue, purchase, refund, topup

EXAMPLE_IDS = itertools.count()
CARDS_PER_EXAMPLE = 3
AMOUNT_DRAWN_MAX = 3000

card_index = st.integers(0, CARDS_PER_EXAMPLE - 1)
amount = st.integers(0, AMOUNT_DRAWN_MAX)
step = st.one_of(
    st.tuples(st.just("issue"), card_index, amount),
    st.tuples(st.just("topup"), card_index, amount, st.integers(0, 300)),
    st.tuples(st.just("purchase"), card_index, amount, st.integers(0, 500), st.integers(0, 50)),
    st.tuples(st.just("cashout"), card_index, st.integers(1, AMOUNT_DRAWN_MAX)),
    st.tuples(st.just("refund"), st.integers(0, 20), amount, st.integers(0, 60)),
)
batches = st.lists(st.lists(step, min_size=1, max_size=6), min_size=1, max_size=6)


@dataclass
class Model:
    """What the books must hold for this example's cards, and what a refund may still return."""

    value: dict[str, int] = field(default_factory=dict)
    points: dict[str, int] = field(default_factory=dict)
    loaded: dict[str, int] = field(default_factory=dict)
    issued: set[str] = field(default_factory=set)
    refundable: dict[str, list[Any]] = field(default_factory=dict)
    cashouts: set[str] = field(default_factory=set)

    def apply(self, txns: list[dict[str, Any]]) -> list[tuple[str, str]]:
        """Apply a batch in order, each transaction whole or not at all; return the
        (txn_id, reason) of those the ledger must refuse."""
        refused = []
        for document in txns:
            trial = copy.deepcopy(self)
            reason = trial.apply_one(document)
            if reason:
                refused.append((document["txn_id"], reason))
            else:
                self.__dict__.update(trial.__dict__)
        return refused

    def apply_one(self, document: dict[str, Any]) -> str | None:
        """One transaction's effect on the model, or the reason the ledger refuses it."""
        card, kind = document["card"], document["kind"]
        self.value.setdefault(card, 0)
        self.points.setdefault(card, 0)
        self.loaded.setdefault(card, 0)
        if kind == "issue":
            if card in self.issued:
                return "card_already_issued"
            self.issued.add(card)
            self._load(card, document["txn_id"], document["amount_minor"])
        elif kind == "topup":
            loaded = document["amount_minor"] + document["bonus_minor"]
            self._load(card, document["txn_id"], loaded)
        elif kind == "purchase":
            self.value[card] -= document["card_value_minor"]
            self.points[card] += document["points"]
            self.refundable[document["txn_id"]] = [
                document["card_value_minor"],
                document["points"],
                "purchase",
            ]
        elif kind == "cashout":
            self.value[card] -= document["card_value_minor"]
            self.cashouts.add(document["txn_id"])
        else:
            if document["ref_txn_id"] in self.cashouts:
                return "refund_mismatch"
            left = self.refundable.get(document["ref_txn_id"])
            if left is None:
                return "refund_unknown_original"
            if left[2] == "load" and document["points"]:
                return "amount_invalid"
            if document["card_value_minor"] > left[0] or document["points"] > left[1]:
                return "refund_exceeds_original"
            left[0] -= document["card_value_minor"]
            left[1] -= document["points"]
            # A refund of a purchase gives value back; a refund of a load takes it off.
            sign = 1 if left[2] == "purchase" else -1
            self.value[card] += sign * document["card_value_minor"]
            self.points[card] -= document["points"]
        return None

    def _load(self, card: str, txn_id: str, value_minor: int) -> None:
        """Value put on a card by an issue or topup (which a refund may take off again)."""
        self.value[card] += value_minor
        self.loaded[card] += value_minor
        self.refundable[txn_id] = [value_minor, 0, "load"]


def to_txns(
    prefix: str, steps: list[tuple[Any, ...]], originals: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    """Transaction documents for drawn steps; refunds name an earlier original (or none, or a
    cashout)."""
    txns = []
    for position, drawn in enumerate(steps):
        txn_id = f"{prefix}-{len(originals)}-{position}"
        kind = drawn[0]
        if kind == "refund":
            _, which, value_minor, points = drawn
            ref, card = (
                originals[which % len(originals)]
                if originals
                else (f"{prefix}-none", f"{prefix}c0")
            )
            txns.append(refund(txn_id, ref, card=card, card_value_minor=value_minor, points=points))
            continue
        card = f"{prefix}c{drawn[1]}"
        if kind == "issue":
            txns.append(issue(txn_id, card=card, amount_minor=drawn[2]))
        elif kind == "topup":
            txns.append(topup(txn_id, card=card, amount_minor=drawn[2], bonus_minor=drawn[3]))
        elif kind == "cashout":
            txns.append(cashout(txn_id, card=card, amount_minor=drawn[2]))
        else:
            _, _, value_minor, other_tender_minor, points = drawn
            txns.append(
                purchase(txn_id, card, value_minor, points, value_minor + other_tender_minor)
            )
        originals.append((txn_id, card))
    return txns


def check_cards(books: Books, model: Model) -> None:
    """Every card of the example agrees with the model; none holds value it was never given."""
    for card in model.value:
        balance = books.card_balance(card)
        assert balance is not None, card
        assert (balance["value_minor"], balance["points"]) == (
            model.value[card],
            model.points[card],
        )
        assert balance["value_minor"] <= model.loaded[card]
        assert balance["points"] >= 0


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(drawn_batches=batches)
def test_random_sequences_balance_and_refunds_create_no_value(
    books: Books, drawn_batches: list[list[tuple[Any, ...]]]
) -> None:
    """Random valid and over-reaching sequences keep the books balanced and equal to the model."""
    prefix = f"h{next(EXAMPLE_IDS)}"
    model = Model()
    originals: list[tuple[str, str]] = []
    for number, steps in enumerate(drawn_batches):
        txns = to_txns(f"{prefix}b{number}", steps, originals)
        refused = model.apply(txns)
        for _, reason in refused:
            event(reason)
        result = books.post_batch(batch(f"{prefix}-{number}", *txns))
        assert [(r.txn_id, r.reason) for r in result.refused] == refused
        assert result.posted == len(txns) - len(refused)
        assert_balanced(books)
        check_cards(books, model)
