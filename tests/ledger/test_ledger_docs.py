"""docs/ledger.md stays true to the code: every reason code the ledger can answer is listed."""

from __future__ import annotations

import re

from tests.support import REPO_ROOT

DOC = (REPO_ROOT / "docs" / "ledger.md").read_text()
RAISED = re.compile(
    r"\b(?:BatchInvalid|BatchTooLarge|BatchConflict|HoldRefused|NotFound|LedgerRejected"
    r"|ConfigInvalid|_error)\(\s*\"([a-z_]+)\""
)


def reasons_in_code() -> set[str]:
    """Reason codes written literally as the first argument of a ledger error (or answer)."""
    found: set[str] = set()
    for path in sorted((REPO_ROOT / "ledger").glob("*.py")):
        found.update(RAISED.findall(path.read_text()))
    return found


def test_the_scan_finds_the_reasons_it_must() -> None:
    """The scan is not vacuous: it sees reasons raised on one line and over several."""
    expected = {"field_type", "legs_unbalanced", "legs_mismatch", "refund_mismatch"}
    assert expected <= reasons_in_code()


def test_every_reason_code_is_documented() -> None:
    """Each reason the ledger raises appears in docs/ledger.md, in `backticks`."""
    documented = set(re.findall(r"`([a-z_]+)`", DOC))
    assert reasons_in_code() - documented == set()


def test_the_new_reasons_are_in_the_reason_table() -> None:
    """The reasons of given legs have their own rows in the reason code table."""
    rows = set(re.findall(r"^\| `([a-z_]+)` +\|", DOC, re.MULTILINE))
    assert {"legs_unbalanced", "legs_mismatch"} <= rows
