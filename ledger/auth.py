"""Who may call the ledger API, and for what (pure, apart from reading the logins file).

Every caller has a login with one role and a secret token, sent as
``Authorization: Bearer <login>:<secret>``. The ledger keeps only the SHA-256 of each
secret (a secret is 32 random bytes, so a plain hash cannot be searched; no salt or slow
hash is needed) in a logins file written by ``tilltap ledger login``::

    {"version": 1, "logins": {
        "gw-1":  {"role": "gateway", "secret_sha256": "...", "gateway": "gw-1",
                  "terminals": ["S1-T1", "S1-*"], "merchants": ["shop-1"]},
        "alice": {"role": "reader", "secret_sha256": "..."},
        "tech":  {"role": "cards", "secret_sha256": "...", "register_value_minor_max": 0},
        "root":  {"role": "admin", "secret_sha256": "...", "register_value_minor_max": 500000}}}

Roles (what each may do is `may`'s table below):

    gateway   post its own batches and holds, void and read its own holds, look up cards,
              read the feed of card blocks, report its fleet (POST /v1/fleet),
              enrol a card at one of its counters (POST /v1/enrolments: a card sold by
              its own merchants, at its own terminal; it cannot read, change or export
              a customer);
              bound to its gateway id (batch ids and hold ids start with "<gateway>-") and
              to its terminals (and "<gateway>.expiry", its own expire records) and
              merchants (an entry ending in "*" is a prefix)
    reader    read balances, reports, alarms, holds (back office)
    cards     register personalized cards (value at most register_value_minor_max), read cards,
              block and unblock cards
    admin     everything a reader and cards may do, void any hold, and read, change,
              export and erase customers (ledger/customers.py), replace a lost card
              (ledger/replace_sql.py)
    clerk     a person at the back office (/office/, ledger/office.py): read cards, holds,
              reports, alarms; read and change customers
    manager   what a clerk may, and block and unblock cards, acknowledge alarms,
              erase customers and replace a lost card

The two operator roles sign in with a password, not a token: their entry keeps a salted
scrypt record (``"password_scrypt"``, ledger/passwords.py) instead of ``secret_sha256``,
and no Authorization header can prove them.

Nothing here trusts the request: a login that is not in the file, a wrong secret and a
missing header are all ``login_required`` (401) with the same detail, so a caller cannot
learn which logins exist.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ledger import passwords
from ledger.errors import Forbidden, Unauthorized
from ledger.limits import AMOUNT_MINOR_MAX
from protocol import txn

LOGINS_VERSION = 1
ROLES = ("gateway", "reader", "cards", "admin", "clerk", "manager")
OPERATOR_ROLES = ("clerk", "manager")
"""Roles of people signing in to the back office with a password (never with a token)."""
LOGIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}\Z")
SECRET_BYTES = 32
"""Random bytes in a login's secret: 256 bits, so its SHA-256 needs no salt or stretching."""
PREFIX_WILDCARD = "*"

