"""`tilltap gateway run --config FILE` (tools/gateway_run.py): the settings of a TOML file,
checked as the options are, under the command line and the TILLTAP_* variables; and the
shipped example, docs/gateway.example.toml, with real files where it names them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tools.command import ENVIRONMENT_VARIABLES, OutsideFailure
from tools.gateway_run import _arguments, _parser, main

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = REPO_ROOT / "docs" / "gateway.example.toml"
PROCESS_TIMEOUT_S = 60


@pytest.fixture(autouse=True)
def no_variables(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The runner's own TILLTAP_* variables must not decide these tests."""
    for variable in ENVIRONMENT_VARIABLES.values():
        monkeypatch.delenv(variable, raising=False)
    yield


def _example_folder(folder: Path) -> Path:
    """The example in `folder`, with every file it names made for real (certificates,
    registry, programs, limits, keys, login, token); returns the example's path."""
    from gateway.registry import TerminalRegistry
    from tools.cards import new_master_keys
    from tools.tls import make_server_tls, make_store_tls

    folder.mkdir(exist_ok=True)
    shutil.copy(EXAMPLE, folder / "gateway.toml")
    make_store_tls(folder / "tls", "192.0.2.10")
    ledger_tls = make_server_tls(folder / "ledger-tls", "ledger.example", "ledger CA", "ledger")
    shutil.copy(ledger_tls["ca.pem"], folder / "ledger-ca.pem")
    (folder / "gateway-login.json").write_text('{"user": "gateway-gw1", "password": "pw"}')
    registry = TerminalRegistry()
    registry.add("T1", "M1", bytes(32))
    registry.save(folder / "registry.json")
    shutil.copy(REPO_ROOT / "tools" / "demo_programs.toml", folder / "programs.toml")
    (folder / "limits.json").write_text(json.dumps(
        {"txn_minor_max": 2000, "card_offline_minor_max": 5000,
         "terminal_offline_minor_max": 50000, "offline_s_max": 3600, "offline_txn_max": 50}))
    (folder / "gateway-keys.json").write_text(
        json.dumps(new_master_keys(b"tilltap-test").as_json()))
    (folder / "ledger.token").write_text("gateway-gw1:secret\n")
    return folder / "gateway.toml"


def test_the_example_parses_with_paths_from_its_own_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run from another folder, every relative path of the example is taken from the
    example's folder; numbers are numbers; what the file leaves out keeps its default."""
    _example_folder(tmp_path / "store")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    args = _arguments(_parser(), ["--config", "../store/gateway.toml"])
    store = tmp_path / "store"
    assert Path(args.db) == store / "gateway.db"
    assert Path(args.registry) == store / "registry.json"
    assert Path(args.broker_ca) == store / "tls" / "ca.pem"
    assert Path(args.health_out) == store / "health" / "gateway-health.json"
    assert (args.id, args.broker_host, args.broker_port) == ("gw1", "192.0.2.10", 8883)
    assert args.ledger_url == "https://ledger.example:8443"
    assert args.settle_every_s == 300 and args.metrics_port == 9464
    assert args.lease_s == _parser().get_default("lease_s")  # not in the file


def test_the_example_gets_past_every_file_check_to_the_broker(tmp_path: Path) -> None:
    """Every file the example names is read and accepted (the CAs loaded, the programs
    validated): the run stops only at the broker, which the command line moved to a port
    where nothing listens; no store is created."""
    config = _example_folder(tmp_path)
    with pytest.raises(OutsideFailure, match="cannot connect to the broker at 127.0.0.1:1"):
        main(["--config", str(config), "--broker-host", "127.0.0.1", "--broker-port", "1"])
    assert not (tmp_path / "gateway.db").exists()


