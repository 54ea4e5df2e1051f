"""After the gauntlet: what the counters approved against what the ledger posted.

Read once everything is healed, drained and settled, and the gateway stopped: each
counter's approvals log (tools/gauntlet/counter.py: a line per record made durable in its
journal), the gateway's store (read only) and the ledger's books (its database, directly).

    approved   records the counters made durable (their approval), by txn id
    lost       approved, not posted, and not a record hit by a flipped journal bit that the
               gateway lists as `record_lost` (a record refused at the gateway or
               quarantined at the ledger is lost here too: it is not in the books)
    lost_to_journal_damage   approved, hit by a flipped bit before the gateway had it,
               reported by its terminal's lost notice and listed as `record_lost`: the
               designed cost of a damaged record (README, docs/protocol.md 5.9)
    doubled    a txn id approved twice with different content (a seq handed out again), or
               posted more than once
    phantom    posted for a gauntlet counter but never approved
    altered    posted with another kind, card or amount than approved
    trial balance  the ledger's entries summed per unit (all zero in sound books)
    holds open the ledger's holds still open at the end (of them, those whose approval the
               gateway never kept: placed at the ledger, then the gateway died or its store
               failed before the approval's commit, the gap docs/architecture.md names)
    unsettled  records the gateway accepted that are in no answered batch, and open batches
    cards off  cards whose value or points differ between the gateway's card book and the
               ledger's balances
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from contextlib import closing
from pathlib import Path
from typing import Any

from ledger.client import LedgerClient
from protocol import txn
from tools.gauntlet.counter import read_approvals
from tools.gauntlet.database import GauntletDatabase

EXAMPLES_MAX = 20
COMPARED = ("kind", "card", "amount_minor")


def _gateway_rows(gateway_db: Path, sql: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(f"file:{gateway_db}?mode=ro", uri=True, timeout=30)) as db:
        return db.execute(sql).fetchall()


def gateway_settled(gateway_db: Path, terminals: list[str]) -> bool:
    """Every accepted record in a batch the ledger answered; nothing parked."""
    marks = ",".join(f"'{terminal}'" for terminal in terminals)
    unsettled = _gateway_rows(gateway_db, "SELECT COUNT(*) FROM records WHERE"
                              " ((status = 'accepted' AND batch_id IS NULL)"
                              f" OR status = 'parked') AND terminal IN ({marks})")[0][0]
    open_batches = _gateway_rows(gateway_db, "SELECT COUNT(*) FROM batches"
                                 " WHERE status = 'open'")[0][0]
    return bool(unsettled == 0 and open_batches == 0)


def holds_open(database: GauntletDatabase) -> int:
    # Holds of value only, and holds with points (ledger/hold_rules.py): a hold is one row
    # of one of the two.
    return sum(int(database.read(f"SELECT COUNT(*) FROM {table} WHERE status = 'open'")[0][0])
               for table in ("holds", "point_holds"))


def tally(workdir: Path, terminals: list[str], gateway_db: Path, database: GauntletDatabase,
          reader: LedgerClient, damaged: list[dict[str, Any]]) -> dict[str, Any]:
    """The counts (module docstring); the ledger read through its tables and, for the
    trial balance, hold totals and card balances, through its reader API."""
    approved: dict[str, dict[str, Any]] = {}
    doubled: list[str] = []
    recovered = 0
    for terminal in terminals:
        for entry in read_approvals(workdir, terminal):
            recovered += bool(entry.get("recovered"))
            known = approved.get(entry["txn_id"])
            if known is not None:
                if known["digest"] != entry["digest"]:
                    doubled.append(f"{entry['txn_id']}: approved twice, other content")
                continue
            approved[entry["txn_id"]] = entry

    marks = ",".join(f"'{terminal}'" for terminal in terminals)
    posted_rows = database.read("SELECT txn_id, terminal, seq, kind, card, amount_minor"
                                f" FROM transactions WHERE terminal IN ({marks})")
    open_holds = database.read("SELECT hold_id, card, amount_minor, placed_at, expires_at"
                               " FROM holds WHERE status = 'open' UNION ALL"
                               " SELECT hold_id, card, amount_minor, placed_at, expires_at"
                               " FROM point_holds WHERE status = 'open'")
    quarantine = database.read("SELECT txn_id, reason FROM refused_txns")
    trial = reader.trial_balance()
    hold_totals = reader.hold_totals()
    ledger_cards = {entry["card"]: (entry["value_minor"], entry["points"])
                    for entry in reader.balances()}

    posted: dict[str, dict[str, Any]] = {}
    for txn_id, terminal, seq, kind, card, amount in posted_rows:
        if txn_id in posted:
            doubled.append(f"{txn_id}: posted twice")
        posted[txn_id] = {"terminal": terminal, "seq": seq, "kind": kind, "card": card,
                          "amount_minor": amount}
    seen_seqs = Counter((row["terminal"], row["seq"]) for row in posted.values())
    doubled += [f"{terminal}-{seq}: posted {n} times" for (terminal, seq), n in seen_seqs.items()
                if n > 1]

    gateway = {txn_id: (status, reason) for txn_id, status, reason in _gateway_rows(
        gateway_db, f"SELECT txn_id, status, reason FROM records WHERE terminal IN ({marks})")}
    damaged_ids = {f"{flip['terminal']}-{flip['record_seq']}" for flip in damaged
                   if flip.get("record_seq") is not None}
    lost: list[str] = []
    lost_to_damage: list[str] = []
    lost_reasons: Counter[str] = Counter()
    altered: list[str] = []
    for txn_id, entry in approved.items():
        if txn_id not in posted:
            status, reason = gateway.get(txn_id, (None, None))
            if txn_id in damaged_ids and reason == "record_lost":
                lost_to_damage.append(txn_id)
                continue
            lost.append(f"{txn_id}: gateway {status or 'never had it'}"
                        f"{' (' + reason + ')' if reason else ''}")
            lost_reasons[reason or status or "not at the gateway"] += 1
            continue
        row = posted[txn_id]
        expected = {"kind": txn.KIND_NAMES.get(entry["kind"]), "card": entry["card"],
                    "amount_minor": entry["amount_minor"]}
        found = {"kind": row["kind"], "card": row["card"],
                 "amount_minor": row["amount_minor"]}
        if expected != found:
            altered.append(f"{txn_id}: approved {expected}, posted {found}")
    phantom = sorted(txn_id for txn_id in posted if txn_id not in approved)

    gateway_cards = {card: (value, points) for card, value, points in _gateway_rows(
        gateway_db, "SELECT card, value_minor, points FROM cards")}
    cards_off = [f"{card}: gateway {gateway_cards[card]}, ledger {ledger_cards.get(card)}"
                 for card in sorted(gateway_cards)
                 if gateway_cards[card] != ledger_cards.get(card, (0, 0))]
    unsettled = 0 if gateway_settled(gateway_db, terminals) else 1
    # An open hold whose approval the gateway never kept: placed at the ledger, then the
    # gateway died (or its store failed) before the approval's commit; no restart knows it.
    kept = {f"gw1-{auth_id}" for (auth_id,) in _gateway_rows(
        gateway_db, "SELECT auth_id FROM authorizations")}
    holds_never_kept = [row[0] for row in open_holds if row[0] not in kept]
    refusals = Counter(reason for status, reason in gateway.values() if status == "rejected")
    return {
        "approved": len(approved), "approved_recovered_from_journal": recovered,
        "posted": len(posted),
        "lost": len(lost), "lost_by_reason": dict(lost_reasons),
        "lost_to_journal_damage": len(lost_to_damage),
        "doubled": len(doubled), "phantom": len(phantom), "altered": len(altered),
        "trial_balance": trial, "trial_balance_nonzero": sum(1 for v in trial.values() if v),
        "holds_open": len(open_holds), "holds_open_approval_never_kept": len(holds_never_kept),
        "hold_totals": hold_totals,
        "unsettled": unsettled, "cards_off": len(cards_off),
        "refused_at_gateway": dict(refusals), "quarantined_at_ledger": len(quarantine),
        "examples": {"lost": lost[:EXAMPLES_MAX], "lost_to_journal_damage": lost_to_damage,
                     "doubled": doubled[:EXAMPLES_MAX], "phantom": phantom[:EXAMPLES_MAX],
                     "altered": altered[:EXAMPLES_MAX], "cards_off": cards_off[:EXAMPLES_MAX],
                     "holds_open": [list(row) for row in open_holds[:EXAMPLES_MAX]]},
    }


def failures(result: dict[str, Any]) -> dict[str, int]:
    """What must be zero, and is not."""
    checks = {name: result[name] for name in ("lost", "doubled", "phantom", "altered",
                                              "trial_balance_nonzero", "holds_open",
                                              "unsettled", "cards_off")}
    return {name: value for name, value in checks.items() if value}


def dumps(result: dict[str, Any]) -> str:
    return json.dumps(result, indent=2, sort_keys=False, default=str)
