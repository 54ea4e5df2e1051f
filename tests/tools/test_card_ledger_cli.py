"""`tilltap card block|unblock|show CARD`: the back office blocks a card at the ledger for
every store and reads its state back; refusals and outages are one line on stderr."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.auth import dump_logins, new_login
from ledger.errors import HoldRefused
from ledger.server import LedgerServer, serve
from tests.ledger.builders import batch, hold_request, issue
from tests.support import engine_history
from tests.support.engine_history import time_of
from tools.cli import main
from tools.programs import parse_programs


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[tuple[LedgerServer, Path, Path]]:
    """A SQLite ledger with card C1 (50.00) and token files of a cards and a reader login."""
    made = {"tech": new_login("tech", "cards"), "alice": new_login("alice", "reader")}
    logins = tmp_path / "logins.json"
    logins.write_text(dump_logins({name: login for name, (login, _) in made.items()}))
    for name, (_, token) in made.items():
        (tmp_path / f"{name}.token").write_text(token)
    server = serve(f"sqlite://{tmp_path / 'ledger.db'}", logins_file=logins)
    server.books.post_batch(batch("gw1-1", issue("T1-1")))
    yield server, tmp_path / "tech.token", tmp_path / "alice.token"
    server.stop()


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_block_show_and_unblock_a_card_through_the_ledger(
        ledger: tuple[LedgerServer, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """Blocked, the card is refused holds and shows its block; unblocked, it is held again."""
    server, tech, alice = ledger
    where = ("--ledger-url", server.url, "--ledger-token-file")
    status, out, _ = _run(capsys, "card", "block", "C1", "--reason", "stolen", *where, str(tech))
    assert status == 0 and json.loads(out)["blocked"] is True
    with pytest.raises(HoldRefused):
        server.books.place_hold(hold_request("H1"))
    status, out, err = _run(capsys, "card", "show", "C1", *where, str(alice))
    shown = json.loads(out)
    assert status == 0
    assert err == ("tilltap card show: no tier, discount or points lots: the ledger was started"
                   " without programs (ledger serve --programs FILE) (no_programs)\n")
    assert (shown["value_minor"], shown["points"], shown["held_minor"]) == (5000, 0, 0)
    assert shown["block"]["reason"] == "stolen" and shown["block"]["login"] == "tech"
    assert shown["last_stores"][0]["terminal"] == "T1"
    status, out, _ = _run(capsys, "card", "unblock", "C1", *where, str(tech))
    assert status == 0 and json.loads(out)["blocked"] is False
    assert server.books.place_hold(hold_request("H2")).created


def test_refusals_and_an_unreachable_ledger_are_one_line(
        ledger: tuple[LedgerServer, Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """Unknown card or a reader blocking: exit 2; nobody listening: exit 1; one line each."""
    server, tech, alice = ledger
    status, _, err = _run(capsys, "card", "show", "C9", "--ledger-url", server.url,
                          "--ledger-token-file", str(alice))
    assert status == 2 and "card_unknown" in err and len(err.splitlines()) == 1
    status, _, err = _run(capsys, "card", "block", "C1", "--reason", "x", "--ledger-url",
                          server.url, "--ledger-token-file", str(alice))
    assert status == 2 and "not_permitted" in err and len(err.splitlines()) == 1
    status, _, err = _run(capsys, "card", "block", "C1", "--reason", " ", "--ledger-url",
                          server.url, "--ledger-token-file", str(tech))
    assert status == 2 and len(err.splitlines()) == 1
    status, _, err = _run(capsys, "card", "show", "C1", "--ledger-url", "http://127.0.0.1:9",
                          "--ledger-token-file", str(alice))
    assert status == 1 and "unavailable" in err and len(err.splitlines()) == 1


def test_show_prints_the_tier_discount_and_points_lots_the_ledger_replays(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A ledger started with the programs: `show` prints the card's engine state, no note."""
    programs = parse_programs(engine_history.PROGRAM_TOML)
    server = serve(f"sqlite://{tmp_path / 'ledger.db'}", programs=programs,
                   clock=lambda: time_of(engine_history.TODAY))
    try:
        server.books.post_batch(engine_history.posted_batch("C1"))
        status, out, err = _run(capsys, "card", "show", "C1", "--ledger-url", server.url)
    finally:
        server.stop()
    engine = json.loads(out)["engine"]
    assert (status, err) == (0, "")
    assert (engine["tier"], engine["discount"]["pct"], engine["discount"]["last_on"]) == (
        "silver", 10, "2025-12-17")
    assert [(lot["points"], lot["expires_on"]) for lot in engine["points_lots"]] == [
        (60, "2026-01-08"), (50, "2026-01-17"), (45, "2026-01-27")]
