"""Card programs as a terminal reads them: docs/programs.md section 1 (validation) and
section 2.1 (the offline quote), pure.

    check_programs(programs, exponents) -> programs, or Refused(program_invalid)
    quote(program, snapshot, same_day, amount_minor, pay_card, exponent) -> Quote,
          or Refused(field_invalid) for a snapshot the program cannot have given

A configuration holds each program as validation returns it (docs/protocol.md 5.7): every
program key present, a section the program does not have as null, as in the example of
docs/protocol.md section 8. Within a section an optional key may be absent or null: its
default then applies.

Guess: docs/programs.md leaves some bounds unsaid (the lowest refund_window_days, the
highest gift expiry_days, the discount section's day counts, downgrade_days, a level's
earn_multiplier_bp); this takes the widest reading (0..731 for the refund window, any
integer >= 1 for day counts, >= 0 for a multiplier), so that it never refuses a program the
gateway can publish. points_per_unit must divide 10^exponent, and the docs do not say how a
terminal learns a currency's exponent (protocol/money.py holds the list): this one knows the
exponents it is given (`exponents`, from its provisioning) and checks >= 1 for any other.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import Refused

PROGRAM_KEYS = frozenset({"id", "version", "currency", "name", "refund_window_days",
                          "points", "prepaid", "gift", "discount", "tiers", "volume",
                          "promotions", "rewards"})
SECTION_KEYS = {
    "points": ("earn_bp", "earn_rounding", "points_per_unit", "expiry_days"),
    "prepaid": ("bonus_bp", "bonus_rounding", "cash_out"),
    "gift": ("expiry_days", "cash_out"),
    "discount": ("threshold_minor", "threshold_rule", "qualify_days", "discount_pct",
                 "duration_days", "discount_rounding"),
    "tiers": ("basis", "window_days", "downgrade", "downgrade_days", "discount_rounding",
              "levels", "period_days"),
    "volume": ("threshold_minor", "threshold_rule", "discount_pct", "discount_rounding"),
    "promotions": ("combine", "discount_rounding", "offers", "utc_offset_minutes", "dst"),
    "rewards": ("items",),
}
COMPANY_KEYS = ("purchase_max_minor", "day_max_minor")
REWARD_ITEM_KEYS = ("id", "name", "points", "copay_minor")
OFFER_KEYS = ("id", "name", "first_day", "last_day", "weekdays", "hours", "tiers",
              "first_purchase", "birthday_week", "earn_multiplier_bp", "bonus_points",
              "discount_pct", "priority", "targeted")
WEEKDAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
THRESHOLD_RULES = ("at_least", "above")
LEVEL_KEYS = ("name", "earn_multiplier_bp", "discount_pct")  # and the basis's threshold
TIER_THRESHOLD_KEYS = {"spend": "spend_minor", "visits": "min_visits",
                       "membership_days": "min_member_days", "rank": "top_pct"}
RANK_PERIOD_DAYS_MAX = 366
ROLLING_KEYS = ("window_days", "downgrade", "downgrade_days")  # not for membership_days
MEMBER_DAYS_MAX = 18_300
ROUNDING_RULES = ("down", "half_up", "half_even", "up")
DOWNGRADE_RULES = ("period_end", "days_below")
VERSION_MAX = 2**31 - 1
NAME_CHARS_MAX = 64
BP_MAX = 10_000
PCT_MAX = 100
MULTIPLIER_ONE_BP = 10_000
WINDOW_DAYS_MAX = 731
POINTS_EXPIRY_DAYS_MAX = 3660
LEVELS_MAX = 8
AMOUNT_MAX = 10**12
INT_MAX = 2**63 - 1  # "no bound said": any integer a program can hold

_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_CURRENCY = re.compile(r"[A-Z]{3}")


def _invalid(path: str, detail: str) -> Refused:
    return Refused("program_invalid", f"{path}: {detail}")


def _integer(table: Mapping[str, Any], path: str, key: str, low: int, high: int,
             default: int | None = None) -> int | None:
    """table[key] as an integer in low..high; absent or null: `default` (None: required)."""
    value = table.get(key)
    if value is None:
        if default is None:
            raise _invalid(f"{path}.{key}", "missing")
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _invalid(f"{path}.{key}", f"an integer in {low}..{high}, not {value!r}")
    return value


def _optional_integer(table: Mapping[str, Any], path: str, key: str, low: int,
                      high: int) -> None:
    if table.get(key) is not None:
        _integer(table, path, key, low, high)


def _choice(table: Mapping[str, Any], path: str, key: str, choices: tuple[str, ...],
            required: bool = False) -> None:
    value = table.get(key)
    if (value is None and required) or (value is not None and value not in choices):
        raise _invalid(f"{path}.{key}", f"one of {', '.join(choices)}, not {value!r}")


def _boolean(table: Mapping[str, Any], path: str, key: str) -> None:
    value = table.get(key)
    if value is not None and not isinstance(value, bool):
        raise _invalid(f"{path}.{key}", "true or false")


def _section(program: Mapping[str, Any], path: str, name: str) -> dict[str, Any] | None:
    section = program[name]
    if section is None:
        return None
    if not isinstance(section, dict) or not all(isinstance(k, str) for k in section):
        raise _invalid(f"{path}.{name}", "a map with text keys, or null")
    unknown = set(section) - set(SECTION_KEYS[name])
    if unknown:
        raise _invalid(f"{path}.{name}", f"unknown keys {sorted(unknown)}")
    return section


def _check_company(section: Any, path: str, prepaid: dict[str, Any] | None) -> None:
    """A company card's limits: purchase_max_minor and/or day_max_minor, on a prepaid program."""
    if not isinstance(section, dict) or set(section) != set(COMPANY_KEYS):
        raise _invalid(path, f"a map of exactly {', '.join(COMPANY_KEYS)}")
    if prepaid is None:
        raise _invalid(path, "needs a prepaid section")
    for key in COMPANY_KEYS:
        _optional_integer(section, path, key, 1, AMOUNT_MAX)
    if all(section[key] is None for key in COMPANY_KEYS):
        raise _invalid(path, "needs a limit")


