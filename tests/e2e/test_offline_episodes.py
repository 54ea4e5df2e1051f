"""A stolen terminal key against the gateway's offline re-check, over Mosquitto: many small
offline records, each within the per-purchase limit, that together pass the signed count,
card total, terminal total or time offline are refused with that reason in the signed ack,
alarmed, and never reach the ledger; the terminal's records after them are accepted
(gateway/offline_episodes.py, docs/security.md)."""

from __future__ import annotations

import time
from pathlib import Path

from gateway import store_reports
from gateway.offline_episodes import OFFLINE_CLOCK_TOLERANCE_S
from protocol import txn
from tests.support.stack import RawTerminal, Stack, running_stack, wait_until
from tests.support.store_broker import StoreBroker

# offline_s_max is 1 s so that a record dated past it and the clock tolerance still fits in
# the 300 s a record may be ahead of the gateway's clock (a later one is time_invalid).
LIMITS = {"txn_minor_max": 1000, "card_offline_minor_max": 1500,
          "terminal_offline_minor_max": 2500, "offline_s_max": 1, "offline_txn_max": 4}
CARD_A, CARD_B, CARD_C, CARD_D = ("04e0e1e2e3e4e5", "04e6e7e8e9eaeb", "04ecedeeeff0f1",
                                  "04f2f3f4f5f6f7")


def issue_cards(raw: RawTerminal) -> None:
    for card in (CARD_A, CARD_B, CARD_C, CARD_D):
        raw.publish(raw.approved(txn.KIND_ISSUE, card, 5000, program="gift"))
    assert wait_until(lambda: raw.acked_through() == 4)


def offline_sale(raw: RawTerminal, card: str, value: int, **extra: object) -> bytes:
    return raw.record(txn.KIND_PURCHASE, card, value, auth_mode=txn.AUTH_OFFLINE, **extra)


def burst(raw: RawTerminal, records: list[bytes]) -> None:
    """Records that all reach the gateway before it acks any of them: the first is sent
    last, so the others wait for it (held, not acked) and none is placed before all came."""
    for record in records[1:] + records[:1]:
        raw.publish(record)
    last = raw.seq
    assert wait_until(lambda: raw.acked_through() == last)


def refused(raw: RawTerminal) -> set[tuple[int, str]]:
    return {(seq, reason) for ack in raw.acks() for seq, reason in ack["rejected"]}


def card_values(stack: Stack) -> list[int]:
    stack.gateway.settle()
    return [stack.ledger_client.card(card)["value_minor"]
            for card in (CARD_A, CARD_B, CARD_C, CARD_D)]


def test_many_small_offline_records_past_the_count_or_totals_are_refused_per_episode(
    store_broker: StoreBroker, tmp_path: Path
) -> None:
    with running_stack(store_broker, tmp_path, ["T1"], LIMITS) as stack:
        raw = RawTerminal(store_broker, "T1", stack.keys["T1"])
        issue_cards(raw)
        # Six records of 10 (seqs 5-10): four is the count.
        burst(raw, [offline_sale(raw, card, 10)
                    for card in (CARD_A, CARD_B, CARD_C, CARD_D, CARD_A, CARD_B)])
        assert refused(raw) == {(9, "offline_count_limit"), (10, "offline_count_limit")}
        # After that ack, a new episode: card A's third 600 passes its 1500 (seqs 11-13).
        burst(raw, [offline_sale(raw, CARD_A, 600) for _ in range(3)])
        # And again: 900 on three cards passes the terminal's 2500 (seqs 14-16).
        burst(raw, [offline_sale(raw, card, 900) for card in (CARD_B, CARD_C, CARD_D)])
        expected = {(9, "offline_count_limit"), (10, "offline_count_limit"),
                    (13, "offline_card_limit"), (16, "offline_terminal_limit")}
        assert refused(raw) == expected
        # What the terminal sends after those acks is accepted: online, and offline.
        raw.publish(raw.record(txn.KIND_PURCHASE, CARD_D, 100))
        raw.publish(offline_sale(raw, CARD_D, 50))
        assert wait_until(lambda: raw.acked_through() == 18)
        assert refused(raw) == expected
        assert not raw.notices()
        assert {(r["seq"], r["reason"]) for r in store_reports.refusals(
            stack.gateway.store)} == expected
        snapshot = stack.gateway.snapshot()
        assert snapshot["offline_over_limit"] == {"T1": 4}
        assert snapshot["stored"]["rejected.offline_count_limit"] == 2
        # Nothing refused reaches the ledger; the rest does.
        assert card_values(stack) == [5000 - 10 - 600 - 600, 5000 - 10 - 900,
                                      5000 - 10 - 900, 5000 - 10 - 100 - 50]
        assert stack.ledger_client.terminal_totals()["T1"]["count"] == 18 - len(expected)
        raw.close()


def test_an_offline_record_dated_past_offline_s_max_since_the_last_answer_is_refused(
    store_broker: StoreBroker, tmp_path: Path
) -> None:
    """The time offline runs from the gateway's last answer to the terminal (here the ack of
    its issues): a record dated more than offline_s_max and the clock tolerance after it is
    offline_time_limit; after the ack that refuses it, the terminal is online again."""
    with running_stack(store_broker, tmp_path, ["T1"], LIMITS) as stack:
        raw = RawTerminal(store_broker, "T1", stack.keys["T1"])
        issue_cards(raw)
        answered_s = max(ack["time"] for ack in raw.acks())
        gap_s = LIMITS["offline_s_max"] + OFFLINE_CLOCK_TOLERANCE_S
        time.sleep(3)  # so that a time past the gap is less than 300 s ahead of the gateway
        late = offline_sale(raw, CARD_A, 100, time=answered_s + gap_s + 2)
        raw.publish(late)
        assert wait_until(lambda: raw.acked_through() == 5)
        assert refused(raw) == {(5, "offline_time_limit")}
        raw.publish(offline_sale(raw, CARD_A, 100, time=answered_s + gap_s + 2))
        assert wait_until(lambda: raw.acked_through() == 6)
        assert refused(raw) == {(5, "offline_time_limit")}
        assert stack.gateway.snapshot()["offline_over_limit"] == {"T1": 1}
        assert card_values(stack) == [4900, 5000, 5000, 5000]
        raw.close()
