"""An authorization request its terminal stopped waiting for is dropped, never answered
(issue 14): one sent while the gateway was down is not kept by the broker (QoS 0), so the
gateway that comes back places no hold for a sale that went offline or was declined long
ago. (One that waited too long inside the gateway: tests/gateway/test_stages.py.)"""

from __future__ import annotations

import time
from pathlib import Path

from protocol import messages, sealed, topics, txn
from tests.support.stack import RawTerminal, running_stack, wait_until
from tests.support.store_broker import StoreBroker

GIFT = "04d1d2d3d4d5d6"
ANSWER_WAIT_S = 3.0  # longer than a terminal waits for an answer (3 s)


def _ask(raw: RawTerminal, request_id: int, amount: int) -> None:
    fields = {"terminal": raw.terminal, "request": request_id, "seq": raw.seq + 1,
              "time": int(time.time()), "merchant": "M1", "card": GIFT,
              "kind": txn.KIND_PURCHASE, "currency": "EUR", "amount_minor": amount,
              "card_value_minor": amount}
    raw.publish(sealed.seal(raw.key, messages.TYPE_AUTH_REQUEST, fields),
                leaf=topics.LEAF_AUTH)


def test_a_request_sent_while_the_gateway_was_down_is_never_answered_nor_held(
        store_broker: StoreBroker, tmp_path: Path) -> None:
    with running_stack(store_broker, tmp_path, ["T1"]) as stack:
        raw = RawTerminal(store_broker, "T1", stack.keys["T1"])
        try:
            raw.publish(raw.approved(txn.KIND_ISSUE, GIFT, 5_000, program="gift"))
            assert wait_until(lambda: raw.acked_through() == 1)
            stack.gateway.settle()  # the ledger knows the card: purchases are held there
            stack.gateway.stop()
            _ask(raw, 1, 1_000)  # the customer waits 3 s, then pays otherwise
            stack.gateway = stack.new_gateway()
            stack.gateway.start()
            _ask(raw, 2, 2_000)  # the next customer, while the gateway is up
            assert wait_until(lambda: 2 in raw.auth_answers())
            time.sleep(ANSWER_WAIT_S)
            assert 1 not in raw.auth_answers()
            assert raw.auth_answers()[2]["approved"]
            assert stack.ledger_client.hold_totals()["open"] == 1  # request 2's alone
        finally:
            raw.close()
