"""Reports by customer: value classes, lapsing regulars, retention by cohort (docs/ledger.md,
"Reports").

A customer here is what buys: the cards linked to one customer (ledger/customers.py) count
together, and a card linked to nobody counts as a customer of its own (customer_id null, its
card named), so the figures add up to the same revenue as the card reports. Links are taken
as they are now (a card linked today brings its older purchases with it); an erased
customer stays one by its anonymous id. Spend is `reports.card_purchases`' net spend
(purchases minus the refunds of purchases, amount_minor), per currency: a customer with
cards in two currencies is one customer in each.

    customer_value      customers who bought in the window, ranked by revenue (ties by id),
                        in three classes: the first top_percent of them, the next
                        next_percent, the rest. Class sizes are the cumulative percentages
                        of the customers rounded up (20 % of 7 customers is 2: ceil 1.4);
                        class shares of revenue are in basis points by the largest
                        remainder rule (each share floored, the basis points missing to
                        10000 given to the largest remainders, ties to the higher class),
                        so the three add up to exactly 100.00 %; a customer's own share is
                        rounded half up.
    customer_lapsing    regulars (min_purchases in the window, all their cards together)
                        whose last purchase is `days` or more ago. Computed from the books
                        alone, the contact columns are null (summary contacts "not_read"):
                        `Customers.report` fills them in, under the customer key, for the
                        customers whose marketing consent is granted.
    customer_retention  cohorts by the UTC calendar month of a customer's first purchase
                        (the `months` months up to the as-of month): per cohort and each
                        month from its first to the as-of month, how many of its customers
                        made a purchase in that month (months_after 0 is the cohort itself).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from ledger.db import Session
from ledger.model import KIND_PURCHASE
from ledger.queries import bounded_fetch
from ledger.reports import (
    BASIS_POINTS,
    DAY_S,
    EPOCH,
    PERCENT_MAX,
    Report,
    ReportQuery,
    card_purchases,
    share_bp,
)

CLASSES = ("top", "next", "rest")
"""customer_value's classes, highest revenue first."""
CONTACT_FIELDS = ("name", "phone", "email", "language")
"""The personal fields customer_lapsing shows where consent allows (no notes, no birthday)."""
CONTACTS_NOT_READ = "not_read"
VALUE_COLUMNS = ("currency", "class", "rank", "customer_id", "cards", "purchases",
                 "revenue_minor", "share_bp")
LAPSING_COLUMNS = ("currency", "customer_id", "cards", "purchases", "monetary_minor",
                   "last_purchase", "days_since_purchase", "marketing_consent",
                   *CONTACT_FIELDS)
RETENTION_COLUMNS = ("cohort", "month", "months_after", "customers", "active",
                     "retention_bp")
MONTHS_PER_YEAR = 12


@dataclass(slots=True)
class Buyer:
    """One customer's (or one unlinked card's) purchases in one currency."""

    currency: str
    customer_id: str | None
    cards: list[str]
    purchases: int
    revenue_minor: int
    last_purchase: str
    days_since: int

    @property
    def key(self) -> str:
        """The customer's id, or the card of a card nobody is linked to (for ordering)."""
        return self.customer_id if self.customer_id is not None else self.cards[0]


def run(database: Session, query: ReportQuery) -> Report:
    """One of the customer reports."""
    reports: dict[str, Callable[[Session, ReportQuery], Report]] = {
        "customer_value": value_classes, "customer_lapsing": lapsing,
        "customer_retention": retention}
    return reports[query.name](database, query)


def card_owners(database: Session) -> dict[str, str]:
    """{card: customer id} of every linked card."""
    return {card: customer_id for card, customer_id in bounded_fetch(
        database, "SELECT card, customer_id FROM customer_cards ORDER BY card", ())}


def buyers(database: Session, query: ReportQuery) -> list[Buyer]:
    """Per currency, every customer with a purchase before the cutoff, their cards summed:
    purchases and revenue within the window, the latest purchase of any of their cards."""
    owners = card_owners(database)
    found: dict[tuple[str, str | None, str | None], Buyer] = {}
    for card in card_purchases(database, query):
        customer_id = owners.get(card.card)
        # A card of nobody's is a customer of its own: keyed by the card itself.
        key = (card.currency, customer_id, None if customer_id is not None else card.card)
        last = card.last_purchase.isoformat()
        buyer = found.get(key)
        if buyer is None:
            found[key] = Buyer(card.currency, customer_id, [card.card], card.frequency,
                               card.monetary_minor, last, card.recency_days)
            continue
        buyer.cards.append(card.card)
        buyer.purchases += card.frequency
        buyer.revenue_minor += card.monetary_minor
        buyer.last_purchase = max(buyer.last_purchase, last)
        buyer.days_since = min(buyer.days_since, card.recency_days)
    for buyer in found.values():
        buyer.cards.sort()
    return sorted(found.values(), key=lambda buyer: (buyer.currency, buyer.key))


