"""What every `tilltap` command shares: typed errors, their exit status, checked arguments.

A person's mistake ends in one line on stderr and exit 2; a part outside that failed (a
broker or ledger that refuses or is absent, a disk that cannot be written) in one line and
exit 1; Ctrl-C in one line and exit 130. A traceback is printed only with `tilltap --debug`.
`guarded` is the one place that turns exceptions into those lines; the argument checks below
are argparse `type=` functions, so a bad value stops the command before anything is written.

    Exception
    +-- UsageError       a person's mistake: exit 2
    +-- OutsideFailure   something outside failed: exit 1
    (and, mapped by `guarded`: ledger.errors.ConfigInvalid -> 2, other LedgerError,
     ConnectionError, TimeoutError, ssl.SSLError, OSError -> 1, KeyboardInterrupt -> 130,
     anything else -> 1 as an internal error naming --debug)

Options naming the ledger and the gateway's store default to TILLTAP_* variables
(ENVIRONMENT_VARIABLES, `add_environment_option`): the flag wins over the variable, the
variable over `gateway run --config`'s file, that over the built-in default; a variable's
bad value stops only the commands that use it, and the line names the variable. An option's
old name stays as its second option string, its help saying so (`old_spelling`).

Read-only commands open SQLite databases with `open_read_only`, which refuses a missing file
(nothing is created), a file that is not SQLite and a database of the other kind (a ledger's
given where a gateway's is expected, and the reverse), and never writes or creates a file.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import ssl
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit

from protocol.messages import is_id

EXIT_OUTSIDE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
PORT_MAX = 65535
SQLITE_HEADER = b"SQLite format 3\x00"
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
SQLITE_SCHEME = "sqlite://"
# Tables that tell one kind of database from the other (both have `batches` and `cards`).
DATABASE_KINDS = {
    "gateway": frozenset({"records", "chain", "counters"}),
    "ledger": frozenset({"transactions", "entries", "holds"}),
}


# The variables that give an option its default, for every command that has the option:
# a command-line flag wins over its variable, the variable over `gateway run --config`'s file,
# that over the built-in default. An empty variable counts as unset.
ENVIRONMENT_VARIABLES = {
    "--ledger-dsn": "TILLTAP_LEDGER_DSN",
    "--ledger-url": "TILLTAP_LEDGER_URL",
    "--ledger-hold-url": "TILLTAP_LEDGER_HOLD_URL",
    "--ledger-token-file": "TILLTAP_LEDGER_TOKEN_FILE",
    "--ledger-ca": "TILLTAP_LEDGER_CA",
    "--db": "TILLTAP_GATEWAY_DB",  # --db is the gateway's store in every command that has it
    "--log-format": "TILLTAP_LOG_FORMAT",
}


class UsageError(Exception):
    """A person's mistake (a bad option, a missing or wrong file): one line, exit 2."""


class OutsideFailure(Exception):
    """A part outside failed (broker, ledger, reader, disk): one line, exit 1."""


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line (`PROG: MESSAGE (PROG --help)`) and exit 2,
    instead of the usage block followed by the message."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def guarded(command: str, body: Callable[[], int], debug: bool = False) -> int:
    """Run `body` and return its exit status; every exception becomes one line on stderr
    starting with `command` and its exit status (with `debug`, unexpected ones re-raise)."""
    try:
        return body()
    except SystemExit as stop:  # argparse: --help, --version, or its one-line error
        if stop.code is None or isinstance(stop.code, int):
            return stop.code or 0
        return _fail(command, str(stop.code), EXIT_OUTSIDE)
    except KeyboardInterrupt:
        return _fail(command, "interrupted", EXIT_INTERRUPTED)
    except UsageError as error:
        return _fail(command, str(error), EXIT_USAGE)
    except OutsideFailure as error:
        return _fail(command, str(error), EXIT_OUTSIDE)
    except Exception as error:  # noqa: BLE001 - the one place that turns them into a line
        from ledger.errors import ConfigInvalid, LedgerError

        if debug:
            raise
        if isinstance(error, ConfigInvalid):
            return _fail(command, error.detail, EXIT_USAGE)
        if isinstance(error, LedgerError):
            return _fail(command, f"the ledger failed: {error}", EXIT_OUTSIDE)
        if isinstance(error, (ConnectionError, TimeoutError, ssl.SSLError)):
            return _fail(command, f"cannot connect: {error}", EXIT_OUTSIDE)
        if isinstance(error, OSError):
            return _fail(command, os_error_text(error), EXIT_OUTSIDE)
        return _fail(command, f"internal error {type(error).__name__}: {error} "
                              "(tilltap --debug ... shows the traceback)", EXIT_OUTSIDE)


