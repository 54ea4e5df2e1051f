"""A shop's local day and minute from the engine's UTC day and minute (pure; MicroPython too).

Offers by date, weekday and hour (protocol/engine_promotions.py) are written in the shop's
time: "happy hour 17-19" means 17:00 on the shop's clock, summer and winter. A program's
promotions give the shop's standard offset from UTC and its summer-time rule; the engine
turns the sale's UTC instant into the shop's day and minute with them.

Summer-time rules (named, published law; no time-zone database: a terminal has none):

    none   no summer time
    eu     European Union (Directive 2000/84/EC): +60 min from the last Sunday of March
           01:00 UTC to the last Sunday of October 01:00 UTC
    us     United States (Energy Policy Act of 2005): +60 min from the second Sunday of
           March 02:00 local standard time to the first Sunday of November 02:00 local
           summer time (01:00 standard)

Days are the engine's: whole days since 1970-01-01 (a Thursday), proleptic Gregorian.
"""

DST_NONE = "none"
DST_EU = "eu"
DST_US = "us"
DST_RULES = (DST_NONE, DST_EU, DST_US)
OFFSET_MINUTES_MIN = -720  # UTC-12:00
OFFSET_MINUTES_MAX = 840  # UTC+14:00
MINUTES_PER_DAY = 1440
SUMMER_SHIFT_MINUTES = 60
_MONTH_DAYS = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def is_leap(year):
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def year_start(year):
    """Days from 1970-01-01 to 1 January of `year`."""
    before = year - 1
    return (year - 1970) * 365 + before // 4 - before // 100 + before // 400 - 477


def year_of(day):
    year = 1970 + day * 400 // 146097
    while year_start(year) > day:
        year -= 1
    while year_start(year + 1) <= day:
        year += 1
    return year


def month_start(year, month):
    """The day of the 1st of `month` (1..12) in `year`."""
    day = year_start(year)
    for index in range(month - 1):
        day += _MONTH_DAYS[index]
    if month > 2 and is_leap(year):
        day += 1
    return day


def _is_sunday(day):
    return (day + 3) % 7 == 6  # Monday 0: day 0 (1970-01-01) was a Thursday (3)


def nth_sunday(year, month, nth):
    """The day of the `nth` (1..4) Sunday of the month."""
    day = month_start(year, month)
    while not _is_sunday(day):
        day += 1
    return day + 7 * (nth - 1)


def last_sunday(year, month):
    following = month_start(year + 1, 1) if month == 12 else month_start(year, month + 1)
    day = following - 1
    while not _is_sunday(day):
        day -= 1
    return day


def summer_time(instant, offset_minutes, rule):
    """Is the UTC `instant` (minutes since 1970-01-01 00:00 UTC) in summer time under
    `rule`, for a shop of standard offset `offset_minutes`?"""
    if rule == DST_NONE:
        return False
    year = year_of(instant // MINUTES_PER_DAY)
    if rule == DST_EU:
        start = last_sunday(year, 3) * MINUTES_PER_DAY + 60
        end = last_sunday(year, 10) * MINUTES_PER_DAY + 60
    elif rule == DST_US:
        start = nth_sunday(year, 3, 2) * MINUTES_PER_DAY + 120 - offset_minutes
        end = (nth_sunday(year, 11, 1) * MINUTES_PER_DAY + 120 - offset_minutes
               - SUMMER_SHIFT_MINUTES)
    else:
        raise AssertionError("unknown summer-time rule " + str(rule))
    return start <= instant < end


def local_day_minute(day, minute, offset_minutes, rule):
    """The shop's (day, minute of its day) at the UTC `day` and `minute` (0..1439)."""
    instant = day * MINUTES_PER_DAY + minute
    shift = offset_minutes
    if summer_time(instant, offset_minutes, rule):
        shift += SUMMER_SHIFT_MINUTES
    local = instant + shift
    return local // MINUTES_PER_DAY, local % MINUTES_PER_DAY
