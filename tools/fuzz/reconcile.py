"""After the campaign: the three books agree for the honest terminals, and what the stolen key
got into them is within the rules.

Read from the gateway's store (after the gateway stopped) and the ledger (a reader login),
against what the honest terminals approved (`tools.demo.Expected`):

honest  per terminal: approved = journaled at the gateway = posted in the ledger (count and
        amount); no honest record refused by the gateway, none in a terminal's refused log,
        none in the ledger's quarantine; every honest card's value and points: the
        terminals' records (points as the gateway's engine counted them, the difference kept
        with each record) = the gateway's card book = the ledger; the trial balance is zero.
stolen  each of its records the gateway accepted opens under its key with a valid schema and
        consistent amounts, names one of its own cards (never an honest customer's), and is
        posted in the ledger once (or sits in the ledger's quarantine with a reason); its
        cards' value and points at the gateway = the ledger; its refusals counted by reason.

Every check that fails adds to `differences`. Records of the stolen key that the gateway
accepted although a documented rule says otherwise are `findings`, by kind; REPORTED_FINDINGS
are the kinds this campaign found and reported, not yet fixed.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

from gateway import store_reports
from gateway.store import STATUS_ACCEPTED, STATUS_PARKED, STATUS_REJECTED, GatewayStore
from ledger.client import LedgerClient
from protocol import accounts, cbor, cose, messages, txn
from protocol.errors import ProtocolError
from tools.demo import Expected

# Found by this campaign and reported, not fixed yet: the campaign lists them and does not
# fail on them. Empty: the five it found (issue 13) are fixed, each with a regression test in
# tests/gateway/test_fuzz_findings.py; a finding not listed here fails the campaign.
REPORTED_FINDINGS: dict[str, str] = {}


def _mismatches(*groups: tuple[int, ...]) -> int:
    return sum(1 for group in groups if len(set(group)) != 1)


def _posted(entry: dict[str, Any] | None) -> tuple[int, int]:
    if not entry:
        return 0, 0
    return entry["count"], sum(kind["amount_minor"] for kind in entry["by_kind"].values())


def _recomputed_points(store: GatewayStore, terminals: list[str]) -> dict[str, int]:
    """Per card, the points the gateway's engine gave minus what the honest terminals'
    records showed (offline quotes; sales applied in another order than authorized)."""
    marks = ",".join("?" * len(terminals))
    rows = store.read(f"SELECT fields FROM records WHERE status = ? AND terminal IN ({marks})",
                      (STATUS_ACCEPTED, *terminals))
    recomputed: dict[str, int] = {}
    for (text,) in rows:
        fields = json.loads(text)
        settled = fields.get("effects", {}).get("points", fields["points"])
        if settled != fields["points"]:
            sign = -1 if fields["kind"] == txn.KIND_REFUND else 1
            card = fields["card"]
            recomputed[card] = recomputed.get(card, 0) + sign * (settled - fields["points"])
    return recomputed


def _gateway_cards(store: GatewayStore) -> dict[str, tuple[int, int]]:
    return {card: (value, points)
            for card, value, points in store.read("SELECT card, value_minor, points FROM cards")}


def honest_books(store: GatewayStore, ledger: LedgerClient, expected: Expected,
                 terminals: list[str], refused_logs: int) -> dict[str, Any]:
    journaled = store_reports.totals_by_terminal(store)
    posted = ledger.terminal_totals()
    rows = []
    for terminal in terminals:
        approved = expected.per_terminal.get(terminal, {"count": 0, "amount_minor": 0})
        at_gateway = journaled.get(terminal, {"count": 0, "amount_minor": 0})
        count, amount = _posted(posted.get(terminal))
        rows.append({"terminal": terminal, "approved": approved["count"],
                     "journaled": at_gateway["count"], "posted": count,
                     "approved_minor": approved["amount_minor"],
                     "journaled_minor": at_gateway["amount_minor"], "posted_minor": amount,
                     "difference": _mismatches(
                         (approved["count"], at_gateway["count"], count),
                         (approved["amount_minor"], at_gateway["amount_minor"], amount))})
    recomputed = _recomputed_points(store, terminals)
    at_gateway_cards = _gateway_cards(store)
    in_ledger = {entry["card"]: entry for entry in ledger.balances()}
    cards_off = []
    for card, entry in sorted(expected.cards.items()):
        points = entry["points"] + recomputed.get(card, 0)
        gateway_value, gateway_points = at_gateway_cards.get(card, (0, 0))
        ledger_entry = in_ledger.get(card, {"value_minor": 0, "points": 0})
        if _mismatches((entry["value"], gateway_value, ledger_entry["value_minor"]),
                       (points, gateway_points, ledger_entry["points"])):
            cards_off.append({"card": card, "expected": [entry["value"], points],
                              "gateway": [gateway_value, gateway_points],
                              "ledger": [ledger_entry["value_minor"], ledger_entry["points"]]})
    refused_here = [row for row in store_reports.refusals(store)
                    if row["terminal"] in terminals]
    marks = ",".join("?" * len(terminals))
    parked = store.read(f"SELECT COUNT(*) FROM records WHERE status = ? AND terminal IN ({marks})",
                        (STATUS_PARKED, *terminals))[0][0]
    quarantined = [row for row in store_reports.quarantined(store)
                   if row["terminal"] in terminals]
    trial = ledger.trial_balance()
    differences = (sum(row["difference"] for row in rows) + len(cards_off) + len(refused_here)
                   + parked
                   + refused_logs + len(quarantined) + sum(1 for v in trial.values() if v))
    return {"terminals": rows, "cards": len(expected.cards), "cards_off": cards_off[:20],
            "refused_at_gateway": len(refused_here), "parked_at_gateway": parked,
            "refused_in_terminal_logs": refused_logs,
            "quarantined_at_ledger": len(quarantined), "trial_balance": trial,
            "kinds": dict(expected.kinds), "declines": dict(expected.declines),
            "differences": differences}


def _card_moves(legs: list[list[Any]]) -> tuple[int, int]:
    """What a record's legs did to its card: (value, points). A leg debits its account:
    a positive amount on the card's account takes from the card."""
    value = -sum(amount for account, _, amount, *_ in legs if account == accounts.CARD_VALUE)
    points = -sum(amount for account, _, amount, *_ in legs if account == accounts.CARD_POINTS)
    return value, points


