"""What the signed configuration gives a terminal (docs/protocol.md 5.7) and the offline
decision it allows (5.4), pure.

    Settings.offer(fields) -> "taken" | "same" | raises Refused(config_rollback,
                              config_invalid, program_invalid)
    offline_decline(...)   -> the reason an offline purchase is declined, or None
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .errors import Refused
from .programs import check_programs
from .schema import is_amount

LIMIT_NAMES = ("txn_minor_max", "card_offline_minor_max", "terminal_offline_minor_max",
               "offline_txn_max", "offline_s_max")
TAKEN, SAME = "taken", "same"


def check_limits(limits: dict[str, Any]) -> dict[str, int]:
    """Section 5.4: a limit left out is 0; a key not listed, or a value that is not an
    amount, makes the configuration config_invalid."""
    unknown = set(limits) - set(LIMIT_NAMES)
    if unknown:
        raise Refused("config_invalid", f"unknown limits {sorted(map(str, unknown))}")
    checked = {name: limits.get(name, 0) for name in LIMIT_NAMES}
    for name, value in checked.items():
        if not is_amount(value):
            raise Refused("config_invalid", f"limit {name}")
    return checked


@dataclass
class Settings:
    version: int = 0
    limits: dict[str, int] = field(default_factory=lambda: check_limits({}))
    programs: dict[str, dict[str, Any]] = field(default_factory=dict)
    hotlist: frozenset[str] = frozenset()
    sealed: bytes = b""  # kept "on flash" and verified again at start
    exponents: Mapping[str, int] = field(default_factory=dict)  # currency -> ISO 4217 minor unit

    def offer(self, fields: dict[str, Any], sealed: bytes) -> str:
        version = fields["config_version"]
        if version == self.version:
            return SAME
        if version < self.version:
            raise Refused("config_rollback", f"{version} < {self.version}")
        limits = check_limits(fields["limits"])
        programs = check_programs(fields["programs"], self.exponents)
        self.version, self.limits, self.programs = version, limits, programs
        self.hotlist = frozenset(fields.get("hotlist", []))
        self.sealed = sealed
        return TAKEN


def offline_decline(limits: dict[str, int], pending: list[tuple[str, int]], card: str,
                    card_minor: int, seconds_since_answer: int | None) -> str | None:
    """Section 5.4's limits for one more offline purchase, in its order, the first that
    fails declining. The amounts are card parts: `card_minor` this purchase's, `pending`
    the (card, card part) of the offline records not yet acknowledged. The time is counted
    since the last fresh signed answer on the corrected clock (None: not online since
    start)."""
    if seconds_since_answer is None or seconds_since_answer > limits["offline_s_max"]:
        return "offline_time_limit"
    if card_minor > limits["txn_minor_max"]:
        return "offline_amount_limit"
    if len(pending) + 1 > limits["offline_txn_max"]:
        return "offline_count_limit"
    if sum(a for c, a in pending if c == card) + card_minor > limits["card_offline_minor_max"]:
        return "offline_card_limit"
    if sum(a for _, a in pending) + card_minor > limits["terminal_offline_minor_max"]:
        return "offline_terminal_limit"
    return None
