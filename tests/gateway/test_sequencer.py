"""The sequencer orders each terminal's records, recognises resends and replays, and places
every next record, a broken chain included (docs/protocol.md section 5.1)."""

from __future__ import annotations

from gateway.sequencer import (
    AHEAD_PER_TERMINAL_MAX,
    DUPLICATE,
    GAP,
    HELD,
    IN_ORDER,
    REPLAYED,
    Sequencer,
)
from gateway.verify import Verified
from protocol import txn
from protocol.reasons import RECORD_LOST

KEY = bytes(32)


def chain(count: int, terminal: str = "T1") -> list[Verified]:
    out, prev = [], txn.GENESIS_DIGEST
    for seq in range(1, count + 1):
        fields = {"terminal": terminal, "seq": seq, "prev": prev, "time": 1, "merchant": "M1",
                  "card": "c1", "kind": txn.KIND_PURCHASE, "currency": "EUR",
                  "amount_minor": seq, "card_value_minor": 0, "bonus_minor": 0, "points": 0,
                  "auth_mode": txn.AUTH_ONLINE}
        record = txn.seal(KEY, fields)
        out.append(Verified(fields, record))
        prev = txn.digest(record)
    return out


def actions(decisions: list) -> list[tuple[str, int]]:
    return [(d.action, d.item.seq) for d in decisions]


def test_in_order_records_advance_the_head() -> None:
    records = chain(3)
    sequencer = Sequencer({}, lambda t, s: None)
    for item in records:
        assert actions(sequencer.offer(item)) == [(IN_ORDER, item.seq)]
    assert sequencer.head("T1") == (3, records[2].digest)


def test_records_ahead_of_a_gap_are_held_then_released_in_order() -> None:
    records = chain(4)
    sequencer = Sequencer({}, lambda t, s: None)
    assert actions(sequencer.offer(records[2])) == [(HELD, 3)]
    assert actions(sequencer.offer(records[3])) == [(HELD, 4)]
    assert actions(sequencer.offer(records[0])) == [(IN_ORDER, 1)]
    assert actions(sequencer.offer(records[1])) == [(IN_ORDER, 2), (IN_ORDER, 3), (IN_ORDER, 4)]


def test_a_second_copy_of_a_held_record_is_a_duplicate() -> None:
    records = chain(3)
    sequencer = Sequencer({}, lambda t, s: None)
    assert actions(sequencer.offer(records[2])) == [(HELD, 3)]
    assert actions(sequencer.offer(records[2])) == [(DUPLICATE, 3)]
    other_fields = dict(records[2].fields, amount_minor=999)
    other = Verified(other_fields, txn.seal(KEY, other_fields))
    assert actions(sequencer.offer(other)) == [(REPLAYED, 3)]


def test_a_resend_is_a_duplicate_before_and_after_commit() -> None:
    records = chain(2)
    stored: dict[tuple[str, int], tuple[bytes, str, None]] = {}
    sequencer = Sequencer({}, lambda t, s: stored.get((t, s)))
    sequencer.offer(records[0])
    assert actions(sequencer.offer(records[0])) == [(DUPLICATE, 1)]
    stored[("T1", 1)] = (records[0].digest, "accepted", None)
    sequencer.committed()
    assert actions(sequencer.offer(records[0])) == [(DUPLICATE, 1)]


def test_same_sequence_number_with_other_content_is_a_replay() -> None:
    first = chain(1)[0]
    other_fields = dict(first.fields, amount_minor=999)
    other = Verified(other_fields, txn.seal(KEY, other_fields))
    stored = {("T1", 1): (first.digest, "accepted", None)}
    sequencer = Sequencer({"T1": (1, first.digest)}, lambda t, s: stored.get((t, s)))
    decision = sequencer.offer(other)[0]
    assert decision.action == REPLAYED
    assert sequencer.head("T1") == (1, first.digest)  # the stored record stands


def test_a_record_that_does_not_name_the_head_digest_is_placed_as_chain_broken() -> None:
    records = chain(3)
    sequencer = Sequencer({"T1": (1, b"\x01" * 32)}, lambda t, s: None)
    decision = sequencer.offer(records[1])[0]
    assert (decision.action, decision.reason) == (IN_ORDER, "chain_broken")
    # Its seq is consumed and the chain goes on from it: the next record is in order.
    assert sequencer.head("T1") == (2, records[1].digest)
    following = sequencer.offer(records[2])[0]
    assert (following.action, following.reason) == (IN_ORDER, None)


def test_a_held_record_released_onto_a_broken_chain_is_placed_and_the_rest_follow() -> None:
    records = chain(4)
    sequencer = Sequencer({}, lambda t, s: None)
    sequencer.offer(records[2])
    sequencer.offer(records[3])
    sequencer.offer(records[0])
    stranger_fields = dict(records[1].fields, prev=b"\x02" * 32)
    stranger = Verified(stranger_fields, txn.seal(KEY, stranger_fields))
    decisions = sequencer.offer(stranger)
    assert [(d.action, d.item.seq, d.reason) for d in decisions] == [
        (IN_ORDER, 2, "chain_broken"), (IN_ORDER, 3, "chain_broken"), (IN_ORDER, 4, None)]


