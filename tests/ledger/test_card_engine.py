"""GET /v1/cards/<card> with the card's program-engine state: a ledger given the chain's
programs keeps each card's state as its batches post (test_card_engine_states.py, both
engines) and reports it let to today, with its version; where none is kept it replays the
card's posted transactions to today and reports its tier, discount and points lots when the
replay ends at the books (ledger/card_engine.py); otherwise, and without programs,
"engine" is null and "engine_reason" says why. SQLite books: the list replayed is the
card's "transactions", checked on both engines in test_ledger_http.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger.auth import dump_logins, new_login
from ledger.client import LedgerClient
from ledger.server import LedgerServer, serve
from tests.ledger.builders import batch, expire
from tests.support import engine_history
from tests.support.engine_history import LOTS, POINTS, TODAY, posted_batch, time_of
from tools.programs import parse_programs

PROGRAMS = parse_programs(engine_history.PROGRAM_TOML)
NOW_S = time_of(TODAY) + 10 * 3600


def _serve(path: Path, programs: dict[str, Any] | None,
           logins: Path | None = None) -> LedgerServer:
    server = serve(f"sqlite://{path}", clock=lambda: NOW_S, programs=programs,
                   logins_file=logins)
    server.books.post_batch(posted_batch("C1"))
    server.books.post_batch(posted_batch("C2"))
    # A point C2's engine does not see lapse: its state no longer ends at the books.
    server.books.post_batch(batch("gw1-C2-lapse", expire("T1-8C2", card="C2", points=1,
                                                         time=time_of(TODAY - 1))))
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
    assert (card["engine_reason"], card["engine_version"]) == (None, 4)
    assert card["engine"] == {
        "program": "regular", "version": 1, "on": "2025-12-03", "source": "kept",
        "replayed": 0,
        "tier": "silver", "tier_spend_minor": 15500, "tier_visits": None,
        "discount": {"pct": 10, "tracked_pct": 10, "last_on": "2025-12-17",  # DAY0 + 39
                     "spend_minor": 4500, "threshold_minor": 10000},
        "points_lots": [{"points": 60, "earned_on": "2025-11-09", "expires_on": "2026-01-08"},
                        {"points": 50, "earned_on": "2025-11-18", "expires_on": "2026-01-17"},
                        {"points": 45, "earned_on": "2025-11-28", "expires_on": "2026-01-27"}],
        "points_owed": 0}
    assert [lot["points"] for lot in card["engine"]["points_lots"]] == [p for p, _, _ in LOTS]


def test_without_a_kept_state_the_card_is_replayed_to_the_same_answer(tmp_path: Path) -> None:
    """Books posted before the ledger had programs: the replay on request answers what the
    kept state does, with no version."""
    plain = serve(f"sqlite://{tmp_path / 'ledger.db'}", clock=lambda: NOW_S)
    plain.books.post_batch(posted_batch("C1"))
    plain.stop()
    server = _serve(tmp_path / "kept.db", PROGRAMS)
    replaying = serve(f"sqlite://{tmp_path / 'ledger.db'}", clock=lambda: NOW_S,
                      programs=PROGRAMS)
    try:
        kept = LedgerClient(server.url).card("C1")
        replayed = LedgerClient(replaying.url).card("C1")
    finally:
        server.stop()
        replaying.stop()
    assert (replayed["engine_reason"], replayed["engine_version"]) == (None, None)
    assert replayed["engine"] == kept["engine"] | {"source": "replayed", "replayed": 4}


def test_a_state_that_does_not_end_at_the_books_is_not_shown(ledger: LedgerClient) -> None:
    """C2 lost a point its engine does not see lapse: no kept state, the replay disagrees
    too, no guess."""
    card = ledger.card("C2")
    assert card["points"] == POINTS - 1
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


def test_a_gateways_look_up_gets_the_kept_state_and_is_never_replayed(tmp_path: Path) -> None:
    """A gateway's answer has the kept state (cheap) and the transactions; where none is
    kept it replays them itself: the ledger does not, and says why."""
    gateway, gateway_token = new_login("gw1", "gateway", "gw1", ("T1",), ("M1",))
    reader, reader_token = new_login("audit", "reader")
    logins = tmp_path / "logins.json"
    logins.write_text(dump_logins({"gw1": gateway, "audit": reader}))
    server = _serve(tmp_path / "ledger.db", PROGRAMS, logins)
    try:
        at_gateway = LedgerClient(server.url, token=gateway_token).card("C1")
        at_reader = LedgerClient(server.url, token=reader_token).card("C1")
        dropped = LedgerClient(server.url, token=gateway_token).card("C2")
    finally:
        server.stop()
    assert (at_gateway["engine"], at_gateway["engine_version"]) == (at_reader["engine"], 4)
    assert at_gateway["engine"]["tier"] == "silver"
    assert len(at_gateway["transactions"]) == 4
    assert (dropped["engine"], dropped["engine_reason"]) == (None, "replay_disagrees")


def test_a_hold_answer_carries_the_kept_state_the_client_hands_on(
        ledger: LedgerClient) -> None:
    """The gateways' client takes the hold's answer with the card's snapshot of today."""
    answer = ledger.place_hold("H1", "C1", "EUR", 0, 120, "T1", "M1", points=50)
    assert answer["available_points"] == POINTS - 50
    assert answer["engine"] == {"version": 4, "tier": "silver", "discount_pct": 10,
                                "discount_until": "2025-12-17"}
