"""`tilltap card block|unblock|show CARD`: the back office's view of one card, through the
ledger's API (docs/ledger.md, "Blocking a card").

    tilltap card block C1 --reason "reported stolen" --ledger-url https://ledger:8443 \\
        --ledger-token-file cards.token --ledger-ca ledger-ca.pem
    tilltap card unblock C1 --ledger-url ...
    tilltap card show C1 --ledger-url ...
    tilltap card replace C1 N1 --reason "lost on the bus" --ledger-url ...

`block` and `unblock` need a ``cards`` or ``admin`` login; `show` any login that reads cards;
`replace` an ``admin`` login (a manager replaces at the back office's API with a password).
`replace` moves a lost or damaged card's value and points to a new card and blocks the old
one, at every store (POST /v1/cards/OLD/replace, docs/ledger.md "Replacing a card"); it
prints the replacement: both cards, the transfer's txn_id, the value and points moved.
Each prints the card's state as JSON: `show` its value, points, held and available value,
program, block (with reason, time and login) and the stores and terminals it was last used
at (as far as settled batches tell), and its program-engine state ("engine": tier,
discount with its last day and the spend towards the next, points lots with their earn and
expiry days; "engine_version" its version), which a ledger started with the chain's
programs (`ledger serve --programs FILE`, ledger/card_engine.py) keeps as batches post, or
else works out by replaying the card's transactions; when it has none ("engine": null),
`show` says why in one line on stderr. `block`/`unblock`
print the block and whether it changed.

Exit status (tools/command.py): 0 done; 2 the ledger refused (unknown card, not permitted,
bad reason, a card with open holds or a new card with history) or bad settings; 1 the
ledger could not be reached. Errors are one line.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO
from urllib.parse import quote

from ledger.card_engine import REASON_TEXTS
from ledger.client import LedgerClient, read_token
from ledger.errors import LedgerRejected, LedgerUnavailable
from tools.command import OutsideFailure, UsageError


def add_arguments(card: Any) -> None:
    """The block, unblock and show sub-commands under `tilltap card` (`card` is the
    sub-parsers object)."""
    from tools.ledger_logins import add_client_arguments

    block = card.add_parser("block", help="block a card at every store (ledger API)")
    block.add_argument("card", help="the card id")
    block.add_argument("--reason", required=True, help="why: kept with the block")
    add_client_arguments(block, required=True)
    block.set_defaults(handler=block_command)
    unblock = card.add_parser("unblock", help="lift a card's block (ledger API)")
    unblock.add_argument("card", help="the card id")
    unblock.add_argument("--reason", default="", help="why (optional)")
    add_client_arguments(unblock, required=True)
    unblock.set_defaults(handler=unblock_command)
    show = card.add_parser("show", help="a card's value, points, holds, block, last stores")
    show.add_argument("card", help="the card id")
    add_client_arguments(show, required=True)
    show.set_defaults(handler=show_command)
    replace = card.add_parser(
        "replace", help="move a lost card's value and points to a new card (ledger API)")
    replace.add_argument("old", help="the lost or damaged card")
    replace.add_argument("new", help="the new card: unknown, or registered with nothing on it")
    replace.add_argument("--reason", required=True, help="why: kept with the replacement")
    add_client_arguments(replace, required=True)
    replace.set_defaults(handler=replace_command)


class CardClient(LedgerClient):
    """The ledger client with the card replacement (POST /v1/cards/<old>/replace)."""

    def replace_card(self, old: str, new: str, reason: str) -> dict[str, Any]:
        body = json.dumps({"new_card": new, "reason": reason}).encode("utf-8")
        return dict(self._request("POST", f"/v1/cards/{quote(old, safe='')}/replace", body))


def connect(url: str, token_file: str | None, ca_file: str | None) -> CardClient:
    """A client from command-line settings (ConfigInvalid for any that cannot be used)."""
    return CardClient(url, token=read_token(token_file) if token_file else None,
                      ca_file=ca_file)


def replace_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    if not args.reason.strip():
        raise UsageError("--reason must say why the card is replaced")
    if args.old == args.new:
        raise UsageError("the new card must differ from the old one")
    return _print(lambda client: client.replace_card(args.old, args.new, args.reason), args,
                  out)


def block_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    if not args.reason.strip():
        raise UsageError("--reason must say why the card is blocked")
    return _print(lambda client: client.block_card(args.card, args.reason), args, out)


def unblock_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    return _print(lambda client: client.unblock_card(args.card, args.reason), args, out)


def show_command(args: argparse.Namespace, out: TextIO | None = None,
                 err: TextIO | None = None) -> int:
    answer = ask(lambda client: client.card(args.card), args)
    write_answer(answer, out)
    reason = answer.get("engine_reason")  # absent: a ledger older than the engine state
    if reason is not None:
        print("tilltap card show: no tier, discount or points lots: "
              f"{REASON_TEXTS.get(reason, reason)} ({reason})", file=err or sys.stderr)
    return 0


def _print(call: Any, args: argparse.Namespace, out: TextIO | None) -> int:
    """Connect, make the one call, print its answer; a refusal or outage is one line."""
    write_answer(ask(call, args), out)
    return 0


def ask(call: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Connect and make the one call; a refusal or outage is one line (UsageError,
    OutsideFailure)."""
    client = connect(args.ledger_url, args.ledger_token_file, args.ledger_ca)
    try:
        answer: dict[str, Any] = call(client)
    except LedgerRejected as error:
        raise UsageError(f"{error.detail} ({error.reason})") from error
    except LedgerUnavailable as error:
        raise OutsideFailure(f"the ledger is unavailable: {error.detail}") from error
    return answer


def write_answer(answer: dict[str, Any], out: TextIO | None) -> None:
    text = json.dumps(answer, indent=2, sort_keys=True)
    if out is None:
        print(text)
    else:
        out.write(text + "\n")