def _beyond_rules(record: bytes, fields: dict[str, Any], stored: dict[str, Any],
                  txn_minor_max: int) -> str | None:
    """Why a record the gateway accepted breaks a documented rule (docs/protocol.md 3,
    3.2, 5.4), or None. Points may differ (the engine's count stands), the card part may
    not."""
    item = cbor.decode(cose.parse(record).payload)
    if any(type(item.get(key)) is not int for key in (messages.K_TYPE, messages.K_VERSION)):
        return "header_not_an_integer"
    if fields["auth_mode"] == txn.AUTH_OFFLINE:
        if fields["kind"] != txn.KIND_PURCHASE:
            return "offline_not_a_purchase"
        if fields.get("redeem_points") or fields["card_value_minor"] > txn_minor_max:
            return "offline_beyond_limits"
    effects = stored.get("effects", {})
    for name in ("card_value_minor", "bonus_minor"):
        if effects.get(name, 0) != fields[name]:
            return f"effects_differ.{name}"
    return None


def _ledger_refusal(detail: str) -> str:
    """`refused_by_ledger.<reason>[.<field>]` from the ledger's answer kept with the batch,
    e.g. "field_invalid: transactions[3].ref_txn_id: ..." -> ...field_invalid.ref_txn_id."""
    reason, _, rest = detail.partition(":")
    name = f"refused_by_ledger.{reason.strip()}"
    field = re.match(r"\s*transactions\[\d+\]\.(\w+)", rest)
    return f"{name}.{field.group(1)}" if field else name


