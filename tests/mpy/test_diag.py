"""A technician's diag request on the terminal (docs/protocol.md section 5.10): a signed,
fresh request is answered between customers with the terminal's view; an unsigned, foreign,
replayed or stale one gets nothing. Runs on CPython and real MicroPython over the in-memory
fakes of tests/mpy/test_uplink.py (net, board clock), with the real uplink, journal and
terminal."""

from test_terminal import PROGRAMS, FakeReader
from test_uplink import BOARD_START_S, KEY, MERCHANT, OTHER_KEY, TERMINAL, Rig, ack

from firmware import FIRMWARE_VERSION
from firmware.settings import Settings
from firmware.terminal import IDLE, Terminal
from firmware.uplink import DIAG_ERRORS_MAX, DIAG_FRESH_S, DIAG_SEEN_MAX, note_error
from protocol import messages, reasons, sealed, topics

GATEWAY_S = BOARD_START_S + 30


def diag_request(request, time_s=GATEWAY_S, key=KEY, terminal=TERMINAL):
    return sealed.seal(key, messages.TYPE_DIAG_REQUEST,
                       {"terminal": terminal, "request": request, "time": time_s})


def answers(rig):
    leaf = topics.up(MERCHANT, TERMINAL, topics.LEAF_DIAG)
    return [sealed.open_message(payload, messages.TYPE_DIAG, KEY)
            for topic, payload in rig.net.published if topic == leaf]


def idle_view():
    return {"config_version": 7}


def test_a_signed_request_is_answered_with_the_terminal_s_view():
    rig = Rig(records=2)
    rig.uplink.diag_view = idle_view
    rig.board.ticks += 65_400  # a minute and a bit since the uplink started
    rig.deliver(topics.LEAF_DIAG, diag_request(41))
    [answer] = answers(rig)
    assert answer["request"] == 41 and answer["terminal"] == TERMINAL
    assert answer["firmware"] == FIRMWARE_VERSION and answer["config_version"] == 7
    assert answer["journal_depth"] == 2 and answer["refused"] == 0
    assert answer["uptime_s"] == 65 and answer["errors"] == []
    assert answer["time"] == BOARD_START_S
    assert rig.uplink.stats["diag_answered"] == 1


def test_the_answer_counts_refused_records_and_names_the_last_errors():
    rig = Rig(records=2)
    rig.deliver(topics.LEAF_ACK, ack(2, BOARD_START_S, rejected=[(1, "time_invalid")]))
    rig.deliver(topics.LEAF_DIAG, diag_request(5, key=OTHER_KEY))  # cannot verify: nothing
    rig.deliver(topics.LEAF_DIAG, diag_request(6))
    [answer] = answers(rig)
    assert answer["refused"] == 1 and answer["journal_depth"] == 0
    assert answer["errors"] == ["time_invalid", reasons.MAC_INVALID]
    assert answer["config_version"] == 0  # an uplink without a terminal: none known


def test_an_unsigned_or_foreign_request_gets_nothing():
    rig = Rig()
    unsigned = messages.encode(messages.TYPE_DIAG_REQUEST,
                               {"terminal": TERMINAL, "request": 1, "time": GATEWAY_S})
    rig.deliver(topics.LEAF_DIAG, unsigned)
    rig.deliver(topics.LEAF_DIAG, diag_request(2, key=OTHER_KEY))
    rig.deliver(topics.LEAF_DIAG, diag_request(3, terminal="T2"))  # another's, under our key
    assert answers(rig) == []
    assert rig.uplink.stats["bad_downlinks"] == 3


def test_a_replayed_or_older_request_is_ignored():
    rig = Rig()
    rig.deliver(topics.LEAF_DIAG, diag_request(10, GATEWAY_S))
    rig.deliver(topics.LEAF_DIAG, diag_request(10, GATEWAY_S))  # the same again
    rig.deliver(topics.LEAF_DIAG, diag_request(11, GATEWAY_S - 1))  # older than one taken
    rig.deliver(topics.LEAF_DIAG, diag_request(12, GATEWAY_S))  # new id, same second
    assert [answer["request"] for answer in answers(rig)] == [10, 12]
    assert rig.uplink.stats["diag_stale"] == 2


