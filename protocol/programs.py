"""Card programs as data: a plain dict validated into the program protocol.engine runs.

TOML at the office (tools/programs.py) and configuration pushed to a terminal both arrive as
plain dicts, so a terminal can refuse a bad program itself:

    validate_programs({"programs": {"coffee": {...}, ...}}) -> {"coffee": program, ...}
    validate_program("coffee", {...}) -> program

A program's kind is the sections it has (docs/programs.md has every key):

    loyalty points      points                 earn, redeem, expire oldest first
    prepaid             prepaid                top-up with a bonus
    gift                gift                   sold with a value, optional expiry
    loyalty + prepaid   points and prepaid
    discount tracking   discount               spend reaches a threshold -> % off for a while
    volume discount     volume                 a sale at or above a price -> % off that sale
    tiers               tiers (+ levels)       rolling spend, visits or days since issue
                                               -> earn multiplier and/or discount

Any program with points may add `promotions` (offers by day, weekday, hour, tier, first
purchase and birthday week) and `rewards` (a catalogue of items redeemed for points,
protocol/engine_reward.py).

A validated program has every key, absent sections and optional values as None; validating
it again gives it back unchanged.

    ValidationError
    +-- ProgramInvalid   reason `program_invalid`; `key_path` is the tuple of keys from the top
                         of the document to the value at fault (the TOML loader names its line)
"""

from protocol import local_time, money
from protocol.errors import ValidationError
from protocol.reasons import PROGRAM_INVALID

PROGRAMS_MAX = 64
VERSION_MAX = 2**31 - 1
ID_LENGTH_MAX = 32
NAME_LENGTH_MAX = 64
PERCENT_BP_MAX = 10000  # 100 %
MULTIPLIER_BP_MAX = 100000  # 10 x
EXPIRY_DAYS_MAX = 3660  # ten years
WINDOW_DAYS_MAX = 731  # two years of spend or of refundable sales per card
REFUND_WINDOW_DAYS_DEFAULT = 90
TIER_LEVELS_MAX = 8
TIER_MEMBER_DAYS_MAX = 18300  # fifty years since a card's issue
DOWNGRADE_RULES = ("period_end", "days_below")
# What a card's tier rests on (protocol/engine_spend.py), and the key of each level's
# threshold for it: rolling spend, visits in the window (one a day, rule VISIT_PER_DAY),
# or days since the card's issue (membership only grows: no window, no downgrade).
TIER_BASIS_SPEND = "spend"
TIER_BASIS_VISITS = "visits"
TIER_BASIS_MEMBER_DAYS = "membership_days"
# Rank in the chain (issue 18): each level's `top_pct` of the program's cards by spend in
# the period, set by the ledger's ranking at each period's end (a `rank` operation); the
# first level is 100 (everyone), then strictly falling. No window, no downgrade: the level
# holds until the next ranking.
TIER_BASIS_RANK = "rank"
TIER_RANK_PERIOD_DAYS_MAX = 366  # at least one ranking a year
TIER_BASES = (TIER_BASIS_SPEND, TIER_BASIS_VISITS, TIER_BASIS_MEMBER_DAYS, TIER_BASIS_RANK)
TIER_THRESHOLD_KEYS = {TIER_BASIS_SPEND: "spend_minor", TIER_BASIS_VISITS: "min_visits",
                       TIER_BASIS_MEMBER_DAYS: "min_member_days", TIER_BASIS_RANK: "top_pct"}
THRESHOLD_RULES = ("at_least", "above")  # a threshold is met at it, or only beyond it
COMBINE_RULES = ("best", "stack")  # protocol/engine_promotions.py
OFFERS_MAX = 16
OFFER_BONUS_POINTS_MAX = 10**6
OFFER_PRIORITY_MAX = 1000
HOUR_RANGES_MAX = 4  # per offer: [from, until) hour ranges of the sale's UTC day
HOURS_PER_DAY = 24
DAY_MAX = 2932896  # 9999-12-31 as days since 1970-01-01
WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
REWARD_ITEMS_MAX = 32  # the catalogue travels in the terminals' signed configuration
REWARD_POINTS_MAX = 10**9

