"""`tilltap terminal provision`: a terminal's key, board config, registry entry, broker login.

    tilltap terminal provision --merchant M --terminal T [--out DIR] [--registry FILE]
        [--mosquitto-dir DIR] [--currency EUR] [--broker-host HOST] [--broker-port 1883]
        [--wifi-ssid SSID] [--programs FILE.json] [--broker-ca CA.pem] [--replace]

One run makes a 32-byte terminal key and a random broker password (`secrets`), then writes

    DIR/config.json       0600  the board's config, as `tilltap firmware build --config` takes
                                it: terminal, merchant, currency, key_hex, broker_host,
                                broker_port, broker_user (= T), broker_password, wifi_ssid,
                                wifi_password (from $TILLTAP_WIFI_PASSWORD, never argv), programs,
                                and broker_ca_pem: the store's CA (`--broker-ca`, the ca.pem of
                                `tilltap store tls`), which the board pins for TLS; without it
                                "broker_tls": false, a clear-text link (a warning is printed, and
                                the terminal's status shows it)
    REGISTRY              0600  the gateway's terminal registry (gateway/registry.py), T added
    MOSQUITTO_DIR/passwd  0600  T's line of a Mosquitto password file, added or replaced:
                                T:$7$101$<salt, base64>$<PBKDF2-HMAC-SHA512, base64>
    MOSQUITTO_DIR/acl     0644  T's block of a Mosquitto ACL file, added or replaced:
                                user T / topic write tilltap/v1/M/T/up/# /
                                topic read tilltap/v1/M/T/down/#

(defaults: DIR build/terminals/T, REGISTRY build/registry.json, MOSQUITTO_DIR build/mosquitto;
point the broker at the last two with `password_file` and `acl_file`, and SIGHUP it). It
prints a JSON summary with the paths; the key and password appear only in files holding
keys, which are written 0600 and atomically (temporary file, then rename).

The password hash is computed here, in mosquitto_passwd's own format ($7$ = PBKDF2-SHA512,
101 iterations as mosquitto_passwd uses, 12-byte salt, 64-byte hash, standard base64), rather
than by running `mosquitto_passwd -b`, which would put the password on a command line any
local user can see. The password is 24 random bytes, so the iteration count is not what
protects it. tests/tools/test_provision.py checks the format against the real
mosquitto_passwd and the whole login against a real broker.

A terminal id already in the registry is refused unless --replace is given: a new key for a
live terminal is a decision, never an accident (its old key stops working at once).

    ProvisionError   bad input or an existing terminal; the message names no secret
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware.settings import check_programs
from gateway.registry import TERMINAL_KEY_BYTES, TerminalRegistry
from protocol import money, topics
from protocol.errors import ProtocolError
from protocol.messages import is_id

DEFAULT_OUT_ROOT = Path("build") / "terminals"
DEFAULT_REGISTRY = Path("build") / "registry.json"
DEFAULT_MOSQUITTO_DIR = Path("build") / "mosquitto"
CONFIG_JSON = "config.json"
PASSWORD_FILE = "passwd"
ACL_FILE = "acl"
BROKER_PORT_DEFAULT = 1883
BROKER_PASSWORD_BYTES = 24
WIFI_PASSWORD_ENVIRONMENT = "TILLTAP_WIFI_PASSWORD"
# mosquitto_passwd's sha512-pbkdf2 ("$7$") entries (mosquitto 2.0 src/password_mosq.c).
PBKDF2_ITERATIONS = 101
PBKDF2_SALT_BYTES = 12
PBKDF2_HASH_BYTES = 64
PBKDF2_MARK = "7"
PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644


class ProvisionError(Exception):
    """A provisioning run that cannot go on (exit status 2); no secret in the message."""


@dataclass(frozen=True)
class ProvisionRequest:
    merchant: str
    terminal: str
    out_dir: Path | None = None  # default DEFAULT_OUT_ROOT / terminal
    registry: Path = DEFAULT_REGISTRY
    mosquitto_dir: Path = DEFAULT_MOSQUITTO_DIR
    currency: str = "EUR"
    broker_host: str = "127.0.0.1"
    broker_port: int = BROKER_PORT_DEFAULT
    wifi_ssid: str = ""
    wifi_password: str | None = None
    programs: dict[str, Any] = field(default_factory=dict)
    replace: bool = False
    broker_ca_pem: str | None = None  # the store's CA (PEM); None: clear text

    @property
    def config_dir(self) -> Path:
        return self.out_dir if self.out_dir is not None else DEFAULT_OUT_ROOT / self.terminal


# -- Mosquitto files ---------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def password_entry(user: str, password: str, salt: bytes | None = None,
                   iterations: int = PBKDF2_ITERATIONS) -> str:
    """One password-file line, `user:$7$iterations$salt$hash`, as mosquitto_passwd writes."""
    assert ":" not in user and "\n" not in user
    salt = secrets.token_bytes(PBKDF2_SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations,
                                 PBKDF2_HASH_BYTES)
    return f"{user}:${PBKDF2_MARK}${iterations}${_b64(salt)}${_b64(digest)}"


def password_matches(entry: str, user: str, password: str) -> bool:
    """True if the password-file line `entry` lets `user` in with `password` ($7$ only)."""
    name, _, hashed = entry.strip().partition(":")
    parts = hashed.split("$")
    if name != user or len(parts) != 5 or parts[0] or parts[1] != PBKDF2_MARK:
        return False
    iterations, salt, digest = int(parts[2]), base64.b64decode(parts[3]), parts[4]
    computed = password_entry(user, password, salt, iterations).rpartition("$")[2]
    return hmac.compare_digest(computed, digest)


def acl_block(merchant: str, terminal: str) -> list[str]:
    """The ACL lines that confine a terminal's login to its own topics."""
    return [
        f"user {terminal}",
        f"topic write {topics.ROOT}/{merchant}/{terminal}/{topics.UP}/#",
        f"topic read {topics.ROOT}/{merchant}/{terminal}/{topics.DOWN}/#",
    ]


