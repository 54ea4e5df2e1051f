"""The named reports over the books: liability, breakage, segments, lapsing, terminals,
refused, exposure, rewards, and the customer reports (ledger/customer_reports.py).

Every figure is summed from the entries or transactions themselves (no cached balances),
so a report can never disagree with the postings it describes. The reports (see
docs/ledger.md) are computed by `run_report` from a `ReportQuery` that `parse_report_query`
builds from text parameters, the same way for HTTP, for the CLI and for Python callers.
Card balances, terminal totals and the other everyday reads are `ledger.queries`.
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from ledger import exposure_sql
from ledger.db import Session
from ledger.errors import BatchInvalid, NotFound
from ledger.limits import REPORT_PARAMETER_DIGITS_MAX, REPORT_WINDOW_DAYS_MAX
from ledger.model import KIND_PURCHASE, KIND_REFUND
from ledger.queries import REFUSED_FIELDS, bounded_fetch, refused_transactions
from protocol.accounts import BREAKAGE, CARD_POINTS, CARD_VALUE, PROMOTION_EXPENSE

CUSTOMER_REPORT_NAMES = ("customer_value", "customer_lapsing", "customer_retention")
"""Reports by customer (a customer's cards together): ledger/customer_reports.py."""
REPORT_NAMES = ("liability", "breakage", "segments", "lapsing", "terminals", "refused",
                "exposure", "rewards", *CUSTOMER_REPORT_NAMES)
WINDOW_DAYS_DEFAULT = 90
LAPSE_DAYS_DEFAULT = 30
REGULAR_PURCHASES_DEFAULT = 3
TOP_CARDS_PERCENT = 20
"""Segments flags the top fifth of cards by spend (rounded up), as in the 80/20 rule."""
SCORE_LEVELS = 5
"""R, F and M are scored 1 (worst fifth) to 5 (best fifth)."""
BASIS_POINTS = 10_000
DAY_S = 86_400
EPOCH = date(1970, 1, 1)
TOP_PERCENT_DEFAULT = 20
"""customer_value: the top class is the first 20 % of customers by revenue (rounded up)."""
NEXT_PERCENT_DEFAULT = 30
"""customer_value: the next class is the following 30 % (the rest is the third class)."""
PERCENT_MAX = 100
RETENTION_MONTHS_DEFAULT = 12
"""customer_retention: cohorts of the 12 calendar months up to the as-of month."""
RETENTION_MONTHS_MAX = 120
_COMMON_PARAMETERS = frozenset({"as_of", "window_days"})
_LAPSING_PARAMETERS = frozenset({"days", "min_purchases"})
_EXTRA_PARAMETERS = {
    "lapsing": _LAPSING_PARAMETERS,
    "customer_lapsing": _LAPSING_PARAMETERS,
    "customer_value": frozenset({"top_percent", "next_percent"}),
    "customer_retention": frozenset({"months"}),
}
_DATE_PATTERN = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_COUNT_PATTERN = re.compile(rf"[0-9]{{1,{REPORT_PARAMETER_DIGITS_MAX}}}")


@dataclass(frozen=True, slots=True)
class ReportQuery:
    """What to report: as of the end of `as_of` (UTC), over the `window_days` days up to it."""

    name: str
    as_of: date
    window_days: int
    parameters: dict[str, int] = field(default_factory=dict)

    @property
    def cutoff_s(self) -> int:
        """First second after the as-of day: transactions before it are reported."""
        return ((self.as_of - EPOCH).days + 1) * DAY_S

    @property
    def window_start_s(self) -> int:
        """First second of the window (the as-of day is its last day)."""
        return self.cutoff_s - self.window_days * DAY_S


@dataclass(frozen=True, slots=True)
class Report:
    """Rows of one report, with the columns that name their fields, in order."""

    query: ReportQuery
    columns: tuple[str, ...]
    rows: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)
    replica_lag_s: float | None = None
    """Read from a replica of the books: how far behind the primary its snapshot was
    (seconds since the last commit it had replayed); None: read from the primary."""

    def to_json(self) -> dict[str, Any]:
        """The body of GET /v1/reports/<name>, and the CLI's JSON output ("replica_lag_s"
        only for a report read from a replica)."""
        body = {
            "report": self.query.name,
            "as_of": self.query.as_of.isoformat(),
            "window_days": self.query.window_days,
            "parameters": dict(self.query.parameters),
            "columns": list(self.columns),
            "rows": self.rows,
            "summary": self.summary,
        }
        if self.replica_lag_s is not None:
            body["replica_lag_s"] = self.replica_lag_s
        return body


