"""The gateway's report of its terminals to the ledger (POST /v1/fleet, ledger/fleet_sql.py).

Every FLEET_REPORT_INTERVAL_S, and once at start, the gateway tells the ledger what it knows
of each registered terminal: its last signed status (state, the terminal's time, journal
depth, firmware, free heap, refused records) and when the gateway received it, the
configuration version sent to it and the highest one its records named; and its own
totals (records not yet settled). The back office's fleet page shows it (ledger/office.py).

    build_report(...)   pure: the report from what the gateway holds
    pending_records()   the store's accepted records the ledger has not confirmed
    FleetReporter       the thread's loop: snapshot (the caller's, short locks), then post

A ledger away is logged once (`LedgerReach`) and asked again at the next interval; a report
the ledger refuses is logged once per reason (a person must fix the login or the
registry), and asked again too. A report is never queued: the next one is fresher.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.settle import LedgerReach
from gateway.store import BATCH_OPEN, STATUS_ACCEPTED, GatewayStore
from gateway.store_health import StoreUnavailable
from ledger.client import LedgerClient
from ledger.errors import LedgerRejected, LedgerUnavailable
from ledger.fleet_sql import FLEET_TERMINALS_MAX

FLEET_REPORT_INTERVAL_S = 15.0
"""How often the gateway reports its terminals to the ledger (`gateway run
--fleet-report-every-s`); the back office calls a report older than a few of these stale."""
STATE_UNKNOWN = "unknown"
"""A registered terminal from which no signed status arrived since the gateway started."""

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FleetView:
    """What the gateway holds about its fleet at one moment (taken by the caller).

    `terminals`: terminal -> merchant, the registry; `presence`: terminal -> its last
    verified status fields plus "heard_at" (gateway clock, seconds); `config_named`:
    terminal -> the highest configuration version its accepted records named."""

    gateway_id: str
    terminals: Mapping[str, str]
    presence: Mapping[str, Mapping[str, Any]]
    config_sent: int
    config_named: Mapping[str, int]
    pending_records: int


def terminal_row(terminal: str, merchant: str, status: Mapping[str, Any] | None,
                 config_sent: int, config_named: int | None) -> dict[str, Any]:
    """One terminal's row (ledger/fleet_sql.py ROW_FIELDS); null where nothing is known."""
    status = status or {}
    heard_at = status.get("heard_at")
    return {"terminal": terminal, "merchant": merchant,
            "state": status.get("state", STATE_UNKNOWN),
            "heard_at": None if heard_at is None else int(heard_at),
            "status_time": status.get("time"),
            "journal_depth": status.get("journal_depth"),
            "firmware": status.get("firmware"),
            "heap_free": status.get("heap_free"),
            "refused": status.get("refused"),
            "config_sent": config_sent, "config_named": config_named}


def build_report(view: FleetView) -> dict[str, Any]:
    """The report for POST /v1/fleet: the first FLEET_TERMINALS_MAX terminals by id (the
    count of all of them is sent too, so the back office can say some are missing)."""
    listed = sorted(view.terminals)[:FLEET_TERMINALS_MAX]
    return {"gateway_id": view.gateway_id, "pending_records": view.pending_records,
            "config_version": view.config_sent, "terminals_registered": len(view.terminals),
            "terminals": [terminal_row(terminal, view.terminals[terminal],
                                       view.presence.get(terminal), view.config_sent,
                                       view.config_named.get(terminal))
                          for terminal in listed]}


def pending_records(store: GatewayStore) -> int:
    """Accepted records the ledger has not confirmed: unbatched, or in a batch still open."""
    rows = store.read(
        "SELECT COUNT(*) FROM records WHERE status = ? AND (batch_id IS NULL OR"
        " batch_id IN (SELECT batch_id FROM batches WHERE status = ?))",
        (STATUS_ACCEPTED, BATCH_OPEN))
    return int(rows[0][0]) if rows else 0


class FleetReporter:
    """Reports `view()` to the ledger at once and then every `interval_s` until `stop` is
    set. `view` takes its locks briefly and returns; the post runs under none."""

    def __init__(self, view: Callable[[], FleetView], ledger: LedgerClient,
                 reach: LedgerReach | None, stop: threading.Event,
                 interval_s: float = FLEET_REPORT_INTERVAL_S) -> None:
        self.view = view
        self.ledger = ledger
        self.reach = reach
        self.stop = stop
        self.interval_s = interval_s
        self.reported = 0  # reports the ledger took
        self._refusal: str | None = None  # the reason last logged, so it is logged once

    def run(self) -> None:
        self.report_once()
        while not self.stop.wait(self.interval_s):
            self.report_once()

    def report_once(self) -> bool:
        """One report; whether the ledger took it."""
        try:
            report = build_report(self.view())
        except (sqlite3.Error, StoreUnavailable) as error:
            # The store could not be read: the next turn tries again (ingest alarms on it).
            log.warning("fleet report skipped, store not read: %s", error,
                        extra={"event": "fleet_report_skipped"})
            return False
        try:
            self.ledger.report_fleet(report)
        except LedgerUnavailable as error:
            log.debug("fleet report not taken: %s", error)
            if self.reach is not None:
                self.reach.lost(error)  # one line while the ledger stays away
            return False
        except LedgerRejected as error:
            if self.reach is not None:
                self.reach.answered()
            if error.reason != self._refusal:
                self._refusal = error.reason
                log.error("ledger refused the fleet report: %s", error,
                          extra={"event": "fleet_report_refused", "reason": error.reason})
            return False
        if self.reach is not None:
            self.reach.answered()
        if self._refusal is not None:
            log.info("ledger takes the fleet report again", extra={"event": "fleet_reported"})
            self._refusal = None
        self.reported += 1
        return True