def _check_points(section: dict[str, Any], path: str, exponent: int | None) -> None:
    _integer(section, path, "earn_bp", 0, BP_MAX)
    _choice(section, path, "earn_rounding", ROUNDING_RULES)
    per_unit = _integer(section, path, "points_per_unit", 1, INT_MAX, default=1)
    if exponent is not None and per_unit is not None and 10**exponent % per_unit:
        raise _invalid(f"{path}.points_per_unit", f"must divide {10**exponent}")
    _optional_integer(section, path, "expiry_days", 1, POINTS_EXPIRY_DAYS_MAX)


def _check_levels(tiers: dict[str, Any], path: str, has_points: bool) -> None:
    basis = tiers.get("basis") or "spend"
    key = TIER_THRESHOLD_KEYS[basis]
    high = {"spend": AMOUNT_MAX, "visits": tiers.get("window_days"),
            "membership_days": MEMBER_DAYS_MAX, "rank": PCT_MAX}[basis]
    rank = basis == "rank"  # top_pct: 100 for the first level, then falling
    assert high is not None  # a visits window is checked before its levels
    levels = tiers.get("levels")
    if not isinstance(levels, list) or not 1 <= len(levels) <= LEVELS_MAX:
        raise _invalid(f"{path}.levels", f"a list of 1..{LEVELS_MAX} levels")
    names: set[str] = set()
    previous_threshold = -1
    for index, level in enumerate(levels):
        at = f"{path}.levels.{index}"
        if not isinstance(level, dict) or set(level) - {*LEVEL_KEYS, key}:
            raise _invalid(at, f"a map of {', '.join(LEVEL_KEYS)}, {key}")
        name = level.get("name")
        if not isinstance(name, str) or not _ID.fullmatch(name) or name in names:
            raise _invalid(f"{at}.name", "an id, unique in the program")
        names.add(name)
        threshold = _integer(level, at, key, 1 if rank else 0, high)
        assert threshold is not None
        if rank and ((index == 0 and threshold != PCT_MAX)
                     or (index and threshold >= previous_threshold)):
            raise _invalid(f"{at}.{key}", "100 for the first level, then falling")
        if not rank and ((index == 0 and threshold != 0)
                         or (index and threshold <= previous_threshold)):
            raise _invalid(f"{at}.{key}", "0 for the first level, then rising")
        previous_threshold = threshold
        multiplier = _integer(level, at, "earn_multiplier_bp", 0, INT_MAX,
                              default=MULTIPLIER_ONE_BP)
        if multiplier != MULTIPLIER_ONE_BP and not has_points:
            raise _invalid(f"{at}.earn_multiplier_bp", "needs a points section")
        _integer(level, at, "discount_pct", 0, PCT_MAX, default=0)


