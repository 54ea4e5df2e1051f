"""The books' tables, created idempotently on open; the same schema on SQLite and PostgreSQL.

Money and counts are BIGINT (64-bit on PostgreSQL; SQLite integers are 64-bit anyway).
Indexes exist only for the queries the ledger runs: entries by account owner (card
balances), transactions by ref_txn_id (refund limits), open holds by card (available value
and points) and by expiry (the sweep), hold postings by batch (closing them). Reports scan
the transactions: an index on time would tax every posted batch for an occasional query.
Primary keys cover the id look-ups (a batch's refused transactions, in batch order, too).
Tables added later (holds, hold_postings, refused_txns, card_blocks, point_holds,
point_hold_postings, the customer tables, card_engine_states, served_cards, the company
tables, the reward stock tables) are created on the next open of existing books, and
columns added later (ADDED_COLUMNS: nullable, so rows written before them read as null) are
added to them;
nothing is ever dropped or changed. That is why holds with points are a table of their own
(point_holds, see `ledger.hold_rules`): holds' CHECK (amount_minor > 0) stays.

The column lists that rows are inserted with come from the value types where a field list is
written once: TXN_COLUMNS from `Txn` (`ledger.model`), HOLD_COLUMNS and POINT_HOLD_COLUMNS
from `HoldRequest` (`ledger.hold_rules`). The tests check that the tables created here have
exactly these columns.
"""

from __future__ import annotations

from ledger.db import Database, Session
from ledger.hold_rules import HOLD_REQUEST_FIELDS, HOLD_VALUE_FIELDS
from ledger.model import TXN_STORED_FIELDS

_SERIAL = {
    "sqlite": "INTEGER PRIMARY KEY",
    "postgresql": "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
}

