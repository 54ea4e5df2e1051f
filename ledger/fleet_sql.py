"""The fleet as the gateways report it: each gateway's terminals, their presence and health.

Every FLEET_REPORT_INTERVAL_S a gateway posts one report (POST /v1/fleet, gateway/
fleet_report.py): its own totals and one row per registered terminal, the terminal's last
signed status as the gateway received it. A report replaces what the ledger held for that
gateway (a terminal the registry dropped leaves the fleet); rows carry the ledger's receive
time (`reported_at`), so the back office can tell a gateway that stopped reporting.

    parse_report(document) -> FleetReport     validation only; FleetReportInvalid (400)
    write_report(session, report, now)        the gateway's rows replaced, one transaction
    read_fleet(session) -> [gateway, ...]     each gateway with its terminals

Errors: `FleetReportInvalid` (a `BatchInvalid`, 400 ``fleet_report_invalid``) for anything
a report may not carry; nothing of such a report is written.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ledger.errors import BatchInvalid
from ledger.limits import ID_CHARS_MAX

if TYPE_CHECKING:
    from ledger.db import Session

FLEET_TERMINALS_MAX = 1000
"""Most terminal rows one report may carry (a gateway with more sends the first ones)."""
FLEET_REPORT_BYTES_MAX = 512 * 1024
"""Largest report body: FLEET_TERMINALS_MAX rows of well under 500 bytes each."""
FIRMWARE_CHARS_MAX = 64
"""Longest firmware version text a row may carry."""
COUNT_MAX = 2**63 - 1
"""Largest count or time a row may carry (BIGINT)."""
FLEET_GATEWAYS_MAX = 1000
"""Most gateways the fleet read returns."""
TERMINAL_STATES = ("online", "offline", "heartbeat", "unknown")
"""A terminal's state in a report: its last signed status, or unknown (none received)."""
INVALID = "fleet_report_invalid"

REPORT_FIELDS = ("gateway_id", "pending_records", "config_version", "terminals_registered",
                 "terminals")
"""Exactly the keys of a report."""
ROW_FIELDS = ("terminal", "merchant", "state", "heard_at", "status_time", "journal_depth",
              "firmware", "heap_free", "refused", "config_sent", "config_named")
"""Exactly the keys of a terminal row; all but the first three may be null (unknown)."""
_ROW_IDS = ("terminal", "merchant")
_ROW_COUNTS = ("heard_at", "status_time", "journal_depth", "heap_free", "refused",
               "config_sent", "config_named")
FLEET_GATEWAY_COLUMNS = ("gateway_id", "pending_records", "config_version",
                         "terminals_registered", "reported_at")
"""Every fleet_gateways column: the gateway's totals of its latest report."""
FLEET_TERMINAL_COLUMNS = ("gateway_id", *ROW_FIELDS, "reported_at")
"""Every fleet_terminals column: the gateway, the row as reported, when it came."""


class FleetReportInvalid(BatchInvalid):
    """A fleet report the ledger refuses whole (400 fleet_report_invalid)."""

    def __init__(self, detail: str) -> None:
        super().__init__(INVALID, detail)


@dataclass(frozen=True)
class FleetReport:
    gateway_id: str
    pending_records: int
    config_version: int
    terminals_registered: int
    terminals: tuple[dict[str, Any], ...]


def parse_report(document: object) -> FleetReport:
    """The report in `document` (decoded JSON), checked field by field."""
    if not isinstance(document, dict) or set(document) != set(REPORT_FIELDS):
        raise FleetReportInvalid(f"a fleet report has exactly the keys {list(REPORT_FIELDS)}")
    rows = document["terminals"]
    if not isinstance(rows, list) or len(rows) > FLEET_TERMINALS_MAX:
        raise FleetReportInvalid(f"terminals: a list of at most {FLEET_TERMINALS_MAX} rows")
    checked = tuple(_row(row, index) for index, row in enumerate(rows))
    if len({row["terminal"] for row in checked}) != len(checked):
        raise FleetReportInvalid("terminals: a terminal is listed twice")
    return FleetReport(_id(document["gateway_id"], "gateway_id"),
                       _count(document["pending_records"], "pending_records"),
                       _count(document["config_version"], "config_version"),
                       _count(document["terminals_registered"], "terminals_registered"),
                       checked)