def check_program(program_id: Any, program: Any, exponents: Mapping[str, int]) -> None:
    """docs/programs.md section 1, on the validated shape of docs/protocol.md 5.7."""
    path = f"programs.{program_id}"
    if not isinstance(program_id, str) or not _ID.fullmatch(program_id):
        raise _invalid(path, "a program id is 1..32 of A-Z a-z 0-9 _ -")
    if not isinstance(program, dict) or set(program) - {"company"} != PROGRAM_KEYS:
        raise _invalid(path, f"a map of exactly {', '.join(sorted(PROGRAM_KEYS))}"
                             " (and `company` when it has the section)")
    if program["id"] != program_id:
        raise _invalid(f"{path}.id", "differs from the program's key")
    _integer(program, path, "version", 1, VERSION_MAX)
    currency = program["currency"]
    if not isinstance(currency, str) or not _CURRENCY.fullmatch(currency):
        raise _invalid(f"{path}.currency", "an ISO 4217 code")
    name = program["name"]
    if name is not None and not (isinstance(name, str) and 1 <= len(name) <= NAME_CHARS_MAX):
        raise _invalid(f"{path}.name", f"a text of 1..{NAME_CHARS_MAX} characters, or null")
    _integer(program, path, "refund_window_days", 0, WINDOW_DAYS_MAX)
    sections = {name: _section(program, path, name) for name in SECTION_KEYS}
    if all(section is None for section in sections.values()):
        raise _invalid(path, "needs at least one section")
    if sections["prepaid"] is not None and sections["gift"] is not None:
        raise _invalid(path, "prepaid or gift, not both")
    if (points := sections["points"]) is not None:
        _check_points(points, f"{path}.points", exponents.get(currency))
    if (prepaid := sections["prepaid"]) is not None:
        _integer(prepaid, f"{path}.prepaid", "bonus_bp", 0, BP_MAX, default=0)
        _choice(prepaid, f"{path}.prepaid", "bonus_rounding", ROUNDING_RULES)
        _boolean(prepaid, f"{path}.prepaid", "cash_out")
    if (gift := sections["gift"]) is not None:
        _optional_integer(gift, f"{path}.gift", "expiry_days", 1, INT_MAX)
        _boolean(gift, f"{path}.gift", "cash_out")
    if (discount := sections["discount"]) is not None:
        at = f"{path}.discount"
        _integer(discount, at, "threshold_minor", 0, AMOUNT_MAX)
        _integer(discount, at, "qualify_days", 1, INT_MAX)
        _integer(discount, at, "discount_pct", 1, PCT_MAX)
        _integer(discount, at, "duration_days", 1, INT_MAX)
        _choice(discount, at, "discount_rounding", ROUNDING_RULES)
        _choice(discount, at, "threshold_rule", THRESHOLD_RULES)
    if (promotions := sections["promotions"]) is not None:
        at = f"{path}.promotions"
        _choice(promotions, at, "combine", ("best", "stack"))
        _choice(promotions, at, "discount_rounding", ROUNDING_RULES)
        _integer(promotions, at, "utc_offset_minutes", -720, 840, default=0)
        _choice(promotions, at, "dst", ("none", "eu", "us"))
        offers = promotions.get("offers")
        if not isinstance(offers, list) or not offers:
            raise _invalid(f"{at}.offers", "a list of offers")
        levels = [level["name"] for level in (sections["tiers"] or {}).get("levels", [])]
        for index, offer in enumerate(offers):
            where = f"{at}.offers.{index}"
            if not isinstance(offer, dict) or set(offer) - set(OFFER_KEYS):
                raise _invalid(where, f"a map of {', '.join(OFFER_KEYS)}")
            for key, allowed in (("weekdays", WEEKDAY_NAMES), ("tiers", tuple(levels))):
                names = offer.get(key) or []
                if not isinstance(names, list) or any(name not in allowed for name in names):
                    raise _invalid(f"{where}.{key}", f"names of {', '.join(allowed)}")
            hours = offer.get("hours") or []
            if not isinstance(hours, list) or len(hours) > 4 or any(
                    not isinstance(pair, list) or len(pair) != 2
                    or not all(type(hour) is int for hour in pair)
                    or not 0 <= pair[0] < pair[1] <= 24 for pair in hours):
                raise _invalid(f"{where}.hours", "at most 4 [from, until] hours, 0..24")
            for key in ("first_purchase", "birthday_week", "targeted"):
                if not isinstance(offer.get(key, False), bool):
                    raise _invalid(f"{where}.{key}", "true or false")
            _integer(offer, where, "earn_multiplier_bp", 0, INT_MAX, default=MULTIPLIER_ONE_BP)
            _integer(offer, where, "discount_pct", 0, PCT_MAX, default=0)
    if (rewards := sections["rewards"]) is not None:
        at = f"{path}.rewards"
        if sections["points"] is None:
            raise _invalid(at, "needs a points section")
        items = rewards.get("items")
        if not isinstance(items, list) or not items:
            raise _invalid(f"{at}.items", "a list of items")
        for index, item in enumerate(items):
            where = f"{at}.items.{index}"
            if not isinstance(item, dict) or set(item) != set(REWARD_ITEM_KEYS):
                raise _invalid(where, f"a map of exactly {', '.join(REWARD_ITEM_KEYS)}")
            if not isinstance(item["id"], str) or not _ID.fullmatch(item["id"]):
                raise _invalid(f"{where}.id", "an id")
            _integer(item, where, "points", 1, INT_MAX)
            _integer(item, where, "copay_minor", 0, AMOUNT_MAX)
    if "company" in program:  # company cards (docs/programs.md "Company cards")
        _check_company(program["company"], f"{path}.company", sections["prepaid"])
    if (volume := sections["volume"]) is not None:
        at = f"{path}.volume"
        _integer(volume, at, "threshold_minor", 0, AMOUNT_MAX)
        _integer(volume, at, "discount_pct", 1, PCT_MAX)
        _choice(volume, at, "threshold_rule", THRESHOLD_RULES)
        _choice(volume, at, "discount_rounding", ROUNDING_RULES)
    if (tiers := sections["tiers"]) is not None:
        at = f"{path}.tiers"
        _choice(tiers, at, "basis", tuple(TIER_THRESHOLD_KEYS))
        if tiers.get("basis") == "rank":
            _integer(tiers, at, "period_days", 1, RANK_PERIOD_DAYS_MAX)
        elif tiers.get("period_days") is not None:
            raise _invalid(f"{at}.period_days", "only for basis rank")
        if tiers.get("basis") in ("membership_days", "rank"):  # no window, no downgrade
            for key in ROLLING_KEYS:
                if tiers.get(key) is not None:
                    raise _invalid(f"{at}.{key}", "not for basis " + tiers["basis"])
        else:
            _integer(tiers, at, "window_days", 1, WINDOW_DAYS_MAX)
            _choice(tiers, at, "downgrade", DOWNGRADE_RULES, required=True)
            _integer(tiers, at, "downgrade_days", 1, INT_MAX)
        _choice(tiers, at, "discount_rounding", ROUNDING_RULES)
        _check_levels(tiers, at, points is not None)


