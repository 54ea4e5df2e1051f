"""Every limit of the ledger, named with its unit last, in one place so reviews can see them."""

from __future__ import annotations

AMOUNT_MINOR_MAX = 10**12
"""Largest amount_minor (and card_value_minor, bonus_minor) a transaction may carry."""

POINTS_MAX = 10**12
"""Largest number of points one transaction may earn or take back."""

INT64_MAX = 2**63 - 1
"""Largest seq / time value: they are stored as signed 64-bit integers."""

ID_CHARS_MAX = 64
"""Longest txn_id, batch_id, terminal, merchant, card, program or auth string."""

BATCH_TXN_MAX = 200_000
"""Most transactions one settlement batch may hold."""

BATCH_BYTES_MAX = 64 * 1024 * 1024
"""Largest HTTP body accepted by POST /v1/batches."""

LOOKUP_CHUNK_IDS = 10_000
"""Ids per `IN (...)` look-up; SQLite allows 32,766 bound parameters per statement."""

SQLITE_BUSY_TIMEOUT_MS = 10_000
"""How long a SQLite writer waits for another process's write lock before giving up."""

HTTP_TIMEOUT_S = 120.0
"""Client wait for one request: a 200k-transaction batch takes seconds to post."""

HTTP_SOCKET_TIMEOUT_S = 120.0
"""Server wait on a silent client socket before dropping the connection."""

HTTP_SHUTDOWN_POLL_S = 0.05
"""How often the serving loop checks for stop(): the longest stop() waits for it."""

HTTP_REQUESTS_CONCURRENT_MAX = 32
"""Requests served at once; more are answered 503 ledger_busy so threads stay bounded."""

PG_CONNECT_TIMEOUT_S = 10
"""How long opening a PostgreSQL connection may take before the ledger reports unavailable."""
