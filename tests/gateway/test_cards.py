"""The gateway's card book runs the program engine: previews at authorization, the same
amounts enforced on records, offline sales taken as they happened, expiry swept."""

from __future__ import annotations

from typing import Any

import pytest

from gateway import store_reports
from gateway.authorize import decide
from gateway.card_directory import CardDirectory
from gateway.cards import DAY_S, EFFECTS_FIELD, CardBook, engine_op, record_till_amounts
from protocol import engine, txn
from protocol.errors import ValidationError
from tests.support.card_loads import approve_load
from tools.demo import DEMO_PROGRAMS

DAY0_S = 20_000 * DAY_S  # a day number well after the epoch


def fields(kind: int, card: str = "c1", seq: int = 1, **extra: Any) -> dict[str, Any]:
    base = {"terminal": "T1", "seq": seq, "merchant": "M1", "card": card, "kind": kind,
            "currency": "EUR", "amount_minor": 0, "card_value_minor": 0, "bonus_minor": 0,
            "points": 0, "auth_mode": txn.AUTH_ONLINE, "time": DAY0_S}
    base.update(extra)
    return base


def apply(book: CardBook, record: dict[str, Any]) -> dict[str, Any]:
    approve_load(book, record)
    record.update(book.apply(record, book.check(record)))  # what the store keeps
    return record


def issued(program: str = "gift", value: int = 5000) -> CardBook:
    book = CardBook(DEMO_PROGRAMS)
    apply(book, fields(txn.KIND_ISSUE, amount_minor=value, card_value_minor=value,
                       program=program))
    return book


