"""The gateway's re-check of offline count, totals and time (gateway/offline_episodes.py):
what it refuses, what it never refuses (an honest terminal applying protocol.offline.decide,
on random runs), and how the stages carry what the gateway told each terminal to it."""

from __future__ import annotations

import logging
import queue
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import store_reports
from gateway.acks import AckOut, AckStage
from gateway.answered import Answered
from gateway.authorize import AuthorizeStage
from gateway.cards import CardBook
from gateway.ingest import IngestStage
from gateway.offline_episodes import OFFLINE_CLOCK_TOLERANCE_S, OfflineEpisodes, Told
from gateway.registry import TerminalRegistry
from gateway.stats import Stats
from gateway.store import GatewayStore
from gateway.verify import Verified, Verifier
from gateway.verify_stage import VerifyStage
from protocol import cbor, cose, messages, offline, topics, txn
from protocol.errors import ValidationError
from tests.support.card_loads import approve_load, load_auth_id
from tools.demo import DEMO_PROGRAMS

NOW_S = 1_764_000_000
LIMITS = {"txn_minor_max": 1000, "card_offline_minor_max": 1500,
          "terminal_offline_minor_max": 2500, "offline_s_max": 600, "offline_txn_max": 4}
KEY = bytes(range(32))
TXN_TOPIC = topics.up("M1", "T1", topics.LEAF_TXN)


def sale(seq: int, card: str = "c1", value: int = 100, time_s: int = NOW_S,
         auth_mode: int = txn.AUTH_OFFLINE, terminal: str = "T1") -> dict[str, Any]:
    return {"terminal": terminal, "seq": seq, "card": card, "card_value_minor": value,
            "time": time_s, "auth_mode": auth_mode, "kind": txn.KIND_PURCHASE}


def take(episodes: OfflineEpisodes, record: dict[str, Any], told: Told) -> str | None:
    """What ingest does: judge, and keep what was accepted."""
    reason = episodes.refusal(record, told)
    if reason is None:
        episodes.accept(record, told)
    return reason


TOLD = Told(0, NOW_S)


def test_offline_records_of_one_episode_are_bounded_by_count_card_and_terminal_totals(
) -> None:
    """Records that arrived before any ack of them count together: the fifth is past
    offline_txn_max, a card past its total, the terminal past its total."""
    episodes = OfflineEpisodes(LIMITS)
    assert [take(episodes, sale(seq, card=f"c{seq}", value=10), TOLD)
            for seq in range(1, 7)] == [None] * 4 + ["offline_count_limit"] * 2
    episodes = OfflineEpisodes(LIMITS)
    assert [take(episodes, sale(seq, value=600), TOLD) for seq in (1, 2, 3)] == [
        None, None, "offline_card_limit"]
    assert take(episodes, sale(4, card="c2", value=900), TOLD) is None  # 2100 of 2500
    assert take(episodes, sale(5, card="c3", value=500), TOLD) == "offline_terminal_limit"
    assert take(episodes, sale(6, card="c3", value=400), TOLD) is None  # exactly 2500
    assert [seq for seq, _, _ in episodes.episode_of("T1")] == [1, 2, 4, 6]


def test_refused_and_online_records_do_not_count() -> None:
    """Only accepted offline records are in the books, so only they count; an online or
    stand-in record is not judged here at all."""
    episodes = OfflineEpisodes(LIMITS)
    assert take(episodes, sale(1, value=1500), TOLD) is None
    assert take(episodes, sale(2, value=1), TOLD) == "offline_card_limit"
    assert take(episodes, sale(3, value=5000, auth_mode=txn.AUTH_ONLINE), TOLD) is None
    assert take(episodes, sale(4, value=5000, auth_mode=txn.AUTH_STAND_IN), TOLD) is None
    assert take(episodes, sale(5, card="c2", value=1000), TOLD) is None  # 2500: no refused
    assert episodes.episode_of("T1") == [(1, "c1", 1500), (5, "c2", 1000)]


