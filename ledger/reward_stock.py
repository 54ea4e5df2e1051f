"""A reward item's stock on a store's shelf: the rules (pure, no I/O).

A program's rewards catalogue (docs/programs.md "rewards") says what points buy; how many of
an item a store has is the ledger's to count, per (program, item, merchant), when the office
asks it to (`tilltap reward stock`). An item nobody set a count for is not counted: the
shelf is the cashier's to look at, as before stock existed. Once counted:

    available = quantity - open holds of the item at that merchant     (REWARD_STOCK_HELD)

A hold asking for a reward is refused `reward_out_of_stock` when available is below one; it
is placed under the lock of the stock row, so two counters never both hand over the last
one. A posted redemption of the item lowers quantity by one (REWARD_STOCK_POSTED_TAKES_ONE),
whatever its hold: a redemption posted after its hold had lapsed still left the shelf. A
refund of a redemption does not put the item back (REWARD_STOCK_REFUND_NOT_RESTOCKED): an
item handed back may not be fit to hand out again; a person adds it (`--add 1`).

`ledger.reward_stock_sql` reads and writes the tables (ledger/schema.py reward_stock,
reward_holds, reward_stock_audit) and asks these rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ledger.errors import BatchInvalid, HoldRefused, NotFound
from ledger.validate import ID_PATTERN

STOCK_QUANTITY_MAX = 1_000_000
"""Items of one reward a count may be set to, or add or take away at once."""
ACTION_SET = "set"
ACTION_ADD = "add"
ACTION_UNCOUNT = "uncount"
ACTIONS = (ACTION_SET, ACTION_ADD, ACTION_UNCOUNT)
CHANGE_FIELDS = ("program", "item", "merchant")
"""The keys every POST /v1/rewards/stock body has, with one of "quantity" (set), "add", or
"uncount": true."""


@dataclass(frozen=True, slots=True)
class StockChange:
    """A person's change to one item's count at one merchant."""

    program: str
    item: str
    merchant: str
    action: str
    quantity: int | None
    """set: the new count; add: how many added (below zero: taken away); uncount: None."""


def parse_change(document: object, programs: dict[str, Any] | None) -> StockChange:
    """A change from its JSON body; BatchInvalid stock_invalid naming what is wrong, or
    program_unknown / reward_unknown when the ledger knows the programs and not this item."""
    if not isinstance(document, dict) or not set(CHANGE_FIELDS) <= set(document):
        raise BatchInvalid("stock_invalid", 'send {"program", "item", "merchant"} and one of'
                                            ' "quantity", "add" or "uncount": true')
    extra = set(document) - set(CHANGE_FIELDS)
    if len(extra) != 1 or not extra <= {"quantity", "add", "uncount"}:
        raise BatchInvalid("stock_invalid", 'one of "quantity", "add" or "uncount", once')
    for key in CHANGE_FIELDS:
        if not isinstance(document[key], str) or ID_PATTERN.fullmatch(document[key]) is None:
            raise BatchInvalid("stock_invalid", f"{key}: an id of 1 to 64 printable characters")
    (key,) = extra
    value = document[key]
    if key == "uncount":
        if value is not True:
            raise BatchInvalid("stock_invalid", 'uncount: true (the item is no longer counted)')
        action, quantity = ACTION_UNCOUNT, None
    else:
        low = 0 if key == "quantity" else -STOCK_QUANTITY_MAX
        # bool is an int in Python: true is not a count of 1.
        if (not isinstance(value, int) or isinstance(value, bool)
                or not low <= value <= STOCK_QUANTITY_MAX or (key == "add" and value == 0)):
            raise BatchInvalid("stock_invalid", f"{key}: an integer {low}..{STOCK_QUANTITY_MAX}"
                                                + (", not 0" if key == "add" else ""))
        action, quantity = (ACTION_SET if key == "quantity" else ACTION_ADD), value
    change = StockChange(document["program"], document["item"], document["merchant"], action,
                         quantity)
    if programs is not None:
        check_item(programs, change.program, change.item)
    return change


def check_item(programs: dict[str, Any], program_id: str, item: str) -> None:
    """NotFound program_unknown, BatchInvalid reward_unknown: the item is not in the catalogue
    of a program the ledger runs."""
    program = programs.get(program_id)
    if program is None:
        raise NotFound("program_unknown", f"no program {program_id[:64]!r}")
    if item not in {entry["id"] for entry in (program.get("rewards") or {}).get("items", ())}:
        raise BatchInvalid("reward_unknown",
                           f"program {program_id[:64]} has no reward item {item[:64]!r}")


def counted_after(change: StockChange, known: int | None) -> int | None:
    """The count once the change is made (None: not counted); adding to an item not counted
    is refused stock_not_counted: a count starts from a number a person set."""
    if change.action == ACTION_UNCOUNT:
        return None
    if change.action == ACTION_SET:
        return change.quantity
    if known is None:
        raise BatchInvalid("stock_not_counted", (
            f"{change.item[:64]} at {change.merchant[:64]} is not counted: set its quantity"
            " first"))
    assert change.quantity is not None, "an add carries its number"
    return known + change.quantity


def check_available(item: str, merchant: str, quantity: int, held: int) -> None:
    """REWARD_STOCK_HELD: refuse a hold of an item none of which is left unheld."""
    if quantity - held < 1:
        raise HoldRefused("reward_out_of_stock", (
            f"{item[:64]} at {merchant[:64]}: {quantity} counted, {held} held"))