def check_programs(programs: dict[Any, Any],
                   exponents: Mapping[str, int]) -> dict[str, dict[str, Any]]:
    for program_id, program in programs.items():
        check_program(program_id, program, exponents)
    return programs


# -- section 2.1: the offline quote --------------------------------------------------------------
def divide(numerator: int, denominator: int, rule: str | None) -> int:
    """numerator / denominator (both >= 0) rounded by a rule of docs/programs.md."""
    quotient, remainder = divmod(numerator, denominator)
    if not remainder or rule in (None, "down"):
        return quotient
    if rule == "up":
        return quotient + 1
    if 2 * remainder != denominator:
        return quotient + (2 * remainder > denominator)
    return quotient + (rule == "half_up" or quotient % 2)


@dataclass(frozen=True)
class Quote:
    discount_minor: int
    card_minor: int
    points_earned: int


def _level(program: dict[str, Any], tier: str | None) -> dict[str, Any] | None:
    tiers = program["tiers"]
    if tiers is None:
        if tier is not None:
            raise Refused("field_invalid", "a tier for a program without tiers")
        return None
    for level in tiers["levels"]:
        if level["name"] == tier:
            return level
    raise Refused("field_invalid", f"tier {tier!r} is not a level of the program")


def _level_value(level: dict[str, Any] | None, key: str, default: int) -> int:
    value = None if level is None else level.get(key)
    return default if value is None else int(value)


