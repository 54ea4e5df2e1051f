"""Offers on the shop's clock (`promotions.utc_offset_minutes` and `dst`, protocol/local_time.py,
rule OFFER_SHOP_TIME), through `tilltap programs simulate` and `check`, hand-computed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support import REPO_ROOT

COMMAND_TIMEOUT_S = 60
FRIDAY_2026_07_03 = 20637  # days since 1970-01-01 (2026-01-01, a Thursday, is day 20454)
TUESDAY_2026_12_01 = 20788

PROGRAM = '''[programs.p]
version = 1
currency = "EUR"
[programs.p.points]
earn_bp = 100              # 1 %: a 20.00 sale earns 20 points of 0.01
points_per_unit = 100
[programs.p.promotions]
combine = "stack"
{clock}
[[programs.p.promotions.offers]]
id = "happy"
hours = [[17, 19]]
earn_multiplier_bp = 20000
[[programs.p.promotions.offers]]
id = "saturday"
weekdays = ["sat"]
bonus_points = 5
'''
BERLIN = 'utc_offset_minutes = 60\ndst = "eu"'


def tilltap(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)


def simulate(tmp_path: Path, clock: str) -> list[tuple[int, Any]]:
    """(points earned, offers) of four 20.00 sales: Friday 3 July 2026 at 15:30, 17:30 and
    22:30 UTC, and Tuesday 1 December 2026 at 16:30 UTC."""
    config = tmp_path / "p.toml"
    config.write_text(PROGRAM.format(clock=clock))

    def sale(minute: int) -> dict[str, Any]:
        return {"op": "purchase", "card": "C1", "amount_minor": 2000, "minute": minute}

    ops = tmp_path / "ops.jsonl"
    ops.write_text("".join(json.dumps(op) + "\n" for op in [
        {"op": "issue", "card": "C1", "program": "p"},
        {"op": "advance", "days": FRIDAY_2026_07_03},
        sale(15 * 60 + 30), sale(17 * 60 + 30), sale(22 * 60 + 30),
        {"op": "advance", "days": TUESDAY_2026_12_01 - FRIDAY_2026_07_03},
        sale(16 * 60 + 30)]))
    result = tilltap("programs", "simulate", "--config", str(config), "--ops", str(ops))
    assert result.returncode == 0, result.stderr
    return [(op["points_earned"], op.get("promotions"))
            for op in json.loads(result.stdout)["ops"] if op["op"] == "purchase"]


def test_offers_follow_the_shops_clock_in_summer_and_winter(tmp_path: Path) -> None:
    """Berlin (UTC+1, EU summer time). 15:30 UTC in July is 17:30 there: happy hour, double
    points (40). 17:30 UTC is 19:30: none (20). 22:30 UTC on Friday is 00:30 on Saturday:
    5 bonus points (25). 16:30 UTC in December is 17:30 in winter: happy hour (40)."""
    assert simulate(tmp_path, BERLIN) == [
        (40, ["happy"]), (20, None), (25, ["saturday"]), (40, ["happy"])]


def test_without_the_shops_clock_offers_are_on_utc(tmp_path: Path) -> None:
    """The same sales on UTC: 17:30 is happy hour, Friday stays Friday, 16:30 is not."""
    assert simulate(tmp_path, "") == [(20, None), (40, ["happy"]), (20, None), (20, None)]


@pytest.mark.parametrize(("clock", "line", "message"), [
    ('utc_offset_minutes = 900', 9, "promotions.utc_offset_minutes: must be an integer in "
                                    "-720..840, not 900"),
    ('dst = "au"', 9, "promotions.dst: must be one of none, eu, us, not 'au'"),
])
def test_check_names_a_bad_clock_by_its_line(tmp_path: Path, clock: str, line: int,
                                             message: str) -> None:
    config = tmp_path / "p.toml"
    config.write_text(PROGRAM.format(clock=clock))
    result = tilltap("programs", "check", str(config))
    assert result.returncode == 2
    assert f"p.toml:{line}: programs.p.{message} (program_invalid)" in result.stderr
    assert result.stderr.count("\n") == 1
