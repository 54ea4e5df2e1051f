"""`tilltap`: the technician's and operator's command.

    tilltap demo [--json] [--ledger-dsn DSN]   one reconciled business day over real parts
    tilltap gateway run ... [--config FILE]    the gateway service (see --help)
    tilltap gateway settle --db ... --ledger-url ...   post open settlement batches
    tilltap gateway exposure --db ... [--format csv|json]   overdrafts per card and terminal
    tilltap gateway refusals --db ... [--format csv|json]   records stored as refused
    tilltap gateway provision --id ID --mosquitto-dir DIR --out LOGIN.json   its broker login
    tilltap store tls --out DIR --host HOST    the store's CA and its broker's certificate
    tilltap store broker-config --out FILE --mosquitto-dir DIR --tls-dir DIR [--group G]
                                               the store's mosquitto.conf (TLS only, logins)
    tilltap ledger serve --ledger-dsn ... --port ... [--logins FILE --tls-cert C --tls-key K]
                         [--programs FILE]
                                               the central ledger's HTTP(S) intake; log lines
                                               on stderr, JSON (--log-format json|text)
    tilltap ledger login add|list|remove ...   who may call the ledger (tokens, roles)
    tilltap ledger tls --out DIR --host HOST   the ledger's CA and its server certificate
    tilltap report NAME (--ledger-url URL | --ledger-dsn DSN) [--format csv|json] [--as-of DATE]
                                               a ledger report: liability, breakage, segments,
                                               lapsing, terminals (exit 2 on bad input)
    tilltap bench [--quick]                    benchmarks: JSON lines, then a table and goals
    tilltap fuzz [--messages N] [--seed S] [--no-tls]   hostile messages against a deployed
                                               store, then its checks; a JSON summary
    tilltap gauntlet [--seed S] [--gateway-kills N] [--faults ...]   real processes through
                                               seeded faults; lost, doubled, phantom, trial
                                               balance, holds open (exit 1 unless all 0)
    tilltap firmware build --board NAME [--out DIR] [--config FILE]   a board's deployable folder
    tilltap firmware deploy --port PORT [--dir DIR] [--dry-run]       copy it with mpremote
    tilltap programs check FILE.toml           validate a program file (exit 2 if invalid)
    tilltap programs simulate --config FILE.toml --ops FILE.jsonl   run operations, print JSON
    tilltap reward stock --program P --item I --merchant M (--set N | --add N | --uncount)
                      | list [--program P] --ledger-url URL ...   a store's count of a reward
    tilltap card personalize --count N --master-key FILE --url-prefix URL --program P ...
    tilltap card inspect [--reader pcsc|usb:...|udp:HOST:PORT] [--master-key FILE]
    tilltap card block CARD --reason TEXT | unblock CARD | show CARD  --ledger-url URL ...
                                               block a card at every store; its ledger state
    tilltap card replace OLD NEW --reason TEXT --ledger-url URL ...
                                               move a lost card's value and points to NEW
    tilltap card verify-sun URL (--key HEX | --meta-key HEX --file-key HEX | --master-key FILE)
                                               check a SUN URL, print JSON (exit 0 / 1 / 2)
    tilltap card keys new --out FILE [--system-id TEXT] | keys for verifier|gateway --from FILE
                      --out FILE               the master-key file, and the parts users need
    tilltap terminal provision --merchant M --terminal T [--out DIR] [--registry FILE] ...
                                               key, board config, registry entry, broker login
    tilltap terminal status T --gateway-url URL [--wait-s S]
                                               a terminal's signed diag answer (exit 0 / 1 / 2)
    tilltap --version                          the installed version

Exit status (tools/command.py): 0 done; 2 a person's mistake (one line on stderr: a bad option,
a missing or wrong file); 1 something outside failed (a broker or ledger that refuses or is
absent, a disk); 130 stopped by Ctrl-C. No traceback unless `tilltap --debug COMMAND ...`.
Read-only commands (report --ledger-dsn, gateway exposure/refusals) never create or change a
file.

Environment: $TILLTAP_LEDGER_DSN, $TILLTAP_LEDGER_URL, $TILLTAP_LEDGER_HOLD_URL,
$TILLTAP_LEDGER_TOKEN_FILE, $TILLTAP_LEDGER_CA and $TILLTAP_GATEWAY_DB are the defaults of
--ledger-dsn, --ledger-url, --ledger-hold-url, --ledger-token-file, --ledger-ca and --db in
every command that has them; an option on the command line wins.
"""

