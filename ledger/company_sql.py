"""SQL of companies: their rows, their cards, their spend, and the budget check of a hold.

The rules are `ledger.company_rules` (pure); this module reads what they judge and writes what
they allow, each function inside the caller's one database transaction.

Locks, in the order every path takes them (so none waits for another in a circle):

1. the card's row (`cards`): a hold locks it first (`hold_sql.place`); adding a card locks
   it too, so a hold on the card is either before the card joined (and not counted against
   the budget when placed) or after (and judged);
2. the company's row (`companies`, `Session.lock_rows`): a hold on any of its cards locks it
   before it reads the company's spend and holds, so holds on two cards of one company take
   turns and never pass the budget together (on SQLite the one writer orders them);
   changing the company or its cards locks it too, and a card replacement
   (`follow_replacement`) after it has locked both cards.

Spend is kept by day, not summed from history on every hold (transactions have no index by
card or time, see `ledger.schema`; summed, a hold of a company whose cards had 20,000
postings took 30 to 90 ms): a batch adds its purchases and refunds of company cards to
their days (`note_posted`, under the cards' locks), a card joining a company has its days of
the current month filled from its history (`_join`), and a hold reads at most 31 day rows a
card (docs/ledger.md "Company budgets", scripts/measure_company_budget.py). A card out of
every company has no days kept: they are filled again when it joins one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ledger.company_rules import (
    COMPANY_BUDGET_PERIOD_UTC_OFFSET_S,
    COMPANY_CARDS_MAX,
    COMPANY_FIELDS,
    DAY_S,
    PERIOD_MONTH,
    Budget,
    Company,
    budget_json,
    check_budget,
    day_of,
    period_spent,
    period_start,
)
from ledger.db import Session
from ledger.errors import BatchConflict, BatchInvalid, NotFound
from ledger.hold_rules import STATUS_OPEN
from ledger.model import KIND_PURCHASE, KIND_REFUND, Txn
from ledger.schema import (
    COMPANY_AUDIT_COLUMNS,
    COMPANY_CARD_COLUMNS,
    COMPANY_CARD_DAY_COLUMNS,
    COMPANY_COLUMNS,
)
from protocol.accounts import CARD_VALUE

_HOLD_TABLES = ("holds", "point_holds")
"""Both tables a hold may be a row of (ledger/hold_sql.py); each has amount_minor."""
_SPEND_KINDS = (KIND_PURCHASE, KIND_REFUND)
_OFFSET_S = int(COMPANY_BUDGET_PERIOD_UTC_OFFSET_S)  # SQL text: day_of's, for a transaction
_ADD_DAYS_SQL = (
    "INSERT INTO company_card_days (card, day, spent_minor) VALUES {rows}"
    " ON CONFLICT (card, day) DO UPDATE"
    " SET spent_minor = company_card_days.spent_minor + excluded.spent_minor")
DAYS_PER_STATEMENT_MAX = 300
"""(card, day) rows one statement adds to: 900 parameters, within SQLite's oldest limit
(999); one statement per row cost PostgreSQL a round trip each (measured: 0.19 s against
0.08 s for a batch of 1000 company cards' purchases, scripts/measure_company_budget.py)."""


def save(session: Session, company: Company, login: str, now: int) -> tuple[dict[str, Any], str]:
    """Create the company, or change its name, budget and period: its row afterwards and
    "created", "changed" or "unchanged". Its currency never changes (company_currency: the
    budget of cards already in it is in that currency)."""
    known = _locked(session, company.company)
    if known is None:
        session.bulk_insert("companies", COMPANY_COLUMNS, [(
            company.company, company.name, company.currency, company.budget_minor,
            company.period, now, login)])
        _audit(session, now, login, company.company, "created",
               f"budget {company.budget_minor} {company.currency} a {company.period}")
        return _row_json(company), "created"
    if known.currency != company.currency:
        raise BatchConflict("company_currency", (
            f"company {company.company[:64]!r} is in {known.currency}; its currency never"
            " changes"))
    changes = [f"{field} {getattr(known, field)!r} -> {getattr(company, field)!r}"
               for field in ("name", "budget_minor", "period")
               if getattr(known, field) != getattr(company, field)]
    if not changes:
        return _row_json(known), "unchanged"
    session.execute(
        "UPDATE companies SET name = ?, budget_minor = ?, period = ? WHERE company = ?",
        (company.name, company.budget_minor, company.period, company.company))
    # The name is a person's choice of words, kept in the row; the audit says it changed.
    _audit(session, now, login, company.company, "changed",
           "; ".join("name changed" if change.startswith("name ") else change
                     for change in changes))
    return _row_json(company), "changed"


def add_card(session: Session, company_id: str, card: str, login: str,
             now: int) -> tuple[dict[str, Any], bool]:
    """Put a card in the company: {"company", "card"} and whether this changed anything (a
    card already in it: no). Refused, changing nothing: card_unknown, company_unknown
    (404); currency_mismatch (a card of another currency), company_full (400);
    card_in_company (in another company, 409)."""
    cards = session.fetch(f"SELECT currency FROM cards WHERE card = ?{session.lock_rows}",
                          (card,))
    if not cards:
        raise NotFound("card_unknown", f"the ledger has no card {card[:64]!r}")
    company = _locked(session, company_id)
    if company is None:
        raise NotFound("company_unknown", f"the ledger has no company {company_id[:64]!r}")
    if cards[0][0] != company.currency:
        raise BatchInvalid("currency_mismatch", (
            f"card {card[:64]!r} is in {cards[0][0]}, company {company_id[:64]!r} in"
            f" {company.currency}"))
    member = session.fetch("SELECT company FROM company_cards WHERE card = ?", (card,))
    if member and member[0][0] == company_id:
        return {"company": company_id, "card": card}, False
    if member:
        raise BatchConflict("card_in_company", (
            f"card {card[:64]!r} is in company {member[0][0][:64]!r}; remove it there first"))
    _join(session, company_id, card, login, now, card)
    return {"company": company_id, "card": card}, True


def remove_card(session: Session, company_id: str, card: str, login: str,
                now: int) -> dict[str, Any]:
    """Take a card out of the company: from now on its holds are not judged by the budget
    and its spend no longer counts in the company's. NotFound company_unknown, or
    card_not_in_company for a card not in it."""
    if _locked(session, company_id) is None:
        raise NotFound("company_unknown", f"the ledger has no company {company_id[:64]!r}")
    removed = session.fetch(
        "DELETE FROM company_cards WHERE card = ? AND company = ? RETURNING card",
        (card, company_id))
    if not removed:
        raise NotFound("card_not_in_company",
                       f"card {card[:64]!r} is not in company {company_id[:64]!r}")
    _audit(session, now, login, company_id, "card_removed", card)
    return {"company": company_id, "card": card}


def follow_replacement(session: Session, old: str, new: str, login: str,
                       now: int) -> str | None:
    """In a card replacement's transaction (ledger/replace_sql.py), after the new card is
    registered and both cards' rows are locked: the new card joins the old card's company,
    so the card that now carries the value is held to the budget; the old card stays in it
    (blocked), so what it spent in the period still counts. The company, or None when the
    old card is in none. Raises (the replacement then changes nothing) card_in_company when
    the new card is in another company, company_full when the company is full."""
    member = session.fetch("SELECT company FROM company_cards WHERE card = ?", (old,))
    if not member:
        return None
    company_id = str(member[0][0])
    _locked(session, company_id)
    joined = session.fetch("SELECT company FROM company_cards WHERE card = ?", (new,))
    if joined and joined[0][0] == company_id:
        return company_id
    if joined:
        raise BatchConflict("card_in_company", (
            f"card {new[:64]!r} is in company {joined[0][0][:64]!r}, card {old[:64]!r} in"
            f" {company_id[:64]!r}"))
    _join(session, company_id, new, login, now, f"{new} (replacing {old})")
    return company_id


def note_posted(session: Session, txns: Sequence[Txn]) -> None:
    """In a batch's transaction, its cards locked: add the card value of its purchases, less
    that of its refunds of purchases, of cards in a company to their days
    (company_card_days). A refund of an issue or top-up takes loaded value off the card: no
    spend given back. Cards in no company cost one look-up of the batch's cards with a
    purchase or refund."""
    moving = [posted for posted in txns
              if posted.kind in _SPEND_KINDS and posted.card_value_minor]
    if not moving:
        return
    members = {row[0] for row in session.fetch_in(
        "SELECT card FROM company_cards WHERE {match}", "card",
        sorted({posted.card for posted in moving}))}
    moving = [posted for posted in moving if posted.card in members]
    originals = sorted({posted.ref_txn_id for posted in moving
                        if posted.kind == KIND_REFUND and posted.ref_txn_id is not None})
    # Written by now (write_plan), an original in this same batch too.
    purchases = {txn_id for txn_id, kind in session.fetch_in(
        "SELECT txn_id, kind FROM transactions WHERE {match}", "txn_id", originals)
        if kind == KIND_PURCHASE} if originals else set()
    spent: dict[tuple[str, int], int] = {}
    for posted in moving:
        if posted.kind == KIND_REFUND and posted.ref_txn_id not in purchases:
            continue
        key = (posted.card, day_of(posted.time))
        sign = 1 if posted.kind == KIND_PURCHASE else -1
        spent[key] = spent.get(key, 0) + sign * posted.card_value_minor
    # One (card, day) once in the rows: PostgreSQL refuses a statement changing a row twice.
    rows = [(card, day, minor) for (card, day), minor in sorted(spent.items()) if minor]
    for start in range(0, len(rows), DAYS_PER_STATEMENT_MAX):
        chunk = rows[start:start + DAYS_PER_STATEMENT_MAX]
        session.execute(_ADD_DAYS_SQL.format(rows=", ".join(["(?, ?, ?)"] * len(chunk))),
                        [value for row in chunk for value in row])


def _join(session: Session, company_id: str, card: str, login: str, now: int,
          detail: str) -> None:
    """Put `card` (its row locked) in the company (its row locked): company_full past
    COMPANY_CARDS_MAX; its days (company_card_days) filled again from its history since the
    current month began, which is all a period of now can ask (a card in a company before,
    or in none, may have rows no batch kept up)."""
    count = int(session.fetch("SELECT COUNT(*) FROM company_cards WHERE company = ?",
                              (company_id,))[0][0])
    if count >= COMPANY_CARDS_MAX:
        raise BatchInvalid("company_full", f"a company holds at most {COMPANY_CARDS_MAX} cards")
    session.bulk_insert("company_cards", COMPANY_CARD_COLUMNS, [(card, company_id, now, login)])
    session.execute("DELETE FROM company_card_days WHERE card = ?", (card,))
    days = session.fetch(
        f"SELECT (t.time + {_OFFSET_S}) / {DAY_S}, CAST(SUM(CASE WHEN t.kind = ?"
        " THEN t.card_value_minor ELSE -t.card_value_minor END) AS BIGINT) FROM transactions t"
        " WHERE t.txn_id IN (SELECT e.txn_id FROM entries e WHERE e.owner = ?"
        " AND e.account_kind = ?) AND t.card = ? AND t.time >= ? AND (t.kind = ?"
        " OR t.kind = ? AND EXISTS (SELECT 1 FROM transactions o"
        " WHERE o.txn_id = t.ref_txn_id AND o.kind = ?))"
        f" GROUP BY (t.time + {_OFFSET_S}) / {DAY_S}",
        (KIND_PURCHASE, card, CARD_VALUE, card, period_start(PERIOD_MONTH, now),
         KIND_PURCHASE, KIND_REFUND, KIND_PURCHASE))
    session.bulk_insert("company_card_days", COMPANY_CARD_DAY_COLUMNS,
                        [(card, int(day), int(minor)) for day, minor in days if minor])
    _audit(session, now, login, company_id, "card_added", detail)


def judge_hold(session: Session, card: str, amount_minor: int, now: int) -> None:
    """For a hold of `amount_minor` on `card`, under the card's lock: if the card is in a
    company, lock the company's row and refuse (company_budget) what would pass its budget.
    A hold of points only (0) is not judged, and locks nothing more."""
    if amount_minor <= 0:
        return
    member = session.fetch("SELECT company FROM company_cards WHERE card = ?", (card,))
    if not member:
        return
    company = _locked(session, member[0][0])
    assert company is not None, "company_cards references companies"
    since = period_start(company.period, now)
    check_budget(company.company, _budget(session, company, since, now), amount_minor)


def detail(session: Session, company_id: str, now: int) -> dict[str, Any] | None:
    """GET /v1/companies/<id>: the company, its period's spend, holds and what is left, and
    each card's spend and holds; None for a company the ledger does not have. Its several
    statements agree only in one snapshot: `Books.company` reads in one (a read-only
    REPEATABLE READ transaction on PostgreSQL)."""
    rows = session.fetch(f"SELECT {', '.join(COMPANY_FIELDS)} FROM companies WHERE company = ?",
                         (company_id,))
    if not rows:
        return None
    company = Company(*rows[0])
    since = period_start(company.period, now)
    spent, held = _spent_by_card(session, company_id, since), _held_by_card(session, company_id,
                                                                            now)
    members = [row[0] for row in session.fetch(
        "SELECT card FROM company_cards WHERE company = ? ORDER BY card", (company_id,))]
    cards = [{"card": card, "spent_minor": spent.get(card, 0), "held_minor": held.get(card, 0)}
             for card in members]
    budget = Budget(company.budget_minor, period_spent(sum(spent.values())),
                    sum(held.values()))
    return budget_json(company, since, budget, cards)


_SPENT_SQL = (
    "SELECT {group}CAST(COALESCE(SUM(d.spent_minor), 0) AS BIGINT) FROM company_cards c"
    " JOIN company_card_days d ON d.card = c.card WHERE c.company = ? AND d.day >= ?"
    "{group_by}")
"""What the company's cards spent from a day on (company_rules: "spent"), from the days
batches keep (company_card_days): at most 31 rows a card for a period."""
_HELD_SQL = (
    "SELECT {group}CAST(COALESCE(SUM(h.amount_minor), 0) AS BIGINT) FROM company_cards c"
    " JOIN {table} h ON h.card = c.card WHERE c.company = ? AND h.status = ?"
    " AND h.expires_at > ?{group_by}")
"""The value the company's cards' open, unexpired holds of one holds table hold."""


def _spent_parameters(company_id: str, since: int) -> tuple[Any, ...]:
    return (company_id, day_of(since))


def _budget(session: Session, company: Company, since: int, now: int) -> Budget:
    """Spent and held in ONE statement, so in one snapshot: on PostgreSQL (READ COMMITTED)
    two statements could fall either side of a batch posting a hold of another card of the
    company (a card this hold has not locked), and see its amount neither held (the hold
    posted) nor spent (the sale not yet there): the budget passed by that amount."""
    whole = {"group": "", "group_by": ""}
    held = [f"({_HELD_SQL.format(table=table, **whole)})" for table in _HOLD_TABLES]
    spent, *held_minor = session.fetch(
        f"SELECT ({_SPENT_SQL.format(**whole)}), {', '.join(held)}",
        (*_spent_parameters(company.company, since),
         *((company.company, STATUS_OPEN, now) * len(_HOLD_TABLES))))[0]
    return Budget(company.budget_minor, period_spent(int(spent)),
                  sum(int(minor) for minor in held_minor))


def _spent_by_card(session: Session, company_id: str, since: int) -> dict[str, int]:
    """Per card of the company: what it spent from `since` on (company_rules: "spent")."""
    rows = session.fetch(_SPENT_SQL.format(group="c.card, ", group_by=" GROUP BY c.card"),
                         _spent_parameters(company_id, since))
    return {card: int(total) for card, total in rows}


def _held_by_card(session: Session, company_id: str, now: int) -> dict[str, int]:
    """Per card of the company: the value its open, unexpired holds hold (both tables)."""
    held: dict[str, int] = {}
    for table in _HOLD_TABLES:
        rows = session.fetch(
            _HELD_SQL.format(table=table, group="h.card, ", group_by=" GROUP BY h.card"),
            (company_id, STATUS_OPEN, now))
        for card, minor in rows:
            held[card] = held.get(card, 0) + int(minor)
    return held


def _locked(session: Session, company_id: str) -> Company | None:
    """The company's row, locked until the transaction ends; None if there is none."""
    rows = session.fetch(
        f"SELECT {', '.join(COMPANY_FIELDS)} FROM companies WHERE company = ?"
        f"{session.lock_rows}", (company_id,))
    return Company(*rows[0]) if rows else None


def _row_json(company: Company) -> dict[str, Any]:
    return {field: getattr(company, field) for field in COMPANY_FIELDS}


def _audit(session: Session, now: int, login: str, company: str, action: str,
           detail: str) -> None:
    session.bulk_insert("company_audit", COMPANY_AUDIT_COLUMNS,
                        [(now, login, company, action, detail)])
