"""The firmware running on real MicroPython reads cards through its own PN532 driver (the
chip emulated at the bus), sells through a real Mosquitto, and the gateway and the ledger
post exactly what it produced."""

from __future__ import annotations

from pathlib import Path

from gateway import batches
from protocol import messages, sealed, txn
from tests.support.stack import running_stack, wait_until
from tools.mosquitto import MosquittoBroker
from tools.mpy.harness import MicroPythonTerminal

CARD = "04d0d1d2d3d4d5"
LOYALTY_CARD = "04e0e1e2e3e4e5"
VIP_CARD = "04f0e1e2e3e4e5"


def test_transactions_made_on_real_micropython_are_posted_in_the_ledger(
    private_mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    with running_stack(private_mosquitto, tmp_path, ["MPY1"]) as stack:
        config = stack.terminal_config("MPY1")
        with MicroPythonTerminal(config, private_mosquitto.host,
                                 private_mosquitto.port) as terminal:
            issued = terminal.command({"op": "issue", "program": "gift", "value_minor": 5000},
                                      card=CARD)
            assert issued["approved"], terminal.stderr()
            assert wait_until(lambda: stack.gateway.stats.snapshot().get("accepted") == 1)
            sale = terminal.command({"op": "purchase", "amount_minor": 1250, "pay": "card"},
                                    card=CARD)
            assert sale["approved"] and sale["txn"]["seq"] == 2
            too_much = terminal.command({"op": "purchase", "amount_minor": 9000}, card=CARD)
            assert too_much == {"approved": False, "reason": "insufficient_value", "txn": None,
                                "response": None}
            terminal.command({"op": "issue", "program": "loyalty", "value_minor": 0},
                             card=LOYALTY_CARD)
            assert wait_until(lambda: stack.gateway.stats.snapshot().get("accepted") == 3)
            earned = terminal.command({"op": "purchase", "amount_minor": 1999, "pay": "other"},
                                      card=LOYALTY_CARD)
            assert earned["txn"]["points"] == 19
            nobody = terminal.command({"op": "purchase", "amount_minor": 100}, card=None)
            assert nobody["reason"] == "card_absent"  # the PN532 found no card in the field
            balance = terminal.command({"op": "inquiry"}, card=CARD)
            assert balance["response"]["value_minor"] == 3750
            # Points pay 0.10 of a sale (1 point = 0.01 EUR): 10.00 - 0.10 paid earns 9.
            redeemed = terminal.command({"op": "purchase", "amount_minor": 1000, "pay": "other",
                                         "redeem_points": 10}, card=LOYALTY_CARD)
            assert (redeemed["txn"]["redeem_minor"], redeemed["txn"]["points"]) == (10, 9)
            # Tiers: 250.00 makes the card silver; the next 100.00 is 5 % off, x1.5 points.
            terminal.command({"op": "issue", "program": "vip", "value_minor": 0}, card=VIP_CARD)
            assert wait_until(lambda: stack.gateway.stats.snapshot().get("accepted") == 6)
            terminal.command({"op": "purchase", "amount_minor": 25000, "pay": "other"},
                             card=VIP_CARD)
            assert wait_until(lambda: stack.gateway.stats.snapshot().get("accepted") == 7)
            silver = terminal.command({"op": "purchase", "amount_minor": 10000, "pay": "other"},
                                      card=VIP_CARD)
            assert (silver["txn"]["discount_minor"], silver["txn"]["points"]) == (500, 142)
            # No cash-out from a gift card (its program does not allow it).
            refused = terminal.command({"op": "cashout", "amount_minor": 100}, card=CARD)
            assert refused["reason"] == "cash_out_not_allowed"
            assert wait_until(lambda: stack.gateway.stats.snapshot().get("accepted") == 8)

            def acked_through() -> int:
                acks = [sealed.open_message(payload, messages.TYPE_ACK, stack.keys["MPY1"])
                        for topic, payload in list(terminal.delivered)
                        if topic.endswith("/ack")]
                return max((ack["acked_through"] for ack in acks), default=0)

            assert wait_until(lambda: acked_through() == 8)  # taken in by the firmware
            # The terminal's signed status reached the gateway with MicroPython's own heap
            # figure: read while it runs (once stopped, its last will says offline).
            assert wait_until(lambda: stack.gateway.presence.get("MPY1", {}).get("state")
                              == "online")
            status = dict(stack.gateway.presence["MPY1"])
            final = terminal.stop()
        assert status["heap_free"] > 0
        assert status["firmware"] == "0.1.0"
        # The firmware's PN532 driver read every card: listed, then released, each time.
        heard = terminal.pn532.commands
        assert heard.count(0x4A) >= 11 and heard.count(0x52) == 11
        assert final["reader"] == {"card_absent": 1}
        # Every record the MicroPython terminal journaled was acknowledged and cleared.
        assert final["journal_depth"] == 0
        assert final["uplink"]["acked"] == 8
        stack.gateway.settle()
        ledger = stack.ledger_client
        assert ledger.card(CARD)["value_minor"] == 3750
        assert ledger.card(LOYALTY_CARD)["points"] == 19 - 10 + 9
        assert ledger.card(VIP_CARD)["points"] == 250 + 142
        totals = ledger.terminal_totals()["MPY1"]
        assert totals["count"] == 8
        # What was settled is byte for byte what real MicroPython sealed and published.
        sealed_digests = {txn.digest(payload).hex() for topic, payload in terminal.published
                          if topic.endswith("/up/txn")}
        stored = batches.batch_records(stack.gateway.store, "gw1-000001")
        assert [fields["seq"] for fields, _ in stored] == list(range(1, 9))
        assert {digest for _, digest in stored} <= sealed_digests
        assert len(sealed_digests) == 8
