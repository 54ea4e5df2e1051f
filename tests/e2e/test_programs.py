"""Every card program end to end: terminal (the firmware's modules) -> Mosquitto -> gateway
(the program engine, authoritative) -> ledger (the engine's legs, posted), online and
offline, then a year and more later: what expired is the ledger's breakage.

The numbers are computed by hand from tools/demo_programs.toml; each step says how."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from gateway.cards import DAY_S
from protocol import engine_offline, txn
from tests.support.stack import Stack, running_stack, wait_until
from tools.cli import main
from tools.demo import DEMO_PROGRAMS
from tools.mosquitto import MosquittoBroker
from tools.simulator.terminal import SimulatedTerminal

LIMITS = {"txn_minor_max": 5000, "card_offline_minor_max": 5000,
          "terminal_offline_minor_max": 10_000, "offline_s_max": 600, "offline_txn_max": 5}
GIFT, PREPAID, LOYALTY, CLUB, SAVER, VIP, STAFF = (
    "04a00000000001", "04a00000000002", "04a00000000003", "04a00000000004",
    "04a00000000005", "04a00000000006", "04a00000000007")


class Counter:
    """The cashier: taps a card, runs one operation, insists on the outcome."""

    def __init__(self, sim: SimulatedTerminal) -> None:
        self.sim = sim
        self.terminal = sim.terminal

    def ok(self, card: str, operation: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.sim.tap(card)
        outcome = getattr(self.terminal, operation)(*args, **kwargs)
        assert outcome["approved"], (operation, card, outcome["reason"])
        return dict(outcome["txn"] or outcome["response"])

    def declined(self, card: str, operation: str, *args: Any, **kwargs: Any) -> str:
        self.sim.tap(card)
        outcome = getattr(self.terminal, operation)(*args, **kwargs)
        assert not outcome["approved"]
        return str(outcome["reason"])


@contextmanager
def till(stack: Stack, broker: MosquittoBroker,
         tmp_path: Path) -> Iterator[tuple[SimulatedTerminal, Counter]]:
    """Till T1 of the stack, once the programs have arrived as its signed configuration
    (validated by the terminal), and its cashier; closed afterwards."""
    config = {"terminal": "T1", "merchant": "M1", "key": stack.keys["T1"],
              "currency": "EUR", "programs": {}}
    sim = SimulatedTerminal(config, tmp_path, broker.host, broker.port)
    sim.terminal.auth_timeout_ms = 400
    try:
        sim.service(0)
        assert wait_until(lambda: (sim.service(20), sim.terminal.settings.version)[1] == 1)
        yield sim, Counter(sim)
    finally:
        sim.close()


def back_online_and_settled(stack: Stack, sim: SimulatedTerminal) -> None:
    """The stopped gateway starts again, takes every record the till kept offline and
    settles them all with the ledger."""
    stack.gateway = stack.new_gateway()
    stack.gateway.start()
    assert sim.drain(time.monotonic() + 15)
    assert wait_until(stack.gateway.idle)
    settled = stack.gateway.settle()
    assert settled.refused == [] and settled.pending == []


def sale_id(fields: dict[str, Any]) -> str:
    return txn.txn_id(fields["terminal"], fields["seq"])


def books_agree(stack: Stack) -> dict[str, dict[str, int]]:
    """Every card: the gateway's engine = the ledger's books; the books balance."""
    in_ledger = {b["card"]: b for b in stack.ledger_client.balances()}
    cards = {}
    for card, entry in stack.gateway.cards.cards.items():
        ledger = in_ledger[card]
        assert (entry["value_minor"], entry["points"]) == (
            ledger["value_minor"], ledger["points"]), card
        cards[card] = {"value": entry["value_minor"], "points": entry["points"]}
    assert all(total == 0 for total in stack.ledger_client.trial_balance().values())
    return cards


def test_every_program_runs_from_the_counter_to_the_ledger(
    private_mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    with running_stack(private_mosquitto, tmp_path, ["T1"], LIMITS) as stack, \
            till(stack, private_mosquitto, tmp_path) as (sim, counter):
        assert sim.terminal.settings.programs == DEMO_PROGRAMS
        for card, program, value in ((GIFT, "gift", 5000), (PREPAID, "prepaid", 0),
                                     (LOYALTY, "loyalty", 0), (CLUB, "club", 0),
                                     (SAVER, "saver", 0), (VIP, "vip", 0)):
            issued = counter.ok(card, "issue", program, value)
            assert (issued["program"], issued["version"]) == (program, 1)
        assert counter.declined("04a000000000ff", "issue", "gift", 0) == "amount_invalid"

        # Prepaid: 20.00 topped up + 5 % bonus = 21.00; refunding 10.00 of the top-up
        # takes 10.00 and half the bonus (0.50) back off the card: 10.50 left.
        topup = counter.ok(PREPAID, "topup", 2000)
        assert (topup["bonus_minor"], topup["card_value_minor"]) == (100, 2100)
        back = counter.ok(PREPAID, "refund", sale_id(topup), 1000)
        assert (back["card_value_minor"], back["bonus_minor"]) == (1050, 50)
        # A top-up is never paid from the card's own value; prepaid value may be paid
        # out in cash (cash_out = true): 10.50 - 5.00.
        assert counter.declined(PREPAID, "topup", 500, pay_from_card=True) == (
            "topup_from_own_card")
        assert counter.ok(PREPAID, "cashout", 500)["card_value_minor"] == 500

        # Gift: spent in parts; a refund of half a spend puts half back, a void of the
        # spend the rest (and no more): 50 - 12 + 6 + 6. No cash-out for a gift card.
        spend = counter.ok(GIFT, "purchase", 1200)
        counter.ok(GIFT, "refund", sale_id(spend), 600)
        voided = counter.ok(GIFT, "void", sale_id(spend))
        assert (voided["amount_minor"], voided["card_value_minor"]) == (600, 600)
        assert counter.declined(GIFT, "void", sale_id(spend)) == "refund_exceeds_original"
        assert counter.declined(GIFT, "purchase", 10_000) == "insufficient_value"
        assert counter.declined(GIFT, "cashout", 100) == "cash_out_not_allowed"

        # Loyalty: 1 point per euro paid. 50.00 in cash earns 50; then 30 points pay
        # 0.30 of a 10.00 sale, 9.70 paid earns 9 (rounded down); a refund of 10.00 of
        # the first sale takes back 10 of its points: 50 - 30 + 9 - 10 = 19.
        first = counter.ok(LOYALTY, "purchase", 5000, pay_from_card=False)
        assert first["points"] == 50
        redeem = counter.ok(LOYALTY, "purchase", 1000, pay_from_card=False,
                            redeem_points=30)
        assert (redeem["redeem_points"], redeem["redeem_minor"], redeem["points"]) == (
            30, 30, 9)
        assert counter.ok(LOYALTY, "refund", sale_id(first), 1000)["points"] == 10
        assert counter.declined(LOYALTY, "purchase", 1000, pay_from_card=False,
                                redeem_points=500) == "insufficient_points"

        # Loyalty + prepaid: 50.00 + 10 % = 55.00; 20.00 from the card earns 2 % = 40
        # points; 40 points pay 0.40 of 10.00, the card pays 9.60 and earns 19.2 -> 19
        # (half_even): value 55.00 - 20.00 - 9.60 = 25.40, points 19.
        counter.ok(CLUB, "topup", 5000)
        assert counter.ok(CLUB, "purchase", 2000)["points"] == 40
        club = counter.ok(CLUB, "purchase", 1000, redeem_points=40)
        assert (club["card_value_minor"], club["redeem_minor"], club["points"]) == (
            960, 40, 19)

        # Discount tracking: 60.00 + 50.00 within 30 days reach 100.00: 10 % off later
        # purchases (half_up): 20.00 costs 18.00.
        counter.ok(SAVER, "purchase", 6000, pay_from_card=False)
        counter.ok(SAVER, "purchase", 5000, pay_from_card=False)
        saved = counter.ok(SAVER, "purchase", 2000, pay_from_card=False)
        assert saved["discount_minor"] == 200

        # Tiers: 250.00 reaches silver (200.00) at once, after that sale: it earned 250
        # points at member. Silver: 5 % off 100.00 = 5.00, points x1.5 on 95.00 = 142.
        assert counter.ok(VIP, "purchase", 25_000, pay_from_card=False)["points"] == 250
        answer = counter.ok(VIP, "inquiry")
        assert (answer["tier"], answer["discount_pct"]) == ("silver", 5)
        vip = counter.ok(VIP, "purchase", 10_000, pay_from_card=False)
        assert (vip["discount_minor"], vip["points"]) == (500, 142)
        assert sim.drain(time.monotonic() + 10)

        # Offline: the terminal quotes with the card's tier and today's discount from
        # its last online answer; no points are redeemed offline.
        stack.gateway.stop()
        offline_saver = counter.ok(SAVER, "purchase", 1000, pay_from_card=False)
        assert offline_saver["auth_mode"] == txn.AUTH_OFFLINE
        assert offline_saver["discount_minor"] == 100
        offline_vip = counter.ok(VIP, "purchase", 2000, pay_from_card=False)
        assert (offline_vip["discount_minor"], offline_vip["points"]) == (100, 28)
        assert counter.declined(LOYALTY, "purchase", 1000, pay_from_card=False,
                                redeem_points=5) == "redeem_needs_online"
        assert counter.ok(GIFT, "purchase", 400)["card_value_minor"] == 400

        back_online_and_settled(stack, sim)
        cards = books_agree(stack)
        assert cards[PREPAID] == {"value": 550, "points": 0}
        assert cards[GIFT] == {"value": 5000 - 1200 + 600 + 600 - 400, "points": 0}
        assert cards[LOYALTY] == {"value": 0, "points": 19}
        assert cards[CLUB] == {"value": 2540, "points": 19}
        assert cards[VIP] == {"value": 0, "points": 250 + 142 + 28}
        assert stack.gateway.cards.recomputed == 0  # the offline quotes were exact

        # 400 days later: the gift's value is a year old, the loyalty points 90 days,
        # the club's points a year: all expire at the gateway's sweep; the ledger books
        # them as breakage, and the books still agree card by card.
        later_s = time.time() + 400 * DAY_S
        expired = stack.gateway.settle(now_s=later_s)
        assert expired.refused == [] and expired.posted == 3
        cards = books_agree(stack)
        assert cards[GIFT]["value"] == 0 and cards[LOYALTY]["points"] == 0
        assert cards[CLUB] == {"value": 2540, "points": 0}
        as_of = time.strftime("%Y-%m-%d", time.gmtime(later_s))
        report = stack.ledger_client.report("breakage",
                                            {"as_of": as_of, "window_days": "10"})
        breakage = {(row["program"], row["unit"]): row["breakage_minor"]
                    for row in report["rows"]}
        assert breakage == {("gift", "EUR"): 4600, ("loyalty", "PTS"): 19,
                            ("club", "PTS"): 19}
        # With no spend for a year the VIP card has gone back down to member.
        vip_state = stack.gateway.cards.cards[VIP]["state"]
        assert engine_offline.snapshot(vip_state, DEMO_PROGRAMS["vip"],
                                       int(later_s) // DAY_S)["tier"] == "member"


def test_a_split_tender_sale_and_its_refund_from_the_counter_to_the_ledger(
    private_mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """A gift card of 30.00 pays what it holds of a 50.00 sale, cash the rest; half the sale
    refunded goes back to the tenders that paid, in proportion; offline, a split puts on the
    card what its last answer left. The books agree with the engine card by card."""
    with running_stack(private_mosquitto, tmp_path, ["T1"], LIMITS) as stack, \
            till(stack, private_mosquitto, tmp_path) as (sim, counter):
        counter.ok(GIFT, "issue", "gift", 3000)
        # Paid by the card alone, 50.00 is more than it holds; split, the card pays its
        # 30.00 and cash the other 20.00.
        assert counter.declined(GIFT, "purchase", 5000) == "insufficient_value"
        split = counter.ok(GIFT, "purchase", 5000, split=True)
        assert (split["card_value_minor"], split["split"]) == (3000, True)
        # 25.00 of it back: 3000 * 2500 / 5000 = 15.00 onto the card (and 10.00 cash).
        back = counter.ok(GIFT, "refund", sale_id(split), 2500)
        assert back["card_value_minor"] == 1500
        assert sim.drain(time.monotonic() + 10)

        # Offline: the last answer left 15.00 on the card; a split of 20.00 puts those
        # on the card and 5.00 on cash.
        stack.gateway.stop()
        offline_split = counter.ok(GIFT, "purchase", 2000, split=True)
        assert offline_split["auth_mode"] == txn.AUTH_OFFLINE
        assert offline_split["card_value_minor"] == 1500
        back_online_and_settled(stack, sim)
        assert books_agree(stack)[GIFT] == {"value": 3000 - 3000 + 1500 - 1500, "points": 0}


def test_a_reward_redemption_from_the_counter_to_the_ledgers_report(
    private_mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """Points earned, a reward with a co-payment and one without redeemed at the counter,
    the second voided: the gateway prices them from the catalogue, the books post them as
    points redemptions naming the item, and the ledger's report counts them per item."""
    with running_stack(private_mosquitto, tmp_path, ["T1"], LIMITS) as stack, \
            till(stack, private_mosquitto, tmp_path) as (sim, counter):
        counter.ok(LOYALTY, "issue", "loyalty", 0)
        # 500.00 in cash earns 500 points (1 per euro).
        assert counter.ok(LOYALTY, "purchase", 50_000, pay_from_card=False)["points"] == 500
        # The tote bag: 300 points (worth 3.00) and 2.00 in cash, so its amount is 5.00,
        # nothing from the card and no points earned on the co-payment.
        tote = counter.ok(LOYALTY, "reward", "tote")
        assert (tote["reward"], tote["amount_minor"], tote["redeem_points"],
                tote["redeem_minor"], tote["card_value_minor"], tote["points"]) == (
            "tote", 500, 300, 300, 0, 0)
        coffee = counter.ok(LOYALTY, "reward", "coffee")  # 150 points, no co-payment
        assert (coffee["amount_minor"], coffee["redeem_points"]) == (150, 150)
        # 500 - 300 - 150 = 50 points: not enough for a tote; no such item as a hat.
        assert counter.declined(LOYALTY, "reward", "tote") == "insufficient_points"
        assert counter.declined(LOYALTY, "reward", "hat") == "reward_unknown"
        # The coffee voided: its 150 points come back, 200 on the card.
        voided = counter.ok(LOYALTY, "void", sale_id(coffee))
        assert (voided["amount_minor"], voided["redeem_points"]) == (150, 150)
        assert sim.drain(time.monotonic() + 10)
        assert wait_until(stack.gateway.idle)
        settled = stack.gateway.settle()
        assert settled.refused == [] and settled.pending == []
        assert books_agree(stack)[LOYALTY] == {"value": 0, "points": 500 - 300 - 150 + 150}
        report = stack.ledger_client.report("rewards")
        assert report["rows"] == [
            {"program": "loyalty", "item": "coffee", "currency": "EUR", "redeemed": 1,
             "refunded": 1, "points": 0, "points_worth_minor": 0, "copay_minor": 0},
            {"program": "loyalty", "item": "tote", "currency": "EUR", "redeemed": 1,
             "refunded": 0, "points": 300, "points_worth_minor": 300, "copay_minor": 200},
        ]