# What each role may do. Actions are named by the server's routes (see `ledger.server`).
READ_CARD = "read_card"
REGISTER_CARD = "register_card"
POST_BATCH = "post_batch"
PLACE_HOLD = "place_hold"
READ_HOLD = "read_hold"
VOID_HOLD = "void_hold"
READ_BOOKS = "read_books"  # balances, terminals, trial balance, alarms, hold totals, reports
BLOCK_CARD = "block_card"  # block or unblock a card for every store
READ_BLOCKS = "read_blocks"  # the feed of block changes (GET /v1/blocks)
READ_CHANGES = "read_changes"  # the feed of posted transactions by card (GET /v1/changes)
ACKNOWLEDGE_ALARM = "acknowledge_alarm"  # mark an alarm seen (the back office)
READ_CUSTOMER = "read_customer"  # a customer's personal data, history and export
CHANGE_CUSTOMER = "change_customer"  # create and update customers, link and unlink cards
ERASE_CUSTOMER = "erase_customer"  # erase a customer's personal data
REPLACE_CARD = "replace_card"  # move a lost card's value and points to a new card
RUN_PROGRAMS = "run_programs"  # issue targeted offers, rank the cards, count reward stock
REPORT_FLEET = "report_fleet"  # post its terminals' presence and health (POST /v1/fleet)
ENROL_CUSTOMER = "enrol_customer"  # a counter's enrolment: link a card (POST /v1/enrolments)
MANAGE_COMPANY = "manage_company"  # create or change a company, add or remove its cards
_ROLE_ACTIONS: dict[str, frozenset[str]] = {
    "gateway": frozenset({READ_CARD, POST_BATCH, PLACE_HOLD, READ_HOLD, VOID_HOLD, READ_BLOCKS,
                          READ_CHANGES, REPORT_FLEET, ENROL_CUSTOMER}),
    "reader": frozenset({READ_CARD, READ_HOLD, READ_BOOKS, READ_BLOCKS, READ_CHANGES}),
    "cards": frozenset({READ_CARD, REGISTER_CARD, BLOCK_CARD, READ_BLOCKS}),
    "admin": frozenset({READ_CARD, READ_HOLD, VOID_HOLD, READ_BOOKS, REGISTER_CARD, BLOCK_CARD,
                        READ_BLOCKS, READ_CHANGES, READ_CUSTOMER, CHANGE_CUSTOMER,
                        ERASE_CUSTOMER, REPLACE_CARD, ENROL_CUSTOMER, RUN_PROGRAMS,
                        MANAGE_COMPANY}),
    "clerk": frozenset({READ_CARD, READ_HOLD, READ_BOOKS, READ_BLOCKS, READ_CUSTOMER,
                        CHANGE_CUSTOMER}),
    "manager": frozenset({READ_CARD, READ_HOLD, READ_BOOKS, READ_BLOCKS, BLOCK_CARD,
                          ACKNOWLEDGE_ALARM, READ_CUSTOMER, CHANGE_CUSTOMER, ERASE_CUSTOMER,
                          REPLACE_CARD, RUN_PROGRAMS, MANAGE_COMPANY}),
}


class LoginsInvalid(Exception):
    """The logins file cannot be used (a person's mistake: exit 2 at the command line)."""


@dataclass(frozen=True)
class Login:
    """One caller of the ledger API and what it is bound to."""

    name: str
    role: str
    secret_sha256: str
    gateway: str | None = None
    terminals: tuple[str, ...] = ()
    merchants: tuple[str, ...] = ()
    register_value_minor_max: int = 0
    actions: frozenset[str] = field(default=frozenset(), compare=False)
    password_scrypt: str | None = None
    """An operator's password record (OPERATOR_ROLES); their secret_sha256 is empty."""

    def to_json(self) -> dict[str, Any]:
        """The login as kept in the logins file."""
        if self.role in OPERATOR_ROLES:
            return {"role": self.role, "password_scrypt": self.password_scrypt}
        entry: dict[str, Any] = {"role": self.role, "secret_sha256": self.secret_sha256}
        if self.role == "gateway":
            entry.update(gateway=self.gateway, terminals=list(self.terminals),
                         merchants=list(self.merchants))
        if self.role in ("cards", "admin"):
            entry["register_value_minor_max"] = self.register_value_minor_max
        return entry


def is_loopback(host: str) -> bool:
    """Whether `host` is this machine ("localhost" or a loopback address): the only place a
    ledger may listen open or in clear text, and a token may travel in clear text."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def secret_hash(secret: str) -> str:
    """The hex SHA-256 of a secret, as the logins file keeps it."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_login(name: str, role: str, gateway: str | None = None,
              terminals: tuple[str, ...] = (), merchants: tuple[str, ...] = (),
              register_value_minor_max: int = 0) -> tuple[Login, str]:
    """A new login and its token (``<name>:<secret>``), which is shown once and never kept."""
    secret = secrets.token_urlsafe(SECRET_BYTES)
    login = _checked(name, {"role": role, "secret_sha256": secret_hash(secret),
                            "gateway": gateway, "terminals": list(terminals),
                            "merchants": list(merchants),
                            "register_value_minor_max": register_value_minor_max})
    return login, f"{name}:{secret}"


