"""The writer stage: sequence verified records, apply business rules, commit, then ack.

Records are committed in batches (up to COMMIT_BATCH_MAX records, or whatever arrived within
COMMIT_WAIT_MS), never one transaction per message. Acknowledgements for a batch are handed
to the ack stage only after its commit returned: an ack is a promise that the record is
durable here.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from gateway import authorizations
from gateway.acks import AckOut
from gateway.card_directory import CardDirectory
from gateway.cards import CardBook
from gateway.sequencer import DUPLICATE, GAP, IN_ORDER, REPLAYED, Decision, Sequencer
from gateway.stage import OnDeath, Stage, exit_process
from gateway.stats import Stats
from gateway.store import STATUS_ACCEPTED, STATUS_REJECTED, GatewayStore, StoredRecord
from gateway.verify import Verified
from protocol import txn
from protocol.errors import ProtocolError
from protocol.reasons import SEQ_GAP, SEQ_REPLAYED

COMMIT_BATCH_MAX = 500
COMMIT_WAIT_MS = 5


class _Batch:
    """What one commit writes and, afterwards, acknowledges."""

    def __init__(self) -> None:
        self.rows: list[StoredRecord] = []
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
                 on_death: OnDeath = exit_process) -> None:
        super().__init__(inbox, on_death)
        self.directory = directory
        self.holds_ended = holds_ended  # refused records ended holds: void them at the ledger
        self.store = store
        self.cards = cards
        self.stats = stats
        self.acks = acks
        self.sequencer = Sequencer(store.load_chain(), store.lookup)
        # Held from changing card states to committing them, here and by the gateway's
        # expiry sweep: card states reach the store in the order they changed.
        self.commit_lock = threading.Lock()

    def _run(self) -> None:
        """Unlike other stages, take whatever has queued up and commit it as one batch."""
        stopping = False
        while not stopping:
            first = self.inbox.get()
            if first is None:
                break
            items = [first]
            while len(items) < COMMIT_BATCH_MAX:
                try:
                    item = self.inbox.get(timeout=COMMIT_WAIT_MS / 1000)
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                items.append(item)
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
                for item in items:
                    for decision in self.sequencer.offer(item):
                        self._decide(decision, batch, recalled)
                cards = self.cards.states.take_dirty()
                ended = bool(self.cards.holds.lapsed or self.cards.holds.orphaned)
            chain = {t: self.sequencer.head(t) for t in {r.terminal for r in batch.rows}}
            self.store.commit(batch.rows, chain, cards, batch.counters)
        self.sequencer.committed()
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
        """The kept authorizations online records name whose local holds are gone: read
        before any lock is taken, checked under it (gateway/authorizations.py)."""
        names = [item.fields["auth_id"] for item in items
                 if item.refusal is None and item.fields.get("auth_id")
                 and item.fields["auth_mode"] in (txn.AUTH_ONLINE, txn.AUTH_STAND_IN)
                 and item.fields["auth_id"] not in self.cards.holds]
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
                try:
                    prepared = self.cards.check(
                        item.fields, recalled.get(item.fields.get("auth_id") or ""), item.told)
                except ProtocolError as error:
                    reason = error.reason
            if prepared is None:
                assert reason is not None
                self.cards.refused(item.fields)
                self._store(item, batch, STATUS_REJECTED, reason)
                batch.ack_for(item).rejected.append((item.seq, reason))
                batch.count("rejected." + reason)
                return
            settles = self.cards.apply(item.fields, prepared)
            self._store(item, batch, STATUS_ACCEPTED, None, settles)
            batch.ack_for(item)
            batch.count("accepted")
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

    @staticmethod
    def _store(item: Verified, batch: _Batch, status: str, reason: str | None,
               settles: dict[str, Any] | None = None) -> None:
        """The row to commit: the record's fields, and what it settles (the card book's)."""
        fields: dict[str, Any] = dict(item.fields, **(settles or {}))
        batch.rows.append(StoredRecord(item.terminal, item.seq, item.txn_id, item.digest,
                                       item.record, fields, status, reason))
