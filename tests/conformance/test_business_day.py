"""A business day of the docs-only terminal against the real gateway over Mosquitto.

The terminal (tests/conformance/docterm, written from docs/protocol.md and docs/cards.md) plays
the cashier and the cards: it issues cards of several programs, tops up, sells online (card
and cash tender) and offline, refunds, voids, pays out cash, asks balances, takes a new
configuration and corrects its clock; a second day provokes every refused case of section
5.1. After settlement the ledger must hold exactly the records the terminal saw accepted,
with the same amounts, none it saw refused, every card's balance as those records say, and a
zero trial balance.

The stack is the real one: a private Mosquitto, the ledger over HTTP on SQLite, and the
gateway with card keys (so every request and record proves its card with a fresh SUN) and
offline limits.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cbor2
import pytest

from gateway.card_auth import CardKeys
from gateway.registry import TerminalRegistry
from gateway.service import Gateway
from ledger.client import LedgerClient
from ledger.server import LedgerServer, serve
from tests.conformance.docterm import dcbor, mac0, schema
from tests.conformance.docterm.card import Card, master_keys_text
from tests.conformance.docterm.journal import ACCEPTED, REFUSED_LOG_MAX, Entry
from tests.conformance.docterm.link import down_topic
from tests.conformance.docterm.terminal import DocTerminal, Outcome, Rtc
from tools.demo import DEMO_PROGRAMS
from tools.mosquitto import MosquittoBroker

pytestmark = pytest.mark.e2e

TERMINAL, MERCHANT, CURRENCY = "T1", "M1", "EUR"
SYSTEM_ID = b"tilltap-conformance"
WAIT_S = 20.0
CLOCK_DRIFT_S = 600  # beyond CLOCK_SKEW_MAX_S (300): a record dated so is time_invalid
LIMITS = {"txn_minor_max": 2000, "card_offline_minor_max": 3000,
          "terminal_offline_minor_max": 5000, "offline_txn_max": 5, "offline_s_max": 3600}
KIND_NAMES = {schema.KIND_ISSUE: "issue", schema.KIND_TOPUP: "topup",
              schema.KIND_PURCHASE: "purchase", schema.KIND_REFUND: "refund",
              schema.KIND_CASHOUT: "cashout"}


class Store:
    """One shop: ledger, gateway (with card keys and offline limits), one terminal key."""

    def __init__(self, broker: MosquittoBroker, workdir: Path) -> None:
        self.broker, self.workdir = broker, workdir
        self.key = os.urandom(32)
        self.registry = TerminalRegistry()
        self.registry.add(TERMINAL, MERCHANT, self.key)
        self.masters = {1: os.urandom(16), 2: os.urandom(16)}
        masters_file = workdir / "masters.json"
        masters_file.write_text(master_keys_text(self.masters, SYSTEM_ID))  # docs/cards.md
        self.card_keys = CardKeys.load(masters_file)
        self.ledger: LedgerServer = serve(f"sqlite:///{workdir / 'ledger.db'}")
        self.ledger_client = LedgerClient(self.ledger.url)
        self.gateway: Gateway | None = None
        self.start(DEMO_PROGRAMS, LIMITS, config_version=1)

    def start(self, programs: dict[str, dict[str, Any]], limits: dict[str, int],
              config_version: int) -> None:
        self.gateway = Gateway("gw1", self.broker.host, self.broker.port,
                               str(self.workdir / "gateway.db"), self.registry, programs,
                               self.ledger.url, limits=limits, config_version=config_version,
                               card_keys=self.card_keys)
        self.gateway.start()

    def restart(self, programs: dict[str, dict[str, Any]], limits: dict[str, int],
                config_version: int) -> None:
        """`tilltap gateway run` again, with other programs, limits or --config-version."""
        assert self.gateway is not None
        self.gateway.stop()
        self.start(programs, limits, config_version)

    def new_card(self) -> Card:
        return Card(b"\x04" + os.urandom(6), self.masters, SYSTEM_ID)

    def terminal(self, rtc: Rtc | None = None) -> DocTerminal:
        terminal = DocTerminal(TERMINAL, MERCHANT, self.key, CURRENCY, self.broker.host,
                               self.broker.port, rtc)
        terminal.connect()
        assert terminal.wait_for(lambda: terminal.settings.version >= 1, WAIT_S), (
            "no signed configuration arrived")
        return terminal

    def close(self) -> None:
        if self.gateway is not None:
            self.gateway.stop()
        self.ledger.stop()


@pytest.fixture
def store(private_mosquitto: MosquittoBroker, tmp_path: Path) -> Iterator[Store]:
    shop = Store(private_mosquitto, tmp_path)
    yield shop
    shop.close()


def approved(outcome: Outcome) -> Outcome:
    assert outcome.approved, f"declined: {outcome.reason}"
    return outcome


def record_of(outcome: Outcome) -> dict[str, Any]:
    """The record of an approved operation."""
    assert outcome.approved and outcome.record is not None, f"declined: {outcome.reason}"
    return outcome.record


def declined(outcome: Outcome, reason: str) -> None:
    assert not outcome.approved and outcome.reason == reason, (outcome.approved, outcome.reason)


# -- reconciliation ------------------------------------------------------------------------------
def _posted(store: Store) -> dict[str, tuple[Any, ...]]:
    with sqlite3.connect(f"file:{store.workdir / 'ledger.db'}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT txn_id, kind, amount_minor, card_value_minor, bonus_minor, points"
            " FROM transactions WHERE terminal = ?", (TERMINAL,)).fetchall()
    return {row[0]: tuple(row[1:]) for row in rows}


def _card_effects(entries: list[Entry]) -> dict[str, dict[str, int]]:
    """Each card's value and points as the accepted records say (refunds of purchases)."""
    cards: dict[str, dict[str, int]] = {}
    for entry in entries:
        f = entry.fields
        card = cards.setdefault(f["card"], {"value_minor": 0, "points": 0})
        sign = -1 if f["kind"] in (schema.KIND_PURCHASE, schema.KIND_CASHOUT) else 1
        card["value_minor"] += sign * f["card_value_minor"]
        redeemed = f.get("redeem_points") or 0
        if f["kind"] == schema.KIND_PURCHASE:
            card["points"] += f["points"] - redeemed
        elif f["kind"] == schema.KIND_REFUND:
            card["points"] += redeemed - f["points"]
    return cards


