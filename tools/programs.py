"""Program files at the office: TOML in, validated programs out; and the `simulate` command.

    load_programs(path) -> {program_id: program}        tilltap programs check FILE.toml
    read_ops(path) -> [op, ...]                         one JSON object per line
    Simulation(programs).run(op) -> effects             tilltap programs simulate ...

TOML is read with tomllib and validated by protocol.programs (the same code a terminal runs on
pushed configuration); a fault is reported with the file, the line and the key:

    examples/programs.toml:14: programs.coffee.points.earn_bp: must be an integer in
    0..10000, not 2.5 (program_invalid)

    ValidationError (protocol.errors)
    +-- ProgramFileError   a program file that is not TOML or breaks a program rule
    +-- OpsFileError       an operations line that is not a well-formed operation
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

from gateway.fleet import ConfigTooLarge, config_room_bytes
from protocol import engine
from protocol.errors import ValidationError
from protocol.money import AMOUNT_MINOR_MAX
from protocol.offline import LIMIT_KEYS
from protocol.programs import ProgramInvalid, is_id, validate_programs
from protocol.reasons import (
    CARD_UNKNOWN,
    FIELD_INVALID,
    FIELD_MISSING,
    KIND_UNKNOWN,
    MESSAGE_MALFORMED,
    PROGRAM_UNKNOWN,
    REFUND_UNKNOWN_ORIGINAL,
)

PROGRAM_FILE_BYTES_MAX = 1024 * 1024
OPS_MAX = 100_000
ADVANCE_DAYS_MAX = 36_600
KeyPath = tuple[str | int, ...]

# Per op: (required keys, optional keys). "note" is free text on any line, ignored.
OP_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "issue": (("card", "program"), ("value_minor",)),
    "topup": (("card", "amount_minor"), ("pay",)),
    # happened / discount_minor: a sale that already happened at the counter (an offline
    # quote), replayed as the gateway applies it (docs/programs.md 2.1); minute / birthday:
    # what promotions by hour and birthday week look at (the engine checks them); grants:
    # may the sale use the card's targeted offer grants (TARGETED_OFFER_GRANTED; default:
    # yes, unless it happened offline).
    "purchase": (("card", "amount_minor"), ("pay", "redeem_points", "happened",
                                             "discount_minor", "minute", "birthday",
                                             "grants")),
    "refund": (("of",), ("amount_minor",)),
    "void": (("of",), ()),
    "cashout": (("card",), ("amount_minor",)),
    # A reward of the card's program's catalogue, for its points (protocol/engine_reward.py).
    "reward": (("card", "item"), ("amount_minor",)),
    "advance": (("days",), ()),
    # Tiers by rank: the level the ledger's ranking gives the card for the next period
    # (protocol/engine_rank.py; the engine checks level and period).
    "rank": (("card", "level", "period"), ()),
    # A targeted offer the office issues to the card: `uses` purchases up to simulated day
    # `last_day` may get it (protocol/engine_promotions.py grant).
    "grant": (("card", "offer", "uses", "last_day"), ()),
}


class ProgramFileError(ValidationError):
    def __init__(self, file: str, line: int, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.file = file
        self.line = line

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.detail} ({self.reason})"


class OpsFileError(ProgramFileError):
    pass


# -- programs -------------------------------------------------------------------------------


def load_programs(path: str | Path) -> dict[str, dict[str, Any]]:
    """Read and validate a program file; ProgramFileError naming the line at fault."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) > PROGRAM_FILE_BYTES_MAX:
        raise ProgramFileError(str(path), 1, MESSAGE_MALFORMED, "file larger than 1 MiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise ProgramFileError(str(path), line, MESSAGE_MALFORMED,
                               "not UTF-8 text (TOML is UTF-8)") from None
    return parse_programs(text, str(path))


def parse_programs(text: str, file: str = "<programs>") -> dict[str, dict[str, Any]]:
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        found = re.search(r"\(at line (\d+)", str(error))
        line = int(found.group(1)) if found else 1
        raise ProgramFileError(file, line, MESSAGE_MALFORMED, f"not valid TOML: {error}") from None
    try:
        programs = validate_programs(document)
    except ProgramInvalid as error:
        line = line_of(key_lines(text), error.key_path)
        raise ProgramFileError(file, line, error.reason, error.detail) from None
    check_fits(programs, file)
    return programs


