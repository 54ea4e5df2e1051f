"""ISO 4217 currencies the ledger accepts, with their minor-unit exponents, and the points unit.

Money is posted as integer minor units, so the ledger must know which codes are real:
a typo such as "EUE" would otherwise open a new, silently balanced, unit of account.
The exponent (2 for EUR: 1250 means 12.50) is kept for reports and for anyone rendering
amounts; the ledger itself never converts between units.
"""

from __future__ import annotations

import re

from protocol.money import EXPONENT_TABLES, POINTS_UNIT

# The table of codes and exponents is protocol.money's, so terminal, gateway and ledger agree.
__all__ = ["CURRENCY_EXPONENTS", "POINTS_UNIT", "is_known_currency"]

CURRENCY_CODE_PATTERN = re.compile(r"[A-Z]{3}")

CURRENCY_EXPONENTS: dict[str, int] = {
    code: exponent for exponent, codes in EXPONENT_TABLES for code in codes.split()
}


def is_known_currency(code: str) -> bool:
    """True for an accepted ISO 4217 alphabetic code (exactly three capitals, in the table)."""
    return CURRENCY_CODE_PATTERN.fullmatch(code) is not None and code in CURRENCY_EXPONENTS