def reconcile(store: Store, terminal: DocTerminal) -> list[Entry]:
    """Settle, then compare the ledger with what the terminal saw; returns the accepted."""
    assert terminal.drain(WAIT_S), f"{terminal.journal.depth} records still unanswered"
    assert store.gateway is not None
    assert _wait(store.gateway.idle)
    store.gateway.settle()
    answered = [e for e in terminal.journal.history if e.outcome is not None]
    assert len(answered) == len(terminal.journal.history), "a record without an answer"
    accepted = [e for e in answered if e.outcome == ACCEPTED]
    expected = {f"{TERMINAL}-{e.seq}": (
        KIND_NAMES[e.fields["kind"]], e.fields["amount_minor"], e.fields["card_value_minor"],
        e.fields["bonus_minor"], e.fields["points"]) for e in accepted}
    assert len(expected) == len(accepted), "one txn id accepted twice"
    assert _posted(store) == expected
    balances = {b["card"]: b for b in store.ledger_client.balances()}
    for card, effects in _card_effects(accepted).items():
        assert {k: balances[card][k] for k in effects} == effects, card
    assert not any(store.ledger_client.trial_balance().values())
    return accepted


def _wait(condition: Any, timeout_s: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


# -- the day -------------------------------------------------------------------------------------
def test_a_business_day_of_the_docs_only_terminal_reconciles_with_the_ledger(
        store: Store) -> None:
    terminal = store.terminal()
    try:
        gateway = store.gateway
        assert gateway is not None
        # The gateway verified the terminal's sealed "online" status (section 5.8).
        assert _wait(lambda: gateway.presence.get(TERMINAL, {}).get("state") == "online")
        cards = _selling(store, terminal)
        _offline_and_a_new_configuration(store, terminal, cards)
        _clock_drift_corrected_online(terminal, cards["loyalty"])
        accepted = reconcile(store, terminal)
        assert len(accepted) == len(terminal.journal.history)  # an honest day: none refused
        assert terminal.counts.bad_downlinks == 0
        assert not terminal.counts.unsigned_notices and not terminal.counts.sealed_notices
    finally:
        terminal.close()


def _selling(store: Store, terminal: DocTerminal) -> dict[str, Card]:
    cards = {program: store.new_card()
             for program in ("gift", "prepaid", "loyalty", "club", "vip", "saver")}
    opening = {"gift": 5000, "prepaid": 2000, "club": 1000}
    for program, card in cards.items():
        issued = record_of(terminal.issue(card, program, opening.get(program, 0)))
        assert issued["program"] == program and issued["auth_id"]
        assert issued["card_value_minor"] == opening.get(program, 0)
    gift, prepaid, loyalty = cards["gift"], cards["prepaid"], cards["loyalty"]
    declined(terminal.issue(gift, "gift", 100), "card_exists")

    # Top-ups paid in cash: the answer says the bonus, the record copies it.
    topup = record_of(terminal.topup(prepaid, 5000))
    assert (topup["bonus_minor"], topup["card_value_minor"]) == (250, 5250)
    assert record_of(terminal.topup(cards["club"], 2000))["bonus_minor"] == 200
    declined(terminal.topup(prepaid, 1000, from_card=True), "topup_from_own_card")

    # Purchases online, from the card and in cash; points, redemption, tier and discount.
    assert record_of(terminal.purchase(gift, 1200))["card_value_minor"] == 1200
    assert record_of(terminal.purchase(cards["club"], 1500))["points"] == 30
    cash_sale = approved(terminal.purchase(loyalty, 2500, from_card=False))
    assert (record_of(cash_sale)["card_value_minor"], record_of(cash_sale)["points"]) == (0, 25)
    redeem = record_of(terminal.purchase(loyalty, 1000, from_card=False, redeem_points=10))
    assert (redeem["redeem_points"], redeem["redeem_minor"]) == (10, 10)
    approved(terminal.purchase(cards["vip"], 30_000, from_card=False))
    silver = record_of(terminal.purchase(cards["vip"], 10_000, from_card=False))
    assert silver["discount_minor"] == 500  # silver from 200.00: 5 % off
    approved(terminal.purchase(cards["saver"], 12_000, from_card=False))
    saved = record_of(terminal.purchase(cards["saver"], 2000, from_card=False))
    assert saved["discount_minor"] == 200  # 100.00 within 30 days: 10 % off

    # A refund of part of a cash sale takes its points back; a void refunds what is left.
    refund = record_of(terminal.refund(loyalty, f"{TERMINAL}-{cash_sale.seq}", 1000))
    assert (refund["points"], refund["card_value_minor"]) == (10, 0)
    to_void = approved(terminal.purchase(gift, 800))
    void = approved(terminal.void(gift, f"{TERMINAL}-{to_void.seq}"))
    assert void.response is not None and void.response["amount_minor"] == 800
    assert (record_of(void)["amount_minor"], record_of(void)["card_value_minor"]) == (800, 800)

    # Cash-out where the program allows it; not on a gift card.
    assert record_of(terminal.cashout(prepaid, 1000))["card_value_minor"] == 1000
    declined(terminal.cashout(gift, 100), "cash_out_not_allowed")

    # A balance inquiry journals nothing.
    last_seq = terminal.journal.last_seq
    inquiry = approved(terminal.inquiry(gift))
    assert inquiry.response is not None and inquiry.response["value_minor"] == 5000 - 1200
    assert inquiry.record is None and terminal.journal.last_seq == last_seq
    return cards


def _offline_and_a_new_configuration(store: Store, terminal: DocTerminal,
                                     cards: dict[str, Card]) -> None:
    gift, stranger = cards["gift"], store.new_card()
    assert terminal.drain(WAIT_S)
    terminal.disconnect()
    # Section 3.1: an offline record carries the quote's card part and points, the program
    # of the card's last answer, the version of the configuration, and no auth_id.
    offline = record_of(terminal.purchase(gift, 700))
    assert offline["auth_mode"] == schema.AUTH_OFFLINE and offline["sun"]
    assert (offline["program"], offline["version"], offline["card_value_minor"]) == (
        "gift", 1, 700)
    assert offline.get("auth_id") is None
    # Section 5.4: the limits count card parts; a sale paid in cash has none.
    declined(terminal.purchase(gift, 3000), "offline_amount_limit")
    assert record_of(terminal.purchase(gift, 3000, from_card=False))["card_value_minor"] == 0
    # docs/programs.md 2.1: each card's quote from its last answer (the ledger's points, at
    # reconciliation, are the gateway engine's: they must be these).
    vip = record_of(terminal.purchase(cards["vip"], 2000, from_card=False))
    assert (vip["discount_minor"], vip["points"]) == (100, 28)  # silver: 5 % off, x1.5
    saver = record_of(terminal.purchase(cards["saver"], 1005, from_card=False))
    assert (saver["discount_minor"], saver["points"]) == (101, 0)  # 10 % that day, half_up
    assert record_of(terminal.purchase(cards["loyalty"], 1234, from_card=False))["points"] == 12
    # Five offline records held (offline_txn_max): amount is checked before count.
    declined(terminal.purchase(gift, 5000), "offline_amount_limit")
    declined(terminal.purchase(gift, 100), "offline_count_limit")
    declined(terminal.purchase(stranger, 100), "offline_card_unknown")
    declined(terminal.topup(gift, 100), "host_unavailable")
    terminal.connect()
    assert terminal.drain(WAIT_S)

    # A new configuration (section 5.7): restart with a new program, other limits and
    # --config-version 5.
    old_version, old_sealed = terminal.settings.version, terminal.settings.sealed
    programs = dict(DEMO_PROGRAMS, voucher=dict(DEMO_PROGRAMS["gift"], id="voucher",
                                                  name="Voucher"))
    store.restart(programs, dict(LIMITS, txn_minor_max=4000, card_offline_minor_max=5000),
                  config_version=5)
    assert terminal.wait_for(lambda: terminal.settings.version > old_version, WAIT_S)
    # Section 5.7: changed programs make the stored version + 1, raised to 5 by the flag.
    assert (old_version, terminal.settings.version) == (1, 5)
    assert terminal.settings.limits["txn_minor_max"] == 4000
    assert "voucher" in terminal.settings.programs
    assert record_of(terminal.issue(store.new_card(), "voucher", 1500))["program"] == "voucher"
    # The old configuration again is refused and counted; the same one again is ignored.
    topic = down_topic(MERCHANT, TERMINAL, "config")
    terminal.link.publish_to(topic, old_sealed)
    terminal.link.publish_to(topic, terminal.settings.sealed)
    assert terminal.wait_for(
        lambda: terminal.counts.config_refused == {"config_rollback": 1}, WAIT_S)
    assert terminal.settings.limits["txn_minor_max"] == 4000

    terminal.disconnect()
    approved(terminal.purchase(gift, 3000))  # within the new limit
    terminal.connect()
    assert terminal.drain(WAIT_S)


def _clock_drift_corrected_online(terminal: DocTerminal, cash_card: Card) -> None:
    """An RTC 600 s fast: the authorization answer is fresh, the terminal takes the gateway's
    clock from it, and the record carries the corrected time (section 5.5)."""
    terminal.rtc.drift_s = CLOCK_DRIFT_S
    record = record_of(terminal.purchase(cash_card, 300, from_card=False))
    assert abs(terminal.clock_offset_s + CLOCK_DRIFT_S) <= 5
    assert abs(record["time"] - time.time()) <= 5
    assert terminal.drain(WAIT_S)


# -- the refused cases of section 5.1 ----------------------------------------------------------
def _acks_naming(terminal: DocTerminal, key: str, seq: int) -> list[dict[str, Any]]:
    return [a for a in terminal.counts.acks if any(p[0] == seq for p in a.get(key, []))]


def _outcome(terminal: DocTerminal, target: Entry | int) -> str | None:
    """The answer to a record (or to the last record sealed under a seq), once it came."""
    entry = target if isinstance(target, Entry) else terminal.journal.latest(target)
    assert entry is not None, f"seq {target} was never sealed"
    assert terminal.wait_for(lambda: entry.outcome is not None, WAIT_S), (
        f"seq {entry.seq} got no answer")
    return entry.outcome


def test_every_refused_case_of_section_5_1_is_answered_and_the_ledger_reconciles(
        store: Store) -> None:
    rtc = Rtc()
    terminal = store.terminal(rtc)
    try:
        gift, stranger = store.new_card(), store.new_card()
        approved(terminal.issue(gift, "gift", 20_000))
        assert terminal.drain(WAIT_S)
        _rows_1_to_4_change_nothing(terminal, gift)
        _rows_8_and_9_are_stored_refused_and_consume_their_seq(terminal, gift, stranger)
        _rows_5_6_and_7_resend_replay_and_a_broken_chain(terminal, gift)
        _more_refusals_in_one_burst_than_one_ack_carries(terminal, gift)
        _rows_11_and_13_a_gap_filled_by_the_resend(terminal, gift)
        _row_8_time_invalid_then_the_clock_corrects(terminal, rtc, gift)
        accepted = reconcile(store, terminal)
        refused = {e.outcome for e in terminal.journal.history} - {ACCEPTED}
        assert refused == {"amount_invalid", "field_invalid", "rule_mismatch", "card_unknown",
                           "seq_replayed", "chain_broken", "time_invalid"}
        assert accepted and terminal.journal.refused_count == 8 + REFUSED_BURST
    finally:
        terminal.close()


BAD_ALG = bytes.fromhex("a10106")  # {1: 6}: HMAC 384/384, not tilltap's


def _envelope(protected: bytes, unprotected: dict[int, Any], payload: bytes,
              tag: bytes) -> bytes:
    return cbor2.dumps(cbor2.CBORTag(17, [protected, unprotected, payload, tag]),
                       canonical=True)


def _rows_1_to_4_change_nothing(terminal: DocTerminal, gift: Card) -> None:
    """Rows 1-3: what does not verify gets an unsigned notice; row 4: a record whose MAC
    verifies but whose payload no chain can place gets a sealed one. No seq is consumed."""
    last_seq, depth = terminal.journal.last_seq, terminal.journal.depth
    record = terminal.seal_detached(terminal.next_fields(
        gift.card_id, schema.KIND_PURCHASE, 100, sun=gift.tap(), program="gift"))
    payload = mac0.parse(record).payload
    terminal.publish_raw(b"\xff" * 10)  # row 2: not a COSE_Mac0
    terminal.publish_raw(mac0.seal(os.urandom(32), payload, TERMINAL.encode()))  # row 3
    terminal.publish_raw(mac0.seal(terminal.key, payload, b"T9"))  # row 1: another kid
    tag = cbor2.loads(record).value[3]
    terminal.publish_raw(_envelope(BAD_ALG, {4: TERMINAL.encode()}, payload, tag))  # row 3
    # Section 2's order: each breaks its reason's rule and every later one (other alg, a
    # tag that does not verify), so only the order of the gateway's checks picks the reason.
    kid = {4: TERMINAL.encode()}
    for envelope in (
            _envelope(BAD_ALG, kid | {5: b"x"}, payload, bytes(32)),  # message_malformed
            _envelope(BAD_ALG, kid, payload, bytes(16)),  # message_malformed
            _envelope(BAD_ALG, {}, payload, bytes(32)),  # terminal_unknown
            _envelope(bytes.fromhex("a0"), kid, payload, bytes(32))):  # alg_unsupported
        terminal.publish_raw(envelope)
    assert terminal.wait_for(lambda: len(terminal.counts.unsigned_notices) == 8, WAIT_S)
    assert sorted(n["reason"] for n in terminal.counts.unsigned_notices) == sorted([
        "message_malformed", "mac_invalid", "topic_mismatch", "alg_unsupported",
        "message_malformed", "message_malformed", "terminal_unknown", "alg_unsupported"])
    # Row 4: keys out of order (a broken encoder), and a seq that is not a uint.
    fields = terminal.next_fields(gift.card_id, schema.KIND_PURCHASE, 100)
    item = schema.pack(schema.TXN, fields)
    unsorted = dict(sorted(item.items(), reverse=True))
    terminal.publish_raw(terminal.seal_payload(cbor2.dumps(unsorted)))
    terminal.publish_raw(terminal.seal_payload(dcbor.encode(item | {3: "one"})))
    assert terminal.wait_for(lambda: len(terminal.counts.sealed_notices) == 2, WAIT_S)
    reasons = sorted(n["reason"] for n in terminal.counts.sealed_notices)
    assert reasons == ["field_invalid", "message_malformed"]
    assert all("seq" not in n for n in terminal.counts.sealed_notices)
    # A prev that is not 32 bytes: the notice names the seq, which was readable.
    terminal.publish_raw(terminal.seal_payload(dcbor.encode(item | {4: b"short"})))
    assert terminal.wait_for(lambda: len(terminal.counts.sealed_notices) == 3, WAIT_S)
    assert terminal.counts.sealed_notices[-1] == {
        "terminal": TERMINAL, "seq": item[3], "reason": "field_invalid"}
    # Key 3 or 4 absent is field_missing (section 5.1, row 4).
    terminal.publish_raw(terminal.seal_payload(dcbor.encode(
        {k: v for k, v in item.items() if k != 3})))
    assert terminal.wait_for(lambda: len(terminal.counts.sealed_notices) == 4, WAIT_S)
    assert terminal.counts.sealed_notices[-1] == {
        "terminal": TERMINAL, "reason": "field_missing"}
    terminal.publish_raw(terminal.seal_payload(dcbor.encode(
        {k: v for k, v in item.items() if k != 4})))
    assert terminal.wait_for(lambda: len(terminal.counts.sealed_notices) == 5, WAIT_S)
    assert terminal.counts.sealed_notices[-1] == {
        "terminal": TERMINAL, "seq": item[3], "reason": "field_missing"}
    assert (terminal.journal.last_seq, terminal.journal.depth) == (last_seq, depth)
    # The seq was not consumed: the next record takes it and is accepted.
    sale = terminal.purchase(gift, 100)
    assert record_of(sale)["seq"] == last_seq + 1
    assert terminal.drain(WAIT_S)
    assert _outcome(terminal, sale.seq) == ACCEPTED


def _rows_8_and_9_are_stored_refused_and_consume_their_seq(
        terminal: DocTerminal, gift: Card, stranger: Card) -> None:
    # Row 8: a card part above the amount (amount_invalid); a key of no table (field_invalid).
    inconsistent = terminal.commit_unchecked(terminal.next_fields(
        gift.card_id, schema.KIND_PURCHASE, 500, card_value_minor=600, sun=gift.tap(),
        program="gift"))
    unknown_key = terminal.commit_unchecked(terminal.next_fields(
        gift.card_id, schema.KIND_PURCHASE, 500, sun=gift.tap(), program="gift"),
        extra={99: 1})
    # Row 9: a record that differs from its answer (rule_mismatch) releases its hold at once.
    before = approved(terminal.inquiry(gift)).response
    assert before is not None
    mismatch = terminal.purchase_written_wrong(
        gift, 1000, lambda f: f.update(card_value_minor=900))
    # Row 9: a card never issued.
    unknown_card = terminal.commit(terminal.next_fields(
        stranger.card_id, schema.KIND_PURCHASE, 500, sun=stranger.tap(), program="gift"))
    following = approved(terminal.purchase(gift, 100))
    assert _outcome(terminal, inconsistent) == "amount_invalid"
    assert _outcome(terminal, unknown_key) == "field_invalid"
    assert _outcome(terminal, mismatch.seq) == "rule_mismatch"
    assert _outcome(terminal, unknown_card) == "card_unknown"
    assert _outcome(terminal, following.seq) == ACCEPTED
    after = approved(terminal.inquiry(gift)).response
    assert after is not None and after["value_minor"] == before["value_minor"] - 100
    refused_log = [(r.seq, r.reason) for r in terminal.journal.refused_log]
    assert (inconsistent.seq, "amount_invalid") in refused_log
    assert (unknown_card.seq, "card_unknown") in refused_log


REFUSED_BURST = 15  # more refusals than the 12 [seq, reason] pairs one ack carries


def _more_refusals_in_one_burst_than_one_ack_carries(terminal: DocTerminal,
                                                     gift: Card) -> None:
    """Section 5.1: every refusal reaches the refused log (its count, status key 44; the log
    keeps the last 8), because no ack drops a record before the ack that names it."""
    assert terminal.drain(WAIT_S)
    refused_before, acks_before = terminal.journal.refused_count, len(terminal.counts.acks)
    burst = [terminal.commit_unchecked(terminal.next_fields(
        gift.card_id, schema.KIND_PURCHASE, 500, card_value_minor=600, sun=gift.tap(),
        program="gift")) for _ in range(REFUSED_BURST)]
    assert terminal.drain(WAIT_S)
    assert [e.outcome for e in burst] == ["amount_invalid"] * REFUSED_BURST
    assert terminal.journal.refused_count == refused_before + REFUSED_BURST
    assert [(r.seq, r.reason) for r in terminal.journal.refused_log] == [
        (e.seq, "amount_invalid") for e in burst[-REFUSED_LOG_MAX:]]
    acks = terminal.counts.acks[acks_before:]
    assert all(len(a["rejected"]) <= schema.REJECTED_MAX for a in acks)
    for entry in burst:  # the first ack to cover a record is the one that names it
        covering = next(a for a in acks if a["acked_through"] >= entry.seq)
        assert [entry.seq, "amount_invalid"] in covering["rejected"], entry.seq


def _rows_5_6_and_7_resend_replay_and_a_broken_chain(terminal: DocTerminal,
                                                     gift: Card) -> None:
    # Row 5: a resend of a record stored refused is answered again, naming it again.
    refused = next(e for e in terminal.journal.history if e.outcome == "amount_invalid")
    terminal.publish_raw(refused.record)
    assert terminal.wait_for(lambda: len(_acks_naming(terminal, "rejected", refused.seq)) >= 2,
                             WAIT_S)
    # Row 6: the terminal restored from an old backup seals its last seq again, otherwise.
    assert terminal.drain(WAIT_S)
    stored = terminal.journal.latest(terminal.journal.last_seq)
    assert stored is not None and stored.outcome == ACCEPTED
    terminal.rewind()
    again = terminal.commit(terminal.next_fields(
        gift.card_id, schema.KIND_PURCHASE, 100, sun=gift.tap(), program="gift"))
    assert again.seq == stored.seq and again.digest != stored.digest
    assert _outcome(terminal, again) == "seq_replayed"
    assert any(p == [again.seq, again.digest] for a in terminal.counts.acks
               for p in a.get("replayed", []))
    assert stored.outcome == ACCEPTED  # the stored record stands
    # Row 7: the next record chains from the replayed one: chain_broken; then it goes on.
    broken = terminal.purchase(gift, 100)
    assert _outcome(terminal, broken.seq) == "chain_broken"
    after = approved(terminal.purchase(gift, 100))
    assert _outcome(terminal, after.seq) == ACCEPTED
    # Row 7 once more, from a damaged digest.
    terminal.break_chain()
    damaged = approved(terminal.purchase(gift, 100))
    assert _outcome(terminal, damaged.seq) == "chain_broken"
    assert terminal.drain(WAIT_S)


def _rows_11_and_13_a_gap_filled_by_the_resend(terminal: DocTerminal, gift: Card) -> None:
    acks_before = len(terminal.counts.acks)
    terminal.drop_next_send()
    lost = record_of(terminal.purchase(gift, 100))
    held = record_of(terminal.purchase(gift, 100))
    head = lost["seq"] - 1
    # Row 13: another record under the held seq (row 11) is a replay; its ack names it and
    # says acked_through = head; the record is not the terminal's, so nothing moves.
    other = dict(held, amount_minor=101, card_value_minor=101, sun=gift.tap())
    terminal.publish_raw(terminal.seal_detached(other))
    assert terminal.wait_for(lambda: bool(_acks_naming(terminal, "replayed", held["seq"])),
                             WAIT_S)
    replay_ack = _acks_naming(terminal, "replayed", held["seq"])[0]
    assert replay_ack["acked_through"] == head
    assert [p[0] for p in replay_ack["replayed"]] == [held["seq"]]
    # The held record got no ack of its own (row 11): the replay's is the only one.
    assert terminal.counts.acks[acks_before:] == [replay_ack]
    assert {lost["seq"], held["seq"]} <= set(terminal.journal.entries)
    # The resend after 3 s fills the gap; both are accepted.
    assert terminal.drain(WAIT_S)
    for seq in (lost["seq"], held["seq"]):
        assert _outcome(terminal, seq) == ACCEPTED


def _row_8_time_invalid_then_the_clock_corrects(terminal: DocTerminal, rtc: Rtc,
                                                gift: Card) -> None:
    terminal.disconnect()
    rtc.drift_s = CLOCK_DRIFT_S
    future = record_of(terminal.purchase(gift, 200))  # offline, dated 600 s ahead
    assert future["time"] >= time.time() + CLOCK_DRIFT_S - 5
    terminal.connect()
    assert _outcome(terminal, future["seq"]) == "time_invalid"
    assert abs(terminal.clock_offset_s + CLOCK_DRIFT_S) <= 5  # the ack was fresh
    later = record_of(terminal.purchase(gift, 200))
    assert abs(later["time"] - time.time()) <= 5
    assert terminal.drain(WAIT_S)
    assert _outcome(terminal, later["seq"]) == ACCEPTED


HELD_PER_TERMINAL_MAX = 256  # section 5.1 row 11


def test_row_12_a_record_beyond_256_held_is_not_held_and_the_resends_deliver_it(
        store: Store) -> None:
    """A lost record and 257 after it: the gateway holds 256, counts the next one seq_gap
    and keeps acking its head; the resends from acked_through + 1 deliver them all."""
    # A shop whose terminal may sell that many offline: the gateway re-checks the count.
    store.restart(DEMO_PROGRAMS, dict(LIMITS, offline_txn_max=HELD_PER_TERMINAL_MAX + 2),
                  config_version=1)
    terminal = store.terminal()
    try:
        gift = store.new_card()
        approved(terminal.issue(gift, "gift", 100_000))
        assert terminal.drain(WAIT_S)
        head = terminal.journal.last_seq
        acks_before = len(terminal.counts.acks)
        terminal.drop_next_send()
        for _ in range(HELD_PER_TERMINAL_MAX + 2):
            # Sales that happened offline, as a terminal cut off all day would have them.
            terminal.commit(terminal.next_fields(
                gift.card_id, schema.KIND_PURCHASE, 1, card_value_minor=1, sun=gift.tap(),
                program="gift", version=1, auth_mode=schema.AUTH_OFFLINE))
        assert store.gateway is not None
        gateway = store.gateway
        # The one not held is answered with an ack at the head (row 12).
        assert terminal.wait_for(
            lambda: gateway.stats.rejections().get("seq_gap", 0) >= 1
            and len(terminal.counts.acks) > acks_before, WAIT_S)
        assert {a["acked_through"] for a in terminal.counts.acks[acks_before:]} == {head}
        accepted = reconcile(store, terminal)
        assert len(accepted) == 1 + HELD_PER_TERMINAL_MAX + 2
    finally:
        terminal.close()
