"""A card's engine state rebuilt from the ledger's record of it, and what it shows (pure).

Balances alone lose what the program engine keeps beside them: points lots and their earn
days, qualifying spend towards a discount or a tier, the visits a tier counts, the sales a
refund may name. The ledger lists a card's posted transactions, oldest first
(ledger/adopt_sql.py); `replay` runs them through the same engine, each as it happened
(`posted_op`: the operation a posted transaction stands for), then lets time pass to the day
asked. Two tiers use it:

    gateway   a card first tapped at this store is taken on so (gateway/card_states.py): a
              customer whose card was bought, charged and used at other stores meets here
              the card they know; the card feed applies other stores' changes to the cards
              it serves with `posted_op` too (gateway/card_feed.py)
    ledger    `GET /v1/cards/<card>`, `tilltap card show` and the back office's card page
              report the tier, the discount and the points lots (ledger/card_engine.py,
              `described`)

The result is used only if it ends where the books are (their value and points); otherwise,
or if a step is declined, the history does not start with the card's issue, or the list is
missing (more than the ledger lists), `replay` says why and gives no state: a caller never
guesses (the gateway then takes the card on from its balances, protocol/engine_adopt.py; the
ledger reports no engine state).

    state, reason = replay(card, program, transactions, now_day, value_minor, points)
    state = replayed(...)                     the state, or None
    view = described(state, program, day)     tier, discount, points lots (engine days)
"""

import json

from protocol import engine
from protocol import engine_spend as spend
from protocol.programs import TIER_BASIS_SPEND, TIER_BASIS_VISITS

DAY_S = 86_400  # the engine's day: whole UTC days since the epoch
CARD_OP_KINDS = ("grant", "rank")
"""Operations with no money the ledger posts itself (ledger/card_ops_sql.py): the posted
transaction's `card_op` holds the operation's terms (JSON), its kind names the operation."""
GRANTS_USED_BY = ("online", "stand_in")
"""The posted `auth` of sales priced by a gateway's engine, which keeps the card's grants:
they may have used a targeted offer (engine_promotions TARGETED_OFFER_GRANTED); a sale made
offline was priced by a terminal that knows none."""

REPLAY_NOT_LISTED = "history_too_long"
"""More transactions than the ledger lists for a replay (ledger/limits.py ADOPT_CHANGES_MAX)."""
REPLAY_NOT_ISSUED = "not_issued_in_books"
"""The history does not start with the card's issue in its program (a card that took over
another's value by a replacement, say)."""
REPLAY_DECLINED = "replay_declined"
"""The engine declined a posted transaction (the program changed since it was posted, say)."""
REPLAY_DISAGREES = "replay_disagrees"
"""The replay does not end at the books' value and points."""


def posted_op(posted):
    """The engine operation a posted transaction stands for (the card feed's terms); None:
    nothing to run (an issue, an expiry: the engine lets time pass on its own, a transfer)."""
    kind, txn_id, amount = posted["kind"], posted["txn_id"], int(posted["amount_minor"])
    if kind == "topup":
        return {"op": "topup", "id": txn_id, "amount_minor": amount, "pay": "other"}
    if kind == "purchase" and posted.get("reward"):
        # A reward redemption: the item's points and price as the catalogue has them (the
        # engine earns nothing on its co-payment, as a plain purchase would).
        return {"op": "reward", "id": txn_id, "item": posted["reward"], "amount_minor": amount,
                "happened": True}
    if kind == "purchase":
        card_minor = int(posted["card_value_minor"])
        # The points as posted: the offers it got at its counter may rest on what the books
        # do not keep (the customer's birthday, engine_promotions).
        op = {"op": "purchase", "id": txn_id, "amount_minor": amount, "pay": "other",
              "redeem_points": int(posted.get("redeem_points") or 0),
              "discount_minor": int(posted.get("discount_minor") or 0), "happened": True,
              "points_earned": int(posted.get("points") or 0)}
        if card_minor:  # the card part as posted: all that was due, or a split tender's
            op.update(pay="split", card_minor=card_minor)
        if posted.get("auth") in GRANTS_USED_BY:
            # Priced where the card's grants are kept: it took a use of each targeted offer
            # it got (TARGETED_OFFER_GRANTED), at the minute its offers were judged by. Its
            # gateway says which (GRANTS_AS_POSTED): a grant that came after the sale was
            # priced keeps its use; one that does not say may use any.
            said = posted.get("grants")
            op["grants"] = True if said is None else (
                json.loads(said) if isinstance(said, str) else list(said))
            op["minute"] = int(posted["time"]) % DAY_S // 60
        return op
    if kind == "refund":
        return {"op": "refund", "id": txn_id, "of": posted.get("ref_txn_id") or "",
                "amount_minor": amount}
    if kind == "cashout":
        return {"op": "cashout", "id": txn_id, "amount_minor": amount}
    if kind in CARD_OP_KINDS:  # the office's operation with no money (ledger/card_ops_sql.py)
        op = json.loads(posted["card_op"])
        op.update(op=kind, id=txn_id)
        return op
    return None


