"""A card's statement (company cards, issue 18 item 6): its purchases and refunds posted in
the ledger between two UTC dates, with totals. Pure: built from the card's history as the
ledger's GET /v1/cards/<card>/history gives it (ledger/customers_sql.card_history).

    statement(history, first, last) -> {"card", "from", "until", "lines": [...], "totals"}

A line is a transaction of kind purchase or refund whose terminal time falls on a day from
`first` through `last` (both in, UTC). Totals, in minor units:
    purchases_minor        the purchases' prices
    purchases_card_minor   what the card's value paid of them
    refunds_minor          the refunds' amounts
    refunds_card_minor     what refunds put back on (or, for a top-up's, took off) the card
    spent_card_minor       the card value the lines took, net: -(sum of their value changes)
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from protocol import txn

STATEMENT_KINDS = ("purchase", "refund")
LINE_FIELDS = ("time", "txn_id", "store", "terminal", "kind", "currency", "amount_minor",
               "card_value_minor", "discount_minor", "value_change_minor",
               "value_balance_minor")


def kind_name(kind: Any) -> str:
    return txn.KIND_NAMES.get(kind, str(kind)) if isinstance(kind, int) else str(kind)


def statement(card: str, history: list[dict[str, Any]], first: date,
              last: date) -> dict[str, Any]:
    lines = []
    totals = {"purchases": 0, "refunds": 0, "purchases_minor": 0, "purchases_card_minor": 0,
              "refunds_minor": 0, "refunds_card_minor": 0, "spent_card_minor": 0}
    for item in history:
        kind = kind_name(item["kind"])
        day = datetime.fromtimestamp(int(item["time"]), UTC).date()
        if kind not in STATEMENT_KINDS or not first <= day <= last:
            continue
        line = {field: item.get(field) for field in LINE_FIELDS}
        line["kind"] = kind
        lines.append(line)
        plural = kind + "s"
        totals[plural] += 1
        totals[plural + "_minor"] += int(item["amount_minor"])
        totals[plural + "_card_minor"] += abs(int(item["value_change_minor"]))
        totals["spent_card_minor"] -= int(item["value_change_minor"])
    return {"card": card, "from": first.isoformat(), "until": last.isoformat(),
            "lines": lines, "totals": totals}
