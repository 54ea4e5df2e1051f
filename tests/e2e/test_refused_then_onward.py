"""A record refused after its MAC verified is acked, signed and naming its seq; the terminal
logs it, drops it, takes the gateway's clock from that fresh ack, and its next records are
accepted (docs/protocol.md sections 5.1 and 5.5). The firmware's own modules under CPython,
over Mosquitto, with the gateway and the ledger of tests/support/stack.py.

The refusal is a real one: the board's clock jumps ten minutes ahead while the gateway is
down, so the sale approved offline is dated past the gateway's CLOCK_SKEW_MAX_S."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway import store_reports
from gateway.verify import CLOCK_SKEW_MAX_S
from protocol import messages, sealed, txn
from tests.support.stack import Stack, running_stack, wait_until
from tests.support.store_broker import StoreBroker
from tools.simulator.paho_net import PahoNet
from tools.simulator.terminal import SimulatedTerminal

LIMITS = {"txn_minor_max": 5000, "card_offline_minor_max": 10000,
          "terminal_offline_minor_max": 20000, "offline_s_max": 3600, "offline_txn_max": 10}
CARD = "04a7a8a9aaabac"
CLOCK_JUMP_S = 600
CLOCK_AGREES_S = 3  # the corrected clock is the gateway's, give or take the ack's trip
OFFLINE_AUTH_TIMEOUT_MS = 300
STALE_WAIT_S = 1.0  # a late answer, had the broker kept its request, would be here by now


class SkewedClock:
    """A board clock whose wall time runs `skew_s` ahead of the one it wraps."""

    def __init__(self, clock: Any, skew_s: int) -> None:
        self.clock = clock
        self.skew_s = skew_s

    def now_s(self) -> int:
        return int(self.clock.now_s()) + self.skew_s

    def ticks_ms(self) -> int:
        return int(self.clock.ticks_ms())

    def ticks_diff(self, a: int, b: int) -> int:
        return int(self.clock.ticks_diff(a, b))

    def sleep_ms(self, ms: int) -> None:
        self.clock.sleep_ms(ms)


class AckWitness:
    """The signed acks the terminal receives, read off its own connection as it polls: on
    the deployed broker a client id is its login (use_username_as_clientid), so a second
    client with T1's login would push the terminal off the broker."""

    def __init__(self, net: PahoNet, key: bytes) -> None:
        self.key = key
        self.downlinks: list[tuple[str, bytes]] = []
        self._poll = net.poll
        net.poll = self._poll_and_keep  # type: ignore[method-assign]

    def _poll_and_keep(self, timeout_ms: int) -> list[tuple[str, bytes]]:
        items = self._poll(timeout_ms)
        self.downlinks.extend(items)
        return items

    def acks(self) -> list[dict[str, Any]]:
        return [sealed.open_message(payload, messages.TYPE_ACK, self.key)
                for topic, payload in list(self.downlinks) if topic.endswith("/ack")]

    def acked_through(self) -> int:
        return max((ack["acked_through"] for ack in self.acks()), default=0)


def _accepted(stack: Stack) -> int:
    return int(stack.gateway.store.counters().get("accepted", 0))


def _restart(stack: Stack) -> None:
    stack.gateway = stack.new_gateway()
    stack.gateway.start()


def _serviced_until(sim: SimulatedTerminal, condition: Callable[[], bool]) -> bool:
    """Service the terminal until `condition` holds, or the stack's wait runs out."""

    def serviced() -> bool:
        sim.service(20)
        return condition()

    return wait_until(serviced)


def _sell(sim: SimulatedTerminal, amount_minor: int, auth_mode: int) -> dict[str, Any]:
    sim.tap(CARD)
    outcome = sim.terminal.purchase(amount_minor)
    assert outcome["approved"], outcome
    fields: dict[str, Any] = outcome["txn"]
    assert fields["auth_mode"] == auth_mode
    return fields


