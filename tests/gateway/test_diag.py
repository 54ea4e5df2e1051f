"""The gateway's side of a diag request (gateway/diag.py, docs/protocol.md section 5.10):
what it seals and where, which answers it takes (signed by the terminal asked, naming the
request id it waits for), and its HTTP answers. The terminal is played here by code that
opens the request and seals an answer with the protocol's own functions."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest

from gateway.diag import (
    DIAG_PENDING_MAX,
    DiagBusy,
    DiagDesk,
    NoAnswer,
    TerminalNotRegistered,
    serve,
)
from gateway.registry import TerminalRegistry
from gateway.stats import Stats
from protocol import messages, sealed, topics
from tests.support.stack import wait_until

KEY, OTHER_KEY = bytes(range(32)), bytes(range(1, 33))
NOW_S = 1_767_225_600
ANSWER_WAIT_S = 10.0  # generous: a test that passes never waits this long
SILENCE_S = 0.3  # how long a test waits for an answer that must not come


def answer_fields(request: int, terminal: str = "T1") -> dict[str, Any]:
    return {"terminal": terminal, "request": request, "time": NOW_S, "firmware": "0.1.0",
            "config_version": 4, "journal_depth": 2, "refused": 1, "uptime_s": 3_600,
            "errors": ["card_pulled", "time_invalid"]}


class Broker:
    """Where the desk publishes; `terminal(topic, payload)` may answer (on the same thread,
    as paho's would, or later)."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []
        self.terminal: Callable[[str, bytes], None] | None = None

    def publish(self, topic: str, payload: bytes) -> None:
        self.published.append((topic, payload))
        if self.terminal is not None:
            self.terminal(topic, payload)


@pytest.fixture
def rig() -> tuple[DiagDesk, Broker, Stats]:
    registry = TerminalRegistry()
    registry.add("T1", "M1", KEY)
    registry.add("T2", "M1", OTHER_KEY)
    broker, stats = Broker(), Stats()
    return DiagDesk(registry, stats, broker.publish, clock=lambda: NOW_S), broker, stats


def answering(desk: DiagDesk, key: bytes = KEY, topic_terminal: str = "T1",
              fields: Callable[[int], dict[str, Any]] = answer_fields,
              merchant: str = "M1") -> Callable[[str, bytes], None]:
    """A terminal that opens the request with KEY and answers under `key`."""

    def terminal(topic: str, payload: bytes) -> None:
        request = sealed.open_message(payload, messages.TYPE_DIAG_REQUEST, KEY)
        answer = sealed.seal(key, messages.TYPE_DIAG, fields(request["request"]))
        desk.on_answer(topics.up(merchant, topic_terminal, topics.LEAF_DIAG), answer)

    return terminal


def test_the_request_is_sealed_for_the_terminal_and_its_answer_returned(rig: Any) -> None:
    desk, broker, stats = rig
    broker.terminal = answering(desk)
    answer = desk.ask("T1", ANSWER_WAIT_S)
    [(topic, payload)] = broker.published
    assert topic == "tilltap/v1/M1/T1/down/diag"
    request = sealed.open_message(payload, messages.TYPE_DIAG_REQUEST, KEY)
    assert request["time"] == NOW_S and request["terminal"] == "T1"
    assert answer == {**answer_fields(request["request"]), "heard_at": NOW_S}
    assert desk.last["T1"] == answer
    counts = stats.snapshot()
    assert counts["diag.asked"] == 1 and counts["diag.answered"] == 1


def test_each_request_has_a_fresh_id(rig: Any) -> None:
    desk, broker, _ = rig
    broker.terminal = answering(desk)
    ids = {desk.ask("T1", ANSWER_WAIT_S)["request"] for _ in range(5)}
    assert len(ids) == 5


def test_an_unknown_terminal_is_not_asked(rig: Any) -> None:
    desk, broker, _ = rig
    with pytest.raises(TerminalNotRegistered):
        desk.ask("T9", ANSWER_WAIT_S)
    assert broker.published == []


def test_a_terminal_that_does_not_answer_ends_in_no_answer(rig: Any) -> None:
    desk, _, stats = rig
    with pytest.raises(NoAnswer):
        desk.ask("T1", SILENCE_S)
    assert stats.snapshot()["diag.no_answer"] == 1


@pytest.mark.parametrize(("case", "terminal_kwargs", "counted"), [
    ("signed with another terminal's key", {"key": OTHER_KEY}, "rejected.mac_invalid"),
    ("on another terminal's topic", {"topic_terminal": "T2"}, "rejected.topic_mismatch"),
    ("on another merchant's topic", {"merchant": "M2"}, "rejected.merchant_mismatch"),
    ("naming another request id", {"fields": lambda request: answer_fields(request + 1)},
     "diag.unasked"),
])
def test_an_answer_it_cannot_trust_or_did_not_ask_for_is_dropped(
        rig: Any, case: str, terminal_kwargs: dict[str, Any], counted: str) -> None:
    desk, broker, stats = rig
    broker.terminal = answering(desk, **terminal_kwargs)
    with pytest.raises(NoAnswer):
        desk.ask("T1", SILENCE_S)
    assert stats.snapshot()[counted] == 1, case
    assert "T1" not in desk.last


def test_another_terminal_naming_the_awaited_id_is_not_its_answer(rig: Any) -> None:
    desk, broker, stats = rig

    def t2_answers(topic: str, payload: bytes) -> None:
        request = sealed.open_message(payload, messages.TYPE_DIAG_REQUEST, KEY)["request"]
        answer = sealed.seal(OTHER_KEY, messages.TYPE_DIAG, answer_fields(request, "T2"))
        desk.on_answer(topics.up("M1", "T2", topics.LEAF_DIAG), answer)

    broker.terminal = t2_answers
    with pytest.raises(NoAnswer):
        desk.ask("T1", SILENCE_S)
    assert stats.snapshot()["diag.unasked"] == 1


def test_an_answer_after_the_wait_is_not_taken(rig: Any) -> None:
    desk, broker, stats = rig
    with pytest.raises(NoAnswer):
        desk.ask("T1", SILENCE_S)
    request = sealed.open_message(broker.published[0][1], messages.TYPE_DIAG_REQUEST, KEY)
    late = sealed.seal(KEY, messages.TYPE_DIAG, answer_fields(request["request"]))
    desk.on_answer(topics.up("M1", "T1", topics.LEAF_DIAG), late)
    assert stats.snapshot()["diag.unasked"] == 1 and "T1" not in desk.last


def test_requests_waiting_at_once_are_bounded(rig: Any) -> None:
    desk, broker, _ = rig
    waiting = [threading.Thread(target=desk.ask, args=("T1", ANSWER_WAIT_S), daemon=True)
               for _ in range(DIAG_PENDING_MAX)]
    for thread in waiting:
        thread.start()
    assert wait_until(lambda: len(broker.published) == DIAG_PENDING_MAX, ANSWER_WAIT_S)
    with pytest.raises(DiagBusy):
        desk.ask("T1", ANSWER_WAIT_S)
    for _, payload in broker.published:  # answered: each waiting thread ends
        request = sealed.open_message(payload, messages.TYPE_DIAG_REQUEST, KEY)["request"]
        desk.on_answer(topics.up("M1", "T1", topics.LEAF_DIAG),
                       sealed.seal(KEY, messages.TYPE_DIAG, answer_fields(request)))
    for thread in waiting:
        thread.join(ANSWER_WAIT_S)
        assert not thread.is_alive()
    assert len(desk.last) == 1


def _call(desk: DiagDesk, method: str, path: str, query: str = "") -> tuple[str, Any]:
    environ: dict[str, Any] = {"REQUEST_METHOD": method, "PATH_INFO": path,
                               "QUERY_STRING": query, "wsgi.input": io.BytesIO()}
    setup_testing_defaults(environ)
    said: list[str] = []
    body = b"".join(serve(desk, environ, lambda status, headers: said.append(status)))
    return said[0], json.loads(body)


def test_http_answers_with_the_terminal_s_fields_or_says_why_not(rig: Any) -> None:
    desk, broker, _ = rig
    broker.terminal = answering(desk)
    status, body = _call(desk, "POST", "/diag/T1")
    assert status == "200 OK" and body["config_version"] == 4
    assert body["errors"] == ["card_pulled", "time_invalid"]
    broker.terminal = None
    assert _call(desk, "POST", "/diag/T2", f"wait_s={SILENCE_S}") == (
        "504 Gateway Timeout", {"error": "no_answer",
                                "detail": f"T2 did not answer within {SILENCE_S:g} s"})
    assert _call(desk, "POST", "/diag/T9")[0] == "404 Not Found"
    assert _call(desk, "POST", "/diag/T9")[1]["error"] == "terminal_unknown"
    assert _call(desk, "POST", "/diag/a b")[0] == "400 Bad Request"
    assert _call(desk, "POST", "/diag/T1", "wait_s=600")[0] == "400 Bad Request"
    assert _call(desk, "POST", "/diag/T1", "wait_s=soon")[0] == "400 Bad Request"
    assert _call(desk, "GET", "/diag/T1")[0] == "405 Method Not Allowed"
