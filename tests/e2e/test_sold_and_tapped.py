"""A card sold and tapped at once: the customer buys a gift card and pays with it straight
away, before the till's record of the sale has reached the gateway (the authorization and
the record travel apart, docs/protocol.md 5.2). The gateway prices the purchase on the card
as its approved issue makes it; both records then settle, and the books agree."""

from __future__ import annotations

import time
from pathlib import Path

from protocol import messages, sealed, topics, txn
from tests.support.stack import RawTerminal, running_stack, wait_until
from tests.support.store_broker import StoreBroker

CARD = "04d1d2d3d4d5d6"
REQUEST_ID = 1_000  # above the ids RawTerminal.approval uses


def _ask_purchase(raw: RawTerminal, seq: int, amount_minor: int) -> dict[str, object]:
    fields = {"terminal": raw.terminal, "request": REQUEST_ID, "seq": seq,
              "time": int(time.time()), "merchant": raw.merchant, "card": CARD,
              "kind": txn.KIND_PURCHASE, "currency": "EUR", "amount_minor": amount_minor,
              "card_value_minor": amount_minor}
    raw.publish(sealed.seal(raw.key, messages.TYPE_AUTH_REQUEST, fields), leaf=topics.LEAF_AUTH)
    assert wait_until(lambda: REQUEST_ID in raw.auth_answers()), "no answer"
    return raw.auth_answers()[REQUEST_ID]


def test_a_card_sold_and_tapped_before_its_record_arrives_is_served_and_settles(
    store_broker: StoreBroker, tmp_path: Path
) -> None:
    with running_stack(store_broker, tmp_path, ["T1"]) as stack:
        raw = RawTerminal(store_broker, "T1", stack.keys["T1"])
        try:
            sold = raw.approval(txn.KIND_ISSUE, CARD, 1_000, program="gift")
            # The purchase is asked for the seq after the issue's, whose record is not sent.
            paid = _ask_purchase(raw, raw.seq + 2, 700)
            assert paid["approved"], paid
            assert paid["value_minor"] == 300
            raw.publish(raw.record(txn.KIND_ISSUE, CARD, 1_000, auth_id=sold, program="gift"))
            raw.publish(raw.record(txn.KIND_PURCHASE, CARD, 700, auth_id=paid["auth_id"],
                                   program="gift", version=paid["version"]))
            assert wait_until(lambda: raw.acked_through() == raw.seq)
            assert not [r for ack in raw.acks() for r in ack["rejected"]]
            stack.gateway.settle()
            assert stack.ledger_client.card(CARD)["value_minor"] == 300
        finally:
            raw.close()