def new_operator(name: str, role: str, password: str) -> Login:
    """A back-office login of `role` (clerk or manager) signing in with `password`.

    LoginsInvalid for another role, a bad name or a password that may not be chosen."""
    if role not in OPERATOR_ROLES:
        raise LoginsInvalid(f"login {name}: an operator's role is one of "
                            f"{', '.join(OPERATOR_ROLES)}")
    try:
        record = passwords.hash_password(password)
    except passwords.PasswordInvalid as error:
        raise LoginsInvalid(f"login {name}: {error}") from error
    return _checked(name, {"role": role, "password_scrypt": record})


def parse_logins(document: object) -> dict[str, Login]:
    """The logins of a decoded logins file; LoginsInvalid names the first fault."""
    if not isinstance(document, dict) or document.get("version") != LOGINS_VERSION:
        raise LoginsInvalid(f"a logins file is {{\"version\": {LOGINS_VERSION}, \"logins\": {{}}}}")
    entries = document.get("logins")
    if not isinstance(entries, dict) or set(document) != {"version", "logins"}:
        raise LoginsInvalid("a logins file has exactly the keys version and logins")
    return {name: _checked(name, entry) for name, entry in entries.items()}


def load_logins(path: Path) -> dict[str, Login]:
    """Read and check a logins file (a missing file is LoginsInvalid too)."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError as error:
        raise LoginsInvalid(f"no logins file {path}") from error
    except (OSError, UnicodeDecodeError) as error:
        raise LoginsInvalid(f"cannot read logins file {path}: {error}") from error
    try:
        document = json.loads(text)
    except ValueError as error:
        raise LoginsInvalid(f"{path} is not JSON: {error}") from error
    return parse_logins(document)


def dump_logins(logins: dict[str, Login]) -> str:
    """The logins file's text for `logins`."""
    document = {"version": LOGINS_VERSION,
                "logins": {name: logins[name].to_json() for name in sorted(logins)}}
    return json.dumps(document, indent=2) + "\n"


def _checked(name: object, entry: object) -> Login:
    """One login entry, checked completely."""
    if not isinstance(name, str) or not LOGIN_NAME.match(name):
        raise LoginsInvalid(f"login name {name!r}: letters, digits, '.', '_', '-', at most 64")
    if not isinstance(entry, dict):
        raise LoginsInvalid(f"login {name}: not an object")
    role = entry.get("role")
    if role not in ROLES:
        raise LoginsInvalid(f"login {name}: role must be one of {', '.join(ROLES)}")
    if role in OPERATOR_ROLES:
        if set(entry) != {"role", "password_scrypt"} or not passwords.is_record(
                entry["password_scrypt"]):
            raise LoginsInvalid(f"login {name}: an operator has only role and password_scrypt "
                                "(tilltap ledger login add)")
        return Login(name, role, "", actions=_ROLE_ACTIONS[role],
                     password_scrypt=entry["password_scrypt"])
    digest = entry.get("secret_sha256")
    if not isinstance(digest, str) or not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise LoginsInvalid(f"login {name}: secret_sha256 must be 64 lowercase hex digits")
    gateway = entry.get("gateway")
    terminals = _names(name, entry.get("terminals") or [], "terminals")
    merchants = _names(name, entry.get("merchants") or [], "merchants")
    if role == "gateway":
        if not isinstance(gateway, str) or not LOGIN_NAME.match(gateway):
            raise LoginsInvalid(f"login {name}: a gateway login names its gateway id")
        if not terminals or not merchants:
            raise LoginsInvalid(f"login {name}: a gateway login lists its terminals and merchants")
    elif gateway or terminals or merchants:
        raise LoginsInvalid(f"login {name}: only a gateway login has gateway/terminals/merchants")
    value_max = entry.get("register_value_minor_max", 0)
    if (isinstance(value_max, bool) or not isinstance(value_max, int)
            or not 0 <= value_max <= AMOUNT_MINOR_MAX):
        raise LoginsInvalid(f"login {name}: register_value_minor_max must be 0..{AMOUNT_MINOR_MAX}")
    return Login(name, role, digest, gateway if role == "gateway" else None, terminals,
                 merchants, value_max, _ROLE_ACTIONS[role])


