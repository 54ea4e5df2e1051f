"""Records the gateway approved whose antecedent has not arrived yet: parked, not refused.

Online approvals are priced on the card as it will be once what was approved before has
arrived (`CardBook._projected`): a refund of a sale approved a moment ago at another counter,
a redemption of points a top-up approved there will bring. Records come from different
terminals, each in its own seq order, so the refund's record may reach ingest before the
sale's. Refusing it would lose a sale the counter told the customer was done.

The parking rule (`parkable`, pure): a record whose engine run is declined only for card
state that is not there yet (PARKABLE_REASONS) and that carries exactly what this gateway
answered for its authorization (auth id, card, amounts: the approval checked by
`CardBook.approval`) is parked instead of refused. It is stored with status `parked` in the
same commit that places it in its terminal's sequence, and acked like an accepted record:
the gateway holds it durably and promised it, the terminal may delete it and goes on
(docs/protocol.md 5.1; a parked record never holds up its terminal's later records).

After each record of the same card is applied, the ingest stage tries its parked records
again, oldest first (`of_card`); one that applies is stored as accepted after its
antecedent, so settlement posts it after it (batches go in the order records were
accepted). Bounds: a record waits at most PARKED_WAIT_S, a card has at most
PARKED_PER_CARD_MAX waiting and the gateway PARKED_MAX; past them a record is refused with
its original reason, counted (`parked_refused`), alarmed in the log and listed in
`tilltap gateway refusals` (its terminal was told it was accepted: a person settles it).

The waiting set lives in memory and is rebuilt from the store when the gateway starts
(`load`): nothing parked is lost by a restart.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from protocol import txn
from protocol.reasons import INSUFFICIENT_POINTS, INSUFFICIENT_VALUE, REFUND_UNKNOWN_ORIGINAL

PARKED_WAIT_S = 600.0
PARKED_PER_CARD_MAX = 16
PARKED_MAX = 1_000

# Declines for card state an earlier approval will bring: the sale a refund names, the
# points or value a top-up or sale approved before will have put on the card.
PARKABLE_REASONS = frozenset({REFUND_UNKNOWN_ORIGINAL, INSUFFICIENT_POINTS, INSUFFICIENT_VALUE})


def parkable(fields: dict[str, Any], reason: str, approval: dict[str, Any] | None) -> bool:
    """Does a record refused for `reason` wait instead? Only an online or stand-in record,
    declined for missing card state, that carries what this gateway approved (`approval`:
    the kept approval for its auth id, card and terminal whose amounts the record carries,
    None otherwise)."""
    return (reason in PARKABLE_REASONS and approval is not None
            and fields.get("auth_mode") in (txn.AUTH_ONLINE, txn.AUTH_STAND_IN))


class ParkedRecord:
    """One waiting record: what the ingest stage stores and checks again."""

    __slots__ = ("terminal", "seq", "txn_id", "digest", "record", "fields", "reason",
                 "approval", "parked_s")

    def __init__(self, terminal: str, seq: int, txn_id: str, digest: bytes, record: bytes,
                 fields: dict[str, Any], reason: str, approval: dict[str, Any] | None,
                 parked_s: float) -> None:
        self.terminal = terminal
        self.seq = seq
        self.txn_id = txn_id
        self.digest = digest
        self.record = record
        self.fields = fields
        self.reason = reason  # why it could not apply yet: its refusal if it never can
        self.approval = approval  # the kept approval ({"terminal", "card", "expect", ...})
        self.parked_s = parked_s


class ParkedRecords:
    """The waiting set, per card in the order parked (not thread-safe: the ingest stage's)."""

    def __init__(self, wait_s: float = PARKED_WAIT_S, per_card_max: int = PARKED_PER_CARD_MAX,
                 total_max: int = PARKED_MAX) -> None:
        self.wait_s = wait_s
        self.per_card_max = per_card_max
        self.total_max = total_max
        self._by_card: dict[str, list[ParkedRecord]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[ParkedRecord]:
        for waiting in self._by_card.values():
            yield from waiting

    def has_room(self, card: str) -> bool:
        return (self._count < self.total_max
                and len(self._by_card.get(card, ())) < self.per_card_max)

    def park(self, parked: ParkedRecord) -> None:
        assert self.has_room(parked.fields["card"])
        self._by_card.setdefault(parked.fields["card"], []).append(parked)
        self._count += 1

    def of_card(self, card: str) -> list[ParkedRecord]:
        """The card's waiting records, oldest first (a copy: the caller may `remove`)."""
        return list(self._by_card.get(card, ()))

    def remove(self, parked: ParkedRecord) -> None:
        card = parked.fields["card"]
        waiting = self._by_card[card]
        waiting.remove(parked)
        self._count -= 1
        if not waiting:
            del self._by_card[card]

    def overdue(self, now_s: float) -> list[ParkedRecord]:
        """Records that waited PARKED_WAIT_S or longer, oldest first."""
        late = [p for p in self if now_s - p.parked_s >= self.wait_s]
        return sorted(late, key=lambda p: p.parked_s)