def stolen_key(store: GatewayStore, ledger: LedgerClient, terminal: str, key: bytes,
               own_cards: set[str], honest_cards: set[str],
               txn_minor_max: int) -> dict[str, Any]:
    rows = store.read("SELECT seq, txn_id, record, fields, status, reason FROM records"
                      " WHERE terminal = ? ORDER BY seq", (terminal,))
    refused: Counter[str] = Counter()
    accepted: Counter[str] = Counter()
    invalid: list[str] = []  # accepted records that do not even open, or name a foreign card
    findings: list[dict[str, str]] = []
    accepted_minor = 0
    parked = 0
    offline: Counter[str] = Counter()
    stored_by_id: dict[str, dict[str, Any]] = {}
    for _, txn_id, record, text, status, reason in rows:
        if status == STATUS_REJECTED:
            refused[reason] += 1
            continue
        if status == STATUS_PARKED:  # waiting for a sale to arrive (gateway/parked.py)
            parked += 1
            continue
        try:
            fields = txn.open_record(bytes(record), key)
        except ProtocolError as error:
            invalid.append(f"{txn_id}: {error.reason}")
            continue
        if fields["card"] in honest_cards or fields["card"] not in own_cards:
            invalid.append(f"{txn_id}: card {fields['card']}")
        stored = json.loads(text)
        stored_by_id[txn_id] = stored
        broken = _beyond_rules(bytes(record), fields, stored, txn_minor_max)
        if broken is not None:
            findings.append({"finding": broken, "txn_id": txn_id})
        accepted[f"{txn.KIND_NAMES[fields['kind']]}."
                 f"{txn.AUTH_MODE_NAMES[fields['auth_mode']]}"] += 1
        accepted_minor += fields["amount_minor"]
        if fields["auth_mode"] == txn.AUTH_OFFLINE:  # the card part said, and as booked
            offline["records"] += 1
            offline["card_part_minor"] += fields["card_value_minor"]
            offline["booked_minor"] += stored.get("effects", {}).get("card_value_minor", 0)
    # Accepted here, refused by the ledger (each alone in a refused batch, with its reason):
    # the gateway's checks let through what the ledger's do not.
    quarantined = [row for row in store_reports.quarantined(store) if row["terminal"] == terminal]
    unbooked: dict[str, list[int]] = {}
    for row in quarantined:
        findings.append({"finding": _ledger_refusal(str(row["reason"])),
                         "txn_id": row["txn_id"]})
        stored = stored_by_id.get(row["txn_id"], {})
        value, points = _card_moves(stored.get("effects", {}).get("legs", []))
        moved = unbooked.setdefault(row["card"], [0, 0])
        moved[0] += value
        moved[1] += points
    posted_count, posted_minor = _posted(ledger.terminal_totals().get(terminal))
    quarantined_minor = sum(row["amount_minor"] or 0 for row in quarantined)
    accepted_count = sum(accepted.values())
    at_gateway_cards = _gateway_cards(store)
    in_ledger = {entry["card"]: entry for entry in ledger.balances()}
    cards_off = []
    for card in sorted(own_cards & set(at_gateway_cards)):
        value, points = at_gateway_cards[card]
        value_moved, points_moved = unbooked.get(card, [0, 0])
        entry = in_ledger.get(card, {"value_minor": 0, "points": 0})
        if (value - value_moved, points - points_moved) != (entry["value_minor"],
                                                            entry["points"]):
            cards_off.append(card)
    posting = _mismatches((accepted_count, posted_count + len(quarantined)),
                          (accepted_minor, posted_minor + quarantined_minor))
    by_kind = Counter(finding["finding"] for finding in findings)
    return {"placed": len(rows), "accepted": accepted_count, "accepted_by_kind": dict(accepted),
            "accepted_minor": accepted_minor, "accepted_offline": dict(offline),
            "refused": sum(refused.values()),
            "refused_by_reason": dict(sorted(refused.items())), "parked": parked,
            "posted": posted_count,
            "quarantined_at_ledger": len(quarantined), "invalid_accepted": invalid[:20],
            "cards": len(own_cards), "cards_off": cards_off[:20],
            "findings_by_kind": dict(sorted(by_kind.items())), "findings": findings[:40],
            "differences": len(invalid) + len(cards_off) + posting}