_STATEMENTS = (
    """CREATE TABLE IF NOT EXISTS batches (
        batch_id TEXT PRIMARY KEY,
        content_hash TEXT NOT NULL,
        gateway_id TEXT NOT NULL,
        created BIGINT NOT NULL,
        received_at BIGINT NOT NULL,
        txn_count BIGINT NOT NULL,
        posted_count BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS transactions (
        txn_id TEXT PRIMARY KEY,
        batch_id TEXT NOT NULL,
        terminal TEXT NOT NULL,
        seq BIGINT NOT NULL,
        merchant TEXT NOT NULL,
        kind TEXT NOT NULL,
        card TEXT NOT NULL,
        currency TEXT NOT NULL,
        amount_minor BIGINT NOT NULL CHECK (amount_minor >= 0),
        card_value_minor BIGINT NOT NULL CHECK (card_value_minor >= 0),
        bonus_minor BIGINT NOT NULL CHECK (bonus_minor >= 0),
        points BIGINT NOT NULL CHECK (points >= 0),
        ref_txn_id TEXT,
        program TEXT,
        time BIGINT NOT NULL,
        digest TEXT NOT NULL,
        auth TEXT NOT NULL,
        content_hash TEXT NOT NULL{transactions_added})""",
    """CREATE INDEX IF NOT EXISTS transactions_by_ref
        ON transactions (ref_txn_id) WHERE ref_txn_id IS NOT NULL""",
    """CREATE TABLE IF NOT EXISTS entries (
        id {serial},
        txn_id TEXT NOT NULL,
        account_kind TEXT NOT NULL,
        owner TEXT NOT NULL,
        unit TEXT NOT NULL,
        amount_minor BIGINT NOT NULL CHECK (amount_minor <> 0))""",
    "CREATE INDEX IF NOT EXISTS entries_by_account ON entries (owner, account_kind, unit)",
    """CREATE TABLE IF NOT EXISTS cards (
        card TEXT PRIMARY KEY,
        program TEXT,
        currency TEXT NOT NULL,
        activated_txn_id TEXT REFERENCES transactions (txn_id){cards_added})""",
    # amount_minor 0: a hold of no value that takes a use of targeted offers (grant_holds).
    """CREATE TABLE IF NOT EXISTS holds (
        hold_id TEXT PRIMARY KEY,
        card TEXT NOT NULL REFERENCES cards (card),
        currency TEXT NOT NULL,
        amount_minor BIGINT NOT NULL CHECK (amount_minor >= 0),
        ttl_s BIGINT NOT NULL CHECK (ttl_s > 0),
        terminal TEXT NOT NULL,
        merchant TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        placed_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        available_minor BIGINT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('open', 'posted', 'voided', 'expired')),
        closed_at BIGINT)""",
    "CREATE INDEX IF NOT EXISTS holds_open_by_card ON holds (card) WHERE status = 'open'",
    "CREATE INDEX IF NOT EXISTS holds_open_by_expiry ON holds (expires_at) WHERE status = 'open'",
    """CREATE TABLE IF NOT EXISTS hold_postings (
        hold_id TEXT PRIMARY KEY REFERENCES holds (hold_id),
        txn_id TEXT NOT NULL REFERENCES transactions (txn_id),
        batch_id TEXT NOT NULL,
        posted_minor BIGINT NOT NULL CHECK (posted_minor >= 0),
        released_minor BIGINT NOT NULL CHECK (released_minor >= 0),
        late BIGINT NOT NULL CHECK (late IN (0, 1)),
        posted_at BIGINT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS hold_postings_by_batch ON hold_postings (batch_id)",
    # Holds with points (and value, if any): holds was released with CHECK (amount_minor > 0)
    # and a table is never changed, so a hold of points only cannot be a holds row, in books
    # made before or after. A hold is a row of one of the two tables, never of both.
    """CREATE TABLE IF NOT EXISTS point_holds (
        hold_id TEXT PRIMARY KEY,
        card TEXT NOT NULL REFERENCES cards (card),
        currency TEXT NOT NULL,
        amount_minor BIGINT NOT NULL CHECK (amount_minor >= 0),
        ttl_s BIGINT NOT NULL CHECK (ttl_s > 0),
        terminal TEXT NOT NULL,
        merchant TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        points BIGINT NOT NULL CHECK (points > 0),
        placed_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL,
        available_minor BIGINT NOT NULL,
        available_points BIGINT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('open', 'posted', 'voided', 'expired')),
        closed_at BIGINT)""",
    """CREATE INDEX IF NOT EXISTS point_holds_open_by_card
        ON point_holds (card) WHERE status = 'open'""",
    """CREATE INDEX IF NOT EXISTS point_holds_open_by_expiry
        ON point_holds (expires_at) WHERE status = 'open'""",
    """CREATE TABLE IF NOT EXISTS point_hold_postings (
        hold_id TEXT PRIMARY KEY REFERENCES point_holds (hold_id),
        txn_id TEXT NOT NULL REFERENCES transactions (txn_id),
        batch_id TEXT NOT NULL,
        posted_minor BIGINT NOT NULL CHECK (posted_minor >= 0),
        released_minor BIGINT NOT NULL CHECK (released_minor >= 0),
        posted_points BIGINT NOT NULL CHECK (posted_points >= 0),
        released_points BIGINT NOT NULL CHECK (released_points >= 0),
        late BIGINT NOT NULL CHECK (late IN (0, 1)),
        posted_at BIGINT NOT NULL)""",
    """CREATE INDEX IF NOT EXISTS point_hold_postings_by_batch
        ON point_hold_postings (batch_id)""",
    """CREATE TABLE IF NOT EXISTS refused_txns (
        batch_id TEXT NOT NULL REFERENCES batches (batch_id),
        position BIGINT NOT NULL CHECK (position >= 0),
        txn_id TEXT NOT NULL,
        reason TEXT NOT NULL,
        detail TEXT NOT NULL,
        content_hash TEXT NOT NULL,
        refused_at BIGINT NOT NULL,
        PRIMARY KEY (batch_id, position))""",
    """CREATE TABLE IF NOT EXISTS card_blocks (
        id {serial},
        card TEXT NOT NULL REFERENCES cards (card),
        blocked BIGINT NOT NULL CHECK (blocked IN (0, 1)),
        reason TEXT NOT NULL,
        at BIGINT NOT NULL,
        login TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS card_blocks_by_card ON card_blocks (card, id)",
    """CREATE TABLE IF NOT EXISTS card_changes (
        id {serial},
        txn_id TEXT NOT NULL REFERENCES transactions (txn_id),
        card TEXT NOT NULL,
        gateway_id TEXT NOT NULL{change_xid})""",
    "CREATE INDEX IF NOT EXISTS card_changes_by_card ON card_changes (card)",
    "CREATE INDEX IF NOT EXISTS card_changes_in_order"
    " ON card_changes ({change_order})",
    # The cards each gateway took on from the ledger (a look-up) or was handed by a
    # replacement: with the cards it posted, what its card feed is filtered to
    # (ledger/feed_sql.py `serving`).
    """CREATE TABLE IF NOT EXISTS served_cards (
        gateway_id TEXT NOT NULL,
        card TEXT NOT NULL,
        PRIMARY KEY (gateway_id, card))""",
    """CREATE TABLE IF NOT EXISTS alarms (
        id {serial},
        at BIGINT NOT NULL,
        reason TEXT NOT NULL,
        detail TEXT NOT NULL)""",
    # An operator marked the alarm seen (the back office, ledger/office_sql.py): once each.
    """CREATE TABLE IF NOT EXISTS alarm_acks (
        alarm_id BIGINT PRIMARY KEY REFERENCES alarms (id),
        at BIGINT NOT NULL,
        login TEXT NOT NULL)""",
    # Customers (ledger/customers.py): personal data apart from the books. A customer row
    # holds no personal value; its fields are sealed one row each (ledger/personal_crypto.py)
    # and its phone and e-mail kept only as keyed digests. Erasing deletes both and keeps
    # the row (erased_at set), its card links and its audit trail.
    """CREATE TABLE IF NOT EXISTS customers (
        customer_id TEXT PRIMARY KEY,
        created_at BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        key_id TEXT,
        erased_at BIGINT)""",
    """CREATE TABLE IF NOT EXISTS customer_fields (
        customer_id TEXT NOT NULL REFERENCES customers (customer_id),
        field TEXT NOT NULL,
        sealed TEXT NOT NULL,
        PRIMARY KEY (customer_id, field))""",
    """CREATE TABLE IF NOT EXISTS customer_lookups (
        lookup TEXT PRIMARY KEY,
        customer_id TEXT NOT NULL REFERENCES customers (customer_id),
        kind TEXT NOT NULL CHECK (kind IN ('phone', 'email')))""",
    "CREATE INDEX IF NOT EXISTS customer_lookups_by_customer ON customer_lookups (customer_id)",
    # A card belongs to at most one customer: the card is the key.
    """CREATE TABLE IF NOT EXISTS customer_cards (
        card TEXT PRIMARY KEY REFERENCES cards (card),
        customer_id TEXT NOT NULL REFERENCES customers (customer_id),
        linked_at BIGINT NOT NULL,
        login TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS customer_cards_by_customer ON customer_cards (customer_id)",
    # Who did what to which customer, and when; field names and card ids, never values.
    """CREATE TABLE IF NOT EXISTS customer_audit (
        id {serial},
        at BIGINT NOT NULL,
        login TEXT NOT NULL,
        customer_id TEXT NOT NULL,
        action TEXT NOT NULL,
        detail TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS customer_audit_by_customer ON customer_audit (customer_id, id)",
    # The fleet as each gateway last reported it (POST /v1/fleet, ledger/fleet_sql.py): a
    # report replaces its gateway's rows; reported_at is the ledger's clock. Null: unknown.
    """CREATE TABLE IF NOT EXISTS fleet_gateways (
        gateway_id TEXT PRIMARY KEY,
        pending_records BIGINT NOT NULL CHECK (pending_records >= 0),
        config_version BIGINT NOT NULL CHECK (config_version >= 0),
        terminals_registered BIGINT NOT NULL CHECK (terminals_registered >= 0),
        reported_at BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS fleet_terminals (
        gateway_id TEXT NOT NULL REFERENCES fleet_gateways (gateway_id),
        terminal TEXT NOT NULL,
        merchant TEXT NOT NULL,
        state TEXT NOT NULL,
        heard_at BIGINT,
        status_time BIGINT,
        journal_depth BIGINT,
        firmware TEXT,
        heap_free BIGINT,
        refused BIGINT,
        config_sent BIGINT,
        config_named BIGINT,
        reported_at BIGINT NOT NULL,
        PRIMARY KEY (gateway_id, terminal))""",
    # A lost or damaged card replaced by a new one (ledger/replace_sql.py): each card is
    # replaced at most once and replaces at most one; kept for ever (the audit trail).
    """CREATE TABLE IF NOT EXISTS card_replacements (
        old_card TEXT PRIMARY KEY REFERENCES cards (card),
        new_card TEXT NOT NULL UNIQUE REFERENCES cards (card),
        txn_id TEXT NOT NULL REFERENCES transactions (txn_id),
        reason TEXT NOT NULL,
        at BIGINT NOT NULL,
        login TEXT NOT NULL,
        customer_id TEXT)""",
    # Each card's program-engine state (ledger/engine_sql.py), changed in the transaction of
    # every batch posting the card, under its row lock. state: the engine's JSON, "as of"
    # its day; null when the ledger keeps none for the card, `reason` saying why.
    """CREATE TABLE IF NOT EXISTS card_engine_states (
        card TEXT PRIMARY KEY REFERENCES cards (card),
        program TEXT NOT NULL,
        program_version BIGINT NOT NULL,
        state TEXT,
        reason TEXT,
        version BIGINT NOT NULL CHECK (version > 0),
        through_txn_id TEXT,
        day BIGINT,
        updated_at BIGINT NOT NULL,
        CHECK ((state IS NULL) <> (reason IS NULL)))""",
    # A targeted offer's use by a posted purchase, as the ledger's engine applied it
    # (ledger/engine_sql.py, in the batch's transaction): the offers report counts these.
    """CREATE TABLE IF NOT EXISTS offer_uses (
        txn_id TEXT NOT NULL REFERENCES transactions (txn_id),
        offer TEXT NOT NULL,
        card TEXT NOT NULL,
        program TEXT NOT NULL,
        amount_minor BIGINT NOT NULL CHECK (amount_minor >= 0),
        at BIGINT NOT NULL,
        PRIMARY KEY (txn_id, offer))""",
    "CREATE INDEX IF NOT EXISTS offer_uses_by_offer ON offer_uses (program, offer)",
    # A company's shared budget (ledger/company_sql.py, ledger/company_rules.py): the row a
    # hold on any of its cards locks, so holds of one company take turns. Its name, budget
    # and period may change (POST /v1/companies), its currency never; every change is a
    # company_audit row.
    """CREATE TABLE IF NOT EXISTS companies (
        company TEXT PRIMARY KEY,
        name TEXT NOT NULL,
        currency TEXT NOT NULL,
        budget_minor BIGINT NOT NULL CHECK (budget_minor > 0),
        period TEXT NOT NULL CHECK (period IN ('day', 'month')),
        created_at BIGINT NOT NULL,
        login TEXT NOT NULL)""",
    # A card is in at most one company: the card is the key.
    """CREATE TABLE IF NOT EXISTS company_cards (
        card TEXT PRIMARY KEY REFERENCES cards (card),
        company TEXT NOT NULL REFERENCES companies (company),
        added_at BIGINT NOT NULL,
        login TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS company_cards_by_company ON company_cards (company)",
    # Who created or changed which company, or added or removed which card, and when.
    """CREATE TABLE IF NOT EXISTS company_audit (
        id {serial},
        at BIGINT NOT NULL,
        login TEXT NOT NULL,
        company TEXT NOT NULL,
        action TEXT NOT NULL,
        detail TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS company_audit_by_company ON company_audit (company, id)",
    # What each card of a company spent each UTC day (day: Unix seconds // 86400): kept by
    # every batch posting a purchase or refund of the card while it is in a company, under
    # the card's lock, and filled from the card's history when it joins; so a hold reads its
    # company's spend of a period in at most 31 rows a card, whatever the cards' history.
    # spent_minor may be below zero (a day of refunds).
    """CREATE TABLE IF NOT EXISTS company_card_days (
        card TEXT NOT NULL REFERENCES cards (card),
        day BIGINT NOT NULL,
        spent_minor BIGINT NOT NULL,
        PRIMARY KEY (card, day))""",
    # A reward item's count on one store's shelf (ledger/reward_stock_sql.py): the row a
    # hold of that item locks, so two counters never hand over the last one. No row: not
    # counted. quantity falls by each posted redemption and may go below zero (a
    # redemption whose hold had lapsed, a count set lower meanwhile): a shelf to count again.
    """CREATE TABLE IF NOT EXISTS reward_stock (
        program TEXT NOT NULL,
        item TEXT NOT NULL,
        merchant TEXT NOT NULL,
        quantity BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        login TEXT NOT NULL,
        PRIMARY KEY (program, item, merchant))""",
    # The item each hold of a reward pays for (a point_holds row): open ones are held stock.
    """CREATE TABLE IF NOT EXISTS reward_holds (
        hold_id TEXT PRIMARY KEY REFERENCES point_holds (hold_id),
        program TEXT NOT NULL,
        item TEXT NOT NULL,
        merchant TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS reward_holds_by_item ON reward_holds (program, item, merchant)",
    # The card's targeted offers a hold takes a use of (a holds or point_holds row): open,
    # unexpired ones are uses taken, judged against the card's kept engine state
    # (ledger/grant_holds_sql.py), so two stores cannot both give a card's last use.
    """CREATE TABLE IF NOT EXISTS grant_holds (
        hold_id TEXT NOT NULL,
        card TEXT NOT NULL,
        offer TEXT NOT NULL,
        PRIMARY KEY (hold_id, offer))""",
    "CREATE INDEX IF NOT EXISTS grant_holds_by_card ON grant_holds (card, offer)",
    # Who set, added to or stopped counting which item's stock, and when.
    """CREATE TABLE IF NOT EXISTS reward_stock_audit (
        id {serial},
        at BIGINT NOT NULL,
        login TEXT NOT NULL,
        program TEXT NOT NULL,
        item TEXT NOT NULL,
        merchant TEXT NOT NULL,
        action TEXT NOT NULL,
        quantity BIGINT)""",
)

ADDED_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "transactions": (
        # The program engine's fields (docs/ledger.md): null when the gateway did not send them.
        ("version", "BIGINT CHECK (version > 0)"),
        ("discount_minor", "BIGINT CHECK (discount_minor >= 0)"),
        ("redeem_points", "BIGINT CHECK (redeem_points >= 0)"),
        # The tap's SUN read counter: null for a gateway without card keys, or before it.
        ("sun_counter", "BIGINT CHECK (sun_counter >= 0)"),
        # The reward item a redemption handed over (docs/programs.md): null on every other.
        ("reward", "TEXT"),
        # The targeted offers a purchase got, as its gateway priced it (JSON list): null
        # when not sent (a replay then takes the uses of any it may, as before).
        ("grants", "TEXT"),
        # The terms of the ledger's own operations with no money (a targeted offer's grant,
        # a rank: ledger/card_ops_sql.py), JSON: null on every other.
        ("card_op", "TEXT"),
    ),
    "cards": (
        # The highest SUN read counter accepted for the card (a hold or a posted
        # transaction, ledger/sun_sql.py): null until one carried a counter.
        ("sun_counter", "BIGINT CHECK (sun_counter >= 0)"),
    ),
}
"""Columns added after their table was first released: part of CREATE TABLE for new books,
added by ALTER TABLE on opening books made before them. Always nullable."""

_CHANGE_XID = {
    # The writing transaction's id: the feed serves a change only once every transaction
    # with a lower id has ended (ledger/feed_sql.py). SQLite has one writer: ids suffice.
    "sqlite": "",
    "postgresql": ",\n        xid BIGINT NOT NULL DEFAULT (pg_current_xact_id()::text::bigint)",
}
_CHANGE_ORDER = {"sqlite": "id", "postgresql": "xid, id"}
_COLUMN_NAMES = {
    "sqlite": "SELECT name FROM pragma_table_info(?)",
    "postgresql": "SELECT column_name FROM information_schema.columns"
    " WHERE table_schema = current_schema() AND table_name = ?",
}

TXN_COLUMNS = ("batch_id", *TXN_STORED_FIELDS)
"""Every transactions column: the batch that posted the row, then its stored `Txn` fields."""
ENTRY_COLUMNS = ("txn_id", "account_kind", "owner", "unit", "amount_minor")
CARD_COLUMNS = ("card", "program", "currency", "activated_txn_id")
HOLD_COLUMNS = (*HOLD_VALUE_FIELDS, "placed_at", "expires_at", "available_minor", "status")
"""Every holds column but closed_at, which is set when the hold leaves "open"."""
POINT_HOLD_COLUMNS = (*HOLD_REQUEST_FIELDS, "placed_at", "expires_at", "available_minor",
                      "available_points", "status")
"""Every point_holds column but closed_at: a holds row's, and the points held and left."""
REFUSED_COLUMNS = (
    "batch_id",
    "position",
    "txn_id",
    "reason",
    "detail",
    "content_hash",
    "refused_at",
)
"""A transaction a batch refused: the batch, its index there, what and why, and when."""
CARD_BLOCK_COLUMNS = ("card", "blocked", "reason", "at", "login")
"""Every card_blocks column but its id: one block or unblock, kept for ever (the audit
trail); a card's latest row is its state, and the ids are the gateways' feed cursor."""
CARD_CHANGE_COLUMNS = ("txn_id", "card", "gateway_id")
"""Every card_changes column the ledger writes: one per posted transaction, in the batch's
database transaction; its id (and on PostgreSQL its writer's xid) is the feed's cursor."""
SERVED_CARD_COLUMNS = ("gateway_id", "card")
"""Every served_cards column: a gateway serves the card (feed_sql.serve)."""
ALARM_COLUMNS = ("at", "reason", "detail")
"""Every alarms column but its id."""
ALARM_ACK_COLUMNS = ("alarm_id", "at", "login")
"""Every alarm_acks column: which alarm, when and by which operator it was acknowledged."""
CUSTOMER_COLUMNS = ("customer_id", "created_at", "updated_at", "key_id", "erased_at")
"""Every customers column: no personal value, only its id, times and the sealing key's id."""
CUSTOMER_FIELD_COLUMNS = ("customer_id", "field", "sealed")
"""Every customer_fields column: one sealed personal field (ledger/personal_crypto.py)."""
CUSTOMER_LOOKUP_COLUMNS = ("lookup", "customer_id", "kind")
"""Every customer_lookups column: the keyed digest of a phone number or e-mail address."""
CUSTOMER_CARD_COLUMNS = ("card", "customer_id", "linked_at", "login")
"""Every customer_cards column: the card, its customer, when and by whom it was linked."""
CUSTOMER_AUDIT_COLUMNS = ("at", "login", "customer_id", "action", "detail")
REPLACEMENT_COLUMNS = ("old_card", "new_card", "txn_id", "reason", "at", "login",
                       "customer_id")
"""Every card_replacements column: which card replaced which, by which transfer, why, when,
by whom, and the customer whose link moved (null if none)."""
"""Every customer_audit column but its id."""
OFFER_USE_COLUMNS = ("txn_id", "offer", "card", "program", "amount_minor", "at")
"""Every offer_uses column."""
ENGINE_STATE_COLUMNS = ("card", "program", "program_version", "state", "reason", "version",
                        "through_txn_id", "day", "updated_at")
"""Every card_engine_states column: the card, the program (and its version) the state was
computed with, the state (JSON) or the reason there is none, how many times it changed, the
last transaction applied, the state's engine day, and when (the ledger's clock)."""
COMPANY_COLUMNS = ("company", "name", "currency", "budget_minor", "period", "created_at",
                   "login")
"""Every companies column: the company, its name, currency, budget (minor units) and period
('day' or 'month', UTC), when and by whom it was created."""
COMPANY_CARD_COLUMNS = ("card", "company", "added_at", "login")
"""Every company_cards column: the card, its company, when and by whom it was added."""
COMPANY_AUDIT_COLUMNS = ("at", "login", "company", "action", "detail")
"""Every company_audit column but its id."""
COMPANY_CARD_DAY_COLUMNS = ("card", "day", "spent_minor")
"""Every company_card_days column: a company card's card-value spend of one UTC day."""
REWARD_STOCK_COLUMNS = ("program", "item", "merchant", "quantity", "updated_at", "login")
"""Every reward_stock column: a program's item on a merchant's shelf, how many, when and by
whom last set (a posted redemption lowers quantity and changes neither)."""
REWARD_HOLD_COLUMNS = ("hold_id", "program", "item", "merchant")
"""Every reward_holds column: the hold and the item (of a program, at a merchant) it pays."""
GRANT_HOLD_COLUMNS = ("hold_id", "card", "offer")
"""Every grant_holds column: the hold and one targeted offer of its card it takes a use of."""
REWARD_STOCK_AUDIT_COLUMNS = ("at", "login", "program", "item", "merchant", "action",
                              "quantity")
"""Every reward_stock_audit column but its id: set (quantity), add (the number added) or
uncount (null)."""
HOLD_POSTING_COLUMNS = (
    "hold_id",
    "txn_id",
    "batch_id",
    "posted_minor",
    "released_minor",
    "late",
    "posted_at",
)
POINT_HOLD_POSTING_COLUMNS = (
    "hold_id",
    "txn_id",
    "batch_id",
    "posted_minor",
    "released_minor",
    "posted_points",
    "released_points",
    "late",
    "posted_at",
)


def create_schema(database: Database) -> None:
    """Create every table and index that is missing, in one transaction; existing data stays."""
    added = {
        f"{table}_added": "".join(f",\n        {name} {kind}" for name, kind in columns)
        for table, columns in ADDED_COLUMNS.items()
    }
    with database.schema_transaction() as session:
        for statement in _STATEMENTS:
            session.execute(statement.format(
                serial=_SERIAL[database.dialect], change_xid=_CHANGE_XID[database.dialect],
                change_order=_CHANGE_ORDER[database.dialect], **added))
        for table, columns in ADDED_COLUMNS.items():
            present = table_columns(session, table)
            for name, kind in columns:
                if name not in present:
                    session.execute(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")
        _allow_holds_of_no_value(session, database.dialect)


_HOLDS_CHECK_BEFORE = "CHECK (amount_minor > 0)"
_HOLDS_CHECK_NOW = "CHECK (amount_minor >= 0)"


def _allow_holds_of_no_value(session: Session, dialect: str) -> None:
    """Books made before holds could take uses of targeted offers alone refuse a hold of
    amount 0: loosen that one check, once. PostgreSQL replaces the constraint; SQLite,
    which cannot alter one, has the table's text edited in its schema, the way SQLite's
    documentation gives for removing a CHECK constraint (no stored row changes: every row
    meets the looser check)."""
    if dialect == "postgresql":
        rows = session.fetch(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid = 'holds'::regclass AND conname = 'holds_amount_minor_check'", ())
        if rows and ">= 0" not in str(rows[0][0]):
            session.execute("ALTER TABLE holds DROP CONSTRAINT holds_amount_minor_check,"
                            f" ADD CONSTRAINT holds_amount_minor_check {_HOLDS_CHECK_NOW}")
        return
    rows = session.fetch("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
                         ("holds",))
    if not rows or _HOLDS_CHECK_BEFORE not in str(rows[0][0]):
        return
    version = int(session.fetch("PRAGMA schema_version", ())[0][0])
    session.execute("PRAGMA writable_schema = ON")
    try:
        session.execute("UPDATE sqlite_master SET sql = ? WHERE type = 'table' AND name = ?",
                        (str(rows[0][0]).replace(_HOLDS_CHECK_BEFORE, _HOLDS_CHECK_NOW),
                         "holds"))
        session.execute(f"PRAGMA schema_version = {version + 1}")
    finally:
        session.execute("PRAGMA writable_schema = OFF")


def table_columns(database: Session, table: str) -> set[str]:
    """The names of a table's columns as the database has them (none for a missing table)."""
    return {row[0] for row in database.fetch(_COLUMN_NAMES[database.dialect], (table,))}
