"""`tilltap offer issue|report` and `tilltap programs rank`: the office's targeted offers and
tiers by rank, through the ledger's API (ledger/offers.py; docs/programs.md "Targeted
offers" and "Tiers by rank").

    tilltap offer issue --program loyalty --offer comeback --issue dec-2026 --uses 1 \\
        --until 2026-12-31 --card 04a1... --card 04b2...          (or --customer ID ...)
    tilltap offer issue ... --segment lapsing --days 60 --min-purchases 3 [--window-days 365]
    tilltap offer issue ... --segment top --top-percent 10 [--window-days 365]
    tilltap offer report --program loyalty --offer comeback
    tilltap programs rank --program chainrank [--period N]       (default: the last ended)

`issue` and `rank` need a manager or admin login; `report` any login that reads the books.
Each prints the ledger's answer as JSON: `issue` the cards asked, those granted now
("posted"), those granted by this issue before ("already") and those refused with why
("declined"); `rank` the period, its days, how many cards each level holds, and the cards'
levels posted now or before. Issuing or ranking again grants or ranks nothing twice.

Exit status (tools/command.py): 0 done; 2 the ledger refused (an offer that is not a
targeted offer of the program, a past day, a period not ended, not permitted) or bad
options; 1 the ledger could not be reached. Errors are one line.
"""

from __future__ import annotations

import argparse
from datetime import date
from typing import Any, TextIO

from tools.card_ledger import ask, write_answer
from tools.command import UsageError

SEGMENT_OPTIONS = {"lapsing": ("days", "min_purchases"), "top": ("top_percent",)}


def add_arguments(commands: Any, programs: Any) -> None:
    """`tilltap offer issue|report` under `commands` and `rank` under `tilltap programs`."""
    from tools.ledger_logins import add_client_arguments

    offer = commands.add_parser("offer", help="targeted offers (ledger API)").add_subparsers(
        dest="offer_command", required=True)
    issue = offer.add_parser("issue", help="grant a program's targeted offer to cards, "
                                           "customers or a segment")
    issue.add_argument("--program", required=True, help="the program id")
    issue.add_argument("--offer", required=True, help="the targeted offer's id")
    issue.add_argument("--issue", required=True,
                       help="this issue's id (issuing it again grants nothing twice)")
    issue.add_argument("--uses", type=int, required=True, help="purchases that may get it")
    issue.add_argument("--until", required=True, help="its last day, YYYY-MM-DD (UTC, in)")
    issue.add_argument("--card", action="append", default=[], help="a card (repeat)")
    issue.add_argument("--customer", action="append", default=[],
                       help="a customer id (repeat): one card each")
    issue.add_argument("--segment", choices=tuple(SEGMENT_OPTIONS),
                       help="a segment of the customer reports, as of today")
    issue.add_argument("--days", type=int, help="lapsing: days since the last purchase")
    issue.add_argument("--min-purchases", type=int, help="lapsing: purchases in the window")
    issue.add_argument("--top-percent", type=int, help="top: the share of customers, 1..100")
    issue.add_argument("--window-days", type=int, default=365,
                       help="the segment's window of purchases (365)")
    issue.set_defaults(handler=issue_command)
    report = offer.add_parser("report", help="a targeted offer's response")
    report.add_argument("--program", required=True, help="the program id")
    report.add_argument("--offer", required=True, help="the targeted offer's id")
    report.set_defaults(handler=report_command)
    rank = programs.add_parser("rank", help="rank a program's cards for an ended period and "
                                            "give each its tier (ledger API)")
    rank.add_argument("--program", required=True, help="a program with tiers by rank")
    rank.add_argument("--period", type=int, help="the period number (default: the last ended)")
    rank.set_defaults(handler=rank_command)
    for parser in (issue, report, rank):
        add_client_arguments(parser, required=True)


def issue_request(args: argparse.Namespace) -> dict[str, Any]:
    """The POST /v1/offers/grants body of `offer issue`'s options (UsageError if they do not
    go together)."""
    try:
        date.fromisoformat(args.until)
    except ValueError:
        raise UsageError(f"--until: a date YYYY-MM-DD, not {args.until!r}") from None
    request: dict[str, Any] = {"program": args.program, "offer": args.offer,
                               "issue": args.issue, "uses": args.uses, "last_on": args.until}
    if args.card:
        request["cards"] = args.card
    if args.customer:
        request["customers"] = args.customer
    given = {name for name in ("days", "min_purchases", "top_percent")
             if getattr(args, name) is not None}
    if args.segment is not None:
        wanted = set(SEGMENT_OPTIONS[args.segment])
        if given != wanted:
            options = ", ".join("--" + name.replace("_", "-") for name in sorted(wanted))
            raise UsageError(f"--segment {args.segment} takes {options}")
        request["segment"] = {"name": args.segment, "window_days": args.window_days,
                              **{name: getattr(args, name) for name in wanted}}
    elif given:
        raise UsageError("--days, --min-purchases and --top-percent go with --segment")
    if not {"cards", "customers", "segment"} & set(request):
        raise UsageError("say whom: --card, --customer or --segment")
    return request


def issue_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    request = issue_request(args)
    write_answer(ask(lambda client: client.issue_offer(request), args), out)
    return 0


def report_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    write_answer(ask(lambda client: client.offer_report(args.program, args.offer), args), out)
    return 0


def rank_command(args: argparse.Namespace, out: TextIO | None = None) -> int:
    if args.period is not None and args.period < 0:
        raise UsageError("--period is a period number, 0 or more")
    write_answer(ask(lambda client: client.rank(args.program, args.period), args), out)
    return 0