def _fail(command: str, message: str, status: int) -> int:
    line = " ".join(message.split())  # one line, whatever the message held
    print(f"{command}: {line}", file=sys.stderr, flush=True)
    return status


def os_error_text(error: OSError) -> str:
    """`strerror: filename` for a file error, the error itself otherwise."""
    if error.strerror and error.filename:
        return f"{error.strerror}: {error.filename}"
    return str(error) or type(error).__name__


# -- options whose default is an environment variable ----------------------------------------


def environment_value(option: str) -> str | None:
    """The value of the variable that gives `option` its default; None if unset or empty."""
    variable = ENVIRONMENT_VARIABLES.get(option)
    return (os.environ.get(variable) or None) if variable else None


def add_environment_option(parser: Any, *names: str, help: str, required: bool = False,
                           type: Callable[[str], Any] | None = None,
                           **options: Any) -> argparse.Action:
    """`parser.add_argument(*names, ...)` whose default is the variable the first (canonical)
    name has in ENVIRONMENT_VARIABLES; the help names it. A flag on the command line wins.
    argparse checks the variable's text with `type` only if the flag is absent, so a bad
    value stops only the commands that use it, with one line naming the variable."""
    variable = ENVIRONMENT_VARIABLES[names[0]]
    value = environment_value(names[0])
    check = type
    if value is not None:
        check = _from_environment(variable, value, type or str)
    return parser.add_argument(*names, default=value, required=required and value is None,
                               type=check, help=f"{help} [default: ${variable}]", **options)


def _from_environment(variable: str, value: str,
                      check: Callable[[str], Any]) -> Callable[[str], Any]:
    def checked(text: str) -> Any:
        try:
            return check(text)
        except (argparse.ArgumentTypeError, ValueError) as error:
            if text != value:
                raise
            raise argparse.ArgumentTypeError(f"{error} (from ${variable})") from None

    checked.__name__ = getattr(check, "__name__", "value")  # argparse names it in errors
    return checked


@contextmanager
def naming_variable(option: str, value: str | None) -> Iterator[None]:
    """A UsageError raised inside names the variable `option` defaults to, if `value` is
    that variable's (so a bad $TILLTAP_LEDGER_DSN is not mistaken for a bad flag)."""
    try:
        yield
    except UsageError as error:
        if value is None or value != environment_value(option):
            raise
        raise UsageError(f"{error} (from ${ENVIRONMENT_VARIABLES[option]})") from None


def old_spelling(alias: str) -> str:
    """Help text for an option's old name, kept as a second option string so old scripts
    work: say it is deprecated (the canonical name comes first, as argparse shows it)."""
    return f" ({alias}: its old name, deprecated)"


# -- argument checks (argparse `type=` functions) -------------------------------------------


def port(text: str) -> int:
    """A TCP port a client connects to: 1..65535."""
    return _int_in(text, 1, PORT_MAX, "a TCP port (1..65535)")


def positive_int(text: str) -> int:
    return _int_in(text, 1, None, "a whole number of at least 1")


def non_negative_int(text: str) -> int:
    return _int_in(text, 0, None, "a whole number of at least 0")


def _int_in(text: str, low: int, high: int | None, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if value < low or (high is not None and value > high):
        raise argparse.ArgumentTypeError(f"{text} is not {what}")
    return value


def non_negative_seconds(text: str) -> float:
    """A number of seconds >= 0, finite."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds >= 0")
    return value


def identifier(text: str) -> str:
    """An id as the protocol takes it: 1..32 of A-Z a-z 0-9 _ - (no '/', no spaces)."""
    if not is_id(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an id (1..32 of A-Z a-z 0-9 _ -)")
    return text


def http_url(text: str) -> str:
    """An http:// or https:// URL with a host."""
    parts = urlsplit(text)
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} has a bad port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"{text!r} is not an http(s)://host URL")
    return text


def existing_file(text: str) -> str:
    """A file that exists (and is not a folder)."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"no file {text}")
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text} is not a file")
    return text


def file_to_write(text: str) -> str:
    """A file to write: not a folder, and no file stands where its folders are (missing
    folders are made when it is written)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder, not a file")
    _no_file_above(path)
    return text


