"""The shop's local day and minute (protocol/local_time.py): the published summer-time dates,
hand-checked at each switch, and every hour of 2024-2027 against the IANA time-zone database
(CPython's zoneinfo) for three shops."""

from __future__ import annotations

import datetime
import zoneinfo

import pytest

from protocol.local_time import (
    DST_EU,
    DST_NONE,
    DST_US,
    MINUTES_PER_DAY,
    local_day_minute,
    summer_time,
)

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)


def utc(text: str) -> tuple[int, int]:
    """'YYYY-MM-DD HH:MM' (UTC) as the engine's (day, minute)."""
    moment = datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.UTC)
    minutes = int((moment - EPOCH).total_seconds()) // 60
    return minutes // MINUTES_PER_DAY, minutes % MINUTES_PER_DAY


def shown(day: int, minute: int) -> str:
    return (EPOCH + datetime.timedelta(days=day, minutes=minute)).strftime("%Y-%m-%d %H:%M")


# (UTC, offset, rule, the shop's clock): the 2026 switches (EU: 29 March and 25 October at
# 01:00 UTC; US: 8 March and 1 November at 02:00 local), one minute either side.
SWITCHES = [
    ("2026-03-29 00:59", 60, DST_EU, "2026-03-29 01:59"),   # Berlin, winter
    ("2026-03-29 01:00", 60, DST_EU, "2026-03-29 03:00"),   # summer: 02:00-02:59 skipped
    ("2026-10-25 00:59", 60, DST_EU, "2026-10-25 02:59"),   # summer
    ("2026-10-25 01:00", 60, DST_EU, "2026-10-25 02:00"),   # winter: 02:00 again
    ("2026-03-08 06:59", -300, DST_US, "2026-03-08 01:59"),  # New York, standard
    ("2026-03-08 07:00", -300, DST_US, "2026-03-08 03:00"),  # summer
    ("2026-11-01 05:59", -300, DST_US, "2026-11-01 01:59"),  # summer
    ("2026-11-01 06:00", -300, DST_US, "2026-11-01 01:00"),  # standard: 01:00 again
    ("2026-12-31 20:00", 540, DST_NONE, "2027-01-01 05:00"),  # Tokyo: the next day
    ("2027-01-01 02:00", -600, DST_NONE, "2026-12-31 16:00"),  # Honolulu: the day before
    ("2024-03-31 01:00", 0, DST_EU, "2024-03-31 02:00"),    # Lisbon, a leap year
    ("2024-11-03 08:59", -480, DST_US, "2024-11-03 01:59"),  # Los Angeles, summer
]


@pytest.mark.parametrize(("moment", "offset", "rule", "clock"), SWITCHES)
def test_the_shops_clock_at_each_published_switch(moment: str, offset: int, rule: str,
                                                  clock: str) -> None:
    assert shown(*local_day_minute(*utc(moment), offset, rule)) == clock


@pytest.mark.parametrize(("zone", "offset", "rule"), [
    ("Europe/Berlin", 60, DST_EU), ("America/New_York", -300, DST_US),
    ("America/Los_Angeles", -480, DST_US), ("Asia/Tokyo", 540, DST_NONE),
    ("Europe/London", 0, DST_EU)])
def test_every_hour_of_four_years_agrees_with_the_time_zone_database(
        zone: str, offset: int, rule: str) -> None:
    tz = zoneinfo.ZoneInfo(zone)
    first = utc("2024-01-01 00:00")[0]
    last = utc("2028-01-01 00:00")[0]
    for day in range(first, last):
        for minute in (0, 59, 60, 119, 120, 179, 180, 420, 1439):
            expected = (EPOCH + datetime.timedelta(days=day, minutes=minute)).astimezone(tz)
            assert shown(*local_day_minute(day, minute, offset, rule)) == expected.strftime(
                "%Y-%m-%d %H:%M"), (zone, shown(day, minute))


def test_summer_time_under_no_rule_is_never() -> None:
    day, minute = utc("2026-07-01 12:00")
    assert not summer_time(day * MINUTES_PER_DAY + minute, 60, DST_NONE)
    assert summer_time(day * MINUTES_PER_DAY + minute, 60, DST_EU)