def test_beyond_the_hold_a_record_is_not_held_and_not_placed() -> None:
    records = chain(AHEAD_PER_TERMINAL_MAX + 2)
    sequencer = Sequencer({}, lambda t, s: None)
    for item in records[1:-1]:
        assert actions(sequencer.offer(item)) == [(HELD, item.seq)]
    assert actions(sequencer.offer(records[-1])) == [(GAP, records[-1].seq)]
    assert sequencer.head("T1")[0] == 0
    released = sequencer.offer(records[0])
    assert len(released) == AHEAD_PER_TERMINAL_MAX + 1
    assert actions(sequencer.offer(records[-1])) == [(IN_ORDER, records[-1].seq)]


def test_terminals_are_sequenced_independently() -> None:
    sequencer = Sequencer({}, lambda t, s: None)
    assert actions(sequencer.offer(chain(1, "T1")[0])) == [(IN_ORDER, 1)]
    assert actions(sequencer.offer(chain(1, "T2")[0])) == [(IN_ORDER, 1)]


def lost(record: Verified) -> Verified:
    """The terminal's lost notice for `record`: its seq and digest, not its content."""
    fields = {"terminal": record.terminal, "merchant": record.merchant, "seq": record.seq,
              "digest": record.digest}
    return Verified(fields, txn.seal_lost(KEY, record.terminal, record.seq, record.digest),
                    RECORD_LOST, digest=record.digest)


def test_a_lost_notice_at_the_head_is_placed_and_the_next_record_chains_from_it() -> None:
    records = chain(3)
    sequencer = Sequencer({}, lambda t, s: None)
    sequencer.offer(records[0])
    decisions = sequencer.offer(lost(records[1]))
    assert actions(decisions) == [(IN_ORDER, 2)] and decisions[0].reason is None
    assert decisions[0].item.refusal == RECORD_LOST
    assert sequencer.head("T1") == (2, records[1].digest)
    decisions = sequencer.offer(records[2])
    assert actions(decisions) == [(IN_ORDER, 3)] and decisions[0].reason is None


def test_a_lost_notice_closes_a_gap_and_releases_the_records_held_behind_it() -> None:
    records = chain(4)
    sequencer = Sequencer({}, lambda t, s: None)
    sequencer.offer(records[0])
    assert actions(sequencer.offer(records[2])) == [(HELD, 3)]
    assert actions(sequencer.offer(records[3])) == [(HELD, 4)]
    decisions = sequencer.offer(lost(records[1]))
    assert actions(decisions) == [(IN_ORDER, 2), (IN_ORDER, 3), (IN_ORDER, 4)]
    assert [d.reason for d in decisions] == [None, None, None]


def test_a_lost_notice_for_a_seq_already_stored_is_a_duplicate_of_what_is_stored() -> None:
    first = chain(1)[0]
    stored = {("T1", 1): (first.digest, "rejected", "rule_mismatch")}
    sequencer = Sequencer({"T1": (1, first.digest)}, lambda t, s: stored.get((t, s)))
    other = Verified(dict(lost(first).fields, digest=bytes(32)), b"x", RECORD_LOST,
                     digest=bytes(32))
    for notice in (lost(first), other):  # whatever digest it names: the stored one stands
        decision = sequencer.offer(notice)[0]
        assert (decision.action, decision.stored_status, decision.stored_reason) == (
            DUPLICATE, "rejected", "rule_mismatch")


def test_a_record_that_arrives_after_its_lost_notice_was_placed_is_a_duplicate() -> None:
    records = chain(2)
    stored: dict[tuple[str, int], tuple[bytes, str, str | None]] = {}
    sequencer = Sequencer({}, lambda t, s: stored.get((t, s)))
    sequencer.offer(records[0])
    sequencer.offer(lost(records[1]))
    stored[("T1", 2)] = (records[1].digest, "rejected", RECORD_LOST)
    sequencer.committed()
    decision = sequencer.offer(records[1])[0]
    assert (decision.action, decision.stored_reason) == (DUPLICATE, RECORD_LOST)


def test_ahead_of_a_gap_the_record_replaces_its_held_notice_and_not_the_other_way() -> None:
    records = chain(3)
    sequencer = Sequencer({}, lambda t, s: None)
    assert actions(sequencer.offer(lost(records[1]))) == [(HELD, 2)]
    assert actions(sequencer.offer(lost(records[1]))) == [(DUPLICATE, 2)]
    assert actions(sequencer.offer(records[1])) == [(HELD, 2)]
    assert actions(sequencer.offer(lost(records[1]))) == [(DUPLICATE, 2)]
    decisions = sequencer.offer(records[0])
    assert actions(decisions) == [(IN_ORDER, 1), (IN_ORDER, 2)]
    assert decisions[1].item is records[1]
