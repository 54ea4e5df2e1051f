"""ISO 4217 currencies the ledger accepts, and the points unit.

Money is posted as integer minor units, so the ledger must know which codes are real:
a typo such as "EUE" would otherwise open a new, silently balanced, unit of account.
The table is protocol.money's, so terminal, gateway and ledger accept the same codes.
"""

from __future__ import annotations

from protocol.money import POINTS_UNIT, exponent_or_none

__all__ = ["POINTS_UNIT", "is_known_currency"]


def is_known_currency(code: str) -> bool:
    """True for an accepted ISO 4217 alphabetic code (exactly three capitals, in the table)."""
    return exponent_or_none(code) is not None
