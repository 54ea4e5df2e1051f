"""Each gateway stage on its own, with its queues and a real store, no broker: verify sorts
uplinks into records and notices, ingest commits and acks (refusals included), authorize
answers signed with the gateway's clock."""

from __future__ import annotations

import queue
import time
from pathlib import Path
from typing import Any

from gateway import store_reports
from gateway.acks import AckOut, AckStage
from gateway.authorize import AUTH_WAIT_MAX_MS, AuthorizeStage
from gateway.cards import CardBook
from gateway.ingest import IngestStage
from gateway.registry import TerminalRegistry
from gateway.stage import Stage
from gateway.stats import Stats
from gateway.store import GatewayStore
from gateway.verify import Verified, Verifier
from gateway.verify_stage import VerifyStage
from protocol import cbor, cose, messages, sealed, topics, txn
from tests.support.card_loads import load_auth_id
from tools.demo import DEMO_PROGRAMS

KEY = bytes(range(32))
TXN_TOPIC = topics.up("M1", "T1", topics.LEAF_TXN)
NOW_S = 1_764_000_000


def _registry() -> TerminalRegistry:
    registry = TerminalRegistry()
    registry.add("T1", "M1", KEY)
    return registry


def _record(seq: int, prev: bytes, **changes: Any) -> bytes:
    fields: dict[str, Any] = {
        "terminal": "T1", "seq": seq, "prev": prev, "time": NOW_S, "merchant": "M1",
        "card": "04a1", "kind": txn.KIND_PURCHASE, "currency": "EUR", "amount_minor": 100,
        "card_value_minor": 100, "bonus_minor": 0, "points": 0, "auth_mode": txn.AUTH_ONLINE}
    fields.update(changes)
    return txn.seal(KEY, fields)


def test_verify_passes_records_on_and_answers_the_rest_with_notices() -> None:
    inbox: queue.Queue[Any] = queue.Queue()
    outbox: queue.Queue[Verified | None] = queue.Queue(1)
    notices: queue.Queue[AckOut | None] = queue.Queue()
    stats = Stats()
    stage = VerifyStage(Verifier(_registry()), stats, inbox, outbox, notices)
    good = _record(1, txn.GENESIS_DIGEST)
    stage.handle((TXN_TOPIC, good))
    assert outbox.get_nowait().seq == 1  # type: ignore[union-attr]
    stage.handle((TXN_TOPIC, _record(1, txn.GENESIS_DIGEST)[:-1] + b"\x00"))  # tag altered
    unsigned = notices.get_nowait()
    assert unsigned is not None
    assert (unsigned.notice_reason, unsigned.notice_sealed) == ("mac_invalid", False)
    no_seq = cose.create(KEY, cbor.encode({0: 1, 1: 1, 2: "T1"}), b"T1")
    stage.handle((TXN_TOPIC, no_seq))
    signed = notices.get_nowait()
    assert signed is not None
    assert (signed.notice_reason, signed.notice_sealed) == ("field_missing", True)
    stage.handle((TXN_TOPIC, good))  # the ingest queue holds one: this one finds it full
    stage.handle((TXN_TOPIC, good))
    full = notices.get_nowait()
    assert full is not None and (full.notice_reason, full.notice_seq) == ("queue_full", 1)
    assert stats.snapshot()["dropped.ingest"] == 1


def test_ingest_commits_then_acks_refusals_with_their_seq_and_goes_on(tmp_path: Path) -> None:
    store = GatewayStore(str(tmp_path / "gw.db"))
    acks: queue.Queue[AckOut | None] = queue.Queue()
    book = CardBook(DEMO_PROGRAMS)
    stage = IngestStage(store, book, Stats(), queue.Queue(), acks)
    verifier = Verifier(_registry())
    issue = _record(1, txn.GENESIS_DIGEST, kind=txn.KIND_ISSUE, amount_minor=1000,
                    card_value_minor=1000, program="gift",
                    auth_id=load_auth_id(book, "04a1", txn.KIND_ISSUE, 1000, NOW_S, "gift"))
    wrong = _record(2, txn.digest(issue), card_value_minor=100, points=7)  # gift: no points
    onward = _record(3, txn.digest(wrong))
    stage.process([verifier.transaction(TXN_TOPIC, r, NOW_S) for r in (issue, wrong, onward)])
    ack = acks.get_nowait()
    assert ack is not None and (ack.acked_through, ack.rejected) == (3, [(2, "rule_mismatch")])
    refused = store_reports.refusals(store)
    assert [(r["seq"], r["reason"]) for r in refused] == [(2, "rule_mismatch")]
    # A resend of the refused record is answered the same way, from the store.
    stage.process([verifier.transaction(TXN_TOPIC, wrong, NOW_S)])
    again = acks.get_nowait()
    assert again is not None and again.rejected == [(2, "rule_mismatch")]
    assert store.counters()["rejected.rule_mismatch"] == 1
    store.close()