def gateway_acl_block(user: str) -> list[str]:
    """The ACL lines of a gateway's login: every terminal's uplinks, every downlink."""
    return [
        f"user {user}",
        f"topic read {topics.ROOT}/+/+/{topics.UP}/#",
        f"topic write {topics.ROOT}/+/+/{topics.DOWN}/#",
    ]


def provision_gateway_login(gateway_id: str, mosquitto_dir: Path, out: Path) -> dict[str, str]:
    """A broker login for gateway `gateway_id` (user `gateway-{id}`): its password entry and
    ACL block in the Mosquitto files, and `out` (mode 0600) with the user and password the
    gateway connects with (`tilltap gateway run --broker-login out`)."""
    if not is_id(gateway_id):
        raise ProvisionError(f"gateway id {gateway_id!r} must be 1..32 of A-Z a-z 0-9 _ -")
    user = f"gateway-{gateway_id}"
    password = secrets.token_urlsafe(BROKER_PASSWORD_BYTES)
    mosquitto_dir.mkdir(parents=True, exist_ok=True)
    password_path, acl_path = mosquitto_dir / "passwd", mosquitto_dir / "acl"
    passwords = password_path.read_text().splitlines() if password_path.exists() else []
    acl = acl_path.read_text().splitlines() if acl_path.exists() else []
    write_atomically(out, json.dumps({"user": user, "password": password}) + "\n")
    write_atomically(password_path, "\n".join(
        with_password(passwords, user, password_entry(user, password))) + "\n")
    write_atomically(acl_path, "\n".join(
        with_acl_block(acl, user, gateway_acl_block(user))) + "\n", PUBLIC_MODE)
    return {"user": user, "login": str(out), "password_file": str(password_path),
            "acl_file": str(acl_path)}


def with_password(lines: list[str], user: str, entry: str) -> list[str]:
    """Password-file lines with `user`'s line replaced by `entry` (or `entry` appended)."""
    kept = [line for line in lines if line.partition(":")[0] != user]
    return [*kept, entry]


def with_acl_block(lines: list[str], user: str, block: list[str]) -> list[str]:
    """ACL lines with the block of `user` (its `user` line up to the next `user` or `pattern`
    line) replaced by `block`, or `block` appended after a blank line."""
    out: list[str] = []
    skipping = False
    for line in lines:
        words = line.split()
        if words[:1] in (["user"], ["pattern"]):
            skipping = words == ["user", user]
        if not skipping:
            out.append(line)
    while out and not out[-1].strip():
        out.pop()
    return [*out, "", *block] if out else list(block)


# -- files ----------------------------------------------------------------------------------


