"""Enrolment at the counter on the terminal (firmware/terminal.py `enrol`, firmware/uplink.py
`enrol`; docs/protocol.md section 5.11): the tap, the one sealed request on up/auth, the signed
answer on down/auth and what the display shows; and recognition, the first name an approval
may carry, which never reaches a record. Runs on CPython and real MicroPython with the real
terminal, uplink, journal and settings over in-memory fakes of the net, clock and reader."""

from firmware.hal import SyncedClock
from firmware.journal import Journal
from firmware.settings import Settings
from firmware.storage import MemoryStorage
from firmware.terminal import ENROL_TIMEOUT_MS, IDLE, Terminal
from firmware.uplink import Uplink
from mpytest import load_json
from protocol import cbor, cose, messages, sealed, topics, txn

KEY = bytes(range(32))
TERMINAL, MERCHANT = "T1", "M1"
CARD = "04a1a2a3a4a5a6"
SUN = "https://tap.example/c?picc_data=00&cmac=00"
START_S = 1_700_000_000
PHONE, EMAIL = "+351 912 345 678", "ana@example.org"
PROGRAMS = load_json("program_scenarios.json")["programs"]["programs"]
LIMITS = {"txn_minor_max": 1000, "card_offline_minor_max": 1500,
          "terminal_offline_minor_max": 2000, "offline_s_max": 60, "offline_txn_max": 3}
UP_AUTH = topics.up(MERCHANT, TERMINAL, topics.LEAF_AUTH)
DOWN_AUTH = topics.down(MERCHANT, TERMINAL, topics.LEAF_AUTH)


class BoardClock:
    def __init__(self):
        self.wall_s = START_S
        self.ticks = 0

    def now_s(self):
        return self.wall_s

    def ticks_ms(self):
        return self.ticks

    def ticks_diff(self, a, b):
        return a - b

    def sleep_ms(self, ms):
        self.ticks += ms


class Net:
    """The Net seam; `gateway(type, fields)` answers what the terminal sends on up/auth with
    a list of (message type, fields) it seals, or nothing."""

    def __init__(self, clock):
        self.clock = clock
        self.connected = False
        self.published = []
        self.inbox = []
        self.gateway = None

    def connect(self, client_id, will_topic, will_payload):
        self.connected = True

    def subscribe(self, topic):
        pass

    def publish(self, topic, payload, retain=False):
        self.published.append((topic, payload))
        if topic != UP_AUTH or self.gateway is None:
            return
        kind = cbor.decode(cose.parse(payload).payload)[messages.K_TYPE]
        fields = sealed.open_message(payload, kind, KEY)
        for answer_type, answer in self.gateway(kind, fields):
            self.inbox.append((DOWN_AUTH, sealed.seal(KEY, answer_type, answer)))

    def poll(self, timeout_ms):
        self.clock.ticks += timeout_ms
        arrived, self.inbox = self.inbox, []
        return arrived

    def disconnect(self):
        self.connected = False


class Random:
    def __init__(self):
        self.next = 100

    def u32(self):
        self.next += 1
        return self.next


class Reader:
    def __init__(self):
        self.tap = (CARD, SUN, None)
        self.reads = 0

    def read_card(self, timeout_ms):
        self.reads += 1
        return self.tap


class Rig:
    def __init__(self, hotlist=()):
        self.board = BoardClock()
        self.clock = SyncedClock(self.board)
        self.net = Net(self.board)
        self.journal = Journal(MemoryStorage())
        config = {"terminal": TERMINAL, "merchant": MERCHANT, "key": KEY, "currency": "EUR"}
        self.uplink = Uplink(config, self.journal, self.net, self.clock, Random())
        self.settings = Settings(KEY, PROGRAMS)
        self.settings.apply({"config_version": 1, "limits": LIMITS, "programs": PROGRAMS,
                             "hotlist": list(hotlist)}, None)
        self.reader = Reader()
        self.shown = []
        self.terminal = Terminal(config, self.journal, self.uplink, self.clock, self.reader,
                                 self, self.settings)
        self.uplink.service(0)  # connects

    def show(self, text):
        self.shown.append(text)

    def sent(self):
        return [payload for topic, payload in self.net.published if topic == UP_AUTH]


