"""The books: post settlement batches exactly once, hold card value and points, and answer
questions.

`Books` is a thin facade over layers that live elsewhere: validation (`ledger.validate`),
pure rules (`ledger.plan`, `ledger.posting_rules`, `ledger.hold_rules`), SQL
(`ledger.posting_sql`, `ledger.hold_sql`, `ledger.queries`, `ledger.reports`, the tables in
`ledger.schema`) and the database engines (`ledger.db`). Here are only the guarantees that
tie them together:

- the object is thread-safe, and takes no lock of its own: each request is one transaction
  of the database (`ledger.db`). On PostgreSQL requests run side by side and lock only the
  card rows they change (a batch its cards in card order, a hold its card), and the
  database's unique keys decide between two requests for the same batch, txn or hold id
  (the later one, run again, is answered as if it had come after the first); on SQLite one
  connection and its one writer take them in turn;
- a batch is judged transaction by transaction and written in ONE database transaction:
  every valid transaction posts, each invalid one is refused on its own, kept in
  `refused_txns` with its reason (the ledger's quarantine) and alarmed, and the answer lists
  it; a fault of the batch's envelope (`ledger.validate`) refuses it whole, changing nothing;
- a batch_id seen before with the same content is a success (``duplicate``) that repeats the
  refusals of the first answer, with other content a ``batch_conflict``; a reused txn_id is
  skipped, or refused ``txn_conflict``; conflicts are recorded as alarm rows and logged;
- a hold is placed holding its card's lock, the lock a batch posting that card holds too,
  so the value and the points a card has available are never promised twice;
- the clock (Unix seconds, injectable for tests) judges hold expiry and the default
  report date;
- given the chain's programs, each card's program-engine state is kept beside its entries,
  changed in the transaction of every batch that posts the card, under the card's lock
  (`ledger.engine_sql`); it never stops a batch from posting (the books decide value and
  points: a state that parts from them is dropped and alarmed);
- driver errors surface as `LedgerUnavailable` (the caller may retry the same request).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any, TypeVar

from ledger import (
    adopt_sql,
    block_sql,
    company_sql,
    engine_sql,
    exposure_sql,
    feed_sql,
    hold_sql,
    offers,
    posting_sql,
    queries,
    replace_sql,
    reports,
    reward_stock_sql,
    sun_sql,
)
from ledger.card_engine import hold_snapshot, hold_terms
from ledger.company_rules import parse_company
from ledger.db import POSTGRES_SCHEMES, Database, Session, open_database
from ledger.errors import BatchConflict, BatchInvalid, HoldRefused, LedgerUnavailable
from ledger.hold_rules import EngineTerms, HoldAnswer
from ledger.model import (
    STATUS_DUPLICATE,
    STATUS_PARTIAL,
    STATUS_POSTED,
    Batch,
    PostResult,
)
from ledger.plan import plan_batch
from ledger.reports import Report
from ledger.reward_stock import parse_change
from ledger.schema import create_schema
from ledger.validate import parse_batch, parse_hold_request, parse_txn

log = logging.getLogger(__name__)
Result = TypeVar("Result")


REGISTRATION_TERMINAL = "DESK"


class Books:
    """Double-entry books on one database; use `open_books` to get one."""

    def __init__(self, database: Database, clock: Callable[[], float] = time.time,
                 programs: engine_sql.Programs | None = None,
                 report_database: Database | None = None) -> None:
        self._database = database
        self._clock = clock
        self._programs = programs  # None: no engine state kept (ledger/engine_sql.py)
        # Named reports read here: a read replica of the books (PostgreSQL streaming
        # replication), so reports take no time from the primary's holds and batches.
        self._report_database = report_database
        with self._guard():
            create_schema(database)

    @property
    def dialect(self) -> str:
        """The database engine: "sqlite" or "postgresql"."""
        return self._database.dialect

    def post_batch(self, document: object) -> PostResult:
        """Post a decoded settlement batch exactly once: every valid transaction, in one
        database transaction, the refused ones listed in the result (status "partial")."""
        try:
            batch = parse_batch(document)
        except BatchConflict as conflict:  # a txn_id twice in the batch, with other content
            with self._guard():
                self._raise_alarm(conflict.reason, conflict.detail)
            raise
        with self._guard():
            try:
                result, late, overdrawn, replaced_used, dropped = self._database.transact(
                    lambda session: self._post(session, batch))
            except BatchConflict as conflict:
                self._raise_alarm(conflict.reason, f"batch {batch.batch_id}: {conflict.detail}")
                raise
        # Logged once it is committed: a transaction run again must not log twice.
        if late:
            log.warning("batch %s posted %d expired holds", batch.batch_id, late)
        for card, value_minor in overdrawn:
            log.warning("AUDIT card %s blocked by the ledger: overdrawn to %d by batch %s",
                        card[:64], value_minor, batch.batch_id[:64],
                        extra={"event": "card_blocked_overdrawn", "card": card[:64],
                               "batch": batch.batch_id[:64], "gateway": batch.gateway_id})
        for card, txn_id in replaced_used:
            log.warning("ledger alarm: card %s was replaced, yet batch %s posted %s on it"
                        " (sold offline or standing in: exposure)", card[:64],
                        batch.batch_id[:64], txn_id[:64],
                        extra={"event": "alarm", "reason": replace_sql.LATE_USE_REASON,
                               "card": card[:64], "batch": batch.batch_id[:64],
                               "gateway": batch.gateway_id})
        for card, reason in dropped:
            log.warning("ledger alarm: card %s engine state dropped (%s) by batch %s",
                        card[:64], reason, batch.batch_id[:64],
                        extra={"event": "alarm", "reason": engine_sql.ENGINE_DROPPED_ALARM,
                               "card": card[:64], "batch": batch.batch_id[:64],
                               "gateway": batch.gateway_id})
        if result.status == STATUS_PARTIAL:
            log.warning("ledger alarm: batch %s refused %d of %d transactions: %s",
                        batch.batch_id, len(result.refused), len(batch.transactions),
                        ", ".join(f"{r.txn_id} {r.reason}" for r in result.refused[:10]),
                        extra={"event": "alarm", "reason": "transactions_refused",
                               "batch": batch.batch_id[:64], "gateway": batch.gateway_id,
                               "refused": len(result.refused)})
        return result

    def _post(self, session: Session, batch: Batch) -> tuple[
            PostResult, int, list[tuple[str, int]], list[tuple[str, str]],
            list[tuple[str, str]]]:
        """Inside the batch's transaction: duplicate check, plan, write, block the cards it
        overdrew (ledger/exposure_sql.py), alarm its transactions on replaced cards
        (ledger/replace_sql.py), bring its cards' engine states along (ledger/engine_sql.py);
        the result, how many expired holds it posted, the cards blocked, the (card, txn_id)
        on replaced cards and the (card, reason) of engine states dropped. Reads only through
        `session` (it may run again)."""
        known_hash = posting_sql.find_batch_hash(session, batch.batch_id)
        if known_hash == batch.content_hash:
            refused = posting_sql.find_refusals(session, batch.batch_id)
            in_books = len(batch.transactions) - len(refused)
            return (PostResult(STATUS_DUPLICATE, batch.batch_id, 0, in_books, refused), 0, [],
                    [], [])
        if known_hash is not None:
            raise BatchConflict(
                "batch_conflict",
                f"batch_id was posted before with different content (resent by {batch.gateway_id})",
            )
        now = self._now()
        view = posting_sql.read_view(session, batch, now)
        replace_sql.follow_replacements(session, view)  # a new card refunds the old's sales
        plan = plan_batch(batch, view)
        posting_sql.write_plan(session, batch, plan, now)
        overdrawn = exposure_sql.block_overdrawn(session, batch.batch_id, list(plan.txns), now)
        replaced_used = replace_sql.alarm_late_uses(session, batch.batch_id, plan.txns, now)
        company_sql.note_posted(session, plan.txns)  # the spend of company cards, by day
        reward_stock_sql.note_posted(session, plan.txns)  # reward items off their shelves
        dropped = [] if self._programs is None else engine_sql.apply_posted(
            session, self._programs, batch.batch_id, batch.gateway_id, plan.txns, now)
        late = sum(posting.late for posting in plan.hold_postings)
        status = STATUS_PARTIAL if plan.refused else STATUS_POSTED
        result = PostResult(status, batch.batch_id, len(plan.txns), plan.already_posted,
                            tuple(plan.refused))
        return result, late, overdrawn, replaced_used, dropped

    def place_hold(self, document: object) -> HoldAnswer:
        """Hold card value and/or points for an authorization (a decoded POST /v1/holds body),
        idempotently.

        A replay (same hold_id, same content) answers again with ``created`` False; other
        content is ``hold_conflict`` (alarmed); ``insufficient_value`` when the card's
        available value is below the amount, ``insufficient_points`` when its available
        points are below the points; ``card_unknown`` for a card never settled;
        ``card_replayed`` (alarmed: a clone or a replayed read) when its SUN read counter is
        not above the highest accepted for the card. Where the ledger keeps the card's engine
        state, the hold must fit it too (hold_rules.check_engine): ``card_expired`` for value
        that has expired, ``insufficient_points`` for points past their expiry not yet
        posted as lapsed. The answer carries the card's kept
        engine state as of now (`engine`: version, tier, discount; `card_engine.hold_snapshot`),
        read under the card's lock with the funds, when the ledger keeps one.
        """
        request = parse_hold_request(document)

        def attempt(session: Session) -> tuple[HoldAnswer, engine_sql.StoredEngine | None]:
            """The hold and the card's kept state, read once under the card's lock: for
            the hold's terms, and for its answer. Without programs none is kept."""
            read: list[engine_sql.StoredEngine | None] = []

            def engine_terms(locked: Session) -> EngineTerms | None:
                read.append(engine_sql.read(locked, [request.card]).get(request.card))
                return hold_terms(read[0], self._programs, self._now())

            if self._programs is None:
                return hold_sql.place(session, request, self._now()), None
            answer = hold_sql.place(session, request, self._now(), engine_terms)
            if not read:  # a replay: answered before the terms were asked
                read.append(engine_sql.read(session, [request.card]).get(request.card))
            return answer, read[0]

        with self._guard():
            try:
                answer, kept = self._database.transact(attempt)
            except HoldRefused as refusal:
                if refusal.reason in ("hold_conflict", "card_replayed"):
                    self._raise_alarm(refusal.reason, refusal.detail)
                raise
        snapshot = hold_snapshot(kept, self._programs, self._now())
        return answer if snapshot is None else replace(answer, engine=snapshot)

    def void_hold(self, hold_id: str) -> HoldAnswer:
        """Release a hold's value and points: ``hold_unknown``, or ``hold_posted`` once settled."""
        with self._guard():
            return self._database.transact(
                lambda session: hold_sql.void(session, hold_id, self._now()))

    def hold(self, hold_id: str) -> dict[str, Any] | None:
        """One hold's state (expiry applied), or None for an id the ledger never held."""
        with self._guard(), self._database.read() as session:
            return hold_sql.detail(session, hold_id, self._now())

    def hold_totals(self) -> dict[str, int]:
        """Holds per status (expiry applied), and "posted_late": posted after expiring."""
        with self._guard(), self._database.read() as session:
            return hold_sql.totals(session, self._now())

    def expire_holds(self) -> int:
        """Mark open holds past their expiry as expired; how many (the server's sweep)."""
        with self._guard():
            return self._database.transact(
                lambda session: hold_sql.expire_due(session, self._now()))

    def report(self, name: str, parameters: Mapping[str, str] | None = None) -> Report:
        """A named report; text parameters as in GET /v1/reports/<name> (see reports)."""
        today = datetime.fromtimestamp(self._clock(), UTC).date()
        query = reports.parse_report_query(name, parameters or {}, today)
        if self._report_database is None:
            with self._guard(), self._database.read() as session:
                return reports.run_report(session, query)
        with self._guard(), self._report_database.read() as session:
            report = reports.run_report(session, query)
            # How far behind the primary the replica's snapshot is, read in the same
            # transaction: the time since the last commit it had replayed was made.
            lag = session.fetch(
                "SELECT EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp())")[0][0]
        return replace(report, replica_lag_s=None if lag is None else round(float(lag), 3))

    def reports_from(self) -> str:
        """Where named reports are read: "primary", or "replica" (`open_books` report_dsn).
        Configuration only: a health check must not wait on the replica."""
        return "primary" if self._report_database is None else "replica"

    def _now(self) -> int:
        """The clock in whole Unix seconds."""
        return int(self._clock())

    def now_s(self) -> int:
        """The books' clock in whole Unix seconds: what judges hold expiry, and the day up to
        which a card's engine state is worked out (ledger/card_engine.py)."""
        return self._now()

    def _raise_alarm(self, reason: str, detail: str) -> None:
        """Log an alarm and record it in its own transaction (the batch's was rolled back)."""
        log.warning("ledger alarm %s: %s", reason, detail,
                    extra={"event": "alarm", "reason": reason})
        at = self._now()
        self._database.transact(
            lambda session: posting_sql.insert_alarm(session, at, reason, detail))

    def register_card(self, card: str, program: str, currency: str, merchant: str,
                      value_minor: int) -> PostResult:
        """Register and activate a personalized card with its program and opening value.

        Posted as a one-transaction `issue` batch from the technician's desk (terminal
        "DESK"), so it has the same legs, checks and exactly-once rules as a card sold at a
        counter: the same registration again is a duplicate, a different one a conflict.
        Unlike a gateway's batch, a registration the ledger would refuse raises (BatchInvalid)
        and records nothing: the technician corrects it and tries again at once.
        """
        transaction = {
            "txn_id": f"REG-{card}", "terminal": REGISTRATION_TERMINAL, "seq": 0,
            "merchant": merchant, "time": int(self._now()), "kind": "issue", "card": card,
            "currency": currency, "amount_minor": value_minor, "card_value_minor": value_minor,
            "bonus_minor": 0, "points": 0, "ref_txn_id": None, "program": program,
            "auth": "online",
        }
        content = json.dumps({k: v for k, v in transaction.items() if k != "time"},
                             sort_keys=True).encode()
        transaction["digest"] = hashlib.sha256(content).hexdigest()
        batch_id = f"register-{card}"
        parse_txn(transaction)  # a bad value or currency raises here, before anything is kept
        existing = self.card_balance(card)
        if existing is not None:
            # Registered before (a personalization run repeated): the same program is a
            # no-op, another one is refused; the opening value is never posted twice.
            if existing["program"] != program or existing["currency"] != currency:
                raise BatchConflict("card_exists", f"card {card} is registered otherwise")
            return PostResult(STATUS_DUPLICATE, batch_id, 0, 1)
        batch = {"batch_id": batch_id, "gateway_id": REGISTRATION_TERMINAL,
                 "created": int(self._now()), "transactions": [transaction]}
        try:
            result = self.post_batch(batch)
        except BatchConflict as conflict:
            # Only a race gets here: the same card registered at the same time by another
            # request, in another second (so its batch differs by its time). Answered as the
            # look-up above would have answered had it come second.
            if conflict.reason != "batch_conflict":
                raise
            winner = self.card_balance(card)
            if winner is None or winner["program"] != program or winner["currency"] != currency:
                raise BatchConflict("card_exists", f"card {card} is registered otherwise") from None
            return PostResult(STATUS_DUPLICATE, batch_id, 0, 1)
        if result.refused:
            # Only a race gets here: the card was settled by a gateway since it was looked
            # up (card_already_issued). The refusal stays on record, like any other.
            raise BatchInvalid(result.refused[0].reason, result.refused[0].detail)
        return result

    def card_balance(self, card: str) -> dict[str, Any] | None:
        """{"card","currency","value_minor","points","program","held_minor","available_minor",
        "held_points","available_points"} or None for an unknown card."""
        with self._guard(), self._database.read() as session:
            return queries.card_balance(session, card, self._now())

    def card_detail(self, card: str) -> dict[str, Any] | None:
        """`card_balance` with its block ("blocked", "block"), where it was last used
        ("last_stores") and which of its changes in the card feed those balances include
        ("feed", ledger/feed_sql.py) and the highest SUN read counter accepted for it
        ("sun_counter", ledger/sun_sql.py) and its transactions for a gateway to replay
        ("transactions", ledger/adopt_sql.py) and its kept engine state ("engine_state", an
        `engine_sql.StoredEngine` or None: not JSON, ledger/card_engine.py reads it), read
        at one moment; None for an unknown card."""
        with self._guard(), self._database.read() as session:
            balance = queries.card_balance(session, card, self._now())
            if balance is None:
                return None
            return (balance | block_sql.state(block_sql.latest(session, card))
                    | {"last_stores": block_sql.last_stores(session, card),
                       "feed": feed_sql.card_position(session, card),
                       "transactions": adopt_sql.card_transactions(session, card),
                       "sun_counter": sun_sql.highest(session, card),
                       "engine_state": engine_sql.read(session, [card]).get(card)})

    def block_card(self, card: str, blocked: bool, reason: str, login: str) -> dict[str, Any]:
        """Block (or unblock) a card for every store: {"card", "blocked", "block", "changed"}.

        Holds on a blocked card are refused ``card_blocked``; the change is logged as an
        AUDIT line and kept in card_blocks with its reason, time and login; NotFound
        card_unknown for a card the ledger never saw. Blocking a blocked card changes nothing.
        """
        with self._guard():
            current, changed = self._database.transact(
                lambda session: block_sql.change(session, card, blocked, reason, login,
                                                 self._now()))
        if changed:
            log.info("AUDIT card %s %s by %s: %s", card[:64],
                     "blocked" if blocked else "unblocked", login, reason)
        return {"card": card, **current, "changed": changed}

    def replace_card(self, old: str, new: str, login: str, reason: str) -> dict[str, Any]:
        """Replace a lost or damaged card: block `old`, move its value and points to `new`
        in one balanced `transfer`, keep the replacement for audit, move its customer link
        (ledger/replace_sql.py), all in one database transaction; logged as an AUDIT line.

        Refused, changing nothing: NotFound card_unknown (old); card_replaced (old replaced
        before), card_blocked (old blocked for an overdraft), card_overdrawn, card_held
        (open holds on old), card_has_history (new has value or transactions),
        card_program_mismatch (new registered in another program or currency), card_same.
        """
        with self._guard():
            now = self._now()
            done = self._database.transact(
                lambda session: replace_sql.replace(session, old, new, login, reason, now,
                                                    self._programs))
        log.info("AUDIT card %s replaced by %s by %s: %s (value %d, points %d)", old[:64],
                 new[:64], login, reason, done["value_minor"], done["points"],
                 extra={"event": "card_replaced", "card": old[:64], "new_card": new[:64]})
        return done

    def issue_offer(self, program: str, offer: str, issue: str, uses: int, last_day: int,
                    login: str, cards: list[str] | None = None,
                    customers: list[str] | None = None,
                    segment: dict[str, Any] | None = None) -> dict[str, Any]:
        """Grant a program's targeted offer to cards, customers or a segment, as card
        operations with no money (ledger/offers.py, ledger/card_ops_sql.py), in one
        database transaction; logged as an AUDIT line."""
        with self._guard():
            now = self._now()
            done = self._database.transact(lambda session: offers.issue(
                session, self._programs, program, offer, issue, uses, last_day, now, cards,
                customers, segment))
        log.info("AUDIT offer %s of %s issued as %s by %s: %d cards granted, %d already,"
                 " %d declined", offer[:64], program[:64], issue[:64], login,
                 len(done["posted"]), len(done["already"]), len(done["declined"]),
                 extra={"event": "offer_issued", "offer": offer[:64], "issue": issue[:64]})
        return done

    def offer_report(self, program: str, offer: str) -> dict[str, Any]:
        """A targeted offer's response (ledger/offers.py `report`)."""
        return self.read(lambda session, now: offers.report(session, self._programs, program,
                                                            offer))

    def rank_cards(self, program: str, period: int | None, login: str) -> dict[str, Any]:
        """Rank a program's cards for an ended period and post each card's level
        (ledger/offers.py `rank_program`), in one database transaction; an AUDIT line."""
        with self._guard():
            now = self._now()
            done = self._database.transact(lambda session: offers.rank_program(
                session, self._programs, program, period, now))
        log.info("AUDIT program %s ranked for period %d by %s: %d cards, %d levels posted",
                 program[:64], done["period"], login, done["ranked"], len(done["posted"]),
                 extra={"event": "cards_ranked", "program": program[:64]})
        return done

    def save_company(self, document: object, login: str) -> dict[str, Any]:
        """Create a company or change its name, budget or period (a decoded POST
        /v1/companies body, `company_rules.parse_company`): its row and "outcome" (created,
        changed, unchanged). Refused, changing nothing: company_invalid, company_currency
        (its currency never changes). Logged as an AUDIT line, kept in company_audit."""
        company = parse_company(document)
        with self._guard():
            now = self._now()
            row, outcome = self._database.transact(
                lambda session: company_sql.save(session, company, login, now))
        if outcome != "unchanged":
            log.info("AUDIT company %s %s by %s: budget %d %s a %s", company.company[:64],
                     outcome, login, company.budget_minor, company.currency, company.period,
                     extra={"event": "company_" + outcome, "company": company.company[:64]})
        return row | {"outcome": outcome}

    def add_company_card(self, company: str, card: str, login: str) -> dict[str, Any]:
        """Put a card in a company (`company_sql.add_card`): {"company", "card", "changed"}."""
        with self._guard():
            now = self._now()
            done, changed = self._database.transact(
                lambda session: company_sql.add_card(session, company, card, login, now))
        if changed:
            log.info("AUDIT company %s card %s added by %s", company[:64], card[:64], login,
                     extra={"event": "company_card_added", "company": company[:64]})
        return done | {"changed": changed}

    def remove_company_card(self, company: str, card: str, login: str) -> dict[str, Any]:
        """Take a card out of its company (`company_sql.remove_card`): {"company", "card"}."""
        with self._guard():
            now = self._now()
            done = self._database.transact(
                lambda session: company_sql.remove_card(session, company, card, login, now))
        log.info("AUDIT company %s card %s removed by %s", company[:64], card[:64], login,
                 extra={"event": "company_card_removed", "company": company[:64]})
        return done

    def company(self, company: str) -> dict[str, Any] | None:
        """A company's budget in its current period, as of the books' clock
        (`company_sql.detail`), or None for a company the ledger does not have."""
        with self._guard(), self._database.read() as session:
            return company_sql.detail(session, company, self._now())

    def change_reward_stock(self, document: object, login: str) -> dict[str, Any]:
        """Set, add to or stop counting a reward item's stock at a merchant (a decoded POST
        /v1/rewards/stock body, `reward_stock.parse_change`; its item checked against the
        programs the ledger runs, if any): the count afterwards, before, held and available.
        Logged as an AUDIT line, kept in reward_stock_audit."""
        change = parse_change(document, self._programs)
        with self._guard():
            now = self._now()
            done = self._database.transact(
                lambda session: reward_stock_sql.change(session, change, login, now))
        log.info("AUDIT reward stock %s/%s at %s %s %s by %s: %s", change.program[:64],
                 change.item[:64], change.merchant[:64], change.action, change.quantity, login,
                 done["quantity"], extra={"event": "reward_stock_" + change.action,
                                          "program": change.program[:64]})
        return done

    def reward_stock(self, program: str | None) -> dict[str, Any]:
        """The counted reward items (of one program, or all) with held and available, as of
        the books' clock (`reward_stock_sql.listing`)."""
        with self._guard(), self._database.read() as session:
            return reward_stock_sql.listing(session, program, self._now())

    def card_changes(self, cursor: tuple[int, int] | None,
                     served_by: str | None = None) -> dict[str, Any]:
        """Posted transactions after `cursor` (xid, id), the gateways' card feed (GET
        /v1/changes): {"changes": [...], "next": "XID.ID"} (ledger/feed_sql.py); None:
        no changes, and the cursor at the end. `served_by`: only the changes other
        gateways posted of the cards that gateway serves."""
        with self._guard(), self._database.read() as session:
            if cursor is None:
                return feed_sql.end(session)
            return feed_sql.after(session, *cursor, served_by=served_by)

    def serve(self, gateway_id: str, cards: list[str]) -> None:
        """Note that `gateway_id` serves `cards`, committed: its filtered feed carries
        every change of them posted from now on (ledger/feed_sql.py)."""
        with self._guard():
            self._database.transact(lambda session: feed_sql.serve(session, gateway_id, cards))

    def block_changes(self, cursor: int) -> dict[str, Any]:
        """Block changes after `cursor` (GET /v1/blocks): {"blocks": [...], "next": cursor}."""
        with self._guard(), self._database.read() as session:
            return block_sql.since(session, cursor)

    def balances(self) -> list[dict[str, Any]]:
        """Every card's balance, ordered by card id."""
        with self._guard(), self._database.read() as session:
            return queries.balances(session, self._now())

    def terminal_totals(self) -> dict[str, dict[str, Any]]:
        """Per terminal: {"count": n, "by_kind": {kind: {count and sums}}} (see reports)."""
        with self._guard(), self._database.read() as session:
            return queries.terminal_totals(session)

    def trial_balance(self) -> dict[str, int]:
        """{unit: sum of entries}; every value is zero in healthy books."""
        with self._guard(), self._database.read() as session:
            return queries.trial_balance(session)

    def refused_transactions(self, batch_id: str | None = None) -> list[dict[str, Any]]:
        """The ledger's quarantine: every transaction a batch refused (or one batch's), oldest
        first, as `ledger.queries.REFUSED_FIELDS`; report_too_large beyond REPORT_ROWS_MAX."""
        with self._guard(), self._database.read() as session:
            return queries.refused_transactions(session, batch_id)

    def alarms(self) -> list[dict[str, Any]]:
        """Recorded alarms, oldest first: {"id","at","reason","detail"}."""
        with self._guard(), self._database.read() as session:
            return queries.alarms(session)

    def counts(self) -> dict[str, int]:
        """Rows per table, for operators and for tests proving that a rejection changed nothing."""
        with self._guard(), self._database.read() as session:
            return queries.counts(session)

    def read(self, work: Callable[[Session, int], Result]) -> Result:
        """`work(session, now)` on the books at one moment: the reads of a layer outside
        this facade (the back office's, ledger/office_sql.py)."""
        with self._guard(), self._database.read() as session:
            return work(session, self._now())

    def transact(self, work: Callable[[Session, int], Result]) -> Result:
        """`work(session, now)` in one database transaction (it may run again: only read
        and write through `session`)."""
        with self._guard():
            now = self._now()
            return self._database.transact(lambda session: work(session, now))

    def ping(self) -> None:
        """Raise LedgerUnavailable unless the database answers a trivial query."""
        with self._guard():
            self._database.fetch("SELECT 1")

    def close(self) -> None:
        """Close the connections; the books are unusable afterwards."""
        try:
            self._database.close()
        finally:
            if self._report_database is not None:
                self._report_database.close()

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """Turn driver errors into LedgerUnavailable."""
        try:
            yield
        except self._database.errors as error:
            log.error("ledger database error: %s", error)
            raise LedgerUnavailable(f"{type(error).__name__}: {error}") from error


def open_books(dsn: str, clock: Callable[[], float] = time.time,
               programs: engine_sql.Programs | None = None,
               report_dsn: str | None = None) -> Books:
    """Open (and create if needed) the books a DSN names; see `ledger.db.open_database`.
    `programs`: the chain's validated programs, to keep each card's engine state.
    `report_dsn`: a read replica of the same books (a PostgreSQL hot standby) that named
    reports are read from; nothing is written there. ValueError for one that is not
    PostgreSQL (SQLite has no replica)."""
    if report_dsn is not None and not report_dsn.startswith(POSTGRES_SCHEMES):
        raise ValueError("a report replica is a PostgreSQL standby: postgresql://...")
    database = open_database(dsn)
    report_database = None
    try:
        if report_dsn is not None:
            report_database = open_database(report_dsn)
        return Books(database, clock, programs, report_database)
    except BaseException:
        database.close()
        if report_database is not None:
            report_database.close()
        raise
