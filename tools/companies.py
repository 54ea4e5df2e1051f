"""`tilltap company ...`: a company's shared budget at the central ledger, through its API
(docs/ledger.md "Company budgets", docs/programs.md "Company cards").

    tilltap company create ACME --name "Acme Ltd" --currency EUR --budget-minor 5000 \\
        --period day --ledger-url https://ledger:8443 --ledger-token-file admin.token \\
        --ledger-ca ca.pem
    tilltap company add-card ACME CARD ...
    tilltap company remove-card ACME CARD ...
    tilltap company show ACME ...

`create` makes the company, or, for one that exists, changes its name, budget and period to
those given (its currency never changes). The budget is in minor units (5000: 50.00 EUR),
per UTC day or UTC calendar month. Each prints the ledger's answer as JSON; `show` the
budget, the period's start, spent, held and available (budget = spent + held + available)
and each card's share.

Exit status (tools/command.py): 0 done; 2 a mistake (a bad id, currency, budget or period,
checked here before the ledger is asked; or the ledger refused: an unknown company or card,
a card of another currency or in another company, not permitted) or bad settings; 1 the
ledger could not be reached. Errors are one line, and the ledger changed nothing.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any, TextIO

from ledger.client import LedgerClient, read_token
from ledger.company_rules import COMPANY_BUDGET_MINOR_MAX, PERIODS, parse_company
from ledger.errors import BatchInvalid, LedgerRejected, LedgerUnavailable
from tools.command import OutsideFailure, UsageError


def add_arguments(commands: Any) -> None:
    """`company ...` under the top-level `commands` (a sub-parsers object)."""
    from tools.ledger_logins import add_client_arguments

    company = commands.add_parser(
        "company", help="a company's shared budget for its cards, at the ledger").add_subparsers(
        dest="company_command", required=True)
    create = company.add_parser("create", help="create a company, or change its name, budget "
                                               "and period")
    create.add_argument("company", help="the company's id")
    create.add_argument("--name", required=True, help="the company's name")
    create.add_argument("--currency", required=True,
                        help="ISO 4217 code of its cards and budget, such as EUR")
    create.add_argument("--budget-minor", required=True, type=_whole,
                        help="the budget in minor units, 1 to "
                             f"{COMPANY_BUDGET_MINOR_MAX} (5000: 50.00 EUR)")
    create.add_argument("--period", required=True, choices=PERIODS,
                        help="the budget is per UTC day or UTC calendar month")
    create.set_defaults(handler=_create)
    for name, help_text, handler in (
            ("add-card", "put a card in the company", _add_card),
            ("remove-card", "take a card out of the company", _remove_card)):
        command = company.add_parser(name, help=help_text)
        command.add_argument("company", help="the company's id")
        command.add_argument("card", help="the card id")
        command.set_defaults(handler=handler)
    show = company.add_parser("show", help="the budget now: spent, held, available, cards")
    show.add_argument("company", help="the company's id")
    show.set_defaults(handler=_show)
    for parser in company.choices.values():
        add_client_arguments(parser, required=True)


def _whole(text: str) -> int:
    """An integer number of minor units (never a decimal: 50.00 is written 5000)."""
    try:
        return int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a whole number of minor units (50.00 EUR is 5000)") from None


def _create(args: argparse.Namespace, out: TextIO | None = None) -> int:
    document = {"company": args.company, "name": args.name, "currency": args.currency,
                "budget_minor": args.budget_minor, "period": args.period}
    try:  # checked here too, so a typing mistake is told even with the ledger away
        company = parse_company(document)
    except BatchInvalid as error:
        raise UsageError(f"{error.detail} ({error.reason})") from error
    return _print(lambda client: client.save_company(
        company.company, company.name, company.currency, company.budget_minor,
        company.period), args, out)


def _add_card(args: argparse.Namespace, out: TextIO | None = None) -> int:
    return _print(lambda client: client.add_company_card(args.company, args.card), args, out)


def _remove_card(args: argparse.Namespace, out: TextIO | None = None) -> int:
    return _print(lambda client: client.remove_company_card(args.company, args.card), args,
                  out)


def _show(args: argparse.Namespace, out: TextIO | None = None) -> int:
    return _print(lambda client: client.company(args.company), args, out)


def _print(call: Callable[[LedgerClient], dict[str, Any]], args: argparse.Namespace,
           out: TextIO | None) -> int:
    """Connect, make the one call, print its answer; a refusal (exit 2) or an outage (exit 1)
    is one line."""
    token = read_token(args.ledger_token_file) if args.ledger_token_file else None
    client = LedgerClient(args.ledger_url, token=token, ca_file=args.ledger_ca)
    try:
        answer = call(client)
    except LedgerRejected as error:
        raise UsageError(f"{error.detail} ({error.reason})") from error
    except LedgerUnavailable as error:
        raise OutsideFailure(f"the ledger is unavailable: {error.detail} "
                             f"({error.reason})") from error
    finally:
        client.close()
    text = json.dumps(answer, indent=2, sort_keys=True, ensure_ascii=False)
    if out is None:
        print(text)
    else:
        out.write(text + "\n")
    return 0
