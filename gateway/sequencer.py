"""Per-terminal ordering: duplicates, replays, gaps and the hash chain (pure).

For each terminal the sequencer knows the head of its chain: the highest seq stored with
every lower seq also stored, and that record's digest. An offered record is

    seq <= head, digest equals the stored one    DUPLICATE  (a resend: ack it again)
    seq <= head, digest differs                  REPLAYED   (not stored: the stored one stands)
    seq == head + 1, prev equals the head digest IN_ORDER   (goes on to the business rules)
    seq == head + 1, prev differs                IN_ORDER with reason chain_broken: stored as
                                                 refused, and the chain goes on from it
    seq  > head + 1, already held                DUPLICATE, or REPLAYED if the content differs
    seq  > head + 1                              HELD until the gap fills, at most
                                                 AHEAD_PER_TERMINAL_MAX records, else GAP
                                                 (not held; the terminal resends it later)

A lost notice (the terminal lost the record it sealed under a seq, `Verified.lost`) is placed
like a record, with no prev to check, under the lost record's digest, so the terminal's next
record chains from it. For a seq already placed it is a DUPLICATE of whatever is stored
there: the gateway has the record the terminal lost. Held ahead of a gap, the record itself
takes the place of a notice for its seq, and a notice never displaces a held record.

Every record that comes out IN_ORDER consumes its seq, refused or not, so no record can hold
up the ones after it (docs/protocol.md section 5.1). Records released from the hold come out
IN_ORDER after the one that filled the gap.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from gateway.verify import Verified
from protocol.reasons import CHAIN_BROKEN
from protocol.txn import GENESIS_DIGEST

AHEAD_PER_TERMINAL_MAX = 256

IN_ORDER = "in_order"
DUPLICATE = "duplicate"
REPLAYED = "replayed"
HELD = "held"
GAP = "gap"

# (terminal, seq) -> (digest, status, reason) of a stored record, or None
Lookup = Callable[[str, int], "tuple[bytes, str, str | None] | None"]


class Decision:
    __slots__ = ("action", "item", "reason", "stored_status", "stored_reason")

    def __init__(self, action: str, item: Verified, reason: str | None = None,
                 stored_status: str | None = None, stored_reason: str | None = None) -> None:
        self.action = action
        self.item = item
        self.reason = reason
        self.stored_status = stored_status
        self.stored_reason = stored_reason


class Sequencer:
    def __init__(self, heads: dict[str, tuple[int, bytes]], lookup: Lookup) -> None:
        self.heads = dict(heads)
        self._lookup = lookup
        self._ahead: dict[str, dict[int, Verified]] = {}
        self._unstored: dict[tuple[str, int], bytes] = {}  # accepted, commit pending

    def head(self, terminal: str) -> tuple[int, bytes]:
        return self.heads.get(terminal, (0, GENESIS_DIGEST))

    def waiting(self, terminals: Iterable[str]) -> list[Verified]:
        """The records held for these terminals, ahead of their heads: an offer may hand
        them out along with the record that fills their gap."""
        return [item for terminal in terminals
                for item in self._ahead.get(terminal, {}).values()]

    def offer(self, item: Verified) -> list[Decision]:
        seq, _ = self.head(item.terminal)
        if item.seq <= seq:
            return [self._earlier(item)]
        if item.seq > seq + 1:
            ahead = self._ahead.setdefault(item.terminal, {})
            waiting = ahead.get(item.seq)
            if waiting is not None:
                if item.lost:
                    return [Decision(DUPLICATE, item, stored_status=HELD)]
                if waiting.lost and waiting.digest == item.digest:
                    ahead[item.seq] = item  # the record the terminal lost, after all
                    return [Decision(HELD, item)]
                if waiting.digest != item.digest:
                    return [Decision(REPLAYED, item)]
                return [Decision(DUPLICATE, item, stored_status=HELD)]
            if len(ahead) >= AHEAD_PER_TERMINAL_MAX:
                return [Decision(GAP, item)]
            ahead[item.seq] = item
            return [Decision(HELD, item)]
        decisions = [self._advance(item)]
        ahead = self._ahead.get(item.terminal, {})
        while True:
            following = ahead.pop(self.head(item.terminal)[0] + 1, None)
            if following is None:
                break
            decisions.append(self._advance(following))
        return decisions

    def _advance(self, item: Verified) -> Decision:
        """The next seq: it is placed whatever it holds; a broken chain is its refusal."""
        broken = not item.lost and item.fields["prev"] != self.head(item.terminal)[1]
        self.heads[item.terminal] = (item.seq, item.digest)
        self._unstored[(item.terminal, item.seq)] = item.digest
        return Decision(IN_ORDER, item, CHAIN_BROKEN if broken else None)

    def _earlier(self, item: Verified) -> Decision:
        unstored = self._unstored.get((item.terminal, item.seq))
        stored: tuple[bytes, str, str | None] | None
        if unstored is not None:
            stored = (unstored, "pending", None)
        else:
            stored = self._lookup(item.terminal, item.seq)
        if item.lost and stored is not None:
            return Decision(DUPLICATE, item, stored_status=stored[1], stored_reason=stored[2])
        if stored is None or stored[0] != item.digest:
            return Decision(REPLAYED, item)
        return Decision(DUPLICATE, item, stored_status=stored[1], stored_reason=stored[2])

    def committed(self) -> None:
        """The records handed out so far are durable; forget their in-memory copies."""
        self._unstored.clear()
