"""(a) A whole business day over a real Mosquitto reconciles with zero differences."""

from __future__ import annotations

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
    # Every authorization and every record proved its card with a fresh SUN.
    assert report["gateway"]["sun_verified"] >= 2 * total["approved"]
    kinds = report["kinds"]
    assert kinds["issue"] == 30 and kinds["topup"] and kinds["purchase"] and kinds["refund"]
