"""The docs-only terminal: a cashier's operations over MQTT, as docs/protocol.md describes.

    operation -> tap the card (one SUN) -> auth request (fresh request id) -> signed answer
              -> record built key by key from the answer (section 3.1 "copied")
              -> sealed, journaled, sent; resent until a signed ack answers it
    no answer in 3 s (or no link): a purchase may be approved offline (5.4), else
              host_unavailable

Everything happens on the caller's thread: `service(seconds)` reads the downlinks paho
queued (acks, auth responses, notices, configuration), sends what is due and the status
heartbeat. Test seams (methods under "seams") make records no honest terminal would, to
provoke each row of section 5.1; they still go through the same sealing and journal.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import dcbor, mac0, schema
from .card import Card
from .errors import Refused
from .journal import Entry, Journal
from .link import MqttLink
from .programs import quote
from .settings import Settings, offline_decline

AUTH_TIMEOUT_S = 3.0
CLOCK_STEP_S = 5
HEARTBEAT_S = 60.0
SERVICE_POLL_S = 0.02
KNOWN_CARDS_MAX = 256
REQUEST_ID_MAX = 2**31
DAY_S = 86_400


class Rtc:
    """The board's real-time clock: the host's clock plus a drift a test may set."""

    def __init__(self, drift_s: float = 0.0) -> None:
        self.drift_s = drift_s

    def now(self) -> float:
        return time.time() + self.drift_s


@dataclass
class Outcome:
    approved: bool
    reason: str | None = None
    record: dict[str, Any] | None = None
    response: dict[str, Any] | None = None

    @property
    def seq(self) -> int:
        assert self.record is not None, "declined: no record"
        seq: int = self.record["seq"]
        return seq


@dataclass
class Counts:
    """What the terminal counts and would show (no answer changes anything else)."""

    bad_downlinks: int = 0
    unsigned_notices: list[dict[str, Any]] = field(default_factory=list)
    sealed_notices: list[dict[str, Any]] = field(default_factory=list)
    config_refused: dict[str, int] = field(default_factory=dict)
    stale_auth_responses: int = 0
    acks: list[dict[str, Any]] = field(default_factory=list)


class DocTerminal:
    def __init__(self, terminal: str, merchant: str, key: bytes, currency: str,
                 host: str, port: int, rtc: Rtc | None = None,
                 currency_exponent: int = 2) -> None:
        """Provisioned with its id, merchant, key and currency."""
        # Guess: the docs do not say how a terminal learns its currency's minor-unit exponent
        # (the offline quote's points need it, docs/programs.md 2.1; protocol/money.py holds
        # the list): it is provisioned with ISO 4217's, 2 for EUR.
        self.terminal, self.merchant, self.key, self.currency = terminal, merchant, key, currency
        self.keys = {terminal.encode(): key}  # the one kid whose downlinks it can verify
        self.currency_exponent = currency_exponent
        self.rtc = rtc or Rtc()
        self.clock_offset_s = 0
        self.journal = Journal()
        self.settings = Settings(exponents={currency: currency_exponent})
        self.counts = Counts()
        self.link = MqttLink(host, port, merchant, terminal)
        # card -> its last answer's program, tier, discount_pct and day (an offline quote's
        # snapshot, docs/programs.md 2.1)
        self.known_cards: dict[str, dict[str, Any]] = {}
        # The last fresh signed answer, on the corrected clock (Unix seconds): offline_s_max
        # runs from it (section 5.4); None until this terminal has been online since start.
        self.last_answer_at_s: int | None = None
        self._sessions_seen = 0
        self._next_request = int.from_bytes(os.urandom(4), "big") % REQUEST_ID_MAX
        self._waiting: int | None = None
        self._answer: dict[str, Any] | None = None
        self._drop_next_send = False
        self._heartbeat_due_s = 0.0

    # -- clock (section 5.5) --------------------------------------------------------------
    def now_s(self) -> int:
        return int(self.rtc.now()) + self.clock_offset_s

    def _gateway_time(self, gateway_s: int) -> None:
        """Section 5.5: a fresh answer's time is taken when it differs by more than 5 s from
        the time this terminal would write now (its clock plus its offset). The answer also
        restarts offline_s_max (5.4), read on the corrected clock, so a correction made here
        does not look like time passing."""
        if abs(gateway_s - self.now_s()) > CLOCK_STEP_S:
            self.clock_offset_s = gateway_s - int(self.rtc.now())
        self.last_answer_at_s = self.now_s()

    # -- link -----------------------------------------------------------------------------
    def _status(self, state: str) -> bytes:
        return schema.seal(self.key, schema.STATUS, {
            "terminal": self.terminal, "time": self.now_s(), "state": state,
            "journal_depth": self.journal.depth, "refused": self.journal.refused_count})

    def connect(self) -> None:
        """Section 4, on every connect: the last will, the subscription to down/# (the link
        does both), the "online" status, then the unanswered records at once (5.1)."""
        self.link.connect(self._status("offline"))
        self.service(0)

    def _online(self) -> bool:
        """Connected, and section 4's sequence done for this connection."""
        return self.link.connected and self.link.sessions == self._sessions_seen

    def _on_link_up(self) -> None:
        """The rest of section 4's sequence, once per (re)connect the link reports."""
        self._sessions_seen = self.link.sessions
        self.link.publish("status", self._status("online"), retain=True)
        self._heartbeat_due_s = time.monotonic() + HEARTBEAT_S
        self.journal.forget_sends()

    def disconnect(self) -> None:
        self.link.disconnect()

    def close(self) -> None:
        if self.link.connected:
            self.disconnect()

    # -- downlinks ------------------------------------------------------------------------
    def service(self, seconds: float = 0.0) -> None:
        """Handle downlinks and send what is due for `seconds` (at least one pass)."""
        deadline = time.monotonic() + seconds
        while True:
            if self.link.connected and not self._online():
                self._on_link_up()
            self._send_due()
            while not self.link.inbox.empty():
                self._handle(*self.link.inbox.get_nowait())
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(remaining, SERVICE_POLL_S))

    def wait_for(self, condition: Callable[[], bool], timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() >= deadline:
                return False
            self.service(SERVICE_POLL_S)
        return True

    def drain(self, timeout_s: float) -> bool:
        """Until every journaled record has its answer."""
        return self.wait_for(lambda: self.journal.depth == 0, timeout_s)

    def _handle(self, topic: str, payload: bytes) -> None:
        leaf = self.link.leaf_of(topic)
        handlers = {"ack": self._on_ack, "auth": self._on_auth, "notice": self._on_notice,
                    "config": self._on_config}
        handler = handlers.get(leaf or "")
        if handler is None:
            self.counts.bad_downlinks += 1
            return
        try:
            handler(payload)
        except Refused:
            self.counts.bad_downlinks += 1  # not proven by our key: it changes nothing

    def _open(self, payload: bytes, message_type: int) -> dict[str, Any]:
        fields = schema.open_sealed(payload, message_type, self.keys)
        if fields["terminal"] != self.terminal:
            raise Refused("topic_mismatch", "another terminal's downlink")
        return fields

    def _on_ack(self, payload: bytes) -> None:
        ack = self._open(payload, schema.ACK)
        self.counts.acks.append(ack)
        if self.journal.apply_ack(ack):
            self._gateway_time(ack["time"])

    def _on_auth(self, payload: bytes) -> None:
        response = self._open(payload, schema.AUTH_RESPONSE)
        if response["request"] != self._waiting:
            self.counts.stale_auth_responses += 1  # not the request we wait for: ignored
            return
        self._answer = response
        self._gateway_time(response["time"])

    def _on_notice(self, payload: bytes) -> None:
        if payload[:1] == bytes((mac0.SEALED_FIRST_BYTE,)):
            self.counts.sealed_notices.append(self._open(payload, schema.NOTICE))
        else:
            self.counts.unsigned_notices.append(schema.decode_bare(payload, schema.NOTICE))

    def _on_config(self, payload: bytes) -> None:
        """Section 5.7: one that does not verify is a bad downlink; one that verifies but is
        not a valid configuration, or an older one, is refused and counted by reason."""
        envelope = mac0.parse(payload, mac0.CONFIG_BYTES_MAX)
        inner = mac0.verify(envelope, self.keys)
        try:
            fields = schema.decode_bare(inner, schema.CONFIG)
            if fields["terminal"].encode() != envelope.kid or fields["terminal"] != self.terminal:
                raise Refused("topic_mismatch", "another terminal's configuration")
            self.settings.offer(fields, payload)
        except Refused as error:
            refused = self.counts.config_refused
            refused[error.reason] = refused.get(error.reason, 0) + 1

    # -- uplinks --------------------------------------------------------------------------
    def _send_due(self) -> None:
        if not self._online():
            return
        for entry in self.journal.due(time.monotonic()):
            self.link.publish("txn", entry.record)
        if time.monotonic() >= self._heartbeat_due_s:
            self.link.publish("status", self._status("heartbeat"), retain=True)
            self._heartbeat_due_s = time.monotonic() + HEARTBEAT_S

    def commit(self, fields: dict[str, Any]) -> Entry:
        """Seal, journal (before any send), send."""
        return self._journal(schema.seal(self.key, schema.TXN, fields), fields)

    def _journal(self, record: bytes, fields: dict[str, Any]) -> Entry:
        """Journal first; then, when connected, send it at once (section 5.1). Sealed while
        disconnected, it goes with the unanswered records on the next connect."""
        entry = self.journal.append(record, fields)
        if self._online():
            entry.sent_at_s = time.monotonic()
            if self._drop_next_send:
                self._drop_next_send = False  # lost on the way (a seam): resent after 3 s
            else:
                self.link.publish("txn", entry.record)
        return entry

    def _authorize(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """The signed answer to a fresh request, or None: 3 s of silence, or at once while
        this terminal knows it is disconnected (section 5.1)."""
        if not self.link.connected:
            return None
        self._next_request = (self._next_request + 1) % REQUEST_ID_MAX
        self._waiting, self._answer = self._next_request, None
        request = dict(request, terminal=self.terminal, merchant=self.merchant,
                       currency=self.currency, time=self.now_s(), request=self._waiting)
        self.link.publish("auth", schema.seal(self.key, schema.AUTH_REQUEST, request))
        self.wait_for(lambda: self._answer is not None, AUTH_TIMEOUT_S)
        self._waiting = None
        return self._answer

    # -- operations -----------------------------------------------------------------------
    def issue(self, card: Card, program: str, value_minor: int) -> Outcome:
        return self._operate(card, schema.KIND_ISSUE, value_minor, program=program)

    def topup(self, card: Card, amount_minor: int, from_card: bool = False) -> Outcome:
        return self._operate(card, schema.KIND_TOPUP, amount_minor,
                             tender=amount_minor if from_card else 0)

    def purchase(self, card: Card, amount_minor: int, from_card: bool = True,
                 redeem_points: int = 0) -> Outcome:
        return self._operate(card, schema.KIND_PURCHASE, amount_minor,
                             tender=amount_minor if from_card else 0,
                             redeem_points=redeem_points)

    def refund(self, card: Card, ref: str, amount_minor: int) -> Outcome:
        return self._operate(card, schema.KIND_REFUND, amount_minor, ref=ref)

    def void(self, card: Card, ref: str) -> Outcome:
        """A refund of 0: the answer's key 10 says what was left, and the record carries it."""
        return self._operate(card, schema.KIND_REFUND, 0, ref=ref)

    def cashout(self, card: Card, amount_minor: int) -> Outcome:
        return self._operate(card, schema.KIND_CASHOUT, amount_minor)

    def inquiry(self, card: Card) -> Outcome:
        return self._operate(card, schema.KIND_INQUIRY, 0)

    def _operate(self, card: Card, kind: int, amount_minor: int, tender: int = 0,
                 program: str | None = None, ref: str | None = None,
                 redeem_points: int = 0,
                 tamper: Callable[[dict[str, Any]], None] | None = None) -> Outcome:
        sun = card.tap()  # one tap, one SUN: its request and its record carry it
        if card.card_id in self.settings.hotlist:
            return Outcome(False, "card_blocked")
        request = {"seq": self.journal.last_seq + 1, "card": card.card_id, "kind": kind,
                   "amount_minor": amount_minor, "card_value_minor": tender or None,
                   "ref": ref, "program": program, "sun": sun,
                   "redeem_points": redeem_points or None}
        response = self._authorize(request)
        if response is not None and not response["approved"] and (
                response.get("reason") == "host_unavailable"):
            response = None  # section 5.2: the gateway cannot keep an approval, as unanswered
        if response is None:
            if kind != schema.KIND_PURCHASE:
                return Outcome(False, "host_unavailable")
            if redeem_points:
                return Outcome(False, "redeem_needs_online")
            return self._offline(card.card_id, amount_minor, bool(tender), sun)
        if "program" in response:
            self._remember(card.card_id, response)
        if not response["approved"]:
            return Outcome(False, response.get("reason", "host_unavailable"), None, response)
        if kind == schema.KIND_INQUIRY:
            return Outcome(True, None, None, response)
        fields = self._record(kind, card.card_id, amount_minor, response, ref, sun)
        if tamper is not None:
            tamper(fields)
        self.commit(fields)
        return Outcome(True, None, fields, response)

    def _remember(self, card: str, response: dict[str, Any]) -> None:
        if card not in self.known_cards and len(self.known_cards) >= KNOWN_CARDS_MAX:
            del self.known_cards[next(iter(self.known_cards))]
        self.known_cards[card] = {"program": response["program"], "tier": response.get("tier"),
                                  "discount_pct": response.get("discount_pct", 0),
                                  "day": self.day(),
                                  # Section 5.4's bound: the answer's value, less what is
                                  # approved offline since; none in the answer, none offline.
                                  "value_minor": response.get("value_minor") or 0}

    def day(self) -> int:
        """Today, for the offline quote's "same day" (docs/programs.md 2.1)."""
        # Guess: the snapshot's day is a day of the gateway's `now_day`, whose epoch the
        # deployment chooses and the docs do not give a terminal; this takes UTC days of
        # the corrected clock.
        return self.now_s() // DAY_S

    def _record(self, kind: int, card: str, amount_minor: int, response: dict[str, Any],
                ref: str | None, sun: str) -> dict[str, Any]:
        """Section 3.1, column "copied", key by key."""
        if kind == schema.KIND_REFUND:
            amount_minor = response.get("amount_minor", amount_minor)
        card_value = (amount_minor if kind == schema.KIND_ISSUE
                      else response.get("card_value_minor", 0))
        return {
            "terminal": self.terminal, "seq": self.journal.last_seq + 1,
            "prev": self.journal.last_digest, "time": self.now_s(),
            "merchant": self.merchant, "card": card, "kind": kind, "currency": self.currency,
            "amount_minor": amount_minor, "card_value_minor": card_value,
            "bonus_minor": response.get("bonus_minor", 0), "points": response.get("points", 0),
            "ref": ref, "program": response.get("program"),
            "auth_mode": response.get("auth_mode", schema.AUTH_ONLINE),
            "auth_id": response.get("auth_id"), "sun": sun,
            "version": response.get("version"),
            "discount_minor": response.get("discount_minor") or None,
            "redeem_points": response.get("redeem_points") or None,
            "redeem_minor": response.get("redeem_minor") or None,
        }

    def _offline(self, card: str, amount_minor: int, from_card: bool, sun: str) -> Outcome:
        """Section 5.4: a purchase of a card seen online, quoted as docs/programs.md 2.1
        says from the card's last answer, within the signed limits; the record as section
        3.1 says an offline one is written."""
        known = self.known_cards.get(card)
        if known is None:
            return Outcome(False, "offline_card_unknown")
        program = self.settings.programs.get(known["program"])
        if program is None:
            return Outcome(False, "program_unknown")
        if from_card and not (program["gift"] or program["prepaid"]):
            return Outcome(False, "operation_not_in_program")
        try:
            quoted = quote(program, known["tier"], known["discount_pct"],
                           known["day"] == self.day(), amount_minor, from_card,
                           self.currency_exponent)
        except Refused:
            return Outcome(False, "host_unavailable")  # an answer the program cannot have
        pending = [(e.fields["card"], e.fields["card_value_minor"])
                   for e in self.journal.entries.values()
                   if e.fields.get("auth_mode") == schema.AUTH_OFFLINE]
        since = None if self.last_answer_at_s is None else self.now_s() - self.last_answer_at_s
        reason = offline_decline(self.settings.limits, pending, card, quoted.card_minor, since)
        if reason is None and quoted.card_minor > known["value_minor"]:
            reason = "insufficient_value"
        if reason is not None:
            return Outcome(False, reason)
        written = {"program": known["program"], "version": program["version"],
                   "card_value_minor": quoted.card_minor, "points": quoted.points_earned,
                   "discount_minor": quoted.discount_minor, "auth_mode": schema.AUTH_OFFLINE}
        fields = self._record(schema.KIND_PURCHASE, card, amount_minor, written, None, sun)
        self.commit(fields)
        known["value_minor"] -= quoted.card_minor
        return Outcome(True, None, fields, None)

    # -- seams: what no honest terminal sends, to provoke section 5.1's rows ----------------
    def purchase_written_wrong(self, card: Card, amount_minor: int,
                               change: Callable[[dict[str, Any]], None]) -> Outcome:
        """An online purchase whose record differs from the answer (row 9: rule_mismatch)."""
        return self._operate(card, schema.KIND_PURCHASE, amount_minor, tender=amount_minor,
                             tamper=change)

    def seal_detached(self, fields: dict[str, Any]) -> bytes:
        """A sealed record that is not journaled and does not move the chain."""
        return schema.seal(self.key, schema.TXN, fields)

    def seal_payload(self, payload: bytes) -> bytes:
        """Any payload, sealed under this terminal's key (row 4: a broken encoder)."""
        return mac0.seal(self.key, payload, self.terminal.encode())

    def commit_unchecked(self, fields: dict[str, Any],
                         extra: dict[int, Any] | None = None) -> Entry:
        """Journal and send a record that skips section 3.2's checks (and may carry keys of
        no table): rows 8 and 9 with a MAC that verifies."""
        item: dict[int, Any] = {schema.KEY_TYPE: schema.TXN,
                                schema.KEY_VERSION: schema.PROTOCOL_VERSION}
        for key, name, _, _ in schema.SCHEMAS[schema.TXN]:
            if fields.get(name) is not None:
                item[key] = fields[name]
        item.update(extra or {})
        return self._journal(self.seal_payload(dcbor.encode(item)), fields)

    def next_fields(self, card: str, kind: int, amount_minor: int,
                    **more: Any) -> dict[str, Any]:
        """A record's fields at the next seq, for seams that skip the authorization."""
        fields = {"terminal": self.terminal, "seq": self.journal.last_seq + 1,
                  "prev": self.journal.last_digest, "time": self.now_s(),
                  "merchant": self.merchant, "card": card, "kind": kind,
                  "currency": self.currency, "amount_minor": amount_minor,
                  "card_value_minor": 0, "bonus_minor": 0, "points": 0,
                  "auth_mode": schema.AUTH_ONLINE}
        fields.update(more)
        return fields

    def publish_raw(self, payload: bytes, leaf: str = "txn") -> None:
        self.link.publish(leaf, payload)

    def drop_next_send(self) -> None:
        """The next record's first publish is lost on the way (row 11: a gap)."""
        self._drop_next_send = True

    def break_chain(self) -> None:
        """The stored digest of the last record is damaged (row 7: chain_broken)."""
        self.journal.last_digest = os.urandom(32)

    def rewind(self) -> None:
        """Back to the state before the last sealed record, as a restore from an old backup
        would (row 6): that seq will be sealed again with other content."""
        last = self.journal.last_seq
        assert last not in self.journal.entries, "rewind only past an answered record"
        previous = self.journal.latest(last - 1)
        self.journal.last_seq = last - 1
        self.journal.last_digest = previous.digest if previous else bytes(32)
