"""The services' log lines (tools/logs.py): one JSON object per line with the fixed keys in
order, the event name and the ids as fields, secrets never written; a text form for people;
--log-format as a checked option."""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tools.logs import (
    EVENT_UNNAMED,
    FIELD_TEXT_CHARS_MAX,
    REDACTED,
    JsonFormatter,
    TextFormatter,
    add_log_format_option,
    configure,
)


def _record(message: str, *args: object, level: int = logging.INFO,
            name: str = "gateway.settle", extra: dict[str, Any] | None = None,
            exc_info: Any = None) -> logging.LogRecord:
    """A record as `logging.getLogger(name).log(level, message, *args, extra=extra)` makes."""
    logger = logging.getLogger(name)
    return logger.makeRecord(name, level, "settle.py", 1, message, args, exc_info,
                             extra=extra)


def _json(record: logging.LogRecord, static: dict[str, Any] | None = None) -> dict[str, Any]:
    text = JsonFormatter(static).format(record)
    assert "\n" not in text
    line: dict[str, Any] = json.loads(text)
    return line


def test_a_line_has_the_fixed_keys_first_then_the_fields_given() -> None:
    record = _record("batch %s settled", "gw1-b7",
                     extra={"event": "settlement_posted", "batch": "gw1-b7", "posted": 3})
    line = _json(record)
    assert list(line) == ["ts", "level", "component", "logger", "event", "message", "batch",
                          "posted"]
    assert line["level"] == "info" and line["component"] == "gateway"
    assert line["logger"] == "gateway.settle" and line["event"] == "settlement_posted"
    assert line["message"] == "batch gw1-b7 settled"
    assert (line["batch"], line["posted"]) == ("gw1-b7", 3)


def test_the_time_is_iso_8601_utc_with_milliseconds() -> None:
    record = _record("x")
    record.created = datetime(2026, 12, 6, 1, 48, 33, 120_999, tzinfo=UTC).timestamp()
    assert _json(record)["ts"] == "2026-12-06T01:48:33.120Z"


def test_a_line_without_an_event_says_so() -> None:
    assert _json(_record("plain"))["event"] == EVENT_UNNAMED


def test_static_fields_are_on_every_line_and_a_call_may_override_them() -> None:
    assert _json(_record("x"), {"gateway": "gw1"})["gateway"] == "gw1"
    assert _json(_record("x", extra={"gateway": "gw2"}), {"gateway": "gw1"})["gateway"] == "gw2"


def test_a_field_cannot_overwrite_a_fixed_key() -> None:
    line = _json(_record("x", extra={"level": "fake", "component": "fake"}))
    assert (line["level"], line["component"]) == ("info", "gateway")


def test_fields_named_as_secrets_are_redacted() -> None:
    line = _json(_record("x", extra={"key": "00" * 32, "token": "abc", "password": "pw",
                                      "terminal": "T1"}))
    assert line["key"] == line["token"] == line["password"] == REDACTED
    assert line["terminal"] == "T1"
    assert "abc" not in JsonFormatter().format(_record("x", extra={"token": "abc"}))


def test_other_values_become_json_text_numbers_or_lists() -> None:
    line = _json(_record("x", extra={"path": Path("/srv/registry.json"), "ok": True,
                                      "gone": None, "ids": ("T2", "T1"), "set": {"b", "a"},
                                      "long": "y" * (FIELD_TEXT_CHARS_MAX + 10)}))
    assert line["path"] == "/srv/registry.json" and line["ok"] is True and line["gone"] is None
    assert line["ids"] == ["T2", "T1"] and line["set"] == ["a", "b"]
    assert len(line["long"]) == FIELD_TEXT_CHARS_MAX


def test_a_message_with_newlines_and_a_traceback_stays_one_line() -> None:
    try:
        raise ValueError("inner\ntrouble")
    except ValueError:
        record = _record("first\nsecond", level=logging.ERROR, exc_info=sys.exc_info())
    line = _json(record)
    assert line["message"] == "first\nsecond" and line["level"] == "error"
    assert "ValueError: inner\ntrouble" in line["exception"]


def test_the_text_form_keeps_the_classic_line_and_adds_event_and_fields() -> None:
    text = TextFormatter().format(_record("terminal %s connected", "T1",
                                          extra={"event": "terminal_connected",
                                                 "terminal": "T1", "token": "s3cret"}))
    assert " gateway.settle INFO terminal T1 connected [event=terminal_connected " in text
    assert text.endswith(f"terminal=T1 token={REDACTED}]") and "s3cret" not in text
    assert TextFormatter().format(_record("plain")).endswith("INFO plain")


@pytest.fixture
def root_restored() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def test_configure_sends_every_logger_to_one_stream_in_the_format_chosen(
    root_restored: None
) -> None:
    stream = io.StringIO()
    logging.getLogger().addHandler(logging.NullHandler())  # logging set up already ...
    assert configure("json", stream=stream) is None  # ... is left as it is
    configure("json", static={"gateway": "gw1"}, stream=stream, force=True)
    logging.getLogger("ledger.server").info("up", extra={"event": "ledger_started"})
    logging.getLogger("ledger.server").debug("look-up", extra={"event": "lookup_not_found"})
    lines = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert [(line["component"], line["event"], line["gateway"]) for line in lines] == [
        ("ledger", "ledger_started", "gw1")]  # debug is below the level
    assert len(logging.getLogger().handlers) == 1

    stream = io.StringIO()
    configure("text", stream=stream, force=True)
    logging.getLogger("gateway.mqtt").warning("lost", extra={"event": "broker_lost"})
    assert stream.getvalue().rstrip().endswith("gateway.mqtt WARNING lost [event=broker_lost]")
    assert len(logging.getLogger().handlers) == 1


def test_log_format_is_json_by_default_text_on_request_and_nothing_else() -> None:
    parser = argparse.ArgumentParser()
    add_log_format_option(parser)
    assert parser.parse_args([]).log_format == "json"
    assert parser.parse_args(["--log-format", "text"]).log_format == "text"
    with pytest.raises(SystemExit):
        parser.parse_args(["--log-format", "xml"])
