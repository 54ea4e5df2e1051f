"""The uplink's answers from the gateway (docs/protocol.md sections 5.1 and 5.5): what a signed
ack frees and logs as refused, which answers may move the terminal's clock, and how notices
are told apart; and its sending: the resend window and the reconnect backoff. Runs on CPython
and real MicroPython over in-memory fakes of the net and the clock, with the real journal on
in-memory storage."""

import hashlib

from firmware.backoff import RECONNECT_BASE_MS
from firmware.hal import SyncedClock
from firmware.journal import Journal
from firmware.storage import MemoryStorage
from firmware.uplink import REFUSED_LOG_MAX, RESEND_AFTER_MS, SEND_WINDOW_MAX, Uplink
from protocol import messages, sealed, topics, txn

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
TERMINAL, MERCHANT = "T1", "M1"
CARD = "04a1a2a3a4a5a6"
BOARD_START_S = 1_700_000_000
REQUEST_ID = 4242


class FakeBoardClock:
    """The board's RTC and tick counter: wall time is set by the test, ticks move on poll."""

    def __init__(self, now_s=BOARD_START_S):
        self.wall_s = now_s
        self.ticks = 0

    def now_s(self):
        return self.wall_s

    def ticks_ms(self):
        return self.ticks

    def ticks_diff(self, a, b):
        return a - b

    def sleep_ms(self, ms):
        self.ticks += ms


class FakeNet:
    """The Net seam: `inbox` is what the next poll returns; `answer(topic, payload)` may queue
    replies to what the uplink publishes (a stand-in for the gateway)."""

    def __init__(self, clock):
        self.clock = clock
        self.connected = False
        self.published = []
        self.inbox = []
        self.answer = None
        self.connects = 0  # attempts, refused or not
        self.refuse_connects = 0  # the next this many attempts raise OSError

    def connect(self, client_id, will_topic, will_payload):
        self.connects += 1
        if self.refuse_connects:
            self.refuse_connects -= 1
            raise OSError("broker unreachable")
        self.connected = True

    def subscribe(self, topic):
        pass

    def publish(self, topic, payload, retain=False):
        self.published.append((topic, payload))
        if self.answer is not None:
            self.inbox.extend(self.answer(topic, payload))

    def poll(self, timeout_ms):
        self.clock.ticks += timeout_ms  # polling takes the time it was given
        messages_in, self.inbox = self.inbox, []
        return messages_in

    def disconnect(self):
        self.connected = False


class FixedRandom:
    """Request ids (and backoff jitter) are REQUEST_ID, so a test knows what is awaited."""

    def u32(self):
        return REQUEST_ID


class Rig:
    def __init__(self, records=0):
        self.board = FakeBoardClock()
        self.clock = SyncedClock(self.board)
        self.net = FakeNet(self.board)
        self.journal = Journal(MemoryStorage())
        config = {"terminal": TERMINAL, "merchant": MERCHANT, "key": KEY}
        self.uplink = Uplink(config, self.journal, self.net, self.clock, FixedRandom())
        self.records = {}
        for _ in range(records):
            self.journal_purchase(150)
        self.uplink.service(0)  # connects and sends what is journaled

    def journal_purchase(self, amount_minor):
        seq = self.journal.last_seq + 1
        fields = {"terminal": TERMINAL, "seq": seq, "prev": self.journal.last_digest,
                  "time": self.clock.now_s(), "merchant": MERCHANT, "card": CARD,
                  "kind": txn.KIND_PURCHASE, "currency": "EUR", "amount_minor": amount_minor,
                  "card_value_minor": amount_minor, "bonus_minor": 0, "points": 0,
                  "auth_mode": txn.AUTH_OFFLINE}
        record = txn.seal(KEY, fields)
        self.journal.append_txn(seq, record)
        self.records[seq] = record
        return seq

    def deliver(self, leaf, payload):
        self.net.inbox.append((topics.down(MERCHANT, TERMINAL, leaf), payload))
        self.uplink.service(0)

    def published_records(self):
        leaf = topics.up(MERCHANT, TERMINAL, topics.LEAF_TXN)
        return [payload for topic, payload in self.net.published if topic == leaf]

    def published_statuses(self):
        leaf = topics.up(MERCHANT, TERMINAL, topics.LEAF_STATUS)
        return [sealed.open_message(payload, messages.TYPE_STATUS, KEY)
                for topic, payload in self.net.published if topic == leaf]