def test_a_staff_card_gets_its_volume_discount_within_its_company_limits(
    private_mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """The demo's staff card (tools/demo_programs.toml): 100.00 loaded. 30.00 is above
    25.00, so 5 % off (1.50): 28.50 from the card. 25.00 is not above it: no discount, and
    28.50 + 25.00 = 53.50 passes the 50.00 a day: card_day_limit. 32.00 gets 1.60 off:
    30.40 passes the 30.00 a purchase: card_purchase_limit. 21.50 fits the day: 50.00."""
    with running_stack(private_mosquitto, tmp_path, ["T1"], LIMITS) as stack, \
            till(stack, private_mosquitto, tmp_path) as (sim, counter):
        counter.ok(STAFF, "issue", "staff", 0)
        assert counter.ok(STAFF, "topup", 10_000, pay_from_card=False)[
            "card_value_minor"] == 10_000
        big = counter.ok(STAFF, "purchase", 3_000)
        assert (big["discount_minor"], big["card_value_minor"]) == (150, 2_850)
        assert counter.declined(STAFF, "purchase", 2_500) == "card_day_limit"
        assert counter.declined(STAFF, "purchase", 3_200) == "card_purchase_limit"
        assert counter.ok(STAFF, "purchase", 2_150)["card_value_minor"] == 2_150
        assert sim.drain(time.monotonic() + 10)
        assert wait_until(stack.gateway.idle)
        assert stack.gateway.settle().refused == []
        assert books_agree(stack)[STAFF] == {"value": 10_000 - 2_850 - 2_150, "points": 0}


def test_a_counted_reward_runs_out_at_the_counter_and_a_delivery_brings_it_back(
    private_mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """The office counts one free coffee at the store (`tilltap reward stock`): the first
    redemption is approved (its ledger hold holds the coffee), the second declined
    reward_out_of_stock at the till while the first is held and after it has posted (the
    count falls to 0); a tote bag, not counted, is still handed over; one more coffee
    delivered (`--add 1`) is redeemed again."""
    with running_stack(private_mosquitto, tmp_path, ["T1"], LIMITS) as stack, \
            till(stack, private_mosquitto, tmp_path) as (sim, counter):
        counter.ok(LOYALTY, "issue", "loyalty", 0)
        assert counter.ok(LOYALTY, "purchase", 90_000, pay_from_card=False)["points"] == 900
        # Settled, the ledger knows the card and its points: it holds them (and the item).
        assert sim.drain(time.monotonic() + 10)
        assert wait_until(stack.gateway.idle)
        assert stack.gateway.settle().refused == []

        def stock(*argv: str) -> int:
            return main(["reward", "stock", "--program", "loyalty", "--item", "coffee",
                         "--merchant", "M1", *argv, "--ledger-url", stack.ledger.url])

        def shelf() -> tuple[int, int, int]:
            (row,) = stack.ledger_client.reward_stock("loyalty")["items"]
            return row["quantity"], row["held"], row["available"]

        assert stock("--set", "1") == 0
        assert counter.ok(LOYALTY, "reward", "coffee")["redeem_points"] == 150
        assert shelf() == (1, 1, 0)
        assert counter.declined(LOYALTY, "reward", "coffee") == "reward_out_of_stock"
        assert counter.ok(LOYALTY, "reward", "tote")["redeem_points"] == 300
        assert sim.drain(time.monotonic() + 10)
        assert wait_until(stack.gateway.idle)
        assert stack.gateway.settle().refused == []
        assert shelf() == (0, 0, 0)
        assert counter.declined(LOYALTY, "reward", "coffee") == "reward_out_of_stock"
        assert stock("--add", "1") == 0
        assert counter.ok(LOYALTY, "reward", "coffee")["redeem_points"] == 150
        assert shelf() == (1, 1, 0)
        assert sim.drain(time.monotonic() + 10)
        assert wait_until(stack.gateway.idle)
        assert stack.gateway.settle().refused == []
        assert shelf() == (0, 0, 0)
        assert books_agree(stack)[LOYALTY] == {"value": 0, "points": 900 - 150 - 300 - 150}


def test_a_running_gateway_settles_on_its_own_timer(
    private_mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    from gateway.service import Gateway
    from tests.support.stack import RawTerminal

    with running_stack(private_mosquitto, tmp_path, ["T1"]) as stack:
        stack.gateway.stop()
        stack.gateway = Gateway("gw1", private_mosquitto.host, private_mosquitto.port,
                                str(tmp_path / "gateway.db"), stack.registry, DEMO_PROGRAMS,
                                stack.ledger.url, settle_interval_s=0.2)
        stack.gateway.start()
        raw = RawTerminal(private_mosquitto, "T1", stack.keys["T1"])
        try:
            raw.publish(raw.approved(txn.KIND_ISSUE, GIFT, 2500, program="gift"))
            # Nobody calls settle: the gateway's timer posts the card to the ledger.
            assert wait_until(lambda: any(b["card"] == GIFT
                                          for b in stack.ledger_client.balances()))
            assert stack.ledger_client.card(GIFT)["value_minor"] == 2500
        finally:
            raw.close()
