"""The stolen terminal key: a terminal provisioned like any other (registry entry, broker
login, `tilltap terminal provision`) whose key and login a thief uses to sign what it likes.

It has cards of its own (NTAG 424 DNA personalized by the store, as any customer's), so its
records carry genuine SUNs and reach the gateway's business rules; it never has an honest
customer's SUN, so what it signs about their cards is refused. Each signed message starts
as a real one, built with the project's encoders (`protocol.messages`, `protocol.txn`):

    base record   the next record of its chain: an issue of one of its cards, a purchase
                  from its value or in cash, an offline purchase, a refund, a top-up
    online sale   an authorization request answered by the gateway, and the record that
                  copies the answer (the approval and its hold are real)

and most are then mutated (tools/fuzz/mutate.py) and MACed again with the stolen key. It
keeps its chain's head by `ChainModel` (tools/fuzz/chain.py) and checks it at each
`barrier`: two records under an old seq with fresh content, which the gateway refuses as
replays and names, with their digests, in a signed ack; once the second is named, every
message sent before it has been handled, and that ack's `acked_through` is the head.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from firmware.card_sun import read_sun_url
from protocol import cbor, messages, sealed, topics, txn
from protocol.errors import ProtocolError
from tools.cards import MasterKeys
from tools.fuzz.chain import ChainModel
from tools.fuzz.hostile import Client
from tools.fuzz.mutate import Context, flip_bytes, mutate_envelope, mutate_item, seal
from tools.personalize import personalize
from tools.simulator.cards import make_uid
from tools.simulator.ntag424_card import Ntag424Card

CARD_URL_PREFIX = "https://tilltap.example/c"
OWN_CARDS_MAX = 32
NEW_CARD_SHARE = 0.03  # of the sales: on a card to issue
RECENT_MAX = 64  # recent signed messages, for exact replays and unsigned splices
MEMORY_MAX = 64  # SUNs, approvals and txn ids remembered for mutations
AUTH_WAIT_S = 20.0
BARRIER_WAIT_S = 120.0
START_WAIT_S = 60.0
BARRIER_TIME_S = 1_000_000  # barrier records carry an old time: their content is unique
OWN_PROGRAMS = ("gift", "prepaid")

# Signed message classes and their weights per message.
SIGNED_CLASSES = {
    "valid": 10, "field": 42, "byte_flip": 9, "envelope": 7, "replay": 6, "lost": 3,
    "online": 5, "auth": 12, "status": 6,
}


@dataclass
class OwnCard:
    uid: str
    program: str
    chip: Ntag424Card
    issued: bool = False
    value_minor: int = 0  # what the attacker believes it holds

    def tap(self) -> str:
        """One tap at the reader: a fresh SUN URL (the card's read counter goes up)."""
        self.chip.activate()
        url: str = read_sun_url(self.chip.apdu)
        return url


class Downlinks:
    """What the gateway answers the attacker, read on paho's thread. Bounded: only the
    barriers and requests being waited for are kept, the rest is counted."""

    def __init__(self, terminal: str, key: bytes) -> None:
        self.terminal = terminal
        self.key = key
        self.lock = threading.Condition()
        self.acked_through = 0
        self.counts: Counter[str] = Counter()
        self._barriers: dict[bytes, int | None] = {}
        self._requests: dict[int, dict[str, Any] | None] = {}

    def on_message(self, topic: str, payload: bytes) -> None:
        leaf = topic.rsplit("/", 1)[-1]
        with self.lock:
            try:
                if leaf == topics.LEAF_ACK:
                    self._ack(sealed.open_message(payload, messages.TYPE_ACK, self.key))
                elif leaf == topics.LEAF_AUTH:
                    self._response(sealed.open_message(payload, messages.TYPE_AUTH_RESPONSE,
                                                       self.key))
                elif leaf == topics.LEAF_NOTICE:
                    self._notice(payload)
                else:
                    self.counts["config" if leaf == topics.LEAF_CONFIG else "other"] += 1
            except ProtocolError as error:
                self.counts["bad_downlink." + error.reason] += 1
            self.lock.notify_all()

    def _ack(self, ack: dict[str, Any]) -> None:
        self.counts["acks"] += 1
        self.acked_through = max(self.acked_through, ack["acked_through"])
        for _, reason in ack["rejected"]:
            self.counts["ack_rejected." + reason] += 1
        for _, digest in ack.get("replayed", ()):
            self.counts["ack_replayed"] += 1
            if digest in self._barriers:
                self._barriers[digest] = ack["acked_through"]

    def _response(self, response: dict[str, Any]) -> None:
        reason = response.get("reason")
        self.counts["auth_approved" if response["approved"] else f"auth_declined.{reason}"] += 1
        if response["request"] in self._requests:
            self._requests[response["request"]] = response

    def _notice(self, payload: bytes) -> None:
        if payload[:1] == b"\xd1":
            notice = sealed.open_message(payload, messages.TYPE_NOTICE, self.key)
            self.counts["notice_signed." + notice["reason"]] += 1
        else:
            notice = messages.decode(payload, messages.TYPE_NOTICE)
            self.counts["notice_unsigned." + notice["reason"]] += 1

    def expect_barrier(self, digest: bytes) -> None:
        with self.lock:
            self._barriers[digest] = None

    def wait_barrier(self, digest: bytes, timeout_s: float) -> int | None:
        """The acked_through of the ack that names the barrier `digest`, or None."""
        with self.lock:
            self.lock.wait_for(lambda: self._barriers.get(digest) is not None, timeout_s)
            return self._barriers.pop(digest)

    def expect_request(self, request: int) -> None:
        with self.lock:
            self._requests[request] = None

    def wait_request(self, request: int, timeout_s: float) -> dict[str, Any] | None:
        with self.lock:
            self.lock.wait_for(lambda: self._requests.get(request) is not None, timeout_s)
            return self._requests.pop(request)

    def wait_acked(self, seq: int, timeout_s: float) -> bool:
        with self.lock:
            return self.lock.wait_for(lambda: self.acked_through >= seq, timeout_s)


class Attacker:
    """The thief at the stolen terminal. Not thread-safe: one campaign thread drives it."""

    def __init__(self, config: dict[str, Any], host: str, port: int, ca_path: str | None,
                 masters: MasterKeys, honest_cards: list[str], txn_minor_max: int,
                 seed: int, sent: Counter[str]) -> None:
        self.terminal: str = config["terminal"]
        self.merchant: str = config["merchant"]
        self.key = bytes.fromhex(config["key_hex"])
        self.kid = self.terminal.encode()
        self.masters = masters
        self.honest_cards = honest_cards
        self.txn_minor_max = txn_minor_max
        self.rng = random.Random(seed)
        self.sent = sent
        self.mutations: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()  # barriers, resyncs, waits that timed out
        self.chain = ChainModel(self.terminal, self.key)
        self.downlinks = Downlinks(self.terminal, self.key)
        self.link_login = (config["broker_user"], config["broker_password"])
        self.link = Client(host, port, self.terminal, self.link_login, ca_path,
                           self.downlinks.on_message,
                           topics.terminal_subscription(self.merchant, self.terminal))
        self.cards: list[OwnCard] = []
        self.recent: deque[bytes] = deque(maxlen=RECENT_MAX)
        self.suns: deque[str] = deque(maxlen=MEMORY_MAX)
        self.auth_ids: deque[str] = deque(maxlen=MEMORY_MAX)
        self.sales: deque[str] = deque(maxlen=MEMORY_MAX)  # txn ids of its base purchases
        self.confirmed_head = 0
        self._request = self.rng.randrange(2**31)
        self._barrier_number = 0
        self.auth_wait_s = 0.0  # waiting for answers to its online sales' requests

    # -- life cycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Connect, and place the first record (an issue of its first card), so that a
        barrier always has a seq the gateway holds."""
        self.link.connect()
        card = self._new_card()
        fields = self._issue(card)
        if self._send_txn(sealed.seal(self.key, messages.TYPE_TXN, fields), "signed.valid"):
            self._believe(fields, card)
        self.link.flush()
        if not self.downlinks.wait_acked(1, START_WAIT_S):
            raise RuntimeError("the gateway never acked the attacker's first record")
        self.barrier()

    def close(self) -> None:
        self.link.close()

    # -- cards ----------------------------------------------------------------------------
    def _new_card(self) -> OwnCard:
        uid = make_uid(self.rng)
        chip = Ntag424Card(bytes.fromhex(uid), random=self.rng.randbytes)
        personalize(chip.apdu, self.masters, CARD_URL_PREFIX, self.rng.randbytes)
        card = OwnCard(uid, self.rng.choice(OWN_PROGRAMS), chip)
        self.cards.append(card)
        return card

    def _tap(self, card: OwnCard) -> str:
        url = card.tap()
        self.suns.append(url)
        return url

    def _card_for_sale(self) -> OwnCard:
        """One of its issued cards; now and then (or while none is issued) one to issue:
        a card not issued yet, or a new one while it has fewer than OWN_CARDS_MAX."""
        issued = [card for card in self.cards if card.issued]
        if issued and (len(self.cards) >= OWN_CARDS_MAX or self.rng.random() >= NEW_CARD_SHARE):
            return self.rng.choice(issued)
        waiting = [card for card in self.cards if not card.issued]
        return waiting[0] if waiting else self._new_card()

    # -- building real messages -------------------------------------------------------------
    def _common(self, card: OwnCard, kind: int, amount: int,
                sun: str | None = None) -> dict[str, Any]:
        """A record's fields for the next seq; `sun`: the tap's, else a new tap."""
        return {"terminal": self.terminal, "seq": self.chain.seq + 1,
                "prev": self.chain.digest or self.rng.randbytes(32), "time": int(time.time()),
                "merchant": self.merchant, "card": card.uid, "kind": kind, "currency": "EUR",
                "amount_minor": amount, "card_value_minor": 0, "bonus_minor": 0, "points": 0,
                "auth_mode": txn.AUTH_ONLINE, "program": card.program,
                "sun": sun if sun is not None else self._tap(card)}

    def _issue(self, card: OwnCard) -> dict[str, Any]:
        """The issue of a card as a terminal keeping the rules writes it: under the
        gateway's approval (value is loaded only under one); when none comes, the record
        without it (which the gateway refuses, auth_unknown)."""
        value = self.rng.choice((0, 500, 2000, 5000, 10_000))
        approved = self._approved(card, txn.KIND_ISSUE, value)
        if approved is not None:
            return approved
        fields = self._common(card, txn.KIND_ISSUE, value)
        fields["card_value_minor"] = value
        return fields

    def _base(self) -> tuple[dict[str, Any], OwnCard]:
        """The next record of its chain as a terminal keeping every rule would write it
        (as far as the attacker can tell; its picture of its cards may be off)."""
        card = self._card_for_sale()
        if not card.issued:
            return self._issue(card), card
        roll = self.rng.random()
        if roll < 0.35 and card.value_minor > 0:
            amount = self.rng.randrange(1, min(card.value_minor, 1500) + 1)
            fields = self._common(card, txn.KIND_PURCHASE, amount)
            fields["card_value_minor"] = amount
        elif roll < 0.55:
            fields = self._common(card, txn.KIND_PURCHASE, self.rng.randrange(100, 5000))
        elif roll < 0.75:
            limit = max(self.txn_minor_max, 1)
            amount = self.rng.randrange(1, limit + 1)
            fields = self._common(card, txn.KIND_PURCHASE, amount)
            fields.update(card_value_minor=amount, auth_mode=txn.AUTH_OFFLINE)
            fields.pop("program")
        elif roll < 0.85 and self.sales:
            fields = self._common(card, txn.KIND_REFUND, self.rng.randrange(1, 500))
            fields.update(ref=self.rng.choice(self.sales),
                          card_value_minor=fields["amount_minor"])
        elif card.program == "prepaid":
            amount = self.rng.randrange(100, 5000)
            fields = self._common(card, txn.KIND_TOPUP, amount)
            bonus = amount * 5 // 100
            fields.update(bonus_minor=bonus, card_value_minor=amount + bonus)
        else:
            fields = self._common(card, txn.KIND_PURCHASE, self.rng.randrange(100, 5000))
        return fields, card

    def _context(self) -> Context:
        return Context(self.terminal, int(time.time()), self.chain.seq, self.honest_cards,
                       [card.uid for card in self.cards], list(self.suns), list(self.sales),
                       list(self.auth_ids), self.txn_minor_max)

    # -- sending --------------------------------------------------------------------------
    def _send_txn(self, message: bytes, name: str) -> int:
        """Publish on up/txn; returns the seqs it placed (by the chain model)."""
        self.link.publish(topics.up(self.merchant, self.terminal, topics.LEAF_TXN), message)
        self.sent[name] += 1
        self.recent.append(message)
        return self.chain.offer(message)

    def _send(self, leaf: str, message: bytes, name: str) -> None:
        self.link.publish(topics.up(self.merchant, self.terminal, leaf), message)
        self.sent[name] += 1
        self.recent.append(message)

    def _believe(self, fields: dict[str, Any], card: OwnCard) -> None:
        """A base record went out unchanged and was placed: what it did, as the attacker
        sees it (the gateway may still refuse it; nothing depends on this being right)."""
        kind = fields["kind"]
        if kind == txn.KIND_ISSUE:
            card.issued = True
            card.value_minor = fields["card_value_minor"]
        elif kind in (txn.KIND_PURCHASE, txn.KIND_CASHOUT):
            card.value_minor -= fields["card_value_minor"]
            if kind == txn.KIND_PURCHASE:
                self.sales.append(txn.txn_id(self.terminal, fields["seq"]))
        else:
            card.value_minor += fields["card_value_minor"]

    def signed(self) -> None:
        """One signed message of a class drawn by SIGNED_CLASSES (the online class sends
        an authorization request and, once answered, the record that uses it)."""
        name = self.rng.choices(list(SIGNED_CLASSES), list(SIGNED_CLASSES.values()))[0]
        if name == "auth":
            self._auth_mutant()
        elif name == "status":
            self._status_mutant()
        elif name == "online":
            self._online()
        elif name == "replay":
            self._replay()
        elif name == "lost":
            self._lost()
        else:
            self._record(name)

    def _record(self, name: str) -> None:
        fields, card = self._base()
        payload = messages.encode(messages.TYPE_TXN, txn.check_consistency(fields))
        if name == "valid":
            if self._send_txn(seal(self.key, payload, self.kid), "signed.valid"):
                self._believe(fields, card)
            return
        if name == "field":
            names, mutated = mutate_item(self.rng, cbor.decode(payload), self._context())
            self.mutations.update(names)
            self._send_txn(seal(self.key, mutated, self.kid), "signed.field")
        elif name == "byte_flip":
            self._send_txn(seal(self.key, flip_bytes(self.rng, payload), self.kid),
                           "signed.byte_flip")
        else:
            envelope, message = mutate_envelope(self.rng, self.key, payload, self.kid)
            self.mutations["envelope." + envelope] += 1
            self._send_txn(message, "signed.envelope")

    def _replay(self) -> None:
        """An earlier message again, byte for byte, or an earlier seq with new content."""
        if self.recent and self.rng.random() < 0.5:
            message = self.rng.choice(self.recent)
            self._send_txn(message, "signed.replay")
            return
        fields, _ = self._base()
        fields["seq"] = self.rng.randrange(1, self.chain.seq + 1) if self.chain.seq else 1
        self._send_txn(sealed.seal(self.key, messages.TYPE_TXN, fields), "signed.replay")

    def _lost(self) -> None:
        """A lost notice for the next seq: the gateway stores it refused `record_lost`."""
        digest = self.rng.choice((txn.GENESIS_DIGEST, self.rng.randbytes(32)))
        message = txn.seal_lost(self.key, self.terminal, self.chain.seq + 1, digest)
        if self.rng.random() < 0.5:
            mac0_payload = cbor.encode(messages.pack(messages.TYPE_LOST, {
                "terminal": self.terminal, "seq": self.chain.seq + 1, "digest": digest}))
            names, mutated = mutate_item(self.rng, cbor.decode(mac0_payload), self._context())
            self.mutations.update("lost." + name for name in names)
            message = seal(self.key, mutated, self.kid)
        self._send_txn(message, "signed.lost")

    def _next_request(self) -> int:
        self._request = (self._request + 1) % 2**32
        return self._request

    def _auth_request(self, card: OwnCard, kind: int, amount: int) -> dict[str, Any]:
        return {"terminal": self.terminal, "seq": self.chain.seq + 1, "time": int(time.time()),
                "merchant": self.merchant, "card": card.uid, "kind": kind, "currency": "EUR",
                "amount_minor": amount, "card_value_minor": amount, "sun": self._tap(card),
                "request": self._next_request()}

    def _auth_mutant(self) -> None:
        card = self._card_for_sale()
        kind = self.rng.choice((txn.KIND_PURCHASE, txn.KIND_INQUIRY, txn.KIND_TOPUP,
                                txn.KIND_REFUND, txn.KIND_CASHOUT, txn.KIND_ISSUE))
        request = self._auth_request(card, kind, self.rng.randrange(1, 5000))
        if kind == txn.KIND_REFUND:
            request["ref"] = self.rng.choice(self.sales) if self.sales else "TX-1"
        if kind == txn.KIND_ISSUE:
            request["program"] = card.program
        payload = messages.encode(messages.TYPE_AUTH_REQUEST, request)
        roll = self.rng.random()
        if roll < 0.75:
            names, mutated = mutate_item(self.rng, cbor.decode(payload), self._context())
            self.mutations.update("auth." + name for name in names)
            message = seal(self.key, mutated, self.kid)
        elif roll < 0.9:
            message = seal(self.key, flip_bytes(self.rng, payload), self.kid)
        else:
            envelope, message = mutate_envelope(self.rng, self.key, payload, self.kid)
            self.mutations["auth.envelope." + envelope] += 1
        self._send(topics.LEAF_AUTH, message, "signed.auth")

    def _status_mutant(self) -> None:
        fields = {"terminal": self.terminal, "time": int(time.time()), "state": "heartbeat",
                  "journal_depth": self.rng.randrange(100), "refused": self.rng.randrange(9)}
        payload = messages.encode(messages.TYPE_STATUS, fields)
        item = cbor.decode(payload)
        if self.rng.random() < 0.3:
            item[40] = self.rng.choice(("dead", "x" * 64, "online", "offline", "", "HEARTBEAT"))
            mutated = cbor.encode(item)
        else:
            names, mutated = mutate_item(self.rng, item, self._context())
            self.mutations.update("status." + name for name in names)
        self._send(topics.LEAF_STATUS, seal(self.key, mutated, self.kid), "signed.status")

    def _online(self) -> None:
        """A real online sale: ask, wait for the signed answer, send the record that copies
        it, unchanged or mutated (what was answered is held until the record comes)."""
        issued = [card for card in self.cards if card.issued and card.value_minor > 0]
        if not issued:
            self._record("valid")
            return
        card = self.rng.choice(issued)
        amount = self.rng.randrange(1, min(card.value_minor, 2000) + 1)
        fields = self._approved(card, txn.KIND_PURCHASE, amount)
        if fields is None:
            return
        payload = messages.encode(messages.TYPE_TXN, txn.check_consistency(fields))
        if self.rng.random() < 0.5:
            if self._send_txn(seal(self.key, payload, self.kid), "signed.online"):
                self._believe(fields, card)
            return
        names, mutated = mutate_item(self.rng, cbor.decode(payload), self._context())
        self.mutations.update("online." + name for name in names)
        self._send_txn(seal(self.key, mutated, self.kid), "signed.online_mutated")

    def _approved(self, card: OwnCard, kind: int, amount: int) -> dict[str, Any] | None:
        """Ask the gateway as a terminal does, and the record that copies its approval, or
        None when it declined or did not answer in AUTH_WAIT_S."""
        request = self._auth_request(card, kind, amount)
        if kind == txn.KIND_ISSUE:
            request["program"] = card.program
        self.downlinks.expect_request(request["request"])
        self._send(topics.LEAF_AUTH, sealed.seal(self.key, messages.TYPE_AUTH_REQUEST, request),
                   "signed.online_request")
        self.link.flush()
        waited = time.monotonic()
        response = self.downlinks.wait_request(request["request"], AUTH_WAIT_S)
        self.auth_wait_s += time.monotonic() - waited
        if response is None:
            self.counts["auth_wait_timeouts"] += 1
            return None
        if not response["approved"]:
            return None
        self.auth_ids.append(response["auth_id"])
        # One tap, one sale: the request's SUN is the record's.
        fields = self._common(card, kind, amount, request["sun"])
        for name in ("card_value_minor", "bonus_minor", "points", "auth_id", "program",
                     "version", "discount_minor", "redeem_points", "redeem_minor"):
            if response.get(name):
                fields[name] = response[name]
        if response.get("auth_mode") is not None:
            fields["auth_mode"] = response["auth_mode"]
        return fields

    # -- barrier --------------------------------------------------------------------------
    def barrier(self) -> None:
        """Wait until the gateway has handled every message sent so far, and check the chain
        model against the head it reports (see the module docstring)."""
        head = None
        for _ in range(2):
            self._barrier_number += 1
            seq = max(1, self.confirmed_head)
            fields = {"terminal": self.terminal, "seq": seq, "prev": bytes(32),
                      "time": BARRIER_TIME_S + self._barrier_number, "merchant": self.merchant,
                      "card": "04000000000000", "kind": txn.KIND_PURCHASE, "currency": "EUR",
                      "amount_minor": 1, "card_value_minor": 0, "bonus_minor": 0, "points": 0,
                      "auth_mode": txn.AUTH_ONLINE}
            message = sealed.seal(self.key, messages.TYPE_TXN, fields)
            digest = hashlib.sha256(message).digest()
            self.downlinks.expect_barrier(digest)
            self.link.publish(topics.up(self.merchant, self.terminal, topics.LEAF_TXN), message)
            self.chain.offer(message)  # an old seq: it moves nothing
            self.link.flush()
            head = self.downlinks.wait_barrier(digest, BARRIER_WAIT_S)
            if head is None:
                self.counts["barrier_timeouts"] += 1
                head = self.downlinks.acked_through
        assert head is not None
        self.counts["barriers"] += 1
        if not self.chain.resync(head):
            self.counts["resyncs"] += 1
        self.confirmed_head = head