def replay(card, program, transactions, now_day, value_minor, points):
    """(the card's engine state after its transactions and until `now_day`, None), or
    (None, the reason there is none: one of the REPLAY_* codes)."""
    if transactions is None:
        return None, REPLAY_NOT_LISTED
    state, reason = advanced(card, program, None, transactions)
    if reason is not None:
        return None, reason
    if state is None:
        return None, REPLAY_NOT_ISSUED
    state, effects = engine.apply(state, program, {"op": "tick"}, max(now_day, state["day"]))
    if "declined" in effects:
        return None, REPLAY_DECLINED
    summary = engine.summary(state, program, state["day"])
    if (summary["value_minor"], summary["points"]) != (value_minor, points):
        return None, REPLAY_DISAGREES
    return state, None


def advanced(card, program, state, transactions, effects_out=None):
    """(`state`, None before issue, after the posted `transactions` in their order, None),
    or (None, REPLAY_NOT_ISSUED / REPLAY_DECLINED). Each runs on its own day or, posted
    late (made offline), on the state's; one that stands for no operation (an expiry)
    lets time pass to its day, so the state lapses what the books' expiry took. The
    ledger keeps each card's state so, batch by batch (ledger/engine_sql.py). `effects_out`
    (a list): each transaction's (txn_id, effects) is appended to it."""
    for posted in transactions:
        day = int(posted["time"]) // DAY_S
        if state is not None:
            day = max(day, state["day"])
        if posted["kind"] == "issue":
            if state is not None or posted.get("program") != program["id"]:
                return None, REPLAY_NOT_ISSUED
            op = {"op": "issue", "id": posted["txn_id"], "card": card,
                  "value_minor": int(posted["card_value_minor"])}
        elif state is None:
            return None, REPLAY_NOT_ISSUED  # e.g. taken over from another card
        else:
            op = posted_op(posted) or {"op": "tick"}
        state, effects = engine.apply(state, program, op, day)
        if "declined" in effects:
            return None, REPLAY_DECLINED
        if effects_out is not None:
            effects_out.append((posted["txn_id"], effects))
    return state, None


def replayed(card, program, transactions, now_day, value_minor, points):
    """The card's engine state after its transactions and until `now_day`, or None."""
    return replay(card, program, transactions, now_day, value_minor, points)[0]


def described(state, program, day):
    """What the engine holds for the card on `day` (not before the state's own day), beyond
    `engine.summary`'s value, points, tier and percent off:

        {"day", "value_minor", "points", "tier",
         "tier_spend_minor"    qualifying spend in the tier window (None: no tiers, or
                               tiers by another basis),
         "tier_visits"         visits in the tier window (None: no tiers by visits),
         "discount": {"pct"               off a purchase that day (engine.summary),
                      "tracked_pct"       of the discount earned by spend, 0 if none runs,
                      "last_day"          the last day it applies (None if none runs),
                      "spend_minor"       qualifying spend towards the next one,
                      "threshold_minor"}  what earns it (both None: no discount tracking),
         "points_lots": [{"points", "earned_day", "expires_day"}] oldest first; expires_day
                        the day they expire, gone from its start (None: never),
         "points_owed"}   taken back by a refund after they were spent
    """
    summary = engine.summary(state, program, day)
    tiers, terms = program["tiers"], program["discount"]
    running = state["discount"]
    if running is not None and running["until_day"] <= day:
        running = None
    points_terms = program["points"]
    expiry_days = None if points_terms is None else points_terms["expiry_days"]
    return {
        "day": day, "value_minor": summary["value_minor"], "points": summary["points"],
        "tier": summary["tier"],
        "tier_spend_minor": _figure(state, tiers, day, TIER_BASIS_SPEND),
        "tier_visits": _figure(state, tiers, day, TIER_BASIS_VISITS),
        "discount": {
            "pct": summary["discount_pct"],
            "tracked_pct": 0 if running is None else running["pct"],
            # The discount ends at the start of `until_day` (engine_spend.record).
            "last_day": None if running is None else running["until_day"] - 1,
            "spend_minor": None if terms is None else spend.spend_at(
                state["progress"], terms["qualify_days"], day),
            "threshold_minor": None if terms is None else terms["threshold_minor"]},
        "points_lots": [{"points": lot[1], "earned_day": lot[0],
                         "expires_day": None if expiry_days is None else lot[0] + expiry_days}
                        for lot in state["lots"]],
        "points_owed": state["points_owed"],
    }


def _figure(state, tiers, day, basis):
    """The tier's figure on `day` when the tiers rest on `basis`, else None."""
    if tiers is None or spend.tier_basis(tiers) != basis:
        return None
    return spend.tier_figure(state, tiers, day)
