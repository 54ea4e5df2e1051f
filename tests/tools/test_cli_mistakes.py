"""Every `tilltap` subcommand, given the mistakes a person makes (issue 16, "Why"): one line on
stderr, the documented exit status (2 their mistake, 1 something outside failed, 130 Ctrl-C),
no traceback, and no file in the folder created or changed (names, sizes, modification times,
and the tables of the gateway's and the ledger's databases lying there).

Each case runs `python -m tools.cli` as a process in its own copy of one folder of files; the
processes run side by side (module fixture `outcomes`), each test then checks one case. Words
like `TILLTAP_LEDGER_DSN=...` before the command are set in its environment, as a shell would;
the runner's own TILLTAP_* variables are removed first.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PROCESS_TIMEOUT_S = 60
PARALLEL_PROCESSES = 4
# The first case's setup runs every case's process (the `outcomes` fixture): a few minutes
# when the machine's cores are shared with other test workers, not the default 120 s.
pytestmark = pytest.mark.timeout(900)
REFUSED = "127.0.0.1:1"  # nothing listens on port 1: connection refused
KEY_HEX = "ab" * 32
HTTP_PORT = "{http_port}"  # replaced by the port of a plain HTTP server (not a broker)

GATEWAY = ["gateway", "run", "--db", "new.db", "--registry", "terminals.json",
           "--programs", "programs.toml", "--broker-port", "1"]
GATEWAY_WITH_LEDGER = [*GATEWAY, "--ledger-url", f"http://{REFUSED}"]
VARIABLE = re.compile(r"^[A-Z][A-Z0-9_]*=")  # NAME=value before the command
PERSONALIZE = ["card", "personalize", "--master-key", "masters.json", "--program", "gift",
               "--merchant", "M1", "--reader", "udp:127.0.0.1:47999",
               "--url-prefix", "https://cards.example/c", "--ledger-url", f"http://{REFUSED}"]
PROVISION = ["terminal", "provision", "--merchant", "M1", "--terminal", "T9",
             "--out", "out", "--registry", "registry.json", "--mosquitto-dir", "mosquitto"]


def _with(argv: list[str], option: str, value: str) -> list[str]:
    """`argv` with `option` set to `value` (replaced if there, appended if not)."""
    if option in argv:
        at = argv.index(option)
        return [*argv[:at + 1], value, *argv[at + 2:]]
    return [*argv, option, value]


# (argv, exit status, a fragment of the one line on stderr)
CASES: list[tuple[list[str], int, str]] = [
    # tilltap itself
    ([], 2, "required: command"),
    (["nonsense"], 2, "invalid choice"),
    # gateway run: files, folders, settings, the broker
    (_with(GATEWAY, "--registry", "missing.json"), 2, "--registry missing.json"),
    (_with(GATEWAY, "--registry", "garbage.json"), 2, "--registry garbage.json"),
    ([*GATEWAY[:4], "--terminals", "garbage.json", *GATEWAY[6:]], 2,  # the old name
     "--registry garbage.json"),
    (_with(GATEWAY, "--limits", "garbage.json"), 2, "--limits garbage.json"),
    (_with(GATEWAY, "--limits", "missing.json"), 2, "--limits missing.json"),
    (_with(GATEWAY, "--limits", "bad_limits.json"), 2, "unknown limit"),
    (_with(GATEWAY, "--master-key", "garbage.json"), 2, "--master-key garbage.json"),
    (_with(GATEWAY, "--master-key", "missing.json"), 2, "--master-key missing.json"),
    (_with(GATEWAY, "--card-keys", "masters_without_1.json"), 2,  # the old name
     "--master-key masters_without_1.json"),
    (_with(GATEWAY, "--programs", "missing.toml"), 2, "--programs missing.toml"),
    (_with(GATEWAY, "--programs", "latin.toml"), 2, "not UTF-8"),
    (_with(GATEWAY, "--broker-login", "garbage.json"), 2, "--broker-login"),
    (_with(GATEWAY, "--db", "nodir/gw.db"), 2, "no folder"),
    (_with(GATEWAY, "--db", "ledger.db"), 2, "not a gateway database"),
    (_with(GATEWAY, "--ledger-url", "ledger.example:8443"), 2, "http(s)://"),
    (_with(GATEWAY_WITH_LEDGER, "--ledger-hold-url", "ledger.example:8443"), 2, "http(s)://"),
    (_with(GATEWAY, "--ledger-hold-url", f"http://{REFUSED}"), 2, "needs --ledger-url"),
    (_with(GATEWAY_WITH_LEDGER, "--ledger-token-file", "missing.token"), 2,
     "cannot read ledger token"),
    (_with(_with(GATEWAY, "--ledger-url", "https://127.0.0.1:1"), "--ledger-ca",
           "garbage.json"), 2, "ledger CA garbage.json"),
    (_with(GATEWAY, "--broker-ca", "missing.pem"), 2, "no file missing.pem"),
    (_with(GATEWAY, "--metrics-port", "99999"), 2, "not a TCP port"),
    (_with(GATEWAY, "--stats-out", "garbage.json/stats.json"), 2, "not a folder"),
    (_with(GATEWAY, "--hold-ttl-s", "1"), 2, "hold_ttl_s must be over"),
    (_with(GATEWAY, "--id", "gw 1"), 2, "not an id"),
    (_with(GATEWAY, "--settle-every-s", "-1"), 2, "seconds >= 0"),
    (_with(GATEWAY, "--lease-s", "0.5"), 2, "shorter than 1 s"),
    (_with(GATEWAY, "--broker-port", "70000"), 2, "not a TCP port"),
    (_with(GATEWAY, "--broker-port", "abc"), 2, "not a TCP port"),
    (GATEWAY, 1, "cannot connect to the broker"),  # refuses
    (_with(GATEWAY, "--broker-host", "absent.invalid"), 1, "cannot connect to the broker"),
    (_with(GATEWAY, "--broker-port", HTTP_PORT), 1, "not an MQTT broker"),
    # gateway run --config FILE: the file, its keys and values, before anything is written
    (["gateway", "run", "--config", "missing.toml"], 2, "--config missing.toml: No such file"),
    (["gateway", "run", "--config", "garbage.json"], 2, "not valid TOML"),
    (["gateway", "run", "--config", "latin.toml"], 2, "latin.toml:1: not UTF-8"),
    (["gateway", "run", "--config", "gateway_unknown.toml"], 2,
     "gateway_unknown.toml:2: broker_prot: unknown setting"),
    (["gateway", "run", "--config", "gateway_old_name.toml"], 2, "its name is now registry"),
    (["gateway", "run", "--config", "gateway_port.toml"], 2,
     "gateway_port.toml:2: broker_port: 'abc' is not a TCP port"),
    (["gateway", "run", "--config", "gateway_quoted.toml"], 2,
     "settle_every_s: '30' is not a number, without quotes"),
    (["gateway", "run", "--config", "gateway_id.toml"], 2, "id: 'gw 1' is not an id"),
    (["gateway", "run", "--config", "gateway_good.toml"], 1,  # every file fine: the broker
     "cannot connect to the broker at 127.0.0.1:1"),
    (["gateway", "run", "--config", "gateway_good.toml", "--db", "nodir/gw.db"], 2,
     "no folder"),  # the command line wins over the file
    # TILLTAP_* variables: checked only by the commands that use them, and named
    (["TILLTAP_GATEWAY_DB=nodir/gw.db", "gateway", "run", "--config", "gateway_good.toml"], 2,
     "no folder"),  # the variable wins over the file
    (["TILLTAP_LEDGER_URL=ledger.example:8443", *GATEWAY], 2,
     "(from $TILLTAP_LEDGER_URL)"),
    (["TILLTAP_LEDGER_HOLD_URL=ftp://ledger", *GATEWAY_WITH_LEDGER], 2,
     "(from $TILLTAP_LEDGER_HOLD_URL)"),
    (["TILLTAP_LEDGER_TOKEN_FILE=missing.token", *GATEWAY_WITH_LEDGER], 2,
     "cannot read ledger token missing.token"),
    (["TILLTAP_LEDGER_DSN=mysql://x/y", "ledger", "serve"], 2,
     "not a database: use postgresql://... or sqlite:///path (from $TILLTAP_LEDGER_DSN)"),
    (["TILLTAP_LEDGER_DSN=sqlite:///ledger.db", "demo"], 2,
     "filesystem root"),
    (["TILLTAP_LEDGER_DSN=gateway.db", "ledger", "serve"], 2,
     "not a ledger database (it is a gateway database) (from $TILLTAP_LEDGER_DSN)"),
    (["TILLTAP_LEDGER_DSN=mysql://x/y", "report", "liability"], 2,
     "(from $TILLTAP_LEDGER_DSN)"),
    (["TILLTAP_LEDGER_DSN=gateway.db", "report", "liability"], 2, "not a ledger database"),
    ([f"TILLTAP_LEDGER_URL=http://{REFUSED}", "report", "liability", "--ledger-dsn",
      "gateway.db"], 2, "not a ledger database"),  # the option wins over the variable
    (["TILLTAP_LEDGER_DSN=gateway.db", f"TILLTAP_LEDGER_URL=http://{REFUSED}", "report",
      "liability"], 1, "unavailable"),  # neither option: the URL first
    (["TILLTAP_LEDGER_URL=ledger.example", "report", "liability"], 2,
     "(from $TILLTAP_LEDGER_URL)"),
    (["TILLTAP_LEDGER_URL=ledger.example", "card", "show", "C1"], 2,
     "(from $TILLTAP_LEDGER_URL)"),
    (["TILLTAP_GATEWAY_DB=typo.db", "gateway", "exposure"], 2,
     "no gateway database at typo.db (from $TILLTAP_GATEWAY_DB)"),
    (["TILLTAP_GATEWAY_DB=ledger.db", "gateway", "settle", "--ledger-url",
      f"http://{REFUSED}"], 2, "not a gateway database"),
    (["TILLTAP_LEDGER_URL=ledger.example", "programs", "check", "programs.toml"], 0, ""),
    # gateway settle, exposure, refusals: existing stores of the right kind only
    (["gateway", "settle", "--db", "typo.db", "--ledger-url", f"http://{REFUSED}"], 2,
     "no gateway database"),
    (["gateway", "settle", "--db", "gateway.db", "--ledger-url", "ledger:1"], 2, "http(s)://"),
    (["gateway", "exposure", "--db", "ledger.db"], 2, "not a gateway database"),
    (["gateway", "exposure", "--db", "typo.db"], 2, "no gateway database"),
    (["gateway", "refusals", "--db", "ledger.db"], 2, "not a gateway database"),
    (["gateway", "refusals", "--db", "latin.toml"], 2, "not SQLite"),
    (["gateway", "refusals", "--db", "gateway.db", "--format", "xml"], 2, "invalid choice"),
    (["gateway", "provision", "--id", "g/1", "--mosquitto-dir", "m", "--out", "l.json"], 2,
     "not an id"),
    (["gateway", "provision", "--mosquitto-dir", "garbage.json", "--out", "l.json"], 2,
     "not a folder"),
    # store
    (["store", "tls", "--out", "garbage.json", "--host", "broker"], 2, "not a folder"),
    (["store", "broker-config", "--out", "m.conf", "--mosquitto-dir", "nodir",
      "--tls-dir", "nodir"], 2, "missing"),
    (["store", "broker-config", "--out", "m.conf", "--mosquitto-dir", "m", "--tls-dir", "t",
      "--port", "0"], 2, "not a TCP port"),
    # ledger
    (["ledger", "serve", "--dsn", "ledger.db", "--port", "70000"], 2, "not a TCP port"),
    (["ledger", "serve", "--dsn", "ledger.db", "--port", "abc"], 2, "--port"),
    (["ledger", "serve", "--dsn", "sqlite:///nodir/ledger.db"], 2, "no folder"),
    (["ledger", "serve", "--dsn", "sqlite:///ledger.db"], 2, "filesystem root"),
    (["ledger", "serve", "--dsn", "gateway.db"], 2, "not a ledger database"),
    (["ledger", "serve", "--dsn", "mysql://x/y"], 2, "not a database"),
    (["ledger", "serve", "--ledger-dsn", "sqlite:///ledger.db"], 2, "filesystem root"),
    (["ledger", "serve", "--port", "8443"], 2, "--ledger-dsn is required"),
    # --programs is read and checked before the ledger starts
    (["ledger", "serve", "--dsn", "ledger.db", "--programs", "missing.toml"], 2,
     "--programs missing.toml: No such file"),
    (["ledger", "serve", "--dsn", "ledger.db", "--programs", "latin.toml"], 2,
     "latin.toml:1: not UTF-8"),
    (["ledger", "serve", "--dsn", "ledger.db", "--programs", "garbage.json"], 2,
     "not valid TOML"),
    (["ledger", "login", "add", "bad name", "--role", "reader", "--logins", "logins.json",
      "--token-out", "t.token"], 2, "login name"),
    (["ledger", "login", "add", "ok", "--role", "reader", "--logins", "garbage.json",
      "--token-out", "t.token"], 2, "not JSON"),
    (["ledger", "login", "add", "ok", "--role", "reader", "--logins", "logins.json",
      "--token-out", "nodir/t.token"], 2, "no folder"),
    (["ledger", "login", "add", "ok", "--role", "boss", "--logins", "logins.json",
      "--token-out", "t.token"], 2, "invalid choice"),
    (["ledger", "login", "list", "--logins", "missing.json"], 2, "no logins file"),
    (["ledger", "login", "remove", "x", "--logins", "garbage.json"], 2, "not JSON"),
    (["ledger", "tls", "--out", "garbage.json", "--host", "ledger"], 2, "not a folder"),
    # report: read-only, a ledger's database only
    (["report", "liability", "--dsn", "gateway.db"], 2, "not a ledger database"),
    (["report", "liability", "--ledger-dsn", "gateway.db"], 2, "not a ledger database"),
    (["report", "liability"], 2, "give --ledger-url or --ledger-dsn"),
    (["report", "liability", "--ledger-dsn", "ledger.db", "--ledger-url",
      f"http://{REFUSED}"], 2, "not allowed with argument"),
    (["report", "liability", "--dsn", "typo.db"], 2, "no ledger database"),
    (["report", "liability", "--dsn", "latin.toml"], 2, "not SQLite"),
    (["report", "segments", "--dsn", "ledger.db", "--window-days", "-3"], 2, "window_days"),
    (["report", "nonsense", "--dsn", "ledger.db"], 2, "invalid choice"),
    (["report", "liability", "--ledger-url", "ledger.example"], 2, "http(s)://"),
    (["report", "liability", "--ledger-url", f"http://{REFUSED}"], 1, "unavailable"),
    # demo: checked before anything starts
    (["demo", "--ledger-dsn", "foo://bar"], 2, "not a database"),
    (["demo", "--ledger-dsn", "sqlite:///ledger.db"], 2, "filesystem root"),
    (["demo", "--ledger-dsn", "nodir/ledger.db"], 2, "no folder"),
    (["demo", "--ledger-dsn", "gateway.db"], 2, "not a ledger database"),
    (["demo", "--ledger-dsn", "ledger.db"], 2, "needs a new database"),
    (["demo", "--terminals", "0"], 2, "at least 1"),
    (["demo", "--cards", "0"], 2, "at least 1"),
    (["demo", "--operations", "-5"], 2, "at least 1"),
    (["demo", "--operations", "2"], 2, "fewer than --terminals"),
    (["bench", "--nonsense"], 2, "unrecognized arguments"),
    (["fuzz", "--messages", "x"], 2, "invalid int value"),
    (["gauntlet", "--seed", "x"], 2, "invalid int value"),
    # firmware
    (["firmware", "build", "--board", "nope", "--out", "fw"], 2, "unknown board"),
    (["firmware", "build", "--board", "esp32_pn532", "--out", "fw",
      "--config", "config_short_key.json"], 2, "key_hex must be 64"),
    (["firmware", "build", "--board", "esp32_pn532", "--out", "fw",
      "--config", "config_slash.json"], 2, "terminal must be"),
    (["firmware", "build", "--board", "esp32_pn532", "--out", "fw",
      "--config", "config_port.json"], 2, "broker_port"),
    (["firmware", "build", "--board", "esp32_pn532", "--out", "fw",
      "--config", "garbage.json"], 2, "not valid JSON"),
    (["firmware", "build", "--board", "esp32_pn532", "--out", "garbage.json"], 2,
     "not a folder"),
    (["firmware", "deploy", "--port", "/dev/ttyNONE", "--dir", "nodir"], 2, "holds no build"),
    # programs
    (["programs", "check", "latin.toml"], 2, "not UTF-8"),
    (["programs", "check", "missing.toml"], 2, "No such file"),
    (["programs", "check", "garbage.json"], 2, "not valid TOML"),
    (["programs", "simulate", "--config", "programs.toml", "--ops", "garbage.json"], 2,
     "not JSON"),
    (["programs", "simulate", "--config", "latin.toml", "--ops", "ops.jsonl"], 2, "not UTF-8"),
    # card
    (_with(PERSONALIZE, "--ledger-url", "ledger.example:8443"), 2, "http(s)://"),
    (_with(PERSONALIZE, "--url-prefix", "cards.example/c"), 2, "--url-prefix"),
    (_with(PERSONALIZE, "--url-prefix", "http://cards.example/c"), 2, "https://"),
    (_with(PERSONALIZE, "--master-key", "masters_without_0.json"), 2, "lacks master 0"),
    (_with(PERSONALIZE, "--master-key", "garbage.json"), 2, "not JSON"),
    (_with(PERSONALIZE, "--currency", "EURO"), 2, "--currency"),
    (_with(PERSONALIZE, "--count", "0"), 2, "at least 1"),
    (_with(PERSONALIZE, "--program", "gift card"), 2, "not an id"),
    (_with(PERSONALIZE, "--reader", "nope:x"), 2, "not a reader"),
    (["card", "inspect", "--reader", "nope:x"], 2, "not a reader"),
    (["card", "inspect", "--reader", "udp:127.0.0.1:47999", "--master-key", "garbage.json"],
     2, "not JSON"),
    (["card", "verify-sun", "https://x.example/c?picc_data=zz&cmac=00", "--key", "00"], 2,
     "--key"),
    # card keys: never over an existing file, never from a file that is not a key file
    (["card", "keys", "new", "--out", "garbage.json"], 2, "never overwritten"),
    (["card", "keys", "new", "--out", "keys.json", "--system-id", "x" * 24], 2, "--system-id"),
    (["card", "keys", "for", "gateway", "--from", "garbage.json", "--out", "gw.json"], 2,
     "not JSON"),
    # card block / unblock / show: the ledger's API, one line for a bad URL or a dead ledger
    (["card", "block", "C1", "--reason", "lost", "--ledger-url", "ledger.example"], 2,
     "http(s)://"),
    (["card", "block", "C1", "--ledger-url", f"http://{REFUSED}"], 2, "--reason"),
    (["card", "unblock", "C1", "--ledger-url", f"http://{REFUSED}"], 1, "unavailable"),
    (["card", "show", "C1", "--ledger-url", f"http://{REFUSED}"], 1, "unavailable"),
    (["card", "replace", "C1", "N1", "--reason", "lost", "--ledger-url", f"http://{REFUSED}"],
     1, "unavailable"),
    (["card", "history", "C1", "--ledger-url", "ledger.example"], 2, "http(s)://"),
    (["card", "history", "C1", "--ledger-url", f"http://{REFUSED}"], 1, "unavailable"),
    (["card", "statement", "C1", "--from", "2026-01-01", "--until", "2026-01-31",
      "--ledger-url", f"http://{REFUSED}"], 1, "unavailable"),
    (["card", "statement", "C1", "--from", "1 Jan", "--until", "2026-01-31",
      "--ledger-url", f"http://{REFUSED}"], 2, "YYYY-MM-DD"),
    # targeted offers and ranking: the ledger's API; whom to grant, and a day, are checked
    (["offer", "issue", "--program", "p", "--offer", "o", "--issue", "i", "--uses", "1",
      "--until", "2026-12-31", "--card", "C1", "--ledger-url", f"http://{REFUSED}"], 1,
     "unavailable"),
    (["offer", "issue", "--program", "p", "--offer", "o", "--issue", "i", "--uses", "1",
      "--until", "2026-12-31", "--ledger-url", f"http://{REFUSED}"], 2, "say whom"),
    (["offer", "issue", "--program", "p", "--offer", "o", "--issue", "i", "--uses", "1",
      "--until", "31 Dec", "--card", "C1", "--ledger-url", f"http://{REFUSED}"], 2,
     "YYYY-MM-DD"),
    (["offer", "issue", "--program", "p", "--offer", "o", "--issue", "i", "--uses", "1",
      "--until", "2026-12-31", "--segment", "lapsing", "--days", "30",
      "--ledger-url", f"http://{REFUSED}"], 2, "--min-purchases"),
    (["offer", "report", "--program", "p", "--offer", "o", "--ledger-url",
      f"http://{REFUSED}"], 1, "unavailable"),
    (["offer", "report", "--program", "p", "--ledger-url", f"http://{REFUSED}"], 2,
     "--offer"),
    (["programs", "rank", "--program", "p", "--ledger-url", f"http://{REFUSED}"], 1,
     "unavailable"),
    (["programs", "rank", "--program", "p", "--period", "-1", "--ledger-url",
      f"http://{REFUSED}"], 2, "--period"),
    # customers: the ledger's API; an erase asks for --yes, an update for a field
    (["customer", "add", "--name", "Ana", "--ledger-url", f"http://{REFUSED}"], 1,
     "unavailable"),
    (["customer", "show", "C", "--ledger-url", f"http://{REFUSED}"], 1, "unavailable"),
    (["customer", "update", "C", "--ledger-url", f"http://{REFUSED}"], 2, "at least one field"),
    (["customer", "link", "C", "C1", "--ledger-url", f"http://{REFUSED}"], 1, "unavailable"),
    (["customer", "unlink", "C", "C1", "--ledger-url", f"http://{REFUSED}"], 1, "unavailable"),
    (["customer", "history", "C", "--format", "xml", "--ledger-url", f"http://{REFUSED}"], 2,
     "invalid choice"),
    (["customer", "export", "C", "--ledger-url", f"http://{REFUSED}"], 1, "unavailable"),
    (["customer", "erase", "C", "--ledger-url", f"http://{REFUSED}"], 2, "--yes"),
    (["customer", "find", "--phone", "0171 555", "--ledger-url", f"http://{REFUSED}"], 2,
     "phone_invalid"),
    (["customer", "find", "--email", "a@example.org", "--ledger-url", f"http://{REFUSED}"], 1,
     "unavailable"),
    (["customer", "retention", "--inactive-days", "7", "--ledger-url", f"http://{REFUSED}"], 2,
     "--inactive-days"),
    (["ledger", "customer-key", "new", "--out", "garbage.json"], 2, "never overwritten"),
    # company: the shared budget at the ledger; the body is checked before the ledger is asked
    (["company", "create", "ACME", "--name", "Acme", "--currency", "EUR", "--budget-minor",
      "5000", "--period", "day", "--ledger-url", f"http://{REFUSED}"], 1, "unavailable"),
    (["company", "create", "ACME", "--name", "Acme", "--currency", "EUE", "--budget-minor",
      "5000", "--period", "day", "--ledger-url", f"http://{REFUSED}"], 2, "ISO 4217"),
    (["company", "create", "ACME", "--name", "Acme", "--currency", "EUR", "--budget-minor",
      "50.00", "--period", "day", "--ledger-url", f"http://{REFUSED}"], 2, "minor units"),
    (["company", "create", "ACME", "--name", "Acme", "--currency", "EUR", "--budget-minor",
      "0", "--period", "day", "--ledger-url", f"http://{REFUSED}"], 2, "budget_minor"),
    (["company", "create", "ACME", "--name", "Acme", "--currency", "EUR", "--budget-minor",
      "5000", "--period", "week", "--ledger-url", f"http://{REFUSED}"], 2, "invalid choice"),
    (["company", "add-card", "ACME", "C1", "--ledger-url", f"http://{REFUSED}"], 1,
     "unavailable"),
    (["company", "remove-card", "ACME", "C1", "--ledger-url", f"http://{REFUSED}"], 1,
     "unavailable"),
    (["company", "show", "ACME", "--ledger-url", f"http://{REFUSED}"], 1, "unavailable"),
    (["company", "show", "ACME"], 2, "--ledger-url"),
    # reward: a store's count of a reward item at the ledger; numbers checked before asking
    (["reward", "stock", "--program", "coffee", "--item", "mug", "--merchant", "M1", "--set",
      "3", "--ledger-url", f"http://{REFUSED}"], 1, "unavailable"),
    (["reward", "stock", "--program", "coffee", "--item", "mug", "--merchant", "M1", "--set",
      "-1", "--ledger-url", f"http://{REFUSED}"], 2, "--set"),
    (["reward", "stock", "--program", "coffee", "--item", "mug", "--merchant", "M1", "--add",
      "0", "--ledger-url", f"http://{REFUSED}"], 2, "--add"),
    (["reward", "stock", "--program", "coffee", "--item", "mug", "--merchant", "M1", "--set",
      "3", "--add", "1", "--ledger-url", f"http://{REFUSED}"], 2, "not allowed with"),
    (["reward", "stock", "--program", "coffee", "--item", "mug", "--merchant", "M1",
      "--ledger-url", f"http://{REFUSED}"], 2, "one of the arguments"),
    (["reward", "list", "--ledger-url", f"http://{REFUSED}"], 1, "unavailable"),
    # terminal provision: nothing written before everything is known good
    (_with(PROVISION, "--registry", "garbage.json/registry.json"), 2, "not a folder"),
    (_with(PROVISION, "--registry", "garbage.json"), 2, "not a terminal registry"),
    (_with(PROVISION, "--terminal", "T/1"), 2, "not an id"),
    (_with(PROVISION, "--broker-port", "abc"), 2, "not a TCP port"),
    (_with(PROVISION, "--programs", "garbage.json"), 2, "not JSON"),
    (_with(PROVISION, "--currency", "XXX"), 2, "currency"),
    # terminal status: asks the gateway's metrics server (gateway/diag.py)
    (["terminal", "status", "T/1", "--gateway-url", f"http://{REFUSED}"], 2, "not an id"),
    (["terminal", "status", "T1", "--gateway-url", f"http://{REFUSED}", "--wait-s", "0"], 2,
     "--wait-s"),
    (["terminal", "status", "T1", "--gateway-url", f"http://{REFUSED}"], 1, "out of reach"),
    (["terminal", "status", "T1", "--gateway-url", f"http://127.0.0.1:{HTTP_PORT}"], 2,
     "not a gateway's metrics server"),
]


def _case_id(case: tuple[list[str], int, str]) -> str:
    argv, status, _ = case
    return f"{status}:" + " ".join(argv)[:90]


def _split(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """(the variables set before the command, the command's words)."""
    variables: dict[str, str] = {}
    while argv and VARIABLE.match(argv[0]):
        name, _, value = argv[0].partition("=")
        variables[name] = value
        argv = argv[1:]
    return variables, argv


# -- the folder every case runs in ----------------------------------------------------------


def _make_folder(folder: Path) -> None:
    """A gateway's store, a ledger's books, good and broken files of every kind."""
    from gateway.registry import TerminalRegistry
    from gateway.store import GatewayStore
    from ledger.books import open_books
    from tools.cards import new_master_keys

    GatewayStore(str(folder / "gateway.db")).close()
    open_books(f"sqlite:///{folder / 'ledger.db'}").close()
    shutil.copy(REPO_ROOT / "tools" / "demo_programs.toml", folder / "programs.toml")
    registry = TerminalRegistry()
    registry.add("T1", "M1", bytes(32))
    registry.save(folder / "terminals.json")
    (folder / "garbage.json").write_text("garbage{\n")
    (folder / "latin.toml").write_bytes(b"[programs.caf\xe9]\n")
    (folder / "bad_limits.json").write_text('{"nonsense_max": 1}\n')
    (folder / "ops.jsonl").write_text("")
    (folder / "logins.json").write_text('{"version": 1, "logins": {}}\n')
    masters = new_master_keys(b"tilltap-test").as_json()
    (folder / "masters.json").write_text(json.dumps(masters))
    del masters["masters_hex"]["0"]
    (folder / "masters_without_0.json").write_text(json.dumps(masters))
    del masters["masters_hex"]["1"]
    (folder / "masters_without_1.json").write_text(json.dumps(masters))
    for name, text in (
            ("gateway_good", 'db = "new.db"\nregistry = "terminals.json"\n'
                             'programs = "programs.toml"\nbroker_port = 1\n'),
            ("gateway_unknown", 'id = "gw1"\nbroker_prot = 1883\n'),
            ("gateway_old_name", 'terminals = "terminals.json"\n'),
            ("gateway_port", 'id = "gw1"\nbroker_port = "abc"\n'),
            ("gateway_quoted", 'settle_every_s = "30"\n'),
            ("gateway_id", 'id = "gw 1"\n')):
        (folder / f"{name}.toml").write_text(text)
    config = {"terminal": "T1", "merchant": "M1", "currency": "EUR", "key_hex": KEY_HEX,
              "wifi_ssid": "", "broker_host": "127.0.0.1", "broker_port": 1883}
    for name, change in (("config_short_key", {"key_hex": "abcd"}),
                         ("config_slash", {"terminal": "T/1"}),
                         ("config_port", {"broker_port": "abc"})):
        (folder / f"{name}.json").write_text(json.dumps({**config, **change}))
    # Everything above is settled on disk before any snapshot is taken.
    time.sleep(0.01)


def snapshot(folder: Path) -> dict[str, Any]:
    """Every file under `folder`: size and modification time; and each database's tables
    (read immutable: looking creates nothing)."""
    files: dict[str, Any] = {}
    for path in sorted(folder.rglob("*")):
        stat = path.stat()
        files[str(path.relative_to(folder))] = (path.is_dir(), stat.st_size, stat.st_mtime_ns)
    for name in ("gateway.db", "ledger.db"):
        uri = (folder / name).as_uri() + "?mode=ro&immutable=1"
        with sqlite3.connect(uri, uri=True) as connection:
            files[f"{name} tables"] = connection.execute(
                "SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()
        connection.close()
    return files


@dataclass
class Outcome:
    status: int
    stderr: str
    before: dict[str, Any]
    after: dict[str, Any]


def _environment(variables: dict[str, str] | None = None) -> dict[str, str]:
    """The runner's environment without its TILLTAP_* variables, with `variables`."""
    from tools.command import ENVIRONMENT_VARIABLES

    own = set(ENVIRONMENT_VARIABLES.values())
    return {**{name: value for name, value in os.environ.items() if name not in own},
            "PYTHONPATH": str(REPO_ROOT), "PYTHONDONTWRITEBYTECODE": "1", **(variables or {})}


def _run(template: Path, root: Path, number: int, line: list[str]) -> Outcome:
    folder = root / f"case{number}"
    shutil.copytree(template, folder, copy_function=shutil.copy2)
    before = snapshot(folder)
    variables, argv = _split(line)
    process = subprocess.run([sys.executable, "-m", "tools.cli", *argv], cwd=folder,
                             env=_environment(variables), capture_output=True, text=True,
                             stdin=subprocess.DEVNULL, timeout=PROCESS_TIMEOUT_S, check=False)
    return Outcome(process.returncode, process.stderr, before, snapshot(folder))


@pytest.fixture(scope="module")
def http_port() -> Iterator[int]:
    """A plain HTTP server: what a broker port that is not a broker answers."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("template")
    _make_folder(folder)
    return folder


@pytest.fixture(scope="module")
def outcomes(template: Path, http_port: int,
             tmp_path_factory: pytest.TempPathFactory) -> dict[int, Outcome]:
    """Every case, run side by side."""
    root = tmp_path_factory.mktemp("cases")
    with ThreadPoolExecutor(PARALLEL_PROCESSES) as pool:
        futures = {
            number: pool.submit(_run, template, root, number,
                                [word.replace(HTTP_PORT, str(http_port)) for word in argv])
            for number, (argv, _, _) in enumerate(CASES)}
        return {number: future.result() for number, future in futures.items()}


@pytest.mark.parametrize("number", range(len(CASES)), ids=[_case_id(c) for c in CASES])
def test_a_mistake_is_one_line_its_exit_status_and_no_file_touched(
        number: int, outcomes: dict[int, Outcome]) -> None:
    argv, status, fragment = CASES[number]
    outcome = outcomes[number]
    assert outcome.after == outcome.before
    if status == 0:  # a variable the command does not use is not its business
        assert (outcome.status, outcome.stderr) == (0, "")
        return
    lines = outcome.stderr.splitlines()
    assert "Traceback" not in outcome.stderr, outcome.stderr
    assert len(lines) == 1 and lines[0].strip(), outcome.stderr
    assert fragment in lines[0], lines[0]
    assert outcome.status == status, lines[0]


def test_every_subcommand_has_a_case() -> None:
    """The table reaches every command the parser knows (fuzz and gauntlet parse their own,
    with the same one-line errors)."""
    from tools.cli import build_parser

    commands: set[str] = set()
    parser = build_parser()
    for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
        for name, sub in action.choices.items():
            inner = [a for a in sub._actions if isinstance(a, type(action))]
            if not inner:
                commands.add(name)
            for group in inner:
                for inner_name, leaf in group.choices.items():
                    deeper = [a for a in leaf._actions if isinstance(a, type(action))]
                    if deeper:
                        commands.update(f"{name} {inner_name} {word}"
                                        for d in deeper for word in d.choices)
                    else:
                        commands.add(f"{name} {inner_name}")
    lines = [_split(line)[1] for line, _, _ in CASES]
    covered = {" ".join(w for w in argv[:3]) for argv in lines}
    covered |= {" ".join(argv[:2]) for argv in lines} | {argv[0] for argv in lines if argv}
    missing = sorted(commands - covered)
    assert not missing


def test_version_prints_the_installed_version() -> None:
    from importlib import metadata

    process = subprocess.run([sys.executable, "-m", "tools.cli", "--version"],
                             env=_environment(), capture_output=True, text=True, check=False)
    assert process.returncode == 0
    assert process.stdout.strip() == f"tilltap {metadata.version('tilltap')}"


def test_ctrl_c_stops_with_one_line_and_130(tmp_path: Path) -> None:
    """Ctrl-C while `programs simulate` waits for its operations (a FIFO nobody writes)."""
    fifo = tmp_path / "ops.fifo"
    os.mkfifo(fifo)
    process = subprocess.Popen(
        [sys.executable, "-m", "tools.cli", "programs", "simulate", "--config",
         str(REPO_ROOT / "tools" / "demo_programs.toml"), "--ops", str(fifo)],
        env=_environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + PROCESS_TIMEOUT_S
    while not _waiting_on_fifo(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=PROCESS_TIMEOUT_S)
    assert process.returncode == 130
    assert stderr == "tilltap programs simulate: interrupted\n"


def _children(pid: int) -> set[int]:
    """The processes whose parent is `pid` (from /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # ended meanwhile
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def test_ctrl_c_in_the_demo_stops_it_with_one_line_130_and_no_process_left(
        tmp_path: Path) -> None:
    """Mid-day (its terminals selling), Ctrl-C ends the demo: exit 130, one line, and the
    broker, ledger and gateway it started are gone."""
    process = subprocess.Popen([sys.executable, "-m", "tools.cli", "demo"], cwd=tmp_path,
                               env=_environment(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("issued "):  # the day's sales have begun
            break
    started = _children(process.pid)
    assert started, "the demo runs its broker as a process of its own"
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=PROCESS_TIMEOUT_S)
    assert process.returncode == 130
    assert stderr == "tilltap demo: interrupted\n"
    deadline = time.monotonic() + PROCESS_TIMEOUT_S
    while any(Path(f"/proc/{pid}").exists() for pid in started) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not [pid for pid in started if Path(f"/proc/{pid}").exists()]


def test_ledger_serve_and_report_take_the_ledger_from_the_variables(tmp_path: Path) -> None:
    """$TILLTAP_LEDGER_DSN is the database `ledger serve` makes and `report` reads; the same
    report through $TILLTAP_LEDGER_URL from that server is the same JSON."""
    database = tmp_path / "ledger.db"
    by_database = _environment({"TILLTAP_LEDGER_DSN": str(database)})
    report = [sys.executable, "-m", "tools.cli", "report", "liability", "--format", "json",
              "--as-of", "2025-11-30"]
    server = subprocess.Popen([sys.executable, "-m", "tools.cli", "ledger", "serve"],
                              env=by_database, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, cwd=tmp_path)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()  # the server's first line, once it listens
        assert url.startswith("http://127.0.0.1:"), url
        from_database = subprocess.run(report, env=by_database, capture_output=True,
                                       text=True, timeout=PROCESS_TIMEOUT_S, check=False)
        from_server = subprocess.run(report, env=_environment({"TILLTAP_LEDGER_URL": url}),
                                     capture_output=True, text=True,
                                     timeout=PROCESS_TIMEOUT_S, check=False)
    finally:
        server.terminate()
        server.wait(PROCESS_TIMEOUT_S)
    assert database.is_file()
    assert (from_database.returncode, from_database.stderr) == (0, "")
    assert (from_server.returncode, from_server.stdout) == (0, from_database.stdout)
    assert json.loads(from_database.stdout)["report"] == "liability"


def _waiting_on_fifo(pid: int) -> bool:
    """Is the process blocked opening a FIFO (Linux: its kernel wait channel)?"""
    try:
        return Path(f"/proc/{pid}/wchan").read_text() == "wait_for_partner"
    except OSError:
        return False