def ack(acked_through, time_s, rejected=(), replayed=None, key=KEY):
    fields = {"terminal": TERMINAL, "time": time_s, "acked_through": acked_through,
              "rejected": [[seq, reason] for seq, reason in rejected]}
    if replayed is not None:
        fields["replayed"] = [[seq, digest] for seq, digest in replayed]
    return sealed.seal(key, messages.TYPE_ACK, fields)


def auth_response(request, time_s):
    return sealed.seal(KEY, messages.TYPE_AUTH_RESPONSE,
                       {"terminal": TERMINAL, "request": request, "time": time_s,
                        "approved": True})


def notice(reason, seq=None):
    return {"terminal": TERMINAL, "reason": reason, "seq": seq}


# -- acks -----------------------------------------------------------------------------------

def test_a_refused_record_leaves_the_journal_for_the_refused_log():
    rig = Rig(records=2)
    rig.deliver(topics.LEAF_ACK, ack(1, BOARD_START_S, rejected=[(1, "time_invalid")]))
    assert [seq for seq, _ in rig.journal.pending] == [2]
    assert rig.uplink.refused_log == [{"seq": 1, "reason": "time_invalid",
                                       "kind": txn.KIND_PURCHASE, "amount_minor": 150,
                                       "card": CARD, "time": BOARD_START_S}]
    assert rig.uplink.refused == 1 and rig.uplink.stats["rejected"] == 1
    assert rig.uplink.stats["acked"] == 1


def test_an_accepted_record_leaves_the_journal_without_being_logged():
    rig = Rig(records=1)
    rig.deliver(topics.LEAF_ACK, ack(1, BOARD_START_S))
    assert rig.journal.depth == 0 and rig.uplink.refused_log == []
    assert rig.uplink.refused == 0


def test_a_refusal_of_a_record_no_longer_held_is_not_logged_again():
    rig = Rig(records=1)
    refusal = ack(1, BOARD_START_S, rejected=[(1, "time_invalid")])
    rig.deliver(topics.LEAF_ACK, refusal)
    rig.deliver(topics.LEAF_ACK, refusal)  # the same ack once more (a duplicate's answer)
    assert len(rig.uplink.refused_log) == 1 and rig.uplink.refused == 1


def test_the_refused_log_keeps_the_newest_and_counts_them_all():
    rig = Rig(records=REFUSED_LOG_MAX + 2)
    last = REFUSED_LOG_MAX + 2
    rejected = [(seq, "rule_mismatch") for seq in range(1, last + 1)]
    rig.deliver(topics.LEAF_ACK, ack(last, BOARD_START_S, rejected=rejected))
    assert [entry["seq"] for entry in rig.uplink.refused_log] == list(range(3, last + 1))
    assert rig.uplink.refused == last and rig.journal.depth == 0


def test_the_status_sent_on_connecting_counts_the_refused_records():
    rig = Rig(records=1)
    rig.deliver(topics.LEAF_ACK, ack(1, BOARD_START_S, rejected=[(1, "time_invalid")]))
    rig.net.connected = False  # the link drops; the next turn connects again
    rig.uplink.service(0)
    first, again = rig.published_statuses()
    assert (first["state"], first["refused"]) == ("online", 0)
    assert (again["state"], again["refused"]) == ("online", 1)