PROGRAM_KEYS = ("id", "version", "currency", "name", "refund_window_days",
                "points", "prepaid", "gift", "discount", "tiers", "volume", "promotions",
                "rewards", "company")
SECTIONS = ("points", "prepaid", "gift", "discount", "tiers", "volume")
_REQUIRED = ["required"]  # a unique marker: no configured value is this object


class ProgramInvalid(ValidationError):
    def __init__(self, key_path, detail):
        super().__init__(PROGRAM_INVALID, _dotted(key_path) + ": " + detail)
        self.key_path = key_path


def _dotted(key_path):
    return ".".join(str(key) for key in key_path)


def is_id(value):
    if not isinstance(value, str) or not 0 < len(value) <= ID_LENGTH_MAX:
        return False
    for char in value:
        if not ("a" <= char <= "z" or "A" <= char <= "Z" or "0" <= char <= "9" or char in "_-"):
            return False
    return True


def validate_programs(document):
    """{"programs": {id: table}} -> {id: program}; ProgramInvalid at the first fault."""
    _only(_as_table(document, ()), (), ("programs",))
    programs = _table(document, (), "programs")
    if not programs:
        raise ProgramInvalid(("programs",), "at least one program is needed")
    if len(programs) > PROGRAMS_MAX:
        raise ProgramInvalid(("programs",), "at most %d programs" % PROGRAMS_MAX)
    return {key: validate_program(key, programs[key], ("programs",))
            for key in sorted(programs)}


def validate_program(program_id, table, key_path=()):
    path = key_path + (program_id,)
    if not is_id(program_id):
        raise ProgramInvalid(path, "a program id is 1..32 of A-Z a-z 0-9 _ -")
    table = _as_table(table, path)
    _only(table, path, PROGRAM_KEYS)
    if table.get("id", program_id) != program_id:
        raise ProgramInvalid(path + ("id",), "differs from the program's key")
    currency = _text(table, path, "currency", 3, 3)
    if money.exponent_or_none(currency) is None:
        raise ProgramInvalid(path + ("currency",), "not a known ISO 4217 code: %s" % currency)
    program = {
        "id": program_id,
        "version": _integer(table, path, "version", 1, VERSION_MAX),
        "currency": currency,
        "name": _text(table, path, "name", 1, NAME_LENGTH_MAX, None),
        "refund_window_days": _integer(table, path, "refund_window_days", 1, WINDOW_DAYS_MAX,
                                       REFUND_WINDOW_DAYS_DEFAULT),
        "points": _points(table, path, money.exponent(currency)),
        "prepaid": _prepaid(table, path),
        "gift": _gift(table, path),
        "discount": _discount(table, path),
        "tiers": _tiers(table, path),
        "volume": _volume(table, path),
    }
    program["promotions"] = _promotions(table, path, program)
    program["rewards"] = _rewards(table, path, program)
    # Company cards: only a program with the section carries the key, so the programs of
    # terminals that do not know it stay exactly as they were (additive).
    company = _company(table, path, program)
    if company is not None:
        program["company"] = company
    _check_sections(program, path)
    return program


def _check_sections(program, path):
    if not any(program[section] is not None for section in SECTIONS):
        raise ProgramInvalid(path, "needs at least one of: " + ", ".join(SECTIONS))
    if program["prepaid"] is not None and program["gift"] is not None:
        raise ProgramInvalid(path + ("gift",), "a program is prepaid or gift, not both")
    tiers = program["tiers"]
    if tiers is not None and program["points"] is None:
        for index in range(len(tiers["levels"])):
            if tiers["levels"][index]["earn_multiplier_bp"] != 10000:
                raise ProgramInvalid(path + ("tiers", "levels", index, "earn_multiplier_bp"),
                                     "an earn multiplier needs a points section")


