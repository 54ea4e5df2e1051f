"""Offers on the shop's clock (rule OFFER_SHOP_TIME), in the engine and in a terminal's
offline quote, on CPython and MicroPython. Berlin: UTC+1, EU summer time."""

from engine_steps import accepted, issued

from protocol import engine_offline
from protocol.programs import validate_program

FRIDAY = 20637  # 2026-07-03, summer (UTC+2 in Berlin)
TUESDAY = 20788  # 2026-12-01, winter (UTC+1)


def shop(clock):
    """Stacked: double points 17:00-19:00, 5 bonus points on Saturdays; 20.00 earns 20."""
    promotions = {"combine": "stack", "offers": [
        {"id": "happy", "hours": [[17, 19]], "earn_multiplier_bp": 20000},
        {"id": "saturday", "weekdays": ["sat"], "bonus_points": 5}]}
    promotions.update(clock)
    return validate_program("p", {"version": 1, "currency": "EUR",
                                  "points": {"earn_bp": 100, "points_per_unit": 100},
                                  "promotions": promotions})


BERLIN = shop({"utc_offset_minutes": 60, "dst": "eu"})
UTC = shop({})
SALES = ((FRIDAY, 15 * 60 + 30), (FRIDAY, 17 * 60 + 30), (FRIDAY, 22 * 60 + 30),
         (TUESDAY, 16 * 60 + 30))


def earned(program):
    results = []
    for number, (day, minute) in enumerate(SALES):
        op = {"op": "purchase", "id": "s%d" % number, "amount_minor": 2000, "minute": minute}
        _, effects = accepted(issued(program, day=day), program, op, day)
        results.append((effects["points_earned"], effects.get("promotions")))
    return results


def test_offers_follow_the_shops_clock_in_summer_and_winter():
    """17:30, 19:30, Saturday 00:30 in July, 17:30 in December, Berlin time."""
    assert earned(BERLIN) == [(40, ["happy"]), (20, None), (25, ["saturday"]),
                              (40, ["happy"])]
    assert earned(UTC) == [(20, None), (40, ["happy"]), (20, None), (20, None)]


def test_a_terminals_offline_quote_reads_the_same_clock():
    for program in (BERLIN, UTC):
        for day, minute in SALES:
            _, online = accepted(issued(program, day=day), program,
                                 {"op": "purchase", "id": "a", "amount_minor": 2000,
                                  "minute": minute}, day)
            quote = engine_offline.quote(program, None, 0, True, 2000, "other", day, minute)
            assert quote["points_earned"] == online["points_earned"], (day, minute)


def test_a_program_without_the_clock_validates_as_before():
    assert "utc_offset_minutes" not in UTC["promotions"] and "dst" not in UTC["promotions"]
    assert (BERLIN["promotions"]["utc_offset_minutes"], BERLIN["promotions"]["dst"]) == (60, "eu")