def test_a_replay_of_the_held_record_is_logged_as_seq_replayed():
    rig = Rig(records=1)
    digest = hashlib.sha256(rig.records[1]).digest()
    rig.deliver(topics.LEAF_ACK, ack(1, BOARD_START_S, replayed=[(1, digest)]))
    assert rig.journal.depth == 0
    assert [(e["seq"], e["reason"]) for e in rig.uplink.refused_log] == [(1, "seq_replayed")]
    assert rig.uplink.refused == 1


def test_a_replay_naming_another_record_at_the_seq_is_not_logged_and_frees_nothing():
    rig = Rig(records=1)
    rig.deliver(topics.LEAF_ACK, ack(0, BOARD_START_S + 600, replayed=[(1, bytes(32))]))
    assert rig.uplink.refused_log == [] and rig.uplink.refused == 0
    assert rig.journal.depth == 1
    assert rig.clock.now_s() == BOARD_START_S  # it answered nothing of ours


def test_a_record_lost_from_the_journal_is_sent_as_a_lost_notice_in_its_place():
    rig = Rig(records=3)
    damaged = bytearray(rig.journal.storage.read_all())
    damaged[bytes(damaged).find(rig.records[2]) + 40] ^= 0x04  # one bit inside record 2

    def seal_lost(seq, lost_digest):
        return txn.seal_lost(KEY, TERMINAL, seq, lost_digest)

    journal = Journal(MemoryStorage(bytes(damaged)), seal_lost)
    uplink = Uplink({"terminal": TERMINAL, "merchant": MERCHANT, "key": KEY}, journal,
                    FakeNet(rig.board), rig.clock, FixedRandom())
    uplink.service(0)  # connects and sends 1, the notice for 2, 3: in seq order
    leaf = topics.up(MERCHANT, TERMINAL, topics.LEAF_TXN)
    sent = [payload for topic, payload in uplink.net.published if topic == leaf]
    assert sent[0] == rig.records[1] and sent[2] == rig.records[3]
    lost = sealed.open_message(sent[1], messages.TYPE_LOST, KEY)
    assert lost == {"terminal": TERMINAL, "seq": 2,
                    "digest": hashlib.sha256(rig.records[2]).digest()}
    # The gateway places it refused record_lost; the ack takes it out like a record.
    uplink.net.inbox.append((topics.down(MERCHANT, TERMINAL, topics.LEAF_ACK),
                             ack(3, BOARD_START_S, rejected=[(2, "record_lost")])))
    uplink.service(0)
    assert journal.depth == 0 and journal.lost == {}
    assert [(e["seq"], e["reason"], e["kind"]) for e in uplink.refused_log] == [
        (2, "record_lost", None)]


def test_an_ack_under_another_key_frees_nothing_and_is_counted():
    rig = Rig(records=1)
    rig.deliver(topics.LEAF_ACK, ack(1, BOARD_START_S, key=OTHER_KEY))
    assert rig.journal.depth == 1 and rig.uplink.stats["bad_downlinks"] == 1


# -- the clock ------------------------------------------------------------------------------

def test_an_ack_that_frees_a_record_sets_the_clock_a_replayed_old_one_does_not():
    rig = Rig(records=2)
    first = ack(1, BOARD_START_S)
    rig.deliver(topics.LEAF_ACK, first)
    assert rig.clock.now_s() == BOARD_START_S and rig.clock.corrections == 0
    rig.board.wall_s = BOARD_START_S + 600  # the board's RTC jumps ten minutes ahead
    rig.deliver(topics.LEAF_ACK, first)  # replayed: frees nothing, so says nothing of now
    assert rig.clock.now_s() == BOARD_START_S + 600 and rig.clock.corrections == 0
    rig.deliver(topics.LEAF_ACK, ack(2, BOARD_START_S + 10, rejected=[(2, "time_invalid")]))
    assert rig.clock.now_s() == BOARD_START_S + 10 and rig.clock.corrections == 1
    assert rig.uplink.last_online_s == BOARD_START_S + 10


