"""Local holds: indexed by card and by sale, expired oldest first, ids never repeated."""

from __future__ import annotations

from gateway.local_holds import LocalHolds


def test_holds_are_found_by_card_and_by_sale_and_forgotten_when_they_end() -> None:
    holds = LocalHolds(ttl_s=120, epoch=3)
    first = holds.place("c1", 500, 0.0, sale_id="T1-4", op={"id": "T1-4"})
    second = holds.place("c1", 200, 1.0)
    other = holds.place("c2", 900, 2.0)
    assert (first, second, other) == ("a3-1", "a3-2", "a3-3")
    assert [auth_id for auth_id, _ in holds.of_card("c1")] == [first, second]
    assert holds.held_minor("c1") == 700 and holds.held_minor("c2") == 900
    assert holds.for_sale("T1-4") == first
    assert holds.pop(first) is not None and holds.pop(first) is None
    assert holds.for_sale("T1-4") is None and holds.held_minor("c1") == 200
    holds.release(second)
    assert holds.of_card("c1") == [] and len(holds) == 1


def test_expiry_ends_the_oldest_and_sends_their_ledger_holds_to_be_voided() -> None:
    holds = LocalHolds(ttl_s=10, epoch=1)
    early = holds.place("c1", 1, 0.0)
    late = holds.place("c2", 1, 5.0)
    assert holds.mark_ledger(early, "gw1-" + early)
    assert holds.expire(9.9) == 0
    assert holds.expire(10.0) == 1 and early not in holds and late in holds
    assert holds.take_lapsed() == ["gw1-a1-1"] and holds.take_lapsed() == []
    assert not holds.mark_ledger(early, "gw1-" + early)  # gone: the caller voids it


def test_auth_ids_of_earlier_runs_are_orphaned_only_with_a_ledger() -> None:
    holds = LocalHolds(epoch=4, ledger=True)
    holds.place("c1", 1, 0.0)
    holds.orphan("a3-7")
    holds.orphan("a4-1")  # this run's: its local hold decides, not the orphan list
    holds.orphan("nonsense")
    assert holds.take_orphaned() == ["a3-7"]
    no_ledger = LocalHolds(epoch=4)
    no_ledger.orphan("a3-7")
    assert no_ledger.take_orphaned() == []