def test_an_id_beyond_the_remembered_ones_is_stopped_by_its_time():
    rig = Rig()
    for n in range(DIAG_SEEN_MAX + 1):
        rig.deliver(topics.LEAF_DIAG, diag_request(100 + n, GATEWAY_S + n))
    rig.deliver(topics.LEAF_DIAG, diag_request(100, GATEWAY_S))  # its id forgotten by now
    assert len(answers(rig)) == DIAG_SEEN_MAX + 1
    assert rig.uplink.stats["diag_stale"] == 1


def test_once_the_clock_follows_the_gateway_a_stale_time_is_ignored():
    rig = Rig(records=1)
    rig.deliver(topics.LEAF_ACK, ack(1, BOARD_START_S))  # a fresh answer: clock in step
    rig.deliver(topics.LEAF_DIAG, diag_request(20, BOARD_START_S + DIAG_FRESH_S + 1))
    rig.deliver(topics.LEAF_DIAG, diag_request(21, BOARD_START_S + DIAG_FRESH_S))
    assert [answer["request"] for answer in answers(rig)] == [21]
    assert rig.clock.now_s() == BOARD_START_S  # a diag request never moves the clock


def test_no_answer_while_an_authorization_is_awaited_then_one_after():
    rig = Rig()

    def gateway(topic, payload):  # it asks for a diag while the sale waits, never answers
        if topic.endswith("/up/auth"):
            return [(topics.down(MERCHANT, TERMINAL, topics.LEAF_DIAG), diag_request(30))]
        return []

    rig.net.answer = gateway
    request = {"card": "04a1a2a3a4a5a6", "kind": 3, "currency": "EUR", "amount_minor": 100}
    assert rig.uplink.authorize(request, 500) is None
    assert answers(rig) == []  # taken during the sale, not answered in it
    rig.uplink.service(0)
    assert [answer["request"] for answer in answers(rig)] == [30]


def test_a_busy_terminal_answers_at_its_next_idle_turn_only_the_newest_request():
    rig = Rig()
    busy = [True]
    rig.uplink.diag_view = lambda: None if busy[0] else idle_view()
    rig.deliver(topics.LEAF_DIAG, diag_request(40))
    rig.deliver(topics.LEAF_DIAG, diag_request(41, GATEWAY_S + 1))
    assert answers(rig) == []
    busy[0] = False
    rig.uplink.service(0)
    rig.uplink.service(0)
    assert [answer["request"] for answer in answers(rig)] == [41]


def test_the_error_list_is_bounded_newest_last_without_repeats():
    errors = []
    for n in range(DIAG_ERRORS_MAX + 3):
        note_error(errors, "reason_%d" % n)
        note_error(errors, "reason_%d" % n)
    note_error(errors, "not an id: spaces")
    assert len(errors) == DIAG_ERRORS_MAX
    assert errors[-1] == "reason_%d" % (DIAG_ERRORS_MAX + 2) and errors[0] == "reason_3"


def test_the_terminal_answers_between_customers_with_its_declines_and_config():
    rig = Rig()
    settings = Settings(KEY, PROGRAMS)
    settings.apply({"config_version": 3, "limits": {"txn_minor_max": 1000,
                    "card_offline_minor_max": 1500, "terminal_offline_minor_max": 2000,
                    "offline_s_max": 60, "offline_txn_max": 3},
                    "programs": PROGRAMS, "hotlist": []}, None)
    reader = FakeReader()
    reader.tap = (None, None, reasons.CARD_PULLED)
    shown = []

    class Display:
        def show(self, text):
            shown.append(text)

    config = {"terminal": TERMINAL, "merchant": MERCHANT, "key": KEY, "currency": "EUR"}
    terminal = Terminal(config, rig.journal, rig.uplink, rig.clock, reader, Display(),
                        settings)
    assert terminal.purchase(500)["reason"] == reasons.CARD_PULLED
    terminal.state = "authorizing"  # as in a sale: no answer may go out
    rig.net.inbox.append((topics.down(MERCHANT, TERMINAL, topics.LEAF_DIAG),
                          diag_request(50)))
    rig.uplink.service(0)
    assert answers(rig) == []
    terminal.state = IDLE
    terminal.service(0)
    [answer] = answers(rig)
    assert answer["config_version"] == 3 and answer["errors"] == [reasons.CARD_PULLED]