def test_an_ack_sent_before_a_record_arrived_ends_the_episode_up_to_its_seq() -> None:
    """A partial ack forgets only what it covered; the records after it still count."""
    episodes = OfflineEpisodes(LIMITS)
    for seq in (1, 2, 3):
        assert take(episodes, sale(seq, value=500), TOLD) is None
    assert take(episodes, sale(4, value=500), TOLD) == "offline_card_limit"
    assert take(episodes, sale(5, value=500), Told(1, NOW_S)) is None  # 2, 3 and 5
    assert take(episodes, sale(6, value=500), Told(1, NOW_S)) == "offline_card_limit"
    assert take(episodes, sale(7, value=500), Told(3, NOW_S)) is None  # 5 and 7
    # An older stamp (a record that arrived before the ack through 3) brings nothing back.
    assert take(episodes, sale(8, card="c2", value=1000), Told(0, NOW_S)) is None
    assert episodes.episode_of("T1") == [(5, "c1", 500), (7, "c1", 500), (8, "c2", 1000)]
    assert take(episodes, sale(9, value=1500), Told(8, NOW_S)) is None  # all acked


def test_terminals_have_episodes_of_their_own() -> None:
    episodes = OfflineEpisodes(LIMITS)
    assert take(episodes, sale(1, value=1500), TOLD) is None
    assert take(episodes, sale(1, value=1500, terminal="T2"), TOLD) is None
    assert take(episodes, sale(2, value=1), TOLD) == "offline_card_limit"


def test_a_record_dated_past_offline_s_max_and_the_tolerance_after_the_last_answer_is_refused(
) -> None:
    episodes = OfflineEpisodes(LIMITS)
    bound_s = NOW_S + LIMITS["offline_s_max"] + OFFLINE_CLOCK_TOLERANCE_S
    assert take(episodes, sale(1, time_s=bound_s), TOLD) is None
    assert take(episodes, sale(2, time_s=bound_s + 1), TOLD) == "offline_time_limit"
    assert take(episodes, sale(3, time_s=bound_s + 1), Told(0, NOW_S + 1)) is None
    assert take(episodes, sale(4, time_s=NOW_S - 86_400), TOLD) is None  # sold long ago


def test_no_configured_limits_means_no_offline_record() -> None:
    assert OfflineEpisodes({}).refusal(sale(1, value=0), TOLD) == "offline_count_limit"


def test_what_was_answered_only_moves_forward_and_starts_at_the_chain_head() -> None:
    """A new gateway cannot know what the one before sent: every terminal is taken to have
    had the ack through its stored head, and an answer when it started."""
    answered = Answered({"T1": 7}, NOW_S)
    assert answered.told("T1") == Told(7, NOW_S)
    assert answered.told("T2") == Told(0, NOW_S)
    answered.acked("T2", 3, NOW_S + 5)
    answered.acked("T2", 2, NOW_S + 4)  # an earlier chunk of the same ack
    answered.replied("T1", NOW_S + 9)
    assert answered.told("T2") == Told(3, NOW_S + 5)
    assert answered.told("T1") == Told(7, NOW_S + 9)


# -- an honest terminal, on random runs ------------------------------------------------------

CLOCK_STEP_S = 5  # firmware/hal.py: a terminal leaves a gap this small alone
START_S = float(NOW_S)

# Waits and amounts are drawn as fractions of the limits, so that runs reach every bound;
# sales, arrivals and acks come more often than the rest.
sell = st.tuples(st.just("offline"), st.sampled_from(["c1", "c2", "c3"]), st.floats(0, 1.1),
                 st.floats(0, 1.5))  # of txn_minor_max; seconds from decision to record