def _points(table, path, exponent):
    section = _table(table, path, "points")
    if section is None:
        return None
    path = path + ("points",)
    _only(section, path, ("earn_bp", "earn_rounding", "points_per_unit", "expiry_days"))
    per_unit = _integer(section, path, "points_per_unit", 1, 10**exponent, 1)
    if 10**exponent % per_unit:
        raise ProgramInvalid(path + ("points_per_unit",),
                             "must divide %d, so a point is worth whole minor units" % (
                                 10**exponent))
    return {
        "earn_bp": _integer(section, path, "earn_bp", 0, PERCENT_BP_MAX),
        "earn_rounding": _rounding(section, path, "earn_rounding"),
        "points_per_unit": per_unit,
        "expiry_days": _integer(section, path, "expiry_days", 1, EXPIRY_DAYS_MAX, None),
    }


def _prepaid(table, path):
    section = _table(table, path, "prepaid")
    if section is None:
        return None
    path = path + ("prepaid",)
    _only(section, path, ("bonus_bp", "bonus_rounding", "cash_out"))
    return {
        "bonus_bp": _integer(section, path, "bonus_bp", 0, PERCENT_BP_MAX, 0),
        "bonus_rounding": _rounding(section, path, "bonus_rounding"),
        "cash_out": _boolean(section, path, "cash_out", False),
    }


def _gift(table, path):
    section = _table(table, path, "gift")
    if section is None:
        return None
    path = path + ("gift",)
    _only(section, path, ("expiry_days", "cash_out"))
    return {
        "expiry_days": _integer(section, path, "expiry_days", 1, EXPIRY_DAYS_MAX, None),
        "cash_out": _boolean(section, path, "cash_out", False),
    }


def _discount(table, path):
    section = _table(table, path, "discount")
    if section is None:
        return None
    path = path + ("discount",)
    _only(section, path, ("threshold_minor", "threshold_rule", "qualify_days", "discount_pct",
                          "duration_days", "discount_rounding"))
    return {
        "threshold_minor": _integer(section, path, "threshold_minor", 1, money.AMOUNT_MINOR_MAX),
        "threshold_rule": _choice(section, path, "threshold_rule", THRESHOLD_RULES, "at_least"),
        "qualify_days": _integer(section, path, "qualify_days", 1, WINDOW_DAYS_MAX),
        "discount_pct": _integer(section, path, "discount_pct", 1, 100),
        "duration_days": _integer(section, path, "duration_days", 1, WINDOW_DAYS_MAX),
        "discount_rounding": _rounding(section, path, "discount_rounding"),
    }


def _volume(table, path):
    """A discount on the sale itself when its price reaches a threshold ("spend 100, get
    10 % off")."""
    section = _table(table, path, "volume")
    if section is None:
        return None
    path = path + ("volume",)
    _only(section, path, ("threshold_minor", "threshold_rule", "discount_pct",
                          "discount_rounding"))
    return {
        "threshold_minor": _integer(section, path, "threshold_minor", 1, money.AMOUNT_MINOR_MAX),
        "threshold_rule": _choice(section, path, "threshold_rule", THRESHOLD_RULES, "at_least"),
        "discount_pct": _integer(section, path, "discount_pct", 1, 100),
        "discount_rounding": _rounding(section, path, "discount_rounding"),
    }


