"""`tilltap`: the technician's and operator's command.

    tilltap demo [--json] [--ledger-dsn DSN]   one reconciled business day over real parts
    tilltap gateway run ...                    the gateway service (see --help)
    tilltap gateway settle --db ... --ledger-url ...   post open settlement batches
    tilltap ledger serve --dsn ... --port ...  the central ledger's HTTP intake
    tilltap bench [--quick]                    benchmarks (not built yet: exits 2)
"""

from __future__ import annotations

import argparse
import json
import sys


def _demo(args: argparse.Namespace) -> int:
    from tools.demo import render, run_demo

    def log(text: str) -> None:
        print(text, file=sys.stderr if args.json else sys.stdout, flush=True)

    report = run_demo(terminal_count=args.terminals, card_count=args.cards,
                      operations=args.operations, ledger_dsn=args.ledger_dsn, seed=args.seed,
                      log=log)
    if args.json:
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        print(render(report))
    return 0 if report["differences"] == 0 else 1


def _gateway_settle(args: argparse.Namespace) -> int:
    from gateway.settle import settle
    from gateway.store import GatewayStore
    from ledger.client import LedgerClient

    store = GatewayStore(args.db)
    try:
        result = settle(store, args.id, LedgerClient(args.ledger_url))
    finally:
        store.close()
    print(json.dumps(result.as_dict(), sort_keys=True))
    return 0 if not result.refused and not result.pending else 1


def _bench(args: argparse.Namespace) -> int:
    print("tilltap bench: the benchmarks are not built yet (see the open issue on `make bench`)",
          file=sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tilltap", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run a reconciled business day")
    demo.add_argument("--json", action="store_true", help="print the report as JSON")
    demo.add_argument("--ledger-dsn", default=None,
                      help="ledger database (default: SQLite in a temporary folder)")
    demo.add_argument("--terminals", type=int, default=3)
    demo.add_argument("--cards", type=int, default=30)
    demo.add_argument("--operations", type=int, default=420)
    demo.add_argument("--seed", type=int, default=2026)
    demo.set_defaults(handler=_demo)

    bench = commands.add_parser("bench", help="benchmarks (not built yet)")
    bench.add_argument("--quick", action="store_true")
    bench.set_defaults(handler=_bench)

    gateway = commands.add_parser("gateway", help="the store gateway").add_subparsers(
        dest="gateway_command", required=True)
    gateway.add_parser("run", help="run the gateway service", add_help=False)
    settle = gateway.add_parser("settle", help="post open settlement batches to the ledger")
    settle.add_argument("--db", required=True)
    settle.add_argument("--id", default="gw1")
    settle.add_argument("--ledger-url", required=True)
    settle.set_defaults(handler=_gateway_settle)

    ledger = commands.add_parser("ledger", help="the central ledger").add_subparsers(
        dest="ledger_command", required=True)
    ledger.add_parser("serve", help="run the ledger's HTTP intake", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Services own their full argument parsing; hand them the rest of the line unchanged.
    if argv[:2] == ["gateway", "run"]:
        from gateway.service import main as gateway_main

        return gateway_main(argv[2:])
    if argv[:2] == ["ledger", "serve"]:
        from ledger.server import main as ledger_main

        return ledger_main(argv[2:])
    args = build_parser().parse_args(argv)
    result: int = args.handler(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
