"""The program engine's effects, settled with their legs, give the books the engine's cards.

Three cards run through protocol.engine with the programs of examples/programs.toml; every
operation's effects become one settlement transaction carrying the engine's legs (the fields
as the gateway fills them), and the books must then agree with the engine:

    card  program  operations (day)
    CL    club     issued empty (0); top-up 10000 + 500 bonus (1); buys 5000 from the card,
                   100 points (2); buys 3000 redeeming 60 points (worth 60), 2940 from the
                   card, 59 points (3); half of that refunded (4); 2000 of the top-up
                   refunded, with 100 of its bonus (5)
    CF    coffee   issued (0); buys 2000 with cash, 10 points (1); buys 4000 with cash (95),
                   after the first 10 points expired; the first sale refunded (100): its
                   points had expired, so the breakage is reversed; the last 20 expire (200)
    GF    gift     sold with 5000 (0); buys 1200 (1); the rest, 3800, expires (370); the sale
                   refunded (380): the 1200 go back onto the expired card and expire again
    WL    wallet   issued empty (0); top-up 10000 + 1000 bonus (1); buys 4000 from the card
                   (2); cashes out (3): the 6000 loaded and left are paid in cash, the 1000
                   bonus is forfeited to breakage (a leg of cause "expire")
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ledger import Books, open_books
from protocol import engine
from tests.ledger.builders import (
    account_totals,
    assert_balanced,
    at,
    batch,
    cashout,
    expire,
    issue,
    purchase,
    refund,
    topup,
)
from tests.support import REPO_ROOT
from tools.programs import load_programs

PROGRAMS = load_programs(REPO_ROOT / "examples" / "programs.toml")
DAY_S = 86_400
START_S = at("2024-01-01", hour=0)
"""The time of engine day 0."""
AS_OF = {"as_of": "2025-12-31", "window_days": "3660"}
"""Reports over the whole history."""

Document = dict[str, Any]


class Till:
    """Cards run through the engine; each operation that moved something is one settlement."""

    def __init__(self) -> None:
        self.states: dict[str, dict[str, Any]] = {}
        self.programs: dict[str, str] = {}
        self.txn_ids: dict[tuple[str, str], str] = {}
        self.effects: list[dict[str, Any]] = []
        self.txns: list[Document] = []

    def run(self, card: str, day: int, op: dict[str, Any], program: str | None = None) -> None:
        """Apply `op` to `card` on `day` (issue names the program); settle its effects."""
        if program is not None:
            self.programs[card] = program
        state, effects = engine.apply(self.states.get(card), PROGRAMS[self.programs[card]], op, day)
        assert "declined" not in effects, effects
        self.states[card] = state
        if op["op"] == "tick" and not effects["legs"]:
            return
        txn_id = f"T1-{len(self.txns) + 1}"
        self.txn_ids[card, op.get("id", txn_id)] = txn_id
        ref_txn_id = self.txn_ids[card, op["of"]] if "of" in op else None
        self.effects.append(effects)
        self.txns.append(settlement(effects, txn_id, ref_txn_id))

    def summary(self, card: str, day: int) -> dict[str, Any]:
        """What the engine says the card holds on `day`."""
        result: dict[str, Any] = engine.summary(
            self.states[card], PROGRAMS[self.programs[card]], day
        )
        return result


def settlement(effects: dict[str, Any], txn_id: str, ref_txn_id: str | None) -> Document:
    """The settlement transaction of one operation: its fields, its version and its legs."""
    card, op = effects["card"], effects["op"]
    common = {
        "time": START_S + effects["day"] * DAY_S,
        "version": effects["version"],
        "legs": effects["legs"],
    }
    if op == "issue":
        return issue(txn_id, card, effects["value_minor"], program=effects["program"], **common)
    if op == "topup":
        return topup(txn_id, card, effects["amount_minor"], effects["bonus_minor"], **common)
    if op == "purchase":
        return purchase(
            txn_id,
            card,
            effects["card_minor"],
            effects["points_earned"],
            effects["amount_minor"],
            discount_minor=effects["discount_minor"],
            redeem_points=effects["points_redeemed"],
            **common,
        )
    if op in ("refund", "void"):
        assert ref_txn_id is not None
        return refund(
            txn_id,
            ref_txn_id,
            card,
            effects["card_minor"],
            effects["points_reversed"],
            bonus_minor=effects["bonus_minor"],
            amount_minor=effects["amount_minor"],
            redeem_points=effects["points_restored"],
            **common,
        )
    if op == "cashout":
        return cashout(txn_id, card, effects["amount_minor"], **common)
    assert op == "tick", op
    value_minor = effects.get("value_expired", 0)
    return expire(txn_id, card, value_minor, effects.get("points_expired", 0), **common)


LAST_DAY = 380


@pytest.fixture(scope="module")
def till() -> Till:
    """The three cards' history (module docstring), run through the engine once."""
    till = Till()
    till.run("CL", 0, {"op": "issue", "id": "I", "card": "CL"}, program="club")
    till.run("CL", 1, {"op": "topup", "id": "T", "amount_minor": 10_000})
    till.run("CL", 2, {"op": "purchase", "id": "P1", "amount_minor": 5000, "pay": "card"})
    buy = {"op": "purchase", "id": "P2", "amount_minor": 3000, "pay": "card", "redeem_points": 60}
    till.run("CL", 3, buy)
    till.run("CL", 4, {"op": "refund", "id": "R1", "of": "P2", "amount_minor": 1500})
    till.run("CL", 5, {"op": "refund", "id": "R2", "of": "T", "amount_minor": 2000})
    till.run("CF", 0, {"op": "issue", "id": "I", "card": "CF"}, program="coffee")
    till.run("CF", 1, {"op": "purchase", "id": "P1", "amount_minor": 2000})
    till.run("CF", 95, {"op": "purchase", "id": "P2", "amount_minor": 4000})
    till.run("CF", 100, {"op": "void", "id": "V1", "of": "P1"})
    till.run("CF", 200, {"op": "tick"})
    till.run("GF", 0, {"op": "issue", "id": "I", "card": "GF", "value_minor": 5000}, program="gift")
    till.run("GF", 1, {"op": "purchase", "id": "P1", "amount_minor": 1200, "pay": "card"})
    till.run("GF", 370, {"op": "tick"})
    till.run("GF", LAST_DAY, {"op": "refund", "id": "R1", "of": "P1"})
    till.run("WL", 0, {"op": "issue", "id": "I", "card": "WL"}, program="wallet")
    till.run("WL", 1, {"op": "topup", "id": "T", "amount_minor": 10_000})
    till.run("WL", 2, {"op": "purchase", "id": "P1", "amount_minor": 4000, "pay": "card"})
    till.run("WL", 3, {"op": "cashout", "id": "C"})
    return till


