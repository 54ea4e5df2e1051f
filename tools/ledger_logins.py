"""`tilltap ledger login add|list|remove` and `tilltap ledger tls`: who may call the ledger.

    tilltap ledger login add NAME --role gateway --gateway GW --terminal T ... --merchant M ...
                              --logins FILE --token-out FILE
    tilltap ledger login add NAME --role reader|cards|admin [--register-value-max MINOR] ...
    tilltap ledger login add NAME --role clerk|manager --logins FILE   (password on stdin)
    tilltap ledger login list --logins FILE
    tilltap ledger login remove NAME --logins FILE
    tilltap ledger tls --out DIR --host HOST

`add` writes a new secret for the login (a login added again gets a new one, and its old
token stops working) into `--token-out` (mode 0600, the file the gateway or operator passes
as `--ledger-token-file`); the logins file keeps only its SHA-256. The running ledger picks
up the change within a few seconds. Exit 2 for a person's mistake, 1 for a file that cannot
be written.

A back-office operator (role clerk or manager, ledger/office.py) gets a password instead of a
token: typed twice at a prompt, or the first line of standard input when that is not a
terminal (never on the command line, where other users and the shell's history see it).
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path

from ledger.auth import (
    OPERATOR_ROLES,
    ROLES,
    Login,
    LoginsInvalid,
    dump_logins,
    load_logins,
    new_login,
    new_operator,
)
from tools.command import add_environment_option, file_in_folder, folder_to_fill, http_url

PRIVATE_MODE = 0o600


def add_arguments(ledger: argparse._SubParsersAction) -> None:
    """The `login` and `tls` commands under `tilltap ledger`."""
    login = ledger.add_parser("login", help="logins of the ledger API").add_subparsers(
        dest="login_command", required=True)
    add = login.add_parser("add", help="add a login (or give an existing one a new token)")
    add.add_argument("name", help="the login's name (letters, digits, . _ -)")
    add.add_argument("--role", required=True, choices=ROLES, help="what the login may do")
    add.add_argument("--logins", type=_file_in_folder, required=True,
                     help="the ledger's logins file")
    add.add_argument("--token-out", type=_file_in_folder, default=None,
                     help="where to write the login's token (mode 0600); not for clerk or "
                          "manager, who sign in with a password read from stdin or a prompt")
    add.add_argument("--gateway", default=None, help="a gateway login: its gateway id")
    add.add_argument("--terminal", action="append", default=[],
                     help="a gateway login: one of its terminals (T* = every id starting T)")
    add.add_argument("--merchant", action="append", default=[],
                     help="a gateway login: one of its merchants")
    add.add_argument("--register-value-max", type=int, default=0,
                     help="cards/admin: most value (minor units) a card may be registered with")
    add.set_defaults(handler=_add)
    listing = login.add_parser("list", help="the logins and their roles (no secrets)")
    listing.add_argument("--logins", type=Path, required=True, help="the ledger's logins file")
    listing.set_defaults(handler=_list)
    remove = login.add_parser("remove", help="remove a login; its token stops working")
    remove.add_argument("name", help="the login to remove")
    remove.add_argument("--logins", type=Path, required=True, help="the ledger's logins file")
    remove.set_defaults(handler=_remove)
    tls = ledger.add_parser("tls", help="the ledger's own CA and its server certificate")
    tls.add_argument("--out", type=_folder_to_fill, required=True,
                     help="folder for ca.pem, ledger.pem and their keys")
    tls.add_argument("--host", required=True, help="the ledger's address (IP or name)")
    tls.set_defaults(handler=_tls)


def _file_in_folder(text: str) -> Path:
    return Path(file_in_folder(text))


def _folder_to_fill(text: str) -> Path:
    return Path(folder_to_fill(text))


def add_client_arguments(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """--ledger-url with the login and CA a client of the ledger uses, each defaulting to its
    TILLTAP_* variable (tools/command.py ENVIRONMENT_VARIABLES)."""
    add_environment_option(parser, "--ledger-url", required=required, type=http_url,
                           help="the ledger, https://host:port (http:// on loopback only)")
    add_environment_option(parser, "--ledger-token-file", metavar="FILE",
                           help="this client's ledger login token (tilltap ledger login add)")
    add_environment_option(parser, "--ledger-ca", metavar="FILE",
                           help="the ledger's CA certificate to pin (tilltap ledger tls)")


def _existing(path: Path) -> dict[str, Login]:
    """The logins already in `path`, none if it does not exist yet."""
    if not path.exists():
        return {}
    return load_logins(path)


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read, replacing it atomically."""
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_MODE)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def _fail(command: str, error: Exception, code: int) -> int:
    detail = f"{error.strerror}: {error.filename}" if isinstance(error, OSError) else str(error)
    print(f"tilltap ledger {command}: {detail}", file=sys.stderr)
    return code