def test_a_gateway_runs_from_a_config_file_and_keeps_its_store_beside_it(
        tmp_path: Path, mosquitto: Any) -> None:
    """Started from another folder with only --config, the gateway connects to the real
    broker the file names and creates its store where the file says, relative to the file;
    SIGTERM stops it cleanly."""
    from gateway.registry import TerminalRegistry

    store = tmp_path / "store"
    store.mkdir()
    TerminalRegistry().save(store / "registry.json")
    shutil.copy(REPO_ROOT / "tools" / "demo_programs.toml", store / "programs.toml")
    (store / "gateway.toml").write_text(
        f'db = "gateway.db"\nregistry = "registry.json"\nprograms = "programs.toml"\n'
        f'broker_host = "127.0.0.1"\nbroker_port = {mosquitto.port}\nsettle_every_s = 0\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    environment = {name: value for name, value in os.environ.items()
                   if name not in ENVIRONMENT_VARIABLES.values()}
    gateway = subprocess.Popen(
        [sys.executable, "-m", "tools.gateway_run", "--config", "../store/gateway.toml"],
        cwd=elsewhere, env={**environment, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert gateway.stdout is not None
        ready = gateway.stdout.readline().strip()  # its first line, once it serves
    finally:
        gateway.terminate()
        _, errors = gateway.communicate(timeout=PROCESS_TIMEOUT_S)
    assert ready == "gateway ready", errors
    assert gateway.returncode == 0, errors
    assert (store / "gateway.db").is_file()
    assert list(elsewhere.iterdir()) == []


def test_a_flag_wins_over_its_variable_which_wins_over_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('db = "from-file.db"\nregistry = "r.json"\nprograms = "p.toml"\n'
                      'ledger_url = "http://127.0.0.1:3"\n')
    from_file = _arguments(_parser(), ["--config", str(config)])
    assert from_file.ledger_url == "http://127.0.0.1:3"
    assert Path(from_file.db) == tmp_path / "from-file.db"
    monkeypatch.setenv("TILLTAP_LEDGER_URL", "http://127.0.0.1:2")
    monkeypatch.setenv("TILLTAP_GATEWAY_DB", "from-variable.db")
    from_variable = _arguments(_parser(), ["--config", str(config)])
    assert from_variable.ledger_url == "http://127.0.0.1:2"
    assert from_variable.db == "from-variable.db"
    from_flag = _arguments(_parser(), ["--config", str(config), "--ledger-url",
                                       "http://127.0.0.1:1", "--db", "from-flag.db"])
    assert (from_flag.ledger_url, from_flag.db) == ("http://127.0.0.1:1", "from-flag.db")


def test_required_files_may_come_from_the_file_or_the_command_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('programs = "p.toml"\n')
    args = _arguments(_parser(), ["--config", str(config), "--db", "g.db", "--registry", "r"])
    assert Path(args.programs) == tmp_path / "p.toml"
    with pytest.raises(SystemExit) as stop:
        _arguments(_parser(), ["--config", str(config), "--db", "g.db"])
    assert stop.value.code == 2
    assert "required: --registry" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "message"), [
    ('id = "gw1"\n\nbroker_prot = 1883\n', "gateway.toml:3: broker_prot: unknown setting"),
    ('terminals = "r.json"\n', "terminals: unknown setting (its name is now registry)"),
    ('config = "other.toml"\n', "config: unknown setting"),
    ('broker_port = "abc"\n', "broker_port: 'abc' is not a TCP port"),
    ('broker_port = "1883"\n', "broker_port: '1883' is not a number, without quotes"),
    ('broker_port = 70000\n', "broker_port: 70000 is not a TCP port"),
    ('broker_host = 10\n', "broker_host: 10 is not text, in quotes"),
    ('id = "gw 1"\n', "id: 'gw 1' is not an id"),
    ('settle_every_s = -1\n', "settle_every_s: -1 is not a number of seconds >= 0"),
    ('lease_s = 0.5\n', "lease_s: 0.5 is shorter than 1 s"),
    ('ledger_url = "ledger.example:8443"\n', "is not an http(s)://host URL"),
    ('config_version = 1.5\n', "config_version: '1.5' is not a whole number"),
    ('hold_ttl_s = "long"\n', "hold_ttl_s: invalid float value: 'long'"),
    ('broker_ca = "missing.pem"\n', "broker_ca: no file"),
    ('limits = ["a", "b"]\n', "limits: ['a', 'b'] is not text or a number"),
    ('metrics_port = true\n', "metrics_port: True is not text or a number"),
    ("[gateway]\nid = 'gw1'\n", "gateway.toml:1: gateway: unknown setting"),
    ("id = \n", "gateway.toml: not valid TOML: Invalid value (at line 1, column 6)"),
])
def test_a_bad_setting_is_one_line_naming_its_line_and_key_and_nothing_is_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, message: str) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(text)
    before = sorted(tmp_path.iterdir())
    code = main(["--config", str(config), "--db", str(tmp_path / "gw.db"),
                 "--registry", "r.json", "--programs", "p.toml", "--broker-port", "1"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("tilltap gateway run: ") and len(err.splitlines()) == 1
    assert message in err
    assert sorted(tmp_path.iterdir()) == before


def test_an_unreadable_or_non_utf8_file_is_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    latin = tmp_path / "latin.toml"
    latin.write_bytes(b'id = "gw1"\nbroker_host = "caf\xe9"\n')
    for path, message in ((tmp_path / "missing.toml", "No such file or directory"),
                          (tmp_path, "Is a directory"),
                          (latin, "latin.toml:2: not UTF-8")):
        code = main(["--config", str(path)])
        err = capsys.readouterr().err
        assert code == 2 and len(err.splitlines()) == 1
        assert message in err