def check_fits(programs: dict[str, dict[str, Any]], file: str) -> None:
    """Programs a terminal could not be sent are refused here, not at the gateway's start:
    with every offline limit at its largest, so no limits a store sets can break them."""
    try:
        config_room_bytes(programs, {key: AMOUNT_MINOR_MAX for key in LIMIT_KEYS})
    except ConfigTooLarge as error:
        raise ProgramFileError(file, 1, error.reason, error.detail) from None


_HEADER = re.compile(r"^\s*(\[\[?)\s*(.+?)\s*\]\]?\s*(#.*)?$")
_ASSIGNMENT = re.compile(r"^\s*([A-Za-z0-9_\-.\"' ]+?)\s*=")


def _split_key(text: str) -> tuple[str, ...]:
    """A TOML dotted key as its parts (bare or quoted; no dots inside quotes expected)."""
    return tuple(part.strip().strip("\"'") for part in text.split("."))


def key_lines(text: str) -> dict[KeyPath, int]:
    """The first line of every table header and key in a TOML text, by key path.

    Arrays of tables count their entries, so `[[programs.vip.tiers.levels]]` lines become
    ("programs", "vip", "tiers", "levels", 0), (..., 1), ... as protocol.programs names them.
    """
    lines: dict[KeyPath, int] = {}
    array_sizes: dict[KeyPath, int] = {}
    table: KeyPath = ()
    for number, line in enumerate(text.splitlines(), start=1):
        header = _HEADER.match(line)
        if header:
            path: KeyPath = _split_key(header.group(2))
            for length in range(1, len(path)):  # parent tables a header implies
                lines.setdefault(path[:length], number)
            if header.group(1) == "[[":
                index = array_sizes.get(path, 0)
                array_sizes[path] = index + 1
                lines.setdefault(path, number)
                path = (*path, index)
            table = path
            lines.setdefault(table, number)
            continue
        assignment = _ASSIGNMENT.match(line)
        if assignment and not line.lstrip().startswith("#"):
            lines.setdefault((*table, *_split_key(assignment.group(1))), number)
    return lines


def line_of(lines: dict[KeyPath, int], key_path: KeyPath) -> int:
    """The line of the longest known prefix of key_path (a missing key: its table's line)."""
    for length in range(len(key_path), 0, -1):
        if key_path[:length] in lines:
            return lines[key_path[:length]]
    return 1


# -- operations -----------------------------------------------------------------------------


def read_ops(path: str | Path) -> list[dict[str, Any]]:
    return parse_ops(Path(path).read_text(encoding="utf-8"), str(path))


