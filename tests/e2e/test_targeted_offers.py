"""A targeted offer end to end (issue 18 item 5): two stores, each its broker as deployed and
its own gateway, one ledger keeping the cards' engine states (tests/support/two_stores.py),
the tills the firmware's own, the demo's programs (tools/demo_programs.toml: the loyalty
program's targeted offer "comeback", 200 bonus points; 1 point per euro paid).

A loyalty card sold at store A buys at B. The office issues "comeback" to it, one use, with
the real command (`tilltap offer issue`) through the ledger's API: the grant reaches both
stores' gateways by the card feed. The card's next sale, at A, gets the offer: the answer
names it and 20.00 earns 20 + 200 = 220 points. The use is gone at B too (A's sale came by
the feed), so 20.00 at B earns 20. The ledger posts 10 + 220 + 20 = 250 points and the
offer's report (`tilltap offer report`) counts one card granted, one redeemed, one use of
20.00, and 40.00 bought within the grant's window. Issuing it again grants nothing twice.
On the single-store SQLite ledger only: the ledger's side is tested on PostgreSQL too
(tests/ledger/test_ledger_offers.py).

The last use is given once even when B has not heard of A's sale yet. First B sells to the
card just before the office grants the offer, and its sale reaches the ledger after the
grant: replayed there and at A after the grant, it takes no use (its gateway says it got
no targeted offer). Then, with B's card feed held back, A's sale takes the use and B's,
priced on B's older copy with the offer, is declined offer_used by the ledger (the hold
names the offer: ledger/grant_holds_sql.py); asked again once the feed has come, B's sale
is approved without it.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ledger.errors import NotFound
from tests.support.stack import wait_until
from tests.support.store_broker import StoreBroker
from tests.support.two_stores import chain
from tools.cli import main
from tools.demo import DEMO_PROGRAMS

CARD = "04f1f2f3f4f5f6"
WAIT_S = 10.0


def test_an_issued_offer_is_used_once_across_both_stores_and_reported(
        store_broker: StoreBroker, second_broker: StoreBroker, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    with chain(f"sqlite://{tmp_path / 'ledger.db'}", (store_broker, second_broker), tmp_path,
               programs=DEMO_PROGRAMS) as shops:
        a, b = shops.stores

        def command(*argv: str) -> dict[str, Any]:
            capsys.readouterr()
            status = main([*argv, "--ledger-url", shops.ledger.url])
            out, err = capsys.readouterr()
            assert status == 0, err
            return dict(json.loads(out))

        def points() -> int:
            try:
                return int(shops.client.card(CARD)["points"])
            except NotFound:
                return -1

        a.serve(CARD)
        assert a.till.terminal.issue("loyalty", 0)["approved"]
        a.sent()
        assert wait_until(lambda: points() == 0, WAIT_S)
        b.serve(CARD)
        first = b.till.terminal.purchase(1_000, pay_from_card=False)
        assert first["approved"] and "promotions" not in first["response"], first
        b.sent()
        assert wait_until(lambda: points() == 10, WAIT_S)

        # The report's window starts at the grant's second (terminal and ledger times are
        # whole seconds): a sale made in that second counts in it, so the grant waits for the
        # next second.
        time.sleep(1.1)
        until = (datetime.now(UTC).date() + timedelta(days=7)).isoformat()
        issue = ("offer", "issue", "--program", "loyalty", "--offer", "comeback",
                 "--issue", "dec", "--uses", "1", "--until", until, "--card", CARD)
        assert command(*issue)["posted"] == [CARD]
        for store in (a, b):  # the grant, by the card feed
            assert wait_until(lambda store=store: "comeback" in (
                store.entry(CARD)["state"].get("grants") or {}), WAIT_S), store.name

        a.serve(CARD)
        sale = a.till.terminal.purchase(2_000, pay_from_card=False)
        assert sale["approved"] and sale["response"]["promotions"] == ["comeback"], sale
        assert sale["txn"]["points"] == 220
        a.sent()
        assert wait_until(lambda: points() == 230, WAIT_S)
        # A's sale took the one use: B learns it from the feed, as the ledger did.
        assert wait_until(lambda: "grants" not in b.entry(CARD)["state"], WAIT_S)
        b.serve(CARD)
        later = b.till.terminal.purchase(2_000, pay_from_card=False)
        assert later["approved"] and "promotions" not in later["response"], later
        assert later["txn"]["points"] == 20
        b.sent()
        assert wait_until(lambda: points() == 250, WAIT_S)

        report = command("offer", "report", "--program", "loyalty", "--offer", "comeback")
        assert {key: report[key] for key in (
            "granted_cards", "redeemed_cards", "uses", "use_revenue_minor",
            "window_revenue_minor", "response_bp")} == {
            "granted_cards": 1, "redeemed_cards": 1, "uses": 1, "use_revenue_minor": 2000,
            "window_revenue_minor": 4000, "response_bp": 10_000}
        again = command(*issue)
        assert (again["posted"], again["already"]) == ([], [CARD])
        assert all(total == 0 for total in shops.client.trial_balance().values())


def known(client: Any, card: str) -> bool:
    try:
        client.card(card)
    except NotFound:
        return False
    return True


def issue_comeback(ledger_url: str, card: str, capsys: pytest.CaptureFixture[str]) -> None:
    """`tilltap offer issue` of "comeback", one use for a week, to `card`."""
    until = (datetime.now(UTC).date() + timedelta(days=7)).isoformat()
    capsys.readouterr()
    status = main(["offer", "issue", "--program", "loyalty", "--offer", "comeback", "--issue",
                   "once", "--uses", "1", "--until", until, "--card", card,
                   "--ledger-url", ledger_url])
    out, err = capsys.readouterr()
    assert status == 0 and json.loads(out)["posted"] == [card], err


def test_the_last_use_is_not_given_twice_by_a_store_behind_the_feed(
        store_broker: StoreBroker, second_broker: StoreBroker, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    with chain(f"sqlite://{tmp_path / 'ledger.db'}", (store_broker, second_broker), tmp_path,
               programs=DEMO_PROGRAMS) as shops:
        a, b = shops.stores
        a.serve(CARD)
        assert a.till.terminal.issue("loyalty", 0)["approved"]
        a.sent()
        assert wait_until(lambda: known(shops.client, CARD), WAIT_S)  # posted
        with b.gateway._settle_lock:  # B's records wait: its sale posts after the grant
            b.serve(CARD)  # B takes the card on (a look-up) and serves it from now on
            assert b.till.terminal.purchase(1_000, pay_from_card=False)["approved"]
            b.sent()
            issue_comeback(shops.ledger.url, CARD, capsys)
        # B's sale, priced before the grant, says it got no targeted offer: replayed after
        # the grant (at the ledger, at A), it takes no use of it (GRANTS_AS_POSTED).
        assert wait_until(lambda: shops.client.card(CARD)["points"] == 10, WAIT_S)
        for store in (a, b):
            assert wait_until(lambda store=store: "comeback" in (
                store.entry(CARD)["state"].get("grants") or {}), WAIT_S), store.name
        # The ledger's copy kept the use too: A's sale below is held there with the offer.

        with b.gateway._feed_polling:  # B reads no card feed: it hears nothing of A's sale
            a.serve(CARD)
            sale = a.till.terminal.purchase(2_000, pay_from_card=False)
            assert sale["approved"] and sale["response"]["promotions"] == ["comeback"], sale
            a.sent()
            assert "comeback" in b.entry(CARD)["state"]["grants"]  # B's copy: a use left
            b.serve(CARD)
            late = b.till.terminal.purchase(3_000, pay_from_card=False)
            assert not late["approved"] and late["reason"] == "offer_used", late
        assert wait_until(lambda: "grants" not in b.entry(CARD)["state"], WAIT_S)
        b.serve(CARD)
        again = b.till.terminal.purchase(3_000, pay_from_card=False)
        assert again["approved"] and "promotions" not in again["response"], again
        assert again["txn"]["points"] == 30
        b.sent()
        assert wait_until(lambda: shops.client.card(CARD)["points"] == 10 + 220 + 30, WAIT_S)
        assert shops.client.offer_report("loyalty", "comeback")["uses"] == 1
        assert shops.client.hold_totals().get("open", 0) == 0  # B's refused hold: none left
        assert all(total == 0 for total in shops.client.trial_balance().values())
