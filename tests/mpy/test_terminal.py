"""The terminal's state machine (firmware/terminal.py) on its own: what a tap, the gateway's
answer or its silence make of a sale, and what reaches the journal. Runs on CPython and real
MicroPython over fakes of the reader, the uplink and the clock, with the real journal on
in-memory storage and the real signed settings. Amounts of the offline quotes are those of
the `wallet` and `vip` programs of tests/vectors/program_scenarios.json."""

from firmware.journal import Journal
from firmware.settings import Settings
from firmware.storage import MemoryStorage
from firmware.terminal import CARD_READ_TIMEOUT_MS, Terminal
from mpytest import load_json
from protocol import txn

KEY = bytes(range(32))
TERMINAL, MERCHANT = "T1", "M1"
CARD, OTHER_CARD, THIRD_CARD = "04a1a2a3a4a5a6", "04b1b2b3b4b5b6", "04c1c2c3c4c5c6"
SUN = "https://tap.example/c?picc_data=00&cmac=00"
START_S = 1_700_000_000
PROGRAMS = load_json("program_scenarios.json")["programs"]["programs"]
LIMITS = {"txn_minor_max": 1000, "card_offline_minor_max": 1500,
          "terminal_offline_minor_max": 2000, "offline_s_max": 60, "offline_txn_max": 3}
CONFIG = {"terminal": TERMINAL, "merchant": MERCHANT, "key": KEY, "currency": "EUR"}


class FakeClock:
    def __init__(self):
        self.wall_s = START_S

    def now_s(self):
        return self.wall_s

    def ticks_ms(self):
        return 0

    def ticks_diff(self, a, b):
        return a - b

    def sleep_ms(self, ms):
        pass


class FakeReader:
    """The Reader seam: every read returns `tap`, the (uid, sun, reason) the test set."""

    def __init__(self):
        self.tap = (CARD, None, None)
        self.timeouts_ms = []

    def read_card(self, timeout_ms):
        self.timeouts_ms.append(timeout_ms)
        return self.tap


class FakeUplink:
    """The uplink as the terminal sees it. `answers` are what authorize returns in turn: a
    dict (the gateway's verified answer, which also counts as being online) or None (no
    answer in time). Every send notes whether the record was already durable: what a
    journal recovered from the storage at that moment holds."""

    def __init__(self, journal, clock):
        self.journal = journal
        self.clock = clock
        self.answers = []
        self.requests = []
        self.sent = []  # (seq, record, durable when sent)
        self.last_online_s = None
        self.on_config = None

    def authorize(self, fields, timeout_ms):
        self.requests.append(dict(fields))
        answer = self.answers.pop(0)
        if answer is not None:
            self.last_online_s = self.clock.now_s()
        return answer

    def send_new(self, seq, record):
        recovered = Journal(MemoryStorage(self.journal.storage.read_all()))
        self.sent.append((seq, record, (seq, record) in recovered.pending))
        return True

    def service(self, timeout_ms=0):
        pass


class Rig:
    def __init__(self, limits=None, hotlist=()):
        self.clock = FakeClock()
        self.storage = MemoryStorage()
        self.journal = Journal(self.storage)
        self.uplink = FakeUplink(self.journal, self.clock)
        self.reader = FakeReader()
        self.settings = Settings(KEY, PROGRAMS)
        self.settings.apply({"config_version": 1, "limits": limits or LIMITS,
                             "programs": PROGRAMS, "hotlist": list(hotlist)}, None)
        self.shown = []
        self.terminal = Terminal(CONFIG, self.journal, self.uplink, self.clock, self.reader,
                                 self, self.settings)

    def show(self, text):  # the Display seam
        self.shown.append(text)

    def answer(self, *answers):
        self.uplink.answers.extend(answers)

    def learn(self, card, program, tier=None, discount_pct=0, value_minor=5000):
        """An online inquiry for `card`: its answer tells the terminal the card's program
        and value."""
        self.reader.tap = (card, None, None)
        self.answer(approved(program=program, tier=tier, discount_pct=discount_pct,
                             value_minor=value_minor))
        assert self.terminal.inquiry()["approved"]

    def offline_purchase(self, card, amount_minor, pay_from_card=True):
        self.reader.tap = (card, None, None)
        self.answer(None)
        return self.terminal.purchase(amount_minor, pay_from_card)

    def record(self, seq):
        for held, record in self.journal.pending:
            if held == seq:
                return txn.open_record(record, KEY)
        raise AssertionError("no record %d in the journal" % seq)