def test_a_replay_answer_for_the_held_record_is_fresh_and_sets_the_clock():
    rig = Rig(records=1)
    digest = hashlib.sha256(rig.records[1]).digest()
    rig.deliver(topics.LEAF_ACK, ack(1, BOARD_START_S - 600, replayed=[(1, digest)]))
    assert rig.clock.now_s() == BOARD_START_S - 600 and rig.clock.corrections == 1


def answer_with(request, time_s):
    """A gateway stand-in that answers an auth request with `request` as the id."""

    def answer(topic, payload):
        if topic.endswith("/up/auth"):
            return [(topics.down(MERCHANT, TERMINAL, topics.LEAF_AUTH),
                     auth_response(request, time_s))]
        return []

    return answer


AUTH_FIELDS = {"card": CARD, "kind": txn.KIND_PURCHASE, "currency": "EUR",
               "amount_minor": 100}


def test_the_awaited_auth_response_completes_the_request_and_sets_the_clock():
    rig = Rig()
    rig.net.answer = answer_with(REQUEST_ID, BOARD_START_S + 120)
    response = rig.uplink.authorize(AUTH_FIELDS, 500)
    assert response is not None and response["request"] == REQUEST_ID
    assert rig.clock.now_s() == BOARD_START_S + 120 and rig.uplink.stats["auth_stale"] == 0


def test_an_auth_response_to_another_request_is_stale_and_leaves_the_clock():
    rig = Rig()
    rig.net.answer = answer_with(REQUEST_ID + 1, BOARD_START_S + 120)
    assert rig.uplink.authorize(AUTH_FIELDS, 500) is None  # times out: nothing it awaited
    assert rig.uplink.stats["auth_stale"] == 1
    assert rig.clock.now_s() == BOARD_START_S and rig.uplink.last_online_s is None


def test_an_auth_response_when_nothing_is_awaited_is_stale():
    rig = Rig()
    rig.deliver(topics.LEAF_AUTH, auth_response(REQUEST_ID, BOARD_START_S + 120))
    assert rig.uplink.stats["auth_stale"] == 1 and rig.clock.now_s() == BOARD_START_S


def test_the_synced_clock_corrects_only_beyond_five_seconds():
    board = FakeBoardClock()
    clock = SyncedClock(board)
    assert not clock.correct(BOARD_START_S + 5) and not clock.correct(BOARD_START_S - 5)
    assert clock.now_s() == BOARD_START_S and clock.corrections == 0
    assert clock.correct(BOARD_START_S + 6)
    assert clock.now_s() == BOARD_START_S + 6 and clock.corrections == 1
    board.wall_s += 100  # the board keeps counting; the offset stays
    assert clock.now_s() == BOARD_START_S + 106
    assert clock.correct(BOARD_START_S + 100 - 600)
    assert clock.offset_s == -600 and clock.now_s() == BOARD_START_S + 100 - 600


def test_the_synced_clock_passes_ticks_through():
    board = FakeBoardClock()
    clock = SyncedClock(board)
    clock.sleep_ms(250)
    assert clock.ticks_ms() == 250 and clock.ticks_diff(300, 250) == 50


# -- notices --------------------------------------------------------------------------------

def test_a_sealed_notice_is_verified_and_kept_as_signed():
    rig = Rig()
    rig.deliver(topics.LEAF_NOTICE, sealed.seal(KEY, messages.TYPE_NOTICE,
                                                notice("seq_gap", 7)))
    assert rig.uplink.last_notice == {"terminal": TERMINAL, "reason": "seq_gap", "seq": 7,
                                      "signed": True}
    assert rig.uplink.stats["notices"] == 1


def test_an_unsigned_notice_is_kept_as_unsigned():
    rig = Rig()
    rig.deliver(topics.LEAF_NOTICE, messages.encode(messages.TYPE_NOTICE,
                                                    notice("mac_invalid")))
    assert rig.uplink.last_notice == {"terminal": TERMINAL, "reason": "mac_invalid",
                                      "signed": False}
    assert rig.uplink.stats["notices"] == 1