def enrol_answer(first_name=None, approved=True, reason=None, joined=None):
    def gateway(kind, fields):
        assert kind == messages.TYPE_ENROL_REQUEST
        answer = {"terminal": TERMINAL, "request": fields["request"], "time": START_S + 60,
                  "approved": approved, "reason": reason, "first_name": first_name,
                  "joined": joined}
        return [(messages.TYPE_ENROL_RESPONSE, answer)]

    return gateway


def test_an_enrolment_sends_one_sealed_request_and_shows_the_first_name():
    rig = Rig()
    rig.net.gateway = enrol_answer("Ana")
    outcome = rig.terminal.enrol(phone=PHONE, first_name="Ana", consent=True)
    assert outcome["approved"] and outcome["txn"] is None
    assert outcome["response"]["first_name"] == "Ana"
    assert rig.shown[-1] == "ENROLLED Ana" and rig.terminal.state == IDLE
    sent = rig.sent()
    assert len(sent) == 1
    request = sealed.open_message(sent[0], messages.TYPE_ENROL_REQUEST, KEY)
    assert (request["card"], request["sun"], request["phone"], request["consent"]) == (
        CARD, SUN, PHONE, True)
    assert "email" not in request and request["merchant"] == MERCHANT
    # Nothing is journaled, and the clock follows the signed answer.
    assert rig.journal.last_seq == 0 and rig.journal.depth == 0
    assert rig.clock.now_s() == START_S + 60


def test_a_joined_card_and_a_consent_refused_are_carried_as_given():
    rig = Rig()
    rig.net.gateway = enrol_answer("Ana", joined=True)
    outcome = rig.terminal.enrol(email=EMAIL)
    assert outcome["approved"] and outcome["response"]["joined"] is True
    request = sealed.open_message(rig.sent()[0], messages.TYPE_ENROL_REQUEST, KEY)
    assert request["consent"] is False and request["email"] == EMAIL
    assert "phone" not in request and "first_name" not in request


def test_a_declined_enrolment_shows_the_reason():
    rig = Rig()
    rig.net.gateway = enrol_answer(approved=False, reason="card_linked")
    outcome = rig.terminal.enrol(phone=PHONE)
    assert not outcome["approved"] and outcome["reason"] == "card_linked"
    assert rig.shown[-1] == "DECLINED card_linked" and rig.terminal.state == IDLE


def test_no_answer_is_host_unavailable_after_the_enrolment_wait():
    rig = Rig()
    started = rig.board.ticks
    outcome = rig.terminal.enrol(phone=PHONE)
    assert outcome["reason"] == "host_unavailable" and rig.terminal.state == IDLE
    assert rig.board.ticks - started >= ENROL_TIMEOUT_MS
    assert rig.journal.depth == 0


def test_the_cashiers_entry_is_checked_before_the_tap():
    rig = Rig()
    assert rig.terminal.enrol()["reason"] == "field_missing"
    assert rig.terminal.enrol(phone="1" * 65)["reason"] == "field_invalid"
    assert rig.terminal.enrol(email=EMAIL, first_name="x" * 65)["reason"] == "field_invalid"
    assert rig.reader.reads == 0 and rig.sent() == []


def test_a_blocked_or_unread_card_sends_nothing():
    rig = Rig(hotlist=[CARD])
    assert rig.terminal.enrol(phone=PHONE)["reason"] == "card_blocked"
    rig.reader.tap = (None, None, "card_read_failed")
    assert rig.terminal.enrol(phone=PHONE)["reason"] == "card_read_failed"
    assert rig.sent() == []


def test_an_auth_response_does_not_answer_an_enrolment():
    rig = Rig()

    def wrong_type(kind, fields):
        return [(messages.TYPE_AUTH_RESPONSE,
                 {"terminal": TERMINAL, "request": fields["request"], "time": START_S,
                  "approved": True})]

    rig.net.gateway = wrong_type
    outcome = rig.terminal.enrol(phone=PHONE)
    assert outcome["reason"] == "host_unavailable"
    assert rig.uplink.stats["bad_downlinks"] == 1