def test_authorize_declines_a_signed_bad_request_with_its_request_id_and_the_time() -> None:
    published: list[tuple[str, bytes]] = []
    stage = AuthorizeStage(Verifier(_registry()), _registry(), CardBook(DEMO_PROGRAMS),
                           Stats(), lambda topic, payload: published.append((topic, payload)),
                           queue.Queue(), queue.Queue())
    request = {0: messages.TYPE_AUTH_REQUEST, 1: 1, 2: "T1", 20: 42, 5: NOW_S, 6: "M1",
               7: "04a1", 8: txn.KIND_PURCHASE, 9: "EUR", 10: -1}
    stage.handle((topics.up("M1", "T1", topics.LEAF_AUTH),
                  cose.create(KEY, cbor.encode(request), b"T1"), time.monotonic()))
    topic, payload = published[0]
    assert topic == topics.down("M1", "T1", topics.LEAF_AUTH)
    answer = sealed.open_message(payload, messages.TYPE_AUTH_RESPONSE, KEY)
    assert (answer["request"], answer["approved"], answer["reason"]) == (42, False,
                                                                         "field_invalid")
    assert abs(answer["time"] - time.time()) < 60  # the gateway's clock, not the request's


def test_a_request_that_waited_past_the_terminals_wait_is_dropped_unanswered() -> None:
    published: list[tuple[str, bytes]] = []
    stats = Stats()
    cards = CardBook(DEMO_PROGRAMS)
    stage = AuthorizeStage(Verifier(_registry()), _registry(), cards, stats,
                           lambda topic, payload: published.append((topic, payload)),
                           queue.Queue(), queue.Queue())
    request = {0: messages.TYPE_AUTH_REQUEST, 1: 1, 2: "T1", 20: 42, 5: NOW_S, 6: "M1",
               7: "04a1", 8: txn.KIND_ISSUE, 9: "EUR", 10: 500, 15: "gift"}
    arrived_s = time.monotonic() - (AUTH_WAIT_MAX_MS + 1) / 1000
    stage.handle((topics.up("M1", "T1", topics.LEAF_AUTH),
                  cose.create(KEY, cbor.encode(request), b"T1"), arrived_s))
    assert published == []
    assert stats.snapshot()["auth_stale"] == 1
    stage.handle((topics.up("M1", "T1", topics.LEAF_AUTH),
                  cose.create(KEY, cbor.encode(request), b"T1"), time.monotonic()))
    assert len(published) == 1  # the same request in time is answered


def test_the_ack_stage_seals_acks_and_notices_for_the_terminal_that_listens() -> None:
    published: list[tuple[str, bytes]] = []
    stage = AckStage(_registry(), lambda topic, payload: published.append((topic, payload)),
                     Stats(), queue.Queue(), clock=lambda: NOW_S)
    out = AckOut("M1", "T1")
    out.acked_through = 4
    out.rejected = [(3, "time_invalid")]
    stage.handle(out)
    stage.handle(AckOut("M1", "T1", "mac_invalid"))  # unsigned: it did not verify
    stage.handle(AckOut("M1", "T1", "field_missing", True, 9))  # sealed: it verified
    stage.handle(AckOut("M1", "T9"))  # nobody to seal for: counted, not sent
    topics_sent = [topic for topic, _ in published]
    assert topics_sent == [topics.down("M1", "T1", topics.LEAF_ACK),
                           topics.down("M1", "T1", topics.LEAF_NOTICE),
                           topics.down("M1", "T1", topics.LEAF_NOTICE)]
    ack = sealed.open_message(published[0][1], messages.TYPE_ACK, KEY)
    assert ack == {"terminal": "T1", "time": NOW_S, "acked_through": 4,
                   "rejected": [[3, "time_invalid"]]}
    assert messages.decode(published[1][1], messages.TYPE_NOTICE)["reason"] == "mac_invalid"
    notice = sealed.open_message(published[2][1], messages.TYPE_NOTICE, KEY)
    assert (notice["seq"], notice["reason"]) == (9, "field_missing")
    assert stage.stats.snapshot()["acks_unaddressable"] == 1


def test_a_stage_that_dies_says_so_instead_of_living_on_half_alive() -> None:
    deaths: list[tuple[str, str]] = []

    class Broken(Stage[int]):
        name = "gateway-broken"

        def handle(self, item: int) -> None:
            raise RuntimeError(f"cannot handle {item}")

    inbox: queue.Queue[int | None] = queue.Queue()
    stage = Broken(inbox, on_death=lambda name, error: deaths.append((name, str(error))))
    stage.start()
    inbox.put(7)
    stage.join(10.0)
    assert deaths == [("gateway-broken", "cannot handle 7")]


def test_a_gathering_stage_handles_every_item_in_order_then_stops_and_idles_blocked() -> None:
    handled: list[int] = []

    class Gathering(Stage[int]):
        name = "gateway-gathering"
        gather_s = 0.001

        def handle(self, item: int) -> None:
            handled.append(item)

    inbox: queue.Queue[int | None] = queue.Queue()
    stage = Gathering(inbox)
    stage.start()
    for item in range(50):
        inbox.put(item)
    deadline_s = time.monotonic() + 10.0
    while len(handled) < 50 and time.monotonic() < deadline_s:
        time.sleep(0.01)
    time.sleep(0.05)  # idle now: blocked on its inbox, which a later item wakes
    for item in range(50, 100):
        inbox.put(item)
    inbox.put(None)
    stage.join(10.0)
    assert handled == list(range(100))
    assert not stage._thread.is_alive()
