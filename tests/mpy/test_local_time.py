"""The shop's local day and minute on MicroPython: the published 2026 summer-time switches
(EU 29 March / 25 October at 01:00 UTC, US 8 March / 1 November at 02:00 local), as the
CPython test checks them against the IANA database (tests/protocol/test_local_time.py)."""

from protocol.local_time import local_day_minute

# (UTC day, UTC minute, offset, rule) -> the shop's (day, minute). 20541 is 2026-03-29.
SWITCHES = (
    ((20541, 59, 60, "eu"), (20541, 119)),      # Berlin 01:59, winter
    ((20541, 60, 60, "eu"), (20541, 180)),      # 03:00, summer
    ((20751, 59, 60, "eu"), (20751, 179)),      # 2026-10-25 02:59, summer
    ((20751, 60, 60, "eu"), (20751, 120)),      # 02:00 again, winter
    ((20520, 419, -300, "us"), (20520, 119)),   # New York 2026-03-08 01:59
    ((20520, 420, -300, "us"), (20520, 180)),   # 03:00
    ((20758, 359, -300, "us"), (20758, 119)),   # 2026-11-01 01:59, summer
    ((20758, 360, -300, "us"), (20758, 60)),    # 01:00 again
    ((20818, 1200, 540, "none"), (20819, 300)),  # Tokyo: 2027-01-01 05:00
    ((20819, 120, -600, "none"), (20818, 960)),  # Honolulu: 2026-12-31 16:00
    ((19813, 60, 0, "eu"), (19813, 120)),       # Lisbon 2024-03-31 02:00 (a leap year)
    ((20030, 539, -480, "us"), (20030, 119)),   # Los Angeles 2024-11-03 01:59
)


def test_the_shops_clock_at_each_published_switch():
    for given, expected in SWITCHES:
        assert local_day_minute(*given) == expected, (given, expected)