def _tiers(table, path):
    section = _table(table, path, "tiers")
    if section is None:
        return None
    path = path + ("tiers",)
    _only(section, path, ("basis", "window_days", "downgrade", "downgrade_days",
                          "period_days", "discount_rounding", "levels"))
    basis = _choice(section, path, "basis", TIER_BASES, TIER_BASIS_SPEND)
    rolling = basis not in (TIER_BASIS_MEMBER_DAYS, TIER_BASIS_RANK)
    if not rolling:
        for key in ("window_days", "downgrade", "downgrade_days"):
            if section.get(key) is not None:
                raise ProgramInvalid(path + (key,), "not for basis %s: %s" % (
                    basis, "the days since issue only grow (no window, no downgrade)"
                    if basis == TIER_BASIS_MEMBER_DAYS else "the ranking at each period's "
                    "end sets the level (no window, no downgrade)"))
    if basis != TIER_BASIS_RANK and section.get("period_days") is not None:
        raise ProgramInvalid(path + ("period_days",), "only for basis rank")
    window = _integer(section, path, "window_days", 1, WINDOW_DAYS_MAX) if rolling else None
    if basis == TIER_BASIS_RANK:
        return {
            "basis": basis, "window_days": None, "downgrade": None, "downgrade_days": None,
            "period_days": _integer(section, path, "period_days", 1, TIER_RANK_PERIOD_DAYS_MAX,
                                    _REQUIRED),
            "discount_rounding": _rounding(section, path, "discount_rounding"),
            "levels": _levels(section, path, basis, None),
        }
    return {
        "basis": basis,
        "window_days": window,
        "downgrade": _choice(section, path, "downgrade", DOWNGRADE_RULES, _REQUIRED)
        if rolling else None,
        "downgrade_days": _integer(section, path, "downgrade_days", 1, WINDOW_DAYS_MAX)
        if rolling else None,
        "discount_rounding": _rounding(section, path, "discount_rounding"),
        "levels": _levels(section, path, basis, window),
    }


def _levels(section, path, basis, window_days):
    """The levels, lowest first, each with the threshold of the tiers' basis (its key in
    TIER_THRESHOLD_KEYS): the first at 0, then strictly rising."""
    path = path + ("levels",)
    levels = section.get("levels")
    if not isinstance(levels, list) or not 1 <= len(levels) <= TIER_LEVELS_MAX:
        raise ProgramInvalid(path, "a list of 1..%d levels ([[...tiers.levels]] tables)" % (
            TIER_LEVELS_MAX))
    key = TIER_THRESHOLD_KEYS[basis]
    # Spend in minor units; at most one visit a day in the window; days since issue.
    high = {TIER_BASIS_SPEND: money.AMOUNT_MINOR_MAX, TIER_BASIS_VISITS: window_days,
            TIER_BASIS_MEMBER_DAYS: TIER_MEMBER_DAYS_MAX, TIER_BASIS_RANK: 100}[basis]
    rank = basis == TIER_BASIS_RANK  # top_pct: from 100 (everyone), strictly falling
    checked = []  # type: list[dict]
    for index in range(len(levels)):
        level_path = path + (index,)
        level = _as_table(levels[index], level_path)
        for other in TIER_BASES:
            if other != basis and TIER_THRESHOLD_KEYS[other] in level:
                raise ProgramInvalid(level_path + (TIER_THRESHOLD_KEYS[other],),
                                     "is for basis %s; a level of basis %s has %s" % (
                                         other, basis, key))
        _only(level, level_path, ("name", key, "earn_multiplier_bp", "discount_pct"))
        name = level.get("name")
        if not is_id(name):
            raise ProgramInvalid(level_path + ("name",), "a level name is 1..32 of A-Z a-z 0-9 _ -")
        threshold = _integer(level, level_path, key, 1 if rank else 0, high)
        if index == 0 and threshold != (100 if rank else 0):
            raise ProgramInvalid(level_path + (key,), "the first level is 100 (everyone)"
                                 if rank else "the first level starts at 0")
        if index > 0 and rank and threshold >= checked[-1][key]:
            raise ProgramInvalid(level_path + (key,), "must be below the level before")
        if index > 0 and not rank and threshold <= checked[-1][key]:
            raise ProgramInvalid(level_path + (key,), "must be above the level before")
        for earlier in checked:
            if earlier["name"] == name:
                raise ProgramInvalid(level_path + ("name",), "used twice: %s" % name)
        checked.append({
            "name": name,
            key: threshold,
            "earn_multiplier_bp": _integer(level, level_path, "earn_multiplier_bp", 0,
                                           MULTIPLIER_BP_MAX, 10000),
            "discount_pct": _integer(level, level_path, "discount_pct", 0, 100, 0),
        })
    return checked


