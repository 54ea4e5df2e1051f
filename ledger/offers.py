"""The office's targeted offers and tiers by rank (issue 18 items 5 and 7): who gets what,
posted as card operations with no money (ledger/card_ops_sql.py), and the offers' report.

Issuing a targeted offer (`issue`, POST /v1/offers/grants, `tilltap offer issue`): the
office names a program's targeted offer, an issue id (its idempotency key: issuing it again
grants nothing twice), the uses per customer and the last day, and whom:

    cards       the cards themselves
    customers   customer ids: each gets the offer on one card, its card in the program with
                the latest posted transaction (named rule GRANT_ONE_CARD_PER_CUSTOMER), so
                a customer with two cards has the uses once, not twice
    segment     a segment of the customer reports (ledger/customer_reports.py), as of today:
                "lapsing" (regulars whose last purchase is `days` or more ago) or "top" (the
                top `top_percent` of customers by revenue in the window); each customer as
                above, a card linked to nobody for itself

The report (`report`, GET /v1/offers/report, `tilltap offer report`), per offer:

    granted_cards        cards granted it (by any issue)
    redeemed_cards       of them, cards whose purchases took a use (offer_uses: as the
                         ledger's engine applied the posted purchases, ledger/engine_sql.py)
    uses                 uses taken
    use_revenue_minor    the amount of the purchases that got the offer
    window_revenue_minor every purchase of a granted card from its grant to the end of the
                         grant's last day (UTC): the response, offer or not
    response_bp          redeemed_cards / granted_cards in basis points, rounded down

Ranking (`rank`, POST /v1/rank, `tilltap programs rank`): a program with tiers by rank is
ranked for one ended period (ledger/rank.py), the cards' qualifying spend being their posted
purchases in the period, each the part paid (amount - discount - points redeemed at their
value), less the refunds posted in the period, never below 0 (named rule
RANK_SPEND_NET_OF_REFUNDS); every card of the program that was not replaced is ranked.
Each card's level is posted as a `rank` operation: running it again posts nothing twice.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from ledger import card_ops_sql, customer_reports, engine_sql, rank
from ledger.card_ops_sql import CardOp
from ledger.db import Session
from ledger.errors import BatchInvalid, NotFound
from ledger.model import KIND_GRANT, KIND_PURCHASE, KIND_RANK, KIND_REFUND
from ledger.queries import bounded_fetch
from ledger.reports import ReportQuery
from protocol.engine_points import minor_per_point
from protocol.engine_promotions import GRANT_USES_MAX
from protocol.engine_replay import DAY_S
from protocol.programs import TIER_BASIS_RANK

GRANT_CARDS_MAX = 10_000
"""Cards one issue may grant (one database transaction); a larger campaign is issued in
parts, each its own issue id."""
ISSUE_CHARS_MAX = 32
SEGMENTS = ("lapsing", "top")
BASIS_POINTS = 10_000


def _program(programs: engine_sql.Programs | None, program_id: str) -> dict[str, Any]:
    if programs is None:
        raise BatchInvalid("no_programs", "the ledger was started without --programs")
    program = programs.get(program_id)
    if program is None:
        raise NotFound("program_unknown", f"no program {program_id[:64]!r}")
    return program


def targeted_offer(program: dict[str, Any], offer_id: str) -> dict[str, Any]:
    """The program's targeted offer `offer_id` (BatchInvalid offer_unknown otherwise)."""
    for offer in (program.get("promotions") or {}).get("offers", ()):
        if offer["id"] == offer_id and offer.get("targeted"):
            return dict(offer)
    raise BatchInvalid("offer_unknown",
                       f"{offer_id[:64]!r} is no targeted offer of program {program['id']}")


def issue(session: Session, programs: engine_sql.Programs | None, program_id: str,
          offer_id: str, issue_id: str, uses: int, last_day: int, now: int,
          cards: list[str] | None = None, customers: list[str] | None = None,
          segment: dict[str, Any] | None = None) -> dict[str, Any]:
    """Grant the offer (see the module): {"program", "offer", "issue", "uses", "last_day",
    "cards": [the cards asked], "posted", "already", "declined"}."""
    program = _program(programs, program_id)
    targeted_offer(program, offer_id)
    if not 1 <= len(issue_id) <= ISSUE_CHARS_MAX:
        raise BatchInvalid("request_malformed", f"issue is 1..{ISSUE_CHARS_MAX} characters")
    if not 1 <= uses <= GRANT_USES_MAX:
        raise BatchInvalid("request_malformed", f"uses is 1..{GRANT_USES_MAX}")
    if last_day < now // DAY_S:
        raise BatchInvalid("request_malformed", "the last day is past")
    targets = set(cards or ())
    if customers:
        targets |= set(_cards_of_customers(session, program_id, customers).values())
    if segment is not None:
        targets |= set(_segment_cards(session, program, segment, now))
    if len(targets) > GRANT_CARDS_MAX:
        raise BatchInvalid("request_malformed",
                           f"{len(targets)} cards: at most {GRANT_CARDS_MAX} an issue")
    terms = {"offer": offer_id, "uses": uses, "last_day": last_day}
    ops = [CardOp(card, KIND_GRANT, card_ops_sql.grant_txn_id(issue_id, card), terms)
           for card in sorted(targets)]
    done = card_ops_sql.post(session, programs, program_id, f"grant-{issue_id}", ops, now)
    return {"program": program_id, "offer": offer_id, "issue": issue_id, "uses": uses,
            "last_day": last_day, "cards": sorted(targets), **done}


