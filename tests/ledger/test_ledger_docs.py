"""docs/ledger.md stays true to the code: every reason code the ledger can answer is listed."""

from __future__ import annotations

import re

from ledger.model import TXN_KEYS, TXN_OPTIONAL_KEYS
from tests.support import REPO_ROOT

DOC = (REPO_ROOT / "docs" / "ledger.md").read_text()
RAISED = re.compile(
    r"\b(?:BatchInvalid|BatchTooLarge|BatchConflict|HoldRefused|NotFound|LedgerRejected"
    r"|ConfigInvalid|_error)\(\s*\"([a-z_]+)\""
)


def reasons_in_code() -> set[str]:
    """Reason codes written literally as the first argument of a ledger error (or answer)."""
    found: set[str] = set()
    for path in sorted((REPO_ROOT / "ledger").rglob("*.py")):
        found.update(RAISED.findall(path.read_text()))
    return found


def test_the_scan_finds_the_reasons_it_must() -> None:
    """The scan is not vacuous: it sees reasons raised on one line and over several, and in
    the ledger's sub-packages (the database seam)."""
    expected = {"field_type", "legs_unbalanced", "legs_mismatch", "refund_mismatch", "dsn_invalid"}
    assert expected <= reasons_in_code()


def test_every_reason_code_is_documented() -> None:
    """Each reason the ledger raises appears in docs/ledger.md, in `backticks`."""
    documented = set(re.findall(r"`([a-z_]+)`", DOC))
    assert reasons_in_code() - documented == set()


def test_the_new_reasons_are_in_the_reason_table() -> None:
    """The reasons of given legs have their own rows in the reason code table."""
    rows = set(re.findall(r"^\| `([a-z_]+)` +\|", DOC, re.MULTILINE))
    assert {"legs_unbalanced", "legs_mismatch"} <= rows


def test_every_transaction_key_has_a_field_rule_and_the_optional_ones_say_so() -> None:
    """The field rules of a settlement batch name every key of `Txn`, and mark as optional
    exactly the keys a transaction may leave out."""
    section = DOC.split("## Settlement batch", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\|([^|]*)\|", section, re.MULTILINE)
    ruled = {key for row in rows for key in re.findall(r"`([a-z_]+)`", row)}
    marked_optional = {key for row in rows for key in re.findall(r"`([a-z_]+)` \(optional\)", row)}
    assert set(TXN_KEYS) | set(TXN_OPTIONAL_KEYS) <= ruled
    assert marked_optional == set(TXN_OPTIONAL_KEYS)