def _promotions(table, path, program):
    """Offers by day, weekday, hour, tier, first purchase, birthday week and targeted
    (protocol/engine_promotions.py)."""
    section = _table(table, path, "promotions")
    if section is None:
        return None
    path = path + ("promotions",)
    _only(section, path, ("combine", "discount_rounding", "offers", "utc_offset_minutes",
                          "dst"))
    offers = section.get("offers")
    if not isinstance(offers, list) or not 1 <= len(offers) <= OFFERS_MAX:
        raise ProgramInvalid(path + ("offers",), "a list of 1..%d offers ([[...promotions."
                                                 "offers]] tables)" % OFFERS_MAX)
    levels = [] if program["tiers"] is None else [
        level["name"] for level in program["tiers"]["levels"]]
    checked = []  # type: list[dict]
    for index in range(len(offers)):
        offer_path = path + ("offers", index)
        offer = _as_table(offers[index], offer_path)
        _only(offer, offer_path, ("id", "name", "first_day", "last_day", "weekdays", "hours",
                                  "tiers", "first_purchase", "birthday_week",
                                  "earn_multiplier_bp", "bonus_points", "discount_pct",
                                  "priority", "targeted"))
        offer_id = _text(offer, offer_path, "id", 1, ID_LENGTH_MAX)
        if not is_id(offer_id) or offer_id in [done["id"] for done in checked]:
            raise ProgramInvalid(offer_path + ("id",), "1..32 of A-Z a-z 0-9 _ -, unique")
        first = _day(offer, offer_path, "first_day")
        last = _day(offer, offer_path, "last_day")
        if first is not None and last is not None and last < first:
            raise ProgramInvalid(offer_path + ("last_day",), "before first_day")
        entry = {
            "id": offer_id,
            "name": _text(offer, offer_path, "name", 1, NAME_LENGTH_MAX, None),
            "first_day": first, "last_day": last,
            "weekdays": _names(offer, offer_path, "weekdays", WEEKDAY_NAMES),
            "hours": _hours(offer, offer_path),
            "tiers": _names(offer, offer_path, "tiers", levels),
            "first_purchase": _boolean(offer, offer_path, "first_purchase", False),
            "birthday_week": _boolean(offer, offer_path, "birthday_week", False),
            "earn_multiplier_bp": _integer(offer, offer_path, "earn_multiplier_bp", 0,
                                           MULTIPLIER_BP_MAX, 10000),
            "bonus_points": _integer(offer, offer_path, "bonus_points", 0,
                                     OFFER_BONUS_POINTS_MAX, 0),
            "discount_pct": _integer(offer, offer_path, "discount_pct", 0, 100, 0),
            "priority": _integer(offer, offer_path, "priority", 0, OFFER_PRIORITY_MAX, 0),
        }
        if program["points"] is None and (entry["earn_multiplier_bp"] != 10000
                                          or entry["bonus_points"]):
            raise ProgramInvalid(offer_path, "points offers need a points section")
        # Targeted offers (engine_promotions TARGETED_OFFER_GRANTED): kept only when true, so
        # programs without them reach terminals as before.
        if _boolean(offer, offer_path, "targeted", False):
            entry["targeted"] = True
        checked.append(entry)
    promotions = {"combine": _choice(section, path, "combine", COMBINE_RULES, "best"),
                  "discount_rounding": _rounding(section, path, "discount_rounding"),
                  "offers": checked}
    # The shop's clock for days, weekdays and hours (protocol/local_time.py); kept only when
    # given, so programs without it reach terminals as before.
    offset = _integer(section, path, "utc_offset_minutes", local_time.OFFSET_MINUTES_MIN,
                      local_time.OFFSET_MINUTES_MAX, 0)
    rule = _choice(section, path, "dst", local_time.DST_RULES, local_time.DST_NONE)
    if offset or rule != local_time.DST_NONE:
        promotions["utc_offset_minutes"] = offset
        promotions["dst"] = rule
    return promotions


