"""Records the gateway approved that arrive before the record they depend on (another
terminal's sale or top-up) wait for it instead of being refused (gateway/parked.py):

- the parking rule: only an online record carrying what this gateway approved, declined only
  for card state, waits;
- in the ingest stage, a refund arriving before its sale is acked, parked durably, applied
  when the sale arrives (also after a restart), and refused with its reason past the bound;
- a property: two terminals' records, approved one after another, arriving in any order and
  any batches, are each applied exactly once and leave the card as authorization order does.
"""

from __future__ import annotations

import queue
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from gateway import authorizations, store_reports
from gateway.acks import AckOut
from gateway.cards import CardBook, record_till_amounts
from gateway.ingest import IngestStage
from gateway.parked import ParkedRecords, parkable
from gateway.registry import TerminalRegistry
from gateway.stats import Stats
from gateway.store import GatewayStore
from gateway.verify import Verified, Verifier
from protocol import topics, txn
from protocol.reasons import INSUFFICIENT_POINTS, REFUND_UNKNOWN_ORIGINAL, RULE_MISMATCH
from tools.demo import DEMO_PROGRAMS

NOW_S = 1_764_000_000
CARD = "04a1"
KEYS = {"T1": bytes(range(32)), "T2": bytes(range(1, 33))}


def _registry() -> TerminalRegistry:
    registry = TerminalRegistry()
    for terminal, key in KEYS.items():
        registry.add(terminal, "M1", key)
    return registry


class Counters:
    """Two terminals at one gateway: each asks for authorizations and seals, in its own
    seq order, the records of what was approved."""

    def __init__(self, book: CardBook, store: GatewayStore | None = None) -> None:
        self.book = book
        self.store = store  # where approvals are kept, as the authorize stage does
        self.verifier = Verifier(_registry())
        self.heads = {terminal: (0, txn.GENESIS_DIGEST) for terminal in KEYS}
        self.records: list[tuple[str, bytes]] = []  # (terminal, record), approval order

    def approve(self, terminal: str, kind: int, amount: int, card_value: int = 0,
                **extra: Any) -> str:
        """Ask, seal the record of the answer; returns its txn id."""
        sealed = self.ask(terminal, kind, amount, card_value, **extra)
        assert sealed is not None
        return sealed

    def ask(self, terminal: str, kind: int, amount: int, card_value: int = 0,
            **extra: Any) -> str | None:
        """Ask; approved, seal the record of the answer and return its txn id."""
        seq, prev = self.heads[terminal]
        asked = {"terminal": terminal, "kind": kind, "card": CARD, "currency": "EUR",
                 "amount_minor": amount, "card_value_minor": card_value, "time": NOW_S,
                 "seq": seq + 1, **extra}
        with self.book.lock:
            answer = self.book.authorize(asked, NOW_S)
        if not answer["approved"]:
            return None
        if self.store is not None:
            authorizations.keep(self.store, answer["auth_id"], terminal, CARD,
                                record_till_amounts(answer), txn.AUTH_ONLINE)
        fields = {"terminal": terminal, "seq": seq + 1, "prev": prev, "time": NOW_S,
                  "merchant": "M1", "card": CARD, "kind": kind, "currency": "EUR",
                  "amount_minor": answer.get("amount_minor", amount),
                  "auth_mode": txn.AUTH_ONLINE, "auth_id": answer["auth_id"]}
        for key in ("card_value_minor", "bonus_minor", "points", "discount_minor",
                    "redeem_points", "redeem_minor", "version"):
            fields[key] = answer.get(key, 0)
        for key in ("ref", "program"):
            if extra.get(key) is not None:
                fields[key] = extra[key]
        record = txn.seal(KEYS[terminal], fields)
        self.heads[terminal] = (seq + 1, txn.digest(record))
        self.records.append((terminal, record))
        return txn.txn_id(terminal, seq + 1)

    def verified(self, terminal: str, record: bytes) -> Verified:
        return self.verifier.transaction(topics.up("M1", terminal, topics.LEAF_TXN), record,
                                         NOW_S)


