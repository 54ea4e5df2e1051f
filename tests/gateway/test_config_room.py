"""Programs must fit a terminal's signed configuration (CONFIG_BYTES_MAX) with room left for
HOTLIST_ROOM_MIN_CARDS blocked cards: `tilltap programs check` refuses a file that would not
(exit 2, one line), and so does the gateway before it starts; a file that just fits gives
every terminal, even one with the longest id, a configuration carrying that many blocks."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from gateway.fleet import HOTLIST_ROOM_MIN_CARDS, ConfigTooLarge, FleetConfig
from gateway.registry import TerminalRegistry
from protocol import messages, sealed
from protocol.money import AMOUNT_MINOR_MAX
from protocol.offline import LIMIT_KEYS
from protocol.programs import validate_programs
from tests.support import REPO_ROOT
from tools.programs import ProgramFileError, parse_programs

ITEMS_PER_PROGRAM = 32  # the catalogue's most items
COMMAND_TIMEOUT_S = 60
LONGEST_ID = "t" * messages.ID_CHARS_MAX
LARGEST_LIMITS = {key: AMOUNT_MINOR_MAX for key in LIMIT_KEYS}  # the largest a store may set


def catalogue_file(items: int) -> str:
    """Points programs whose rewards catalogues hold `items` items in all, with long names."""
    lines = []
    for program in range((items + ITEMS_PER_PROGRAM - 1) // ITEMS_PER_PROGRAM):
        lines += [f"[programs.shop{program}]", "version = 1", 'currency = "EUR"',
                  f"[programs.shop{program}.points]", "earn_bp = 500"]
        for item in range(program * ITEMS_PER_PROGRAM,
                          min(items, (program + 1) * ITEMS_PER_PROGRAM)):
            lines += [f"[[programs.shop{program}.rewards.items]]", f'id = "item{item}"',
                      f'name = "{"A long reward name for the shelf label":.40} {item}"',
                      "points = 100"]
    return "\n".join(lines) + "\n"


def fits(items: int) -> bool:
    try:
        parse_programs(catalogue_file(items))
    except ProgramFileError as error:
        assert error.reason == "config_invalid" and error.line == 1
        return False
    return True


@pytest.fixture(scope="module")
def most_items() -> int:
    """The most catalogue items (in programs of 32) that still fit, by bisection."""
    low, high = 1, 4 * ITEMS_PER_PROGRAM
    assert fits(low) and not fits(high)
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if fits(middle) else (low, middle)
    return low


def test_programs_that_just_fit_leave_room_for_the_blocked_cards_on_every_terminal(
        most_items: int) -> None:
    programs = parse_programs(catalogue_file(most_items))
    blocked = [f"{number:032d}" for number in range(messages.HOTLIST_MAX)]
    fleet = FleetConfig(2**31 - 1, programs, LARGEST_LIMITS, blocked)
    registry = TerminalRegistry()
    registry.add(LONGEST_ID, "M1", bytes(32))
    data = fleet.sealed_for(registry, LONGEST_ID)
    assert len(data) <= messages.CONFIG_BYTES_MAX
    carried = sealed.open_message(data, messages.TYPE_CONFIG, bytes(32))["hotlist"]
    assert len(carried) >= HOTLIST_ROOM_MIN_CARDS
    assert sealed.open_message(data, messages.TYPE_CONFIG, bytes(32))["programs"] == programs


def test_one_item_more_is_refused_by_the_gateway_before_it_starts(most_items: int) -> None:
    programs = parse_programs(catalogue_file(most_items))
    text = catalogue_file(most_items + 1)
    with pytest.raises(ProgramFileError):
        parse_programs(text)
    # The gateway is also given programs as validated JSON, which skips the file check.
    programs_over = validate_programs(tomllib.loads(text))
    with pytest.raises(ConfigTooLarge) as raised:
        FleetConfig(1, programs_over, LARGEST_LIMITS, [])
    assert raised.value.reason == "config_invalid" and "blocked cards" in raised.value.detail
    FleetConfig(1, programs, LARGEST_LIMITS, [])  # the one that fits starts


def test_check_refuses_the_file_in_one_line_with_exit_2(most_items: int,
                                                        tmp_path: Path) -> None:
    path = tmp_path / "catalogue.toml"
    path.write_text(catalogue_file(most_items + 1))
    result = subprocess.run([sys.executable, "-m", "tools.cli", "programs", "check", str(path)],
                            cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=COMMAND_TIMEOUT_S)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert f"{path}:1: " in result.stderr and "(config_invalid)" in result.stderr


def test_the_gateway_does_not_start_on_programs_a_terminal_cannot_take(
        most_items: int, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tools.gateway_run import main as gateway_main

    too_many = validate_programs(tomllib.loads(catalogue_file(most_items + 1)))
    programs = tmp_path / "programs.json"  # validated programs, as exported
    programs.write_text(json.dumps(too_many))
    code = gateway_main(["--db", str(tmp_path / "gw.db"), "--terminals",
                         str(tmp_path / "none.json"), "--programs", str(programs),
                         "--broker-port", "1"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "programs.json:1: " in err and "(config_invalid)" in err
    assert not (tmp_path / "gw.db").exists()  # nothing was started
