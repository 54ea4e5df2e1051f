"""`tilltap demo`: one business day of a store, end to end over real parts, reconciled.

Starts a private Mosquitto (an in-process amqtt broker only when no mosquitto binary exists),
the ledger (SQLite in a temporary folder unless --ledger-dsn), the gateway, and simulated
terminals running the firmware's own modules. Issues cards, runs a day of mixed transactions,
settles, and checks three-way: approved on terminals = journaled at the gateway = posted in
the ledger, per terminal and in total, and every card's balance = issued + top-ups + bonus -
spends + refunds. Any difference exits 1.
"""

from __future__ import annotations

import json
import os
import random
import secrets
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from gateway import store_reports
from gateway.card_auth import CardKeys
from gateway.registry import TerminalRegistry
from gateway.service import Gateway
from ledger.auth import dump_logins, new_login
from ledger.client import LedgerClient
from ledger.server import serve, tls_context
from protocol import engine_offline, engine_replay, money, txn
from tools.broker import start_broker
from tools.cards import MasterKeys, new_master_keys
from tools.personalize import personalize
from tools.programs import load_programs
from tools.simulator.cards import make_uid
from tools.simulator.ntag424_card import Ntag424Card
from tools.simulator.terminal import SimulatedTerminal
from tools.tls import make_server_tls

MERCHANT = "M1"
CARD_URL_PREFIX = "https://tilltap.example/c"
DEMO_SYSTEM_ID = b"tilltap-demo"
CURRENCY = "EUR"
DRAIN_TIMEOUT_S = 30.0
DAY_S = 86_400
LATER_DAYS = 400  # past the gift cards' year and the points' 90 days: breakage to reconcile
# How long an interrupted demo waits for a counter to finish its operation (each waits at most
# its own authorization and ack timeouts, far less on a live broker).
TERMINAL_STOP_S = 10.0
RUN_TAG_BYTES = 3  # the ids of one run: 6 hex digits after the gateway, terminal, merchant

DEMO_PROGRAMS_FILE = Path(__file__).with_name("demo_programs.toml")
DEMO_PROGRAMS: dict[str, dict[str, Any]] = load_programs(DEMO_PROGRAMS_FILE)


class Expected:
    """What the terminals approved, kept from their outcomes: the first leg of reconciliation.

    A card's value is what its records moved: issued + top-ups (with bonus) - card spends
    + refunds of purchases - refunds of loads; its points are earned - redeemed - taken back
    + given back. (No sale is offline in the demo's day, so the terminals' points are the
    engine's; time has not yet expired anything.)
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.cards: dict[str, dict[str, int]] = {}
        self.per_terminal: dict[str, dict[str, int]] = {}
        self.sales: list[dict[str, Any]] = []  # purchases and top-ups a refund may name
        self.kind_of: dict[str, int] = {}  # txn id -> kind
        self.declines: dict[str, int] = {}
        self.kinds: dict[str, int] = {}
        self.inquiries = 0
        self.discount_minor = 0
        self.redeemed_points = 0

    def record(self, outcome: dict[str, Any]) -> None:
        with self.lock:
            if not outcome["approved"]:
                self.declines[outcome["reason"]] = self.declines.get(outcome["reason"], 0) + 1
                return
            fields = outcome["txn"]
            if fields is None:
                self.inquiries += 1
                return
            card = self.cards.setdefault(fields["card"], {"value": 0, "points": 0})
            kind = fields["kind"]
            name = txn.KIND_NAMES[kind]
            self.kinds[name] = self.kinds.get(name, 0) + 1
            self.kind_of[txn.txn_id(fields["terminal"], fields["seq"])] = kind
            redeemed = fields.get("redeem_points") or 0
            if kind in (txn.KIND_ISSUE, txn.KIND_TOPUP):
                card["value"] += fields["card_value_minor"]
            elif kind == txn.KIND_CASHOUT:
                card["value"] -= fields["card_value_minor"]
            elif kind == txn.KIND_PURCHASE:
                card["value"] -= fields["card_value_minor"]
                card["points"] += fields["points"] - redeemed
                self.discount_minor += fields.get("discount_minor") or 0
                self.redeemed_points += redeemed
            elif self.kind_of.get(fields["ref"]) == txn.KIND_PURCHASE:
                card["value"] += fields["card_value_minor"]
                card["points"] += redeemed - fields["points"]
                self.redeemed_points -= redeemed
            else:  # a refund of a top-up or an issue: the value leaves the card
                card["value"] -= fields["card_value_minor"]
            if kind in (txn.KIND_PURCHASE, txn.KIND_TOPUP):
                self.sales.append(fields)
            entry = self.per_terminal.setdefault(
                fields["terminal"], {"count": 0, "amount_minor": 0})
            entry["count"] += 1
            entry["amount_minor"] += fields["amount_minor"]


class DemoCard:
    """One customer's card: a personalized emulated NTAG 424 DNA, in one hand at a time."""

    def __init__(self, uid: str, program: str, card: Ntag424Card) -> None:
        self.uid = uid
        self.program = program
        self.card = card
        self.lock = threading.Lock()  # a card is on one reader at a time


