"""The authorization stage: signed request -> decision on the card book -> signed response.

A request that does not verify gets an unsigned notice, never a decision: balances are only
told to terminals that prove their key.
"""

from __future__ import annotations

import queue
import time

from gateway.acks import AckOut, Publish
from gateway.cards import CardBook
from gateway.registry import TerminalRegistry
from gateway.stage import Stage
from gateway.stats import Stats
from gateway.verify import Verifier, claimed_terminal
from protocol import messages, sealed, topics
from protocol.errors import ProtocolError

Request = tuple[str, bytes]


class AuthorizeStage(Stage[Request]):
    name = "gateway-auth"

    def __init__(self, verifier: Verifier, registry: TerminalRegistry, cards: CardBook,
                 stats: Stats, publish: Publish, inbox: queue.Queue[Request | None],
                 notices: queue.Queue[AckOut | None]) -> None:
        super().__init__(inbox)
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
        with self.cards.lock:
            self.cards.expire_holds(now_s)
            decision = self.cards.authorize(request, now_s)
        decision["terminal"] = request["terminal"]
        decision["request"] = request["request"]
        self.stats.add("auth_approved" if decision["approved"] else "auth_declined")
        key = self.registry.get(request["terminal"]).key
        data = sealed.seal(key, messages.TYPE_AUTH_RESPONSE, decision)
        self.publish(topics.down(request["merchant"], request["terminal"], topics.LEAF_AUTH), data)

