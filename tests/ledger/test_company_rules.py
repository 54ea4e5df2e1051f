"""The rules of a company's shared budget (ledger/company_rules.py), pure: the period, what
is left, the refusal, and the company body. Numbers worked by hand in each docstring."""

from __future__ import annotations

import pytest

from ledger.company_rules import (
    COMPANY_BUDGET,
    COMPANY_BUDGET_MINOR_MAX,
    Budget,
    Company,
    check_budget,
    parse_company,
    period_spent,
    period_start,
)
from ledger.errors import BatchInvalid, HoldRefused

NOV_23_NOON = 1_763_899_200
"""2025-11-23 12:00 UTC."""


@pytest.mark.parametrize(("period", "now", "start"), [
    # 2025-11-23 12:00 UTC: the day began 12 h = 43200 s before, at 1763856000; the month
    # on 2025-11-01 00:00 = 1763856000 - 22 days x 86400 = 1761955200.
    ("day", NOV_23_NOON, 1_763_856_000),
    ("month", NOV_23_NOON, 1_761_955_200),
    # The first second of a day is its own period's start, the last second of the day
    # before is not: 2024-02-29 23:59:59 is in the day that began at 1709164800 and in
    # February, which began 28 days earlier, 1709164800 - 28 x 86400 = 1706745600.
    ("day", 1_763_856_000, 1_763_856_000),
    ("day", 1_709_251_199, 1_709_164_800),
    ("month", 1_709_251_199, 1_706_745_600),
])
def test_a_period_begins_at_midnight_utc_of_its_day_or_its_month_first_day(
        period: str, now: int, start: int) -> None:
    """UTC day and UTC calendar month, leap day included."""
    assert period_start(period, now) == start


def test_a_hold_may_bring_the_company_to_its_budget_never_past_it() -> None:
    """Budget 5000; spent 2000 (a purchase of 2500, a refund of 500), held 1500: left 1500.
    A hold of 1500 makes 2000 + 1500 + 1500 = 5000: allowed; 1501 makes 5001: refused."""
    budget = Budget(5000, 2500 - 500, 1500)
    assert budget.available_minor == 1500
    check_budget("ACME", budget, 1500)
    with pytest.raises(HoldRefused) as refused:
        check_budget("ACME", budget, 1501)
    assert refused.value.reason == COMPANY_BUDGET == "company_budget"
    assert "1501 asked, 1500 of 5000 left" in refused.value.detail


def test_offline_spend_past_the_budget_leaves_a_negative_available_and_refuses_value_only(
) -> None:
    """Budget 5000, spent 5300 (offline sales past it), held 0: available -300. Any hold of
    value is refused; a hold of points only (0) spends no value and is not judged."""
    budget = Budget(5000, 5300, 0)
    assert budget.available_minor == -300
    with pytest.raises(HoldRefused):
        check_budget("ACME", budget, 1)
    check_budget("ACME", budget, 0)


GOOD = {"company": "ACME", "name": "Acme Ltd", "currency": "EUR", "budget_minor": 5000,
        "period": "day"}


def test_a_company_body_is_read_into_its_fields() -> None:
    assert parse_company(GOOD) == Company("ACME", "Acme Ltd", "EUR", 5000, "day")


@pytest.mark.parametrize("bad", [
    {k: v for k, v in GOOD.items() if k != "period"},
    GOOD | {"extra": 1},
    GOOD | {"company": ""},
    GOOD | {"company": "has space"},
    GOOD | {"name": " "},
    GOOD | {"name": "x" * 201},
    GOOD | {"currency": "EUE"},
    GOOD | {"currency": "eur"},
    GOOD | {"budget_minor": 0},
    GOOD | {"budget_minor": -1},
    GOOD | {"budget_minor": 50.0},
    GOOD | {"budget_minor": "5000"},
    GOOD | {"budget_minor": True},
    GOOD | {"budget_minor": COMPANY_BUDGET_MINOR_MAX + 1},
    GOOD | {"period": "week"},
    [GOOD],
])
def test_a_bad_company_body_is_company_invalid(bad: object) -> None:
    """Every key once, an id, a name, a known currency, a whole positive budget, a period."""
    with pytest.raises(BatchInvalid) as invalid:
        parse_company(bad)
    assert invalid.value.reason == "company_invalid"


def test_a_period_spent_is_never_below_zero() -> None:
    """3000 bought today, 4000 of yesterday's sale refunded today: net -1000, spent 0, so
    a budget of 5000 leaves 5000, never 6000; 3000 bought and 1000 refunded: 2000."""
    assert period_spent(3000 - 4000) == 0
    assert Budget(5000, period_spent(3000 - 4000), 0).available_minor == 5000
    assert period_spent(3000 - 1000) == 2000
