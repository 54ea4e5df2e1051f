"""tilltap's central ledger: double-entry books fed by settlement batches, exactly once.

Open books with `open_books("sqlite:///path.db")` (or a path, ``:memory:``, or a
``postgresql://`` DSN), post gateway batches with `Books.post_batch`, and read balances
back. `ledger.server` serves the same over HTTP and `ledger.client` talks to it.
See docs/ledger.md for accounts, posting rules, the batch format and reason codes.
"""

from __future__ import annotations

from ledger.books import Books, open_books
from ledger.errors import (
    BatchConflict,
    BatchInvalid,
    BatchTooLarge,
    ConfigInvalid,
    LedgerError,
    LedgerRejected,
    LedgerUnavailable,
    NotFound,
)
from ledger.model import PostResult, TxnRefusal

__all__ = [
    "BatchConflict",
    "BatchInvalid",
    "BatchTooLarge",
    "Books",
    "ConfigInvalid",
    "LedgerError",
    "LedgerRejected",
    "LedgerUnavailable",
    "NotFound",
    "PostResult",
    "TxnRefusal",
    "open_books",
]
