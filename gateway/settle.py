"""Settlement: the gateway's accepted records go to the ledger in batches, exactly once.

    1. open_batch: in one store transaction, unbatched accepted records get a batch id
    2. post: the batch (same id, same content every time) goes to the ledger over HTTP
    3. close_posted: only after the ledger answered (posted, partial or duplicate)

A crash between 1 and 3 leaves the batch open; the next settle run posts it again and the
ledger recognises it (a duplicate answers with the same refusals). A batch is never closed
on a transient failure (`LedgerUnavailable`: no answer, a 5xx, an answer that cannot be
read): it stays open, and later batches wait behind it, until a settle run gets an answer.

The ledger judges each transaction on its own: it posts the valid ones and lists the ones it
refused, each with its reason. Those records are quarantined (each alone in a batch closed
as refused, alarmed, listed for a person by `tilltap gateway refusals`) and the batch is
closed as settled, in one store transaction. Only a fault of the batch as a whole (4xx:
over the ledger's size limit, a malformed envelope, its id posted with other content) refuses
it whole; such a batch is split in two new batches (new ids: the refused one is never
re-sent in another shape), and again, until it posts or each record stands alone, closed as
refused and quarantined. A batch over the size limit thus costs a few extra posts.

A purchase that used a ledger hold names it in "hold_id": the card book wrote the id into
the record's stored fields when it applied the record (gateway/cards.py), so a batch is the
same bytes every time it is sent. Stand-in and offline sales, and online ones whose hold had
lapsed before they arrived, name none. Likewise a record whose tap's SUN the gateway verified
carries its read counter (`sun_counter`, stored with the record when it was applied).

What a transaction posts is what the program engine computed when the gateway applied it
(the record's stored EFFECTS_FIELD): its balanced legs, the points it earned or took back,
the bonus, the discount, the points redeemed and the program version. The legs are sent as
they are, so the ledger posts exactly what the engine did (docs/ledger.md).

A transaction's keys are the ledger's own list (`ledger.model.TXN_KEYS`, from its `Txn`):
each is the record's field of that name, but for the few the record keeps otherwise
(`_renamed_fields`).

Each batch the ledger answered is one log line, `settlement_posted`; a ledger that stops
answering is one line, `ledger_unavailable`, however often it is asked again, and one more,
`ledger_back`, when it answers (`LedgerReach`, shared by every caller of one ledger).
"""

from __future__ import annotations

import logging
import threading
from typing import Any
from urllib.parse import urlsplit

from gateway import batches
from gateway.cards import EFFECTS_FIELD, LEDGER_HOLD_FIELD, SUN_COUNTER_FIELD
from gateway.store import BATCH_REFUSED, GatewayStore
from ledger.client import LedgerClient
from ledger.errors import LedgerError, LedgerRejected, LedgerUnavailable
from ledger.model import STATUS_DUPLICATE, STATUS_PARTIAL, STATUS_POSTED, TXN_KEYS
from protocol import txn

log = logging.getLogger(__name__)

_LEDGER_KEYS = frozenset(TXN_KEYS)
ANSWER_STATUSES = (STATUS_POSTED, STATUS_PARTIAL, STATUS_DUPLICATE)
"""What the ledger answers a batch it judged (docs/ledger.md)."""
EXPIRED_ELSEWHERE = "expire_exceeds_balance"
"""The ledger's refusal of a lapse another store serving the card posted first (ledger/plan.py)."""
ANSWER_INVALID = "answer_invalid"
"""The reason a ledger answer of unknown shape is LedgerUnavailable (retried, never closed)."""


def batch_document(store: GatewayStore, gateway_id: str, batch_id: str) -> dict[str, Any]:
    """The settlement batch as the ledger's intake expects it (docs/ledger.md)."""
    transactions = []
    for fields, digest in batches.batch_records(store, batch_id):
        renamed = _renamed_fields(fields, digest)
        entry = {key: renamed[key] if key in renamed else fields[key] for key in TXN_KEYS}
        if fields.get(LEDGER_HOLD_FIELD) is not None:
            # Only then: a batch sent before holds existed must stay the same bytes.
            entry["hold_id"] = fields[LEDGER_HOLD_FIELD]
        effects = fields.get(EFFECTS_FIELD)
        if effects is not None:
            entry.update(_engine_terms(fields["kind"], effects))
        if fields.get("reward") is not None:
            # Only on a reward redemption (docs/ledger.md): other batches keep their bytes.
            entry["reward"] = fields["reward"]
        if fields.get(SUN_COUNTER_FIELD) is not None:
            # Only then, as hold_id: the ledger raises the card's highest read counter to it
            # (docs/ledger.md, "SUN read counters"); a record without one is sent as before.
            entry["sun_counter"] = fields[SUN_COUNTER_FIELD]
        transactions.append(entry)
    return {
        "batch_id": batch_id,
        "gateway_id": gateway_id,
        "created": batches.batch_created(store, batch_id),
        "transactions": transactions,
    }


