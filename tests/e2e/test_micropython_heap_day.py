"""A long day in a board-sized heap, on real MicroPython: the terminal's own sale path
(tools/mpy/heap_day.py: mixed programs, offline spells, dropped records resent) with the
firmware loaded as .mpy files, the live heap measured after a collection every 500 sales.
`make heapday` runs the 10,000-sale day; this is the short one."""

from __future__ import annotations

from firmware.journal import JOURNAL_BYTES_MAX
from tools.bench.firmware_heap_day import (
    BOARD_HEAP_BYTES,
    DRIFT_BYTES_MAX,
    MEASURE_EVERY,
    WARMUP_SALES,
    run_day,
)
from tools.mpy.heap_day import OFFLINE_SALES

DAY_SALES_IN_TEST = 2_000


def test_two_thousand_mixed_sales_leave_the_live_heap_flat_and_a_frozen_board_room() -> None:
    day = run_day(DAY_SALES_IN_TEST)  # a MemoryError or any crash fails it here
    summary = day.summary
    assert day.sales == DAY_SALES_IN_TEST
    # The day was the mixed one it claims: offline spells, records dropped and resent,
    # and in the end every journaled record acknowledged.
    assert summary["offline_approved"] >= OFFLINE_SALES * 3
    assert summary["dropped"] > 0 and summary["uplink"]["resent"] >= summary["dropped"]
    assert summary["uplink"]["acked"] == summary["acked_through"] >= 1800
    assert summary["journal_depth"] == 0
    # Journal compaction keeps the file bounded however many records went through it.
    assert summary["journal_file_bytes"] <= JOURNAL_BYTES_MAX
    # Measured every 500 sales; flat from the first measurement after the warm-up.
    assert [sale for sale, _ in day.samples] == list(
        range(0, DAY_SALES_IN_TEST + 1, MEASURE_EVERY))
    assert day.measured[0][0] == WARMUP_SALES
    assert abs(day.drift_bytes) <= DRIFT_BYTES_MAX, day.samples
    # What stays between sales fits an ESP32 with frozen firmware, and leaves room for the
    # whole of a sale's allocations without a single collection inside it.
    assert day.free_min("esp32", frozen=True) >= day.alloc_max > 0
    assert day.state_max < BOARD_HEAP_BYTES["esp32"] // 4