def _personalized_cards(count: int, masters: MasterKeys,
                        rng: random.Random) -> list[DemoCard]:
    """Factory cards personalized at the technician's desk (tools/personalize.py); `rng`
    draws their UIDs only (new ones each run: a day on a ledger that has seen another)."""
    cards: dict[str, DemoCard] = {}
    names = list(DEMO_PROGRAMS)
    while len(cards) < count:
        uid = make_uid(rng)
        if uid in cards:
            continue
        card = Ntag424Card(bytes.fromhex(uid))
        personalize(card.apdu, masters, CARD_URL_PREFIX, secrets.token_bytes)
        cards[uid] = DemoCard(uid, names[len(cards) % len(names)], card)
    return list(cards.values())


def _opening_value(program: dict[str, Any], rng: random.Random) -> int:
    """A gift card is sold with a value; a prepaid card may be; points-only cards hold none."""
    if program["gift"] is not None:
        return rng.choice([2000, 5000, 10000])
    if program["prepaid"] is not None:
        return rng.choice([0, 2000, 5000])
    return 0


def _issue_cards(terminals: list[SimulatedTerminal], expected: Expected,
                 blanks: list[DemoCard], rng: random.Random) -> dict[str, DemoCard]:
    """Sell and activate each card at a counter: its program and opening value."""
    cards: dict[str, DemoCard] = {}
    for index, demo_card in enumerate(blanks):
        value = _opening_value(DEMO_PROGRAMS[demo_card.program], rng)
        terminal = terminals[index % len(terminals)]
        terminal.tap(demo_card.card)
        outcome = terminal.terminal.issue(demo_card.program, value)
        expected.record(outcome)
        if outcome["approved"]:
            cards[demo_card.uid] = demo_card
    return cards


def _one_operation(sim: SimulatedTerminal, cards: dict[str, DemoCard], expected: Expected,
                   rng: random.Random) -> None:
    """One customer at the counter, doing what their card's program is for."""
    roll = rng.random()
    if roll >= 0.93:
        expected.record(_refund_something(sim, cards, expected, rng))
        return
    demo_card = cards[rng.choice(list(cards))]
    program = DEMO_PROGRAMS[demo_card.program]
    holds_value = program["gift"] is not None or program["prepaid"] is not None
    with demo_card.lock:
        sim.tap(demo_card.card)
        terminal = sim.terminal
        if roll < 0.1:
            outcome = terminal.inquiry()
        elif holds_value and roll < 0.2:
            # Cash paid out where the program allows it (prepaid); a gift card refuses it.
            outcome = terminal.cashout(rng.choice([300, 800, 1500, 50_000]))
        elif program["prepaid"] is not None and roll < 0.35:
            outcome = terminal.topup(rng.choice([1000, 2000, 2500, 5000]))
        elif program["rewards"] is not None and roll < 0.15:
            # A reward of the catalogue for points (online only); too few points: declined.
            items = program["rewards"]["items"]
            outcome = terminal.reward(items[rng.randrange(len(items))]["id"])
        elif program["points"] is not None and roll < 0.5:
            # Points pay part of the bill (online only); more than the card has is declined.
            outcome = terminal.purchase(rng.randrange(500, 3000), pay_from_card=holds_value,
                                        redeem_points=rng.choice([50, 100, 200, 5000]))
        elif holds_value:
            # Partial spends; now and then more than the card holds, which must be declined.
            amount = rng.randrange(100, 2500) if roll < 0.9 else rng.randrange(20000, 40000)
            outcome = terminal.purchase(amount, pay_from_card=True)
        else:
            # Paid in cash: earns points, counts towards the discount threshold and the tiers.
            outcome = terminal.purchase(rng.randrange(500, 12000), pay_from_card=False)
    expected.record(outcome)


