"""`tilltap reward stock|list`: how many of each reward item a store has, counted by the
ledger (ledger/reward_stock.py; docs/programs.md "Reward stock").

    tilltap reward stock --program coffee --item mug --merchant M1 --set 12 \\
        --ledger-url https://ledger:8443 --ledger-token-file manager.token --ledger-ca ca.pem
    tilltap reward stock ... --add 6          (a delivery; --add -1: one broken)
    tilltap reward stock ... --uncount        (stop counting: the shelf is the cashier's)
    tilltap reward list [--program coffee] ...

Once an item is counted at a store (its merchant id), a redemption of it at that store's
counters is declined `reward_out_of_stock` when every one left is held by a redemption in
progress; each posted redemption takes one off. A refund of a redemption puts nothing back:
add the item again if it is fit to hand out.

`stock` needs a manager or admin login and prints the count after and before, the open holds
and what is available; `list` any login that reads the books. Both print JSON.

Exit status (tools/command.py): 0 done; 2 a mistake (an item not in the program's
catalogue, adding to an item not counted, a number out of range, not permitted) or bad
options; 1 the ledger could not be reached. Errors are one line, and the ledger changed
nothing.
"""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from ledger.reward_stock import STOCK_QUANTITY_MAX
from tools.card_ledger import ask, write_answer
from tools.command import UsageError


def add_arguments(commands: Any) -> None:
    """`reward stock|list` under the top-level `commands` (a sub-parsers object)."""
    from tools.ledger_logins import add_client_arguments

    reward = commands.add_parser(
        "reward", help="reward items' stock at each store (ledger API)").add_subparsers(
        dest="reward_command", required=True)
    stock = reward.add_parser("stock", help="set, add to or stop counting an item's stock "
                                            "at a store")
    stock.add_argument("--program", required=True, help="the program id")
    stock.add_argument("--item", required=True, help="the reward item's id in its catalogue")
    stock.add_argument("--merchant", required=True, help="the store's merchant id")
    change = stock.add_mutually_exclusive_group(required=True)
    change.add_argument("--set", type=int, dest="quantity",
                        help=f"count this many on the shelf, 0..{STOCK_QUANTITY_MAX}")
    change.add_argument("--add", type=int,
                        help="add this many (below zero: take away) to a counted item")
    change.add_argument("--uncount", action="store_true", help="stop counting the item")
    stock.set_defaults(handler=stock_command)
    listing = reward.add_parser("list", help="the counted items, held and available")
    listing.add_argument("--program", help="one program's items only")
    listing.set_defaults(handler=list_command)
    for parser in (stock, listing):
        add_client_arguments(parser, required=True)


def stock_request(args: argparse.Namespace) -> dict[str, Any]:
    """The POST /v1/rewards/stock body of `reward stock`'s options (UsageError for numbers
    out of range: the ledger would refuse them too)."""
    request: dict[str, Any] = {"program": args.program, "item": args.item,
                               "merchant": args.merchant}
    if args.uncount:
        request["uncount"] = True
    elif args.quantity is not None:
        if not 0 <= args.quantity <= STOCK_QUANTITY_MAX:
            raise UsageError(f"--set: a count of 0..{STOCK_QUANTITY_MAX}")
        request["quantity"] = args.quantity
    else:
        if args.add == 0 or abs(args.add) > STOCK_QUANTITY_MAX:
            raise UsageError(f"--add: a number of -{STOCK_QUANTITY_MAX}..{STOCK_QUANTITY_MAX},"
                             " not 0")
        request["add"] = args.add
    return request


def stock_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    request = stock_request(args)
    write_answer(ask(lambda client: client.change_reward_stock(request), args), out)
    return 0


def list_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    write_answer(ask(lambda client: client.reward_stock(args.program), args), out)
    return 0