def _stage(tmp_path: Path, name: str = "gw.db",
           parked: ParkedRecords | None = None) -> tuple[IngestStage, queue.Queue[Any]]:
    acks: queue.Queue[AckOut | None] = queue.Queue()
    store = GatewayStore(str(tmp_path / name))
    return IngestStage(store, CardBook(DEMO_PROGRAMS), Stats(), queue.Queue(), acks,
                       parked=parked), acks


def _issued(stage: IngestStage) -> Counters:
    """A club card issued and topped up at T1, its records applied."""
    counters = Counters(stage.cards, stage.store)
    counters.approve("T1", txn.KIND_ISSUE, 0, program="club")
    stage.process([counters.verified(t, r) for t, r in counters.records])
    counters.approve("T1", txn.KIND_TOPUP, 10_000)
    stage.process([counters.verified(t, r) for t, r in counters.records[1:]])
    counters.records.clear()
    return counters


def _acks(acks: queue.Queue[Any]) -> list[AckOut]:
    found = []
    while not acks.empty():
        found.append(acks.get_nowait())
    return found


def _statuses(store: GatewayStore) -> dict[str, tuple[str, str | None]]:
    rows = store.read("SELECT txn_id, status, reason FROM records ORDER BY rowid")
    return {txn_id: (status, reason) for txn_id, status, reason in rows}


def test_only_an_online_record_carrying_its_approval_and_missing_card_state_waits() -> None:
    online = {"auth_mode": txn.AUTH_ONLINE}
    approval = {"terminal": "T2", "card": CARD, "expect": {}, "auth_mode": txn.AUTH_ONLINE}
    assert parkable(online, REFUND_UNKNOWN_ORIGINAL, approval)
    assert parkable(online, INSUFFICIENT_POINTS, approval)
    assert not parkable(online, RULE_MISMATCH, approval)  # not for missing state
    assert not parkable(online, REFUND_UNKNOWN_ORIGINAL, None)  # not what was approved
    assert not parkable({"auth_mode": txn.AUTH_OFFLINE}, REFUND_UNKNOWN_ORIGINAL, approval)


def test_the_card_book_finds_an_approval_only_for_the_amounts_it_answered(
        tmp_path: Path) -> None:
    stage, _ = _stage(tmp_path)
    counters = _issued(stage)
    sale = counters.approve("T1", txn.KIND_PURCHASE, 2_000, 2_000)
    counters.approve("T2", txn.KIND_REFUND, 2_000, ref=sale)
    refund = counters.verified(*counters.records[-1])
    assert stage.cards.approval(dict(refund.fields)) is not None
    assert stage.cards.approval(dict(refund.fields, card_value_minor=1)) is None
    assert stage.cards.approval(dict(refund.fields, auth_id="never")) is None


def test_a_refund_before_its_sale_is_acked_parked_and_applied_after_the_sale(
        tmp_path: Path) -> None:
    stage, acks = _stage(tmp_path)
    counters = _issued(stage)
    _acks(acks)
    sale = counters.approve("T1", txn.KIND_PURCHASE, 2_000, 2_000)
    refund = counters.approve("T2", txn.KIND_REFUND, 2_000, ref=sale)
    (_, sale_record), (_, refund_record) = counters.records
    stage.process([counters.verified("T2", refund_record)])
    (ack,) = _acks(acks)
    assert (ack.terminal, ack.acked_through, ack.rejected) == ("T2", 1, [])
    assert _statuses(stage.store)[refund] == ("parked", REFUND_UNKNOWN_ORIGINAL)
    assert stage.store.counters()["parked"] == 1

    # The sale's record comes after a restart: the parked refund is found in the store.
    cards = stage.cards
    stage.store.close()
    stage, acks = _stage(tmp_path)
    stage.cards = cards  # the card book as the restarted gateway loads it
    assert len(stage.parked) == 1
    stage.process([counters.verified("T1", sale_record)])
    assert [(a.terminal, a.rejected) for a in _acks(acks)] == [("T1", [])]
    statuses = _statuses(stage.store)
    assert statuses[sale] == ("accepted", None) and statuses[refund] == ("accepted", None)
    assert list(statuses)[-2:] == [sale, refund]  # settlement posts the sale first
    assert len(stage.parked) == 0  # the card as before the sale: 10_000 and its bonus
    assert stage.cards.cards[CARD]["value_minor"] == 11_000
    assert store_reports.refusals(stage.store) == []


