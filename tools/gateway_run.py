"""`tilltap gateway run`: the gateway service from the command line.

Reads the terminal registry, the card programs (TOML as docs/programs.md, or JSON by program
id), the offline limits and the card keys, builds a `gateway.service.Gateway` and runs it
until SIGTERM or SIGINT. An invalid program file never reaches a terminal: the gateway does
not start (exit 2). Run twice on one `--db`, the second is the standby: it waits for the
store's lease and takes over from the first (gateway/lease.py; it exits 75 if it ever loses
the lease). `python -m tools.gateway_run --help` lists the options.

The settings may also come from a TOML file, `--config FILE` (docs/gateway.example.toml):
each key is a long option's name with `_` for `-` (`broker_host = "192.0.2.10"`), its value
checked as the option's would be; a relative path in it is relative to the file's folder.
An option on the command line wins over a TILLTAP_* variable (tools/command.py), which wins
over the file, which wins over the built-in default.

It logs JSON lines on stderr (`--log-format text` for a person; tools/logs.py and
docs/deployment.md "Logs"). SIGHUP reads the terminal registry (--registry) again: terminals
added to it are served from then on, removed ones refused; a file that cannot be used is
logged and the registry in use kept (gateway/service.py `reload_registry`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import socket
import ssl
import sys
import threading
import tomllib
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from gateway.card_auth import CardKeys
from gateway.card_feed import FEED_POLL_INTERVAL_S
from gateway.fleet_report import FLEET_REPORT_INTERVAL_S
from gateway.lease import LEASE_S, LEASE_S_MIN, Lease
from gateway.ledger_holds import HoldSettings
from gateway.metrics import MetricsServer
from gateway.registry import TerminalRegistry
from gateway.service import BLOCK_POLL_INTERVAL_S, POST_WITHIN_S, SETTLE_INTERVAL_S, Gateway
from gateway.stage import exit_process, thread
from ledger.client import LedgerClient, read_token
from ledger.errors import ConfigInvalid
from protocol.errors import ProtocolError
from protocol.keys import KEY_SDM_FILE_READ, KEY_SDM_META_READ
from protocol.offline import check_limits
from protocol.programs import validate_programs
from tools.cards import CardToolError, load_master_keys
from tools.command import (
    OneLineParser,
    OutsideFailure,
    UsageError,
    add_environment_option,
    check_writable_path,
    environment_value,
    existing_file,
    file_to_write,
    guarded,
    http_url,
    identifier,
    non_negative_int,
    non_negative_seconds,
    old_spelling,
    open_read_only,
    port,
)
from tools.ledger_logins import add_client_arguments
from tools.logs import add_log_format_option, configure
from tools.programs import ProgramFileError, check_fits, key_lines, line_of, load_programs

HEALTH_WRITE_INTERVAL_S = 0.5  # --health-out: how often the health is looked at
BROKER_PROBE_TIMEOUT_S = 5.0
# MQTT 3.1.1 CONNECT: clean session, keep-alive 10 s, empty client id and no login, so the
# broker names the probe itself and the gateway's persistent session is never touched.
MQTT_PROBE_CONNECT = bytes.fromhex("100c00044d5154540402000a0000")
MQTT_CONNACK = 0x20
MQTT_DISCONNECT = bytes.fromhex("e000")

log = logging.getLogger(__name__)


def _load_programs(path: str) -> dict[str, dict[str, Any]]:
    """A TOML program file (docs/programs.md), checked with its line numbers; or a JSON
    object of programs by id (as validated programs are exported), checked the same way."""
    if path.endswith(".json"):
        data: dict[str, dict[str, Any]] = json.loads(Path(path).read_text())
        programs = validate_programs({"programs": data})
        check_fits(programs, path)  # as a TOML file's: a terminal must be able to take them
        return programs
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


FILE_ERRORS = (ProtocolError, OSError, ValueError, KeyError, TypeError, AssertionError,
               CardToolError)


def _read(option: str, path: str, load: Callable[[str], Any]) -> Any:
    """What `load` makes of the file given to `option`; UsageError naming both if it cannot."""
    try:
        return load(path)
    except OSError as error:
        raise UsageError(f"{option} {path}: {error.strerror}") from None
    except ConfigInvalid as error:
        raise UsageError(f"{option} {path}: {error.detail}") from None
    except ProgramFileError as error:
        raise UsageError(str(error)) from None
    except FILE_ERRORS as error:
        detail = f"missing {error}" if isinstance(error, KeyError) else str(error)
        raise UsageError(f"{option} {path} is not usable: {detail or type(error).__name__}"
                         ) from None


def _limits(path: str) -> dict[str, int]:
    limits = _load_json(path)
    check_limits(limits)
    return limits


def _card_keys(path: str) -> CardKeys:
    masters = load_master_keys(path)
    return CardKeys(masters.master(KEY_SDM_META_READ), masters.master(KEY_SDM_FILE_READ),
                    masters.system_id)


def _store_path(path: str) -> str:
    """--db: a file in an existing folder; if it exists and holds anything, a gateway's."""
    check_writable_path(Path(path))
    if Path(path).exists() and Path(path).stat().st_size > 0:
        open_read_only(path, "gateway").close()
    return path