def _renamed_fields(fields: dict[str, Any], digest: str) -> dict[str, Any]:
    """The ledger's keys whose value is not the record's field of the same name: computed,
    kept under another name or as a code, or possibly absent from the record."""
    renamed = {
        "txn_id": txn.txn_id(fields["terminal"], fields["seq"]),
        "kind": txn.KIND_NAMES[fields["kind"]],
        "ref_txn_id": fields.get("ref"),
        "program": fields.get("program"),
        "digest": digest,
        "auth": txn.AUTH_MODE_NAMES[fields["auth_mode"]],
    }
    assert renamed.keys() <= _LEDGER_KEYS, "each must be one of the ledger's keys"
    return renamed


def _engine_terms(kind: int, effects: dict[str, Any]) -> dict[str, Any]:
    """The amounts the engine settled with, in the ledger's keys (docs/ledger.md)."""
    terms: dict[str, Any] = {
        "card_value_minor": effects["card_value_minor"],
        "bonus_minor": effects["bonus_minor"],
        "points": effects["points"],
        "version": effects["version"],
        "legs": effects["legs"],
    }
    if kind == txn.KIND_PURCHASE:
        terms["discount_minor"] = effects.get("discount_minor", 0)
        if "grants" in effects:  # records ingested before it was kept are sent as they were
            terms["grants"] = effects["grants"]
    if kind in (txn.KIND_PURCHASE, txn.KIND_REFUND):
        terms["redeem_points"] = effects.get("redeem_points", 0)
    return terms


