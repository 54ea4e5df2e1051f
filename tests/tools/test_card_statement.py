"""A card's statement from its history (tools/card_statement.py), computed by hand."""

from __future__ import annotations

from datetime import date
from typing import Any

from tools.card_statement import statement

DAY_S = 86_400
JAN_2 = 1_767_312_000  # 2026-01-02T00:00:00Z


def row(time_s: int, kind: int, amount: int, card_value: int, change: int) -> dict[str, Any]:
    return {"time": time_s, "txn_id": f"T1-{time_s}", "store": "gw1", "terminal": "T1",
            "kind": kind, "currency": "EUR", "amount_minor": amount,
            "card_value_minor": card_value, "discount_minor": 0, "value_change_minor": change,
            "value_balance_minor": 0}


HISTORY = [
    row(JAN_2 - 1, 3, 700, 700, -700),             # 2026-01-01 23:59:59: before the range
    row(JAN_2, 2, 10_000, 10_000, 10_000),         # a top-up: not a statement line
    row(JAN_2 + 60, 3, 3000, 3000, -3000),         # by card
    row(JAN_2 + 120, 3, 1000, 0, 0),               # in cash
    row(JAN_2 + DAY_S, 4, 500, 500, 500),          # 2026-01-03: 5.00 of the first back
    row(JAN_2 + 2 * DAY_S, 3, 2000, 2000, -2000),  # 2026-01-04: after the range
]


def test_the_lines_and_totals_of_the_range_both_days_in() -> None:
    found = statement("C1", HISTORY, date(2026, 1, 2), date(2026, 1, 3))
    assert [(line["kind"], line["amount_minor"]) for line in found["lines"]] == [
        ("purchase", 3000), ("purchase", 1000), ("refund", 500)]
    # 30.00 + 10.00 bought, 30.00 of it from the card; 5.00 back to the card: 25.00 net.
    assert found["totals"] == {"purchases": 2, "refunds": 1, "purchases_minor": 4000,
                               "purchases_card_minor": 3000, "refunds_minor": 500,
                               "refunds_card_minor": 500, "spent_card_minor": 2500}
    assert (found["from"], found["until"]) == ("2026-01-02", "2026-01-03")


def test_an_empty_range_has_zero_totals() -> None:
    found = statement("C1", HISTORY, date(2025, 1, 1), date(2025, 12, 31))
    assert found["lines"] == [] and set(found["totals"].values()) == {0}