def approved(**fields):
    fields["approved"] = True
    return fields


def declined(reason):
    return {"approved": False, "reason": reason}


def assert_declined(outcome, reason):
    assert outcome == {"approved": False, "reason": reason, "txn": None, "response": None}, (
        outcome)


# -- online ---------------------------------------------------------------------------------

def test_an_approved_online_sale_is_journaled_before_it_is_sent():
    rig = Rig()
    rig.answer(approved(program="wallet", version=1, card_value_minor=1250))
    outcome = rig.terminal.purchase(1250)
    assert outcome["approved"] and rig.shown[-1] == "APPROVED"
    assert [(seq, durable) for seq, _, durable in rig.uplink.sent] == [(1, True)]
    assert rig.journal.pending == [(1, rig.uplink.sent[0][1])]
    assert rig.terminal.approved_count == 1


def test_the_request_names_the_seq_the_sale_will_journal_under():
    rig = Rig()
    rig.answer(approved(program="wallet", version=1, card_value_minor=100),
               approved(program="wallet", version=1, card_value_minor=200))
    rig.terminal.purchase(100)
    rig.terminal.purchase(200)
    assert [request["seq"] for request in rig.uplink.requests] == [1, 2]
    assert [seq for seq, _ in rig.journal.pending] == [1, 2]


def test_a_declined_sale_journals_and_sends_nothing():
    rig = Rig()
    rig.answer(declined("insufficient_value"))
    assert_declined(rig.terminal.purchase(1250), "insufficient_value")
    assert rig.journal.depth == 0 and rig.storage.read_all() == b""
    assert rig.uplink.sent == [] and rig.shown[-1] == "DECLINED insufficient_value"
    assert rig.terminal.declined == {"insufficient_value": 1}


def test_the_record_copies_exactly_the_answers_amounts():
    rig = Rig()
    rig.answer(approved(program="vip", version=4, card_value_minor=9300, points=93,
                        discount_minor=500, redeem_points=200, redeem_minor=200,
                        auth_id="a3-17", tier="silver", discount_pct=5))
    outcome = rig.terminal.purchase(10000, redeem_points=200)
    record = rig.record(1)
    expected = {"card": CARD, "kind": txn.KIND_PURCHASE, "amount_minor": 10000,
                "card_value_minor": 9300, "bonus_minor": 0, "points": 93, "program": "vip",
                "version": 4, "discount_minor": 500, "redeem_points": 200,
                "redeem_minor": 200, "auth_mode": txn.AUTH_ONLINE, "auth_id": "a3-17"}
    for name, value in expected.items():
        assert record[name] == value, (name, record[name], value)
        assert outcome["txn"][name] == value, name
    assert rig.uplink.requests[0]["redeem_points"] == 200


def test_a_top_up_takes_the_bonus_from_the_answer():
    rig = Rig()
    rig.answer(approved(program="wallet", version=1, card_value_minor=5500, bonus_minor=500))
    assert rig.terminal.topup(5000)["approved"]
    record = rig.record(1)
    assert (record["amount_minor"], record["card_value_minor"], record["bonus_minor"]) == (
        5000, 5500, 500)


def test_a_void_journals_the_amount_the_gateway_says_was_left_key_10():
    rig = Rig()
    rig.answer(approved(program="wallet", version=1, amount_minor=750, card_value_minor=750))
    outcome = rig.terminal.void("T1-3")
    request = rig.uplink.requests[0]
    assert (request["kind"], request["amount_minor"], request["ref"]) == (
        txn.KIND_REFUND, 0, "T1-3")
    record = rig.record(1)
    assert (record["amount_minor"], record["card_value_minor"], record["ref"]) == (
        750, 750, "T1-3")
    assert outcome["txn"]["amount_minor"] == 750


