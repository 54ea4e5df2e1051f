"""tilltap's central ledger: double-entry books fed by settlement batches, exactly once.

Open books with `open_books("sqlite:///path.db")` (or a path, ``:memory:``, or a
``postgresql://`` DSN), post gateway batches with `Books.post_batch`, and read balances
back. `ledger.server` serves the same over HTTP and `ledger.client` talks to it.
See docs/ledger.md for accounts, posting rules, the batch format and reason codes.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

# Where each name lives, imported at its first use: importing ledger.client or ledger.errors
# (a gateway, every `tilltap` command) must not load the books and their SQL (0.2 s a start).
_HOMES = {
    "Books": "ledger.books", "open_books": "ledger.books",
    "BatchConflict": "ledger.errors", "BatchInvalid": "ledger.errors",
    "BatchTooLarge": "ledger.errors", "ConfigInvalid": "ledger.errors",
    "LedgerError": "ledger.errors", "LedgerRejected": "ledger.errors",
    "LedgerUnavailable": "ledger.errors", "NotFound": "ledger.errors",
    "PostResult": "ledger.model", "TxnRefusal": "ledger.model",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'ledger' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)


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