def _row(row: object, index: int) -> dict[str, Any]:
    where = f"terminals[{index}]"
    if not isinstance(row, dict) or set(row) != set(ROW_FIELDS):
        raise FleetReportInvalid(f"{where}: a row has exactly the keys {list(ROW_FIELDS)}")
    for name in _ROW_IDS:
        _id(row[name], f"{where}.{name}")
    if row["state"] not in TERMINAL_STATES:
        raise FleetReportInvalid(f"{where}.state: one of {list(TERMINAL_STATES)}")
    for name in _ROW_COUNTS:
        if row[name] is not None:
            _count(row[name], f"{where}.{name}")
    firmware = row["firmware"]
    if firmware is not None and not (isinstance(firmware, str)
                                     and 0 < len(firmware) <= FIRMWARE_CHARS_MAX
                                     and firmware.isprintable()):
        raise FleetReportInvalid(f"{where}.firmware: null or 1 to {FIRMWARE_CHARS_MAX} "
                                 "printable characters")
    return {name: row[name] for name in ROW_FIELDS}


def _id(value: object, where: str) -> str:
    if not (isinstance(value, str) and 0 < len(value) <= ID_CHARS_MAX and value.isprintable()):
        raise FleetReportInvalid(f"{where}: 1 to {ID_CHARS_MAX} printable characters")
    return value


def _count(value: object, where: str) -> int:
    # bool is an int in Python, never in a report.
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= COUNT_MAX:
        raise FleetReportInvalid(f"{where}: a whole number from 0 to {COUNT_MAX}")
    return value


def write_report(session: Session, report: FleetReport, now: int) -> None:
    """Replace the gateway's fleet with `report`, received at `now` (the ledger's clock).

    The gateway's row is written first: on PostgreSQL it locks that row until commit, so two
    reports of one gateway replace its terminals one after the other, never interleaved."""
    session.execute(
        "INSERT INTO fleet_gateways (gateway_id, pending_records, config_version,"
        " terminals_registered, reported_at) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (gateway_id) DO UPDATE SET pending_records = excluded.pending_records,"
        " config_version = excluded.config_version,"
        " terminals_registered = excluded.terminals_registered,"
        " reported_at = excluded.reported_at",
        (report.gateway_id, report.pending_records, report.config_version,
         report.terminals_registered, now))
    session.execute("DELETE FROM fleet_terminals WHERE gateway_id = ?", (report.gateway_id,))
    session.bulk_insert("fleet_terminals", FLEET_TERMINAL_COLUMNS,
                        [(report.gateway_id, *(row[name] for name in ROW_FIELDS), now)
                         for row in report.terminals])


def read_fleet(session: Session) -> list[dict[str, Any]]:
    """Each reporting gateway (by id, at most FLEET_GATEWAYS_MAX) with its totals and
    "terminals", its rows by terminal id, as last reported."""
    gateways = [dict(zip(FLEET_GATEWAY_COLUMNS, row, strict=True)) for row in session.fetch(
        f"SELECT {', '.join(FLEET_GATEWAY_COLUMNS)} FROM fleet_gateways"
        f" ORDER BY gateway_id LIMIT {FLEET_GATEWAYS_MAX}")]
    by_gateway: dict[str, list[dict[str, Any]]] = {g["gateway_id"]: [] for g in gateways}
    for row in session.fetch(f"SELECT {', '.join(FLEET_TERMINAL_COLUMNS)} FROM fleet_terminals"
                             " ORDER BY gateway_id, terminal"):
        terminal = dict(zip(FLEET_TERMINAL_COLUMNS, row, strict=True))
        listed = by_gateway.get(terminal.pop("gateway_id"))
        if listed is not None:
            listed.append(terminal)
    for gateway in gateways:
        gateway["terminals"] = by_gateway[gateway["gateway_id"]]
    return gateways
