"""The counter terminal's transaction state machine.

    IDLE -> READING (card tapped) -> AUTHORIZING (online request) -> COMMITTING
         -> APPROVED (sealed, journaled, queued for the gateway) or DECLINED (reason shown)

A sale is approved only once its sealed record is durable in the journal; it is sent after
that, and resent until the gateway's signed ack covers it. A declined sale journals nothing.

Online, the gateway runs the card's program (protocol/engine.py) and answers with what the
sale does: the card part, the discount, points earned or redeemed, the bonus, the program
version. The terminal writes exactly that into the record (the gateway refuses a record
that differs: rule_mismatch).

When the gateway does not answer, a purchase may still be approved offline within the
signed limits of `protocol.offline`, for a card this terminal has seen online: it keeps the
card's program, tier and discount from that answer and quotes the sale with the same rules
(`protocol.engine_offline`), from the programs in its signed configuration. Points cannot be
redeemed offline. The record says auth_mode offline and settles when the link returns; the
gateway's engine has the last word on points.

Every operation returns an outcome dict:

    {"approved": bool, "reason": str or None, "txn": fields or None, "response": dict or None}
"""

from firmware.settings import Settings
from firmware.uplink import note_error
from protocol import cose, engine_offline, messages, offline, reasons, txn
from protocol.errors import ProtocolError

try:
    from micropython import const
except ImportError:

    def const(value):
        return value


AUTH_TIMEOUT_MS = const(3000)
# An enrolment waits for the ledger too (the gateway drops one that waited 2.5 s in its
# queue, and gives the ledger 2 s): longer than a sale's wait.
ENROL_TIMEOUT_MS = const(5000)
DAY_S = const(86400)
CARD_READ_TIMEOUT_MS = const(2000)
KNOWN_CARDS_MAX = const(256)

IDLE = "idle"
READING = "reading"
AUTHORIZING = "authorizing"
COMMITTING = "committing"