def _parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="tilltap gateway run", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", metavar="FILE", default=None,
                        help="settings from this TOML file (docs/gateway.example.toml): "
                             "keys are the long options with _ for -, relative paths are "
                             "relative to the file's folder; options on the command line "
                             "and TILLTAP_* variables win over it")
    parser.add_argument("--id", type=identifier, default="gw1",
                        help="this gateway's id, as the ledger knows it (gw1)")
    parser.add_argument("--broker-host", default="127.0.0.1",
                        help="the store's MQTT broker (127.0.0.1)")
    parser.add_argument("--broker-port", type=port, default=1883, help="its port (1883)")
    add_environment_option(parser, "--db", required=True, metavar="FILE",
                           help="SQLite file of the gateway's journal (its folder must exist)")
    parser.add_argument("--registry", "--terminals", required=True, metavar="FILE",
                        help="terminal registry JSON (tilltap terminal provision)"
                             + old_spelling("--terminals"))
    parser.add_argument("--programs", required=True, metavar="FILE",
                        help="card programs: TOML (docs/programs.md), or JSON by program id")
    add_client_arguments(parser)
    add_environment_option(parser, "--ledger-hold-url", type=http_url,
                           help="send holds to this ledger process instead (the same books "
                                "as --ledger-url's, which keeps batches, feeds and reads), so "
                                "posting batches does not slow authorizations (without it or "
                                "the variable: --ledger-url)")
    parser.add_argument("--limits", default=None, metavar="FILE",
                        help="offline limits JSON (default: none)")
    parser.add_argument("--config-version", type=non_negative_int, default=1,
                        help="lowest configuration version to publish (1)")
    parser.add_argument("--broker-login", default=None, metavar="FILE",
                        help="the gateway's broker login, JSON {user, password}, as "
                             "`tilltap gateway provision` writes it (default: anonymous)")
    parser.add_argument("--broker-ca", default=None, type=existing_file, metavar="FILE",
                        help="TLS to the broker, trusting this CA (tilltap store tls)")
    parser.add_argument("--settle-every-s", type=non_negative_seconds,
                        default=SETTLE_INTERVAL_S,
                        help="settle with the ledger (expiry first) this often; 0: never")
    parser.add_argument("--post-within-s", type=non_negative_seconds, default=POST_WITHIN_S,
                        help="post accepted records to the ledger this soon after they are "
                             f"committed, so other stores see them ({POST_WITHIN_S:g}); "
                             "0: only when settling")
    parser.add_argument("--block-poll-s", type=non_negative_seconds,
                        default=BLOCK_POLL_INTERVAL_S,
                        help="read the ledger's card blocks this often, so a card blocked at "
                             "the ledger reaches this store's terminals; 0: never")
    parser.add_argument("--feed-poll-s", type=non_negative_seconds,
                        default=FEED_POLL_INTERVAL_S,
                        help="read other stores' transactions from the ledger's card feed "
                             f"this often ({FEED_POLL_INTERVAL_S:g}); 0: never")
    parser.add_argument("--fleet-report-every-s", type=non_negative_seconds,
                        default=FLEET_REPORT_INTERVAL_S,
                        help="report the terminals' presence and health to the ledger's "
                             f"fleet page this often ({FLEET_REPORT_INTERVAL_S:g}); 0: never")
    parser.add_argument("--lease-s", type=_lease_seconds, default=LEASE_S,
                        help="the store's lease: a standby started on the same --db waits, "
                             "and takes over this long after the active gateway last renewed "
                             f"it, or at once if that process is gone ({LEASE_S:g})")
    parser.add_argument("--master-key", "--card-keys", default=None, metavar="FILE",
                        help="master-key file (masters 1, 2, 3 suffice: tilltap card keys "
                             "for gateway): cards must then prove themselves with a SUN"
                             + old_spelling("--card-keys"))
    parser.add_argument("--stats-out", default=None, type=file_to_write, metavar="FILE",
                        help="write the gateway's counters (received, accepted, rejected by "
                             "reason, ...) to this JSON file when it stops")
    parser.add_argument("--metrics-port", type=_listen_port, default=None,
                        help="serve GET /metrics (Prometheus) and GET /health on this port "
                             "(0: any free one, printed); default: not served")
    parser.add_argument("--metrics-host", default="127.0.0.1",
                        help="address --metrics-port listens on (127.0.0.1; no login: keep "
                             "it on loopback or a management network)")
    parser.add_argument("--health-out", default=None, type=file_to_write, metavar="FILE",
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
    parser.add_argument("--stand-in-store-minor-max", type=int,
                        default=defaults.stand_in_store_minor_max,
                        help="card value the whole store approves while the ledger is out of"
                             " reach")
    parser.add_argument("--stand-in-snapshot-age-max-s", type=float,
                        default=defaults.stand_in_snapshot_age_max_s,
                        help="no stand-in on a card book not heard from the ledger (answer"
                             " or card feed) for this long")
    add_log_format_option(parser)
    return parser


def _arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """The command line over the settings of its --config file, if any: each setting the
    file holds becomes its option's default (so no longer required on the command line),
    unless the option's TILLTAP_* variable is set. UsageError for a file that is not usable."""
    pre = OneLineParser(prog=parser.prog, add_help=False)
    pre.add_argument("--config")
    known, _ = pre.parse_known_args(argv)
    if known.config is not None:
        for action, value in _config_settings(parser, known.config).items():
            action.default = value
            action.required = False
    return parser.parse_args(argv)


def _config_settings(parser: argparse.ArgumentParser,
                     path: str) -> dict[argparse.Action, Any]:
    """The settings of a --config file, by option, each checked as its option checks the
    command line; none whose variable is set (the variable wins). UsageError naming the file
    and the line (and the key) of the first that is not usable."""
    try:
        raw = Path(path).read_bytes()
    except OSError as error:
        raise UsageError(f"--config {path}: {error.strerror or error}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        line = raw[:error.start].count(b"\n") + 1
        raise UsageError(f"{path}:{line}: not UTF-8") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise UsageError(f"{path}: not valid TOML: {error}") from None
    canonical: dict[str, argparse.Action] = {}
    old_names: dict[str, str] = {}
    for option in parser._actions:
        names = [name[2:].replace("-", "_") for name in option.option_strings
                 if name.startswith("--")]
        if names and option.dest not in ("help", "config"):
            canonical[names[0]] = option
            old_names.update(dict.fromkeys(names[1:], names[0]))
    lines = key_lines(text)
    folder = Path(os.path.abspath(path)).parent  # abspath: no `..` left in the paths
    settings: dict[argparse.Action, Any] = {}
    for key, value in document.items():
        where = f"{path}:{line_of(lines, (key,))}: {key}"
        action = canonical.get(key)
        if action is None:
            now = f" (its name is now {old_names[key]})" if key in old_names else ""
            raise UsageError(f"{where}: unknown setting{now}")
        try:
            checked = _config_value(action, value, folder)
        except (argparse.ArgumentTypeError, ValueError) as error:
            raise UsageError(f"{where}: {error}") from None
        if environment_value(action.option_strings[0]) is None:
            settings[action] = checked
    return settings


def _config_value(action: argparse.Action, value: object, folder: Path) -> Any:
    """A TOML value for `action`, checked with the option's own `type` check: text where the
    option takes text, a number where it takes a number, true/false for a switch; a relative
    path (an option whose metavar is FILE) is taken from `folder`."""
    if isinstance(action, argparse._StoreConstAction):  # store_true, store_false
        if not isinstance(value, bool):
            raise argparse.ArgumentTypeError(f"{value!r} is not true or false")
        return action.const if value else action.default
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise argparse.ArgumentTypeError(f"{value!r} is not text or a number")
    text = str(value)
    if action.metavar == "FILE" and isinstance(value, str) and value:
        text = str(folder / value)  # an absolute value stays as it is
    check: Callable[[str], Any] = action.type if callable(action.type) else str
    try:
        result = check(text)
    except ValueError:  # int, float: argparse's own words
        raise argparse.ArgumentTypeError(
            f"invalid {getattr(check, '__name__', 'value')} value: {value!r}") from None
    if isinstance(result, str) != isinstance(value, str):
        wanted = "text, in quotes" if isinstance(result, str) else "a number, without quotes"
        raise argparse.ArgumentTypeError(f"{value!r} is not {wanted}")
    if action.choices is not None and result not in action.choices:
        raise argparse.ArgumentTypeError(
            f"{value!r} is not one of {', '.join(map(str, action.choices))}")
    return result


def main(argv: list[str] | None = None) -> int:
    """Every setting and file is checked before anything is written; then the broker is
    tried; only then is the store opened. A person's mistake exits 2 with one line, a broker
    that is absent, refuses or is no MQTT broker exits 1 (tools/command.py)."""
    parser = _parser()
    try:
        args = _arguments(parser, argv)
    except UsageError as error:
        print(f"tilltap gateway run: {error}", file=sys.stderr)
        return 2
    try:
        hold_settings = HoldSettings(
            hold_ttl_s=args.hold_ttl_s, ledger_hold_ttl_s=args.ledger_hold_ttl_s,
            stand_in_txn_minor_max=args.stand_in_txn_minor_max,
            stand_in_card_minor_max=args.stand_in_card_minor_max,
            stand_in_store_minor_max=args.stand_in_store_minor_max,
            stand_in_snapshot_age_max_s=args.stand_in_snapshot_age_max_s)
    except ValueError as error:
        parser.error(str(error))
    try:
        # An invalid program file never reaches a terminal: the gateway does not start.
        settings = _Settings(args, hold_settings)
        settings.check_store_and_ledger()
    except UsageError as error:
        print(f"tilltap gateway run: {error}", file=sys.stderr)
        return 2
    probe_broker(args.broker_host, args.broker_port, args.broker_ca)
    configure(args.log_format, static={"gateway": args.id})
    created = not Path(args.db).exists()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # SIGHUP only raises a flag (a handler runs between any two bytecodes of the main
    # thread): the registry is read by a thread of its own, outside every lock.
    reload_asked = threading.Event()
    signal.signal(signal.SIGHUP, lambda *_: reload_asked.set())
    lease = _take_lease(args.db, args.lease_s, stop)
    if lease is None:  # stopped while a standby: it had written nothing
        return 0
    gateway = _gateway(args, settings, lease)
    metrics = None
    try:
        if args.metrics_port is not None:
            metrics = _metrics_server(gateway, args.metrics_host, args.metrics_port)
        gateway.start()
    except UsageError as error:
        _abandon(gateway, args.db if created else None)
        print(f"tilltap gateway run: {error}", file=sys.stderr)
        return 2
    except (OSError, ConnectionError) as error:
        _abandon(gateway, args.db if created else None)
        raise OutsideFailure(f"cannot connect to the broker at {args.broker_host}:"
                             f"{args.broker_port}: {error}") from None
    if metrics is not None:
        metrics.start()
        print(f"metrics {metrics.url}/metrics", flush=True)
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    health = None
    if args.health_out:
        health = thread("gateway-health", partial(_keep_health, args.health_out, gateway, stop),
                        exit_process)
        health.start()
    reloader = thread("gateway-reload", partial(_reload_on_signal, gateway, args.registry,
                                                reload_asked, stop), exit_process)
    reloader.start()
    print("gateway ready", flush=True)
    stop.wait()
    reload_asked.set()  # the reloader stops waiting
    reloader.join()
    if metrics is not None:
        metrics.stop()
    gateway.stop()
    lease.release()  # after the last write: a standby takes over at once
    if health is not None:
        health.join()
    if args.stats_out:
        _write_stats(args.stats_out, gateway.stats.snapshot())
    return 0


class _Settings:
    """The files the command line names, read and checked (UsageError for the first that
    is not usable)."""

    def __init__(self, args: argparse.Namespace, hold_settings: HoldSettings) -> None:
        self.args = args
        self.hold_settings = hold_settings
        self.programs: dict[str, dict[str, Any]] = _read("--programs", args.programs,
                                                        _load_programs)
        self.login = (_read("--broker-login", args.broker_login, _load_login)
                      if args.broker_login else None)
        self.ledger_token = (_read("--ledger-token-file", args.ledger_token_file, read_token)
                             if args.ledger_token_file else None)
        self.registry: TerminalRegistry = _read("--registry", args.registry,
                                                TerminalRegistry.load)
        self.limits = _read("--limits", args.limits, _limits) if args.limits else None
        self.card_keys = _read("--master-key", args.master_key,
                               _card_keys) if args.master_key else None

    def check_store_and_ledger(self) -> None:
        """The store's folder (and kind, if it exists) and the ledger's URL, CA and token."""
        _store_path(self.args.db)
        if self.args.ledger_hold_url and not self.args.ledger_url:
            raise UsageError("--ledger-hold-url needs --ledger-url (batches, feeds and reads)")
        for url in (self.args.ledger_url, self.args.ledger_hold_url):
            if not url:
                continue
            try:
                LedgerClient(url, token=self.ledger_token, ca_file=self.args.ledger_ca)
            except ConfigInvalid as error:
                raise UsageError(error.detail) from None


def _listen_port(text: str) -> int:
    """A TCP port to listen on: 0 (any free one) or 1..65535."""
    return 0 if text.strip() == "0" else port(text)


def _metrics_server(gateway: Gateway, host: str, port_number: int) -> MetricsServer:
    """Bound now, served from start(); a port in use or an unknown address: UsageError."""
    try:
        return MetricsServer(gateway, host, port_number, exit_process)
    except OSError as error:
        detail = error.strerror or str(error)
        raise UsageError(f"--metrics-host {host} --metrics-port {port_number}: {detail}"
                         ) from None


def _abandon(gateway: Gateway, created_db: str | None) -> None:
    """A gateway that could not start: close it, and remove the store if this run made it
    (nothing was received into it)."""
    gateway.mqtt.stop()
    gateway.store.close()
    if gateway.lease is not None:
        gateway.lease.release()
    if created_db is not None:
        for suffix in ("", "-wal", "-shm"):
            Path(created_db + suffix).unlink(missing_ok=True)


def probe_broker(host: str, port_number: int, ca_file: str | None) -> None:
    """Is an MQTT broker answering at host:port (over TLS trusting `ca_file`, if given)?
    It must answer a CONNECT with a CONNACK (accepted or not); OutsideFailure otherwise, so
    a broker that is absent, refuses or is some other server stops the gateway before its
    store is opened."""
    where = f"{host}:{port_number}"
    try:
        with socket.create_connection((host, port_number), BROKER_PROBE_TIMEOUT_S) as raw:
            connection: socket.socket = raw
            if ca_file is not None:
                context = ssl.create_default_context(cafile=ca_file)
                connection = context.wrap_socket(raw, server_hostname=host)
            connection.settimeout(BROKER_PROBE_TIMEOUT_S)
            connection.sendall(MQTT_PROBE_CONNECT)
            answer = connection.recv(1)
            if answer[:1] == bytes((MQTT_CONNACK,)):
                connection.sendall(MQTT_DISCONNECT)
    except ssl.SSLError as error:
        raise OutsideFailure(f"TLS to the broker at {where} failed: {error}") from None
    except OSError as error:
        detail = error.strerror or str(error) or type(error).__name__
        raise OutsideFailure(f"cannot connect to the broker at {where}: {detail}") from None
    if answer[:1] != bytes((MQTT_CONNACK,)):
        raise OutsideFailure(f"{where} is not an MQTT broker (it did not answer CONNECT "
                             "with CONNACK)")


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


def _reload_on_signal(gateway: Gateway, path: str, asked: threading.Event,
                      stop: threading.Event) -> None:
    """Read the registry again each time SIGHUP asks, until the gateway stops. Signals
    that come while a reload runs make one more reload, not one each."""
    while True:
        asked.wait()
        if stop.is_set():
            return
        asked.clear()
        gateway.reload_registry(path)


def _write_stats(path: str, stats: dict[str, Any]) -> None:
    """As JSON, written whole (a temporary file, then a rename)."""
    temporary = Path(f"{path}.tmp")
    temporary.write_text(json.dumps(stats, indent=2, sort_keys=True) + "\n")
    temporary.replace(path)


def _take_lease(path: str, lease_s: float, stop: threading.Event) -> Lease | None:
    """The store's lease (gateway/lease.py), kept renewed from now on; a standby until it
    can be taken (it says `gateway standby` then), None if stopped first."""
    lease = Lease(path, lease_s)
    if not lease.wait(stop, on_standby=lambda: print("gateway standby", flush=True)):
        lease.close()
        return None
    lease.keep(exit_process)
    return lease


def _lease_seconds(text: str) -> float:
    seconds = non_negative_seconds(text)
    if seconds < LEASE_S_MIN:
        raise argparse.ArgumentTypeError(f"{text} is shorter than {LEASE_S_MIN:g} s")
    return seconds


def _gateway(args: argparse.Namespace, settings: _Settings, lease: Lease) -> Gateway:
    """The gateway the command line describes, from its checked settings."""
    return Gateway(args.id, args.broker_host, args.broker_port, args.db, settings.registry,
                   settings.programs, args.ledger_url, limits=settings.limits,
                   config_version=args.config_version, card_keys=settings.card_keys,
                   hold_settings=settings.hold_settings, settle_interval_s=args.settle_every_s,
                   post_within_s=args.post_within_s,
                   broker_login=settings.login, broker_ca=args.broker_ca,
                   ledger_token=settings.ledger_token, ledger_ca=args.ledger_ca,
                   block_poll_s=args.block_poll_s or None,
                   feed_poll_s=args.feed_poll_s or None, lease=lease,
                   ledger_hold_url=args.ledger_hold_url,
                   fleet_report_s=args.fleet_report_every_s or None)


if __name__ == "__main__":
    raise SystemExit(guarded("tilltap gateway run", main))