def write_atomically(path: Path, text: str, mode: int = PRIVATE_MODE) -> None:
    """Replace `path` with `text`: a new file of `mode` beside it, then a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(descriptor, "w") as handle:
            os.fchmod(handle.fileno(), mode)  # exactly `mode`, whatever the umask
            handle.write(text)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as error:
        raise ProvisionError(f"cannot read {path}: {error}") from None


def _load_registry(path: Path) -> TerminalRegistry:
    if not path.exists():
        return TerminalRegistry()
    try:
        return TerminalRegistry.load(path)
    except (OSError, ValueError, KeyError, TypeError, AssertionError):
        raise ProvisionError(f"{path} is not a terminal registry") from None


def _save_registry(registry: TerminalRegistry, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE))
    try:
        os.chmod(temporary, PRIVATE_MODE)
        registry.save(temporary)  # writes into the 0600 file, keeping its mode
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


# -- provisioning ---------------------------------------------------------------------------


def _check(request: ProvisionRequest) -> None:
    for name in ("merchant", "terminal"):
        if not is_id(getattr(request, name)):
            raise ProvisionError(f"--{name} must be 1..32 of A-Z a-z 0-9 _ -")
    try:
        money.check_currency(request.currency)
        check_programs(request.programs)
    except ProtocolError as error:
        raise ProvisionError(f"{error.reason}: {error.detail}") from None
    if not 1 <= request.broker_port <= 0xFFFF:
        raise ProvisionError("--broker-port must be 1..65535")
    if not request.broker_host:
        raise ProvisionError("--broker-host must not be empty")


def board_config(request: ProvisionRequest, key: bytes, broker_password: str) -> dict[str, Any]:
    """config.json for the board (firmware.boards.CONFIG_REQUIRED and the optional fields)."""
    config: dict[str, Any] = {
        "terminal": request.terminal,
        "merchant": request.merchant,
        "currency": request.currency,
        "key_hex": key.hex(),
        "broker_host": request.broker_host,
        "broker_port": request.broker_port,
        "broker_user": request.terminal,
        "broker_password": broker_password,
        "wifi_ssid": request.wifi_ssid,
        "programs": request.programs,
    }
    if request.wifi_password is not None:
        config["wifi_password"] = request.wifi_password
    if request.broker_ca_pem is not None:
        config["broker_ca_pem"] = request.broker_ca_pem
    else:
        config["broker_tls"] = False  # said outright: the board refuses a config silent on it
    return config


def provision(request: ProvisionRequest) -> dict[str, Any]:
    """Provision one terminal; returns the summary (paths, ids; no secrets)."""
    _check(request)
    registry = _load_registry(request.registry)
    config_path = request.config_dir / CONFIG_JSON
    if not request.replace:
        if request.terminal in registry.ids():
            raise ProvisionError(f"terminal {request.terminal} is already in {request.registry}; "
                                 "--replace issues it a new key")
        if config_path.exists():
            raise ProvisionError(f"{config_path} exists; --replace overwrites it")
    password_path = request.mosquitto_dir / PASSWORD_FILE
    acl_path = request.mosquitto_dir / ACL_FILE
    passwords = _read_lines(password_path)
    acl = _read_lines(acl_path)

    key = secrets.token_bytes(TERMINAL_KEY_BYTES)
    broker_password = secrets.token_urlsafe(BROKER_PASSWORD_BYTES)
    config = board_config(request, key, broker_password)
    write_atomically(config_path, json.dumps(config, indent=2, sort_keys=True) + "\n")
    entry = password_entry(request.terminal, broker_password)
    write_atomically(password_path,
                     "\n".join(with_password(passwords, request.terminal, entry)) + "\n")
    block = acl_block(request.merchant, request.terminal)
    write_atomically(acl_path, "\n".join(with_acl_block(acl, request.terminal, block)) + "\n",
                     PUBLIC_MODE)
    registry.add(request.terminal, request.merchant, key)
    _save_registry(registry, request.registry)
    return {
        "terminal": request.terminal,
        "merchant": request.merchant,
        "broker_user": request.terminal,
        "config": str(config_path),
        "registry": str(request.registry),
        "password_file": str(password_path),
        "acl_file": str(acl_path),
        "topics": {"write": block[1].split()[-1], "read": block[2].split()[-1]},
    }


def _read_programs(path: str | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        programs = json.loads(Path(path).read_text())
    except OSError as error:
        raise ProvisionError(f"cannot read {path}: {error.strerror}") from None
    except ValueError:
        raise ProvisionError(f"{path} is not JSON") from None
    if not isinstance(programs, dict):
        raise ProvisionError(f"{path} must hold a JSON object of programs")
    return programs


def read_broker_ca(path: str | None) -> str | None:
    """The store's CA certificate (PEM text) from `path`, or None without one."""
    if path is None:
        return None
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise ProvisionError(f"cannot read {path}: {getattr(error, 'strerror', error)}") \
            from None
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ProvisionError(f"{path} is not a PEM certificate (the ca.pem of store tls)")
    return text


def provision_command(merchant: str, terminal: str, out: str | None = None,
                      registry: str | None = None, mosquitto_dir: str | None = None,
                      currency: str = "EUR", broker_host: str = "127.0.0.1",
                      broker_port: int = BROKER_PORT_DEFAULT, wifi_ssid: str = "",
                      programs: str | None = None, replace: bool = False,
                      broker_ca: str | None = None) -> int:
    """`tilltap terminal provision`: print the summary; 0 done, 2 bad input."""
    try:
        request = ProvisionRequest(
            merchant=merchant, terminal=terminal,
            out_dir=Path(out) if out is not None else None,
            registry=Path(registry) if registry is not None else DEFAULT_REGISTRY,
            mosquitto_dir=Path(mosquitto_dir) if mosquitto_dir is not None
            else DEFAULT_MOSQUITTO_DIR,
            currency=currency, broker_host=broker_host, broker_port=broker_port,
            wifi_ssid=wifi_ssid, wifi_password=os.environ.get(WIFI_PASSWORD_ENVIRONMENT),
            programs=_read_programs(programs), replace=replace,
            broker_ca_pem=read_broker_ca(broker_ca),
        )
        summary = provision(request)
    except ProvisionError as error:
        print(f"tilltap terminal provision: {error}", file=sys.stderr)
        return 2
    if broker_ca is None:
        print("tilltap terminal provision: warning: no --broker-ca, so the board talks to the "
              "broker in clear text (broker_tls false)", file=sys.stderr)
    print(json.dumps(summary, indent=2, sort_keys=True))
    return 0