def test_an_approval_greets_the_regular_and_the_record_never_holds_the_name():
    rig = Rig()

    def gateway(kind, fields):
        assert kind == messages.TYPE_AUTH_REQUEST
        return [(messages.TYPE_AUTH_RESPONSE,
                 {"terminal": TERMINAL, "request": fields["request"], "time": START_S,
                  "approved": True, "program": "wallet", "version": 1, "currency": "EUR",
                  "card_value_minor": 250, "auth_id": "a-1", "value_minor": 750,
                  "first_name": "Zelda"})]

    rig.net.gateway = gateway
    outcome = rig.terminal.purchase(250)
    assert outcome["approved"] and rig.shown[-1] == "APPROVED Zelda"
    seq, record = rig.journal.pending[0]
    assert b"Zelda" not in record
    fields = messages.decode(cose.parse(record).payload, messages.TYPE_TXN)
    assert fields["kind"] == txn.KIND_PURCHASE and "first_name" not in fields


def test_the_receipt_names_the_promotions_an_approval_names_from_the_signed_program():
    """Auth response key 62: each offer by its name in the terminal's signed program, or
    by its id when it has none; never copied into the record."""
    rig = Rig()
    occasions = {"version": 1, "currency": "EUR", "points": {"earn_bp": 500},
                 "promotions": {"offers": [
                     {"id": "welcome", "first_purchase": True, "bonus_points": 100},
                     {"id": "birthday", "name": "Happy birthday", "birthday_week": True,
                      "discount_pct": 20}]}}
    rig.settings.apply({"config_version": 2, "limits": LIMITS, "hotlist": [],
                        "programs": dict(PROGRAMS, occasions=occasions)}, None)

    def gateway(kind, fields):
        return [(messages.TYPE_AUTH_RESPONSE,
                 {"terminal": TERMINAL, "request": fields["request"], "time": START_S,
                  "approved": True, "program": "occasions", "version": 1, "currency": "EUR",
                  "card_value_minor": 0, "discount_minor": 50, "points": 110, "auth_id": "a-1",
                  "promotions": ["welcome", "birthday"]})]

    rig.net.gateway = gateway
    outcome = rig.terminal.purchase(250, pay_from_card=False)
    assert outcome["approved"], outcome
    assert rig.shown[-3:] == ["APPROVED", "OFFER welcome", "OFFER Happy birthday"]
    seq, record = rig.journal.pending[0]
    assert b"Happy" not in record and b"welcome" not in record


def test_the_receipt_names_the_reward_handed_over_and_the_points_it_took():
    """A reward's approval: the receipt line names the item by its name in the signed
    catalogue (by its id when it has none) and the points; never copied into the record."""
    rig = Rig()
    shop = {"version": 1, "currency": "EUR", "points": {"earn_bp": 100},
            "rewards": {"items": [{"id": "mug", "name": "Club mug", "points": 50,
                                   "copay_minor": 250},
                                  {"id": "pen", "points": 10}]}}
    rig.settings.apply({"config_version": 2, "limits": LIMITS, "hotlist": [],
                        "programs": dict(PROGRAMS, shop=shop)}, None)

    def gateway(kind, fields):
        item = fields["reward"]
        points = 50 if item == "mug" else 10
        return [(messages.TYPE_AUTH_RESPONSE,
                 {"terminal": TERMINAL, "request": fields["request"], "time": START_S,
                  "approved": True, "program": "shop", "version": 1, "currency": "EUR",
                  "card_value_minor": 0, "amount_minor": points + (250 if item == "mug" else 0),
                  "redeem_points": points, "redeem_minor": points, "auth_id": "a-" + item})]

    rig.net.gateway = gateway
    assert rig.terminal.reward("mug")["approved"]
    assert rig.shown[-2:] == ["APPROVED", "REWARD Club mug -50 PTS"]
    assert rig.terminal.reward("pen")["approved"]
    assert rig.shown[-1] == "REWARD pen -10 PTS"
    seq, record = rig.journal.pending[0]
    assert b"Club mug" not in record
