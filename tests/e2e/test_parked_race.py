"""A refund approved at one counter reaches the gateway before the sale it refunds, approved
first at another counter (whose terminal sends its record later): the refund waits for the
sale (gateway/parked.py), is acked as accepted, and both post to the ledger, the sale first.

The terminals are the firmware's own (under CPython) over Mosquitto; the sale's terminal
journals its record only after the refund's terminal has sent its own and had it acked."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from gateway import store_reports
from protocol import txn
from tests.support.stack import running_stack
from tools.mosquitto import MosquittoBroker
from tools.simulator.terminal import SimulatedTerminal

GIFT = "04d0d1d2d3d4d5"


def _approved(sim: SimulatedTerminal, request: dict[str, Any]) -> dict[str, Any]:
    request = dict(request, card=GIFT, currency="EUR", seq=sim.journal.last_seq + 1)
    response = sim.uplink.authorize(request, 3000)
    assert response is not None and response["approved"], response
    return response


def test_a_refund_arriving_before_its_sale_waits_for_it_and_both_post(
    private_mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    for name in ("t1", "t2"):
        (tmp_path / name).mkdir()
    with running_stack(private_mosquitto, tmp_path, ["T1", "T2"]) as stack:
        sale_till = SimulatedTerminal(stack.terminal_config("T1"), tmp_path / "t1",
                                      private_mosquitto.host, private_mosquitto.port)
        refund_till = SimulatedTerminal(stack.terminal_config("T2"), tmp_path / "t2",
                                        private_mosquitto.host, private_mosquitto.port)
        ledger = stack.ledger_client
        try:
            sale_till.service(0)
            refund_till.service(0)
            sale_till.tap(GIFT)
            assert sale_till.terminal.issue("gift", 10_000)["approved"]
            assert sale_till.drain(time.monotonic() + 10)
            assert stack.gateway.settle().posted == 1  # the ledger knows the card

            # T1's sale is approved first; T2 refunds it at once, approved on the card as
            # it will be with the sale.
            sale = _approved(sale_till, {"kind": txn.KIND_PURCHASE, "amount_minor": 1500,
                                         "card_value_minor": 1500})
            sale_id = txn.txn_id("T1", sale_till.journal.last_seq + 1)
            refund = _approved(refund_till, {"kind": txn.KIND_REFUND, "amount_minor": 1500,
                                             "card_value_minor": 0, "ref": sale_id})

            # T2's record arrives first: acked, as accepted, and nothing refused.
            refund_fields = refund_till.terminal._build(txn.KIND_REFUND, GIFT, 1500, 0,
                                                        refund, sale_id)
            refund_till.terminal._commit(refund_fields)
            assert refund_till.drain(time.monotonic() + 10)
            assert refund_till.uplink.refused == 0 and refund_till.journal.depth == 0

            # T1's sale comes later; the refund is applied after it.
            sale_fields = sale_till.terminal._build(txn.KIND_PURCHASE, GIFT, 1500, 1500,
                                                    sale, None)
            sale_till.terminal._commit(sale_fields)
            assert sale_till.drain(time.monotonic() + 10)
            assert txn.txn_id("T1", sale_fields["seq"]) == sale_id
            assert store_reports.refusals(stack.gateway.store) == []

            result = stack.gateway.settle()
            assert result.posted == 2, result.as_dict()
            assert store_reports.quarantined(stack.gateway.store) == []
            card = ledger.card(GIFT)
            assert (card["value_minor"], card["held_minor"]) == (10_000, 0)
            assert stack.gateway.cards.cards[GIFT]["value_minor"] == 10_000
        finally:
            sale_till.close()
            refund_till.close()
