"""A targeted offer's use held at the ledger (gateway/ledger_holds.py, issue 14): a purchase
that gets one of the card's granted offers names it in its ledger hold, even paid in cash
(a hold of no value), so no two stores give the card's last use; the ledger's offer_used
declines the sale with that reason, and the record of an approved sale posts its hold
rather than void it (a void would give the use back before the posting spends it).

The ledger side is tests/ledger/test_grant_holds.py; two stores end to end,
tests/e2e/test_targeted_offers.py."""

from __future__ import annotations

from typing import Any

from gateway import hold_recovery
from gateway.authorize import decide
from gateway.card_directory import CardDirectory
from gateway.cards import EFFECTS_FIELD, LEDGER_HOLD_FIELD
from gateway.ledger_holds import PASSED_ON
from gateway.settle import _engine_terms
from ledger.errors import HoldRefused
from protocol import txn
from tests.gateway.test_ledger_holds_points import (
    CARD,
    NOW_S,
    PointsLedger,
    gateway,
    loyalty_card,
    record_of,
    sale,
)

LAST_DAY = int(NOW_S // 86_400) + 7


class GrantsLedger(PointsLedger):
    """PointsLedger that also takes the hold's grants; `used` refuses them offer_used."""

    def __init__(self) -> None:
        super().__init__(0, 0)
        self.used = False

    def place_hold(self, hold_id: str, card: str, currency: str, amount_minor: int,
                   ttl_s: int, terminal: str, merchant: str, points: int = 0,
                   reward: str | None = None, grants: tuple[str, ...] = ()) -> dict[str, Any]:
        if self.used and grants and not self.down:
            self.placed.append({"hold_id": hold_id, "amount_minor": amount_minor,
                                "points": points, "grants": grants})
            raise HoldRefused("offer_used", f"{grants} of {card}")
        answer = super().place_hold(hold_id, card, currency, amount_minor, ttl_s, terminal,
                                    merchant, points, reward)
        if grants:
            self.placed[-1]["grants"] = grants
        return answer


def look_up(book: Any, directory: CardDirectory) -> None:
    """An inquiry: the card is taken on from the ledger's look-up."""
    asked = decide(book, None, sale(0, amount_minor=0) | {"kind": txn.KIND_INQUIRY}, NOW_S,
                   directory)
    assert asked["approved"], asked


def granted(directory: CardDirectory, book: Any) -> None:
    """The card, taken on here, holds a grant of "comeback" with one use (as the card feed
    brings the office's grant: gateway/card_feed.py)."""
    look_up(book, directory)
    with book.lock:
        book.states.entry(CARD)["state"]["grants"] = {"comeback": [1, LAST_DAY]}


def store(grant: bool, settle: Any = None) -> tuple[GrantsLedger, Any, Any, CardDirectory]:
    """A gateway's card book and ledger holds on a GrantsLedger, the loyalty card taken on
    (with a grant of "comeback" when `grant`)."""
    ledger = GrantsLedger()
    book, holds = gateway(ledger, settle=settle)
    directory = loyalty_card(0, 0)
    if grant:
        granted(directory, book)
    else:
        look_up(book, directory)
    return ledger, book, holds, directory


def cash(amount_minor: int = 2000) -> dict[str, Any]:
    return sale(0, amount_minor=amount_minor)


def test_a_cash_sale_that_gets_the_offer_holds_its_use_and_posts_the_hold() -> None:
    ledger, book, holds, directory = store(grant=True)
    decision = decide(book, holds, cash(), NOW_S, directory)
    assert decision["approved"] and decision["promotions"] == ["comeback"], decision
    assert ledger.placed == [{"hold_id": "gw1-a7-1", "amount_minor": 0, "points": 0,
                              "grants": ("comeback",)}]
    fields = record_of(decision, 1) | {"amount_minor": 2000}
    with book.lock:
        fields.update(book.apply(fields, book.check(fields)))
        assert fields[LEDGER_HOLD_FIELD] == "gw1-a7-1"  # posted with the sale, not voided
        assert book.holds.take_lapsed() == []
        assert "grants" not in book.states.entry(CARD)["state"]  # the use taken here too
    # Posted saying which targeted offers it got (GRANTS_AS_POSTED), for every replay.
    assert fields[EFFECTS_FIELD]["grants"] == ["comeback"]
    assert _engine_terms(txn.KIND_PURCHASE, fields[EFFECTS_FIELD])["grants"] == ["comeback"]


def test_a_sale_without_the_offer_is_posted_saying_it_got_none() -> None:
    """Priced before the grant reached this store: "grants": [] tells every replay to keep
    the use (the grant may be applied before this sale elsewhere)."""
    ledger, book, holds, directory = store(grant=False)
    decision = decide(book, holds, cash(), NOW_S, directory)
    fields = record_of(decision, 1) | {"amount_minor": 2000}
    with book.lock:
        fields.update(book.apply(fields, book.check(fields)))
    assert fields[EFFECTS_FIELD]["grants"] == []
    assert _engine_terms(txn.KIND_PURCHASE, fields[EFFECTS_FIELD])["grants"] == []


def test_offer_used_at_the_ledger_declines_with_that_reason() -> None:
    assert "offer_used" in PASSED_ON
    settled: list[bool] = []
    ledger, book, holds, directory = store(grant=True, settle=lambda: settled.append(True))
    ledger.used = True
    refused = decide(book, holds, cash(), NOW_S, directory)
    assert refused == {"approved": False, "reason": "offer_used"}
    assert settled == [] and len(book.holds) == 0  # no settling first; the local hold ended
    assert ledger.placed[-1]["grants"] == ("comeback",)


def test_a_sale_without_a_targeted_offer_holds_nothing_when_paid_in_cash() -> None:
    ledger, book, holds, directory = store(grant=False)
    decision = decide(book, holds, cash(), NOW_S, directory)
    assert decision["approved"] and "promotions" not in decision
    assert ledger.placed == []


def test_a_ledger_out_of_reach_stands_in_for_the_offer_within_the_limits() -> None:
    ledger, book, holds, directory = store(grant=True)
    ledger.down = True
    decision = decide(book, holds, cash(), NOW_S, directory)
    assert decision["approved"] and decision["promotions"] == ["comeback"]
    assert decision["auth_mode"] == 3  # stand-in: the use is this store's word alone
    assert holds.pending_voids() == ["gw1-a7-1"]  # it may have been placed: voided later


def test_a_hold_of_offers_alone_is_restored_after_a_restart() -> None:
    """Nothing held here nor points at the ledger, only an offer's use: restored, so its
    record still posts it (a void would give the use back before the sale spends it); a
    stand-in's, which may not even be placed, is voided as before."""
    kept = {"auth_id": "a7-1", "terminal": "T1", "card": CARD, "auth_mode": txn.AUTH_ONLINE,
            "given_at": NOW_S, "held_minor": 0, "op": None, "ledger_hold_id": "gw1-a7-1",
            "expect": {"redeem_points": 0, "card_value_minor": 0}}
    recovery = hold_recovery.plan([kept], {}, NOW_S + 10, 120)
    assert recovery.restored == [kept] and recovery.void == []
    stood_in = dict(kept, auth_mode=txn.AUTH_STAND_IN)
    assert hold_recovery.plan([stood_in], {}, NOW_S + 10, 120).void == ["gw1-a7-1"]
    nothing = dict(kept, ledger_hold_id=None)  # a cash sale that got no offer: no hold
    assert hold_recovery.plan([nothing], {}, NOW_S + 10, 120).restored == []
    intent = dict(kept, expect={})  # asked of the ledger, the approval never kept: voided
    assert hold_recovery.plan([intent], {}, NOW_S + 10, 120).void == ["gw1-a7-1"]
