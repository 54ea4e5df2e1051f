"""Acks that carry more refusals or replays than one message holds are split so that each
acks only through the seq before the next one's first entry (docs/protocol.md 5.1)."""

from __future__ import annotations

from gateway.acks import AckOut, ack_messages
from protocol import messages, sealed


def test_one_ack_when_it_fits() -> None:
    out = AckOut("M1", "T1")
    out.acked_through = 9
    out.rejected = [(4, "rule_mismatch")]
    out.replayed = [(2, bytes(32))]
    assert ack_messages(out, 100) == [{
        "terminal": "T1", "time": 100, "acked_through": 9, "rejected": [[4, "rule_mismatch"]],
        "replayed": [[2, bytes(32)]]}]


def test_a_long_batch_is_split_in_seq_order_and_no_ack_passes_an_unreported_refusal() -> None:
    out = AckOut("M1", "T1")
    out.acked_through = 100
    out.rejected = [(seq, "amount_invalid") for seq in range(60, 30, -1)]  # 30, any order
    out.replayed = [(seq, bytes([seq]) * 32) for seq in range(1, 7)]  # 6
    acks = ack_messages(out, 5)
    reported: list[int] = []
    for ack in acks:
        data = sealed.seal(bytes(32), messages.TYPE_ACK, ack)  # each fits one message
        assert len(data) <= messages.MESSAGE_BYTES_MAX
        seqs = [s for s, _ in ack["rejected"]] + [s for s, _ in ack.get("replayed", [])]
        assert seqs and max(seqs) <= ack["acked_through"]
        # Everything this ack drops from the terminal's journal has been reported by now.
        reported += seqs
        assert all(s in reported for s in [*range(31, 61), *range(1, 7)]
                   if s <= ack["acked_through"])
    assert acks[-1]["acked_through"] == 100
    assert sorted(reported) == [*range(1, 7), *range(31, 61)]
    assert [a["acked_through"] for a in acks] == sorted(a["acked_through"] for a in acks)


def test_notices_to_one_terminal_come_in_a_burst_then_one_a_second() -> None:
    from gateway.acks import NOTICE_BURST, NoticeLimiter

    now = [0.0]
    limiter = NoticeLimiter(clock=lambda: now[0])
    assert [limiter.allow("T1") for _ in range(NOTICE_BURST + 3)] == (
        [True] * NOTICE_BURST + [False] * 3)
    assert limiter.allow("T2")  # another terminal has its own bucket
    now[0] = 1.0
    assert limiter.allow("T1") and not limiter.allow("T1")
