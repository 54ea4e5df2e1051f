"""`tilltap customer ...`, `tilltap card history` and `tilltap ledger customer-key new`:
customers at the central ledger, through its API (docs/ledger.md, "Customers").

    tilltap ledger customer-key new --out /etc/tilltap/customer.key
    tilltap customer add --name "Ada L." --phone "+44 20 7946 0958" --email ada@example.org \\
        --birthday 1990-12-10 --language en --marketing-consent yes --consent-source counter \\
        --ledger-url https://ledger:8443 --ledger-token-file admin.token --ledger-ca ca.pem
    tilltap customer show|history|export|erase ID ...
    tilltap customer update ID [--name ...] [--clear notes] ...
    tilltap customer link|unlink ID CARD ...
    tilltap customer find --phone P | --email E [--json] ...
    tilltap customer retention [--inactive-days N] [--dry-run] ...   (cron, say nightly)
    tilltap card history CARD [--format csv|json] ...

Each prints the ledger's answer as JSON (`history` also as CSV; `find` the customer's id
alone, or with --json the answer); `export --out FILE` writes
the export to a new file of mode 0600 (it holds personal data). Personal values are given as
options here, so they reach the shell's history: use a shell that does not keep it, or type
them at the back office.

Exit status (tools/command.py): 0 done; 2 the ledger refused (invalid phone, e-mail or
birthday, a duplicate, a card linked elsewhere, an unknown customer or card, erased twice,
not permitted; `find`: nobody has the phone or e-mail, customer_unknown, as `show` of an
unknown id) or bad settings; 1 the ledger could not be reached. Errors are one line, and
the ledger changed nothing.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

from ledger.client import LedgerClient, read_token
from ledger.customers import FIELDS, normalise_email, normalise_phone
from ledger.customers_sql import HISTORY_FIELDS
from ledger.errors import BatchInvalid, LedgerRejected, LedgerUnavailable
from ledger.limits import (
    CUSTOMER_INACTIVE_DAYS_DEFAULT,
    CUSTOMER_INACTIVE_DAYS_MAX,
    CUSTOMER_INACTIVE_DAYS_MIN,
)
from ledger.personal_crypto import KeyFileInvalid, new_key_file
from tools.command import OutsideFailure, UsageError, file_to_write

FORMATS = ("json", "csv")
EXPORT_FILE_MODE = 0o600
_OPTION_FIELDS = ("name", "phone", "email", "birthday", "language", "notes")
"""Fields given as one option each (--name ...); the consent has three options."""


class CustomersClient(LedgerClient):
    """The ledger's customer API (ledger/server.py), on top of the ledger client."""

    def create_customer(self, fields: dict[str, Any]) -> dict[str, Any]:
        return dict(self._request("POST", "/v1/customers", _body(fields)))

    def customer(self, customer_id: str) -> dict[str, Any]:
        return dict(self._request("GET", _path(customer_id)))

    def update_customer(self, customer_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        return dict(self._request("PATCH", _path(customer_id), _body(fields)))

    def link_card(self, customer_id: str, card: str) -> dict[str, Any]:
        return dict(self._request("PUT", f"{_path(customer_id)}/cards/{quote(card, safe='')}"))

    def unlink_card(self, customer_id: str, card: str) -> dict[str, Any]:
        return dict(self._request("DELETE",
                                  f"{_path(customer_id)}/cards/{quote(card, safe='')}"))

    def customer_history(self, customer_id: str) -> dict[str, Any]:
        return dict(self._request("GET", f"{_path(customer_id)}/history"))

    def export_customer(self, customer_id: str) -> dict[str, Any]:
        return dict(self._request("GET", f"{_path(customer_id)}/export"))

    def erase_customer(self, customer_id: str) -> dict[str, Any]:
        return dict(self._request("DELETE", _path(customer_id)))

    def card_history(self, card: str) -> dict[str, Any]:
        return dict(self._request("GET", f"/v1/cards/{quote(card, safe='')}/history"))

    def find_customer(self, kind: str, value: str) -> dict[str, Any]:
        """{"customer_id"} of the customer with this phone or e-mail (`kind`): sent in the
        body, never in the URL."""
        return dict(self._request("POST", "/v1/customers/find", _body({kind: value})))

    def retention(self, inactive_days: int, dry_run: bool) -> dict[str, Any]:
        return dict(self._request("POST", "/v1/customers/retention", _body(
            {"inactive_days": inactive_days, "dry_run": dry_run})))


def _path(customer_id: str) -> str:
    return f"/v1/customers/{quote(customer_id, safe='')}"


def _body(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, separators=(",", ":")).encode("utf-8")


def add_arguments(commands: Any, card: Any, ledger: Any) -> None:
    """`customer ...` under the top-level `commands`, `history` under `tilltap card`
    (`card`) and `customer-key new` under `tilltap ledger` (`ledger`): sub-parsers objects."""
    from tools.ledger_logins import add_client_arguments

    customer = commands.add_parser("customer", help="customers at the ledger: add, show, "
                                                    "history, export, erase").add_subparsers(
        dest="customer_command", required=True)
    add = customer.add_parser("add", help="a new customer (at least a name, phone or email)")
    _field_options(add)
    add.set_defaults(handler=_add)
    update = customer.add_parser("update", help="change a customer's fields")
    update.add_argument("customer_id", help="the customer's id")
    _field_options(update)
    update.add_argument("--clear", action="append", default=[], choices=FIELDS,
                        help="remove a field (repeat for more)")
    update.set_defaults(handler=_update)
    for name, help_text, handler in (
            ("show", "a customer's record and cards", _show),
            ("erase", "erase a customer's personal data (books and history stay)", _erase)):
        command = customer.add_parser(name, help=help_text)
        command.add_argument("customer_id", help="the customer's id")
        if name == "erase":
            command.add_argument("--yes", action="store_true", required=True,
                                 help="confirm: the personal data cannot be brought back")
        command.set_defaults(handler=handler)
    for name, help_text, handler in (("link", "link a card to the customer", _link),
                                     ("unlink", "unlink a card from the customer", _unlink)):
        command = customer.add_parser(name, help=help_text)
        command.add_argument("customer_id", help="the customer's id")
        command.add_argument("card", help="the card id")
        command.set_defaults(handler=handler)
    find = customer.add_parser("find", help="the customer with a phone number or e-mail")
    given = find.add_mutually_exclusive_group(required=True)
    given.add_argument("--phone", default=None, help="E.164, such as +44 20 7946 0958")
    given.add_argument("--email", default=None, help="an e-mail address")
    find.add_argument("--json", action="store_true",
                      help="print the ledger's answer as JSON (default: the id alone)")
    find.set_defaults(handler=_find)
    retention = customer.add_parser(
        "retention", help="erase the customers inactive for a number of days (for cron)")
    retention.add_argument("--inactive-days", type=int, default=CUSTOMER_INACTIVE_DAYS_DEFAULT,
                           help="no transaction on their cards and no change for this many "
                                f"days ({CUSTOMER_INACTIVE_DAYS_MIN} to "
                                f"{CUSTOMER_INACTIVE_DAYS_MAX}; default "
                                f"{CUSTOMER_INACTIVE_DAYS_DEFAULT})")
    retention.add_argument("--dry-run", action="store_true",
                           help="list them, erase nothing")
    retention.set_defaults(handler=_retention)
    history = customer.add_parser("history", help="the customer's transactions, all stores")
    history.add_argument("customer_id", help="the customer's id")
    _format_option(history)
    history.set_defaults(handler=_customer_history)
    export = customer.add_parser("export", help="everything held about a customer (JSON)")
    export.add_argument("customer_id", help="the customer's id")
    export.add_argument("--out", type=file_to_write, default=None,
                        help="a new file for the export, mode 0600 (default: stdout)")
    export.set_defaults(handler=_export)
    card_history = card.add_parser("history", help="a card's transactions across stores")
    card_history.add_argument("card", help="the card id")
    _format_option(card_history)
    card_history.set_defaults(handler=_card_history)
    # A card's statement (company cards): its purchases and refunds in a date range.
    statement = card.add_parser("statement", help="a card's purchases and refunds between "
                                                  "two dates, with totals (JSON)")
    statement.add_argument("card", help="the card id")
    statement.add_argument("--from", dest="first", required=True, help="YYYY-MM-DD (UTC, in)")
    statement.add_argument("--until", dest="last", required=True, help="YYYY-MM-DD (UTC, in)")
    statement.set_defaults(handler=_card_statement)
    for parser in (*customer.choices.values(), card_history, statement):
        add_client_arguments(parser, required=True)
    key = ledger.add_parser("customer-key", help="the key sealing customers' personal "
                                                 "data").add_subparsers(
        dest="customer_key_command", required=True)
    new = key.add_parser("new", help="write a new random key file (mode 0600; never printed)")
    new.add_argument("--out", type=file_to_write, required=True,
                     help="the new key file (for ledger serve --customer-key)")
    new.set_defaults(handler=_new_key)


def _field_options(parser: argparse.ArgumentParser) -> None:
    for field in _OPTION_FIELDS:
        parser.add_argument(f"--{field}", default=None,
                            help={"phone": "E.164, such as +44 20 7946 0958",
                                  "birthday": "YYYY-MM-DD",
                                  "language": "a language tag, such as en or pt-BR"}.get(
                                field, f"the customer's {field}"))
    parser.add_argument("--marketing-consent", choices=("yes", "no"), default=None,
                        help="whether the customer agreed to marketing (with --consent-source)")
    parser.add_argument("--consent-date", default=None,
                        help="when the consent was given, YYYY-MM-DD (default today, UTC)")
    parser.add_argument("--consent-source", default=None,
                        help="where it was given: counter, web, paper form, ...")


def _format_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=FORMATS, default="json", dest="output_format",
                        help="output format (json)")


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    """The fields the options set (a person's mistake in combining them: UsageError)."""
    fields: dict[str, Any] = {field: getattr(args, field) for field in _OPTION_FIELDS
                              if getattr(args, field) is not None}
    if args.marketing_consent is not None:
        if not args.consent_source:
            raise UsageError("--marketing-consent needs --consent-source (where it was given)")
        fields["marketing_consent"] = {
            "granted": args.marketing_consent == "yes",
            "date": args.consent_date or datetime.now(UTC).date().isoformat(),
            "source": args.consent_source}
    elif args.consent_date is not None or args.consent_source is not None:
        raise UsageError("--consent-date and --consent-source go with --marketing-consent")
    return fields