from __future__ import annotations

import argparse
import json
import sys
from importlib import metadata
from pathlib import Path
from typing import cast

from tools.command import (
    OneLineParser,
    ReadOnlyStore,
    UsageError,
    add_environment_option,
    checked_ledger_dsn,
    environment_value,
    file_to_write,
    folder_to_fill,
    guarded,
    http_url,
    identifier,
    naming_variable,
    non_negative_int,
    open_read_only,
    port,
    positive_int,
)


def _demo(args: argparse.Namespace) -> int:
    from tools.demo import render, run_demo

    if args.operations < args.terminals:
        raise UsageError(f"--operations {args.operations} is fewer than --terminals "
                         f"{args.terminals}: each terminal runs operations / terminals")
    if args.ledger_dsn is not None:
        with naming_variable("--ledger-dsn", args.ledger_dsn):
            checked_ledger_dsn(args.ledger_dsn, must_exist=False)
            if _has_content(args.ledger_dsn):
                raise UsageError(f"{args.ledger_dsn} already holds a ledger: the demo needs "
                                 "a new database")

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


def _has_content(dsn: str) -> bool:
    from tools.command import sqlite_file

    path = sqlite_file(dsn)
    return path is not None and path.exists() and path.stat().st_size > 0


def _gateway_settle(args: argparse.Namespace) -> int:
    from gateway.settle import settle
    from gateway.store import GatewayStore
    from ledger.client import connect
    from ledger.errors import ConfigInvalid

    with naming_variable("--db", args.db):  # settles an existing store, never a new one
        open_read_only(args.db, "gateway").close()
    try:
        ledger = connect(args.ledger_url, args.ledger_token_file, args.ledger_ca)
    except ConfigInvalid as error:
        print(f"tilltap gateway settle: {error.detail}", file=sys.stderr)
        return 2
    store = GatewayStore(args.db)
    try:
        result = settle(store, args.id, ledger)
    finally:
        store.close()
    print(json.dumps(result.as_dict(), sort_keys=True))
    return 0 if not result.refused and not result.pending else 1


def _gateway_exposure(args: argparse.Namespace) -> int:
    """Value sales took beyond what their cards held, per card and per terminal."""
    from gateway import store_reports
    from gateway.store import GatewayStore

    with naming_variable("--db", args.db):
        store = ReadOnlyStore(args.db)  # store_reports calls only `read`
    try:
        by_card, by_terminal = store_reports.exposure(cast(GatewayStore, store))
    finally:
        store.close()
    rows = ([{"scope": "card", "id": card, "exposure_minor": value}
             for card, value in sorted(by_card.items())]
            + [{"scope": "terminal", "id": terminal, "exposure_minor": value}
               for terminal, value in sorted(by_terminal.items())])
    if args.format == "json":
        print(json.dumps({"rows": rows}, sort_keys=True))
    else:
        print("scope,id,exposure_minor")
        for row in rows:
            print(f"{row['scope']},{row['id']},{row['exposure_minor']}")
    return 0


def _gateway_refusals(args: argparse.Namespace) -> int:
    """Records refused after their MAC verified, by the gateway or (quarantined, each alone
    in a refused batch) by the ledger: sales a person has to look at."""
    from gateway import store_reports
    from gateway.store import GatewayStore

    with naming_variable("--db", args.db):
        store = cast(GatewayStore, ReadOnlyStore(args.db))  # store_reports calls only `read`
    try:
        rows = ([dict(row, refused_by="gateway") for row in store_reports.refusals(store)]
                + [dict(row, refused_by="ledger")
                   for row in store_reports.quarantined(store)])
    finally:
        store.close()
    if args.format == "json":
        print(json.dumps({"rows": rows}, sort_keys=True))
    else:
        import csv

        columns = (*store_reports.REFUSAL_COLUMNS, "refused_by")
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows([["" if row[c] is None else row[c] for c in columns] for row in rows])
    return 0