def test_a_refund_whose_answer_names_no_amount_keeps_the_one_asked_for():
    rig = Rig()
    rig.answer(approved(program="wallet", version=1, card_value_minor=300))
    rig.terminal.refund("T1-3", 300)
    assert rig.record(1)["amount_minor"] == 300


def test_the_gateways_stand_in_mode_reaches_the_record():
    rig = Rig()
    rig.answer(approved(program="wallet", version=1, card_value_minor=100,
                        auth_mode=txn.AUTH_STAND_IN))
    rig.terminal.purchase(100)
    assert rig.record(1)["auth_mode"] == txn.AUTH_STAND_IN


def test_an_inquiry_shows_the_balance_and_journals_nothing():
    rig = Rig()
    rig.answer(approved(program="wallet", value_minor=4200))
    outcome = rig.terminal.inquiry()
    assert outcome["approved"] and outcome["txn"] is None
    assert rig.shown[-1] == "BALANCE 4200" and rig.journal.depth == 0 and rig.uplink.sent == []


def test_an_answer_the_record_rules_refuse_is_declined_and_journals_nothing():
    rig = Rig()  # the card part above the amount: txn.seal refuses to sign it
    rig.answer(approved(program="wallet", version=1, card_value_minor=1300))
    assert_declined(rig.terminal.purchase(1250), "amount_invalid")
    assert rig.journal.depth == 0 and rig.uplink.sent == []


# -- the tap --------------------------------------------------------------------------------

def test_no_card_declines_with_the_readers_reason_and_asks_nothing():
    rig = Rig()
    rig.reader.tap = (None, None, "card_pulled")
    assert_declined(rig.terminal.purchase(1250), "card_pulled")
    assert rig.uplink.requests == [] and rig.journal.depth == 0
    assert rig.reader.timeouts_ms == [CARD_READ_TIMEOUT_MS]


def test_a_reader_that_gives_no_reason_declines_with_card_read_failed():
    rig = Rig()
    rig.reader.tap = (None, None, None)
    assert_declined(rig.terminal.purchase(1250), "card_read_failed")


def test_the_taps_sun_goes_into_the_request_and_the_record():
    rig = Rig()
    rig.reader.tap = (CARD, SUN, None)
    rig.answer(approved(program="wallet", version=1, card_value_minor=100))
    rig.terminal.purchase(100)
    assert rig.uplink.requests[0]["sun"] == SUN and rig.record(1)["sun"] == SUN


def test_a_tap_without_a_sun_sends_none():
    rig = Rig()
    rig.answer(approved(program="wallet", version=1, card_value_minor=100))
    rig.terminal.purchase(100)
    assert rig.uplink.requests[0]["sun"] is None and "sun" not in rig.record(1)


def test_a_hotlisted_card_is_declined_without_asking_online_or_offline():
    rig = Rig(hotlist=[CARD])
    assert_declined(rig.terminal.purchase(100), "card_blocked")
    assert rig.uplink.requests == []
    rig.learn(OTHER_CARD, "wallet")
    rig.settings.apply({"config_version": 2, "limits": LIMITS, "programs": PROGRAMS,
                        "hotlist": [OTHER_CARD]}, None)
    assert_declined(rig.offline_purchase(OTHER_CARD, 100), "card_blocked")
    assert rig.uplink.answers == [None]  # the gateway was never asked
    assert rig.journal.depth == 0


# -- offline --------------------------------------------------------------------------------

def test_an_offline_purchase_within_the_limits_is_approved_with_the_programs_quote():
    rig = Rig()
    rig.learn(CARD, "wallet")
    outcome = rig.offline_purchase(CARD, 1000)
    assert outcome["approved"] and outcome["response"]["offline"]
    record = rig.record(1)
    assert record["auth_mode"] == txn.AUTH_OFFLINE
    assert (record["program"], record["version"]) == ("wallet", 1)
    assert (record["amount_minor"], record["card_value_minor"], record["points"]) == (
        1000, 1000, 0)
    assert [(seq, durable) for seq, _, durable in rig.uplink.sent] == [(1, True)]