def _rewards(table, path, program):
    """The rewards catalogue: items redeemed for points, perhaps with a co-payment in other
    tender (protocol/engine_reward.py). Needs a points section."""
    section = _table(table, path, "rewards")
    if section is None:
        return None
    path = path + ("rewards",)
    _only(section, path, ("items",))
    if program["points"] is None:
        raise ProgramInvalid(path, "rewards are redeemed for points: needs a points section")
    items = section.get("items")
    if not isinstance(items, list) or not 1 <= len(items) <= REWARD_ITEMS_MAX:
        raise ProgramInvalid(path + ("items",), "a list of 1..%d items ([[...rewards.items]]"
                                               " tables)" % REWARD_ITEMS_MAX)
    checked = []  # type: list[dict]
    for index in range(len(items)):
        item_path = path + ("items", index)
        item = _as_table(items[index], item_path)
        _only(item, item_path, ("id", "name", "points", "copay_minor"))
        item_id = _text(item, item_path, "id", 1, ID_LENGTH_MAX)
        if not is_id(item_id) or item_id in [done["id"] for done in checked]:
            raise ProgramInvalid(item_path + ("id",), "1..32 of A-Z a-z 0-9 _ -, unique")
        entry = {
            "id": item_id,
            "name": _text(item, item_path, "name", 1, NAME_LENGTH_MAX, None),
            "points": _integer(item, item_path, "points", 1, REWARD_POINTS_MAX),
            "copay_minor": _integer(item, item_path, "copay_minor", 0,
                                    money.AMOUNT_MINOR_MAX, 0),
        }
        # A redemption's record carries the item's price (its points' worth and the
        # co-payment) as its amount: an amount the wire can carry.
        worth = entry["points"] * (10**money.exponent(program["currency"])
                                   // program["points"]["points_per_unit"])
        if worth + entry["copay_minor"] > money.AMOUNT_MINOR_MAX:
            raise ProgramInvalid(item_path, "points' worth plus copay_minor is above %d" % (
                money.AMOUNT_MINOR_MAX))
        checked.append(entry)
    return {"items": checked}


# -- company cards (protocol/engine_company.py) ----------------------------------------------


def _company(table, path, program):
    """Each card's spending limits: per purchase and per day, on the card value a purchase
    takes. Needs a prepaid section (a company card spends loaded value) and one limit."""
    section = _table(table, path, "company")
    if section is None:
        return None
    path = path + ("company",)
    _only(section, path, ("purchase_max_minor", "day_max_minor"))
    if program["prepaid"] is None:
        raise ProgramInvalid(path, "company cards spend loaded value: needs a prepaid section")
    limits = {
        "purchase_max_minor": _integer(section, path, "purchase_max_minor", 1,
                                       money.AMOUNT_MINOR_MAX, None),
        "day_max_minor": _integer(section, path, "day_max_minor", 1,
                                  money.AMOUNT_MINOR_MAX, None),
    }
    if limits["purchase_max_minor"] is None and limits["day_max_minor"] is None:
        raise ProgramInvalid(path, "needs purchase_max_minor and/or day_max_minor")
    return limits


def _names(table, path, key, allowed):
    """A list of names, each one of `allowed`, no name twice (absent: [], every one)."""
    value = table.get(key)
    if value is None:
        return []
    if not isinstance(value, list) or any(name not in allowed for name in value) or len(
            set(value)) != len(value):
        raise ProgramInvalid(path + (key,), "a list of distinct names of: " + ", ".join(allowed))
    return list(value)


def _hours(table, path):
    """Hour ranges [from, until) of the sale's UTC day, 0 <= from < until <= 24, at most
    HOUR_RANGES_MAX (absent: [], every hour)."""
    value = table.get("hours")
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > HOUR_RANGES_MAX:
        raise ProgramInvalid(path + ("hours",), "a list of at most %d [from, until] hour "
                                                "ranges" % HOUR_RANGES_MAX)
    ranges = []  # type: list[list[int]]
    for index in range(len(value)):
        pair = value[index]
        if (not isinstance(pair, list) or len(pair) != 2
                or any(not isinstance(hour, int) or isinstance(hour, bool) for hour in pair)
                or not 0 <= pair[0] < pair[1] <= HOURS_PER_DAY):
            raise ProgramInvalid(path + ("hours", index),
                                 "[from, until]: whole hours, 0 <= from < until <= 24")
        ranges.append([pair[0], pair[1]])
    return ranges


def _day(table, path, key):
    """A day as days since 1970-01-01: an integer, or a date written "YYYY-MM-DD"."""
    value = table.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        value = days_of_date(value)
        if value is None:
            raise ProgramInvalid(path + (key,), "a date YYYY-MM-DD (from 1970), or a day number")
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= DAY_MAX:
        raise ProgramInvalid(path + (key,), "a date YYYY-MM-DD (from 1970), or a day number")
    return value


def days_of_date(text):
    """Days from 1970-01-01 to the date "YYYY-MM-DD" (proleptic Gregorian), or None."""
    if len(text) != 10 or text[4] != "-" or text[7] != "-":
        return None
    parts = (text[0:4], text[5:7], text[8:10])
    for part in parts:
        if not part.isdigit():
            return None
    year, month, day = int(parts[0]), int(parts[1]), int(parts[2])
    if year < 1970 or not 1 <= month <= 12 or day < 1:
        return None
    first = local_time.month_start(year, month)
    following = (local_time.month_start(year + 1, 1) if month == 12
                 else local_time.month_start(year, month + 1))
    if first + day - 1 >= following:
        return None
    return first + day - 1


# -- readers: each names the key at fault -------------------------------------------------


def _table(parent, path, key):
    """parent[key] as a table (a dict), or None when it is absent."""
    value = parent.get(key)
    return None if value is None else _as_table(value, path + (key,))


def _as_table(value, path):
    if not isinstance(value, dict):
        raise ProgramInvalid(path or ("(document)",), "must be a table")
    for name in value:
        if not isinstance(name, str):
            raise ProgramInvalid(path, "keys must be text, not %r" % (name,))
    return value


def _only(table, path, allowed):
    for key in sorted(str(name) for name in table):
        if key not in allowed:
            raise ProgramInvalid(path + (key,), "unknown key (known: %s)" % ", ".join(allowed))


def _integer(table, path, key, low, high, default=_REQUIRED):
    value = table.get(key)
    if value is None:
        if default is _REQUIRED:
            raise ProgramInvalid(path + (key,), "missing: an integer in %d..%d" % (low, high))
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise ProgramInvalid(path + (key,), "must be an integer in %d..%d, not %r" % (
            low, high, value))
    return value


def _text(table, path, key, low, high, default=_REQUIRED):
    value = table.get(key)
    if value is None:
        if default is _REQUIRED:
            raise ProgramInvalid(path + (key,), "missing: a text")
        return default
    if not isinstance(value, str) or not low <= len(value) <= high:
        raise ProgramInvalid(path + (key,), "must be a text of %d..%d characters" % (low, high))
    return value


def _choice(table, path, key, choices, default):
    value = table.get(key)
    if value is None and default is not _REQUIRED:
        return default
    if value not in choices:
        raise ProgramInvalid(path + (key,), "must be one of %s, not %r" % (
            ", ".join(choices), value))
    return value


def _rounding(table, path, key):
    return _choice(table, path, key, money.ROUNDING_RULES, money.ROUND_DOWN)


def _boolean(table, path, key, default):
    value = table.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise ProgramInvalid(path + (key,), "must be true or false")
    return value