def _cards_of_customers(session: Session, program_id: str,
                        customers: list[str]) -> dict[str, str]:
    """{customer: its card in the program with the latest posted transaction}
    (GRANT_ONE_CARD_PER_CUSTOMER); a customer with no card in the program is left out."""
    rows = _customer_cards(session, program_id, customers)
    best: dict[str, tuple[int, str]] = {}
    for customer_id, card, last in rows:
        if customer_id not in best or (int(last), card) > best[customer_id]:
            best[customer_id] = (int(last), card)
    return {customer_id: card for customer_id, (_, card) in best.items()}


def _customer_cards(session: Session, program_id: str,
                    customers: list[str]) -> list[tuple[Any, ...]]:
    found = []
    for customer_id in sorted(set(customers)):
        found.extend(session.fetch(
            "SELECT l.customer_id, l.card, COALESCE(MAX(t.time), 0) FROM customer_cards l"
            " JOIN cards c ON c.card = l.card LEFT JOIN transactions t ON t.card = l.card"
            " WHERE l.customer_id = ? AND c.program = ? GROUP BY l.customer_id, l.card",
            (customer_id, program_id)))
    return found


def _segment_cards(session: Session, program: dict[str, Any], segment: dict[str, Any],
                   now: int) -> list[str]:
    """The cards of a segment's customers in the program (see the module)."""
    name = segment.get("name")
    if name not in SEGMENTS:
        raise BatchInvalid("request_malformed", f"segment name is one of {', '.join(SEGMENTS)}")
    parameters = {key: value for key, value in segment.items()
                  if key not in ("name", "window_days")}
    window = segment.get("window_days", 365)
    for key, value in [("window_days", window), *parameters.items()]:
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 3660:
            raise BatchInvalid("request_malformed", f"segment {key} is an integer 1..3660")
    today = date.fromordinal(date(1970, 1, 1).toordinal() + now // DAY_S)
    if name == "lapsing":
        wanted = {"days", "min_purchases"}
        query = ReportQuery("customer_lapsing", today, window, parameters)
    else:
        wanted = {"top_percent"}
        query = ReportQuery("customer_value", today, window,
                            {**parameters, "next_percent": 0})
    if set(parameters) != wanted:
        raise BatchInvalid("request_malformed",
                           f"segment {name} takes {', '.join(sorted(wanted))} (and window_days)")
    if name == "top" and not parameters["top_percent"] <= 100:
        raise BatchInvalid("request_malformed", "top_percent is 1..100")
    rows = customer_reports.run(session, query).rows
    if name == "top":
        rows = [row for row in rows if row["class"] == "top"]
    rows = [row for row in rows if row["currency"] == program["currency"]]
    customers = [row["customer_id"] for row in rows if row["customer_id"] is not None]
    cards = list(_cards_of_customers(session, program["id"], customers).values())
    unlinked = [row["cards"][0] for row in rows if row["customer_id"] is None]
    if unlinked:
        cards.extend(_in_program(session, program["id"], unlinked))
    return cards


def _in_program(session: Session, program_id: str, cards: list[str]) -> list[str]:
    return [row[0] for row in session.fetch_in(
        "SELECT card, program FROM cards WHERE {match}", "card", cards) if row[1] == program_id]


def report(session: Session, programs: engine_sql.Programs | None, program_id: str,
           offer_id: str) -> dict[str, Any]:
    """The offer's response (see the module)."""
    program = _program(programs, program_id)
    targeted_offer(program, offer_id)
    grants = [grant for grant in card_ops_sql.card_ops(session, KIND_GRANT, program_id)
              if grant["offer"] == offer_id]
    windows: dict[str, list[tuple[int, int]]] = {}
    issues: dict[str, dict[str, Any]] = {}
    for grant in grants:
        windows.setdefault(grant["card"], []).append(
            (grant["time"], (grant["last_day"] + 1) * DAY_S))
        issue_id = grant["txn_id"][len("grant-"):-len(grant["card"]) - 1]
        entry = issues.setdefault(issue_id, {"issue": issue_id, "cards": 0,
                                             "uses": grant["uses"],
                                             "last_day": grant["last_day"]})
        entry["cards"] += 1
    uses = bounded_fetch(session, "SELECT card, amount_minor FROM offer_uses"
                         " WHERE program = ? AND offer = ?", (program_id, offer_id))
    revenue = 0
    if windows:
        for card, time, amount in session.fetch_in(
                "SELECT card, time, amount_minor FROM transactions WHERE {match}"
                f" AND kind = '{KIND_PURCHASE}'", "card", sorted(windows)):
            if any(first <= int(time) < end for first, end in windows[card]):
                revenue += int(amount)
    redeemed = len({card for card, _ in uses if card in windows})
    return {"program": program_id, "offer": offer_id, "currency": program["currency"],
            "granted_cards": len(windows), "redeemed_cards": redeemed, "uses": len(uses),
            "use_revenue_minor": sum(int(amount) for _, amount in uses),
            "window_revenue_minor": revenue,
            "response_bp": redeemed * BASIS_POINTS // len(windows) if windows else 0,
            "issues": sorted(issues.values(), key=lambda entry: entry["issue"])}


def rank_program(session: Session, programs: engine_sql.Programs | None, program_id: str,
                 period: int | None, now: int) -> dict[str, Any]:
    """Rank the program's cards for `period` (None: the last one ended) and post each card's
    level (see the module): {"program", "period", "first_day", "last_day", "ranked",
    "levels": {level: cards}, "posted", "already", "declined"}."""
    program = _program(programs, program_id)
    tiers = program.get("tiers")
    if tiers is None or tiers.get("basis") != TIER_BASIS_RANK:
        raise BatchInvalid("program_not_ranked", f"program {program_id} has no tiers by rank")
    period_days = tiers["period_days"]
    today = now // DAY_S
    if period is None:
        period = rank.period_of(today, period_days) - 1
    first, last = rank.period_days_of(period, period_days) if period >= 0 else (0, -1)
    if period < 0 or last >= today:
        raise BatchInvalid("period_not_ended", f"period {period} has not ended")
    spends = _spends(session, program, first * DAY_S, (last + 1) * DAY_S)
    result = rank.ranked(spends, tiers["levels"])
    kept = engine_sql.read(session, sorted(spends))
    held = {card: (None if stored.state is None else stored.state.get("rank_period"))
            for card, stored in kept.items()}
    ops = [CardOp(op["card"], KIND_RANK, card_ops_sql.rank_txn_id(program_id, period,
                                                                  op["card"]),
                  {"level": op["level"], "period": period})
           for op in rank.rank_ops(result, period, held)]
    done = card_ops_sql.post(session, programs, program_id, f"rank-{program_id}-{period}",
                             ops, now)
    ranked_before = {row["card"] for row in result} - {op.card for op in ops}
    done["already"] = sorted(ranked_before | set(done["already"]))
    levels: dict[str, int] = {level["name"]: 0 for level in tiers["levels"]}
    for row in result:
        levels[row["level"]] += 1
    return {"program": program_id, "period": period, "first_day": first, "last_day": last,
            "ranked": len(result), "levels": levels, **done}


def _spends(session: Session, program: dict[str, Any], start_s: int,
            end_s: int) -> dict[str, int]:
    """Every ranked card's qualifying spend in [start_s, end_s) (RANK_SPEND_NET_OF_REFUNDS)."""
    spends = {card: 0 for card, in bounded_fetch(
        session, "SELECT card FROM cards WHERE program = ? AND card NOT IN"
        " (SELECT old_card FROM card_replacements)", (program["id"],))}
    point_minor = minor_per_point(program) if program.get("points") is not None else 0
    for card, kind, amount, discount, redeemed in bounded_fetch(
            session, "SELECT t.card, t.kind, t.amount_minor, t.discount_minor,"
            " t.redeem_points FROM transactions t JOIN cards c ON c.card = t.card"
            " WHERE c.program = ? AND t.kind IN (?, ?) AND t.time >= ? AND t.time < ?",
            (program["id"], KIND_PURCHASE, KIND_REFUND, start_s, end_s)):
        if card not in spends:
            continue
        if kind == KIND_PURCHASE:
            spends[card] += (int(amount) - int(discount or 0)
                             - int(redeemed or 0) * point_minor)
        else:
            spends[card] -= int(amount)
    return {card: max(0, spend) for card, spend in spends.items()}
