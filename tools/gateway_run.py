"""`tilltap gateway run`: the gateway service from the command line.

Reads the terminal registry, the card programs (TOML as docs/programs.md, or JSON by program
id), the offline limits and the card keys, builds a `gateway.service.Gateway` and runs it
until SIGTERM or SIGINT. An invalid program file never reaches a terminal: the gateway does
not start (exit 2). `python -m tools.gateway_run --help` lists the options.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from functools import partial
from pathlib import Path
from typing import Any

from gateway.card_auth import CardKeys
from gateway.ledger_holds import HoldSettings
from gateway.registry import TerminalRegistry
from gateway.service import SETTLE_INTERVAL_S, Gateway
from gateway.stage import exit_process, thread
from ledger.client import read_token
from ledger.errors import ConfigInvalid
from protocol.errors import ProtocolError
from protocol.programs import validate_programs
from tools.ledger_logins import add_client_arguments
from tools.programs import load_programs

HEALTH_WRITE_INTERVAL_S = 0.5  # --health-out: how often the health is looked at

log = logging.getLogger(__name__)


def _load_programs(path: str) -> dict[str, dict[str, Any]]:
    """A TOML program file (docs/programs.md), checked with its line numbers; or a JSON
    object of programs by id (as validated programs are exported), checked the same way."""
    if path.endswith(".json"):
        data: dict[str, dict[str, Any]] = json.loads(Path(path).read_text())
        return validate_programs({"programs": data})
    return load_programs(path)


def _load_json(path: str) -> dict[str, int]:
    data: dict[str, int] = json.loads(Path(path).read_text())
    return data


def _load_login(path: str) -> tuple[str, str]:
    """(user, password) from the gateway's login file."""
    data = json.loads(Path(path).read_text())
    user, password = data["user"], data["password"]
    if not isinstance(user, str) or not isinstance(password, str):
        raise ValueError(f"{path}: user and password must be text")
    return user, password


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tilltap gateway run", description=__doc__)
    parser.add_argument("--id", default="gw1")
    parser.add_argument("--broker-host", default="127.0.0.1")
    parser.add_argument("--broker-port", type=int, default=1883)
    parser.add_argument("--db", required=True, help="SQLite file of the gateway's journal")
    parser.add_argument("--terminals", required=True, help="terminal registry JSON")
    parser.add_argument("--programs", required=True,
                        help="card programs: TOML (docs/programs.md), or JSON by program id")
    add_client_arguments(parser)
    parser.add_argument("--limits", default=None, help="offline limits JSON (default: none)")
    parser.add_argument("--config-version", type=int, default=1)
    parser.add_argument("--broker-login", default=None,
                        help="the gateway's broker login, JSON {user, password}, as "
                             "`tilltap gateway provision` writes it (default: anonymous)")
    parser.add_argument("--broker-ca", default=None,
                        help="TLS to the broker, trusting this CA (tilltap store tls)")
    parser.add_argument("--settle-every-s", type=float, default=SETTLE_INTERVAL_S,
                        help="settle with the ledger (expiry first) this often; 0: never")
    parser.add_argument("--card-keys", default=None,
                        help="master-key file: cards must then prove themselves with a SUN")
    parser.add_argument("--stats-out", default=None,
                        help="write the gateway's counters (received, accepted, rejected by "
                             "reason, ...) to this JSON file when it stops")
    parser.add_argument("--health-out", default=None,
                        help="keep the gateway's health in this JSON file, rewritten within "
                             f"{HEALTH_WRITE_INTERVAL_S:g} s of a change: {{\"store\": "
                             "{\"status\": \"ok\" | \"store_unavailable\", \"since\", "
                             "\"error\", \"episodes\"}}; put it on another disk than --db")
    defaults = HoldSettings()
    parser.add_argument("--hold-ttl-s", type=float, default=defaults.hold_ttl_s,
                        help="local hold: from authorization to its transaction")
    parser.add_argument("--ledger-hold-ttl-s", type=int, default=defaults.ledger_hold_ttl_s,
                        help="ledger hold: from authorization to the settlement posting it")
    parser.add_argument("--stand-in-txn-minor-max", type=int,
                        default=defaults.stand_in_txn_minor_max,
                        help="largest card value approved while the ledger is out of reach")
    parser.add_argument("--stand-in-card-minor-max", type=int,
                        default=defaults.stand_in_card_minor_max,
                        help="card value per card approved while the ledger is out of reach")
    args = parser.parse_args(argv)
    try:
        hold_settings = HoldSettings(
            hold_ttl_s=args.hold_ttl_s, ledger_hold_ttl_s=args.ledger_hold_ttl_s,
            stand_in_txn_minor_max=args.stand_in_txn_minor_max,
            stand_in_card_minor_max=args.stand_in_card_minor_max)
    except ValueError as error:
        parser.error(str(error))
    try:
        programs = _load_programs(args.programs)
        login = _load_login(args.broker_login) if args.broker_login else None
        ledger_token = read_token(args.ledger_token_file) if args.ledger_token_file else None
    except (ProtocolError, OSError, ValueError, KeyError, TypeError) as error:
        # An invalid program file never reaches a terminal: the gateway does not start.
        print(f"tilltap gateway run: {error}", file=sys.stderr)
        return 2
    except ConfigInvalid as error:
        print(f"tilltap gateway run: {error.detail}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        gateway = _gateway(args, programs, hold_settings, login, ledger_token)
    except ConfigInvalid as error:
        print(f"tilltap gateway run: {error.detail}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    gateway.start()
    health = None
    if args.health_out:
        health = thread("gateway-health", partial(_keep_health, args.health_out, gateway, stop),
                        exit_process)
        health.start()
    print("gateway ready", flush=True)
    stop.wait()
    gateway.stop()
    if health is not None:
        health.join()
    if args.stats_out:
        _write_stats(args.stats_out, gateway.stats.snapshot())
    return 0


def _keep_health(path: str, gateway: Gateway, stop: threading.Event) -> None:
    """Write the gateway's health at start, after each change and once more at stop. A
    write that fails (a full disk) is logged and tried again at the next change."""
    written = None
    while True:
        stopping = stop.wait(HEALTH_WRITE_INTERVAL_S)
        health = gateway.health()
        if health != written or stopping:
            try:
                _write_stats(path, health)
                written = health
            except OSError as error:
                log.error("health not written to %s: %s", path, error)
        if stopping:
            return


def _write_stats(path: str, stats: dict[str, Any]) -> None:
    """As JSON, written whole (a temporary file, then a rename)."""
    temporary = Path(f"{path}.tmp")
    temporary.write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n")
    temporary.replace(path)


def _gateway(args: argparse.Namespace, programs: dict[str, dict[str, Any]],
             hold_settings: HoldSettings, login: tuple[str, str] | None,
             ledger_token: str | None) -> Gateway:
    """The gateway the command line describes (ConfigInvalid for unusable ledger settings)."""
    return Gateway(args.id, args.broker_host, args.broker_port, args.db,
                      TerminalRegistry.load(args.terminals), programs,
                      args.ledger_url, limits=_load_json(args.limits) if args.limits else None,
                      config_version=args.config_version,
                      card_keys=CardKeys.load(args.card_keys) if args.card_keys else None,
                      hold_settings=hold_settings, settle_interval_s=args.settle_every_s,
                      broker_login=login, broker_ca=args.broker_ca,
                      ledger_token=ledger_token, ledger_ca=args.ledger_ca)


if __name__ == "__main__":
    raise SystemExit(main())