def quote(program: dict[str, Any], tier: str | None, discount_pct: int, same_day: bool,
          amount_minor: int, pay_card: bool, exponent: int) -> Quote:
    """A purchase without point redemption priced from the card's last answer (2.1): the
    tracked percent only on the answer's day; the larger percent wins, the tier's on a tie,
    each rounded by its own rule; points on what is paid, with the tier's multiplier."""
    assert amount_minor > 0, "an offline purchase has a positive amount"
    level = _level(program, tier)
    tier_pct = _level_value(level, "discount_pct", 0)
    if not 0 <= discount_pct <= PCT_MAX or (
            discount_pct > tier_pct and program["discount"] is None):
        raise Refused("field_invalid", f"discount_pct {discount_pct}")
    tracked_pct = discount_pct if same_day else 0
    volume = program.get("volume")
    volume_pct = 0
    if volume is not None:
        threshold = int(volume["threshold_minor"])
        reached = (amount_minor > threshold if volume.get("threshold_rule") == "above"
                   else amount_minor >= threshold)
        volume_pct = int(volume["discount_pct"]) if reached else 0
    if volume_pct > tracked_pct and volume_pct > tier_pct:
        discount = divide(amount_minor * volume_pct, PCT_MAX, volume.get("discount_rounding"))
    elif tracked_pct > tier_pct:
        rule = program["discount"].get("discount_rounding")
        discount = divide(amount_minor * tracked_pct, PCT_MAX, rule)
    elif tier_pct:
        discount = divide(amount_minor * tier_pct, PCT_MAX, program["tiers"].get(
            "discount_rounding"))
    else:
        discount = 0
    paid = amount_minor - discount
    points_earned = 0
    points = program["points"]
    if points is not None:
        multiplier = _level_value(level, "earn_multiplier_bp", MULTIPLIER_ONE_BP)
        minor_per_point = 10**exponent // (points.get("points_per_unit") or 1)
        points_earned = divide(paid * points["earn_bp"] * multiplier,
                               BP_MAX * BP_MAX * minor_per_point, points.get("earn_rounding"))
    limits = program.get("company")  # a company card's per-purchase limit on its card part
    if pay_card and limits is not None and limits["purchase_max_minor"] is not None and (
            paid > limits["purchase_max_minor"]):
        raise Refused("card_purchase_limit", f"{paid} > {limits['purchase_max_minor']}")
    return Quote(discount, paid if pay_card else 0, points_earned)