event = st.one_of(
    sell, sell, sell, sell,
    st.tuples(st.just("wait"), st.floats(0, 0.3), st.floats(0, 2)),  # of offline_s_max, + s
    st.tuples(st.just("wait"), st.floats(0.3, 1.2), st.just(0.0)),
    st.tuples(st.just("online"), st.sampled_from(["c1", "c2", "c3"])),
    st.tuples(st.just("unheard_answer")),  # the terminal gave up before it came
    st.tuples(st.just("arrive"), st.integers(0, 50)),
    st.tuples(st.just("arrive"), st.just(0)), st.tuples(st.just("arrive"), st.just(0)),
    st.tuples(st.just("commit")), st.tuples(st.just("commit")),
    st.tuples(st.just("hear_ack"), st.booleans()),  # False: lost on the way
    st.tuples(st.just("hear_ack"), st.just(True)), st.tuples(st.just("hear_ack"), st.just(True)),
    st.tuples(st.just("gateway_restart")),
    st.tuples(st.just("terminal_restart"), st.integers(-3_600, 3_600)),
)
limits_strategy = st.fixed_dictionaries({
    "txn_minor_max": st.integers(0, 1500), "card_offline_minor_max": st.integers(0, 3000),
    "terminal_offline_minor_max": st.integers(0, 5000),
    "offline_s_max": st.sampled_from([0, 60, 600, 86_400]),
    "offline_txn_max": st.integers(1, 8)})


class HonestTerminal:
    """protocol.offline.decide over the offline records its journal holds unacknowledged,
    and its clock as firmware/hal.py SyncedClock keeps it (drifting, corrected from fresh
    answers only when more than CLOCK_STEP_S away)."""

    def __init__(self, limits: dict[str, int], drift: float, rtc_error_s: int) -> None:
        self.limits = offline.check_limits(limits)
        self.drift = drift
        self.rtc_error_s = rtc_error_s
        self.offset_s = 0
        self.seq = 0
        self.acked_through = 0
        self.journal: list[tuple[int, str, int, int]] = []  # seq, card, value, auth_mode
        self.last_online_s: int | None = None

    def now_s(self, real_s: float) -> int:
        rtc = int(START_S + (real_s - START_S) * (1 + self.drift)) + self.rtc_error_s
        return rtc + self.offset_s

    def fresh_answer(self, gateway_s: int, real_s: float) -> None:
        if abs(gateway_s - self.now_s(real_s)) > CLOCK_STEP_S:
            self.offset_s += gateway_s - self.now_s(real_s)
        self.last_online_s = self.now_s(real_s)

    def hear_ack(self, acked_through: int, gateway_s: int, real_s: float) -> None:
        if acked_through > self.acked_through:  # it freed records: a fresh answer
            self.acked_through = acked_through
            self.journal = [r for r in self.journal if r[0] > acked_through]
            self.fresh_answer(gateway_s, real_s)

    def record(self, card: str, value: int, auth_mode: int, real_s: float) -> dict[str, Any]:
        self.seq += 1
        self.journal.append((self.seq, card, value, auth_mode))
        return sale(self.seq, card, value, self.now_s(real_s), auth_mode)

    def offline_sale(self, card: str, value: int, real_s: float) -> bool:
        pending = [(c, v) for _, c, v, mode in self.journal if mode == txn.AUTH_OFFLINE]
        return offline.decide(self.limits, pending, card, value, self.now_s(real_s),
                              self.last_online_s) is None


