"""A short gauntlet (`tilltap gauntlet`, tools/gauntlet): the store as deployed, as real
processes (Mosquitto with TLS and logins, the ledger on PostgreSQL, the gateway under its
supervisor, three counter terminals each a process with its journal on disk), through
faults drawn from a seed: the gateway killed at random, mid-commit and mid-settlement, the
broker killed, the ledger killed, its database refusing writes, a terminal killed, a bit
flipped in a terminal's journal, a terminal's clock jumping. After healing, draining and
settling, nothing the counters approved is lost or doubled, nothing is posted that was not
approved, the books balance and no hold is left open. `make gauntlet` runs 20 gateway kills
and every fault."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.postgres import postgres_server
from tools.gauntlet.run import Settings, run_gauntlet

SEED = 15
SHORT_FAULTS = ("broker_kill", "ledger_kill", "postgres_read_only", "terminal_kill",
                "journal_flip", "terminal_clock_jump", "gateway_clock_jump")
GAUNTLET_TIMEOUT_S = 400


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    workdir = tmp_path_factory.mktemp("gauntlet")
    with postgres_server() as admin_dsn:
        yield run_gauntlet(Settings(seed=SEED, gateway_kills=3, faults=SHORT_FAULTS,
                                    admin_dsn=admin_dsn, down_s=(2.0, 4.0), gap_s=(0.5, 2.0),
                                    keep_workdir=True, workdir=workdir), lambda text: None)


@pytest.mark.timeout(GAUNTLET_TIMEOUT_S)
def test_through_the_faults_nothing_is_lost_doubled_or_made_up_and_the_books_close(
    report: dict[str, Any],
) -> None:
    assert (report["lost"], report["doubled"], report["phantom"], report["altered"]) == (
        0, 0, 0, 0), report["examples"]
    assert all(total == 0 for total in report["trial_balance"].values())
    # None left open, not even one placed at the ledger in the instant before a kill landed
    # on its approval's commit: the hold was kept as intended first (authorizations.intend).
    assert report["holds_open"] == 0, report["examples"]["holds_open"]
    assert report["unsettled"] == 0 and report["cards_off"] == 0
    assert all(code == 0 for code in report["drained"].values()), report["drained"]
    assert report["gateway_exit"] == 0
    assert not report["failed"], report["failed"]


@pytest.mark.timeout(GAUNTLET_TIMEOUT_S)
def test_every_fault_was_injected_while_the_counters_sold(report: dict[str, Any]) -> None:
    assert report["faults"] == {name: 1 for name in (
        "gateway_kill_random", "gateway_kill_mid_commit", "gateway_kill_mid_settlement",
        *SHORT_FAULTS)}
    kills = [event for event in report["events"] if event["fault"].startswith("gateway_kill")]
    assert all(event["killed"] for event in kills), kills
    # The gateway was started again after each kill (and after the store's exits, if any).
    assert report["gateway"]["starts"] >= 1 + len(kills)
    assert report["approved"] > 100 and report["posted"] > 100
    # A record hit by the flipped bit may be lost (reported by its terminal, listed by the
    # gateway as record_lost); no other.
    assert report["lost_to_journal_damage"] <= 1