def _names(login: str, values: object, key: str) -> tuple[str, ...]:
    if not isinstance(values, list) or not all(
            isinstance(value, str) and 0 < len(value) <= 64 for value in values):
        raise LoginsInvalid(f"login {login}: {key} must be a list of ids (a trailing * = prefix)")
    return tuple(values)


def authenticate(logins: dict[str, Login], authorization: str | None) -> Login:
    """The login an ``Authorization`` header proves, else Unauthorized."""
    if authorization is None or not authorization.startswith("Bearer "):
        raise Unauthorized("login_required", "send Authorization: Bearer <login>:<secret>")
    name, _, secret = authorization[len("Bearer "):].strip().partition(":")
    login = logins.get(name)
    # Compare a digest even for an unknown login, so timing does not tell which logins exist.
    # An operator's login has no secret (it signs in with a password at /office/).
    expected = login.secret_sha256 if login and login.secret_sha256 else "0" * 64
    if (not hmac.compare_digest(secret_hash(secret), expected) or login is None
            or not secret or not login.secret_sha256):
        raise Unauthorized("login_required", "send Authorization: Bearer <login>:<secret>")
    return login


def require(login: Login, action: str) -> None:
    """Forbidden unless the login's role may do `action`."""
    if action not in login.actions:
        raise Forbidden("not_permitted", f"login {login.name} ({login.role}) may not {action}")


def covers(patterns: tuple[str, ...], value: str) -> bool:
    """Whether an id is one of `patterns` (an entry ending in '*' matches its prefix)."""
    for pattern in patterns:
        if pattern.endswith(PREFIX_WILDCARD):
            if value.startswith(pattern[:-1]):
                return True
        elif value == pattern:
            return True
    return False


def own_id(login: Login, identifier: str) -> bool:
    """Whether a batch or hold id is in the login's namespace: a gateway's ids start with
    its gateway id and '-'; operators (admin, reader) are not bound to one."""
    if login.role != "gateway":
        return True
    return identifier.startswith(f"{login.gateway}-")


def check_batch(login: Login, document: object) -> None:
    """A gateway posts only batches under its own id, for its own terminals and merchants.

    Checked on the decoded document before the books parse it; anything malformed is left
    for the books' validation to refuse with its own reason."""
    require(login, POST_BATCH)
    if not isinstance(document, dict):
        return
    gateway_id, batch_id = document.get("gateway_id"), document.get("batch_id")
    if isinstance(gateway_id, str) and gateway_id != login.gateway:
        raise Forbidden("not_permitted", f"login {login.name} posts for gateway {login.gateway}")
    if isinstance(batch_id, str) and not own_id(login, batch_id):
        raise Forbidden("not_permitted", f"batch ids of {login.name} start {login.gateway}-")
    transactions = document.get("transactions")
    for index, item in enumerate(transactions if isinstance(transactions, list) else ()):
        if isinstance(item, dict):
            _check_txn(login, item, f"transactions[{index}]")