def _bench(args: argparse.Namespace) -> int:
    from tools.bench.run import main as bench_main

    return bench_main(args.quick)


def _firmware_build(args: argparse.Namespace) -> int:
    from tools.firmware import build_command

    return build_command(args.board, args.out, args.config)


def _firmware_deploy(args: argparse.Namespace) -> int:
    from tools.firmware import deploy_command

    return deploy_command(args.port, args.dir, args.dry_run)


def _programs_check(args: argparse.Namespace) -> int:
    from tools.programs import ProgramFileError, load_programs

    try:
        programs = load_programs(args.file)
    except (ProgramFileError, OSError, UnicodeDecodeError) as error:
        print(f"tilltap programs check: {error}", file=sys.stderr)
        return 2
    for program in programs.values():
        sections = [key for key in ("points", "prepaid", "gift", "discount", "tiers")
                    if program[key] is not None]
        # The optional sections (absent from a program that has none), as the file names them.
        sections += [key for key in ("volume", "promotions", "rewards", "company")
                     if program.get(key) is not None]
        print(f"{program['id']} v{program['version']} {program['currency']}: "
              f"{' + '.join(sections)}")
    return 0


def _programs_simulate(args: argparse.Namespace) -> int:
    from tools.programs import ProgramFileError, load_programs, read_ops, simulate

    try:
        result = simulate(load_programs(args.config), read_ops(args.ops))
    except (ProgramFileError, OSError, UnicodeDecodeError) as error:
        print(f"tilltap programs simulate: {error}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def _card_personalize(args: argparse.Namespace) -> int:
    from tools.card_station import personalize_command

    return personalize_command(args)


def _card_inspect(args: argparse.Namespace) -> int:
    from tools.card_station import inspect_command

    return inspect_command(args.reader, args.master_key)


def _card_verify_sun(args: argparse.Namespace) -> int:
    from tools.cards import verify_sun_command

    return verify_sun_command(args.url, key=args.key, meta_key=args.meta_key,
                              file_key=args.file_key, master_key_file=args.master_key)


def _terminal_provision(args: argparse.Namespace) -> int:
    from tools.provision import provision_command

    return provision_command(args.merchant, args.terminal, out=args.out, registry=args.registry,
                             mosquitto_dir=args.mosquitto_dir, currency=args.currency,
                             broker_host=args.broker_host, broker_port=args.broker_port,
                             wifi_ssid=args.wifi_ssid, programs=args.programs,
                             replace=args.replace, broker_ca=args.broker_ca)


def _terminal_status(args: argparse.Namespace) -> int:
    from tools.terminal_status import status_command

    return status_command(args.terminal, args.gateway_url, args.wait_s)


def _gateway_provision(args: argparse.Namespace) -> int:
    """A broker login for the gateway: password entry, ACL block, and its login file."""
    from tools.provision import ProvisionError, provision_gateway_login

    try:
        summary = provision_gateway_login(args.id, Path(args.mosquitto_dir), Path(args.out))
    except ProvisionError as error:
        print(f"tilltap gateway provision: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"tilltap gateway provision: {error.strerror}: {error.filename}",
              file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0


def _store_broker_config(args: argparse.Namespace) -> int:
    """The store's whole Mosquitto configuration: TLS only, logins, ACL, size limit."""
    from tools.broker_config import write_broker_config
    from tools.provision import ProvisionError

    try:
        summary = write_broker_config(Path(args.out), Path(args.mosquitto_dir),
                                      Path(args.tls_dir), args.port, args.bind, args.group)
    except ProvisionError as error:
        print(f"tilltap store broker-config: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"tilltap store broker-config: {error.strerror}: {error.filename}",
              file=sys.stderr)
        return 1
    print(json.dumps(summary, indent=2))
    return 0


def _store_tls(args: argparse.Namespace) -> int:
    """The store's CA and its broker's certificate."""
    from tools.tls import TlsError, make_store_tls, mosquitto_lines

    try:
        paths = make_store_tls(Path(args.out), args.host, args.store)
    except TlsError as error:
        print(f"tilltap store tls: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"tilltap store tls: {error.strerror}: {error.filename}", file=sys.stderr)
        return 1
    print(json.dumps({"files": paths, "mosquitto": mosquitto_lines(paths)}, indent=2))
    return 0


def _report(args: argparse.Namespace) -> int:
    from tools.report import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    from tools.ledger_logins import add_client_arguments

    parser = OneLineParser(prog="tilltap", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"tilltap {_version()}",
                        help="print the version and stop")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an unexpected error (before the command)")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run a reconciled business day")
    demo.add_argument("--json", action="store_true", help="print the report as JSON")
    add_environment_option(demo, "--ledger-dsn",
                           help="a new ledger database, postgresql://... or "
                                "sqlite:///abs/path.db (without it or the variable: SQLite "
                                "in a temporary folder)")
    demo.add_argument("--terminals", type=positive_int, default=3,
                      help="simulated terminals (3)")
    demo.add_argument("--cards", type=positive_int, default=30, help="cards personalized (30)")
    demo.add_argument("--operations", type=positive_int, default=540,
                      help="operations, shared among the terminals (540)")
    demo.add_argument("--seed", type=int, default=2026, help="random seed (2026)")
    demo.set_defaults(handler=_demo)

    bench = commands.add_parser("bench", help="benchmarks against the raw parts, same run")
    bench.add_argument("--quick", action="store_true", help="smaller sizes, under 2 minutes")
    bench.set_defaults(handler=_bench)
    commands.add_parser("fuzz", help="a fuzz campaign against a store as deployed",
                        add_help=False)
    commands.add_parser("gauntlet", help="the store's processes through seeded faults",
                        add_help=False)

    gateway = commands.add_parser("gateway", help="the store gateway").add_subparsers(
        dest="gateway_command", required=True)
    gateway.add_parser("run", help="run the gateway service", add_help=False)
    settle = gateway.add_parser("settle", help="post open settlement batches to the ledger")
    add_environment_option(settle, "--db", required=True, metavar="FILE",
                           help="the gateway's SQLite store (must exist)")
    settle.add_argument("--id", type=identifier, default="gw1", help="the gateway's id (gw1)")
    add_client_arguments(settle, required=True)
    settle.set_defaults(handler=_gateway_settle)
    for name, handler, text in (
            ("exposure", _gateway_exposure,
             "overdrafts of offline and stand-in sales, per card and per terminal"),
            ("refusals", _gateway_refusals,
             "records refused after their MAC verified: sales to look at")):
        report = gateway.add_parser(name, help=text)
        add_environment_option(report, "--db", required=True, metavar="FILE",
                               help="the gateway's SQLite store, opened read-only")
        report.add_argument("--format", choices=("csv", "json"), default="csv",
                            help="output format (csv)")
        report.set_defaults(handler=handler)
    gateway_provision = gateway.add_parser(
        "provision", help="the gateway's broker login: password entry, ACL, login file")
    gateway_provision.add_argument("--id", type=identifier, default="gw1",
                                   help="the gateway's id (gw1)")
    gateway_provision.add_argument("--mosquitto-dir", required=True, type=folder_to_fill,
                                   help="folder of the broker's passwd and acl files")
    gateway_provision.add_argument("--out", required=True, type=file_to_write,
                                   help="the login file `gateway run --broker-login` reads")
    gateway_provision.set_defaults(handler=_gateway_provision)
    store = commands.add_parser("store", help="a store's set-up").add_subparsers(
        dest="store_command", required=True)
    broker_config = store.add_parser(
        "broker-config", help="the store's Mosquitto configuration: TLS only, logins, ACL")
    broker_config.add_argument("--out", required=True, type=file_to_write,
                               help="the mosquitto.conf to write")
    broker_config.add_argument("--mosquitto-dir", required=True,
                               help="folder of passwd and acl (terminal/gateway provision)")
    broker_config.add_argument("--tls-dir", required=True,
                               help="folder of ca.pem, broker.pem, broker.key (store tls)")
    broker_config.add_argument("--port", type=port, default=8883,
                               help="the TLS listener's port (8883)")
    broker_config.add_argument("--bind", default=None, help="address to listen on (all)")
    broker_config.add_argument("--group", default=None,
                               help="the group Mosquitto runs as: may read the secret files")
    broker_config.set_defaults(handler=_store_broker_config)
    store_tls = store.add_parser("tls", help="the store's CA and its broker's certificate")
    store_tls.add_argument("--out", required=True, type=folder_to_fill,
                           help="folder for ca.pem, broker.pem, keys")
    store_tls.add_argument("--host", required=True, help="the broker's address (IP or name)")
    store_tls.add_argument("--store", default="store", help="the store's name, in the CA")
    store_tls.set_defaults(handler=_store_tls)

    firmware = commands.add_parser("firmware", help="build and deploy a board's firmware")
    firmware_commands = firmware.add_subparsers(dest="firmware_command", required=True)
    firmware_build = firmware_commands.add_parser(
        "build", help="compile protocol/ and firmware/ for a board into a deployable folder")
    firmware_build.add_argument("--board", required=True, help="e.g. esp32_pn532, pico_w_pn532")
    firmware_build.add_argument("--out", default=None, type=folder_to_fill,
                                help="folder (default build/firmware)")
    firmware_build.add_argument("--config", default=None,
                                help="the terminal's provisioned config JSON (holds its key)")
    firmware_build.set_defaults(handler=_firmware_build)
    firmware_deploy = firmware_commands.add_parser(
        "deploy", help="copy a build to a board with mpremote")
    firmware_deploy.add_argument("--port", required=True, help="serial port, e.g. /dev/ttyUSB0")
    firmware_deploy.add_argument("--dir", default=None,
                                 help="build folder (default build/firmware)")
    firmware_deploy.add_argument("--dry-run", action="store_true",
                                 help="print the mpremote commands instead of running them")
    firmware_deploy.set_defaults(handler=_firmware_deploy)

    programs = commands.add_parser("programs", help="card program files").add_subparsers(
        dest="programs_command", required=True)
    programs_check = programs.add_parser("check", help="validate a program file (TOML)")
    programs_check.add_argument("file", help="the program file (TOML, docs/programs.md)")
    programs_check.set_defaults(handler=_programs_check)
    programs_simulate = programs.add_parser(
        "simulate", help="run operations (JSON lines) through the program engine")
    programs_simulate.add_argument("--config", required=True, help="program file (TOML)")
    programs_simulate.add_argument("--ops", required=True, help="one JSON operation per line")
    programs_simulate.set_defaults(handler=_programs_simulate)

    card = commands.add_parser(
        "card", help="NTAG 424 DNA cards; block/show at the ledger").add_subparsers(
        dest="card_command", required=True)
    verify_sun = card.add_parser(
        "verify-sun",
        help="verify a SUN URL: exit 0 valid (JSON), 1 not valid (one line), 2 bad input")
    verify_sun.add_argument("url", help="the URL the card wrote (quote it for the shell)")
    verify_sun.add_argument("--key", help="one AES key (32 hex) for K1 and K2, e.g. factory")
    verify_sun.add_argument("--meta-key", help="K1, SDMMetaRead (32 hex)")
    verify_sun.add_argument("--file-key", help="this card's K2, SDMFileRead (32 hex)")
    verify_sun.add_argument("--master-key", metavar="FILE",
                            help="master-key file (docs/cards.md): K1, K2 from the UID")
    verify_sun.set_defaults(handler=_card_verify_sun)
    personalize = card.add_parser(
        "personalize", help="personalize factory cards at a reader and register them")
    personalize.add_argument("--count", type=positive_int, default=1,
                             help="cards to personalize, one after the other (1)")
    personalize.add_argument("--reader", default="pcsc", type=_reader,
                             help="pcsc | pcsc:NAME | usb[:...] | udp:HOST:PORT")
    personalize.add_argument("--master-key", metavar="FILE", required=True,
                             help="the master-key file with all five masters (docs/cards.md)")
    personalize.add_argument("--url-prefix", required=True, type=http_url,
                             help="https://... the card's URL")
    personalize.add_argument("--program", required=True, type=identifier,
                             help="the card program the cards are registered with")
    personalize.add_argument("--value-minor", type=non_negative_int, default=0,
                             help="opening value, in minor units (0)")
    personalize.add_argument("--currency", default="EUR", help="ISO 4217 code (EUR)")
    personalize.add_argument("--merchant", required=True, type=identifier,
                             help="the merchant the cards belong to")
    personalize.add_argument("--programs", metavar="FILE.toml", default=None,
                             help="the stores' program file: --program must be in it, in "
                                  "--currency (checked before any card)")
    add_client_arguments(personalize, required=True)
    personalize.set_defaults(handler=_card_personalize)
    inspect = card.add_parser("inspect", help="UID, version, SUN (and its check) of one card")
    inspect.add_argument("--reader", default="pcsc", type=_reader,
                         help="pcsc | pcsc:NAME | usb[:...] | udp:HOST:PORT")
    inspect.add_argument("--master-key", metavar="FILE", default=None,
                         help="master-key file: also check the card's SUN")
    inspect.set_defaults(handler=_card_inspect)
    from tools.card_keys import add_arguments as add_card_keys_arguments
    from tools.card_ledger import add_arguments as add_card_ledger_arguments

    add_card_ledger_arguments(card)
    add_card_keys_arguments(card)

    terminal = commands.add_parser("terminal", help="terminals").add_subparsers(
        dest="terminal_command", required=True)
    provision = terminal.add_parser(
        "provision", help="new key, board config.json, registry entry, Mosquitto login and ACL")
    provision.add_argument("--merchant", required=True, type=identifier,
                           help="the terminal's merchant id")
    provision.add_argument("--terminal", required=True, type=identifier,
                           help="the terminal's id (1..32 of A-Z a-z 0-9 _ -)")
    provision.add_argument("--out", default=None, type=folder_to_fill,
                           help="folder for config.json (default build/terminals/TERMINAL)")
    provision.add_argument("--registry", default=None, type=file_to_write,
                           help="gateway terminal registry JSON (default build/registry.json)")
    provision.add_argument("--mosquitto-dir", default=None, type=folder_to_fill,
                           help="folder of the broker's passwd and acl (default build/mosquitto)")
    provision.add_argument("--currency", default="EUR", help="ISO 4217 code (EUR)")
    provision.add_argument("--broker-host", default="127.0.0.1",
                           help="the broker the board connects to (127.0.0.1)")
    provision.add_argument("--broker-port", type=port, default=1883,
                           help="its port (1883)")
    provision.add_argument("--wifi-ssid", default="",
                           help="the board's Wi-Fi; its password from $TILLTAP_WIFI_PASSWORD")
    provision.add_argument("--programs", default=None, help="card programs JSON for the board")
    provision.add_argument("--broker-ca", default=None, metavar="CA.pem",
                           help="the store's CA (ca.pem of `store tls`): the board pins it "
                                "for TLS; without it the board's link is clear text")
    provision.add_argument("--replace", action="store_true",
                           help="issue a new key to a terminal that already has one")
    provision.set_defaults(handler=_terminal_provision)
    from tools.terminal_status import STATUS_WAIT_S, wait_seconds

    status = terminal.add_parser(
        "status", help="a technician's view: ask a terminal through the gateway (signed diag)")
    status.add_argument("terminal", type=identifier, help="the terminal's id")
    status.add_argument("--gateway-url", required=True, type=http_url,
                        help="the gateway's metrics server (gateway run --metrics-port), "
                             "e.g. http://127.0.0.1:9100")
    status.add_argument("--wait-s", type=wait_seconds, default=STATUS_WAIT_S,
                        help=f"how long to wait for the terminal ({STATUS_WAIT_S:g} s)")
    status.set_defaults(handler=_terminal_status)

    from tools.report import add_arguments as add_report_arguments

    report = commands.add_parser("report", help="a ledger report as CSV or JSON")
    add_report_arguments(report)
    report.set_defaults(handler=_report)

    ledger = commands.add_parser("ledger", help="the central ledger").add_subparsers(
        dest="ledger_command", required=True)
    ledger.add_parser("serve", help="run the ledger's HTTP intake (its database: "
                                    "--ledger-dsn, old name --dsn, or $TILLTAP_LEDGER_DSN)",
                      add_help=False)
    from tools.ledger_logins import add_arguments as add_ledger_arguments

    add_ledger_arguments(ledger)
    from tools.customers import add_arguments as add_customer_arguments

    add_customer_arguments(commands, card, ledger)
    from tools.offers import add_arguments as add_offer_arguments

    add_offer_arguments(commands, programs)
    from tools.companies import add_arguments as add_company_arguments

    add_company_arguments(commands)
    from tools.rewards import add_arguments as add_reward_arguments

    add_reward_arguments(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = argv[:1] == ["--debug"]
    if debug:
        argv = argv[1:]
    command = "tilltap " + " ".join(word for word in argv[:2] if not word.startswith("-"))
    return guarded(command.strip(), lambda: _dispatch(argv), debug)


def _dispatch(argv: list[str]) -> int:
    # Services own their full argument parsing; hand them the rest of the line unchanged.
    if argv[:2] == ["gateway", "run"]:
        from tools.gateway_run import main as gateway_main

        return gateway_main(argv[2:])
    if argv[:2] == ["ledger", "serve"]:
        from ledger.server import main as ledger_main
        from tools.logs import SERVICE_LOGS
        from tools.programs import load_programs

        return ledger_main(_serve_arguments(argv[2:]), parser_class=OneLineParser,
                           logs=SERVICE_LOGS, load_programs=load_programs)
    if argv[:1] == ["fuzz"]:
        from tools.fuzz.campaign import main as fuzz_main

        return fuzz_main(argv[1:])
    if argv[:1] == ["gauntlet"]:
        from tools.gauntlet.run import main as gauntlet_main

        return gauntlet_main(argv[1:])
    args = build_parser().parse_args(argv)
    result: int = args.handler(args)
    return result


def _serve_arguments(argv: list[str]) -> list[str]:
    """`ledger serve`'s command line as ledger/server.py takes it (`--ledger-dsn`, which it parses
    with the rest): the database from --ledger-dsn (or its old name --dsn), else
    $TILLTAP_LEDGER_DSN, checked first: a SQLite file's folder exists and the file, if any,
    is a ledger's."""
    pre = OneLineParser(prog="tilltap ledger serve", add_help=False, allow_abbrev=False)
    pre.add_argument("--ledger-dsn", "--dsn", dest="ledger_dsn")
    known, rest = pre.parse_known_args(argv)
    dsn = known.ledger_dsn if known.ledger_dsn is not None else environment_value("--ledger-dsn")
    if dsn is None:
        if "-h" in rest or "--help" in rest:
            return rest
        raise UsageError("--ledger-dsn is required (or set $TILLTAP_LEDGER_DSN)")
    with naming_variable("--ledger-dsn", dsn):
        checked_ledger_dsn(dsn, must_exist=False)
    return ["--ledger-dsn", dsn, *rest]


READER_KINDS = ("pcsc", "usb", "tty", "udp")


def _reader(text: str) -> str:
    """A --reader value: pcsc, pcsc:NAME, usb[:...], tty:..., udp[:HOST[:PORT]]."""
    if text.partition(":")[0] not in READER_KINDS:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a reader: pcsc, pcsc:NAME, usb[:...], tty:..., udp:HOST:PORT")
    return text


def _version() -> str:
    try:
        return metadata.version("tilltap")
    except metadata.PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


if __name__ == "__main__":
    raise SystemExit(main())
