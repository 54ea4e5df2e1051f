"""`tilltap card keys new|for`: the deployment's master-key file, made and handed out in the
parts each user needs (docs/cards.md, "The master-key file").

    tilltap card keys new --out masters.json --system-id shop-chain-1
    tilltap card keys for gateway --from masters.json --out gateway-keys.json

`new` writes fresh random masters for every key number (0..4): the file the personalization
station needs, kept offline. `for` copies from it only the masters one kind of user needs:
`verifier` (1, 2: SUN checks), `gateway` (1, 2, 3). Both write 0600 and never over an
existing file, print only the path and the key numbers, never a key. A person's mistake
(an existing --out, a bad --system-id, a file that is not a key file or lacks a master)
exits 2 with one line (tools/command.py).
"""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from tools.cards import (
    CardToolError,
    MasterKeys,
    load_master_keys,
    new_master_keys,
    write_master_keys,
)
from tools.command import UsageError

SYSTEM_ID_DEFAULT = "tilltap"
MASTERS_FOR = {"verifier": (1, 2), "gateway": (1, 2, 3)}
"""Which masters each user of SUN checks needs (docs/cards.md section 1): K1 decrypts the
PICC data, K2 checks the MAC, K3 the gateway's presence check. Master 0 (card master key)
and 4 stay at the personalization station."""


def add_arguments(card: Any) -> None:
    """`keys new` and `keys for` under `tilltap card` (`card` is the sub-parsers object)."""
    keys = card.add_parser("keys", help="the deployment's master-key file").add_subparsers(
        dest="keys_command", required=True)
    new = keys.add_parser("new", help="fresh random masters 0..4 into a new file (0600)")
    new.add_argument("--out", required=True, metavar="FILE",
                     help="the file to create (never overwritten)")
    new.add_argument("--system-id", default=SYSTEM_ID_DEFAULT,
                     help=f"the deployment's system identifier, text ({SYSTEM_ID_DEFAULT})")
    new.set_defaults(handler=new_command)
    part = keys.add_parser("for", help="the masters one kind of user needs, into a new file")
    part.add_argument("user", choices=sorted(MASTERS_FOR),
                      help="verifier (masters 1, 2) or gateway (1, 2, 3)")
    part.add_argument("--from", dest="source", required=True, metavar="FILE",
                      help="the master-key file to copy from")
    part.add_argument("--out", required=True, metavar="FILE",
                      help="the file to create (never overwritten)")
    part.set_defaults(handler=for_command)


def new_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    system_id = args.system_id.encode("utf-8")
    try:
        masters = new_master_keys(system_id)
    except CardToolError as error:
        raise UsageError(f"--system-id: {error}") from None
    return _write(args.out, masters, out)


def for_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    try:
        source = load_master_keys(args.source)
        wanted = {number: source.master(number) for number in MASTERS_FOR[args.user]}
    except CardToolError as error:
        raise UsageError(str(error)) from None
    return _write(args.out, MasterKeys(source.system_id, wanted), out)


def _write(path: str, masters: MasterKeys, out: TextIO | None) -> int:
    try:
        write_master_keys(path, masters)
    except CardToolError as error:
        raise UsageError(str(error)) from None
    numbers = ", ".join(str(number) for number in masters.key_numbers())
    print(f"wrote {path} (0600): masters {numbers}", file=out)
    return 0