def test_a_notice_sealed_under_another_key_is_a_bad_downlink():
    rig = Rig()
    rig.deliver(topics.LEAF_NOTICE, sealed.seal(OTHER_KEY, messages.TYPE_NOTICE,
                                                notice("seq_gap", 7)))
    assert rig.uplink.last_notice is None and rig.uplink.stats["notices"] == 0
    assert rig.uplink.stats["bad_downlinks"] == 1


# -- sending ----------------------------------------------------------------------------------

def test_a_turn_sends_at_most_the_window_and_the_next_turn_the_rest():
    rig = Rig(records=SEND_WINDOW_MAX + 8)  # its first turn connected and sent
    first = rig.published_records()
    assert first == [rig.records[seq] for seq in range(1, SEND_WINDOW_MAX + 1)]
    rig.uplink.service(0)
    rest = rig.published_records()[SEND_WINDOW_MAX:]
    assert rest == [rig.records[seq] for seq in range(SEND_WINDOW_MAX + 1, SEND_WINDOW_MAX + 9)]
    assert rig.uplink.stats["sent"] == SEND_WINDOW_MAX + 8 and rig.uplink.stats["resent"] == 0


def test_an_unacked_record_is_resent_only_once_resend_after_has_passed():
    rig = Rig(records=2)
    assert len(rig.published_records()) == 2
    rig.board.ticks += RESEND_AFTER_MS - 1
    rig.uplink.service(0)
    assert len(rig.published_records()) == 2 and rig.uplink.stats["resent"] == 0
    rig.board.ticks += 1
    rig.uplink.service(0)
    assert rig.published_records()[2:] == [rig.records[1], rig.records[2]]
    assert rig.uplink.stats["resent"] == 2


def test_resends_keep_to_the_window_too():
    rig = Rig(records=SEND_WINDOW_MAX + 8)
    rig.uplink.service(0)  # all sent once, over two turns
    rig.board.ticks += RESEND_AFTER_MS
    rig.uplink.service(0)
    assert rig.uplink.stats["resent"] == SEND_WINDOW_MAX
    rig.uplink.service(0)
    assert rig.uplink.stats["resent"] == SEND_WINDOW_MAX + 8


def test_an_acked_record_is_not_resent():
    rig = Rig(records=2)
    rig.deliver(topics.LEAF_ACK, ack(1, BOARD_START_S))
    rig.board.ticks += RESEND_AFTER_MS
    rig.uplink.service(0)
    assert rig.published_records()[2:] == [rig.records[2]]


def test_a_new_record_sent_at_once_waits_its_turn_to_be_resent():
    rig = Rig()
    seq = rig.journal_purchase(150)
    assert rig.uplink.send_new(seq, rig.records[seq])
    rig.uplink.service(0)
    assert rig.published_records() == [rig.records[seq]] and rig.uplink.stats["sent"] == 1


def test_failed_connects_wait_a_growing_backoff_and_a_connect_resets_it():
    rig = Rig()
    rig.net.connected = False
    rig.net.refuse_connects = 2
    rig.uplink.service(0)  # due at once: refused, so the next waits up to the base delay
    assert rig.net.connects == 2 and rig.uplink.backoff.failures == 1
    rig.uplink.service(0)
    assert rig.net.connects == 2  # not yet: FixedRandom's draw modulo the ceiling
    delay = REQUEST_ID % (RECONNECT_BASE_MS + 1)
    rig.board.ticks += delay
    rig.uplink.service(0)  # refused again: the ceiling doubles
    assert rig.net.connects == 3 and rig.uplink.backoff.failures == 2
    rig.board.ticks += REQUEST_ID % (2 * RECONNECT_BASE_MS + 1) - 1
    rig.uplink.service(0)
    assert rig.net.connects == 3
    rig.board.ticks += 1
    rig.uplink.service(0)
    assert rig.net.connects == 4 and rig.net.connected
    assert rig.uplink.backoff.failures == 0 and rig.uplink.stats["connect_failures"] == 2
