"""`tilltap programs check|simulate`: program files named by line, ops files by line, and the
hand-computed scenarios run through the real command."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from protocol import reasons
from protocol.programs import validate_programs
from tests.support import REPO_ROOT
from tools.programs import ProgramFileError, load_programs, parse_ops, parse_programs

ENGINE_REASONS = (
    reasons.PROGRAM_INVALID,
    reasons.PROGRAM_MISMATCH,
    reasons.OPERATION_NOT_IN_PROGRAM,
    reasons.TOPUP_FROM_OWN_CARD,
    reasons.INSUFFICIENT_POINTS,
    reasons.REDEEM_EXCEEDS_AMOUNT,
    reasons.CARD_EXPIRED,
    reasons.CASH_OUT_NOT_ALLOWED,
    reasons.REWARD_UNKNOWN,
)
EXAMPLE = REPO_ROOT / "examples" / "programs.toml"
SCENARIOS = json.loads((REPO_ROOT / "tests" / "vectors" / "program_scenarios.json").read_text())
DOC = (REPO_ROOT / "docs" / "programs.md").read_text()
COMMAND_TIMEOUT_S = 60


def tilltap(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tools.cli", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)


def write_ops(path: Path, ops: list[Any]) -> Path:
    path.write_text("".join(json.dumps(op) + "\n" for op in ops))
    return path


def mismatches(expected: Any, actual: Any, where: str) -> list[str]:
    """As in tests/mpy/test_engine.py: keys of expected checked, an advance's cards exactly."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        found = []
        for key, value in expected.items():
            if key not in actual:
                found.append(f"{where}.{key} missing")
            else:
                found.extend(mismatches(value, actual[key], f"{where}.{key}"))
        if where.endswith(".cards") and set(expected) != set(actual):
            found.append(f"{where}: cards {sorted(actual)}, expected {sorted(expected)}")
        return found
    if expected != actual or type(expected) is not type(actual):
        return [f"{where}: {actual!r}, expected {expected!r}"]
    return []


def test_the_scenario_programs_are_the_example_file() -> None:
    assert load_programs(EXAMPLE) == validate_programs(SCENARIOS["programs"])


@pytest.mark.parametrize("scenario", SCENARIOS["scenarios"], ids=lambda s: s["name"])
def test_simulate_gives_the_hand_computed_scenario(scenario: dict[str, Any],
                                                   tmp_path: Path) -> None:
    ops = write_ops(tmp_path / "ops.jsonl", scenario["ops"])
    result = tilltap("programs", "simulate", "--config", str(EXAMPLE), "--ops", str(ops))
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert set(output) == {"cards", "ops"} and len(output["ops"]) == len(scenario["ops"])
    found = []
    for index, (expected, actual) in enumerate(zip(scenario["effects"], output["ops"],
                                                   strict=True)):
        found += mismatches(expected, actual, f"op{index}")
    found += mismatches(scenario["cards"], output["cards"], "final.cards")
    assert set(output["cards"]) == set(scenario["cards"])
    assert not found, "; ".join(found)


