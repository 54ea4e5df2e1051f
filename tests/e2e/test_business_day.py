"""(a) A whole business day over a real Mosquitto reconciles with zero differences; a seed
gives the same day again, and days follow each other on one ledger database."""

from __future__ import annotations

from typing import Any

from tests.support.postgres import temporary_database
from tools.demo import render, run_demo


def test_business_day_reconciles_three_ways_with_zero_differences() -> None:
    report = run_demo(log=lambda text: None)
    assert report["differences"] == 0, render(report)
    total = report["total"]
    assert total["approved"] >= 300
    assert total["approved"] == total["journaled"] == total["posted"]
    assert total["approved_minor"] == total["journaled_minor"] == total["posted_minor"]
    assert len(report["cards"]) == 30
    assert report["declines"].get("insufficient_value", 0) >= 1
    assert report["inquiries"] >= 1
    assert report["trial_balance"] and not any(report["trial_balance"].values())
    assert report["refused"] == {"gateway": 0, "terminals": 0}
    # The ledger, given the programs, replays every card to the gateway's tier and lots.
    assert report["ledger_engine"] == {"agree": 30, "differ": 0, "not_known": {}}
    # Every authorization and every record proved its card with a fresh SUN.
    assert report["gateway"]["sun_verified"] >= 2 * total["approved"]
    kinds = report["kinds"]
    assert kinds["issue"] == 30 and kinds["topup"] and kinds["purchase"] and kinds["refund"]


SHORT_DAY_OPERATIONS = 90


def _figures(report: dict[str, Any]) -> dict[str, Any]:
    """What happened in a day, without the ids of the run (new each run) or its timings."""
    return {"kinds": report["kinds"], "declines": report["declines"],
            "inquiries": report["inquiries"], "programs": report["programs"],
            "later": report["later"],
            "terminals": [(row["approved"], row["approved_minor"])
                          for row in report["terminals"]]}


def test_one_seed_gives_one_day_and_days_follow_each_other_on_one_postgresql_ledger(
        pg_admin_dsn: str) -> None:
    """Run twice with the same seed on the same PostgreSQL database: both reconcile, and the
    second day is the first one again, figure for figure (its ids are its own)."""
    with temporary_database(pg_admin_dsn) as dsn:
        days = [run_demo(operations=SHORT_DAY_OPERATIONS, ledger_dsn=dsn, seed=7,
                         log=lambda text: None) for _ in range(2)]
    for report in days:
        assert report["differences"] == 0, render(report)
        assert report["total"]["approved"] > SHORT_DAY_OPERATIONS // 2
    assert _figures(days[0]) == _figures(days[1])
    assert {row["terminal"] for row in days[0]["terminals"]}.isdisjoint(
        row["terminal"] for row in days[1]["terminals"])