def test_a_parked_record_whose_antecedent_never_comes_is_refused_with_its_reason(
        tmp_path: Path) -> None:
    stage, acks = _stage(tmp_path, parked=ParkedRecords(wait_s=0.0))
    counters = _issued(stage)
    sale = counters.approve("T1", txn.KIND_PURCHASE, 2_000, 2_000)
    refund = counters.approve("T2", txn.KIND_REFUND, 2_000, ref=sale)
    stage.process([counters.verified(*counters.records[1])])
    assert _statuses(stage.store)[refund][0] == "parked"
    stage.process([])  # the bound has passed (0 s here): refused, alarmed, reported
    assert _statuses(stage.store)[refund] == ("rejected", REFUND_UNKNOWN_ORIGINAL)
    assert [r["txn_id"] for r in store_reports.refusals(stage.store)] == [refund]
    assert stage.store.counters()["parked_refused"] == 1 and len(stage.parked) == 0


def test_a_full_waiting_set_refuses_at_once(tmp_path: Path) -> None:
    stage, acks = _stage(tmp_path, parked=ParkedRecords(per_card_max=0))
    counters = _issued(stage)
    _acks(acks)
    sale = counters.approve("T1", txn.KIND_PURCHASE, 2_000, 2_000)
    counters.approve("T2", txn.KIND_REFUND, 2_000, ref=sale)
    stage.process([counters.verified(*counters.records[1])])
    (ack,) = _acks(acks)
    assert ack.rejected == [(1, REFUND_UNKNOWN_ORIGINAL)]
    assert stage.store.counters()["parked_full"] == 1


# A sale at one counter (paid from the card or not), then at the other what depends on it:
# a refund of it, or a redemption of the points on the card with it.
step = st.tuples(st.sampled_from(["T1", "T2"]), st.integers(100, 20_000), st.booleans(),
                 st.sampled_from(["refund", "redeem", "none"]), st.integers(100, 5_000))


def _approve_steps(counters: Counters, steps: list[tuple[Any, ...]]) -> None:
    """Approve what the card allows of `steps`, one after another (each priced on the card
    with the ones before it approved)."""
    for terminal, amount, from_card, then, redeem_amount in steps:
        other = "T2" if terminal == "T1" else "T1"
        asked = min(amount, 10_000) if from_card else 0
        sale = counters.ask(terminal, txn.KIND_PURCHASE, amount, asked)
        if sale is not None and then == "refund":
            counters.ask(other, txn.KIND_REFUND, 0, ref=sale)  # a void: all that is left
        elif then == "redeem":
            with counters.book.lock:
                answer = counters.book.authorize(
                    {"terminal": other, "kind": txn.KIND_INQUIRY, "card": CARD,
                     "currency": "EUR", "amount_minor": 0, "card_value_minor": 0}, NOW_S)
            points = answer["points_balance"]
            if points >= 100:
                counters.ask(other, txn.KIND_PURCHASE, redeem_amount, 0,
                             redeem_points=points - points % 100)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(steps=st.lists(step, min_size=1, max_size=6), data=st.data())
def test_two_terminals_records_in_any_order_apply_once_as_in_authorization_order(
        tmp_path_factory: Any, steps: list[tuple[Any, ...]], data: st.DataObject) -> None:
    where = tmp_path_factory.mktemp("parked")
    stage, acks = _stage(where)
    counters = _issued(stage)
    _approve_steps(counters, steps)
    approved = list(counters.records)
    arriving = data.draw(st.permutations(approved))
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(arriving) - 1)), max_size=3)))
    for start, end in zip([0, *cuts], [*cuts, len(arriving)], strict=True):
        stage.process([counters.verified(t, r) for t, r in arriving[start:end]])

    # The same approvals applied in authorization order, at a second gateway.
    reference, _ = _stage(where, "reference.db")
    reference_counters = _issued(reference)
    _approve_steps(reference_counters, steps)
    reference.process([counters.verified(t, r) for t, r in reference_counters.records])

    statuses = _statuses(stage.store)
    event(f"records parked: {min(stage.store.counters().get('parked', 0), 2)}")
    assert len(stage.parked) == 0, _statuses(stage.store)
    assert all(status == ("accepted", None) for status in statuses.values()), statuses
    assert len(statuses) == 2 + len(approved)  # each once, none left parked or refused
    assert all(not a.rejected for a in _acks(acks))
    applied = stage.cards.cards[CARD]
    expected = reference.cards.cards[CARD]
    assert (applied["value_minor"], applied["points"]) == (expected["value_minor"],
                                                            expected["points"])
    stage.store.close()
    reference.store.close()