def test_check_lists_every_program_with_its_version_and_sections() -> None:
    result = tilltap("programs", "check", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "club v2 EUR: points + prepaid" in lines
    assert "bakery v1 EUR: points + volume + promotions" in lines
    assert "coffee v3 EUR: points + promotions + rewards" in lines
    assert len(lines) == 12  # incl. chainrank (rank), staff (company) and bakery


VISITS = ('[programs.p]\nversion = 1\ncurrency = "EUR"\n[programs.p.tiers]\nbasis = "visits"\n'
          'window_days = 30\ndowngrade = "days_below"\ndowngrade_days = 14\n'
          '[[programs.p.tiers.levels]]\nname = "a"\n')
MEMBERSHIP = ('[programs.p]\nversion = 1\ncurrency = "EUR"\n[programs.p.tiers]\n'
              'basis = "membership_days"\n')
RANK = ('[programs.p]\nversion = 1\ncurrency = "EUR"\n[programs.p.tiers]\nbasis = "rank"\n'
        'period_days = 30\n')
OFFER = ('[programs.p]\nversion = 1\ncurrency = "EUR"\n[programs.p.points]\nearn_bp = 100\n'
         '[[programs.p.promotions.offers]]\nid = "o"\n')
BAD_PROGRAMS = [
    ("float rate", '[programs.p]\nversion = 1\ncurrency = "EUR"\n\n[programs.p.points]\n'
     'earn_bp = 2.5\n', 6, "programs.p.points.earn_bp: must be an integer in 0..10000, not 2.5"),
    ("unknown key", '[programs.p]\nversion = 1\ncurrency = "EUR"\nkind = "gift"\n'
     '[programs.p.gift]\n', 4, "programs.p.kind: unknown key"),
    ("missing key", '[programs.p]\ncurrency = "EUR"\n[programs.p.gift]\n', 1,
     "programs.p.version: missing"),
    ("bad level", '[programs.p]\nversion = 1\ncurrency = "EUR"\n[programs.p.tiers]\n'
     'window_days = 30\ndowngrade = "period_end"\ndowngrade_days = 30\n'
     '[[programs.p.tiers.levels]]\nname = "a"\nspend_minor = 0\n'
     '[[programs.p.tiers.levels]]\nname = "a"\nspend_minor = 10\n', 12,
     "programs.p.tiers.levels.1.name: used twice"),
    ("spend threshold in a visits level", VISITS + 'spend_minor = 0\n', 11,
     "programs.p.tiers.levels.0.spend_minor: is for basis spend; a level of basis visits "
     "has min_visits"),
    ("more visits than days", VISITS + 'min_visits = 0\n[[programs.p.tiers.levels]]\n'
     'name = "b"\nmin_visits = 31\n', 14,
     "programs.p.tiers.levels.1.min_visits: must be an integer in 0..30"),
    ("a window for membership", MEMBERSHIP + 'window_days = 365\n[[programs.p.tiers.levels]]\n'
     'name = "a"\nmin_member_days = 0\n', 6,
     "programs.p.tiers.window_days: not for basis membership_days"),
    ("a window for rank", RANK + 'window_days = 30\n', 7,
     "programs.p.tiers.window_days: not for basis rank: the ranking at each period's end"),
    ("rank without a period", MEMBERSHIP.replace("membership_days", "rank"), 4,
     "programs.p.tiers.period_days: missing: an integer in 1..366"),
    ("a period for spend tiers", MEMBERSHIP.replace("membership_days", "spend") +
     'period_days = 30\n', 6, "programs.p.tiers.period_days: only for basis rank"),
    ("rank's first level not everyone", RANK + '[[programs.p.tiers.levels]]\nname = "a"\n'
     'top_pct = 50\n', 9, "programs.p.tiers.levels.0.top_pct: the first level is 100"),
    ("rank levels rising", RANK + '[[programs.p.tiers.levels]]\nname = "a"\ntop_pct = 100\n'
     '[[programs.p.tiers.levels]]\nname = "b"\ntop_pct = 10\n[[programs.p.tiers.levels]]\n'
     'name = "c"\ntop_pct = 20\n', 15,
     "programs.p.tiers.levels.2.top_pct: must be below the level before"),
    ("spend threshold in a rank level", RANK + '[[programs.p.tiers.levels]]\nname = "a"\n'
     'spend_minor = 0\n', 9, "programs.p.tiers.levels.0.spend_minor: is for basis spend; a "
     "level of basis rank has top_pct"),
    ("both value kinds", '[programs.p]\nversion = 1\ncurrency = "EUR"\n[programs.p.prepaid]\n'
     '[programs.p.gift]\n', 5, "programs.p.gift: a program is prepaid or gift, not both"),
    ("not TOML", '[programs.p]\nversion = = 1\n', 2, "not valid TOML"),
    ("hours backwards", OFFER + 'hours = [[7, 10], [22, 6]]\n', 8,
     "programs.p.promotions.offers.0.hours.1: [from, until]: whole hours, 0 <= from < until"),
    ("hours past midnight", OFFER + 'hours = [[20, 25]]\n', 8,
     "programs.p.promotions.offers.0.hours.0: [from, until]"),
    ("first purchase not a boolean", OFFER + 'first_purchase = "yes"\n', 8,
     "programs.p.promotions.offers.0.first_purchase"),
    ("birthday week misspelt", OFFER + 'birthday = true\n', 8,
     "programs.p.promotions.offers.0.birthday: unknown key"),
    ("targeted not a boolean", OFFER + 'targeted = 1\n', 8,
     "programs.p.promotions.offers.0.targeted"),
]


@pytest.mark.parametrize(("text", "line", "message"), [case[1:] for case in BAD_PROGRAMS],
                         ids=[case[0] for case in BAD_PROGRAMS])
def test_a_bad_program_file_is_refused_naming_its_line(text: str, line: int, message: str,
                                                       tmp_path: Path) -> None:
    with pytest.raises(ProgramFileError) as caught:
        parse_programs(text, "p.toml")
    assert caught.value.line == line and message in str(caught.value)
    assert str(caught.value).startswith(f"p.toml:{line}: ")
    path = tmp_path / "p.toml"
    path.write_text(text)
    result = tilltap("programs", "check", str(path))
    assert result.returncode == 2 and result.stdout == ""
    assert f"p.toml:{line}: " in result.stderr and message in result.stderr


def test_simulate_refuses_a_bad_program_file_before_any_operation(tmp_path: Path) -> None:
    config = tmp_path / "p.toml"
    config.write_text('[programs.p]\nversion = 1\ncurrency = "XXX"\n[programs.p.gift]\n')
    ops = write_ops(tmp_path / "ops.jsonl", [{"op": "advance", "days": 1}])
    result = tilltap("programs", "simulate", "--config", str(config), "--ops", str(ops))
    assert result.returncode == 2 and "p.toml:3: programs.p.currency" in result.stderr


BAD_OPS = [
    ("not JSON", '{"op": "advance", "days": 1', "message_malformed", "not JSON"),
    ("not an object", "[1, 2]", "message_malformed", "one JSON object"),
    ("unknown op", '{"op": "borrow", "card": "C1"}', "kind_unknown", "op must be one of"),
    ("missing field", '{"op": "topup", "card": "C1"}', "field_missing", "'amount_minor'"),
    ("unknown field", '{"op": "void", "of": 0, "amount_minor": 5}', "field_invalid",
     "void takes no 'amount_minor'"),
    ("refund of a later op", '{"op": "refund", "of": 5}', "field_invalid", "earlier op (0..0)"),
    ("bad card id", '{"op": "cashout", "card": "C 1"}', "field_invalid", "card must be"),
    ("bad days", '{"op": "advance", "days": 1.5}', "field_invalid", "days must be"),
]


@pytest.mark.parametrize(("line", "reason", "message"), [case[1:] for case in BAD_OPS],
                         ids=[case[0] for case in BAD_OPS])
def test_a_bad_ops_line_is_refused_naming_its_line(line: str, reason: str, message: str,
                                                   tmp_path: Path) -> None:
    text = '{"op": "issue", "card": "C1", "program": "coffee"}\n\n' + line + "\n"
    with pytest.raises(ProgramFileError) as caught:
        parse_ops(text, "ops.jsonl")
    assert caught.value.line == 3 and caught.value.reason == reason
    assert message in str(caught.value)
    ops = tmp_path / "ops.jsonl"
    ops.write_text(text)
    result = tilltap("programs", "simulate", "--config", str(EXAMPLE), "--ops", str(ops))
    assert result.returncode == 2 and result.stdout == ""
    assert "ops.jsonl:3: " in result.stderr and f"({reason})" in result.stderr


def test_amounts_reach_the_engine_so_its_refusals_can_be_simulated() -> None:
    ops = parse_ops('{"op": "issue", "card": "C1", "program": "coffee"}\n'
                    '{"op": "purchase", "card": "C1", "amount_minor": 12.5, "note": "a float"}\n')
    assert ops[1]["amount_minor"] == 12.5


def test_simulate_replays_an_offline_sale_as_it_happened_at_the_counter(
        tmp_path: Path) -> None:
    """An offline sale quoted at the till and paid beyond the card's value: replayed with
    `happened` and the counter's discount, it overdraws the card as the gateway takes it."""
    ops = write_ops(tmp_path / "ops.jsonl", [
        {"op": "issue", "card": "W1", "program": "wallet", "value_minor": 1000},
        {"op": "purchase", "card": "W1", "amount_minor": 1500, "pay": "card",
         "happened": True, "discount_minor": 100},
        {"op": "purchase", "card": "W1", "amount_minor": 100, "pay": "card"},
        {"op": "purchase", "card": "W1", "amount_minor": 100, "happened": "yes"},
    ])
    result = tilltap("programs", "simulate", "--config", str(EXAMPLE), "--ops", str(ops))
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    sale, online, wrong = output["ops"][1:]
    assert (sale["discount_minor"], sale["card_minor"], sale["overdraft_minor"]) == (
        100, 1400, 400)
    assert online["declined"] == "insufficient_value"  # online, the card is below zero
    assert wrong["declined"] == "field_invalid"
    assert output["cards"]["W1"]["value_minor"] == -400


def test_the_documented_simulate_example_runs_and_nothing_is_declined(tmp_path: Path) -> None:
    section = DOC[DOC.index("## 5. `tilltap programs simulate`"):]
    example = section[section.index("```\n") + 4:]
    example = example[:example.index("```")]
    ops = tmp_path / "ops.jsonl"
    ops.write_text(example, encoding="utf-8")
    result = tilltap("programs", "simulate", "--config", str(EXAMPLE), "--ops", str(ops))
    assert result.returncode == 0, result.stderr
    output = json.loads(result.stdout)
    assert len(output["ops"]) == 11
    assert [op for op in output["ops"] if "declined" in op] == []


def test_missing_files_exit_2_with_a_message(tmp_path: Path) -> None:
    result = tilltap("programs", "check", str(tmp_path / "absent.toml"))
    assert result.returncode == 2 and "absent.toml" in result.stderr
    result = tilltap("programs", "simulate", "--config", str(EXAMPLE), "--ops",
                     str(tmp_path / "absent.jsonl"))
    assert result.returncode == 2 and "absent.jsonl" in result.stderr


def test_the_document_names_every_key_reason_and_rounding_rule() -> None:
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", DOC, re.MULTILINE))
    assert set(ENGINE_REASONS) <= documented
    keys = set(re.findall(r"`([a-z_]+)`", DOC))
    for program in load_programs(EXAMPLE).values():
        for key, value in program.items():
            assert key in keys, key
            if isinstance(value, dict):
                assert set(value) <= keys, value
    assert {"earn_bp", "earn_multiplier_bp", "spend_minor", "name", "discount_pct"} <= keys
    assert {"down", "half_up", "half_even", "up"} <= keys


def test_simulate_replays_a_first_purchase_and_a_birthday_week(tmp_path: Path) -> None:
    """Day 0 is 1970-01-01. 1 point per euro; a first purchase earns 50 more; the birthday
    week of 3 January is days 2..8: 10 % off. Day 0: 20.00 -> 20 + 50. Day 2, birthday
    "01-03": 18.00 paid, 18 points. Day 9: out of the week, 20 points."""
    config = tmp_path / "p.toml"
    config.write_text('[programs.p]\nversion = 1\ncurrency = "EUR"\n[programs.p.points]\n'
                      'earn_bp = 100\npoints_per_unit = 100\n'
                      '[[programs.p.promotions.offers]]\nid = "welcome"\n'
                      'first_purchase = true\nbonus_points = 50\n'
                      '[[programs.p.promotions.offers]]\nid = "birthday"\n'
                      'birthday_week = true\ndiscount_pct = 10\n')
    sale = {"op": "purchase", "card": "C1", "amount_minor": 2000, "birthday": "01-03"}
    ops = write_ops(tmp_path / "ops.jsonl", [
        {"op": "issue", "card": "C1", "program": "p"}, sale, {"op": "advance", "days": 2},
        sale, {"op": "advance", "days": 7}, sale])
    result = tilltap("programs", "simulate", "--config", str(config), "--ops", str(ops))
    assert result.returncode == 0, result.stderr
    sales = [op for op in json.loads(result.stdout)["ops"] if op["op"] == "purchase"]
    assert [(op["discount_minor"], op["points_earned"], op.get("promotions")) for op in sales
            ] == [(0, 70, ["welcome"]), (200, 18, ["birthday"]), (0, 20, None)]


# -- targeted offers (engine_promotions TARGETED_OFFER_GRANTED) -------------------------------


def test_simulate_gives_a_targeted_offer_only_to_a_granted_card_while_it_has_uses(
        tmp_path: Path) -> None:
    """1 point per euro; offer "comeback" (targeted): 200 bonus points; offer "all": 10 bonus
    points for everyone, stacked. 20.00 before the grant: 20 + 10 = 30; granted 1 use up to
    day 0: 20 + 200 + 10 = 230, then 30 again (the use is taken); a sale with "grants": false
    (offline) after a new grant: 30, the use kept for the next sale: 230. A grant of an offer
    that is not targeted is declined and changes nothing."""
    config = tmp_path / "p.toml"
    config.write_text('[programs.p]\nversion = 1\ncurrency = "EUR"\n[programs.p.points]\n'
                      'earn_bp = 100\npoints_per_unit = 100\n[programs.p.promotions]\n'
                      'combine = "stack"\n'
                      '[[programs.p.promotions.offers]]\nid = "comeback"\ntargeted = true\n'
                      'bonus_points = 200\n'
                      '[[programs.p.promotions.offers]]\nid = "all"\nbonus_points = 10\n')
    sale = {"op": "purchase", "card": "C1", "amount_minor": 2000}
    grant = {"op": "grant", "card": "C1", "offer": "comeback", "uses": 1, "last_day": 0}
    ops = write_ops(tmp_path / "ops.jsonl", [
        {"op": "issue", "card": "C1", "program": "p"}, sale, grant, sale, sale, grant,
        {**sale, "grants": False}, sale, {**grant, "offer": "all"}])
    result = tilltap("programs", "simulate", "--config", str(config), "--ops", str(ops))
    assert result.returncode == 0, result.stderr
    done = json.loads(result.stdout)["ops"]
    assert [(op.get("points_earned"), op.get("promotions"), op.get("declined"))
            for op in done[1:]] == [
        (30, ["all"], None), (None, None, None), (230, ["comeback", "all"], None),
        (30, ["all"], None), (None, None, None), (30, ["all"], None),
        (230, ["comeback", "all"], None), (None, None, "field_invalid")]