def parse_ops(text: str, file: str = "<ops>") -> list[dict[str, Any]]:
    """One operation per non-blank line; OpsFileError naming the line of the first fault.

    Amounts are passed on as they are, so the engine's refusal of a float or a negative amount
    (amount_invalid) can be simulated; everything else about a line must be well formed.
    """
    ops: list[dict[str, Any]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if len(ops) >= OPS_MAX:
            raise OpsFileError(file, number, FIELD_INVALID, f"more than {OPS_MAX} operations")
        try:
            op = json.loads(line)
        except json.JSONDecodeError as error:
            raise OpsFileError(file, number, MESSAGE_MALFORMED, f"not JSON: {error}") from None
        try:
            _check_op(op, len(ops))
        except ValidationError as error:
            raise OpsFileError(file, number, error.reason, error.detail) from None
        ops.append(op)
    return ops


def _check_op(op: Any, index: int) -> None:
    if not isinstance(op, dict):
        raise ValidationError(MESSAGE_MALFORMED, "a line is one JSON object")
    kind = op.get("op")
    if kind not in OP_FIELDS:
        raise ValidationError(KIND_UNKNOWN, f"op must be one of {', '.join(OP_FIELDS)}: {kind!r}")
    required, optional = OP_FIELDS[kind]
    for key in required:
        if key not in op:
            raise ValidationError(FIELD_MISSING, f"{kind} needs {key!r}")
    for key in op:
        if key not in ("op", "note", *required, *optional):
            raise ValidationError(FIELD_INVALID, f"{kind} takes no {key!r}")
    for key in ("card", "program"):
        if key in op and not is_id(op[key]):
            raise ValidationError(FIELD_INVALID, f"{key} must be 1..32 of A-Z a-z 0-9 _ -")
    if "of" in op and not (_is_int(op["of"]) and 0 <= op["of"] < index):
        raise ValidationError(FIELD_INVALID,
                              f"of must be the index of an earlier op (0..{index - 1})")
    if "days" in op and not (_is_int(op["days"]) and 0 <= op["days"] <= ADVANCE_DAYS_MAX):
        raise ValidationError(FIELD_INVALID, f"days must be an integer in 0..{ADVANCE_DAYS_MAX}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# -- simulation -----------------------------------------------------------------------------


class Simulation:
    """Cards under programs, one operation at a time, from day 0; `advance` lets days pass.

    Operation i gets the engine id str(i); a refund's `of` is the index of an earlier line.
    """

    def __init__(self, programs: dict[str, dict[str, Any]]) -> None:
        self.programs = programs
        self.day = 0
        self.cards: dict[str, dict[str, Any]] = {}
        self.op_cards: list[str | None] = []

    def run(self, op: dict[str, Any]) -> dict[str, Any]:
        kind = op["op"]
        index = len(self.op_cards)
        if kind == "advance":
            self.op_cards.append(None)
            return self._advance(op["days"])
        card = self.op_cards[op["of"]] if "of" in op else op["card"]
        self.op_cards.append(card)
        fields = {key: value for key, value in op.items() if key not in ("note", "program")}
        fields["id"] = str(index)
        if "of" in op:
            fields["of"] = str(op["of"])
        if kind == "purchase" and "grants" not in op:  # online, unless it happened offline
            fields["grants"] = not op.get("happened", False)
        state = self.cards.get(card) if card is not None else None
        program_id = state["program"] if state is not None else op.get("program")
        if card is None:
            effects = _declined(kind, self.day, REFUND_UNKNOWN_ORIGINAL)
        elif program_id is None:  # an operation on a card never issued
            effects = _declined(kind, self.day, CARD_UNKNOWN, card)
        elif program_id not in self.programs:
            effects = _declined(kind, self.day, PROGRAM_UNKNOWN, card)
        else:
            new_state, effects = engine.apply(state, self.programs[program_id], fields, self.day)
            if new_state is not None:
                self.cards[card] = new_state
        effects.pop("id", None)
        effects.pop("sales_changed", None)  # storage bookkeeping, not the merchant's concern
        if "of" in op:
            effects["of"] = op["of"]
        return effects

    def _advance(self, days: int) -> dict[str, Any]:
        self.day += days
        changed = {}
        for card in sorted(self.cards):
            state = self.cards[card]
            program = self.programs[state["program"]]
            self.cards[card], effects = engine.apply(state, program, {"op": "tick"}, self.day)
            effects.pop("sales_changed", None)
            if effects["legs"] or "tier_change" in effects:
                changed[card] = effects
        return {"op": "advance", "days": days, "day": self.day, "cards": changed}

    def cards_summary(self) -> dict[str, dict[str, Any]]:
        return {card: engine.summary(state, self.programs[state["program"]], self.day)
                for card, state in sorted(self.cards.items())}


def _declined(kind: str, day: int, reason: str, card: str | None = None) -> dict[str, Any]:
    effects = {"op": kind, "day": day, "declined": reason, "legs": []}
    if card is not None:
        effects["card"] = card
    return effects


def simulate(programs: dict[str, dict[str, Any]], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """Run ops from day 0; {"cards": {card: summary}, "ops": [effects per op]}."""
    simulation = Simulation(programs)
    effects = [simulation.run(op) for op in ops]
    return {"cards": simulation.cards_summary(), "ops": effects}
