"""The counter terminal's transaction state machine.

    IDLE -> READING (card tapped) -> AUTHORIZING (online request) -> COMMITTING
         -> APPROVED (sealed, journaled, queued for the gateway) or DECLINED (reason shown)

A sale is approved only once its sealed record is durable in the journal; it is sent after
that, and resent until the gateway's signed ack covers it. A declined sale journals nothing.
When the gateway does not answer, a purchase may still be approved offline within the
signed limits of `protocol.offline`, for a card this terminal has seen online (it needs the
card's program); the record then says auth_mode offline and settles when the link returns.

Every operation returns an outcome dict:

    {"approved": bool, "reason": str or None, "txn": fields or None, "response": dict or None}
"""

from firmware.settings import Settings
from protocol import cose, messages, offline, reasons, rules, txn
from protocol.errors import ProtocolError

try:
    from micropython import const
except ImportError:

    def const(value):
        return value


AUTH_TIMEOUT_MS = const(3000)
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
        self.auth_timeout_ms = AUTH_TIMEOUT_MS
        self.state = IDLE
        self.approved_count = 0
        self.declined = {}  # reason -> count
        self.known_cards = {}  # card -> program id, learnt from signed online answers
        self.offline_records = self._pending_offline()  # [(seq, card, card_value_minor)]

    def _pending_offline(self):
        """Offline records still unacknowledged in the journal: the running offline totals."""
        found = []
        for seq, record in self.journal.pending:
            fields = messages.decode(cose.parse(record).payload, messages.TYPE_TXN)
            if fields["auth_mode"] == txn.AUTH_OFFLINE:
                found.append((seq, fields["card"], fields["card_value_minor"]))
        return found

    # -- operations the cashier starts ----------------------------------------------------
    def issue(self, program_id, value_minor):
        """Sell and activate a card with an opening value (0 for a points-only card)."""
        return self._run(txn.KIND_ISSUE, value_minor, 0, program_id=program_id)

    def topup(self, amount_minor):
        return self._run(txn.KIND_TOPUP, amount_minor, 0)

    def purchase(self, amount_minor, pay_from_card=True):
        card_value = amount_minor if pay_from_card else 0
        return self._run(txn.KIND_PURCHASE, amount_minor, card_value)

    def refund(self, original_txn_id, amount_minor):
        return self._run(txn.KIND_REFUND, amount_minor, 0, ref=original_txn_id)

    def inquiry(self):
        """Show the card's balance; nothing is journaled."""
        return self._run(txn.KIND_INQUIRY, 0, 0)

    # -- the state machine ----------------------------------------------------------------
    def _decline(self, reason):
        self.state = IDLE
        self.declined[reason] = self.declined.get(reason, 0) + 1
        self.display.show("DECLINED " + reason)
        return {"approved": False, "reason": reason, "txn": None, "response": None}

    def _run(self, kind, amount_minor, card_value_minor, program_id=None, ref=None):
        self.state = READING
        card = self.reader.read_card(CARD_READ_TIMEOUT_MS)
        if card is None:
            # The reader says why (card pulled, reader timeout...) when it knows.
            reason = getattr(self.reader, "last_error", None) or reasons.CARD_READ_FAILED
            return self._decline(reason)
        if card in self.settings.hotlist:
            return self._decline(reasons.CARD_BLOCKED)  # also while offline
        self.state = AUTHORIZING
        sun = getattr(self.reader, "sun", None)  # the card's proof, when the reader reads one
        request = {
            "card": card,
            "kind": kind,
            "currency": self.config["currency"],
            "amount_minor": amount_minor,
            "card_value_minor": card_value_minor,
            "program": program_id,
            "ref": ref,
            "sun": sun,
        }
        response = self.uplink.authorize(request, self.auth_timeout_ms)
        if response is None:
            if kind != txn.KIND_PURCHASE:
                return self._decline(reasons.HOST_UNAVAILABLE)
            response = self._offline_answer(card, card_value_minor)
            if "reason" in response:
                return self._decline(response["reason"])
        elif response.get("program") is not None:
            self._remember(card, response["program"])
        if not response["approved"]:
            return self._decline(response.get("reason") or reasons.HOST_UNAVAILABLE)
        if kind == txn.KIND_INQUIRY:
            self.state = IDLE
            self.display.show("BALANCE %d" % response.get("value_minor", 0))
            return {"approved": True, "reason": None, "txn": None, "response": response}
        try:
            fields = self._build(kind, card, amount_minor, card_value_minor, response, ref)
            fields["sun"] = sun
            self.state = COMMITTING
            self._commit(fields)
        except ProtocolError as error:
            return self._decline(error.reason)
        self.state = IDLE
        self.approved_count += 1
        self.display.show("APPROVED")
        return {"approved": True, "reason": None, "txn": fields, "response": response}

    def _remember(self, card, program_id):
        if card not in self.known_cards and len(self.known_cards) >= KNOWN_CARDS_MAX:
            del self.known_cards[next(iter(self.known_cards))]
        self.known_cards[card] = program_id

    def _offline_answer(self, card, card_value_minor):
        """Approve offline within the signed limits, or say which limit declines."""
        program_id = self.known_cards.get(card)
        if program_id is None:
            return {"approved": False, "reason": reasons.OFFLINE_CARD_UNKNOWN}
        acked = self.journal.acked_through
        self.offline_records = [r for r in self.offline_records if r[0] > acked]
        pending = [(r[1], r[2]) for r in self.offline_records]
        reason = offline.decide(self.settings.limits, pending, card, card_value_minor,
                                self.clock.now_s(), self.uplink.last_online_s)
        if reason is not None:
            return {"approved": False, "reason": reason}
        return {"approved": True, "program": program_id, "offline": True}

    def _build(self, kind, card, amount_minor, card_value_minor, response, ref):
        prog = rules.program(self.settings.programs, response.get("program"))
        bonus = points = 0
        if kind == txn.KIND_ISSUE:
            card_value_minor = amount_minor
        elif kind == txn.KIND_TOPUP:
            bonus = rules.topup_bonus(prog, amount_minor)
            card_value_minor = amount_minor + bonus
        elif kind == txn.KIND_PURCHASE:
            points = rules.points_earned(prog, amount_minor)
        else:
            # The gateway holds the original purchase and computes what a refund reverses.
            card_value_minor = response.get("card_value_minor", 0)
            points = response.get("points", 0)
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
            "bonus_minor": bonus,
            "points": points,
            "ref": ref,
            "program": prog["id"] if kind == txn.KIND_ISSUE else None,
            # The gateway says when it stood in for the ledger (auth response key 25).
            "auth_mode": (txn.AUTH_OFFLINE if response.get("offline")
                          else response.get("auth_mode", txn.AUTH_ONLINE)),
            "auth_id": response.get("auth_id"),
        }

    def _commit(self, fields):
        record = txn.seal(self.config["key"], fields)
        self.journal.append_txn(fields["seq"], record)  # durable before anything is sent
        if fields["auth_mode"] == txn.AUTH_OFFLINE:
            self.offline_records.append((fields["seq"], fields["card"],
                                         fields["card_value_minor"]))
        self.uplink.send_new(fields["seq"], record)

    def service(self, timeout_ms=0):
        """Idle work between customers: deliver and resend journaled records."""
        self.uplink.service(timeout_ms)