class Run:
    """One terminal and the gateway's side of it: records arrive (stamped with what the
    gateway had sent by then), are placed in seq order, judged, committed and acked."""

    def __init__(self, limits: dict[str, int], drift: float, rtc_error_s: int) -> None:
        self.limits = limits
        self.real_s = START_S
        self.terminal = HonestTerminal(limits, drift, rtc_error_s)
        self.outbox: list[dict[str, Any]] = []  # made (or to be resent), not yet arrived
        self.arrived: dict[int, tuple[dict[str, Any], Told]] = {}  # held for a gap
        self.uncommitted: list[dict[str, Any]] = []  # placed since the last commit
        self.acks: list[tuple[int, int]] = []  # sent, not yet heard: (acked_through, time)
        self.head = 0
        self.start_gateway()

    def start_gateway(self) -> None:
        self.answered = Answered({"T1": self.head}, self.real_s)
        self.episodes = OfflineEpisodes(self.limits)

    def step(self, step: tuple[Any, ...]) -> None:
        name = step[0]
        if name == "wait":
            self.real_s += step[1] * self.limits["offline_s_max"] + step[2]
        elif name == "offline":
            _, card, fraction, build_s = step
            value = int(fraction * self.limits["txn_minor_max"])
            if self.terminal.offline_sale(card, value, self.real_s):
                self.real_s += build_s  # the record's time is read after the decision
                self.outbox.append(self.terminal.record(card, value, txn.AUTH_OFFLINE,
                                                        self.real_s))
        elif name == "online":
            self.answered.replied("T1", self.real_s)
            self.terminal.fresh_answer(int(self.real_s), self.real_s)
            self.outbox.append(self.terminal.record(step[1], 100, txn.AUTH_ONLINE,
                                                    self.real_s))
        elif name == "unheard_answer":
            self.answered.replied("T1", self.real_s)
        elif name == "arrive" and self.outbox:
            record = self.outbox.pop(step[1] % len(self.outbox))
            if record["seq"] > self.head:
                self.arrived[record["seq"]] = (record, self.answered.told("T1"))
            self.place()
        elif name == "commit" and self.uncommitted:
            self.answered.acked("T1", self.head, self.real_s)  # noted before it is sent
            self.acks.append((self.head, int(self.real_s)))
            self.uncommitted = []
        elif name == "hear_ack" and self.acks:
            acked_through, gateway_s = self.acks.pop(0)
            if step[1]:
                self.terminal.hear_ack(acked_through, gateway_s, self.real_s)
        elif name == "gateway_restart":
            # What was placed but not committed, or held, is lost: the terminal resends it.
            self.head -= len(self.uncommitted)
            self.outbox.extend(self.uncommitted + [r for r, _ in self.arrived.values()])
            self.uncommitted, self.arrived = [], {}
            self.start_gateway()
        elif name == "terminal_restart":
            self.terminal.offset_s, self.terminal.rtc_error_s = 0, step[1]
            self.terminal.last_online_s = None

    def place(self) -> None:
        while self.head + 1 in self.arrived:
            record, told = self.arrived.pop(self.head + 1)
            reason = self.episodes.refusal(record, told)
            assert reason is None, (reason, record, told, self.episodes.episode_of("T1"))
            self.episodes.accept(record, told)
            self.uncommitted.append(record)
            self.head += 1


@settings(max_examples=300, deadline=None)
@given(limits_strategy, st.floats(-1e-4, 1e-4), st.integers(-8, 8),
       st.lists(event, min_size=40, max_size=200))
def test_an_honest_terminal_is_never_refused(limits: dict[str, int], drift: float,
                                             rtc_error_s: int,
                                             events: list[tuple[Any, ...]]) -> None:
    """Whatever the order of its sales, answers heard or lost, partial acks, records arriving
    out of order, restarts of the gateway or the terminal, and a clock that drifts: no
    record a terminal made by protocol.offline.decide is refused by the gateway's rule."""
    run = Run(limits, drift, rtc_error_s)
    run.step(("online", "c1"))  # a terminal must have been online once to sell offline
    for step in events:
        run.step(step)
    while run.outbox:  # everything arrives in the end
        run.step(("arrive", 0))
    assert run.head == run.terminal.seq


@settings(max_examples=200, deadline=None)
@given(limits_strategy, st.lists(st.tuples(st.sampled_from(["c1", "c2", "c3"]),
                                           st.integers(0, 1500), st.integers(-100, 100_000)),
                                 max_size=40))
def test_a_stolen_key_gets_no_more_per_episode_than_the_signed_limits(
    limits: dict[str, int], forged: list[tuple[str, int, int]]
) -> None:
    """Any records at all, arriving before any ack of them: what is accepted keeps the
    count, the card and terminal totals and the time of the signed limits."""
    episodes = OfflineEpisodes(limits)
    taken = []
    for seq, (card, value, after_s) in enumerate(forged, start=1):
        record = sale(seq, card, value, NOW_S + after_s)
        if take(episodes, record, TOLD) is None:
            taken.append(record)
    assert len(taken) <= limits["offline_txn_max"]
    assert sum(r["card_value_minor"] for r in taken) <= limits["terminal_offline_minor_max"]
    for card in ("c1", "c2", "c3"):
        assert sum(r["card_value_minor"] for r in taken if r["card"] == card) <= limits[
            "card_offline_minor_max"]
    assert all(r["time"] <= NOW_S + limits["offline_s_max"] + OFFLINE_CLOCK_TOLERANCE_S
               for r in taken)