def class_sizes(customers: int, top_percent: int, next_percent: int) -> tuple[int, int, int]:
    """How many customers are in each class: the cumulative percentages rounded up."""
    top_end = -(-customers * top_percent // PERCENT_MAX)
    next_end = -(-customers * (top_percent + next_percent) // PERCENT_MAX)
    return top_end, next_end - top_end, customers - next_end


def largest_remainder_bp(parts: list[int], whole: int) -> list[int]:
    """Each part's share of `whole` in basis points, adding up to exactly BASIS_POINTS: each
    floored, then one more to each of the largest remainders (ties to the earlier part)
    until none is missing. All 0 when there is nothing to share (whole <= 0)."""
    if whole <= 0:
        return [0] * len(parts)
    floors = [part * BASIS_POINTS // whole for part in parts]
    remainders = [part * BASIS_POINTS - floor * whole for part, floor in zip(parts, floors,
                                                                             strict=True)]
    missing = BASIS_POINTS - sum(floors)  # fewer than len(parts): the parts sum to whole
    for index in sorted(range(len(parts)), key=lambda i: (-remainders[i], i))[:missing]:
        floors[index] += 1
    return floors


def value_classes(database: Session, query: ReportQuery) -> Report:
    """Per currency, the customers who bought in the window in their value classes."""
    top_percent = query.parameters["top_percent"]
    next_percent = query.parameters["next_percent"]
    by_currency: dict[str, list[Buyer]] = {}
    for buyer in buyers(database, query):
        if buyer.purchases > 0:
            by_currency.setdefault(buyer.currency, []).append(buyer)
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    for currency, group in sorted(by_currency.items()):
        ranked = sorted(group, key=lambda buyer: (-buyer.revenue_minor, buyer.key))
        revenue_minor = sum(buyer.revenue_minor for buyer in ranked)
        sizes = class_sizes(len(ranked), top_percent, next_percent)
        members: list[list[Buyer]] = []
        start = 0
        for size in sizes:
            members.append(ranked[start:start + size])
            start += size
        class_revenue = [sum(buyer.revenue_minor for buyer in group) for group in members]
        shares = largest_remainder_bp(class_revenue, revenue_minor)
        summary[currency] = {
            "customers": len(ranked), "revenue_minor": revenue_minor,
            "classes": [{"class": name, "customers": len(group), "revenue_minor": revenue,
                         "share_bp": share}
                        for name, group, revenue, share in zip(CLASSES, members, class_revenue,
                                                               shares, strict=True)]}
        rank = 0
        for name, group in zip(CLASSES, members, strict=True):
            for buyer in group:
                rank += 1
                values = (currency, name, rank, buyer.customer_id, buyer.cards,
                          buyer.purchases, buyer.revenue_minor,
                          share_bp(buyer.revenue_minor, revenue_minor))
                rows.append(dict(zip(VALUE_COLUMNS, values, strict=True)))
    return Report(query, VALUE_COLUMNS, rows, summary)


def lapsing(database: Session, query: ReportQuery) -> Report:
    """Regular customers who stopped buying, biggest spenders first, contacts not read."""
    days, min_purchases = query.parameters["days"], query.parameters["min_purchases"]
    lapsed = [buyer for buyer in buyers(database, query)
              if buyer.purchases >= min_purchases and buyer.days_since >= days]
    lapsed.sort(key=lambda buyer: (buyer.currency, -buyer.revenue_minor, buyer.key))
    rows = []
    for buyer in lapsed:
        values = (buyer.currency, buyer.customer_id, buyer.cards, buyer.purchases,
                  buyer.revenue_minor, buyer.last_purchase, buyer.days_since, None,
                  *(None for _ in CONTACT_FIELDS))
        rows.append(dict(zip(LAPSING_COLUMNS, values, strict=True)))
    summary = {"customers": len(rows), "contacts": CONTACTS_NOT_READ, "contacts_shown": 0}
    return Report(query, LAPSING_COLUMNS, rows, summary)


def _month(index: int) -> str:
    """A month counted from year 0 as YYYY-MM."""
    year, month = divmod(index, MONTHS_PER_YEAR)
    return f"{year:04d}-{month + 1:02d}"


def retention(database: Session, query: ReportQuery) -> Report:
    """Per cohort (month of first purchase) and later month: customers who bought again."""
    owners = card_owners(database)
    months: dict[str, set[int]] = {}
    for card, day in bounded_fetch(
            database,
            f"""SELECT card, time / {DAY_S} FROM transactions
                WHERE kind = '{KIND_PURCHASE}' AND time < ?
                GROUP BY card, time / {DAY_S}""",
            (query.cutoff_s,)):
        when = EPOCH + timedelta(days=int(day))
        # A card of nobody's is a customer of its own ("card " cannot be a customer id).
        key = owners.get(card, f"card {card}")
        months.setdefault(key, set()).add(when.year * MONTHS_PER_YEAR + when.month - 1)
    last_month = query.as_of.year * MONTHS_PER_YEAR + query.as_of.month - 1
    first_month = last_month - query.parameters["months"] + 1
    cohorts: dict[int, list[set[int]]] = {}
    for bought in months.values():
        first = min(bought)
        if first >= first_month:
            cohorts.setdefault(first, []).append(bought)
    rows = []
    for cohort, members in sorted(cohorts.items()):
        for month in range(cohort, last_month + 1):
            active = sum(1 for bought in members if month in bought)
            values = (_month(cohort), _month(month), month - cohort, len(members), active,
                      share_bp(active, len(members)))
            rows.append(dict(zip(RETENTION_COLUMNS, values, strict=True)))
    summary = {"cohorts": len(cohorts),
               "customers": sum(len(members) for members in cohorts.values())}
    return Report(query, RETENTION_COLUMNS, rows, summary)
