"""Each store's gateway reads the card feed filtered to the cards it serves (ledger/feed_sql.py,
GET /v1/changes?for=): two stores, one ledger (PostgreSQL, and the single-store SQLite)."""

from __future__ import annotations

import time

from ledger.db import open_database
from tests.support.stack import wait_until
from tests.support.two_stores import FEED_POLL_S, Chain

PREPAID = "04b1b2b3b4b5b6"
GIFT = "04a1a2a3a4a5a6"
# A card taken on by a look-up is kept at the gateway's next commit: a feed read that moves its
# cursor, slower than the feed's own bound on a machine shared with other test workers.
KEPT_WAIT_S = 30.0
FEED_WAIT_S = 10.0  # a change posted at one store is applied at the other within this


def served_at_ledger(dsn: str) -> set[tuple[str, str]]:
    database = open_database(dsn)
    try:
        return {(row[0], row[1]) for row in database.fetch(
            "SELECT gateway_id, card FROM served_cards")}
    finally:
        database.close()


def value_at(shops: Chain, store: int, card: str) -> int | None:
    entry = shops.stores[store].entry(card)
    return entry.get("value_minor")


def test_a_store_is_sent_only_its_cards_and_tells_the_ledger_its_cards_at_start(
        shops: Chain, chain_ledger_dsn: str) -> None:
    a, b = shops.stores
    a.serve(PREPAID)
    assert a.till.terminal.issue("prepaid", 1_000)["approved"]
    a.sent()
    assert wait_until(lambda: shops.card(PREPAID).get("value_minor") == 1_000, FEED_WAIT_S)
    b.serve(PREPAID)
    assert b.till.terminal.inquiry()["approved"]  # B takes the card on: a look-up
    assert ("gwB", PREPAID) in served_at_ledger(chain_ledger_dsn)

    time.sleep(3 * FEED_POLL_S)  # B's feed has passed PREPAID's issue (a change it skips)
    skipped = b.gateway.feed.not_served

    # A card B never served: its changes are not sent to B at all (unfiltered, B would
    # count each among those it skips).
    a.serve(GIFT)
    assert a.till.terminal.issue("gift", 5_000)["approved"]
    a.serve(GIFT)
    assert a.till.terminal.purchase(1_000)["approved"]
    a.sent()
    assert wait_until(lambda: shops.card(GIFT).get("value_minor") == 4_000, FEED_WAIT_S)
    time.sleep(3 * FEED_POLL_S)
    assert b.gateway.feed.not_served == skipped and b.gateway.feed.own == 0

    # A gateway from before the filtered feed: the ledger does not know what it serves.
    # (B keeps a card it took on by a look-up with its next commit, a feed read that moves
    # its cursor: waited for, or a restart now would forget the card, as a gateway may.)
    assert wait_until(lambda: PREPAID in b.gateway.store.load_cards(), KEPT_WAIT_S)
    b.gateway.stop()
    database = open_database(chain_ledger_dsn)
    try:
        database.execute("DELETE FROM served_cards")
    finally:
        database.close()
    a.serve(PREPAID)
    assert a.till.terminal.topup(2_000)["approved"]  # 2,100 with the bonus, B down
    a.sent()
    assert wait_until(lambda: shops.card(PREPAID).get("value_minor") == 3_100, FEED_WAIT_S)
    b.gateway = b.new_gateway()
    b.gateway.start()
    # Its first read tells the ledger every card it serves, then reads: the top-up comes.
    # (The feed's counts follow its commit: waited for too.)
    assert wait_until(lambda: value_at(shops, 1, PREPAID) == 3_100
                      and b.gateway.feed.applied == 1, FEED_WAIT_S)
    # B told the ledger the one card it serves. (A may be there too: its gateway looks the
    # card it sold up again after a tap, gateway/greeting_refresh.py, as a card it serves.)
    assert {card for gateway, card in served_at_ledger(chain_ledger_dsn)
            if gateway == "gwB"} == {PREPAID}
    assert b.gateway.feed.not_served == 0
    assert b.entry(GIFT) == {"state": {}}  # never served here, never sent here