# -- wired into the card book and the stages ------------------------------------------------

def _registry() -> TerminalRegistry:
    registry = TerminalRegistry()
    registry.add("T1", "M1", KEY)
    return registry


def _record(seq: int, prev: bytes, **changes: Any) -> bytes:
    fields: dict[str, Any] = {
        "terminal": "T1", "seq": seq, "prev": prev, "time": NOW_S, "merchant": "M1",
        "card": "04a1", "kind": txn.KIND_PURCHASE, "currency": "EUR", "amount_minor": 600,
        "card_value_minor": 600, "bonus_minor": 0, "points": 0,
        "auth_mode": txn.AUTH_OFFLINE, "program": "gift", "version": 1}
    fields.update(changes)
    return txn.seal(KEY, fields)


def test_the_card_book_refuses_counts_and_alarms_like_any_offline_refusal(
    caplog: pytest.LogCaptureFixture
) -> None:
    book = CardBook(DEMO_PROGRAMS, offline_limits=LIMITS, episodes=OfflineEpisodes(LIMITS))
    issue = {"terminal": "T1", "seq": 1, "merchant": "M1", "card": "c1",
             "kind": txn.KIND_ISSUE, "currency": "EUR", "amount_minor": 5000,
             "card_value_minor": 5000, "bonus_minor": 0, "points": 0, "program": "gift",
             "auth_mode": txn.AUTH_ONLINE, "time": NOW_S}
    book.apply(issue, book.check(approve_load(book, issue), told=TOLD))
    record = dict(issue, kind=txn.KIND_PURCHASE, amount_minor=800, card_value_minor=800,
                  auth_mode=txn.AUTH_OFFLINE, program=None)
    first = dict(record, seq=2)
    book.apply(first, book.check(first, told=TOLD))
    with caplog.at_level(logging.WARNING), pytest.raises(ValidationError) as caught:
        book.check(dict(record, seq=3), told=TOLD)
    assert caught.value.reason == "offline_card_limit"
    assert "ALARM offline record T1-3 beyond its signed rules" in caplog.text
    assert book.offline_over_limit == {"T1": 1}
    assert book.cards["c1"]["value_minor"] == 5000 - 800
    # Without a stamp (a record verified outside the verify stage): its episode still counts.
    with pytest.raises(ValidationError):
        book.check(dict(record, seq=3))
    acked = dict(record, seq=3)
    book.apply(acked, book.check(acked, told=Told(2, NOW_S)))
    assert book.cards["c1"]["value_minor"] == 5000 - 1600


def _ingest(store: GatewayStore, acks: queue.Queue[AckOut | None]) -> IngestStage:
    book = CardBook(DEMO_PROGRAMS, store.load_cards(), offline_limits=LIMITS,
                    episodes=OfflineEpisodes(LIMITS))
    return IngestStage(store, book, Stats(), queue.Queue(), acks)