def parse_report_query(name: str, parameters: Mapping[str, str], today: date) -> ReportQuery:
    """Check a report's name and text parameters; `today` is the default as-of date."""
    if name not in REPORT_NAMES:
        raise NotFound("report_unknown", f"no report {name[:64]!r}; one of {REPORT_NAMES}")
    accepted = _COMMON_PARAMETERS | _EXTRA_PARAMETERS.get(name, frozenset())
    unknown = set(parameters).difference(accepted)
    if unknown:
        names = ", ".join(sorted(repr(key[:64]) for key in unknown))
        raise BatchInvalid("parameter_invalid", f"{name} takes no {names}")
    as_of = _date(parameters["as_of"]) if "as_of" in parameters else today
    window_days = _count(parameters, "window_days", WINDOW_DAYS_DEFAULT, REPORT_WINDOW_DAYS_MAX)
    extra: dict[str, int] = {}
    if name in ("lapsing", "customer_lapsing"):
        extra["days"] = _count(parameters, "days", LAPSE_DAYS_DEFAULT, REPORT_WINDOW_DAYS_MAX)
        extra["min_purchases"] = _count(
            parameters, "min_purchases", REGULAR_PURCHASES_DEFAULT, 10**REPORT_PARAMETER_DIGITS_MAX
        )
        if extra["days"] >= window_days:
            raise BatchInvalid(
                "parameter_invalid",
                "days must be less than window_days (regulars are counted"
                " over the window, and must have been away for the last `days` of it)",
            )
    elif name == "customer_value":
        extra["top_percent"] = _count(parameters, "top_percent", TOP_PERCENT_DEFAULT, PERCENT_MAX)
        extra["next_percent"] = _count(
            parameters, "next_percent", NEXT_PERCENT_DEFAULT, PERCENT_MAX
        )
        if extra["top_percent"] + extra["next_percent"] > PERCENT_MAX:
            raise BatchInvalid("parameter_invalid",
                               f"top_percent + next_percent is at most {PERCENT_MAX}")
    elif name == "customer_retention":
        extra["months"] = _count(
            parameters, "months", RETENTION_MONTHS_DEFAULT, RETENTION_MONTHS_MAX
        )
    return ReportQuery(name, as_of, window_days, extra)


def _date(text: str) -> date:
    """A calendar date written YYYY-MM-DD."""
    try:
        if _DATE_PATTERN.fullmatch(text) is None:
            raise ValueError("not YYYY-MM-DD")
        return date.fromisoformat(text)
    except ValueError as error:
        raise BatchInvalid("parameter_invalid", f"as_of: {text[:32]!r}: {error}") from error


def _count(parameters: Mapping[str, str], key: str, default: int, maximum: int) -> int:
    """A whole number from 1 to `maximum`, written in decimal digits."""
    text = parameters.get(key)
    if text is None:
        return default
    if _COUNT_PATTERN.fullmatch(text) is None or not 1 <= int(text) <= maximum:
        raise BatchInvalid(
            "parameter_invalid", f"{key}: {text[:32]!r} is not a whole number from 1 to {maximum}"
        )
    return int(text)


def run_report(database: Session, query: ReportQuery) -> Report:
    """Compute a named report from the books."""
    return _REPORTS[query.name](database, query)


