"""The authorization stage: signed request -> decision on the card book -> signed response.

A request that does not verify gets an unsigned notice, never a decision: balances are only
told to terminals that prove their key.

With a ledger, an approved purchase paid from card value is then held at the ledger too, off
the card book's lock (gateway/ledger_holds.py): the answer may become a decline, or a
stand-in approval (`auth_mode` 3) when the ledger cannot be reached.
"""

from __future__ import annotations

import queue
import time
from typing import Any

from gateway.acks import AckOut, Publish
from gateway.cards import CardBook
from gateway.ledger_holds import LedgerHolds
from gateway.registry import TerminalRegistry
from gateway.stage import Stage
from gateway.stats import Stats
from gateway.verify import Verifier, claimed_terminal
from protocol import messages, sealed, topics
from protocol.errors import ProtocolError

Request = tuple[str, bytes]


def decide(cards: CardBook, holds: LedgerHolds | None, request: dict[str, Any],
           now_s: float) -> dict[str, Any]:
    """Decide on the card book under its lock, then (without it) confirm at the ledger."""
    with cards.lock:
        cards.expire_holds(now_s)
        decision = cards.authorize(request, now_s)
    if holds is not None:
        decision = holds.confirm(request, decision)
    return decision


class AuthorizeStage(Stage[Request]):
    name = "gateway-auth"

    def __init__(self, verifier: Verifier, registry: TerminalRegistry, cards: CardBook,
                 stats: Stats, publish: Publish, inbox: queue.Queue[Request | None],
                 notices: queue.Queue[AckOut | None], holds: LedgerHolds | None = None) -> None:
        super().__init__(inbox)
        self.holds = holds
        self.verifier = verifier
        self.registry = registry
        self.cards = cards
        self.stats = stats
        self.publish = publish
        self.notices = notices

    def handle(self, item: Request) -> None:
        topic, payload = item
        now_s = time.time()
        try:
            request = self.verifier.auth_request(topic, payload, now_s)
        except ProtocolError as error:
            self.stats.rejected(error.reason)
            claimed = claimed_terminal(topic)
            if claimed is not None:
                self.notices.put(AckOut(claimed[0], claimed[1], notice_reason=error.reason))
            return
        decision = decide(self.cards, self.holds, request, now_s)
        decision["terminal"] = request["terminal"]
        decision["request"] = request["request"]
        self.stats.add("auth_approved" if decision["approved"] else "auth_declined")
        key = self.registry.get(request["terminal"]).key
        data = sealed.seal(key, messages.TYPE_AUTH_RESPONSE, decision)
        self.publish(topics.down(request["merchant"], request["terminal"], topics.LEAF_AUTH), data)

