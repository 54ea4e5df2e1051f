"""The sequencer orders each terminal's records, recognises resends and refuses replays."""

from __future__ import annotations

from gateway.sequencer import DUPLICATE, HELD, IN_ORDER, REJECT, Sequencer
from gateway.verify import Verified
from protocol import txn

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
    assert sequencer.offer(other)[0].reason == "seq_replayed"


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
    assert (decision.action, decision.reason) == (REJECT, "seq_replayed")


def test_a_record_that_does_not_name_the_head_digest_breaks_the_chain() -> None:
    records = chain(2)
    sequencer = Sequencer({"T1": (1, b"\x01" * 32)}, lambda t, s: None)
    decision = sequencer.offer(records[1])[0]
    assert (decision.action, decision.reason) == (REJECT, "chain_broken")
    assert sequencer.head("T1") == (1, b"\x01" * 32)


def test_terminals_are_sequenced_independently() -> None:
    sequencer = Sequencer({}, lambda t, s: None)
    assert actions(sequencer.offer(chain(1, "T1")[0])) == [(IN_ORDER, 1)]
    assert actions(sequencer.offer(chain(1, "T2")[0])) == [(IN_ORDER, 1)]