def _day(time_s: int) -> date:
    """The UTC calendar day of a Unix time."""
    return EPOCH + timedelta(days=time_s // DAY_S)


_ACCOUNT_ORDER = {CARD_VALUE: 0, CARD_POINTS: 1}


def _liability(database: Session, query: ReportQuery) -> Report:
    """Per program, account and unit: what the card holders are owed at the end of as_of."""
    rows = bounded_fetch(
        database,
        f"""SELECT c.program, b.account_kind, b.unit,
                COUNT(CASE WHEN b.total <> 0 THEN 1 END), CAST(-SUM(b.total) AS BIGINT)
            FROM (SELECT e.owner AS card, e.account_kind, e.unit, SUM(e.amount_minor) AS total
                  FROM entries e JOIN transactions t ON t.txn_id = e.txn_id
                  WHERE e.account_kind IN ('{CARD_VALUE}', '{CARD_POINTS}') AND t.time < ?
                  GROUP BY e.owner, e.account_kind, e.unit) b
            JOIN cards c ON c.card = b.card
            GROUP BY c.program, b.account_kind, b.unit""",
        (query.cutoff_s,),
    )
    columns = ("program", "account", "unit", "cards", "liability_minor")
    ordered = sorted(rows, key=lambda row: (row[0] or "", _ACCOUNT_ORDER[row[1]], row[2]))
    return Report(query, columns, [dict(zip(columns, row, strict=True)) for row in ordered])


def _breakage(database: Session, query: ReportQuery) -> Report:
    """Per program, merchant and unit: value and points that expired within the window.

    Breakage is summed from every transaction's breakage legs: an expire's, and those the
    engine gives other operations (what lapsed as time passed before a purchase, a refund
    that reverses the breakage of points that had expired). `cards` and `expirations` count
    the cards and transactions whose breakage there is a net credit: a reversal lowers
    `breakage_minor` but is no expiration.
    """
    rows = bounded_fetch(
        database,
        f"""SELECT b.program, b.merchant, b.unit,
                COUNT(DISTINCT CASE WHEN b.total < 0 THEN b.card END),
                COUNT(CASE WHEN b.total < 0 THEN 1 END), CAST(-SUM(b.total) AS BIGINT)
            FROM (SELECT c.program AS program, e.owner AS merchant, e.unit AS unit,
                    t.card AS card, t.txn_id AS txn_id, SUM(e.amount_minor) AS total
                  FROM entries e JOIN transactions t ON t.txn_id = e.txn_id
                  JOIN cards c ON c.card = t.card
                  WHERE e.account_kind = '{BREAKAGE}' AND t.time >= ? AND t.time < ?
                  GROUP BY c.program, e.owner, e.unit, t.card, t.txn_id) b
            GROUP BY b.program, b.merchant, b.unit""",
        (query.window_start_s, query.cutoff_s),
    )
    columns = ("program", "merchant", "unit", "cards", "expirations", "breakage_minor")
    ordered = sorted(rows, key=lambda row: (row[0] or "", row[1], row[2]))
    return Report(query, columns, [dict(zip(columns, row, strict=True)) for row in ordered])


def _refused(database: Session, query: ReportQuery) -> Report:
    """The transactions batches refused within the window (by the ledger's clock when it
    refused them), oldest first: the ledger's quarantine, which a person works through."""
    rows = refused_transactions(
        database, refused_from_s=query.window_start_s, refused_before_s=query.cutoff_s
    )
    by_reason: dict[str, int] = {}
    for row in rows:
        by_reason[row["reason"]] = by_reason.get(row["reason"], 0) + 1
    not_posted = sum(1 for row in rows if row["posted_batch_id"] is None)
    summary = {"refused": len(rows), "not_posted": not_posted, "by_reason": by_reason}
    return Report(query, REFUSED_FIELDS, rows, summary)


def _exposure(database: Session, query: ReportQuery) -> Report:
    """Cards below zero now (offline or stand-in sales on value spent elsewhere), each
    blocked by the ledger, and per store and terminal what was sold on them without a hold
    (ledger/exposure_sql.py). Not windowed: an overdraft is open until it is paid back."""
    found = exposure_sql.exposure(database)
    summary = {"cards": len(found["cards"]),
               "value_minor": sum(row["value_minor"] for row in found["cards"]),
               "sales": found["sales"], "by_gateway": found["by_gateway"]}
    return Report(query, exposure_sql.EXPOSURE_CARD_FIELDS, found["cards"], summary)


def _terminals(database: Session, query: ReportQuery) -> Report:
    """Per UTC day, terminal, kind and currency within the window: count and sums."""
    rows = bounded_fetch(
        database,
        """SELECT time / 86400, terminal, kind, currency, COUNT(*),
                CAST(SUM(amount_minor) AS BIGINT), CAST(SUM(card_value_minor) AS BIGINT),
                CAST(SUM(points) AS BIGINT)
            FROM transactions WHERE time >= ? AND time < ?
            GROUP BY time / 86400, terminal, kind, currency
            ORDER BY time / 86400, terminal, kind, currency""",
        (query.window_start_s, query.cutoff_s),
    )
    columns = (
        "date", "terminal", "kind", "currency", "count", "amount_minor", "card_value_minor",
        "points",
    )  # fmt: skip
    return Report(
        query,
        columns,
        [
            dict(zip(columns, ((EPOCH + timedelta(days=day)).isoformat(), *rest), strict=True))
            for day, *rest in rows
        ],
    )


def _rewards(database: Session, query: ReportQuery) -> Report:
    """Per program, reward item and currency within the window: the redemptions and the
    refunds of redemptions, and net of those refunds the points taken, their worth paid to
    the merchants (the promotion_expense entries in the currency: a redemption's only ones)
    and the co-payments taken in other tender (the amount less that worth)."""
    rows = bounded_fetch(
        database,
        f"""SELECT r.program, r.item, r.currency,
                COUNT(CASE WHEN r.kind = '{KIND_PURCHASE}' THEN 1 END),
                COUNT(CASE WHEN r.kind = '{KIND_REFUND}' THEN 1 END),
                CAST(SUM(r.points) AS BIGINT), CAST(SUM(r.worth) AS BIGINT),
                CAST(SUM(r.amount - r.worth) AS BIGINT)
            FROM (SELECT c.program AS program, COALESCE(t.reward, o.reward) AS item,
                    t.currency AS currency, t.kind AS kind,
                    CASE WHEN t.kind = '{KIND_PURCHASE}' THEN 1 ELSE -1 END
                        * COALESCE(t.redeem_points, 0) AS points,
                    CASE WHEN t.kind = '{KIND_PURCHASE}' THEN 1 ELSE -1 END
                        * t.amount_minor AS amount,
                    COALESCE(SUM(e.amount_minor), 0) AS worth
                  FROM transactions t JOIN cards c ON c.card = t.card
                  LEFT JOIN transactions o ON o.txn_id = t.ref_txn_id
                  LEFT JOIN entries e ON e.txn_id = t.txn_id
                    AND e.account_kind = '{PROMOTION_EXPENSE}' AND e.unit = t.currency
                  WHERE (t.reward IS NOT NULL OR o.reward IS NOT NULL)
                    AND t.time >= ? AND t.time < ?
                  GROUP BY t.txn_id, c.program, t.reward, o.reward, t.currency, t.kind,
                    t.redeem_points, t.amount_minor) r
            GROUP BY r.program, r.item, r.currency""",
        (query.window_start_s, query.cutoff_s),
    )
    columns = ("program", "item", "currency", "redeemed", "refunded", "points",
               "points_worth_minor", "copay_minor")
    ordered = sorted(rows, key=lambda row: (row[0] or "", row[1], row[2]))
    return Report(query, columns, [dict(zip(columns, row, strict=True)) for row in ordered])


@dataclass(frozen=True, slots=True)
class CardPurchases:
    """A card's purchase history up to the cutoff, as segments and lapsing see it."""

    card: str
    currency: str
    program: str | None
    last_purchase: date
    recency_days: int
    frequency: int
    monetary_minor: int


def card_purchases(database: Session, query: ReportQuery) -> list[CardPurchases]:
    """Every card with a purchase before the cutoff: last purchase, and purchases and net
    spend (purchases minus their refunds, amount_minor) within the window. A refund of an
    issue or topup gives back a load, not a sale: it is no negative spend; nor is a cashout
    (card value paid out in cash) spend of any sign."""
    start = query.window_start_s
    rows = bounded_fetch(
        database,
        f"""SELECT t.card, t.currency, c.program,
                MAX(CASE WHEN t.kind = '{KIND_PURCHASE}' THEN t.time END),
                COUNT(CASE WHEN t.kind = '{KIND_PURCHASE}' AND t.time >= ? THEN 1 END),
                CAST(COALESCE(SUM(CASE WHEN t.time < ? THEN 0
                    WHEN t.kind = '{KIND_PURCHASE}' THEN t.amount_minor
                    ELSE -t.amount_minor END), 0) AS BIGINT)
            FROM transactions t JOIN cards c ON c.card = t.card
            LEFT JOIN transactions o ON o.txn_id = t.ref_txn_id
            WHERE (t.kind = '{KIND_PURCHASE}' OR (t.kind = '{KIND_REFUND}'
                    AND o.kind = '{KIND_PURCHASE}')) AND t.time < ?
            GROUP BY t.card, t.currency, c.program
            HAVING MAX(CASE WHEN t.kind = '{KIND_PURCHASE}' THEN t.time END) IS NOT NULL""",
        (start, start, query.cutoff_s),
    )
    customers = []
    for card, currency, program, last_s, frequency, monetary_minor in rows:
        last = _day(last_s)
        recency = (query.as_of - last).days
        customers.append(
            CardPurchases(card, currency, program, last, recency, frequency, monetary_minor)
        )
    return customers


def _segments(database: Session, query: ReportQuery) -> Report:
    """Per card, per currency: recency, frequency, monetary, RFM scores and the top fifth."""
    by_currency: dict[str, list[CardPurchases]] = {}
    for customer in card_purchases(database, query):
        by_currency.setdefault(customer.currency, []).append(customer)
    columns = (
        "currency", "card", "program", "recency_days", "frequency", "monetary_minor", "r_score",
        "f_score", "m_score", "rfm_score", "top_fifth", "revenue_share_bp",
    )  # fmt: skip
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    for currency in sorted(by_currency):
        group = sorted(by_currency[currency], key=lambda c: (-c.monetary_minor, c.card))
        top = _top_cards(group)
        revenue_minor = sum(customer.monetary_minor for customer in group)
        top_revenue_minor = sum(customer.monetary_minor for customer in top)
        summary[currency] = {
            "cards": len(group),
            "top_cards": len(top),
            "revenue_minor": revenue_minor,
            "top_revenue_minor": top_revenue_minor,
            "top_share_bp": share_bp(top_revenue_minor, revenue_minor),
        }
        recency = _scorer([c.recency_days for c in group], lower_is_better=True)
        frequency = _scorer([c.frequency for c in group], lower_is_better=False)
        monetary = _scorer([c.monetary_minor for c in group], lower_is_better=False)
        top_cards = {customer.card for customer in top}
        for customer in group:
            scores = (
                recency(customer.recency_days),
                frequency(customer.frequency),
                monetary(customer.monetary_minor),
            )
            values = (
                currency, customer.card, customer.program, customer.recency_days,
                customer.frequency, customer.monetary_minor, *scores,
                "".join(str(score) for score in scores), customer.card in top_cards,
                share_bp(customer.monetary_minor, revenue_minor),
            )  # fmt: skip
            rows.append(dict(zip(columns, values, strict=True)))
    return Report(query, columns, rows, summary)


def _top_cards(ranked: list[CardPurchases]) -> list[CardPurchases]:
    """The first TOP_CARDS_PERCENT of all cards (rounded up) by spend, among those who spent."""
    count = -(-len(ranked) * TOP_CARDS_PERCENT // 100)
    return [customer for customer in ranked if customer.monetary_minor > 0][:count]


def _scorer(values: list[int], lower_is_better: bool) -> Callable[[int], int]:
    """Quintile score: 5 - floor(5 * cards strictly better / cards); ties share a score."""
    ordered = sorted(values)
    count = len(ordered)

    def score(value: int) -> int:
        if lower_is_better:
            better = bisect_left(ordered, value)
        else:
            better = count - bisect_right(ordered, value)
        return SCORE_LEVELS - (SCORE_LEVELS * better) // count

    return score


def share_bp(part: int, whole: int) -> int:
    """part / whole in basis points, rounded half up; 0 when there is nothing to share."""
    if whole <= 0:
        return 0
    return (2 * part * BASIS_POINTS + whole) // (2 * whole)


def _lapsing(database: Session, query: ReportQuery) -> Report:
    """Regulars (min_purchases in the window) whose last purchase is `days` or more ago."""
    days, min_purchases = query.parameters["days"], query.parameters["min_purchases"]
    lapsed = [
        customer
        for customer in card_purchases(database, query)
        if customer.frequency >= min_purchases and customer.recency_days >= days
    ]
    lapsed.sort(key=lambda c: (c.currency, -c.monetary_minor, c.card))
    columns = (
        "currency", "card", "program", "purchases", "monetary_minor", "last_purchase",
        "days_since_purchase",
    )  # fmt: skip
    rows = []
    for c in lapsed:
        last_purchase = c.last_purchase.isoformat()
        values = (c.currency, c.card, c.program, c.frequency, c.monetary_minor, last_purchase)
        rows.append(dict(zip(columns, (*values, c.recency_days), strict=True)))
    return Report(query, columns, rows)


_REPORTS: dict[str, Callable[[Session, ReportQuery], Report]] = {
    "liability": _liability,
    "breakage": _breakage,
    "segments": _segments,
    "lapsing": _lapsing,
    "terminals": _terminals,
    "refused": _refused,
    "exposure": _exposure,
    "rewards": _rewards,
}


def _customer_report(database: Session, query: ReportQuery) -> Report:
    # Imported here: customer_reports builds on this module's reports and queries.
    from ledger import customer_reports

    return customer_reports.run(database, query)


_REPORTS.update(dict.fromkeys(CUSTOMER_REPORT_NAMES, _customer_report))
assert tuple(_REPORTS) == REPORT_NAMES