def test_an_offline_quote_keeps_the_tier_and_discount_of_the_last_online_answer():
    rig = Rig(limits={"txn_minor_max": 20000, "card_offline_minor_max": 20000,
                      "terminal_offline_minor_max": 20000, "offline_s_max": 60,
                      "offline_txn_max": 3})
    rig.learn(CARD, "vip", tier="silver", discount_pct=5)
    assert rig.offline_purchase(CARD, 12345, pay_from_card=False)["approved"]
    record = rig.record(1)  # 5 % of 123.45 -> 6.17; 1 % x1.5 of 117.28 -> 175 points
    assert (record["discount_minor"], record["card_value_minor"], record["points"]) == (
        617, 0, 175)


def test_offline_a_card_pays_at_most_the_value_of_its_last_answer_less_offline_spent():
    rig = Rig()
    rig.learn(CARD, "wallet", value_minor=900)
    assert rig.offline_purchase(CARD, 600)["approved"]
    assert_declined(rig.offline_purchase(CARD, 301), "insufficient_value")
    assert rig.offline_purchase(CARD, 300)["approved"]
    assert_declined(rig.offline_purchase(CARD, 1), "insufficient_value")
    assert rig.offline_purchase(CARD, 500, pay_from_card=False)["approved"]  # cash pays
    assert [r[2] for r in rig.terminal.offline_records] == [600, 300, 0]


def test_a_new_online_answer_sets_the_offline_bound_afresh():
    rig = Rig()
    rig.learn(CARD, "wallet", value_minor=100)
    assert_declined(rig.offline_purchase(CARD, 200), "insufficient_value")
    rig.learn(CARD, "wallet", value_minor=250)  # e.g. a top-up at another store
    assert rig.offline_purchase(CARD, 200)["approved"]
    assert_declined(rig.offline_purchase(CARD, 51), "insufficient_value")


def test_an_answer_without_the_cards_value_allows_nothing_from_the_card_offline():
    rig = Rig()
    rig.reader.tap = (CARD, None, None)
    rig.answer(approved(program="wallet"))
    assert rig.terminal.inquiry()["approved"]
    assert_declined(rig.offline_purchase(CARD, 1), "insufficient_value")
    assert rig.offline_purchase(CARD, 100, pay_from_card=False)["approved"]


def test_an_offline_purchase_of_a_card_never_seen_online_is_declined():
    rig = Rig()
    rig.learn(OTHER_CARD, "wallet")
    assert_declined(rig.offline_purchase(CARD, 100), "offline_card_unknown")
    assert rig.journal.depth == 0 and rig.uplink.sent == []


def test_an_offline_purchase_of_a_program_the_terminal_lacks_is_declined():
    rig = Rig()
    rig.learn(CARD, "retired")
    assert_declined(rig.offline_purchase(CARD, 100), "program_unknown")


def test_an_offline_purchase_above_the_single_sale_limit_is_declined():
    rig = Rig()
    rig.learn(CARD, "wallet")
    assert_declined(rig.offline_purchase(CARD, 1001), "offline_amount_limit")
    assert rig.journal.depth == 0


def test_offline_totals_per_card_decline_with_offline_card_limit():
    rig = Rig()
    rig.learn(CARD, "wallet")
    assert rig.offline_purchase(CARD, 1000)["approved"]
    assert_declined(rig.offline_purchase(CARD, 501), "offline_card_limit")
    assert rig.offline_purchase(CARD, 500)["approved"]
    assert rig.journal.depth == 2


def test_offline_totals_of_the_terminal_decline_with_offline_terminal_limit():
    rig = Rig()
    for card in (CARD, OTHER_CARD, THIRD_CARD):
        rig.learn(card, "wallet")
    assert rig.offline_purchase(CARD, 1000)["approved"]
    assert rig.offline_purchase(OTHER_CARD, 900)["approved"]
    assert_declined(rig.offline_purchase(THIRD_CARD, 101), "offline_terminal_limit")


def test_offline_sales_beyond_the_count_limit_are_declined_with_offline_count_limit():
    rig = Rig()
    rig.learn(CARD, "wallet")
    for _ in range(3):
        assert rig.offline_purchase(CARD, 100)["approved"]
    assert_declined(rig.offline_purchase(CARD, 100), "offline_count_limit")