def _refund_something(sim: SimulatedTerminal, cards: dict[str, DemoCard], expected: Expected,
                      rng: random.Random) -> dict[str, Any]:
    with expected.lock:
        # The sales of this counter's cards: no other counter changes them (reproducible).
        sales = [sale for sale in expected.sales if sale["card"] in cards]
    original = rng.choice(sales) if sales else None
    demo_card = cards[original["card"] if original else rng.choice(list(cards))]
    if original is None:  # nothing to refund yet: the customer only asks for the balance
        with demo_card.lock:
            sim.tap(demo_card.card)
            return sim.terminal.inquiry()
    with demo_card.lock:
        sim.tap(demo_card.card)
        of = txn.txn_id(original["terminal"], original["seq"])
        if rng.random() < 0.3:
            return sim.terminal.void(of)  # all that is left of the sale
        return sim.terminal.refund(of, max(1, original["amount_minor"] // 2))


def _run_terminal(sim: SimulatedTerminal, cards: dict[str, DemoCard], expected: Expected,
                  operations: int, seed: int, errors: list[BaseException],
                  stop: threading.Event) -> None:
    rng = random.Random(seed)
    try:
        for _ in range(operations):
            if stop.is_set():  # the demo was interrupted: its broker is about to go
                return
            _one_operation(sim, cards, expected, rng)
            sim.service(0)
    except BaseException as error:  # reported by the main thread, never swallowed
        errors.append(error)


def run_demo(terminal_count: int = 3, card_count: int = 30, operations: int = 540,
             ledger_dsn: str | None = None, seed: int = 2026,
             log: Any = print) -> dict[str, Any]:
    """Run the day and return the reconciliation report (see `reconcile`)."""
    started = time.monotonic()
    # Ids of this run (gateway, terminals, card UIDs) are new each time, so that days run one
    # after the other on one ledger database never collide; what happens is the seed's alone.
    run = secrets.token_hex(RUN_TAG_BYTES)
    gateway_id, merchant = f"gw1_{run}", f"{MERCHANT}_{run}"
    workdir = Path(tempfile.mkdtemp(prefix="tilltap-demo-"))
    dsn = ledger_dsn or f"sqlite:///{workdir / 'ledger.db'}"
    broker = start_broker(log)
    # The ledger as deployed: TLS with its own CA, and a login per caller (the gateway bound
    # to its terminals and merchant; the reconciliation reads as a back-office reader).
    tls = make_server_tls(workdir / "ledger-tls", "127.0.0.1", "tilltap ledger CA", "ledger")
    logins_file = workdir / "ledger-logins.json"
    gateway_login, gateway_token = new_login(gateway_id, "gateway", gateway_id, ("T*",),
                                             (merchant,))
    reader_login, reader_token = new_login("demo-reader", "reader")
    logins_file.write_text(dump_logins({gateway_id: gateway_login,
                                        "demo-reader": reader_login}))
    ledger = serve(dsn, logins_file=logins_file,
                   tls=tls_context(tls["ledger.pem"], tls["ledger.key"]),
                   programs=DEMO_PROGRAMS)  # the gateway's: cards show their engine state
    registry = TerminalRegistry()
    configs = []
    for number in range(1, terminal_count + 1):
        terminal_id = f"T{number}_{run}"
        key = os.urandom(32)
        registry.add(terminal_id, merchant, key)
        configs.append({"terminal": terminal_id, "merchant": merchant, "key": key,
                        "currency": CURRENCY, "programs": DEMO_PROGRAMS})
    masters = new_master_keys(DEMO_SYSTEM_ID)
    card_keys = CardKeys(masters.master(1), masters.master(2), masters.system_id)
    gateway = Gateway(gateway_id, broker.host, broker.port, str(workdir / "gateway.db"), registry,
                      DEMO_PROGRAMS, ledger.url, mqtt5=broker.kind == "mosquitto",
                      card_keys=card_keys, ledger_token=gateway_token,
                      ledger_ca=tls["ca.pem"])
    sims: list[SimulatedTerminal] = []
    threads: list[threading.Thread] = []
    stop = threading.Event()
    try:
        gateway.start()
        sims = [SimulatedTerminal(c, workdir, broker.host, broker.port, seed + i, sun=True)
                for i, c in enumerate(configs)]
        for sim in sims:
            sim.service(0)
        log(f"broker {broker.kind} on {broker.host}:{broker.port}; ledger {ledger.url} "
            f"({dsn.split(':')[0]}); gateway {gateway_id}; terminals "
            f"{', '.join(registry.ids())}")
        expected = Expected()
        rng = random.Random(seed)
        blanks = _personalized_cards(card_count, masters, random.Random(run))
        log(f"personalized {len(blanks)} NTAG 424 DNA cards (diversified keys, SUN on)")
        cards = _issue_cards(sims, expected, blanks, rng)
        _drain(sims, gateway)
        log(f"issued {len(cards)} cards; running {operations} operations on "
            f"{len(sims)} terminals")
        errors: list[BaseException] = []
        # Each counter serves its own customers (a card at one counter only), so the day
        # depends on the seed alone, not on how the counters' threads interleave.
        counters = [{uid: card for number, (uid, card) in enumerate(cards.items())
                     if number % len(sims) == i} for i in range(len(sims))]
        threads = [threading.Thread(target=_run_terminal, args=(
            sim, counters[i], expected, operations // len(sims), seed * 100 + i, errors, stop))
            for i, sim in enumerate(sims)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if errors:
            raise errors[0]
        _drain(sims, gateway)
        settled = gateway.settle()
        log(f"settled batches {settled.settled} ({settled.posted} transactions posted)")
        client = LedgerClient(ledger.url, token=reader_token, ca_file=tls["ca.pem"])
        report = reconcile(expected, gateway, client, sims)
        report["settlement"] = settled.as_dict()
        report["programs"] = _programs_summary(gateway, expected)
        report["ledger_engine"] = _ledger_engine(gateway, client)
        report["differences"] += report["ledger_engine"]["differ"]
        report["later"] = run_later(gateway, client, LATER_DAYS, merchant)
        report["differences"] += report["later"]["differences"] + sum(
            1 for v in report["later"]["trial_balance"].values() if v != 0)
        report["gateway"] = gateway.snapshot()
        report["seconds"] = round(time.monotonic() - started, 2)
        return report
    finally:
        # Interrupted (Ctrl-C) mid-day, the counters' threads still sell: they finish their
        # operation and end before their terminals' connections and the broker are closed
        # under them (closing first, a thread reconnected a closed terminal).
        stop.set()
        for thread in threads:
            if thread.is_alive():  # started, not yet ended (Ctrl-C may come between starts)
                thread.join(TERMINAL_STOP_S)
        for sim in sims:
            sim.close()
        gateway.stop()
        ledger.stop()
        broker.stop()


def _drain(sims: list[SimulatedTerminal], gateway: Gateway) -> None:
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    for sim in sims:
        if not sim.drain(deadline):
            raise RuntimeError(f"terminal {sim.config['terminal']} still holds "
                               f"{sim.journal.depth} unacknowledged records")
    while not gateway.idle() and time.monotonic() < deadline:
        time.sleep(0.01)


def reconcile(expected: Expected, gateway: Gateway, ledger: LedgerClient,
              sims: list[SimulatedTerminal]) -> dict[str, Any]:
    """Compare the three books; every row carries its difference, all must be zero."""
    journaled = store_reports.totals_by_terminal(gateway.store)
    posted = ledger.terminal_totals()
    rows = []
    for sim in sims:
        terminal = sim.config["terminal"]
        approved = expected.per_terminal.get(terminal, {"count": 0, "amount_minor": 0})
        at_gateway = journaled.get(terminal, {"count": 0, "amount_minor": 0})
        in_ledger = _ledger_terminal(posted.get(terminal))
        rows.append({
            "terminal": terminal,
            "approved": approved["count"], "journaled": at_gateway["count"],
            "posted": in_ledger["count"],
            "approved_minor": approved["amount_minor"],
            "journaled_minor": at_gateway["amount_minor"],
            "posted_minor": in_ledger["amount_minor"],
            "terminal_seq": sim.journal.last_seq,
        })
    for row in rows:
        row["difference"] = _mismatches(
            (row["approved"], row["journaled"], row["posted"]),
            (row["approved_minor"], row["journaled_minor"], row["posted_minor"]))
    total = {key: sum(r[key] for r in rows) for key in (
        "approved", "journaled", "posted", "approved_minor", "journaled_minor",
        "posted_minor", "difference")}
    cards = _reconcile_cards(expected, gateway, ledger)
    trial = ledger.trial_balance()
    # A refused record is an approved sale missing from the books: in this day there must be
    # none, and the terminals' refused logs must count what the gateway's report lists.
    refused = {"gateway": len(store_reports.refusals(gateway.store)),
               "terminals": sum(sim.uplink.refused for sim in sims)}
    differences = total["difference"] + sum(c["difference"] for c in cards) + sum(
        1 for v in trial.values() if v != 0) + refused["gateway"] + refused["terminals"]
    return {"terminals": rows, "total": total, "cards": cards, "trial_balance": trial,
            "declines": expected.declines, "inquiries": expected.inquiries,
            "kinds": expected.kinds, "refused": refused,
            "differences": differences}


def _mismatches(*groups: tuple[int, ...]) -> int:
    """How many of the groups hold values that are not all equal."""
    return sum(1 for group in groups if len(set(group)) != 1)


def _ledger_terminal(entry: dict[str, Any] | None) -> dict[str, int]:
    if not entry:
        return {"count": 0, "amount_minor": 0}
    amount = sum(k["amount_minor"] for k in entry["by_kind"].values())
    return {"count": entry["count"], "amount_minor": amount}


def _reconcile_cards(expected: Expected, gateway: Gateway,
                     ledger: LedgerClient) -> list[dict[str, Any]]:
    in_ledger = {b["card"]: b for b in ledger.balances()}
    # Points the gateway's engine counted otherwise than a terminal showed (a sale applied
    # in another order than it was authorized): counted per card, and reported.
    recomputed = gateway.cards.points_recomputed
    rows = []
    for card, e in sorted(expected.cards.items()):
        at_gateway = gateway.cards.cards.get(card, {"value_minor": 0, "points": 0})
        ledger_entry = in_ledger.get(card, {"value_minor": 0, "points": 0})
        points = e["points"] + recomputed.get(card, 0)
        rows.append({
            "card": card, "expected_minor": e["value"], "gateway_minor": at_gateway["value_minor"],
            "ledger_minor": ledger_entry["value_minor"], "expected_points": points,
            "gateway_points": at_gateway["points"], "ledger_points": ledger_entry["points"],
            "difference": _mismatches(
                (e["value"], at_gateway["value_minor"], ledger_entry["value_minor"]),
                (points, at_gateway["points"], ledger_entry["points"])),
        })
    return rows


def _ledger_engine(gateway: Gateway, ledger: LedgerClient) -> dict[str, Any]:
    """Each card's engine state as the ledger replays it (GET /v1/cards/<card>, "engine")
    against the gateway's own: tier, percent off and points lots must be the same; a card
    the ledger cannot replay is counted by its reason (ledger/card_engine.py)."""
    counts: dict[str, Any] = {"agree": 0, "differ": 0, "not_known": {}}
    for card, entry in sorted(gateway.cards.cards.items()):
        answer = ledger.card(card)
        at_ledger = answer.get("engine")
        if at_ledger is None:
            reason = str(answer.get("engine_reason"))
            counts["not_known"][reason] = counts["not_known"].get(reason, 0) + 1
            continue
        state = entry["state"]
        mine = engine_replay.described(state, DEMO_PROGRAMS[entry["program"]], state["day"])
        same = (at_ledger["tier"] == mine["tier"]
                and at_ledger["discount"]["pct"] == mine["discount"]["pct"]
                and [lot["points"] for lot in at_ledger["points_lots"]]
                == [lot["points"] for lot in mine["points_lots"]])
        counts["agree" if same else "differ"] += 1
    return counts


def _programs_summary(gateway: Gateway, expected: Expected) -> dict[str, Any]:
    """Per program: cards, value and points held, and the tiers the cards reached."""
    programs: dict[str, dict[str, Any]] = {}
    for entry in gateway.cards.cards.values():
        row = programs.setdefault(entry["program"], {"cards": 0, "value_minor": 0,
                                                     "points": 0, "tiers": {}})
        row["cards"] += 1
        row["value_minor"] += entry["value_minor"]
        row["points"] += entry["points"]
        tier = entry["state"]["tier"]
        if tier is not None:
            row["tiers"][tier] = row["tiers"].get(tier, 0) + 1
    return {"programs": programs, "discount_minor": expected.discount_minor,
            "redeemed_points": expected.redeemed_points, "recomputed": gateway.cards.recomputed}


def run_later(gateway: Gateway, ledger: LedgerClient, days: int,
              merchant: str | None = None) -> dict[str, Any]:
    """Let `days` pass at the gateway: its sweep expires gift value and points (expire
    records), settlement posts them, and the ledger's breakage (`merchant`'s: the ledger may
    hold other days too) must equal what the gateway expired, card by card balances equal."""
    before = {card: (e["value_minor"], e["points"]) for card, e in gateway.cards.cards.items()}
    later_s = time.time() + days * DAY_S
    settled = gateway.settle(now_s=later_s)
    expired_value = sum(before[c][0] - e["value_minor"] for c, e in gateway.cards.cards.items())
    expired_points = sum(before[c][1] - e["points"] for c, e in gateway.cards.cards.items())
    as_of = time.strftime("%Y-%m-%d", time.gmtime(later_s))
    breakage = ledger.report("breakage", {"as_of": as_of, "window_days": str(days + 2)})
    booked = {CURRENCY: 0, money.POINTS_UNIT: 0}
    for row in breakage["rows"]:
        if merchant is None or row["merchant"] == merchant:
            booked[row["unit"]] = booked.get(row["unit"], 0) + row["breakage_minor"]
    in_ledger = {b["card"]: b for b in ledger.balances()}
    cards_off = sum(
        1 for card, e in gateway.cards.cards.items()
        if (e["value_minor"], e["points"]) != (in_ledger.get(card, {}).get("value_minor", 0),
                                               in_ledger.get(card, {}).get("points", 0)))
    differences = cards_off + _mismatches((expired_value, booked[CURRENCY]),
                                          (expired_points, booked[money.POINTS_UNIT]))
    # Tiers move down by their rule as the days pass with no spend (the gateway's engine,
    # asked what a card would be told on that day).
    tiers: dict[str, int] = {}
    later_day = int(later_s) // DAY_S
    for entry in gateway.cards.cards.values():
        program = DEMO_PROGRAMS[entry["program"]]
        if program["tiers"] is not None:
            tier = engine_offline.snapshot(entry["state"], program, later_day)["tier"]
            tiers[tier] = tiers.get(tier, 0) + 1
    return {"days": days, "tiers": tiers, "expire_records": settled.posted,
            "expired_minor": expired_value,
            "expired_points": expired_points, "breakage_minor": booked[CURRENCY],
            "breakage_points": booked[money.POINTS_UNIT], "cards_off": cards_off,
            "trial_balance": ledger.trial_balance(), "differences": differences}


def render(report: dict[str, Any]) -> str:
    """The reconciliation as a text table for the cashier's manager."""
    lines = ["", "Reconciliation (approved on terminals = journaled at gateway = posted in ledger)",
             f"{'terminal':<9}{'approved':>9}{'journaled':>10}{'posted':>8}"
             f"{'approved':>15}{'posted':>15}{'diff':>6}"]
    for row in report["terminals"] + [dict(report["total"], terminal="TOTAL")]:
        lines.append(
            f"{row['terminal']:<9}{row['approved']:>9}{row['journaled']:>10}{row['posted']:>8}"
            f"{money.format_minor(row['approved_minor'], CURRENCY):>15}"
            f"{money.format_minor(row['posted_minor'], CURRENCY):>15}{row['difference']:>6}")
    cards = report["cards"]
    bad_cards = [c for c in cards if c["difference"]]
    lines.append(f"cards: {len(cards)} checked, {len(bad_cards)} with a difference "
                 "(value and points from the terminals' records = gateway = ledger)")
    for c in bad_cards:
        lines.append(f"  {c['card']}: value expected {c['expected_minor']} gateway "
                     f"{c['gateway_minor']} ledger {c['ledger_minor']}; points expected "
                     f"{c['expected_points']} gateway {c['gateway_points']} "
                     f"ledger {c['ledger_points']}")
    summary = report["programs"]
    lines.append("programs (program: cards, value held, points held, tiers):")
    for name, row in sorted(summary["programs"].items()):
        tiers = ", ".join(f"{t} {n}" for t, n in sorted(row["tiers"].items()))
        lines.append(f"  {name:<8} {row['cards']:>3} cards "
                     f"{money.format_minor(row['value_minor'], CURRENCY):>12} "
                     f"{row['points']:>7} points  {tiers}")
    lines.append(f"discounts given {money.format_minor(summary['discount_minor'], CURRENCY)}; "
                 f"points redeemed {summary['redeemed_points']}; records whose points the "
                 f"gateway recomputed: {summary['recomputed']}")
    engine = report["ledger_engine"]
    lines.append(f"tier, discount and points lots the ledger replays = the gateway's: "
                 f"{engine['agree']} cards, {engine['differ']} differ, not known "
                 f"{json.dumps(engine['not_known'], sort_keys=True)}")
    later = report["later"]
    lines.append(
        f"{later['days']} days later: {later['expire_records']} expire records; gateway "
        f"expired {money.format_minor(later['expired_minor'], CURRENCY)} and "
        f"{later['expired_points']} points, ledger breakage "
        f"{money.format_minor(later['breakage_minor'], CURRENCY)} and "
        f"{later['breakage_points']} points; cards off {later['cards_off']}; "
        f"trial balance {json.dumps(later['trial_balance'])}; tiers then "
        f"{json.dumps(later['tiers'], sort_keys=True)}")
    lines.append(f"ledger trial balance per unit: {json.dumps(report['trial_balance'])}")
    lines.append(f"card taps proved genuine by their SUN at the gateway: "
                 f"{report['gateway']['sun_verified']}")
    lines.append(f"approved by kind: {json.dumps(report['kinds'], sort_keys=True)}")
    lines.append(f"declines: {json.dumps(report['declines'])}; "
                 f"balance inquiries: {report['inquiries']}")
    lines.append(f"records refused after their MAC verified: {report['refused']['gateway']} at "
                 f"the gateway (tilltap gateway refusals), {report['refused']['terminals']} in "
                 f"the terminals' refused logs")
    lines.append(f"differences: {report['differences']}  ({report['seconds']} s)")
    return "\n".join(lines)
