"""The writer stage: sequence verified records, apply business rules, commit, then ack.

Records are committed in batches (up to COMMIT_BATCH_MAX records, or whatever arrived within
COMMIT_WAIT_MS), never one transaction per message. Acknowledgements for a batch are handed
to the ack stage only after its commit returned: an ack is a promise that the record is
durable here.

A record this gateway approved that cannot apply yet because the record it depends on (the
sale a refund names, the top-up whose points a redemption spends) has not arrived from its
own terminal is parked, stored and acked, and tried again after each later record of its
card is applied (gateway/parked.py); one that waited PARKED_WAIT_S is refused with its
reason. While records are parked the stage wakes every PARKED_SWEEP_INTERVAL_S to refuse
the overdue ones even when no record comes.

A commit that fails (StoreUnavailable: the write lock held past BUSY_TIMEOUT_MS, a full disk)
is not caught here: the thread dies and the process ends (exit 70, gateway/stage.py). By
then the sequencer, the card book and the parked set have moved past what the store holds,
and only the store is trusted; a restart re-reads it, and the terminals resend what was not
acked. Until then the authorization stage approves nothing (gateway/store_health.py).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from gateway import authorizations
from gateway.acks import AckOut
from gateway.card_directory import CardDirectory
from gateway.cards import CardBook
from gateway.parked import PARKABLE_REASONS, ParkedRecord, ParkedRecords, parkable
from gateway.sequencer import DUPLICATE, GAP, IN_ORDER, REPLAYED, Decision, Sequencer
from gateway.stage import EMPTY, OnDeath, Stage, exit_process, take_now
from gateway.stats import Stats
from gateway.store import (
    STATUS_ACCEPTED,
    STATUS_PARKED,
    STATUS_REJECTED,
    GatewayStore,
    StoredRecord,
)
from gateway.verify import Verified
from protocol import txn
from protocol.errors import ProtocolError
from protocol.reasons import SEQ_GAP, SEQ_REPLAYED

COMMIT_BATCH_MAX = 500
COMMIT_WAIT_MS = 5
GATHER_S = 0.001
PARKED_SWEEP_INTERVAL_S = 5.0

log = logging.getLogger(__name__)


class _Batch:
    """What one commit writes and, afterwards, acknowledges."""

    def __init__(self) -> None:
        self.rows: list[StoredRecord] = []
        self.replaced: list[StoredRecord] = []  # parked records now accepted or rejected
        self.acks: dict[str, AckOut] = {}
        self.counters: dict[str, int] = {}

    def ack_for(self, item: Verified) -> AckOut:
        out = self.acks.get(item.terminal)
        if out is None:
            out = self.acks[item.terminal] = AckOut(item.merchant, item.terminal)
        return out

    def count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1


class IngestStage(Stage[Verified]):
    name = "gateway-ingest"

    def __init__(self, store: GatewayStore, cards: CardBook, stats: Stats,
                 inbox: queue.Queue[Verified | None], acks: queue.Queue[AckOut | None],
                 holds_ended: Callable[[], None] | None = None,
                 directory: CardDirectory | None = None,
                 on_death: OnDeath = exit_process,
                 parked: ParkedRecords | None = None,
                 records_committed: Callable[[], None] | None = None) -> None:
        """`parked`: the waiting set's bounds (gateway/parked.py); its records are loaded
        from the store here. `records_committed()`: called after a commit that stored
        records (the settler then posts them to the ledger)."""
        super().__init__(inbox, on_death)
        self.directory = directory
        self.holds_ended = holds_ended  # refused records ended holds: void them at the ledger
        self.records_committed = records_committed
        self.store = store
        self.cards = cards
        self.stats = stats
        self.acks = acks
        self.sequencer = Sequencer(store.load_chain(), store.lookup)
        self.parked = parked if parked is not None else ParkedRecords()
        self._load_parked()
        # Held from changing card states to committing them, here and by the gateway's
        # expiry sweep: card states reach the store in the order they changed.
        self.commit_lock = threading.Lock()

    def _run(self) -> None:
        """Unlike other stages, take whatever has queued up and commit it as one batch."""
        stopping = False
        while not stopping:
            try:
                first = self.inbox.get(timeout=PARKED_SWEEP_INTERVAL_S if self.parked
                                       else None)
            except queue.Empty:
                self.process([])  # refuses the parked records that waited too long
                continue
            if first is None:
                break
            items = [first]
            # Until COMMIT_WAIT_MS pass without a record: the inbox looked at every
            # GATHER_S rather than a wake per record (gateway/stage.py).
            last_s = time.monotonic()
            while len(items) < COMMIT_BATCH_MAX:
                item = take_now(self.inbox)
                if item is EMPTY:
                    if time.monotonic() - last_s >= COMMIT_WAIT_MS / 1000:
                        break
                    time.sleep(GATHER_S)
                    continue
                if item is None:
                    stopping = True
                    break
                items.append(item)
                last_s = time.monotonic()
            self.process(items)

    def process(self, items: list[Verified]) -> None:
        """Sequence, check and commit a batch; then queue its acks."""
        batch = _Batch()
        found = self._look_up(items)
        recalled = self._recall(items)
        with self.commit_lock:
            with self.cards.lock:
                for card, entry in found.items():
                    self.cards.adopt(card, entry, time.time())
                for waiting in self.parked.overdue(time.time()):
                    self._refuse_parked(waiting, waiting.reason, batch)
                for item in items:
                    for decision in self.sequencer.offer(item):
                        self._decide(decision, batch, recalled)
                cards = self.cards.states.take_dirty()
                ended = bool(self.cards.holds.lapsed or self.cards.holds.orphaned)
            chain = {t: self.sequencer.head(t) for t in {r.terminal for r in batch.rows}}
            self.store.commit(batch.rows, chain, cards, batch.counters, batch.replaced)
        self.sequencer.committed()
        if batch.rows and self.records_committed is not None:
            self.records_committed()
        if ended and self.holds_ended is not None:
            self.holds_ended()
        for name, n in batch.counters.items():
            self.stats.add(name, n)
        for out in batch.acks.values():
            out.acked_through = self.sequencer.head(out.terminal)[0]
            self.acks.put(out)

    def _look_up(self, items: list[Verified]) -> dict[str, Any]:
        """What the ledger says of the batch's cards this gateway does not know: asked
        before any lock is taken (I/O), adopted under it."""
        if self.directory is None:
            return {}
        unknown = {item.fields["card"] for item in items
                   if item.refusal is None and item.fields["card"] not in self.cards.cards}
        answers = {card: self.directory.find(card) for card in unknown}
        return {card: found for card, found in answers.items() if found is not None}

    def _recall(self, items: list[Verified]) -> dict[str, dict[str, Any]]:
        """The kept authorizations online records name: read before any lock is taken,
        used under it when a local hold is gone (gateway/authorizations.py). Every one, not
        only those whose hold is gone now: a hold may expire between this read and the lock
        (the authorization stage expires holds as it decides), and its record must still
        find its approval."""
        # With the records held ahead for these terminals: the batch may fill their gap and
        # hand them out too (found by the gauntlet: after a restart, records resent out of
        # order were held, then refused auth_unknown when released, their approvals unread).
        offered = [*items, *self.sequencer.waiting({item.terminal for item in items})]
        names = [item.fields["auth_id"] for item in offered
                 if item.refusal is None and item.fields.get("auth_id")
                 and item.fields["auth_mode"] in (txn.AUTH_ONLINE, txn.AUTH_STAND_IN)]
        return authorizations.recall(self.store, names) if names else {}

    def _decide(self, decision: Decision, batch: _Batch,
                recalled: dict[str, dict[str, Any]]) -> None:
        item = decision.item
        if decision.action == IN_ORDER:
            # Placed in the chain: accepted, or stored as refused with its reason. Either way
            # its seq is consumed and the terminal's next record follows it.
            reason = decision.reason or item.refusal
            prepared = None
            if reason is None:
                kept = recalled.get(item.fields.get("auth_id") or "")
                try:
                    prepared = self.cards.check(item.fields, kept, item.told)
                except ProtocolError as error:
                    reason = error.reason
                    if self._park(item, reason, kept, batch):
                        return
            if prepared is None:
                assert reason is not None
                self.cards.refused(item.fields)
                self._store(item, batch, STATUS_REJECTED, reason)
                batch.ack_for(item).rejected.append((item.seq, reason))
                batch.count("rejected." + reason)
                return
            settles = self.cards.apply(item.fields, prepared)
            kept = recalled.get(item.fields.get("auth_id") or "")
            if kept is not None:  # used now: a later record of this batch cannot name it
                kept["used_by"] = item.txn_id
            self._store(item, batch, STATUS_ACCEPTED, None, settles)
            batch.ack_for(item)
            batch.count("accepted")
            self._retry_parked(item.fields["card"], batch)
        elif decision.action == DUPLICATE:
            out = batch.ack_for(item)
            if decision.stored_status == STATUS_REJECTED and decision.stored_reason:
                out.rejected.append((item.seq, decision.stored_reason))
            batch.count("duplicates")
        elif decision.action == REPLAYED:
            batch.ack_for(item).replayed.append((item.seq, item.digest))
            batch.count("rejected." + SEQ_REPLAYED)
        elif decision.action == GAP:
            batch.ack_for(item)  # acked_through = head: the terminal resends what is missing
            batch.count("rejected." + SEQ_GAP)
        else:
            batch.count("held")

    # -- parked records (gateway/parked.py) ----------------------------------------------
    def _load_parked(self) -> None:
        """The records an earlier run parked, with the approvals they carry."""
        rows = self.store.load_parked()
        kept = authorizations.recall(self.store, [row.fields.get("auth_id") or ""
                                                  for row, _ in rows])
        for row, received_s in rows:
            self.parked.park(ParkedRecord(
                row.terminal, row.seq, row.txn_id, row.digest, row.record, row.fields,
                row.reason or "", kept.get(row.fields.get("auth_id") or ""), received_s))

    def _park(self, item: Verified, reason: str, kept: dict[str, Any] | None,
              batch: _Batch) -> bool:
        """Park a record the gateway approved that waits for card state (stored and acked
        as accepted); False when it is not parkable, or the waiting set is full."""
        fields = dict(item.fields)
        approval = self.cards.approval(fields, kept)
        if not parkable(fields, reason, approval):
            return False
        if not self.parked.has_room(fields["card"]):
            log.warning("ALARM no room to park %s (%s): refused", item.txn_id, reason)
            batch.count("parked_full")
            return False
        self.parked.park(ParkedRecord(item.terminal, item.seq, item.txn_id, item.digest,
                                      item.record, fields, reason, approval, time.time()))
        self._store(item, batch, STATUS_PARKED, reason)
        batch.ack_for(item)  # durable here and promised: the terminal may delete it
        batch.count("parked")
        return True

    def _retry_parked(self, card: str, batch: _Batch) -> None:
        """A record of `card` applied: its parked records may apply now, oldest first, and
        each that does may let another."""
        progress = True
        while progress:
            progress = False
            for waiting in self.parked.of_card(card):
                try:
                    prepared = self.cards.check(waiting.fields, waiting.approval, parked=True)
                except ProtocolError as error:
                    if error.reason not in PARKABLE_REASONS:
                        self._refuse_parked(waiting, error.reason, batch)
                    continue
                settles = self.cards.apply(waiting.fields, prepared)
                self.parked.remove(waiting)
                batch.replaced.append(self._parked_row(waiting, STATUS_ACCEPTED, None, settles))
                batch.count("accepted")
                batch.count("parked_applied")
                progress = True

    def _refuse_parked(self, waiting: ParkedRecord, reason: str, batch: _Batch) -> None:
        """A parked record that will not apply: refused with its reason, alarmed. Its
        terminal was acked (it deleted it): the refusals report is where a person sees it."""
        log.warning("ALARM parked record %s refused: %s (acked to its terminal; see"
                    " `tilltap gateway refusals`)", waiting.txn_id, reason)
        self.parked.remove(waiting)
        self.cards.refused(waiting.fields)
        batch.replaced.append(self._parked_row(waiting, STATUS_REJECTED, reason))
        batch.count("rejected." + reason)
        batch.count("parked_refused")

    @staticmethod
    def _parked_row(waiting: ParkedRecord, status: str, reason: str | None,
                    settles: dict[str, Any] | None = None) -> StoredRecord:
        return StoredRecord(waiting.terminal, waiting.seq, waiting.txn_id, waiting.digest,
                            waiting.record, dict(waiting.fields, **(settles or {})), status,
                            reason)

    @staticmethod
    def _store(item: Verified, batch: _Batch, status: str, reason: str | None,
               settles: dict[str, Any] | None = None) -> None:
        """The row to commit: the record's fields, and what it settles (the card book's)."""
        fields: dict[str, Any] = dict(item.fields, **(settles or {}))
        batch.rows.append(StoredRecord(item.terminal, item.seq, item.txn_id, item.digest,
                                       item.record, fields, status, reason))