@pytest.fixture
def books(dsn: str, till: Till) -> Iterator[Books]:
    """Books that settled the till's transactions in two batches."""
    opened = open_books(dsn)
    half = len(till.txns) // 2
    assert opened.post_batch(batch("gw1-1", *till.txns[:half])).posted == half
    assert opened.post_batch(batch("gw1-2", *till.txns[half:])).posted == len(till.txns) - half
    yield opened
    opened.close()


def test_the_history_does_what_the_docstring_says(till: Till) -> None:
    """The engine redeemed, reversed breakage and expired as the scenario needs."""
    by_op = {(e["card"], e["op"], e["day"]): e for e in till.effects}
    assert by_op["CL", "purchase", 3]["points_redeemed"] == 60
    assert by_op["CL", "refund", 5]["bonus_minor"] == 100
    cause_accounts = {(leg[0], leg[3]) for leg in by_op["CF", "void", 100]["legs"]}
    assert ("breakage", "earn") in cause_accounts
    assert by_op["GF", "refund", LAST_DAY]["value_expired"] == 1200
    cash_out = by_op["WL", "cashout", 3]
    assert (cash_out["amount_minor"], cash_out["bonus_forfeited"]) == (6000, 1000)
    assert ["breakage", "EUR", -1000, "expire"] in cash_out["legs"]


def test_card_balances_equal_the_engines_summary(books: Books, till: Till) -> None:
    """Value and points of every card in the books are what the engine says it holds."""
    for card in ("CL", "CF", "GF", "WL"):
        expected = till.summary(card, LAST_DAY)
        balance = books.card_balance(card)
        assert balance is not None
        assert (balance["value_minor"], balance["points"]) == (
            expected["value_minor"],
            expected["points"],
        ), card
    assert (
        till.summary("CL", LAST_DAY)["value_minor"],
        till.summary("CL", LAST_DAY)["points"],
    ) == (
        10_500 - 5000 - 2940 + 1470 - 2100,
        100 - 60 + 59 + 30 - 30,
    )
    assert_balanced(books)


def test_every_account_holds_the_sum_of_the_engines_legs(
    books: Books, dsn: str, till: Till
) -> None:
    """Per account kind and unit, the books hold exactly what the engine's legs moved."""
    expected: dict[tuple[str, str], int] = {}
    for effects in till.effects:
        for account, unit, amount, _cause in effects["legs"]:
            expected[account, unit] = expected.get((account, unit), 0) + amount
    assert account_totals(dsn) == {key: total for key, total in expected.items() if total}
    # Promotion expense in money: the bonus, less the part refunded, and the points redeemed
    # at their worth, less those given back; the wallet's bonus, forfeited at its cash-out.
    assert expected["promotion_expense", "EUR"] == 500 - 100 + 60 - 30 + 1000


def test_liability_per_program_is_the_engines_value_and_points(books: Books, till: Till) -> None:
    """The liability report sums the engine's card values and points, per program."""
    club, coffee = till.summary("CL", LAST_DAY), till.summary("CF", LAST_DAY)
    assert books.report("liability", AS_OF).rows == [
        {"program": "club", "account": "card_value", "unit": "EUR", "cards": 1,
         "liability_minor": club["value_minor"]},
        {"program": "club", "account": "card_points", "unit": "PTS", "cards": 1,
         "liability_minor": club["points"]},
        {"program": "coffee", "account": "card_points", "unit": "PTS", "cards": 0,
         "liability_minor": coffee["points"]},
        {"program": "gift", "account": "card_value", "unit": "EUR", "cards": 0,
         "liability_minor": 0},
        {"program": "wallet", "account": "card_value", "unit": "EUR", "cards": 0,
         "liability_minor": 0},
    ]  # fmt: skip


def test_breakage_counts_expirations_and_nets_reversals(books: Books) -> None:
    """Breakage in PTS and in money, from expires, purchases and refunds alike: the coffee
    card's first 10 points expired inside a purchase and were reversed by the refund, its
    last 20 expired; the gift card's value expired twice; the wallet's bonus was forfeited
    at its cash-out."""
    assert books.report("breakage", AS_OF).rows == [
        {"program": "coffee", "merchant": "M1", "unit": "PTS", "cards": 1, "expirations": 2,
         "breakage_minor": 20},
        {"program": "gift", "merchant": "M1", "unit": "EUR", "cards": 1, "expirations": 2,
         "breakage_minor": 3800 + 1200},
        {"program": "wallet", "merchant": "M1", "unit": "EUR", "cards": 1, "expirations": 1,
         "breakage_minor": 1000},
    ]  # fmt: skip