def reason_of(book: CardBook, record: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        book.check(approve_load(book, record))
    return caught.value.reason


def request(kind: int, amount: int, card_value: int = 0, **extra: Any) -> dict[str, Any]:
    base = {"kind": kind, "card": "c1", "currency": "EUR", "amount_minor": amount,
            "card_value_minor": card_value, "time": DAY0_S}
    base.update(extra)
    return base


def test_issue_creates_the_card_once() -> None:
    book = issued()
    assert book.cards["c1"]["value_minor"] == 5000
    again = fields(txn.KIND_ISSUE, amount_minor=1, card_value_minor=1, program="gift")
    assert reason_of(book, again) == "card_exists"
    # A gift card is sold with a value: the engine's own rule, enforced at the gateway.
    empty = fields(txn.KIND_ISSUE, card="c2", program="gift")
    assert reason_of(CardBook(DEMO_PROGRAMS), empty) == "amount_invalid"


def test_purchase_on_an_unknown_card_is_refused() -> None:
    book = CardBook(DEMO_PROGRAMS)
    assert reason_of(book, fields(txn.KIND_PURCHASE, amount_minor=1)) == "card_unknown"


def test_points_and_bonus_must_be_what_the_engine_computes() -> None:
    book = issued("loyalty", 0)  # 1 point per euro paid, rounded down
    assert reason_of(book, fields(txn.KIND_PURCHASE, amount_minor=1999, points=20)) == (
        "rule_mismatch")
    apply(book, fields(txn.KIND_PURCHASE, amount_minor=1999, points=19, version=1))
    prepaid = issued("prepaid", 0)  # 5 % bonus
    topup = fields(txn.KIND_TOPUP, amount_minor=1000, bonus_minor=60, card_value_minor=1060)
    assert reason_of(prepaid, topup) == "rule_mismatch"
    wrong_version = fields(txn.KIND_TOPUP, amount_minor=1000, bonus_minor=50,
                           card_value_minor=1050, version=2)
    assert reason_of(prepaid, wrong_version) == "rule_mismatch"


def test_the_authorization_answer_is_the_engine_preview_and_the_record_must_carry_it() -> None:
    book = issued("vip", 0)
    apply(book, fields(txn.KIND_PURCHASE, amount_minor=20000, points=200, seq=2))  # silver
    answer = book.authorize(request(txn.KIND_PURCHASE, 10000), DAY0_S)
    # silver: 5 % off, points x1.5 on what is paid: 9500 * 1 % * 1.5 = 142.5 -> 142
    assert answer["approved"] and answer["tier"] == "silver" and answer["discount_pct"] == 5
    assert (answer["discount_minor"], answer["points"]) == (500, 142)
    record = fields(txn.KIND_PURCHASE, seq=3, amount_minor=10000, discount_minor=500,
                    points=142, version=1, auth_id=answer["auth_id"])
    assert reason_of(book, dict(record, discount_minor=1000)) == "rule_mismatch"
    apply(book, record)
    assert record[EFFECTS_FIELD]["points"] == 142
    assert book.cards["c1"]["points"] == 200 + 142


def test_authorization_holds_value_so_it_cannot_be_spent_twice() -> None:
    book = issued(value=1000)
    purchase = request(txn.KIND_PURCHASE, 800, 800)
    first = book.authorize(purchase, now_s=0)
    assert first["approved"] and first["value_minor"] == 200
    second = book.authorize(purchase, now_s=0)
    assert second == {"approved": False, "reason": "insufficient_value"}
    assert book.holds.expire(now_s=10_000) == 1
    assert book.authorize(purchase, now_s=10_000)["approved"]


def test_a_card_sold_and_tapped_at_once_pays_before_its_issue_record_arrives() -> None:
    book = CardBook(DEMO_PROGRAMS)
    sold = book.authorize(request(txn.KIND_ISSUE, 1000, program="gift"), DAY0_S)
    assert sold["approved"] and sold["value_minor"] == 1000
    paid = book.authorize(request(txn.KIND_PURCHASE, 700, 700), DAY0_S)
    assert paid["approved"] and paid["value_minor"] == 300  # priced as issued
    assert book.authorize(request(txn.KIND_PURCHASE, 301, 301), DAY0_S) == {
        "approved": False, "reason": "insufficient_value"}
    # The records arrive in order and carry what was answered.
    apply(book, fields(txn.KIND_ISSUE, amount_minor=1000, card_value_minor=1000,
                       program="gift", auth_id=sold["auth_id"]))
    apply(book, fields(txn.KIND_PURCHASE, seq=2, amount_minor=700, card_value_minor=700,
                       version=1, auth_id=paid["auth_id"]))
    assert book.cards["c1"]["value_minor"] == 300


def test_a_card_whose_issue_was_declined_stays_unknown() -> None:
    book = CardBook(DEMO_PROGRAMS)
    assert book.authorize(request(txn.KIND_PURCHASE, 1, 1), DAY0_S) == {
        "approved": False, "reason": "card_unknown"}
    wrong = book.authorize(request(txn.KIND_ISSUE, 1000, program="nope"), DAY0_S)
    assert not wrong["approved"]
    assert book.authorize(request(txn.KIND_PURCHASE, 1, 1), DAY0_S)["reason"] == "card_unknown"


def test_refunds_reverse_at_most_the_purchase() -> None:
    book = issued(value=1000)
    apply(book, fields(txn.KIND_PURCHASE, amount_minor=600, card_value_minor=600, seq=2))
    apply(book, fields(txn.KIND_REFUND, amount_minor=600, card_value_minor=600, seq=3,
                       ref="T1-2"))
    assert book.cards["c1"]["value_minor"] == 1000
    again = fields(txn.KIND_REFUND, amount_minor=1, card_value_minor=1, seq=4, ref="T1-2")
    assert reason_of(book, again) == "refund_exceeds_original"
    unknown = fields(txn.KIND_REFUND, amount_minor=1, card_value_minor=1, seq=5, ref="T9-9")
    assert reason_of(book, unknown) == "refund_unknown_original"


def test_a_refund_of_a_top_up_takes_its_bonus_back_off_the_card() -> None:
    book = issued("prepaid", 0)
    apply(book, fields(txn.KIND_TOPUP, amount_minor=2000, bonus_minor=100,
                       card_value_minor=2100, seq=2))
    answer = book.authorize(request(txn.KIND_REFUND, 1000, ref="T1-2"), DAY0_S)
    assert (answer["card_value_minor"], answer["bonus_minor"]) == (1050, 50)
    apply(book, fields(txn.KIND_REFUND, amount_minor=1000, card_value_minor=1050,
                       bonus_minor=50, seq=3, ref="T1-2", auth_id=answer["auth_id"]))
    assert book.cards["c1"]["value_minor"] == 1050


def test_sales_past_the_refund_window_are_forgotten_and_cannot_be_refunded() -> None:
    book = issued(value=1000)
    apply(book, fields(txn.KIND_PURCHASE, amount_minor=100, card_value_minor=100, seq=2))
    window_days = DEMO_PROGRAMS["gift"]["refund_window_days"]
    last_day = DAY0_S + window_days * DAY_S  # the window's last day is in
    apply(book, fields(txn.KIND_PURCHASE, amount_minor=100, card_value_minor=100, seq=3,
                       time=last_day))
    assert list(book.cards["c1"]["state"]["sales"]) == ["T1-1", "T1-2", "T1-3"]  # T1-1: issue
    later = last_day + DAY_S
    apply(book, fields(txn.KIND_PURCHASE, amount_minor=100, card_value_minor=100, seq=4,
                       time=later))
    assert list(book.cards["c1"]["state"]["sales"]) == ["T1-3", "T1-4"]
    refund = fields(txn.KIND_REFUND, amount_minor=100, card_value_minor=100, seq=5,
                    ref="T1-2", time=later)
    assert reason_of(book, refund) == "refund_unknown_original"


def test_an_offline_sale_happened_its_overdraft_is_exposure_and_its_points_the_engines() -> None:
    book = issued("club", 0)
    apply(book, fields(txn.KIND_TOPUP, amount_minor=1000, bonus_minor=100,
                       card_value_minor=1100, seq=2))
    offline = fields(txn.KIND_PURCHASE, amount_minor=1500, card_value_minor=1500, seq=3,
                     points=999, auth_mode=txn.AUTH_OFFLINE, terminal="T2")
    apply(book, offline)
    assert book.cards["c1"]["value_minor"] == -400
    assert book.exposure_by_card == {"c1": 400} and book.exposure_by_terminal == {"T2": 400}
    assert offline[EFFECTS_FIELD]["points"] == 30 and book.recomputed == 1  # 2 % of 1500


def test_an_offline_discount_stands_as_given() -> None:
    book = issued("saver", 0)
    record = fields(txn.KIND_PURCHASE, amount_minor=1000, discount_minor=100,
                    auth_mode=txn.AUTH_OFFLINE, seq=2)
    apply(book, record)
    assert record[EFFECTS_FIELD]["discount_minor"] == 100


def test_the_sweep_expires_idle_cards_once_and_says_what_expired() -> None:
    book = issued("gift", 2500)
    assert book.states.sweep(DAY0_S + 364 * DAY_S) == []
    expired = book.states.sweep(DAY0_S + 365 * DAY_S)
    assert [(card, effects["value_expired"]) for card, effects in expired] == [("c1", 2500)]
    assert sum(leg[2] for leg in expired[0][1]["legs"]) == 0
    assert book.cards["c1"]["value_minor"] == 0 and "c1" in book.states.dirty
    assert book.states.sweep(DAY0_S + 366 * DAY_S) == []


def test_the_gateway_agrees_with_the_engine_on_a_sequence() -> None:
    """Authorization answers copied into records give the same card as the engine alone."""
    book = issued("club", 0)
    program = DEMO_PROGRAMS["club"]
    state, _ = engine.apply(None, program, {"op": "issue", "id": "T1-1", "card": "c1"},
                            DAY0_S // DAY_S)
    ops = [(txn.KIND_TOPUP, 5000, 0, None), (txn.KIND_PURCHASE, 1234, 1234, None),
           (txn.KIND_PURCHASE, 999, 0, None), (txn.KIND_REFUND, 600, 0, "T1-3")]
    for seq, (kind, amount, card_value, ref) in enumerate(ops, start=2):
        answer = book.authorize(request(kind, amount, card_value, ref=ref), DAY0_S)
        assert answer["approved"], answer
        record = fields(kind, seq=seq, amount_minor=amount, ref=ref,
                        auth_id=answer["auth_id"], version=answer["version"],
                        **{key: answer.get(key, 0) for key in (
                            "card_value_minor", "bonus_minor", "points", "discount_minor")})
        apply(book, record)
        op = engine_op(kind, record, txn.txn_id("T1", seq))
        state, effects = engine.apply(state, program, op, DAY0_S // DAY_S)
        assert record[EFFECTS_FIELD]["legs"] == effects["legs"]
    summary = engine.summary(state, program, DAY0_S // DAY_S)
    assert (book.cards["c1"]["value_minor"], book.cards["c1"]["points"]) == (
        summary["value_minor"], summary["points"])


def test_a_top_up_is_never_paid_from_the_cards_own_value() -> None:
    book = issued("prepaid", 5000)
    asked = book.authorize(request(txn.KIND_TOPUP, 1000, card_value=1000), DAY0_S)
    assert asked == {"approved": False, "reason": "topup_from_own_card"}
    assert len(book.holds) == 0


def test_a_void_asks_for_amount_zero_and_is_told_what_was_left() -> None:
    book = issued("gift", 5000)
    apply(book, fields(txn.KIND_PURCHASE, amount_minor=1000, card_value_minor=1000, seq=2))
    apply(book, fields(txn.KIND_REFUND, amount_minor=300, card_value_minor=300, seq=3,
                       ref="T1-2"))
    answer = book.authorize(request(txn.KIND_REFUND, 0, ref="T1-2"), DAY0_S)
    assert (answer["amount_minor"], answer["card_value_minor"]) == (700, 700)


def test_cash_out_only_where_the_program_allows_it_and_held_until_its_record() -> None:
    gift = issued("gift", 5000)  # gift: no cash-out configured
    assert gift.authorize(request(txn.KIND_CASHOUT, 1000, 1000), DAY0_S) == {
        "approved": False, "reason": "cash_out_not_allowed"}
    prepaid = issued("prepaid", 5000)  # prepaid: cash_out = true
    answer = prepaid.authorize(request(txn.KIND_CASHOUT, 4000, 4000), DAY0_S)
    assert answer["approved"] and answer["value_minor"] == 1000
    assert prepaid.authorize(request(txn.KIND_CASHOUT, 2000, 2000), DAY0_S)["reason"] == (
        "insufficient_value")
    record = fields(txn.KIND_CASHOUT, amount_minor=4000, card_value_minor=4000, seq=2,
                    auth_id=answer["auth_id"], version=1)
    apply(prepaid, record)
    assert prepaid.cards["c1"]["value_minor"] == 1000 and len(prepaid.holds) == 0
    assert sorted(leg[:3] for leg in record[EFFECTS_FIELD]["legs"]) == [
        ["card_value", "EUR", 4000], ["cash_clearing", "EUR", -4000]]


def test_new_programs_at_a_restart_are_a_new_configuration_version(tmp_path: Any) -> None:
    from gateway.registry import TerminalRegistry
    from gateway.service import Gateway

    def started(programs: dict[str, Any]) -> int:
        gateway = Gateway("gw1", "127.0.0.1", 1, str(tmp_path / "gw.db"), TerminalRegistry(),
                          programs)
        version = gateway.fleet.version
        gateway.store.close()
        return version

    first = started(DEMO_PROGRAMS)
    assert started(DEMO_PROGRAMS) == first  # the same programs: the same version
    changed = dict(DEMO_PROGRAMS, gift=dict(DEMO_PROGRAMS["gift"], version=2))
    assert started(changed) == first + 1  # terminals take the new programs
    assert started(changed) == first + 1


def test_a_record_whose_answer_is_gone_after_a_restart_is_checked_against_the_kept_one(
        ) -> None:
    book = issued("saver", 0)
    apply(book, fields(txn.KIND_PURCHASE, amount_minor=10_000, seq=2))  # earns 10 % off
    answer = book.authorize(request(txn.KIND_PURCHASE, 1000), DAY0_S)
    assert answer["discount_minor"] == 100
    kept = {"terminal": "T1", "card": "c1", "expect": record_till_amounts(answer)}
    record = fields(txn.KIND_PURCHASE, amount_minor=1000, discount_minor=100, seq=3,
                    auth_id=answer["auth_id"])
    # The gateway restarts (a new epoch; its holds are gone) and a refund elsewhere
    # withdrew the discount meanwhile: the engine now would give none.
    restarted = CardBook(DEMO_PROGRAMS, book.cards, auth_epoch=book.holds.epoch + 1)
    apply(restarted, fields(txn.KIND_REFUND, amount_minor=5000, seq=4, ref="T1-2",
                            terminal="T1"))
    assert reason_of(restarted, dict(record, auth_id=None)) == "rule_mismatch"
    # With what was answered, kept: taken as it happened.
    record.update(restarted.apply(record, restarted.check(record, kept)))
    assert record[EFFECTS_FIELD]["discount_minor"] == 100 and restarted.late_online == 1
    # Not what was answered: refused, kept or not.
    greedy = fields(txn.KIND_PURCHASE, amount_minor=1000, discount_minor=500, seq=5,
                    auth_id=answer["auth_id"])
    with pytest.raises(ValidationError) as caught:
        restarted.check(greedy, kept)
    assert caught.value.reason == "rule_mismatch"
    # An auth id this gateway never kept, or kept for another card or terminal, proves
    # nothing: a stolen key cannot invent "approved before the restart" sales.
    forged = fields(txn.KIND_PURCHASE, amount_minor=1000, discount_minor=500, seq=5,
                    auth_id="a0-99")
    assert reason_of(restarted, forged) == "auth_unknown"
    with pytest.raises(ValidationError) as caught:
        restarted.check(dict(record, seq=6, terminal="T2"), kept)
    assert caught.value.reason == "auth_unknown"


def test_the_store_keeps_each_cards_engine_state_writing_only_the_sales_that_changed(
        tmp_path: Any) -> None:
    from gateway.store import GatewayStore

    store = GatewayStore(str(tmp_path / "gw.db"))
    book = CardBook(DEMO_PROGRAMS)

    def commit(record: dict[str, Any]) -> dict[str, Any]:
        apply(book, record)
        dirty = book.states.take_dirty()
        store.commit([], {}, dirty, {})
        return dirty

    commit(fields(txn.KIND_ISSUE, card="c1", program="loyalty"))
    for seq in range(2, 7):
        commit(fields(txn.KIND_PURCHASE, seq=seq, amount_minor=1000, points=10))
    # A refund changes its sale: one row written, not the card's five.
    dirty = commit(fields(txn.KIND_REFUND, seq=7, amount_minor=500, points=5, ref="T1-3"))
    assert list(dirty["c1"]["sales_changed"]) == ["T1-3"]
    assert store.load_cards()["c1"]["state"] == book.cards["c1"]["state"]
    # Past the refund window the sales are forgotten, here and in the store.
    later = DAY0_S + (DEMO_PROGRAMS["loyalty"]["refund_window_days"] + 1) * DAY_S
    commit(fields(txn.KIND_PURCHASE, seq=8, amount_minor=1000, points=10, time=later))
    reloaded = store.load_cards()["c1"]["state"]
    assert list(reloaded["sales"]) == ["T1-8"]
    assert reloaded == book.cards["c1"]["state"]
    store.close()


def test_a_card_the_ledger_knows_is_taken_on_with_its_balances() -> None:
    """Issued at another store: this gateway starts its engine state from the ledger's
    value and points (engine_adopt), and the card's points are spendable here."""
    asked: list[str] = []

    def lookup(card: str) -> dict[str, Any] | None:
        asked.append(card)
        return {"program": "club", "currency": "EUR", "value_minor": 2500, "points": 120}

    book = CardBook(DEMO_PROGRAMS, ledger=True)
    directory = CardDirectory(lookup)
    answer = decide(book, None, request(txn.KIND_INQUIRY, 0), DAY0_S, directory)
    assert (answer["value_minor"], answer["points_balance"]) == (2500, 120)
    spend = decide(book, None, request(txn.KIND_PURCHASE, 1000, 1000, redeem_points=100),
                   DAY0_S, directory)
    # 100 points pay 1.00; the card pays 9.00 and earns 2 % of it: 18 points.
    assert (spend["card_value_minor"], spend["redeem_minor"], spend["points"]) == (900, 100, 18)
    assert asked == ["c1"]  # asked once, then kept
    assert reason_of(book, fields(txn.KIND_ISSUE, program="club")) == "card_exists"


def test_exposure_is_kept_with_the_records_and_survives_a_restart(tmp_path: Any) -> None:
    from gateway.store import STATUS_ACCEPTED, GatewayStore, StoredRecord

    book = issued("gift", 1000)
    sale = apply(book, fields(txn.KIND_PURCHASE, amount_minor=1500, card_value_minor=1500,
                              seq=2, auth_mode=txn.AUTH_OFFLINE, terminal="T2"))
    assert book.exposure_by_card == {"c1": 500}
    store = GatewayStore(str(tmp_path / "gw.db"))
    store.commit([StoredRecord("T2", 2, "T2-2", bytes(32), b"", sale, STATUS_ACCEPTED, None)],
                 {}, book.states.take_dirty(), {})
    assert store_reports.exposure(store) == ({"c1": 500}, {"T2": 500})
    store.close()


def test_an_offline_record_beyond_what_a_terminal_may_do_alone_is_refused() -> None:
    """Within its signed rules an offline purchase is taken as it happened; a record no
    terminal keeping them makes (too large, not a purchase, redeeming points) is refused and
    its terminal counted."""
    book = CardBook(DEMO_PROGRAMS, offline_limits={"txn_minor_max": 1000})
    apply(book, fields(txn.KIND_ISSUE, amount_minor=5000, card_value_minor=5000,
                       program="gift"))
    offline = {"auth_mode": txn.AUTH_OFFLINE, "terminal": "T7"}
    apply(book, fields(txn.KIND_PURCHASE, amount_minor=900, card_value_minor=900, seq=2,
                       **offline))
    beyond = fields(txn.KIND_PURCHASE, amount_minor=1500, card_value_minor=1500, seq=3,
                    **offline)
    assert reason_of(book, beyond) == "offline_amount_limit"
    topup = fields(txn.KIND_TOPUP, amount_minor=500, card_value_minor=500, seq=3, **offline)
    assert reason_of(book, topup) == "offline_kind_invalid"
    redeem = fields(txn.KIND_PURCHASE, amount_minor=500, card_value_minor=400, seq=3,
                    redeem_points=10, redeem_minor=100, **offline)
    assert reason_of(book, redeem) == "redeem_needs_online"
    assert book.offline_over_limit == {"T7": 3}
    assert book.cards["c1"]["value_minor"] == 5000 - 900


def test_a_record_ends_the_hold_placed_for_its_seq_under_another_auth_id() -> None:
    """The terminal gave up waiting and sold offline; the answer to its request came late
    and placed a hold. The record for that seq (naming no auth id) ends that hold too."""
    book = CardBook(DEMO_PROGRAMS)
    now = 1_764_000_000.0
    issue = {"terminal": "T1", "seq": 1, "prev": bytes(32), "time": int(now), "merchant": "M1",
             "card": "04a1", "kind": txn.KIND_ISSUE, "currency": "EUR", "amount_minor": 5000,
             "card_value_minor": 5000, "bonus_minor": 0, "points": 0, "program": "gift",
             "auth_mode": txn.AUTH_ONLINE}
    apply(book, issue)
    del issue["auth_id"]
    request = {"terminal": "T1", "seq": 2, "card": "04a1", "kind": txn.KIND_PURCHASE,
               "currency": "EUR", "amount_minor": 700, "card_value_minor": 700}
    late = book.authorize(request, now)
    assert late["approved"] and late["auth_id"] in book.holds
    offline = dict(issue, seq=2, kind=txn.KIND_PURCHASE, amount_minor=700,
                   card_value_minor=700, program="gift", auth_mode=txn.AUTH_OFFLINE)
    book.apply(offline, book.check(offline))
    assert len(book.holds) == 0
    # Refused instead of accepted: the same.
    late = book.authorize(dict(request, seq=3), now)
    assert late["auth_id"] in book.holds
    book.refused({"terminal": "T1", "seq": 3, "card": "04a1"})
    assert len(book.holds) == 0


def test_a_result_past_the_amount_bound_is_amount_invalid_not_a_crash() -> None:
    """A top-up near AMOUNT_MINOR_MAX whose 5 % bonus passes it: declined when asked,
    refused when recorded, never answered or stored with an amount the wire and the
    ledger cannot carry."""
    from protocol.money import AMOUNT_MINOR_MAX

    book = issued("prepaid", 1000)
    answer = book.authorize(request(txn.KIND_TOPUP, AMOUNT_MINOR_MAX), DAY0_S)
    assert answer == {"approved": False, "reason": "amount_invalid"}
    recorded = fields(txn.KIND_TOPUP, seq=2, amount_minor=AMOUNT_MINOR_MAX,
                      card_value_minor=AMOUNT_MINOR_MAX)
    assert reason_of(book, recorded) == "amount_invalid"
    assert book.cards["c1"]["value_minor"] == 1000


def test_a_record_cannot_claim_a_stand_in_the_gateway_did_not_make() -> None:
    """Stand-in approvals are the gateway's risk, within its own stand-in limits: a record
    marked stand-in counts only for an approval the gateway gave as stand-in."""
    book = issued("gift", 5000)
    stand_in = {"auth_mode": txn.AUTH_STAND_IN}
    invented = fields(txn.KIND_PURCHASE, amount_minor=900, card_value_minor=900, seq=2,
                      **stand_in)
    assert reason_of(book, invented) == "auth_unknown"  # no authorization at all
    answer = book.authorize(request(txn.KIND_PURCHASE, 900, 900), DAY0_S)  # online
    claimed = dict(invented, auth_id=answer["auth_id"])
    assert reason_of(book, claimed) == "auth_unknown"  # approved online, not stood in
    book.holds.get(answer["auth_id"]).stand_in = True  # type: ignore[union-attr]
    apply(book, claimed)  # what the ledger-hold stage marks when it stands in
    # After a restart: only an approval kept as stand-in counts.
    restarted = CardBook(DEMO_PROGRAMS, book.cards, auth_epoch=book.holds.epoch + 1)
    later = book.authorize(request(txn.KIND_PURCHASE, 100, 100), DAY0_S)
    record = fields(txn.KIND_PURCHASE, amount_minor=100, card_value_minor=100, seq=3,
                    auth_id=later["auth_id"], **stand_in)
    kept = {"terminal": "T1", "card": "c1", "expect": record_till_amounts(later),
            "auth_mode": txn.AUTH_ONLINE}
    with pytest.raises(ValidationError) as caught:
        restarted.check(record, kept)
    assert caught.value.reason == "auth_unknown"
    restarted.check(record, dict(kept, auth_mode=txn.AUTH_STAND_IN))  # no exception


def test_an_offline_sale_of_a_card_its_configuration_blocked_is_refused() -> None:
    """The terminal names the configuration it sold under: one that carried the card's
    block means it should have declined; naming an older one than before, or none after
    naming one, is going back, which terminals never do."""
    book = CardBook(DEMO_PROGRAMS, offline_limits={"txn_minor_max": 1000})
    apply(book, fields(txn.KIND_ISSUE, amount_minor=5000, card_value_minor=5000,
                       program="gift"))
    book.hotlist.add("c1")
    book.blocked_in = {"c1": 3}
    offline = {"auth_mode": txn.AUTH_OFFLINE, "terminal": "T7"}
    apply(book, fields(txn.KIND_PURCHASE, amount_minor=100, card_value_minor=100, seq=2,
                       config_version=2, **offline))  # sold before it knew: taken, counted
    assert book.hotlist_offline == 1
    blocked = fields(txn.KIND_PURCHASE, amount_minor=100, card_value_minor=100, seq=3,
                     config_version=3, **offline)
    assert reason_of(book, blocked) == "card_blocked"
    for older in (1, None):
        assert reason_of(book, dict(blocked, config_version=older)) == "config_rollback"
    assert book.offline_over_limit == {"T7": 3}
    assert book.cards["c1"]["value_minor"] == 4900
