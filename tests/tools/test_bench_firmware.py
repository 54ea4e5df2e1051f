"""The firmware bench measures real MicroPython and the firmware stays within its memory
budgets (sizes and heap, never times)."""

from __future__ import annotations

from tools.bench import firmware, firmware_heap_day


def test_firmware_metrics_are_well_formed_and_within_budget() -> None:
    metrics = {m["metric"]: m for m in firmware.measure(quick=True)}
    assert set(metrics) == {"firmware.txn_peak_heap", "firmware.mpy_size", "firmware.txn_path",
                            "firmware.heap_day_drift_per_1k_sales", "firmware.heap_day_live_max",
                            "firmware.heap_day_free_min_esp32",
                            "firmware.heap_day_free_min_pico_w",
                            "firmware.heap_day_sale_alloc_max"}
    for entry in metrics.values():
        assert set(entry) >= {"metric", "value", "baseline", "ratio", "unit", "n"}
        assert entry["n"] >= 1
    assert metrics["firmware.txn_peak_heap"]["value"] <= firmware.HEAP_BUDGET_BYTES
    assert metrics["firmware.mpy_size"]["value"] <= firmware.MPY_BUDGET_BYTES
    for name in ("firmware.txn_peak_heap", "firmware.mpy_size", "firmware.txn_path",
                 "firmware.heap_day_live_max", "firmware.heap_day_free_min_esp32",
                 "firmware.heap_day_sale_alloc_max"):
        assert metrics[name]["value"] > 0, name
    # The quick day ran to its end (its drift may be of either sign: tests/e2e bounds it).
    assert metrics["firmware.heap_day_drift_per_1k_sales"]["n"] == firmware_heap_day.DAY_SALES_QUICK
    path = metrics["firmware.txn_path"]
    assert path["baseline"] > 0 and path["ratio"] == round(path["value"] / path["baseline"], 3)


def test_what_a_board_ships_is_compiled_and_counted_and_nothing_else() -> None:
    sizes = firmware.mpy_sizes()
    assert "protocol/cbor.py" in sizes and "firmware/journal.py" in sizes
    assert "firmware/card_sun.py" in sizes and "firmware/boards/__init__.py" in sizes
    assert "firmware/boards/esp32_pn532.py" not in sizes  # ships as board.py source
    assert "protocol/engine_offline.py" in sizes  # offline quotes, with the program rules
    assert "protocol/engine.py" not in sizes  # the card state machine runs at the gateway