def ledger_refusals(answer: object, document: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """The records the ledger refused in its answer to `document`: txn_id -> (reason,
    detail). An answer of another shape (or naming a record not in the batch) is a broken
    hop, not a decision: LedgerUnavailable, so the batch stays open and is sent again.
    An answer without "refused" (a ledger that refuses batches only whole) refused none."""
    sent = {entry["txn_id"] for entry in document["transactions"]}
    if not isinstance(answer, dict) or answer.get("status") not in ANSWER_STATUSES:
        raise LedgerUnavailable(f"answer of unknown shape: {str(answer)[:200]}", ANSWER_INVALID)
    items = answer.get("refused", [])
    if not isinstance(items, list) or not all(
            isinstance(item, dict) and item.get("txn_id") in sent
            and isinstance(item.get("reason"), str) and isinstance(item.get("detail"), str)
            for item in items):
        raise LedgerUnavailable(f"refusals of unknown shape: {str(items)[:200]}", ANSWER_INVALID)
    return {item["txn_id"]: (item["reason"], item["detail"]) for item in items}


class LedgerReach:
    """Whether one ledger answers, as the gateway's calls to it found: a call that got no
    answer (LedgerUnavailable) and a call that got one (any answer, a refusal too) are
    reported here, and only a change is logged, so a ledger away for an hour is two lines,
    not one per retry. Thread-safe; the line is written outside the lock."""

    def __init__(self, url: str) -> None:
        where = urlsplit(url)
        # Host and port only: a URL's user part could carry a secret.
        self.ledger = f"{where.hostname}:{where.port}" if where.port else str(where.hostname)
        self._lock = threading.Lock()
        self._away = False
        self.episodes = 0  # times it went away

    @property
    def away(self) -> bool:
        with self._lock:
            return self._away

    def lost(self, error: LedgerError) -> None:
        with self._lock:
            changed, self._away = not self._away, True
            if changed:
                self.episodes += 1
        if changed:
            log.warning("ledger %s unavailable: %s", self.ledger, error,
                        extra={"event": "ledger_unavailable", "ledger": self.ledger,
                               "reason": error.reason})

    def answered(self) -> None:
        with self._lock:
            changed, self._away = self._away, False
        if changed:
            log.info("ledger %s answers again", self.ledger,
                     extra={"event": "ledger_back", "ledger": self.ledger})


class SettleResult:
    def __init__(self) -> None:
        self.settled: list[str] = []  # batches closed: posted, but for `refused`
        self.refused: list[tuple[str, str]] = []  # (txn_id, reason) quarantined in this run
        self.pending: list[str] = []  # left open: the ledger did not answer; sent again later
        self.posted = 0
        self.duplicates = 0
        self.split = 0  # batches refused whole (their envelope), cut in two

    def as_dict(self) -> dict[str, Any]:
        return {"settled": self.settled, "refused": self.refused, "pending": self.pending,
                "posted": self.posted, "duplicates": self.duplicates, "split": self.split}


def settle(store: GatewayStore, gateway_id: str, ledger: LedgerClient,
           reach: LedgerReach | None = None) -> SettleResult:
    """Open a batch of what is unbatched, then post every open batch in order. `reach`:
    told whether the ledger answered."""
    result = SettleResult()
    while batches.open_batch(store, gateway_id) is not None:
        pass
    waiting = batches.open_batches(store)
    while waiting:
        batch_id = waiting.pop(0)
        document = batch_document(store, gateway_id, batch_id)
        try:
            answer = ledger.post_batch(document)
            refused = ledger_refusals(answer, document)
        except LedgerUnavailable as error:
            # Once per retry: debug; the ledger going away is logged once, by `reach`.
            log.debug("ledger unavailable, batch %s stays open: %s", batch_id, error)
            if reach is not None:
                reach.lost(error)
            result.pending.append(batch_id)
            break  # keep order: later batches wait for this one
        except LedgerRejected as error:
            if reach is not None:
                reach.answered()
            _refused_whole(store, gateway_id, batch_id, document, error, waiting, result)
            continue
        if reach is not None:
            reach.answered()
        for txn_id, (reason, detail) in refused.items():
            if reason == EXPIRED_ELSEWHERE:
                # Another store that serves the card posted its lapse first: the books have
                # it once; listed among the refusals, nothing for a person to do.
                log.info("ledger took the lapse %s of batch %s from another store first: %s",
                         txn_id, batch_id, detail,
                         extra={"event": "lapse_posted_elsewhere", "batch": batch_id,
                                "txn": txn_id})
            else:
                log.error("ALARM ledger refused %s of batch %s: %s %s", txn_id, batch_id,
                          reason, detail, extra={"event": "alarm", "reason": reason,
                                                 "batch": batch_id, "txn": txn_id})
            result.refused.append((txn_id, reason))
        batches.close_posted(store, gateway_id, batch_id, refused)
        result.settled.append(batch_id)
        posted = int(answer.get("posted", 0))
        result.posted += posted
        if answer["status"] == STATUS_DUPLICATE:
            result.duplicates += 1
        log.info("batch %s settled (%s): %d of %d transactions posted, %d refused", batch_id,
                 answer["status"], posted, len(document["transactions"]), len(refused),
                 extra={"event": "settlement_posted", "batch": batch_id,
                        "status": answer["status"], "posted": posted,
                        "transactions": len(document["transactions"]),
                        "refused": len(refused)})
    return result


def _refused_whole(store: GatewayStore, gateway_id: str, batch_id: str,
                   document: dict[str, Any], error: LedgerRejected, waiting: list[str],
                   result: SettleResult) -> None:
    """A batch the ledger refused as a whole: halve it (the halves go first in `waiting`)
    until it posts or its record stands alone, then close that one refused: quarantined."""
    halves = batches.split_batch(store, gateway_id, batch_id)
    if halves:
        log.warning("ledger refused batch %s (%s): split into %s", batch_id,
                    error.reason, " and ".join(halves),
                    extra={"event": "batch_split", "batch": batch_id, "reason": error.reason})
        result.split += 1
        waiting[:0] = halves
        return
    log.error("ALARM ledger refused batch %s, its one record, whole: %s %s", batch_id,
              error.reason, error.detail,
              extra={"event": "alarm", "reason": error.reason, "batch": batch_id})
    batches.close_batch(store, batch_id, BATCH_REFUSED, f"{error.reason}: {error.detail}")
    result.refused += [(entry["txn_id"], error.reason) for entry in document["transactions"]]
