"""On real MicroPython: a record refused after its MAC verified is acked, signed and naming
its seq; the firmware drops it from its journal, counts it in its status (key 44), takes the
gateway's clock from that fresh ack, and its next records, online and offline, are accepted
(docs/protocol.md sections 5.1 and 5.5). Over Mosquitto, with the gateway and the ledger.

The refusal is a real one: the board's wall clock (served by the harness) jumps ten minutes
ahead while the gateway is down, so the sale approved offline is dated past the gateway's
CLOCK_SKEW_MAX_S. The clock stays skewed: the sales after the ack are dated right only
because the firmware corrected it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from gateway import store_reports
from gateway.verify import CLOCK_SKEW_MAX_S
from protocol import messages, sealed, txn
from tests.support.stack import Stack, running_stack, wait_until
from tools.mosquitto import MosquittoBroker
from tools.mpy.harness import MicroPythonTerminal

LIMITS = {"txn_minor_max": 5000, "card_offline_minor_max": 10000,
          "terminal_offline_minor_max": 20000, "offline_s_max": 3600, "offline_txn_max": 10}
CARD = "04b7b8b9babbbc"
CLOCK_JUMP_S = 600
CLOCK_AGREES_S = 3  # the corrected clock is the gateway's, give or take the ack's trip


def _accepted(stack: Stack) -> int:
    return int(stack.gateway.store.counters().get("accepted", 0))


def _restart(stack: Stack) -> None:
    stack.gateway = stack.new_gateway()
    stack.gateway.start()


def _acks(terminal: MicroPythonTerminal, key: bytes) -> list[dict[str, Any]]:
    """The signed acks the firmware took in, in order."""
    return [sealed.open_message(payload, messages.TYPE_ACK, key)
            for topic, payload in list(terminal.delivered) if topic.endswith("/ack")]


def _acked_through(terminal: MicroPythonTerminal, key: bytes) -> int:
    return max((ack["acked_through"] for ack in _acks(terminal, key)), default=0)


def _sell(terminal: MicroPythonTerminal, amount_minor: int, auth_mode: int) -> dict[str, Any]:
    outcome = terminal.command({"op": "purchase", "amount_minor": amount_minor, "pay": "card"},
                               card=CARD)
    assert outcome["approved"], (outcome, terminal.stderr())
    fields: dict[str, Any] = outcome["txn"]
    assert fields["auth_mode"] == auth_mode
    return fields


def test_a_record_refused_on_micropython_is_acked_and_the_next_records_are_accepted(
    private_mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    with running_stack(private_mosquitto, tmp_path, ["MPY1"], LIMITS) as stack:
        key = stack.keys["MPY1"]
        config = stack.terminal_config("MPY1")
        with MicroPythonTerminal(config, private_mosquitto.host,
                                 private_mosquitto.port) as terminal:
            # The signed configuration with the offline limits reaches the firmware.
            assert wait_until(lambda: any(topic.endswith("/config")
                                          for topic, _ in list(terminal.delivered)))
            issued = terminal.command({"op": "issue", "program": "gift", "value_minor": 10_000},
                                      card=CARD)
            assert issued["approved"], terminal.stderr()
            assert wait_until(lambda: _accepted(stack) == 1)
            first = _sell(terminal, 1000, txn.AUTH_ONLINE)  # the firmware learns the card
            assert wait_until(lambda: _acked_through(terminal, key) == first["seq"])
            # A command's outcome comes after the loop turn that took the ack in: the clock
            # may jump only once that fresh ack has had its say.
            balance = terminal.command({"op": "inquiry"}, card=CARD)
            assert balance["response"]["value_minor"] == 10_000 - 1000

            # The board's clock jumps ten minutes ahead; the gateway goes down.
            terminal.clock_skew_s = CLOCK_JUMP_S
            stack.gateway.stop()
            fast = _sell(terminal, 700, txn.AUTH_OFFLINE)
            assert fast["seq"] == first["seq"] + 1
            assert fast["time"] > time.time() + CLOCK_SKEW_MAX_S

            # Back: the record is refused and acked with its seq; the firmware takes it in.
            _restart(stack)
            assert wait_until(lambda: any(ack["rejected"] for ack in _acks(terminal, key)))
            refusing = next(ack for ack in _acks(terminal, key) if ack["rejected"])
            assert refusing["rejected"] == [[fast["seq"], "time_invalid"]]
            assert refusing["acked_through"] == fast["seq"]
            refusals = [(r["terminal"], r["seq"], r["reason"], r["amount_minor"])
                        for r in store_reports.refusals(stack.gateway.store)]
            assert refusals == [("MPY1", fast["seq"], "time_invalid", 700)]

            # Its status, sent when it next connects, counts the refused record (key 44).
            terminal.drop_connection()
            assert wait_until(
                lambda: stack.gateway.presence.get("MPY1", {}).get("refused") == 1)
            assert stack.gateway.presence["MPY1"]["journal_depth"] == 0

            # Onward, on a clock the gateway's ack corrected (the board's is still fast).
            online = _sell(terminal, 300, txn.AUTH_ONLINE)
            assert online["seq"] == fast["seq"] + 1
            assert abs(online["time"] - time.time()) <= CLOCK_AGREES_S
            assert wait_until(lambda: _accepted(stack) == 3)
            stack.gateway.stop()
            offline = _sell(terminal, 200, txn.AUTH_OFFLINE)
            assert offline["seq"] == online["seq"] + 1
            assert abs(offline["time"] - time.time()) <= CLOCK_AGREES_S
            _restart(stack)
            assert wait_until(lambda: _accepted(stack) == 4)
            assert wait_until(lambda: _acked_through(terminal, key) == offline["seq"])
            final = terminal.stop()
        assert final["journal_depth"] == 0
        assert final["uplink"]["rejected"] == 1
        assert final["uplink"]["acked"] == offline["seq"]
        assert [ack["rejected"] for ack in _acks(terminal, key) if ack["rejected"]] == [
            [[fast["seq"], "time_invalid"]]]

        stack.gateway.settle()
        ledger = stack.ledger_client
        assert ledger.card(CARD)["value_minor"] == 10_000 - 1000 - 300 - 200
        totals = ledger.terminal_totals()["MPY1"]
        assert totals["count"] == 4  # the issue and three sales; not the refused one
        purchases = totals["by_kind"]["purchase"]
        assert (purchases["count"], purchases["amount_minor"]) == (3, 1500)
