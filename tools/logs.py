"""Log lines of the services (`tilltap gateway run`, `tilltap ledger serve`): JSON lines on
stderr by default, or text for a person at a terminal (`--log-format text`).

A JSON line is one object, its keys in this order::

    {"ts": "2026-12-06T01:48:33.120Z", "level": "info", "component": "gateway",
     "logger": "gateway.settle", "event": "settlement_posted",
     "message": "batch gw1-b7 posted: 3 transactions", "batch": "gw1-b7", "posted": 3, ...}

`ts` is UTC (ISO 8601, milliseconds), `component` the package that logged it, `event` a
short snake_case name that stays the same from release to release (docs/deployment.md
"Logs" lists them; a line logged without one says "log"). The ids and counts a line is about
follow as fields of their own (`gateway`, `terminal`, `card`, `batch`, `reason`, ...), so a
log store can filter on them without parsing the message. Modules only use the standard
library::

    log.info("terminal %s connected", terminal,
             extra={"event": "terminal_connected", "terminal": terminal})

What must never be logged (keys, tokens, passwords) is not logged at all; as a second line
of defence a field whose name says it is a secret (SECRET_FIELDS) is written as "[redacted]".
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import IO, Any

LOG_FORMATS = ("json", "text")
LOG_FORMAT_DEFAULT = "json"  # the wish: a log store reads JSON lines as they are
EVENT_UNNAMED = "log"
SECRET_FIELDS = frozenset({"key", "key_hex", "token", "password", "secret", "authorization"})
REDACTED = "[redacted]"
TEXT_FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"
FIELD_TEXT_CHARS_MAX = 2_000
"""Longest text of one field: a line stays one screen, whatever a caller hands in."""

# Every attribute a LogRecord has of its own: what is not one of these came from `extra`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "taskName"}


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The fields a caller gave in `extra` (but `event`), in the order given."""
    return {name: value for name, value in vars(record).items()
            if name not in _RECORD_ATTRIBUTES and name != "event"}


def _value(name: str, value: Any) -> Any:
    """A field's value as JSON can hold it: secrets redacted, other objects as text."""
    if name.lower() in SECRET_FIELDS:
        return REDACTED
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value, key=str) if isinstance(value, (set, frozenset)) else value
        return [_value("", item) for item in items]
    return str(value)[:FIELD_TEXT_CHARS_MAX]


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in a message or a traceback are
    escaped by JSON). `static`: fields every line carries (the gateway's id)."""

    def __init__(self, static: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.static = dict(static or {})

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "component": record.name.partition(".")[0] or "root",
            "logger": record.name,
            "event": str(getattr(record, "event", None) or EVENT_UNNAMED),
            "message": record.getMessage(),
        }
        for name, value in {**self.static, **fields_of(record)}.items():
            if name not in line:  # the fixed keys keep their meaning
                line[name] = _value(name, value)
        if record.exc_info:
            line["exception"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        if record.stack_info:
            line["stack"] = record.stack_info
        return json.dumps(line, ensure_ascii=False, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    """The classic line (time, logger, level, message), then the event and its fields as
    name=value, for a person reading along."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        event = getattr(record, "event", None)
        pairs = [f"{name}={_value(name, value)}" for name, value in fields_of(record).items()]
        if event is None and not pairs:
            return text
        head, newline, rest = text.partition("\n")  # a traceback stays below its line
        suffix = " ".join([f"event={event or EVENT_UNNAMED}", *pairs])
        return f"{head} [{suffix}]{newline}{rest}"


def _timestamp(created_s: float) -> str:
    moment = datetime.fromtimestamp(created_s, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def log_format(text: str) -> str:
    """A --log-format value: json or text."""
    if text not in LOG_FORMATS:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(LOG_FORMATS)}")
    return text


def add_log_format_option(parser: argparse.ArgumentParser) -> None:
    # Imported here: tools.command is the command line's, this module also the services'.
    from tools.command import add_environment_option

    action = add_environment_option(
        parser, "--log-format", type=log_format, metavar="json|text",
        help="log lines on stderr: one JSON object per line, or text "
             f"({LOG_FORMAT_DEFAULT}; docs/deployment.md \"Logs\")")
    if action.default is None:
        parser.set_defaults(log_format=LOG_FORMAT_DEFAULT)


def configure(format_name: str, level: int = logging.INFO,
              static: Mapping[str, Any] | None = None,
              stream: IO[str] | None = None, force: bool = False) -> logging.Handler | None:
    """Send every log line of this process to `stream` (stderr) in `format_name`, from
    `level` up; returns the handler. As `logging.basicConfig`, it leaves a process whose
    logging is set up already (a test runner calling a service's `main`) as it is, unless
    `force`: then the handlers there were are replaced."""
    root = logging.getLogger()
    if root.handlers and not force:
        return None
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter(static) if format_name == "json" else TextFormatter())
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


class ServiceLogs:
    """What `ledger.server.main` is handed to offer --log-format and set logging up (the
    ledger package does not import the command-line tools)."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_log_format_option(parser)

    def configure(self, options: argparse.Namespace) -> None:
        configure(options.log_format)


SERVICE_LOGS = ServiceLogs()
