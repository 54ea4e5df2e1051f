"""Every limit of the ledger, named with its unit last, in one place so reviews can see them."""

from __future__ import annotations

# Defined once, in protocol/money.py, and shown here: the gateway checks the same bounds at
# ingest, so a record it accepted is never refused by the ledger for its size.
from protocol.money import AMOUNT_MINOR_MAX as AMOUNT_MINOR_MAX  # amount, card value, bonus
from protocol.money import POINTS_MAX as POINTS_MAX  # points earned, taken back or redeemed
from protocol.ntag424_sun import READ_COUNTER_MAX

REFUSAL_DETAIL_CHARS_MAX = 500
"""Longest detail kept with a refused transaction (and its alarm): a detail quotes what was
sent (unknown keys, say), which a row kept for years need not hold in full."""

LEGS_MAX = 32
"""Most legs one settlement transaction may carry: room for all that one engine operation writes."""

PROGRAM_VERSION_MAX = 2**31 - 1
"""Largest program version a transaction may name (docs/programs.md: 1..2^31-1)."""

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

HTTP_SOCKET_TIMEOUT_S = 30.0
"""Server wait on a silent client socket (one read or write) before dropping the connection."""

HTTP_BODY_BASE_S = 10.0
"""Time any request body may take to arrive, on top of HTTP_BODY_RATE_MIN_BYTES_PER_S."""

HTTP_BODY_RATE_MIN_BYTES_PER_S = 256 * 1024
"""Slowest body upload served: a client trickling a body slower holds no slot for long."""

HTTP_CONNECTIONS_MAX = 512
"""Open connections served at once (each is a thread); more are closed at once."""

HTTP_CONNECTIONS_PER_CLIENT_MAX = 64
"""Open connections one client address may hold, so one slow client cannot take them all
(twice the request slots: a busy gateway racing holds keeps working)."""

LOGINS_RELOAD_INTERVAL_S = 2.0
"""How often the server looks at the logins file's modification time (a login added or
removed with `tilltap ledger login` takes effect without a restart)."""

HTTP_SHUTDOWN_POLL_S = 0.05
"""How often the serving loop checks for stop(): the longest stop() waits for it."""

HTTP_REQUESTS_CONCURRENT_MAX = 32
"""Requests served at once; more are answered 503 ledger_busy so threads stay bounded."""

BATCH_POSTS_CONCURRENT_MAX = 2
"""Batches posted at once; more wait for a turn (BATCH_POST_WAIT_S). Posting a batch is
mostly Python (parse, validate, plan) and Python runs one thread at a time: more batches at
once post no faster but take the interpreter from the holds, whose answers a customer waits
for at the counter."""

BATCH_POST_WAIT_S = 60.0
"""How long a batch waits for its turn before it is answered 503 ledger_busy (the gateway
sends it again later; posting is idempotent)."""

SERVER_SWITCH_INTERVAL_S = 0.0005
"""The ledger server's thread switch interval (Python's default is 0.005 s): a hold's
thread, back from a database round trip, waits at most this for a batch's thread to hand
over the interpreter, and a hold makes about ten such round trips."""

PG_CONNECT_TIMEOUT_S = 10
"""How long opening a PostgreSQL connection may take before the ledger reports unavailable."""

PG_POOL_CONNECTIONS_MIN = 2
"""PostgreSQL connections the ledger keeps open while idle (the pool opens more on demand)."""

PG_POOL_CONNECTIONS_MAX = HTTP_REQUESTS_CONCURRENT_MAX + 2
"""Most PostgreSQL connections one ledger process opens: one per request slot, one for the
hold sweep and one spare, so a request never waits for a connection, only for the rows it
locks. The server's max_connections must allow this for every ledger process."""

PG_POOL_WAIT_S = 10.0
"""How long a request waits for a pooled connection (the pool reconnecting after the
server restarted) before it is answered unavailable."""

PG_COPY_ROWS_MIN = 64
"""Rows from which a bulk insert streams with COPY; fewer go as one pipelined INSERT, which
costs a hold (one row) or a small batch less than COPY's setup."""

TXN_ATTEMPTS_MAX = 8
"""Most times one request's transaction is run when PostgreSQL rolls it back because it
collided with another (deadlock, serialization failure, an id taken meanwhile). Each retry
reads the books afresh, so a second attempt almost always decides; past this bound the
request is answered unavailable and the caller sends it again."""