def _add(args: argparse.Namespace, out: TextIO | None = None) -> int:
    fields = _fields(args)
    return _print(lambda client: client.create_customer(fields), args, out)


def _update(args: argparse.Namespace, out: TextIO | None = None) -> int:
    fields = _fields(args)
    for field in args.clear:
        if field in fields:
            raise UsageError(f"--clear {field} and a new {field} at once")
        fields[field] = None
    if not fields:
        raise UsageError("give at least one field to change (or --clear FIELD)")
    return _print(lambda client: client.update_customer(args.customer_id, fields), args, out)


def _show(args: argparse.Namespace, out: TextIO | None = None) -> int:
    return _print(lambda client: client.customer(args.customer_id), args, out)


def _erase(args: argparse.Namespace, out: TextIO | None = None) -> int:
    return _print(lambda client: client.erase_customer(args.customer_id), args, out)


def _link(args: argparse.Namespace, out: TextIO | None = None) -> int:
    return _print(lambda client: client.link_card(args.customer_id, args.card), args, out)


def _unlink(args: argparse.Namespace, out: TextIO | None = None) -> int:
    return _print(lambda client: client.unlink_card(args.customer_id, args.card), args, out)


def _find(args: argparse.Namespace, out: TextIO | None = None) -> int:
    kind, value = ("phone", args.phone) if args.phone is not None else ("email", args.email)
    normalise = normalise_phone if kind == "phone" else normalise_email
    try:  # checked here too, so a typing mistake is told even with the ledger away
        normalise(value)
    except BatchInvalid as error:
        raise UsageError(f"{error.detail} ({error.reason})") from error
    answer = _call(lambda client: client.find_customer(kind, value), args)
    _write(out, json.dumps(answer, indent=2, sort_keys=True) if args.json
           else str(answer["customer_id"]))
    return 0


