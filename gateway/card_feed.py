"""Other stores' transactions, applied to the cards this gateway serves (issue 14 item 4).

Every transaction the ledger posts is in its card feed (GET /v1/changes, ledger/feed_sql.py),
in an order no later commit can break. The gateway reads it from the cursor kept in its
store and runs each change another gateway posted, for a card it serves, through the same
program engine its own records go through (each as the operation it stands for,
protocol/engine_replay.py `posted_op`): value, points lots, tier, discount window and the
refundable sales follow the card from store to store within seconds (records flow to the
ledger within `--post-within-s`, the feed is read every `--feed-poll-s`).

    change (posted elsewhere)       engine operation here
    topup                           topup paid at the till
    purchase                        purchase that happened (never declined for value; the
                                    discount the other counter gave, the points it redeemed)
    refund                          refund of the original sale (`ref_txn_id`)
    cashout                         cashout
    grant, rank                     the office's operation with no money, as the ledger
                                    posted it (`card_op`): a targeted offer issued to the
                                    card, its tier for the next period by rank
    issue, expire                   nothing: an issue elsewhere is of a card not served here
                                    (it is taken on from the ledger when first tapped), and
                                    each gateway lets time pass on its cards itself
    transfer                        a card replaced at the ledger (``replaced_by`` the new
                                    card): the old card's state (lots with their earn days,
                                    tier, discount window, refundable sales) becomes the new
                                    card's, the old card is left empty (`CardStates.replace`);
                                    a store that does not serve the old card takes the new
                                    one on from the ledger when first tapped, with its value
                                    and points only (one lot of today, the program's first
                                    tier, no discount window, no sale a refund could name)

Whatever the change, the read counter of its tap (`sun_counter`, when the other store
verified one) is noted on a card this gateway serves (`CardStates.used_elsewhere`): a read
accepted there is refused here, online and standing in while the ledger is away.

Skipped: changes this gateway posted (already applied when their records were accepted),
cards it does not serve, and changes the card's balances already held when it was taken on
from the ledger (`included`: the position the ledger gave with them). A change the engine
declines here (a refund of a sale made before this store took the card on, points this copy
no longer holds) moves the card's value and points as posted, without the engine's
bookkeeping, and is counted (`feed.forced`): the ledger's books are the authority.

Pure: the caller holds the card book's lock and commits the changed cards with the cursor,
in one store transaction, so each change is applied exactly once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from gateway.card_states import CardStates, day_of
from gateway.cards import SUN_WINDOW
from protocol import engine, engine_points
from protocol.engine_legs import copy_state
from protocol.engine_replay import posted_op

KIND_TRANSFER = "transfer"  # a card replaced at the ledger (ledger/replace_sql.py)
FEED_POLL_INTERVAL_S = 1.0  # `gateway run --feed-poll-s`: how soon another store's sale is here

log = logging.getLogger(__name__)


@dataclass
class FeedResult:
    applied: int = 0
    forced: int = 0  # declined by the engine here: value and points moved as posted
    own: int = 0  # posted by this gateway
    not_served: int = 0  # cards this gateway does not serve (or an issue, expiry)
    included: int = 0  # already in the balances the card was taken on with
    taps: int = 0  # changes whose tap's SUN read counter was noted on a card served here
    replaced: int = 0  # cards replaced at the ledger whose state moved to the new card here


def included(position: dict[str, Any] | None, change: dict[str, Any]) -> bool:
    """Was `change` already in the balances the ledger gave with `position`?"""
    if not position:
        return False
    return (int(change["xid"]) < int(position.get("horizon", 0))
            or int(change["id"]) <= int(position.get("through", 0))
            or change["txn_id"] in position.get("known", ()))


def apply_changes(states: CardStates, changes: list[dict[str, Any]], gateway_id: str,
                  result: FeedResult | None = None) -> FeedResult:
    """Apply one page of the feed to the card states (under the card book's lock)."""
    result = result or FeedResult()
    for change in changes:
        if change["gateway_id"] == gateway_id:
            result.own += 1
            continue
        entry = states.get(change["card"])
        if entry is not None and "state" in entry and change.get("sun_counter") is not None:
            states.used_elsewhere(change["card"], int(change["sun_counter"]), SUN_WINDOW)
            result.taps += 1
        if change["kind"] == KIND_TRANSFER:
            _replace(states, change, result)
            continue
        op = posted_op(change)
        if entry is None or op is None or "state" not in entry:
            result.not_served += 1
            continue
        if included(entry.get("feed"), change):
            result.included += 1
            continue
        program = states.programs.get(entry["program"])
        if program is None:
            result.not_served += 1
            continue
        day = max(day_of(int(change["time"])), entry["state"]["day"])
        state, effects = engine.apply(entry["state"], program, op, day)
        if "declined" in effects:
            log.warning("card %s: %s %s posted by %s declined here (%s); moved as posted",
                        change["card"][:64], change["kind"], change["txn_id"][:64],
                        change["gateway_id"][:64], effects["declined"])
            _force(states, change["card"], entry, change, day)
            result.forced += 1
            continue
        states.keep(change["card"], state, effects["sales_changed"])
        states.summarize(entry, day)
        result.applied += 1
    return result


def _replace(states: CardStates, change: dict[str, Any], result: FeedResult) -> None:
    """A card replaced at the ledger: its state moves to the new card (`CardStates.replace`).
    Of its two changes (one per card) only the old card's moves anything."""
    old, new = change["card"], change.get("replaced_by")
    entry = states.get(old)
    if not new or old == new or entry is None or "state" not in entry:
        result.not_served += 1
        return
    if included(entry.get("feed"), change):  # taken on from the ledger after it: empty
        result.included += 1
        return
    day = max(day_of(int(change["time"])), entry["state"]["day"])
    if states.replace(old, new, int(change["card_value_minor"]), int(change["points"]), day):
        result.replaced += 1
        log.info("card %s replaced by %s at the ledger: its state moved here", old[:64],
                 new[:64], extra={"event": "card_replaced", "card": old[:64],
                                  "new_card": new[:64]})
    else:
        result.included += 1


_VALUE_SIGN = {"topup": 1, "refund": 1, "purchase": -1, "cashout": -1}
"""How a change's card value moves the card's value: loads add, spending takes."""


def _force(states: CardStates, card: str, entry: dict[str, Any], change: dict[str, Any],
           day: int) -> None:
    """Move value and points as the ledger posted them, outside the engine's rules."""
    state = copy_state(entry["state"])  # the engine's states are never changed in place
    # An office operation with no money (a grant, a rank) moves nothing.
    state["value_minor"] += _VALUE_SIGN.get(change["kind"], 0) * int(change["card_value_minor"])
    points = int(change.get("points") or 0)
    redeemed = int(change.get("redeem_points") or 0)
    earned, taken = ((points, redeemed) if change["kind"] == "purchase"
                     else (0, points) if change["kind"] == "refund" else (0, 0))
    if earned:
        engine_points.credit(state, earned, day, "feed")
    if taken:  # fewer points here than the books had: the rest is owed
        held = max(0, min(taken, engine_points.balance(state)))
        engine_points.redeem(state, held)
        state["points_owed"] += taken - held
    states.keep(card, state, [])
    states.summarize(entry, day)