def check_hold(login: Login, document: object) -> None:
    """A gateway places holds only under its own id, for its own terminals and merchants."""
    require(login, PLACE_HOLD)
    if not isinstance(document, dict):
        return
    hold_id = document.get("hold_id")
    if isinstance(hold_id, str) and not own_id(login, hold_id):
        raise Forbidden("not_permitted", f"hold ids of {login.name} start {login.gateway}-")
    _check_place(login, document, "hold")


def check_fleet(login: Login, gateway_id: str, terminals: list[tuple[str, str]]) -> None:
    """A gateway reports its fleet only under its own id, for its own terminals and
    merchants ((terminal, merchant) pairs); operators may not report one at all."""
    require(login, REPORT_FLEET)
    if gateway_id != login.gateway:
        raise Forbidden("not_permitted", f"login {login.name} reports for gateway {login.gateway}")
    for index, (terminal, merchant) in enumerate(terminals):
        _check_place(login, {"terminal": terminal, "merchant": merchant}, f"terminals[{index}]")


def check_enrolment(login: Login, document: object) -> tuple[str, ...] | None:
    """A gateway enrols cards only at its own terminals, for its own merchants; returns
    the merchants the card's sale must be one of (None: any, for an operator)."""
    require(login, ENROL_CUSTOMER)
    if login.role != "gateway":
        return None
    if not isinstance(document, dict) or not all(
            isinstance(document.get(name), str) for name in ("terminal", "merchant")):
        raise Forbidden("not_permitted", f"login {login.name} enrols at its own terminals: "
                                         "name the terminal and merchant")
    _check_place(login, document, "enrolment")
    return login.merchants


def check_hold_id(login: Login, action: str, hold_id: str) -> None:
    """Reading or voiding one hold: a gateway only its own."""
    require(login, action)
    if not own_id(login, hold_id):
        raise Forbidden("not_permitted", f"hold ids of {login.name} start {login.gateway}-")


def check_registration(login: Login, value_minor: object) -> None:
    """Registering a card: a card login, within the value it may load."""
    require(login, REGISTER_CARD)
    if isinstance(value_minor, int) and value_minor > login.register_value_minor_max:
        raise Forbidden("not_permitted",
                        f"login {login.name} may register cards with at most "
                        f"{login.register_value_minor_max} minor units")


def _check_txn(login: Login, document: dict[str, Any], where: str) -> None:
    """A gateway's transaction: its terminal and merchant, the txn id the terminal's own
    (``<terminal>-<seq>``, so no gateway can take another's ids first) and its hold its own."""
    _check_place(login, document, where)
    if login.role != "gateway":
        return
    terminal, seq, txn_id = document.get("terminal"), document.get("seq"), document.get("txn_id")
    if (isinstance(terminal, str) and isinstance(seq, int) and isinstance(txn_id, str)
            and txn_id != txn.txn_id(terminal, seq)):
        raise Forbidden("not_permitted", f"{where}: txn_id of terminal {terminal[:64]!r} seq "
                                         f"{seq} is {txn.txn_id(terminal, seq)[:80]!r}")
    hold_id = document.get("hold_id")
    if isinstance(hold_id, str) and not own_id(login, hold_id):
        raise Forbidden("not_permitted", f"{where}: hold ids of {login.name} start "
                                         f"{login.gateway}-")


def _check_place(login: Login, document: dict[str, Any], where: str) -> None:
    """A gateway's terminal and merchant, when the document names them as text."""
    if login.role != "gateway":
        return
    terminal, merchant = document.get("terminal"), document.get("merchant")
    own_terminals = (*login.terminals, txn.expiry_terminal(login.gateway or ""))
    if isinstance(terminal, str) and not covers(own_terminals, terminal):
        raise Forbidden("not_permitted", f"{where}: terminal {terminal[:64]!r} is not "
                                         f"{login.gateway}'s")
    if isinstance(merchant, str) and not covers(login.merchants, merchant):
        raise Forbidden("not_permitted", f"{where}: merchant {merchant[:64]!r} is not "
                                         f"{login.gateway}'s")
