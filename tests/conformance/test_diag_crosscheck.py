"""The diag request and the diag answer (docs/protocol.md section 5.10) in the same bytes on
both sides: the project's `protocol.sealed` and the docs-only terminal's schema
(tests/conformance/docterm), each opening what the other sealed; and a field outside the
docs' table refused by both."""

from __future__ import annotations

import os
from typing import Any

import pytest

from protocol import messages, sealed
from protocol.errors import ValidationError
from tests.conformance.docterm import schema
from tests.conformance.docterm.errors import Refused

KEY = bytes(range(32))
KEYS = {b"T1": KEY}
DIAG_MESSAGES: list[tuple[str, int, dict[str, Any]]] = [
    ("diag request", schema.DIAG_REQUEST,
     {"terminal": "T1", "request": 2**32 - 1, "time": 1_767_225_600}),
    ("diag, a board", schema.DIAG, {
        "terminal": "T1", "request": 7, "time": 1_767_225_601, "firmware": "0.1.0",
        "config_version": 12, "journal_depth": 3, "refused": 1, "heap_free": 88_976,
        "uptime_s": 86_400 * 40, "errors": ["card_pulled", "host_unavailable"]}),
    ("diag, nothing to tell", schema.DIAG, {
        "terminal": "T1", "request": 0, "time": 0, "firmware": "", "config_version": 0,
        "journal_depth": 0, "refused": 0, "uptime_s": 0, "errors": []}),
]
IDS = [case[0] for case in DIAG_MESSAGES]


def test_the_type_numbers_are_the_docs() -> None:
    assert (messages.TYPE_DIAG_REQUEST, messages.TYPE_DIAG) == (schema.DIAG_REQUEST,
                                                               schema.DIAG)


@pytest.mark.parametrize(("name", "message_type", "fields"), DIAG_MESSAGES, ids=IDS)
def test_both_sides_seal_the_same_bytes_and_open_each_other(
        name: str, message_type: int, fields: dict[str, Any]) -> None:
    ours = sealed.seal(KEY, message_type, fields)
    theirs = schema.seal(KEY, message_type, fields)
    assert ours == theirs
    assert sealed.open_message(theirs, message_type, KEY) == fields
    assert schema.open_sealed(ours, message_type, KEYS) == fields


@pytest.mark.parametrize(("name", "message_type", "fields"), DIAG_MESSAGES, ids=IDS)
def test_another_key_is_refused_by_both(
        name: str, message_type: int, fields: dict[str, Any]) -> None:
    other = os.urandom(32)
    with pytest.raises(Refused) as refused:
        schema.open_sealed(sealed.seal(other, message_type, fields), message_type, KEYS)
    assert refused.value.reason == "mac_invalid"


@pytest.mark.parametrize("bad", [{71: ["not an id"]}, {70: -1}, {72: 1}])
def test_a_field_outside_the_table_is_field_invalid_on_both_sides(bad: dict[int, Any]) -> None:
    item = schema.pack(schema.DIAG, DIAG_MESSAGES[1][2])
    item.update(bad)
    with pytest.raises(Refused) as refused:
        schema.unpack(item, schema.DIAG)
    assert refused.value.reason == "field_invalid"
    with pytest.raises(ValidationError) as error:
        messages.unpack(item, messages.TYPE_DIAG)
    assert error.value.reason == "field_invalid"
