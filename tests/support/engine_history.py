"""One card's history in a program with points, discount tracking and tiers, and what its
engine state is on DAY0 + 25, computed by hand: shared by the replay's unit test and the
tests of the ledger's answer, its back office and `card show` (protocol/engine_replay.py,
ledger/card_engine.py).

The program "regular": 1 point per euro paid (earn_bp 100, 1 point = 0.01 EUR), points
expire 60 days after their earn day; 100.00 EUR in 30 days earns 10 % off for 30 days;
silver from 150.00 EUR of a year's spend (5 % off).

    day       what                                 paid   points  progress  tier spend
    DAY0      issue (no value)                        -        -         -         -
    DAY0+1    purchase 60.00                       6000       60      6000      6000
    DAY0+10   purchase 50.00                       5000       50     11000     11000
              -> 11000 >= 10000: 10 % off through DAY0+39 (until DAY0+40); progress reset
    DAY0+20   purchase 50.00, 10 % off (5.00)      4500       45      4500     15500
              -> 15500 >= 15000: silver
    DAY0+25   today: 155 points in three lots (expiring DAY0+61, +70, +80), 10 % off (the
              tracked 10 beats silver's 5) through DAY0+39, 45.00 towards the next discount
"""

from __future__ import annotations

from typing import Any

from protocol.engine_replay import DAY_S
from tests.ledger.builders import batch, issue, purchase

DAY0 = 20_400  # 2025-11-08
TODAY = DAY0 + 25
PROGRAM_TOML = """
[programs.regular]
version = 1
currency = "EUR"
name = "Regular"

[programs.regular.points]
earn_bp = 100
points_per_unit = 100
expiry_days = 60

[programs.regular.discount]
threshold_minor = 10000
qualify_days = 30
discount_pct = 10
duration_days = 30

[programs.regular.tiers]
window_days = 365
downgrade = "days_below"
downgrade_days = 30

[[programs.regular.tiers.levels]]
name = "member"
spend_minor = 0

[[programs.regular.tiers.levels]]
name = "silver"
spend_minor = 15000
discount_pct = 5
"""

SALES = [  # (txn_id, day, price, discount, points earned)
    ("T1-2", DAY0 + 1, 6000, 0, 60),
    ("T1-3", DAY0 + 10, 5000, 0, 50),
    ("T1-4", DAY0 + 20, 5000, 500, 45),
]
POINTS = 155
LOTS = [(60, DAY0 + 1, DAY0 + 61), (50, DAY0 + 10, DAY0 + 70), (45, DAY0 + 20, DAY0 + 80)]
"""(points, earned day, expiry day) of each lot on TODAY, oldest first."""


def time_of(day: int) -> int:
    """A Unix time on the engine's `day` (one in the morning UTC)."""
    return day * DAY_S + 3600


def posted(txn_id: str, kind: str, day: int, amount: int = 0, card_value: int = 0,
           program: str | None = None, **terms: Any) -> dict[str, Any]:
    """A transaction as the ledger lists it (ledger/adopt_sql.py ADOPT_FIELDS)."""
    return {"txn_id": txn_id, "kind": kind, "time": time_of(day), "gateway_id": "gwA",
            "amount_minor": amount, "card_value_minor": card_value, "bonus_minor": 0,
            "points": terms.pop("points", 0), "ref_txn_id": terms.pop("ref", None),
            "program": program, "discount_minor": terms.pop("discount_minor", 0),
            "redeem_points": terms.pop("redeem_points", 0)}


def history() -> list[dict[str, Any]]:
    """The card's transactions as the ledger lists them."""
    return [posted("T1-1", "issue", DAY0, program="regular")] + [
        posted(txn_id, "purchase", day, price, points=points, discount_minor=discount)
        for txn_id, day, price, discount, points in SALES]


def posted_batch(card: str = "C1", points_of_last: int = SALES[-1][4]) -> dict[str, Any]:
    """The card's transactions in a settlement batch, as a gateway posts them (its last
    sale's points may be altered: a history the engine does not end at)."""
    txns = [issue(f"T1-1{card}", card=card, amount_minor=0, program="regular",
                  time=time_of(DAY0))]
    for txn_id, day, price, discount, points in SALES:
        txns.append(purchase(txn_id + card, card=card, card_value_minor=0, amount_minor=price,
                             points=points, discount_minor=discount, time=time_of(day)))
    txns[-1]["points"] = points_of_last
    return batch(f"gw1-{card}", *txns)
