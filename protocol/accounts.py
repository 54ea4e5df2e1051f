"""The books' accounts: the names a leg's account is written with, on every tier.

The program engine writes legs on these accounts (protocol/engine*.py), the gateway sends
them to the ledger as they are, and the ledger checks and posts them (ledger/posting_rules.py,
docs/ledger.md "Accounts and units"). Named here once; plain constants, so this module runs
on MicroPython and CPython unchanged.
"""

CARD_VALUE = "card_value"
CARD_POINTS = "card_points"
MERCHANT_SETTLEMENT = "merchant_settlement"
PROMOTION_EXPENSE = "promotion_expense"
CASH_CLEARING = "cash_clearing"
BREAKAGE = "breakage"
ACCOUNT_KINDS = (
    CARD_VALUE,
    CARD_POINTS,
    MERCHANT_SETTLEMENT,
    PROMOTION_EXPENSE,
    CASH_CLEARING,
    BREAKAGE,
)