class Terminal:
    def __init__(self, config, journal, uplink, clock, reader, display, settings=None):
        self.config = config
        self.journal = journal
        self.uplink = uplink
        self.clock = clock
        self.reader = reader
        self.display = display
        self.settings = settings or Settings(config["key"], config.get("programs", {}))
        uplink.on_config = self.settings.on_config
        # A technician's diag answer (docs/protocol.md 5.10): declines join the uplink's
        # errors, and the uplink asks `_diag_view` whether it may answer now.
        self.errors = []  # type: list[str]
        uplink.errors = self.errors
        uplink.diag_view = self._diag_view
        self.auth_timeout_ms = AUTH_TIMEOUT_MS
        self.enrol_timeout_ms = ENROL_TIMEOUT_MS
        self.state = IDLE
        self.approved_count = 0
        self.declined = {}  # reason -> count
        # card -> [program id, tier, discount_pct, day, value_minor], learnt from signed
        # online answers; value_minor is the card's value in the last answer less what this
        # terminal has approved offline on it since (the offline bound, docs/protocol.md 5.4)
        self.known_cards = {}
        self.offline_records = self._pending_offline()  # [(seq, card, card_value_minor)]

    def _pending_offline(self):
        """Offline records still unacknowledged in the journal: the running offline totals."""
        found = []
        for seq, record in self.journal.pending:
            if seq in self.journal.lost:
                continue  # a lost notice: what the lost record held is unknown
            fields = messages.decode(cose.parse(record).payload, messages.TYPE_TXN)
            if fields["auth_mode"] == txn.AUTH_OFFLINE:
                found.append((seq, fields["card"], fields["card_value_minor"]))
        return found

    # -- operations the cashier starts ----------------------------------------------------
    def issue(self, program_id, value_minor):
        """Sell and activate a card with an opening value (0 for a points-only card)."""
        return self._run(txn.KIND_ISSUE, value_minor, 0, program_id=program_id)

    def topup(self, amount_minor, pay_from_card=False):
        """Load value paid in cash; asking to pay it from the card itself is declined by the
        gateway (topup_from_own_card), never approved."""
        return self._run(txn.KIND_TOPUP, amount_minor, amount_minor if pay_from_card else 0)

    def purchase(self, amount_minor, pay_from_card=True, redeem_points=0, split=False):
        """Sell goods of `amount_minor`; the card pays what is left after any discount and
        the `redeem_points` given (online only), or other tender does. `split`: the card pays
        what it holds and other tender the rest (split tender), instead of a decline for too
        little value."""
        card_value = amount_minor if pay_from_card or split else 0
        return self._run(txn.KIND_PURCHASE, amount_minor, card_value,
                         redeem_points=redeem_points, split=split)

    def reward(self, item_id):
        """Hand over the reward `item_id` of the card's program for its points (online only):
        the gateway prices it from the catalogue; the outcome's record says the points
        (redeem_points) and the amount, of which amount - redeem_minor is the co-payment
        the customer pays in other tender."""
        return self._run(txn.KIND_PURCHASE, 0, 0, reward=item_id)

    def refund(self, original_txn_id, amount_minor):
        """Refund `amount_minor` of a sale (a purchase, top-up or issue): the gateway says
        what comes back to the card, what goes to other tender, and the points."""
        return self._run(txn.KIND_REFUND, amount_minor, 0, ref=original_txn_id)

    def void(self, original_txn_id):
        """Refund all that is left of a sale: the gateway says how much that is."""
        return self._run(txn.KIND_REFUND, 0, 0, ref=original_txn_id)

    def cashout(self, amount_minor):
        """Pay card value out in cash, where the card's program allows it."""
        return self._run(txn.KIND_CASHOUT, amount_minor, amount_minor)

    def inquiry(self):
        """Show the card's balance; nothing is journaled."""
        return self._run(txn.KIND_INQUIRY, 0, 0)

    def enrol(self, phone=None, email=None, first_name=None, consent=False):
        """Enrol the tapped card for a customer (docs/protocol.md section 5.11): the cashier
        keys a phone number and/or an e-mail address, perhaps a first name, and whether the
        customer agrees to marketing. The gateway asks the ledger, which links the card to
        the customer with that phone or e-mail or makes one. Online only: no answer is a
        decline (host_unavailable), and nothing is journaled or kept: the values leave in
        the one sealed request. The outcome's "response" has the first name to greet by."""
        if not phone and not email:
            return self._decline(reasons.FIELD_MISSING)
        for value in (phone, email, first_name):
            # What the message cannot carry is the cashier's to correct, before the tap.
            if value is not None and (not isinstance(value, str)
                                      or len(value) > messages.TEXT_CHARS_MAX):
                return self._decline(reasons.FIELD_INVALID)
        self.state = READING
        card, sun, reason = self.reader.read_card(CARD_READ_TIMEOUT_MS)
        if card is None:
            return self._decline(reason or reasons.CARD_READ_FAILED)
        if card in self.settings.hotlist:
            return self._decline(reasons.CARD_BLOCKED)
        self.state = AUTHORIZING
        request = {"card": card, "sun": sun, "phone": phone or None, "email": email or None,
                   "first_name": first_name or None, "consent": bool(consent)}
        response = self.uplink.enrol(request, self.enrol_timeout_ms)
        if response is None:
            return self._decline(reasons.HOST_UNAVAILABLE)
        if not response["approved"]:
            return self._decline(response.get("reason") or reasons.HOST_UNAVAILABLE)
        self.state = IDLE
        name = response.get("first_name")
        self.display.show("ENROLLED " + name if name else "ENROLLED")
        return {"approved": True, "reason": None, "txn": None, "response": response}

    # -- the state machine ----------------------------------------------------------------
    def _decline(self, reason):
        self.state = IDLE
        self.declined[reason] = self.declined.get(reason, 0) + 1
        note_error(self.errors, reason)
        self.display.show("DECLINED " + reason)
        return {"approved": False, "reason": reason, "txn": None, "response": None}

    def _run(self, kind, amount_minor, card_value_minor, program_id=None, ref=None,
             redeem_points=0, split=False, reward=None):
        self.state = READING
        # One tap, one value (the Reader contract in firmware.hal): the card's UID, its SUN
        # when the reader reads one, or no card and the reason (card pulled, reader timeout...).
        card, sun, reason = self.reader.read_card(CARD_READ_TIMEOUT_MS)
        if card is None:
            return self._decline(reason or reasons.CARD_READ_FAILED)
        if card in self.settings.hotlist:
            return self._decline(reasons.CARD_BLOCKED)  # also while offline
        self.state = AUTHORIZING
        request = {
            "card": card,
            "kind": kind,
            "currency": self.config["currency"],
            "amount_minor": amount_minor,
            "card_value_minor": card_value_minor,
            "program": program_id,
            "ref": ref,
            "sun": sun,
            "redeem_points": redeem_points or None,
            "split": True if split else None,
            "reward": reward,
            # The seq this sale will journal under if approved: the gateway names the sale
            # by it until the record arrives (a refund of it may come first).
            "seq": self.journal.last_seq + 1,
        }
        response = self.uplink.authorize(request, self.auth_timeout_ms)
        if (response is not None and not response.get("approved")
                and response.get("reason") == reasons.HOST_UNAVAILABLE):
            # The gateway answered, but cannot keep an approval now (its store cannot
            # commit, docs/protocol.md 5.2): go on as when no answer comes, offline within
            # the signed limits.
            response = None
        if response is None:
            if kind != txn.KIND_PURCHASE:
                return self._decline(reasons.HOST_UNAVAILABLE)
            if redeem_points or reward:
                return self._decline(reasons.REDEEM_NEEDS_ONLINE)
            try:
                response = self._offline_answer(card, amount_minor, card_value_minor, split)
            except ProtocolError as error:
                return self._decline(error.reason)
            if "reason" in response:
                return self._decline(response["reason"])
        elif response.get("program") is not None:
            self._remember(card, response)
        if not response["approved"]:
            return self._decline(response.get("reason") or reasons.HOST_UNAVAILABLE)
        if kind == txn.KIND_INQUIRY:
            self.state = IDLE
            self.display.show("BALANCE %d" % response.get("value_minor", 0))
            return {"approved": True, "reason": None, "txn": None, "response": response}
        try:
            fields = self._build(kind, card, amount_minor, card_value_minor, response, ref)
            fields["sun"] = sun
            if split:
                fields["split"] = True
            fields["reward"] = reward
            self.state = COMMITTING
            self._commit(fields)
        except ProtocolError as error:
            return self._decline(error.reason)
        self.state = IDLE
        self.approved_count += 1
        # A regular's card: the gateway names the first name to greet them by (key 82).
        name = response.get("first_name")
        self.display.show("APPROVED " + name if name else "APPROVED")
        self._show_offers(response)
        if reward:
            self._show_reward(response, reward, fields.get("redeem_points") or 0)
        return {"approved": True, "reason": None, "txn": fields, "response": response}

    def _show_offers(self, response):
        """The receipt's line per promotion the sale got (auth response key 62, or the
        offline quote's), by the name its signed program gives it (else its id)."""
        program = self.settings.programs.get(response.get("program")) or {}
        offers = (program.get("promotions") or {}).get("offers") or ()
        for offer_id in response.get("promotions") or ():
            name = offer_id
            for offer in offers:
                if offer["id"] == offer_id and offer["name"]:
                    name = offer["name"]
            self.display.show("OFFER " + name)

    def _show_reward(self, response, reward, points):
        """The receipt's line for a reward handed over: its name in the signed catalogue
        (else its id) and the points it took."""
        program = self.settings.programs.get(response.get("program")) or {}
        name = reward
        for item in (program.get("rewards") or {}).get("items") or ():
            if item["id"] == reward and item.get("name"):
                name = item["name"]
        self.display.show("REWARD %s -%d PTS" % (name, points))

    def _remember(self, card, response):
        if card not in self.known_cards and len(self.known_cards) >= KNOWN_CARDS_MAX:
            del self.known_cards[next(iter(self.known_cards))]
        # An answer without the card's value (none should lack it) bounds offline spending
        # at zero: the terminal cannot know what another store has spent.
        self.known_cards[card] = [response["program"], response.get("tier"),
                                  response.get("discount_pct", 0), self._today(),
                                  response.get("value_minor") or 0]

    def _today(self):
        return self.clock.now_s() // DAY_S

    def _offline_answer(self, card, amount_minor, card_value_minor, split=False):
        """Quote and approve offline within the signed limits, or say which limit declines.
        A split tender puts on the card what the last answer left on it, within the signed
        per-sale limit, and the rest on other tender."""
        known = self.known_cards.get(card)
        if known is None:
            return {"approved": False, "reason": reasons.OFFLINE_CARD_UNKNOWN}
        program_id, tier, discount_pct, day, value_minor = known
        program = self.settings.programs.get(program_id)
        if program is None:
            return {"approved": False, "reason": reasons.PROGRAM_UNKNOWN}
        pay = "card" if card_value_minor else "other"
        now_s = self.clock.now_s()
        quote = engine_offline.quote(program, tier, discount_pct, day == self._today(),
                                     amount_minor, pay, self._today(), int(now_s) % DAY_S // 60)
        acked = self.journal.acked_through
        self.offline_records = [r for r in self.offline_records if r[0] > acked]
        pending = [(r[1], r[2]) for r in self.offline_records]
        if split:
            quote["card_minor"] = min(quote["card_minor"], max(0, value_minor),
                                      self.settings.limits["txn_minor_max"])
        reason = offline.decide(self.settings.limits, pending, card, quote["card_minor"],
                                self.clock.now_s(), self.uplink.last_online_s)
        if reason is None and quote["card_minor"] > value_minor:
            reason = reasons.INSUFFICIENT_VALUE
        if reason is not None:
            return {"approved": False, "reason": reason}
        return {"approved": True, "program": program_id, "version": program["version"],
                "offline": True, "card_value_minor": quote["card_minor"],
                "discount_minor": quote["discount_minor"], "points": quote["points_earned"],
                "promotions": quote.get("promotions")}

    def _build(self, kind, card, amount_minor, card_value_minor, response, ref):
        """The record: what the gateway answered (or the offline quote), field by field."""
        if kind == txn.KIND_ISSUE:
            card_value_minor = amount_minor
        else:
            card_value_minor = response.get("card_value_minor", 0)
        if kind == txn.KIND_REFUND or not amount_minor:
            # A void: what was left; a reward: its price in the catalogue.
            amount_minor = response.get("amount_minor", amount_minor)
        return {
            "terminal": self.config["terminal"],
            "seq": self.journal.last_seq + 1,
            "prev": self.journal.last_digest,
            "time": self.clock.now_s(),
            "merchant": self.config["merchant"],
            "card": card,
            "kind": kind,
            "currency": self.config["currency"],
            "amount_minor": amount_minor,
            "card_value_minor": card_value_minor,
            "bonus_minor": response.get("bonus_minor", 0),
            "points": response.get("points", 0),
            "ref": ref,
            "program": response.get("program"),
            "version": response.get("version"),
            "discount_minor": response.get("discount_minor") or None,
            "redeem_points": response.get("redeem_points") or None,
            "redeem_minor": response.get("redeem_minor") or None,
            # The gateway says when it stood in for the ledger (auth response key 25).
            "auth_mode": (txn.AUTH_OFFLINE if response.get("offline")
                          else response.get("auth_mode", txn.AUTH_ONLINE)),
            "auth_id": response.get("auth_id"),
            # What it sold under (its hotlist): none before its first configuration.
            "config_version": self.settings.version or None,
        }

    def _commit(self, fields):
        record = txn.seal(self.config["key"], fields)
        self.journal.append_txn(fields["seq"], record)  # durable before anything is sent
        if fields["auth_mode"] == txn.AUTH_OFFLINE:
            self.offline_records.append((fields["seq"], fields["card"],
                                         fields["card_value_minor"]))
            known = self.known_cards.get(fields["card"])
            if known is not None:
                known[4] -= fields["card_value_minor"]
        self.uplink.send_new(fields["seq"], record)

    def _diag_view(self):
        """What a diag answer takes from the terminal, or None during a sale (never answered
        then: the uplink asks again at its next turn)."""
        if self.state != IDLE:
            return None
        return {"config_version": self.settings.version}

    def service(self, timeout_ms=0):
        """Idle work between customers: deliver and resend journaled records, answer a
        technician's diag request."""
        self.uplink.service(timeout_ms)