def _retention(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Ask until the ledger has erased every inactive customer (each answer at most
    RETENTION_ERASES_MAX); a dry run asks once. One JSON answer of them all."""
    if not CUSTOMER_INACTIVE_DAYS_MIN <= args.inactive_days <= CUSTOMER_INACTIVE_DAYS_MAX:
        raise UsageError(f"--inactive-days: {CUSTOMER_INACTIVE_DAYS_MIN} to "
                         f"{CUSTOMER_INACTIVE_DAYS_MAX}")
    answer = _call(lambda client: client.retention(args.inactive_days, args.dry_run), args)
    while answer["more"] and not args.dry_run:
        again = _call(lambda client: client.retention(args.inactive_days, False), args)
        answer["customers"] += again["customers"]
        answer["erased"] += again["erased"]
        answer["more"] = again["more"] and again["erased"] > 0  # none erased: stop asking
    _write(out, json.dumps(answer, indent=2, sort_keys=True))
    return 0


def _customer_history(args: argparse.Namespace, out: TextIO | None = None) -> int:
    columns = ("card", *HISTORY_FIELDS)
    return _print(lambda client: client.customer_history(args.customer_id), args, out,
                  lambda answer: _csv(columns, answer["transactions"]))


def _card_history(args: argparse.Namespace, out: TextIO | None = None) -> int:
    return _print(lambda client: client.card_history(args.card), args, out,
                  lambda answer: _csv(HISTORY_FIELDS, answer["transactions"]))


def _card_statement(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from datetime import date

    from tools.card_statement import statement

    try:
        first, last = date.fromisoformat(args.first), date.fromisoformat(args.last)
    except ValueError as error:
        raise UsageError(f"--from/--until: a date YYYY-MM-DD ({error})") from error
    if last < first:
        raise UsageError("--until is before --from")
    return _print(lambda client: statement(
        args.card, client.card_history(args.card)["transactions"], first, last), args, out)


def _export(args: argparse.Namespace, out: TextIO | None = None) -> int:
    if args.out is None:
        return _print(lambda client: client.export_customer(args.customer_id), args, out)
    path = Path(args.out)
    if path.exists():
        raise UsageError(f"{path} exists: an export goes to a new file")
    document = _call(lambda client: client.export_customer(args.customer_id), args)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, EXPORT_FILE_MODE)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    _write(out, json.dumps({"customer_id": args.customer_id, "export": str(path)}))
    return 0


def _new_key(args: argparse.Namespace, out: TextIO | None = None) -> int:
    path = Path(args.out)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        new_key_file(path)
    except KeyFileInvalid as error:
        raise UsageError(str(error)) from error
    _write(out, json.dumps({"customer_key": str(path),
                            "serve": ["--customer-key", str(path)]}, indent=2))
    return 0


def _call(call: Callable[[CustomersClient], dict[str, Any]], args: argparse.Namespace) -> Any:
    """Connect and make the one call; a refusal (exit 2) or outage (exit 1) is one line."""
    token = read_token(args.ledger_token_file) if args.ledger_token_file else None
    client = CustomersClient(args.ledger_url, token=token, ca_file=args.ledger_ca)
    try:
        return call(client)
    except LedgerRejected as error:
        raise UsageError(f"{error.detail} ({error.reason})") from error
    except LedgerUnavailable as error:
        raise OutsideFailure(f"the ledger is unavailable: {error.detail} "
                             f"({error.reason})") from error


def _print(call: Callable[[CustomersClient], dict[str, Any]], args: argparse.Namespace,
           out: TextIO | None,
           as_csv: Callable[[dict[str, Any]], str] | None = None) -> int:
    answer = _call(call, args)
    if as_csv is not None and getattr(args, "output_format", "json") == "csv":
        text = as_csv(answer).rstrip("\n")
    else:
        text = json.dumps(answer, indent=2, sort_keys=True, ensure_ascii=False)
    _write(out, text)
    return 0


def _write(out: TextIO | None, text: str) -> None:
    if out is None:
        print(text)
    else:
        out.write(text + "\n")


def _csv(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> str:
    """A header of the columns, then one line per row (null as an empty field)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row[column] is None else row[column] for column in columns])
    return buffer.getvalue()