def test_ingest_refuses_a_burst_past_the_episode_and_takes_it_again_after_an_ack_or_restart(
    tmp_path: Path
) -> None:
    """Refused with its reason in the signed ack, stored as refused, nothing applied; a
    record that arrives after the ack starts a new episode, and so does one that arrives
    at a restarted gateway (it cannot know whether its ack went out)."""
    store = GatewayStore(str(tmp_path / "gw.db"))
    acks: queue.Queue[AckOut | None] = queue.Queue()
    stage = _ingest(store, acks)
    verifier = Verifier(_registry())
    records = [_record(1, txn.GENESIS_DIGEST, kind=txn.KIND_ISSUE, amount_minor=5000,
                       card_value_minor=5000, auth_mode=txn.AUTH_ONLINE,
                       auth_id=load_auth_id(stage.cards, "04a1", txn.KIND_ISSUE, 5000, NOW_S,
                                            "gift"))]
    for seq in (2, 3, 4):
        records.append(_record(seq, txn.digest(records[-1])))
    stage.process([verifier.transaction(TXN_TOPIC, r, NOW_S, TOLD) for r in records])
    ack = acks.get_nowait()
    assert ack is not None and ack.rejected == [(4, "offline_card_limit")]
    assert [(r["seq"], r["reason"]) for r in store_reports.refusals(store)] == [
        (4, "offline_card_limit")]
    assert stage.cards.cards["04a1"]["value_minor"] == 5000 - 1200
    after_ack = _record(5, txn.digest(records[-1]))
    stage.process([verifier.transaction(TXN_TOPIC, after_ack, NOW_S, Told(4, NOW_S))])
    assert acks.get_nowait().rejected == []  # type: ignore[union-attr]
    # The next one arrived before that ack: it counts with 5, and with 2 and 3 no more.
    sixth = _record(6, txn.digest(after_ack))
    stage.process([verifier.transaction(TXN_TOPIC, sixth, NOW_S, Told(4, NOW_S))])
    seventh = _record(7, txn.digest(sixth))
    stage.process([verifier.transaction(TXN_TOPIC, seventh, NOW_S, Told(4, NOW_S))])
    assert acks.get_nowait().rejected == []  # type: ignore[union-attr]
    assert acks.get_nowait().rejected == [(7, "offline_card_limit")]  # type: ignore[union-attr]
    restarted = _ingest(store, acks)
    told = Answered({t: seq for t, (seq, _) in store.load_chain().items()}, NOW_S).told("T1")
    assert told.acked_through == 7
    eighth = _record(8, txn.digest(seventh))
    restarted.process([verifier.transaction(TXN_TOPIC, eighth, NOW_S, told)])
    assert acks.get_nowait().rejected == []  # type: ignore[union-attr]
    assert restarted.cards.cards["04a1"]["value_minor"] == 5000 - 3000
    store.close()


def test_the_stages_note_what_they_send_and_records_carry_it() -> None:
    """Acks and authorization responses are noted before they go out; a record carries what
    was noted when the verify stage took it."""
    answered = Answered({}, NOW_S)
    published: list[tuple[str, bytes, Told]] = []

    def publish(topic: str, payload: bytes) -> None:
        published.append((topic, payload, answered.told("T1")))

    acks = AckStage(_registry(), publish, Stats(), queue.Queue(), clock=lambda: NOW_S + 3,
                    answered=answered)
    out = AckOut("M1", "T1")
    out.acked_through = 4
    acks.handle(out)
    assert published[-1][2] == Told(4, NOW_S + 3)
    authorize = AuthorizeStage(Verifier(_registry()), _registry(), CardBook(DEMO_PROGRAMS),
                               Stats(), publish, queue.Queue(), queue.Queue(),
                               answered=answered)
    request = {0: messages.TYPE_AUTH_REQUEST, 1: 1, 2: "T1", 20: 42, 5: NOW_S, 6: "M1",
               7: "04a1", 8: txn.KIND_PURCHASE, 9: "EUR", 10: -1}
    authorize.handle((topics.up("M1", "T1", topics.LEAF_AUTH),
                      cose.create(KEY, cbor.encode(request), b"T1"), time.monotonic()))
    assert published[-1][2].acked_through == 4
    assert published[-1][2].answered_s > NOW_S + 3  # now, the gateway's clock
    outbox: queue.Queue[Verified | None] = queue.Queue()
    verify = VerifyStage(Verifier(_registry()), Stats(), queue.Queue(), outbox, queue.Queue(),
                         answered=answered)
    verify.handle((TXN_TOPIC, _record(5, txn.GENESIS_DIGEST)))
    verified = outbox.get_nowait()
    assert verified is not None and verified.told == answered.told("T1")
