"""A bit flipped in the terminal's journal loses one unsent sale, not the day: the terminal
keeps its seq, sends a lost notice in its place, the gateway closes the gap with it
(`record_lost`, in the refusal report) and accepts every record after it, and the terminal's
next sale follows (docs/protocol.md section 5.9). The firmware's own modules under CPython,
over Mosquitto, with the gateway and the ledger of tests/support/stack.py."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from gateway import store_reports
from protocol import txn
from tests.support.stack import Stack, running_stack, wait_until
from tools.mosquitto import MosquittoBroker
from tools.simulator.terminal import SimulatedTerminal

LIMITS = {"txn_minor_max": 5000, "card_offline_minor_max": 10000,
          "terminal_offline_minor_max": 20000, "offline_s_max": 3600, "offline_txn_max": 10}
CARD = "04b7b8b9babbbc"
OFFLINE_AUTH_TIMEOUT_MS = 300


def _accepted(stack: Stack) -> int:
    return int(stack.gateway.store.counters().get("accepted", 0))


def _sell(sim: SimulatedTerminal, amount_minor: int, auth_mode: int) -> dict[str, Any]:
    sim.tap(CARD)
    outcome = sim.terminal.purchase(amount_minor)
    assert outcome["approved"], outcome
    fields: dict[str, Any] = outcome["txn"]
    assert fields["auth_mode"] == auth_mode
    return fields


def _flip_one_bit_inside(path: Path, record: bytes) -> None:
    data = bytearray(path.read_bytes())
    data[data.find(record) + len(record) // 2] ^= 0x08
    path.write_bytes(bytes(data))


def _three_offline_sales_then_a_flipped_bit(stack: Stack, broker: MosquittoBroker,
                                             workdir: Path, broker_down: bool
                                             ) -> tuple[list[dict[str, Any]], bytes]:
    """An issue and an online sale (accepted), then three offline sales while the gateway
    is down (and the broker too, when `broker_down`: then nothing left the terminal); the
    terminal powers off and a bit flips inside the middle sale's record on its flash."""
    sim = SimulatedTerminal(stack.terminal_config("T1"), workdir, broker.host, broker.port)
    sim.terminal.auth_timeout_ms = OFFLINE_AUTH_TIMEOUT_MS
    try:
        sim.service(0)
        assert wait_until(lambda: (sim.service(20), sim.settings.version == 1)[1])
        sim.tap(CARD)
        assert sim.terminal.issue("gift", 10_000)["approved"]
        assert sim.drain(time.monotonic() + 10)
        _sell(sim, 1000, txn.AUTH_ONLINE)  # the terminal learns the card online
        assert sim.drain(time.monotonic() + 10) and _accepted(stack) == 2
        stack.gateway.stop()
        if broker_down:
            broker.stop()
        sales = [_sell(sim, amount, txn.AUTH_OFFLINE) for amount in (100, 200, 300)]
        middle = [record for seq, record in sim.journal.pending if seq == sales[1]["seq"]][0]
    finally:
        sim.close()
    _flip_one_bit_inside(workdir / "T1.journal", middle)
    if broker_down:
        broker.restart()
    return sales, middle


def _restarted(stack: Stack, broker: MosquittoBroker, workdir: Path) -> SimulatedTerminal:
    sim = SimulatedTerminal(stack.terminal_config("T1"), workdir, broker.host, broker.port)
    stack.gateway = stack.new_gateway()
    stack.gateway.start()
    return sim


def test_a_sale_damaged_before_it_left_the_terminal_is_reported_lost_and_the_rest_accepted(
    private_mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    with running_stack(private_mosquitto, tmp_path, ["T1"], LIMITS) as stack:
        sales, middle = _three_offline_sales_then_a_flipped_bit(
            stack, private_mosquitto, tmp_path, broker_down=True)
        sim = _restarted(stack, private_mosquitto, tmp_path)
        try:
            assert sim.journal.lost == {sales[1]["seq"]: txn.digest(middle)}
            assert sim.journal.last_seq == sales[2]["seq"]  # no seq is handed out twice
            assert sim.drain(time.monotonic() + 20)
            assert wait_until(lambda: _accepted(stack) == 4)  # the first and the last sale
            refusals = [(r["terminal"], r["seq"], r["reason"], r["amount_minor"])
                        for r in store_reports.refusals(stack.gateway.store)]
            assert refusals == [("T1", sales[1]["seq"], "record_lost", None)]
            assert [(e["seq"], e["reason"]) for e in sim.uplink.refused_log] == [
                (sales[1]["seq"], "record_lost")]

            # The next sale follows the lost one's seq and chains from its digest.
            onward = _sell(sim, 400, txn.AUTH_ONLINE)
            assert onward["seq"] == sales[2]["seq"] + 1
            assert sim.drain(time.monotonic() + 10)
            assert wait_until(lambda: _accepted(stack) == 5)
            assert len(store_reports.refusals(stack.gateway.store)) == 1

            stack.gateway.settle()
            value = stack.ledger_client.card(CARD)["value_minor"]
            assert value == 10_000 - 1000 - 100 - 300 - 400  # the lost 200 is not in the books
        finally:
            sim.close()


def test_a_sale_damaged_after_the_gateway_had_it_costs_nothing(
    private_mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    """The records waited at the broker for the gateway: it has the damaged one, and answers
    the lost notice as a resend of it (row 16)."""
    with running_stack(private_mosquitto, tmp_path, ["T1"], LIMITS) as stack:
        sales, _ = _three_offline_sales_then_a_flipped_bit(
            stack, private_mosquitto, tmp_path, broker_down=False)
        sim = _restarted(stack, private_mosquitto, tmp_path)
        try:
            assert list(sim.journal.lost) == [sales[1]["seq"]]
            assert sim.drain(time.monotonic() + 20)
            assert wait_until(lambda: _accepted(stack) == 5)
            assert store_reports.refusals(stack.gateway.store) == []
            assert sim.uplink.refused_log == [] and sim.journal.lost == {}
        finally:
            sim.close()