def test_a_record_refused_for_its_time_is_acked_and_the_next_records_are_accepted(
    store_broker: StoreBroker, tmp_path: Path
) -> None:
    with running_stack(store_broker, tmp_path, ["T1"], LIMITS) as stack:
        key = stack.keys["T1"]
        config = stack.terminal_config("T1")
        sim = SimulatedTerminal(config, tmp_path, store_broker.host, store_broker.port)
        terminal, uplink = sim.terminal, sim.uplink
        terminal.auth_timeout_ms = OFFLINE_AUTH_TIMEOUT_MS
        # Keeps what the terminal receives: the signed acks the gateway sends it.
        witness = AckWitness(sim.net, key)
        try:
            sim.service(0)
            assert _serviced_until(sim, lambda: terminal.settings.version == 1)
            sim.tap(CARD)
            assert terminal.issue("gift", 10_000)["approved"]
            assert sim.drain(time.monotonic() + 10)  # the gateway knows the card
            first = _sell(sim, 1000, txn.AUTH_ONLINE)  # the terminal learns the card online
            assert sim.drain(time.monotonic() + 10) and _accepted(stack) == 2

            # The board's clock jumps ten minutes ahead; the gateway goes down.
            sim.clock.clock = SkewedClock(sim.clock.clock, CLOCK_JUMP_S)
            stack.gateway.stop()
            fast = _sell(sim, 700, txn.AUTH_OFFLINE)
            assert fast["seq"] == first["seq"] + 1
            assert fast["time"] > time.time() + CLOCK_SKEW_MAX_S
            assert sim.journal.depth == 1

            # Back: the record is refused, acked with its seq, and leaves the journal.
            _restart(stack)
            assert sim.drain(time.monotonic() + 20)
            assert [seq for seq, _ in sim.journal.pending] == []
            assert wait_until(lambda: any(ack["rejected"] for ack in witness.acks()))
            refusing = [ack for ack in witness.acks() if ack["rejected"]]
            assert refusing[0]["rejected"] == [[fast["seq"], "time_invalid"]]
            assert refusing[0]["acked_through"] == fast["seq"]
            assert uplink.refused_log == [{"seq": fast["seq"], "reason": "time_invalid",
                                           "kind": txn.KIND_PURCHASE, "amount_minor": 700,
                                           "card": CARD, "time": fast["time"]}]
            assert uplink.refused == 1
            # That ack answered a record it sent: the terminal took the gateway's clock.
            assert abs(sim.clock.now_s() - time.time()) <= CLOCK_AGREES_S
            assert sim.clock.corrections == 1
            refusals = [(r["terminal"], r["seq"], r["reason"], r["amount_minor"])
                        for r in store_reports.refusals(stack.gateway.store)]
            assert refusals == [("T1", fast["seq"], "time_invalid", 700)]
            assert _accepted(stack) == 2

            # Onward: the next online sale and the next offline sale are accepted.
            online = _sell(sim, 300, txn.AUTH_ONLINE)
            assert online["seq"] == fast["seq"] + 1
            assert abs(online["time"] - time.time()) <= CLOCK_AGREES_S
            assert sim.drain(time.monotonic() + 10)
            assert wait_until(lambda: _accepted(stack) == 3)
            stack.gateway.stop()
            offline = _sell(sim, 200, txn.AUTH_OFFLINE)
            assert offline["seq"] == online["seq"] + 1
            assert abs(offline["time"] - time.time()) <= CLOCK_AGREES_S
            _restart(stack)
            assert sim.drain(time.monotonic() + 20)
            assert wait_until(lambda: _accepted(stack) == 4)
            assert uplink.refused == 1 and len(uplink.refused_log) == 1
            assert wait_until(lambda: witness.acked_through() == offline["seq"])
            # The requests sent while the gateway was down were not kept by the broker
            # (docs/protocol.md 5.2, "Deadline"): no late answer comes, the clock moved once.
            time.sleep(STALE_WAIT_S)
            sim.service(0)
            assert uplink.stats["auth_stale"] == 0
            assert sim.clock.corrections == 1

            stack.gateway.settle()
            ledger = stack.ledger_client
            assert ledger.card(CARD)["value_minor"] == 10_000 - 1000 - 300 - 200
            totals = ledger.terminal_totals()["T1"]
            assert totals["count"] == 4  # the issue and three sales; not the refused one
            purchases = totals["by_kind"]["purchase"]
            assert (purchases["count"], purchases["amount_minor"]) == (3, 1500)
        finally:
            sim.close()