def file_in_folder(text: str) -> str:
    """A file to write in a folder that exists (it is not itself a folder)."""
    check_writable_path(Path(text), argparse.ArgumentTypeError)
    return text


def folder_to_fill(text: str) -> str:
    """A folder to write into: it exists, or can be made (no file stands in the way)."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} exists and is not a folder")
    _no_file_above(path)
    return text


def _no_file_above(path: Path) -> None:
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                raise argparse.ArgumentTypeError(f"{parent} is a file, not a folder")
            return


def check_writable_path(path: Path, error: Callable[[str], Exception] = UsageError) -> None:
    """Refuse a file path whose folder is missing or a file, or that is itself a folder."""
    if path.is_dir():
        raise error(f"{path} is a folder, not a file")
    folder = path.absolute().parent
    if not folder.is_dir():
        raise error(f"no folder {folder} for {path}" if not folder.exists()
                    else f"{folder} is a file, not a folder")


# -- databases -----------------------------------------------------------------------------


def sqlite_file(dsn: str) -> Path | None:
    """The file a ledger DSN names (sqlite:///abs/path or a plain path); None for PostgreSQL.
    UsageError for a URL of another scheme, an in-memory database or a file at the
    filesystem root (`sqlite:///ledger.db` is /ledger.db, almost never what was meant)."""
    if dsn.startswith(POSTGRES_SCHEMES):
        return None
    if dsn.startswith(SQLITE_SCHEME):
        text = dsn[len(SQLITE_SCHEME):]
        if not text.startswith("/") or not text.strip("/"):
            raise UsageError(f"{dsn!r}: a SQLite URL is sqlite:///absolute/path.db")
        path = Path("/" + text.lstrip("/"))
        if path.parent == Path("/"):
            raise UsageError(f"{dsn!r} names {path} at the filesystem root: give "
                             f"sqlite:////absolute/folder/{path.name} or a plain path")
    elif not dsn or "://" in dsn or dsn == ":memory:":
        raise UsageError(f"{dsn!r} is not a database: use postgresql://... or sqlite:///path")
    else:
        path = Path(dsn)
    return path


def checked_ledger_dsn(dsn: str, must_exist: bool) -> str:
    """A ledger DSN whose SQLite file is usable: its folder exists; if the file exists (or
    `must_exist`), it is a ledger's database."""
    path = sqlite_file(dsn)
    if path is not None:
        check_writable_path(path)
        if must_exist or (path.exists() and path.stat().st_size > 0):
            open_read_only(path, "ledger").close()
    return dsn


def open_read_only(path: str | Path, kind: str) -> sqlite3.Connection:
    """A read-only connection to an existing SQLite database of `kind` ("gateway" or
    "ledger"); UsageError for a missing file, a file that is not SQLite, the other kind.
    Nothing is created: with no write-ahead log beside it (no writer has it open), the file
    is opened immutable, since a read-only connection would leave -wal and -shm files."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no {kind} database at {path}" if not path.exists()
                         else f"{path} is not a file")
    try:
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror}") from None
    if header != SQLITE_HEADER:
        raise UsageError(f"{path} is not a {kind} database (not SQLite)")
    immutable = not Path(f"{path}-wal").exists()
    uri = path.resolve().as_uri() + "?mode=ro" + ("&immutable=1" if immutable else "")
    connection = sqlite3.connect(uri, uri=True, check_same_thread=False)
    try:
        tables = {row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as error:
        connection.close()
        raise UsageError(f"{path} is not a {kind} database: {error}") from None
    if not DATABASE_KINDS[kind] <= tables:
        connection.close()
        others = [name for name, needed in DATABASE_KINDS.items() if needed <= tables]
        seems = f" (it is a {others[0]} database)" if others else ""
        raise UsageError(f"{path} is not a {kind} database{seems}")
    return connection


class ReadOnlyStore:
    """A gateway's store for reports (gateway/store_reports.py calls only `read`), opened
    with `open_read_only`."""

    def __init__(self, path: str | Path) -> None:
        self._db = open_read_only(path, "gateway")

    def read(self, sql: str, parameters: Sequence[Any] = ()) -> list[Any]:
        return self._db.execute(sql, tuple(parameters)).fetchall()

    def close(self) -> None:
        self._db.close()