def test_offline_past_the_time_limit_is_declined_with_offline_time_limit():
    rig = Rig()
    rig.learn(CARD, "wallet")
    rig.clock.wall_s += 60
    assert rig.offline_purchase(CARD, 100)["approved"]
    rig.clock.wall_s += 1
    assert_declined(rig.offline_purchase(CARD, 100), "offline_time_limit")


def test_acked_offline_records_leave_the_running_totals():
    rig = Rig()
    rig.learn(CARD, "wallet")
    for _ in range(3):
        assert rig.offline_purchase(CARD, 100)["approved"]
    rig.journal.ack_through(3)
    assert rig.offline_purchase(CARD, 1000)["approved"]


def test_offline_records_still_in_the_journal_count_after_a_restart():
    rig = Rig()
    rig.learn(CARD, "wallet")
    assert rig.offline_purchase(CARD, 1000)["approved"]
    restarted = Terminal(CONFIG, Journal(rig.storage), rig.uplink, rig.clock, rig.reader, rig,
                         rig.settings)
    assert restarted.offline_records == [(1, CARD, 1000)]


def test_after_a_restart_that_lost_a_record_the_next_sale_chains_from_the_lost_one():
    rig = Rig()
    rig.learn(CARD, "wallet")
    for _ in range(2):
        assert rig.offline_purchase(CARD, 100)["approved"]
    lost = rig.record(2)
    damaged = bytearray(rig.storage.read_all())
    second = rig.journal.pending[1][1]
    damaged[bytes(damaged).find(second) + 7] ^= 0x20

    def seal_lost(seq, lost_digest):
        return txn.seal_lost(KEY, TERMINAL, seq, lost_digest)

    journal = Journal(MemoryStorage(bytes(damaged)), seal_lost)
    restarted = Terminal(CONFIG, journal, rig.uplink, rig.clock, rig.reader, rig,
                         rig.settings)
    # The lost notice holds seq 2; what the sale was is unknown, so it counts for nothing.
    assert restarted.offline_records == [(1, CARD, 100)]
    rig.uplink.journal = journal
    rig.reader.tap = (CARD, None, None)
    rig.answer(None)
    restarted.known_cards = rig.terminal.known_cards
    outcome = restarted.purchase(100)
    assert outcome["approved"] and outcome["txn"]["seq"] == lost["seq"] + 1
    assert outcome["txn"]["prev"] == txn.digest(second)


def test_points_cannot_be_redeemed_offline():
    rig = Rig()
    rig.learn(CARD, "wallet")
    rig.answer(None)
    assert_declined(rig.terminal.purchase(100, redeem_points=10), "redeem_needs_online")


def test_only_purchases_may_be_approved_offline():
    rig = Rig()
    rig.learn(CARD, "wallet")
    rig.answer(None)
    assert_declined(rig.terminal.topup(100), "host_unavailable")
    assert rig.journal.depth == 0


def test_a_gateway_that_cannot_keep_an_approval_sends_the_terminal_offline():
    """A signed host_unavailable (the gateway's store cannot commit) is taken as no answer:
    a purchase goes on offline within the signed limits; a top-up is declined."""
    rig = Rig()
    rig.learn(CARD, "wallet")
    rig.reader.tap = (CARD, None, None)
    rig.answer(declined("host_unavailable"))
    outcome = rig.terminal.purchase(1000, True)
    assert outcome["approved"] and outcome["response"]["offline"]
    assert rig.record(1)["auth_mode"] == txn.AUTH_OFFLINE
    rig.reader.tap = (CARD, None, None)
    rig.answer(declined("insufficient_value"))  # any other decline stands
    assert_declined(rig.terminal.purchase(100, True), "insufficient_value")
    rig.reader.tap = (CARD, None, None)
    rig.answer(declined("host_unavailable"))
    assert_declined(rig.terminal.topup(500), "host_unavailable")


def test_a_record_names_the_configuration_it_was_sold_under():
    rig = Rig()  # configuration version 1
    rig.learn(CARD, "wallet")
    assert rig.offline_purchase(CARD, 1000)["approved"]
    assert rig.record(1)["config_version"] == 1
