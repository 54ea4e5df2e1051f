"""ISO 4217 currencies the ledger accepts, with their minor-unit exponents, and the points unit.

Money is posted as integer minor units, so the ledger must know which codes are real:
a typo such as "EUE" would otherwise open a new, silently balanced, unit of account.
The exponent (2 for EUR: 1250 means 12.50) is kept for reports and for anyone rendering
amounts; the ledger itself never converts between units.
"""

from __future__ import annotations

import re

POINTS_UNIT = "PTS"
"""Unit of loyalty points: not an ISO currency, posted like one so it balances on its own."""

CURRENCY_CODE_PATTERN = re.compile(r"[A-Z]{3}")

_EXPONENT_0 = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_EXPONENT_3 = "BHD IQD JOD KWD LYD OMR TND"
_EXPONENT_4 = "CLF UYW"
_EXPONENT_2 = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP BYN"
    " BZD CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS"
    " GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR"
    " LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD"
    " PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN"
    " SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD UYU UZS VES WST XCD XCG YER ZAR ZMW"
    " ZWG"
)

CURRENCY_EXPONENTS: dict[str, int] = {
    code: exponent
    for exponent, codes in ((0, _EXPONENT_0), (2, _EXPONENT_2), (3, _EXPONENT_3), (4, _EXPONENT_4))
    for code in codes.split()
}


def is_known_currency(code: str) -> bool:
    """True for an accepted ISO 4217 alphabetic code (exactly three capitals, in the table)."""
    return CURRENCY_CODE_PATTERN.fullmatch(code) is not None and code in CURRENCY_EXPONENTS
