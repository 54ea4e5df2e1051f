"""A company's shared budget: the rules, pure (no I/O). `ledger.company_sql` reads the books
and writes the company tables; `ledger.hold_sql.place` asks `check_budget`.

A company (an employer, a customer of the chain) holds several prepaid cards of one currency
and a budget for a period: a UTC day or a UTC calendar month of the books' clock. Each card
keeps its own limits (a program's ``company`` section, `protocol.engine_company`); the budget
bounds what the company's cards together may be authorized for in the period::

    spent     card value of the company's cards' purchases whose time is in the period,
              minus the card value their refunds of purchases in the period put back (a
              refund of an issue or top-up takes loaded value off: no spend given back),
              never below zero (`period_spent`)
    held      the amounts of the company's cards' open, unexpired holds (whatever period
              they were placed in: until posted or released they are money promised)
    available budget - spent - held; may be below zero (see below)

A hold on a company card is refused ``company_budget`` when spent + held + its amount would
pass the budget (reaching it exactly is allowed, as with the per-card day limit). Worked
example, a budget of 50.00 a day (5000): card A spent 20.00 (a purchase of 25.00 and a
refund of 5.00 today), card B holds 15.00 open; a hold of 15.00 makes 2000 + 1500 + 1500 =
5000: placed (available 0); a next hold of 0.01 makes 5001 > 5000: ``company_budget``.

Only holds are judged: a sale made offline, or by a gateway standing in for the ledger, is
posted as it happened and counts in spent from then on, so spent may pass the budget and
available fall below zero. What they can spend beyond the budget is bounded only by the
tills' per-card and per-terminal offline limits and the gateways' stand-in limits
(docs/programs.md "Company cards" writes the bound out).

The period is that of the transaction's time (the sale's time, as the terminal recorded it,
as the per-card day limit counts a sale's day), for purchases and refunds alike.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ledger.currencies import is_known_currency
from ledger.errors import BatchInvalid, HoldRefused
from ledger.validate import ID_PATTERN

COMPANY_BUDGET = "company_budget"
"""The refusal of a hold that would pass its company's budget (a protocol reason code too:
the terminal is told it, gateway/ledger_holds.py)."""
PERIOD_DAY = "day"
PERIOD_MONTH = "month"
PERIODS = (PERIOD_DAY, PERIOD_MONTH)
COMPANY_BUDGET_PERIOD_UTC_OFFSET_S = 0
"""Periods begin at 00:00 UTC (a day) or 00:00 UTC of the month's first day (a month), of
the books' clock: one rule for every store of the chain, whatever its time zone, so two
stores in two zones never disagree on what has been spent "today"."""
COMPANY_BUDGET_COUNTS_HOLDS = True
"""Open, unexpired holds count against the budget with what was spent: an authorized sale
not yet settled is money promised, and without it two stores could each be authorized for
the whole of what is left."""
COMPANY_BUDGET_MINOR_MAX = 10**12
"""The largest budget, in minor units (as a program's company day_max_minor)."""
COMPANY_NAME_CHARS_MAX = 200
"""A company's name, in characters."""
COMPANY_CARDS_MAX = 1_000
"""Cards one company may hold: bounds every read of its spend and GET /v1/companies/<id>."""
COMPANY_FIELDS = ("company", "name", "currency", "budget_minor", "period")
"""The body of POST /v1/companies: every key required, no other."""
_CURRENCY = re.compile(r"[A-Z]{3}\Z")


@dataclass(frozen=True, slots=True)
class Company:
    """A validated POST /v1/companies body."""

    company: str
    name: str
    currency: str
    budget_minor: int
    period: str


def parse_company(document: object) -> Company:
    """A company from its JSON body; BatchInvalid company_invalid naming what is wrong."""
    if not isinstance(document, dict) or set(document) != set(COMPANY_FIELDS):
        raise BatchInvalid("company_invalid", "send {" + ", ".join(
            f'"{name}"' for name in COMPANY_FIELDS) + "}, each once, nothing else")
    company, name = document["company"], document["name"]
    currency, budget, period = document["currency"], document["budget_minor"], document["period"]
    if not isinstance(company, str) or ID_PATTERN.fullmatch(company) is None:
        raise BatchInvalid("company_invalid", "company: an id of 1 to 64 printable characters")
    if not isinstance(name, str) or not name.strip() or len(name) > COMPANY_NAME_CHARS_MAX:
        raise BatchInvalid("company_invalid",
                           f"name: text of 1 to {COMPANY_NAME_CHARS_MAX} characters")
    if not isinstance(currency, str) or _CURRENCY.match(currency) is None or (
            not is_known_currency(currency)):
        raise BatchInvalid("company_invalid", "currency: an ISO 4217 code such as EUR")
    # bool is an int in Python: true is not a budget of 1.
    if (not isinstance(budget, int) or isinstance(budget, bool)
            or not 0 < budget <= COMPANY_BUDGET_MINOR_MAX):
        raise BatchInvalid("company_invalid",
                           f"budget_minor: an integer of 1 to {COMPANY_BUDGET_MINOR_MAX} (minor"
                           " units)")
    if period not in PERIODS:
        raise BatchInvalid("company_invalid", f"period: one of {', '.join(PERIODS)}")
    return Company(company, name, currency, budget, period)


DAY_S = 86_400
"""A day, in seconds."""


def day_of(time_s: int) -> int:
    """The number of the day (of the periods' clock, COMPANY_BUDGET_PERIOD_UTC_OFFSET_S) that
    Unix second `time_s` falls on; the day of a period's start is the period's first day.
    E.g. 1763899200 (2025-11-23 12:00 UTC) is day 20415, as is its day's start 1763856000."""
    return (time_s + COMPANY_BUDGET_PERIOD_UTC_OFFSET_S) // DAY_S


def period_start(period: str, now: int) -> int:
    """The Unix second the period holding `now` began (UTC, COMPANY_BUDGET_PERIOD_UTC_OFFSET_S).

    E.g. now 1767139200 + 3600 (2025-12-31 01:00 UTC): a day began at 1767139200
    (2025-12-31 00:00), a month at 1764547200 (2025-12-01 00:00)."""
    assert period in PERIODS, period
    local = datetime.fromtimestamp(now + COMPANY_BUDGET_PERIOD_UTC_OFFSET_S, UTC)
    first = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == PERIOD_MONTH:
        first = first.replace(day=1)
    return calendar.timegm(first.timetuple()) - COMPANY_BUDGET_PERIOD_UTC_OFFSET_S


def period_spent(net_minor: int) -> int:
    """What a company spent in a period, from its cards' purchases less their refunds of
    purchases in it: never below zero. A refund in the period of a sale of an earlier one
    gives back at most what the period spent; it never adds to the budget. E.g. 3000 bought
    today and 4000 of yesterday's sale refunded today: spent 0, not -1000."""
    return max(net_minor, 0)


@dataclass(frozen=True, slots=True)
class Budget:
    """A company's budget and what its cards spent and hold in the current period."""

    budget_minor: int
    spent_minor: int
    held_minor: int

    @property
    def available_minor(self) -> int:
        """What may still be held: the budget less spent and held; below zero when offline
        sales passed the budget."""
        held = self.held_minor if COMPANY_BUDGET_COUNTS_HOLDS else 0
        return self.budget_minor - self.spent_minor - held


def check_budget(company: str, budget: Budget, amount_minor: int) -> None:
    """Refuse (HoldRefused company_budget) a hold of `amount_minor` that would pass the budget;
    a hold of points only (0) spends no value and is never refused here."""
    if amount_minor > 0 and amount_minor > budget.available_minor:
        raise HoldRefused(COMPANY_BUDGET, (
            f"company {company[:64]!r}: {amount_minor} asked, {max(budget.available_minor, 0)}"
            f" of {budget.budget_minor} left in the period (spent {budget.spent_minor},"
            f" held {budget.held_minor})"))


def budget_json(row: Company, since: int, budget: Budget,
                cards: list[dict[str, Any]]) -> dict[str, Any]:
    """GET /v1/companies/<id>: the company, its period, spent, held, available, its cards."""
    return {
        "company": row.company,
        "name": row.name,
        "currency": row.currency,
        "budget_minor": row.budget_minor,
        "period": row.period,
        "period_start": since,
        "spent_minor": budget.spent_minor,
        "held_minor": budget.held_minor,
        "available_minor": budget.available_minor,
        "cards": cards,
    }
