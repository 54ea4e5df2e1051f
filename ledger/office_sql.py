"""What the back office reads and writes that no other layer has: a card's transactions
across stores and its open holds, the alarms with their acknowledgements, and the fleet of
gateways as their batches show it and as their fleet reports (POST /v1/fleet) tell it.

Each function takes a `Session` and the books' clock (`Books.read`/`Books.transact`); lists a
person reads are bounded (the *_MAX limits below), and the page says when it shows fewer.
"""

from __future__ import annotations

from typing import Any

from ledger import fleet_sql
from ledger.db import Session
from ledger.errors import NotFound

CARD_TXNS_MAX = 200
"""Most transactions the card page lists (the latest)."""
ALARMS_MAX = 500
"""Most alarms the alarms page lists (the latest)."""
GATEWAYS_MAX = 1000
"""Most gateways the fleet page lists."""

CARD_TXN_FIELDS = ("time", "gateway_id", "terminal", "merchant", "kind", "amount_minor",
                   "card_value_minor", "bonus_minor", "points", "txn_id", "auth", "reward")
OPEN_HOLD_FIELDS = ("hold_id", "amount_minor", "points", "terminal", "merchant", "placed_at",
                    "expires_at")
ALARM_FIELDS = ("id", "at", "reason", "detail", "acknowledged_at", "acknowledged_by")
GATEWAY_FIELDS = ("gateway_id", "batches", "transactions", "posted", "last_batch_at",
                  "terminals", "last_txn_time")


def card_transactions(session: Session, card: str) -> tuple[list[dict[str, Any]], int]:
    """The card's latest CARD_TXNS_MAX transactions, newest first, with the store (gateway)
    that posted each, and how many it has in all.

    Read through the card feed's rows (card_changes: one per posted transaction, indexed
    by card), which name the posting gateway."""
    rows = session.fetch(
        "SELECT t.time, c.gateway_id, t.terminal, t.merchant, t.kind, t.amount_minor,"
        " t.card_value_minor, t.bonus_minor, t.points, t.txn_id, t.auth, t.reward"
        " FROM card_changes c JOIN transactions t ON t.txn_id = c.txn_id"
        f" WHERE c.card = ? ORDER BY t.time DESC, c.id DESC LIMIT {CARD_TXNS_MAX}", (card,))
    total = session.fetch("SELECT COUNT(*) FROM card_changes WHERE card = ?", (card,))[0][0]
    return [dict(zip(CARD_TXN_FIELDS, row, strict=True)) for row in rows], int(total)


def open_holds(session: Session, card: str, now: int) -> list[dict[str, Any]]:
    """The card's holds that are open and unexpired at `now` (value-only and with points),
    oldest first: what its held value and points are made of."""
    rows = session.fetch(
        "SELECT hold_id, amount_minor, 0, terminal, merchant, placed_at, expires_at FROM holds"
        " WHERE card = ? AND status = 'open' AND expires_at > ?"
        " UNION ALL SELECT hold_id, amount_minor, points, terminal, merchant, placed_at,"
        " expires_at FROM point_holds WHERE card = ? AND status = 'open' AND expires_at > ?"
        " ORDER BY 6, 1", (card, now, card, now))
    return [dict(zip(OPEN_HOLD_FIELDS, row, strict=True)) for row in rows]


def alarms(session: Session) -> list[dict[str, Any]]:
    """The latest ALARMS_MAX alarms, newest first, each with who acknowledged it and when
    (null: not yet)."""
    rows = session.fetch(
        "SELECT a.id, a.at, a.reason, a.detail, k.at, k.login FROM alarms a"
        f" LEFT JOIN alarm_acks k ON k.alarm_id = a.id ORDER BY a.id DESC LIMIT {ALARMS_MAX}")
    return [dict(zip(ALARM_FIELDS, row, strict=True)) for row in rows]


def unacknowledged_alarms(session: Session) -> int:
    """How many alarms no operator has acknowledged."""
    return int(session.fetch(
        "SELECT COUNT(*) FROM alarms a LEFT JOIN alarm_acks k ON k.alarm_id = a.id"
        " WHERE k.alarm_id IS NULL")[0][0])


def acknowledge_alarm(session: Session, alarm_id: int, login: str, now: int) -> bool:
    """Mark an alarm seen by `login`; whether this changed anything (an alarm is
    acknowledged once, by the first). NotFound alarm_unknown for an id with no alarm."""
    if not session.fetch("SELECT 1 FROM alarms WHERE id = ?", (alarm_id,)):
        raise NotFound("alarm_unknown", f"the ledger has no alarm {alarm_id}")
    if session.fetch("SELECT 1 FROM alarm_acks WHERE alarm_id = ?", (alarm_id,)):
        return False
    # Two managers at once: the primary key keeps the first, the second changes nothing.
    session.execute("INSERT INTO alarm_acks (alarm_id, at, login) VALUES (?, ?, ?)"
                    " ON CONFLICT (alarm_id) DO NOTHING", (alarm_id, now, login))
    return True


def gateways(session: Session) -> list[dict[str, Any]]:
    """Each gateway (store) that posted a batch: its batches, their transactions and how
    many posted, when its last batch came (the ledger's clock), how many terminals its
    transactions name and the terminal time of the latest one."""
    rows = session.fetch(
        "SELECT b.gateway_id, COUNT(*), CAST(SUM(b.txn_count) AS BIGINT),"
        " CAST(SUM(b.posted_count) AS BIGINT), MAX(b.received_at), t.terminals, t.last_time"
        " FROM batches b LEFT JOIN ("
        "  SELECT b2.gateway_id AS gateway_id, COUNT(DISTINCT t2.terminal) AS terminals,"
        "   MAX(t2.time) AS last_time FROM transactions t2"
        "   JOIN batches b2 ON b2.batch_id = t2.batch_id GROUP BY b2.gateway_id"
        " ) t ON t.gateway_id = b.gateway_id"
        f" GROUP BY b.gateway_id, t.terminals, t.last_time ORDER BY b.gateway_id"
        f" LIMIT {GATEWAYS_MAX}")
    return [dict(zip(GATEWAY_FIELDS, row, strict=True)) for row in rows]


FLEET_REPORT_STALE_S = 60
"""A gateway whose last fleet report (POST /v1/fleet) is older than this is shown stale and
none of its terminals online: four of its FLEET_REPORT_INTERVAL_S (15 s) went unreported."""
ONLINE_STATES = ("online", "heartbeat")
"""A terminal's last signed status saying it is connected."""


def fleet(session: Session, now: int) -> list[dict[str, Any]]:
    """Each gateway's last fleet report (ledger/fleet_sql.py) judged at `now`: "stale" when
    older than FLEET_REPORT_STALE_S, and each terminal "online" when its last status says so
    and the report is fresh (a gateway that stopped reporting cannot vouch for it)."""
    gateways = fleet_sql.read_fleet(session)
    for gateway in gateways:
        gateway["stale"] = now - gateway["reported_at"] > FLEET_REPORT_STALE_S
        for terminal in gateway["terminals"]:
            terminal["online"] = not gateway["stale"] and terminal["state"] in ONLINE_STATES
    return gateways