def _read_password() -> str:
    """An operator's new password: typed twice at a terminal, else stdin's first line."""
    if sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise LoginsInvalid("the two passwords differ")
        return password
    return sys.stdin.readline().rstrip("\r\n")


def _add_operator(args: argparse.Namespace) -> int:
    if args.token_out is not None:
        return _fail("login add", LoginsInvalid(
            f"a {args.role} signs in with a password, not a token: leave out --token-out"), 2)
    try:
        logins = _existing(args.logins)
        login = new_operator(args.name, args.role, _read_password())
    except LoginsInvalid as error:
        return _fail("login add", error, 2)
    logins[login.name] = login
    try:
        _write_private(args.logins, dump_logins(logins))
    except OSError as error:
        return _fail("login add", error, 1)
    print(json.dumps({"login": login.name, "role": login.role}, indent=2))
    return 0


def _add(args: argparse.Namespace) -> int:
    if args.role in OPERATOR_ROLES:
        return _add_operator(args)
    if args.token_out is None:
        return _fail("login add", LoginsInvalid(
            f"a {args.role} login needs --token-out FILE for its token"), 2)
    try:
        logins = _existing(args.logins)
        login, token = new_login(args.name, args.role, args.gateway, tuple(args.terminal),
                                 tuple(args.merchant), args.register_value_max)
    except LoginsInvalid as error:
        return _fail("login add", error, 2)
    logins[login.name] = login
    try:
        # The token first: a logins file naming a secret nobody has is harmless, the reverse
        # would leave a login whose token was never written.
        _write_private(args.token_out, token + "\n")
        _write_private(args.logins, dump_logins(logins))
    except OSError as error:
        return _fail("login add", error, 1)
    print(json.dumps({"login": login.name, "role": login.role,
                      "token_file": str(args.token_out)}, indent=2))
    return 0


def _list(args: argparse.Namespace) -> int:
    try:
        logins = load_logins(args.logins)
    except LoginsInvalid as error:
        return _fail("login list", error, 2)
    rows = []
    for login in logins.values():
        entry = login.to_json()
        entry.pop("secret_sha256", None)
        entry.pop("password_scrypt", None)
        rows.append({"login": login.name, **entry})
    print(json.dumps(rows, indent=2))
    return 0


def _remove(args: argparse.Namespace) -> int:
    try:
        logins = load_logins(args.logins)
    except LoginsInvalid as error:
        return _fail("login remove", error, 2)
    if logins.pop(args.name, None) is None:
        return _fail("login remove", LoginsInvalid(f"no login {args.name!r}"), 2)
    try:
        _write_private(args.logins, dump_logins(logins))
    except OSError as error:
        return _fail("login remove", error, 1)
    print(json.dumps({"removed": args.name}))
    return 0


def _tls(args: argparse.Namespace) -> int:
    from tools.tls import TlsError, make_server_tls

    try:
        paths = make_server_tls(args.out, args.host, "tilltap ledger CA", "ledger")
    except TlsError as error:
        return _fail("tls", error, 2)
    except OSError as error:
        return _fail("tls", error, 1)
    print(json.dumps({"files": paths,
                      "serve": ["--tls-cert", paths["ledger.pem"], "--tls-key",
                                paths["ledger.key"]],
                      "clients": ["--ledger-ca", paths["ca.pem"]]}, indent=2))
    return 0
