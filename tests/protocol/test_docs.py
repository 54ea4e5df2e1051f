"""docs/protocol.md stays true to the code: every reason code and every field key is listed."""

from __future__ import annotations

import re

from protocol import messages, reason_texts, reasons
from tests.support import REPO_ROOT

DOC = (REPO_ROOT / "docs" / "protocol.md").read_text()


def test_every_reason_code_is_documented() -> None:
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", DOC, re.MULTILINE))
    assert documented == set(reason_texts.DESCRIPTIONS)


def test_every_reason_code_has_its_text_and_every_text_a_code() -> None:
    codes = {value for name, value in vars(reasons).items()
             if name.isupper() and isinstance(value, str)}
    assert codes == set(reason_texts.DESCRIPTIONS)
    assert all(text for text in reason_texts.DESCRIPTIONS.values())


def test_every_field_key_is_documented_with_its_name() -> None:
    rows = dict(re.findall(r"^\| (\d+) \| ([a-z_]+) \|", DOC, re.MULTILINE))
    for schema in messages.SCHEMAS.values():
        for key, name, _kind, _required in schema:
            assert rows.get(str(key)) == name, (key, name)


def _message_tables() -> dict[int, dict[int, bool]]:
    """Section 3.1: per message type, its keys and whether each is required (R)."""
    section = DOC[DOC.index("### 3.1"):DOC.index("### 3.2")]
    tables: dict[int, dict[int, bool]] = {}
    current: dict[int, bool] | None = None
    for line in section.splitlines():
        header = re.match(r"^\*\*(\d+) [a-z ]+\*\*", line)
        if header:
            current = tables.setdefault(int(header.group(1)), {})
            continue
        row = re.match(r"^\| ([\d, ]+) \| [a-z_ ]+ \| (R|o) \|", line)
        if row and current is not None:
            for key in row.group(1).split(","):
                current[int(key)] = row.group(2) == "R"
    return tables


def test_every_message_table_lists_exactly_its_keys_and_which_are_required() -> None:
    tables = _message_tables()
    assert set(tables) == set(messages.SCHEMAS)
    for message_type, schema in messages.SCHEMAS.items():
        expected = {key: required for key, _name, _kind, required in schema}
        assert tables[message_type] == expected, message_type


def test_every_file_the_docs_name_exists() -> None:
    """A page that points to a test or module that is not there tells a reader nothing."""
    missing = []
    for page in sorted((REPO_ROOT / "docs").glob("*.md")) + [REPO_ROOT / "README.md"]:
        for path in re.findall(r"`((?:tests|gateway|ledger|protocol|firmware|tools)/[\w/]+\.py)",
                               page.read_text()):
            if not (REPO_ROOT / path).exists():
                missing.append(f"{page.name}: {path}")
    assert missing == []
