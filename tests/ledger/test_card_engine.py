"""GET /v1/cards/<card> with the card's program-engine state: a ledger given the chain's
programs replays the card's posted transactions to today and reports its tier, discount and
points lots when the replay ends at the books (ledger/card_engine.py); otherwise, and
without programs, "engine" is null and "engine_reason" says why. SQLite books: the list
replayed is the card's "transactions", checked on both engines in test_ledger_http.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.auth import dump_logins, new_login
from ledger.client import LedgerClient
from ledger.server import LedgerServer, serve
from tests.support import engine_history
from tests.support.engine_history import LOTS, POINTS, SALES, TODAY, posted_batch, time_of
from tools.programs import parse_programs

PROGRAMS = parse_programs(engine_history.PROGRAM_TOML)
NOW_S = time_of(TODAY) + 10 * 3600


def _serve(path: Path, programs: dict[str, Any] | None,
           logins: Path | None = None) -> LedgerServer:
    server = serve(f"sqlite://{path}", clock=lambda: NOW_S, programs=programs,
                   logins_file=logins)
    server.books.post_batch(posted_batch("C1"))
    server.books.post_batch(posted_batch("C2", points_of_last=SALES[-1][4] + 1))
    return server


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[LedgerClient]:
    server = _serve(tmp_path / "ledger.db", PROGRAMS)
    yield LedgerClient(server.url)
    server.stop()


def test_a_card_shows_its_tier_discount_and_points_lots(ledger: LedgerClient) -> None:
    """The figures of tests/support/engine_history.py, as dates; the other fields stay."""
    card = ledger.card("C1")
    assert (card["value_minor"], card["points"], card["program"]) == (0, POINTS, "regular")
    assert len(card["transactions"]) == 4
    assert card["engine_reason"] is None
    assert card["engine"] == {
        "program": "regular", "version": 1, "on": "2025-12-03", "replayed": 4,
        "tier": "silver", "tier_spend_minor": 15500,
        "discount": {"pct": 10, "tracked_pct": 10, "last_on": "2025-12-17",  # DAY0 + 39
                     "spend_minor": 4500, "threshold_minor": 10000},
        "points_lots": [{"points": 60, "earned_on": "2025-11-09", "expires_on": "2026-01-08"},
                        {"points": 50, "earned_on": "2025-11-18", "expires_on": "2026-01-17"},
                        {"points": 45, "earned_on": "2025-11-28", "expires_on": "2026-01-27"}],
        "points_owed": 0}
    assert [lot["points"] for lot in card["engine"]["points_lots"]] == [p for p, _, _ in LOTS]


def test_a_replay_that_does_not_end_at_the_books_is_not_shown(ledger: LedgerClient) -> None:
    """C2's last sale was posted with a point more than the engine gives: no guess."""
    card = ledger.card("C2")
    assert card["points"] == POINTS + 1
    assert (card["engine"], card["engine_reason"]) == (None, "replay_disagrees")


def test_without_programs_the_answer_says_so(tmp_path: Path) -> None:
    server = _serve(tmp_path / "ledger.db", None)
    try:
        card = LedgerClient(server.url).card("C1")
    finally:
        server.stop()
    assert (card["engine"], card["engine_reason"]) == (None, "no_programs")
    assert card["points"] == POINTS


def test_a_program_the_ledger_was_not_given_is_named(tmp_path: Path) -> None:
    server = _serve(tmp_path / "ledger.db", {"other": PROGRAMS["regular"]})
    try:
        card = LedgerClient(server.url).card("C1")
    finally:
        server.stop()
    assert (card["engine"], card["engine_reason"]) == (None, "program_unknown")


def test_a_gateways_look_up_is_not_replayed_at_the_ledger(tmp_path: Path) -> None:
    """A gateway replays the transactions itself: its answer has them, and no engine state;
    a reader's has the engine state."""
    gateway, gateway_token = new_login("gw1", "gateway", "gw1", ("T1",), ("M1",))
    reader, reader_token = new_login("audit", "reader")
    logins = tmp_path / "logins.json"
    logins.write_text(dump_logins({"gw1": gateway, "audit": reader}))
    server = _serve(tmp_path / "ledger.db", PROGRAMS, logins)
    try:
        at_gateway = LedgerClient(server.url, token=gateway_token).card("C1")
        at_reader = LedgerClient(server.url, token=reader_token).card("C1")
    finally:
        server.stop()
    assert (at_gateway["engine"], at_gateway["engine_reason"]) == (None, "gateway_replays")
    assert len(at_gateway["transactions"]) == 4
    assert at_reader["engine"]["tier"] == "silver"
