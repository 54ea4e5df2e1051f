"""Every option of `tilltap` (tools/cli.py) and of `tilltap gateway run`
(tools/gateway_run.py) says what it is for; an old name kept for old scripts says it is
deprecated; an option defaulting to a TILLTAP_* variable names it; and one thing has one
name across commands (issue 16: --terminals/--registry, --card-keys/--master-key, --dsn)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from tools.command import ENVIRONMENT_VARIABLES, positive_int

# Old names and the name each thing has now.
RETIRED = {"--card-keys": "--master-key", "--dsn": "--ledger-dsn", "--terminals": "--registry"}


def _options() -> Iterator[tuple[str, argparse.Action]]:
    """(command, option) for every option of every command, subcommands included."""
    from tools.cli import build_parser
    from tools.gateway_run import _parser as gateway_parser

    pending = [build_parser(), gateway_parser()]
    while pending:
        parser = pending.pop()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                pending.extend(action.choices.values())
            else:
                yield parser.prog, action


def _name(command: str, action: argparse.Action) -> str:
    return f"{command} {'/'.join(action.option_strings) or action.dest}"


def test_every_option_has_help_text() -> None:
    undocumented = [_name(command, action) for command, action in _options()
                    if not action.help or not action.help.strip()]
    assert not undocumented


def test_an_old_option_name_is_listed_after_the_new_and_said_to_be_deprecated() -> None:
    unexplained = []
    for command, action in _options():
        long_names = [name for name in action.option_strings if name.startswith("--")]
        for old in long_names[1:]:
            if long_names[0] != RETIRED.get(old) or f"{old}: its old name, deprecated" not in (
                    action.help or ""):
                unexplained.append(_name(command, action))
    assert not unexplained


def test_a_retired_name_is_never_an_options_first_name() -> None:
    """--terminals stays only where it counts simulated terminals (demo), never a file."""
    still_first = [_name(command, action) for command, action in _options()
                   if action.option_strings and action.option_strings[0] in RETIRED
                   and not (action.option_strings[0] == "--terminals"
                            and action.type is positive_int)]
    assert not still_first


@pytest.mark.parametrize("option", sorted(ENVIRONMENT_VARIABLES))
def test_an_option_with_a_variable_names_it_everywhere(option: str) -> None:
    variable = ENVIRONMENT_VARIABLES[option]
    having = [(command, action) for command, action in _options()
              if action.option_strings[:1] == [option]]
    assert having  # every variable is some option's default
    silent = [_name(command, action) for command, action in having
              if f"${variable}" not in (action.help or "")]
    assert not silent
