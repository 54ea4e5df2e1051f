"""docs/protocol.md stays true to the code: every reason code and every field key is listed."""

from __future__ import annotations

import re

from protocol import messages, reasons
from tests.support import REPO_ROOT

DOC = (REPO_ROOT / "docs" / "protocol.md").read_text()


def test_every_reason_code_is_documented() -> None:
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", DOC, re.MULTILINE))
    assert documented == set(reasons.DESCRIPTIONS)


def test_every_field_key_is_documented_with_its_name() -> None:
    rows = dict(re.findall(r"^\| (\d+) \| ([a-z_]+) \|", DOC, re.MULTILINE))
    for schema in messages.SCHEMAS.values():
        for key, name, _kind, _required in schema:
            assert rows.get(str(key)) == name, (key, name)