@pytest.mark.xfail(strict=True, reason="known gap (README): two redemptions approved each on"
                   " points the other's sale earns wait on each other")
def test_redemptions_that_fund_each_other_apply_in_any_order(tmp_path: Path) -> None:
    """Found by the property test above (one seed in a few hundred): in authorization order
    T2-4 redeems 100 points and earns 69, and T1-8's redemption of 100 counts on those 69.
    When T1-8 arrives first it takes the points T2-4 was priced on; T2-4 then waits for
    points no record will bring, and is refused when its wait ends."""
    stage, _ = _stage(tmp_path)
    counters = _issued(stage)
    _approve_steps(counters, [("T1", 100, False, "refund", 100),
                              ("T1", 100, False, "refund", 100),
                              ("T1", 6975, False, "redeem", 3675),
                              ("T1", 575, False, "redeem", 3526),
                              ("T1", 100, False, "redeem", 100),
                              ("T2", 226, False, "redeem", 100)])
    by_id = {txn.txn_id(t, txn.open_record(r, KEYS[t])["seq"]): (t, r)
             for t, r in counters.records}
    order = ["T2-1", "T2-3", "T1-8", "T1-4", "T2-2", "T2-5", "T1-5", "T1-7", "T1-6", "T1-3",
             "T2-4"]
    stage.process([counters.verified(*by_id[txn_id]) for txn_id in order])
    assert len(stage.parked) == 0, _statuses(stage.store)


def test_a_record_whose_hold_expires_while_its_batch_waits_for_the_lock_finds_its_approval(
        tmp_path: Path) -> None:
    """Found by the gauntlet (a gateway clock stepping back, then forward): the stage read
    the kept approvals only of records whose hold was gone, before taking the lock; a hold
    the authorization stage expired in between left its record with neither, and a sale the
    counter approved was refused auth_unknown."""
    stage, acks = _stage(tmp_path)
    counters = _issued(stage)
    counters.approve("T1", txn.KIND_PURCHASE, 500, 500)
    recall = stage._recall

    def recall_then_expire(items: list[Verified]) -> dict[str, dict[str, Any]]:
        found = recall(items)
        stage.cards.holds.expire(NOW_S + 10 * stage.cards.holds.ttl_s)  # meanwhile
        return found

    stage._recall = recall_then_expire  # type: ignore[method-assign]
    stage.process([counters.verified(t, r) for t, r in counters.records])
    assert all(not ack.rejected for ack in _acks(acks))
    assert stage.cards.late_online == 1
    stage.store.close()


def test_a_record_held_out_of_order_after_a_restart_finds_its_approval_when_released(
        tmp_path: Path) -> None:
    """Found by the gauntlet: after a restart (its holds gone) a terminal's resent records
    arrived out of order; the later one was held, then released by the batch that filled
    its gap, whose kept approvals had been read for that batch's own records only: it was
    refused auth_unknown, a sale the counter approved."""
    stage, _ = _stage(tmp_path)
    counters = _issued(stage)
    counters.approve("T1", txn.KIND_PURCHASE, 300)
    counters.approve("T1", txn.KIND_PURCHASE, 400)
    first, second = counters.records
    stage.store.close()
    store = GatewayStore(str(tmp_path / "gw.db"))  # a new run on the same store
    acks: queue.Queue[AckOut | None] = queue.Queue()
    restarted = IngestStage(store, CardBook(DEMO_PROGRAMS, store.load_cards(), auth_epoch=2),
                            Stats(), queue.Queue(), acks)
    restarted.process([counters.verified(*second)])  # ahead of its head: held
    restarted.process([counters.verified(*first)])  # fills the gap: both placed
    assert all(not ack.rejected for ack in _acks(acks))
    statuses = _statuses(store)
    assert [statuses[f"T1-{seq}"] for seq in (3, 4)] == [("accepted", None)] * 2, statuses
    assert restarted.cards.late_online == 2
    store.close()