TXN_RETRY_BACKOFF_MS = 5
"""Longest pause before the first retry, doubled for each further one, randomized (jitter),
so two transactions that collided do not collide again in step."""

HOLD_TTL_S_MAX = 7 * 24 * 3600
"""Longest life of a hold: an authorization not settled within a week releases its value."""

HOLD_GRANTS_MAX = 16
"""Targeted offers one hold may take a use of: a sale gets few offers (a program's offers
that apply together), never this many."""

HOLD_BYTES_MAX = 4096
"""Largest HTTP body accepted by POST /v1/holds (a hold request is seven short fields)."""

HOLD_SWEEP_INTERVAL_S = 5.0
"""How often the server marks due holds expired (reads count them as expired anyway)."""

HTTP_HOLD_TIMEOUT_S = 5.0
"""Client wait for placing or voiding a hold: the gateway stands in rather than wait longer."""

REPORT_WINDOW_DAYS_MAX = 3660
"""Longest report window: ten years of days."""

REPORT_ROWS_MAX = 1_000_000
"""Most rows one report may hold; a larger one is refused report_too_large, never truncated."""

REPORT_PARAMETER_DIGITS_MAX = 9
"""Longest integer report parameter, in digits (window, lapse days, purchase count)."""

HTTP_LISTEN_BACKLOG = 128
"""Connections the kernel queues before accept(); http.server's default of 5 resets bursts."""

BLOCKS_PAGE_MAX = 1000
"""Most block changes one GET /v1/blocks answer holds; a gateway asks again from its cursor."""
LAST_STORES_MAX = 5
"""Most terminals GET /v1/cards/<card> lists under last_stores (most recent first)."""
BLOCK_REASON_CHARS_MAX = 200
"""Longest reason a back-office block may give."""

CHANGES_PAGE_MAX = 1_000
"""Card changes in one answer of the feed (GET /v1/changes): a gateway behind asks again."""
SERVED_CARDS_PER_POST_MAX = 1_000
"""Cards one POST /v1/served names (a gateway registering the cards it serves, in pages)."""
SERVED_BYTES_MAX = 128 * 1024
"""Body of POST /v1/served: SERVED_CARDS_PER_POST_MAX ids of the longest, quoted."""

SUN_COUNTER_MAX = READ_COUNTER_MAX
"""Highest SUN read counter a hold or a transaction may carry: a card's counter is 3 bytes
(docs/cards.md), so a higher one was never read from a card."""

CUSTOMER_BYTES_MAX = 16 * 1024
"""Largest body of a customer request (POST /v1/customers, PATCH /v1/customers/<id>)."""

CUSTOMER_NAME_CHARS_MAX = 200
"""Longest customer name."""

CUSTOMER_NOTES_CHARS_MAX = 2000
"""Longest note kept about a customer."""

CONSENT_SOURCE_CHARS_MAX = 64
"""Longest name of where a marketing consent was given (counter, web form, ...)."""

CUSTOMER_CARDS_MAX = 100
"""Most cards one customer may have linked."""

HISTORY_TXNS_MAX = 100_000
"""Most transactions a card's or a customer's history lists (history_too_large beyond)."""

BIRTH_YEAR_MIN = 1900
"""Earliest birth year accepted (an earlier one is a typing mistake)."""

CUSTOMER_INACTIVE_DAYS_DEFAULT = 3 * 365
"""Retention (`tilltap customer retention`): a customer with no transaction on any of their
cards and no change for this many days is erased. Three years: a loyalty relationship is over
by then, and it outlasts common limitation periods; set it to the operator's own policy."""

CUSTOMER_INACTIVE_DAYS_MIN = 30
"""Shortest retention accepted: a smaller number is a typing mistake that would erase active
customers (a customer who came last week)."""

CUSTOMER_INACTIVE_DAYS_MAX = 36_500
"""Longest retention accepted (a hundred years)."""

RETENTION_ERASES_MAX = 500
"""Most customers one retention request erases (or a dry run lists): each is its own database
transaction; the command asks again until none is left."""

ADOPT_CHANGES_MAX = 1000
"""Most transactions GET /v1/cards/<card> lists for a gateway to replay (ledger/adopt_sql.py);
a card with more is taken on from its balances."""
