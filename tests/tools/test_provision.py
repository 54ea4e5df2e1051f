"""`tilltap terminal provision`: the files it writes (modes, formats the board, the gateway and
Mosquitto read), that it never prints a secret, and, on a private Mosquitto with
`allow_anonymous false`, that a terminal's login reaches its own topics and nobody else's."""

from __future__ import annotations

import json
import queue
import shutil
import stat
import subprocess
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from gateway.registry import TerminalRegistry
from tests.support.mosquitto import MosquittoBroker
from tools import firmware, provision
from tools.cli import main

MERCHANT = "m-01"
WAIT_S = 5.0
QUIET_S = 0.5  # how long "nothing arrives" is watched for, after a later message did arrive
NOT_AUTHORIZED = 0x87  # paho's reason code for MQTT 3.1.1 CONNACK 5, "not authorized"
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"


def provision_terminal(tmp_path: Path, terminal: str, *extra: str) -> int:
    return main(["terminal", "provision", "--merchant", MERCHANT, "--terminal", terminal,
                 "--out", str(tmp_path / "terminals" / terminal),
                 "--registry", str(tmp_path / "registry.json"),
                 "--mosquitto-dir", str(tmp_path / "mosquitto"), *extra])


def config_of(tmp_path: Path, terminal: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (tmp_path / "terminals" / terminal / "config.json").read_text())
    return data


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- the files --------------------------------------------------------------------------------


def test_provisioning_writes_the_board_config_registry_password_and_acl(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TILLTAP_WIFI_PASSWORD", "wifi-secret-9")
    assert provision_terminal(tmp_path, "t-0001", "--wifi-ssid", "shop",
                              "--broker-host", "192.0.2.10") == 0
    out, err = capsys.readouterr()
    summary = json.loads(out)
    config_path = tmp_path / "terminals" / "t-0001" / "config.json"
    config = firmware.read_config(config_path)  # what `tilltap firmware build --config` takes
    assert mode(config_path) == 0o600
    assert config["terminal"] == "t-0001" and config["merchant"] == MERCHANT
    assert config["currency"] == "EUR" and config["programs"] == {}
    assert (config["broker_host"], config["broker_port"]) == ("192.0.2.10", 1883)
    assert (config["wifi_ssid"], config["wifi_password"]) == ("shop", "wifi-secret-9")
    key = bytes.fromhex(config["key_hex"])
    assert len(key) == 32 and config["broker_user"] == "t-0001"

    registry_path = tmp_path / "registry.json"
    assert mode(registry_path) == 0o600
    registered = TerminalRegistry.load(registry_path).get("t-0001")
    assert registered.key == key and registered.merchant == MERCHANT

    password_path = tmp_path / "mosquitto" / "passwd"
    assert mode(password_path) == 0o600
    (line,) = password_path.read_text().splitlines()
    assert line.startswith("t-0001:$7$101$")
    assert provision.password_matches(line, "t-0001", config["broker_password"])
    assert (tmp_path / "mosquitto" / "acl").read_text() == (
        "user t-0001\n"
        "topic write tilltap/v1/m-01/t-0001/up/#\n"
        "topic read tilltap/v1/m-01/t-0001/down/#\n")

    for secret in (config["key_hex"], config["broker_password"], "wifi-secret-9"):
        assert secret not in out and secret not in err
    assert summary["config"] == str(config_path)
    assert summary["topics"] == {"write": "tilltap/v1/m-01/t-0001/up/#",
                                 "read": "tilltap/v1/m-01/t-0001/down/#"}


def test_a_second_terminal_joins_the_same_registry_and_broker_files(tmp_path: Path) -> None:
    assert provision_terminal(tmp_path, "t-0001") == 0
    assert provision_terminal(tmp_path, "t-0002") == 0
    registry = TerminalRegistry.load(tmp_path / "registry.json")
    assert registry.ids() == ["t-0001", "t-0002"]
    assert registry.get("t-0001").key != registry.get("t-0002").key
    lines = (tmp_path / "mosquitto" / "passwd").read_text().splitlines()
    assert [line.partition(":")[0] for line in lines] == ["t-0001", "t-0002"]
    acl = (tmp_path / "mosquitto" / "acl").read_text()
    assert acl.count("user ") == 2 and "\n\nuser t-0002\n" in acl


def test_an_existing_terminal_is_refused_unless_replaced(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert provision_terminal(tmp_path, "t-0001") == 0
    assert provision_terminal(tmp_path, "t-0002") == 0
    old_key = config_of(tmp_path, "t-0001")["key_hex"]
    capsys.readouterr()
    assert provision_terminal(tmp_path, "t-0001") == 2
    assert "already in" in capsys.readouterr().err
    assert provision_terminal(tmp_path, "t-0001", "--replace") == 0
    config = config_of(tmp_path, "t-0001")
    assert config["key_hex"] != old_key
    registry = TerminalRegistry.load(tmp_path / "registry.json")
    assert registry.get("t-0001").key.hex() == config["key_hex"]
    lines = (tmp_path / "mosquitto" / "passwd").read_text().splitlines()
    assert sorted(line.partition(":")[0] for line in lines) == ["t-0001", "t-0002"]
    (entry,) = [line for line in lines if line.startswith("t-0001:")]
    assert provision.password_matches(entry, "t-0001", config["broker_password"])
    acl = (tmp_path / "mosquitto" / "acl").read_text()
    assert acl.count("user t-0001\n") == 1 and acl.count("user t-0002\n") == 1


@pytest.mark.parametrize(("argv", "message"), [
    (["--terminal", "t/1"], "argument --terminal: 't/1' is not an id"),
    (["--terminal", "t+"], "argument --terminal: 't+' is not an id"),
    (["--merchant", "m#"], "argument --merchant: 'm#' is not an id"),
    (["--currency", "XXX"], "currency_unknown"),
    (["--broker-port", "0"], "--broker-port"),
    (["--programs", "/nonexistent/programs.json"], "cannot read"),
])
def test_bad_input_exits_2_and_writes_nothing(argv: list[str], message: str, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    options = {"--merchant": MERCHANT, "--terminal": "t-0001"}
    options.update(zip(argv[::2], argv[1::2], strict=True))
    args = [word for option in options.items() for word in option]
    status = main(["terminal", "provision", *args, "--out", str(tmp_path / "out"),
                   "--registry", str(tmp_path / "registry.json"),
                   "--mosquitto-dir", str(tmp_path / "mosquitto")])
    assert status == 2 and message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_a_broken_registry_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "registry.json").write_text("{}")
    assert provision_terminal(tmp_path, "t-0001") == 2
    assert "not a terminal registry" in capsys.readouterr().err
    assert not (tmp_path / "terminals").exists()


# -- mosquitto_passwd's format ------------------------------------------------------------------


def test_entries_are_in_mosquitto_passwd_format(tmp_path: Path) -> None:
    if not Path(MOSQUITTO_PASSWD).exists():
        pytest.skip("mosquitto_passwd is not installed (Debian package mosquitto)")
    password_file = tmp_path / "passwd"
    subprocess.run([MOSQUITTO_PASSWD, "-c", "-b", str(password_file), "alice", "s3cret"],
                   check=True, capture_output=True, timeout=10)
    theirs = password_file.read_text().strip()
    ours = provision.password_entry("alice", "s3cret")
    assert provision.password_matches(theirs, "alice", "s3cret")  # same algorithm and encoding
    assert not provision.password_matches(theirs, "alice", "s3cret!")
    their_fields, our_fields = theirs.split("$"), ours.split("$")
    assert [len(field) for field in their_fields] == [len(field) for field in our_fields]
    assert their_fields[:3] == our_fields[:3] == ["alice:", "7", "101"]


# -- against a real broker --------------------------------------------------------------------


class Client:
    """A paho MQTT 3.1.1 client that records its CONNACK, SUBACKs and messages."""

    def __init__(self, broker: MosquittoBroker, name: str, password: str | None) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{name}",
                                  protocol=mqtt.MQTTv311)
        if password is not None:
            self.client.username_pw_set(name, password)
        self.connack: queue.Queue[int] = queue.Queue()
        self.subacks: queue.Queue[list[int]] = queue.Queue()
        self.messages: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.published = threading.Event()
        self.client.on_connect = lambda c, u, f, reason, p: self.connack.put(reason.value)
        self.client.on_subscribe = lambda c, u, mid, reasons, p: self.subacks.put(
            [reason.value for reason in reasons])
        self.client.on_message = lambda c, u, message: self.messages.put(
            (message.topic, bytes(message.payload)))
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        self.rc = self.connack.get(timeout=WAIT_S)

    def subscribe(self, topic: str) -> list[int]:
        self.client.subscribe(topic, qos=1)
        return self.subacks.get(timeout=WAIT_S)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(WAIT_S)

    def next_message(self) -> tuple[str, bytes]:
        return self.messages.get(timeout=WAIT_S)

    def nothing_more(self) -> bool:
        try:
            self.messages.get(timeout=QUIET_S)
        except queue.Empty:
            return True
        return False

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.mark.e2e
def test_a_provisioned_terminal_reaches_its_own_topics_and_no_others(tmp_path: Path) -> None:
    assert provision_terminal(tmp_path, "t-0001") == 0
    assert provision_terminal(tmp_path, "t-0002") == 0
    mosquitto_dir = tmp_path / "mosquitto"
    # The gateway's own login, as an operator would add it: every uplink, every downlink.
    gateway_password = "gateway-password-for-this-test"
    password_path, acl_path = mosquitto_dir / "passwd", mosquitto_dir / "acl"
    passwords = password_path.read_text().splitlines()
    password_path.write_text("\n".join(provision.with_password(
        passwords, "gateway", provision.password_entry("gateway", gateway_password))) + "\n")
    acl = provision.with_acl_block(acl_path.read_text().splitlines(), "gateway", [
        "user gateway", "topic read tilltap/v1/+/+/up/#", "topic write tilltap/v1/+/+/down/#"])
    acl_path.write_text("\n".join(acl) + "\n")
    one, two = config_of(tmp_path, "t-0001"), config_of(tmp_path, "t-0002")
    up_one, up_two = "tilltap/v1/m-01/t-0001/up/txn", "tilltap/v1/m-01/t-0002/up/txn"
    down_one, down_two = "tilltap/v1/m-01/t-0001/down/ack", "tilltap/v1/m-01/t-0002/down/ack"

    extra = ["allow_anonymous false", f"password_file {password_path}", f"acl_file {acl_path}"]
    with MosquittoBroker(extra_config=extra) as broker:
        for name, password in (("anonymous", None), ("t-0001", two["broker_password"])):
            refused = Client(broker, name, password)
            refused.close()
            assert refused.rc == NOT_AUTHORIZED
        gateway = Client(broker, "gateway", gateway_password)
        terminal = Client(broker, "t-0001", one["broker_password"])
        other = Client(broker, "t-0002", two["broker_password"])
        try:
            assert gateway.rc == terminal.rc == other.rc == 0
            assert gateway.subscribe("tilltap/v1/+/+/up/#") == [1]
            assert terminal.subscribe("tilltap/v1/m-01/t-0001/down/#") == [1]
            # Mosquitto 2.0 grants this subscription and then checks each delivery against the ACL.
            terminal.subscribe("tilltap/v1/m-01/t-0002/down/#")

            terminal.publish(up_two, b"forged by t-0001")  # dropped by the broker
            terminal.publish(up_one, b"txn from t-0001")
            assert gateway.next_message() == (up_one, b"txn from t-0001")
            other.publish(up_two, b"txn from t-0002")
            assert gateway.next_message() == (up_two, b"txn from t-0002")
            assert gateway.nothing_more()

            gateway.publish(down_two, b"ack for t-0002")
            gateway.publish(down_one, b"ack for t-0001")
            assert terminal.next_message() == (down_one, b"ack for t-0001")
            assert terminal.nothing_more()
            terminal.publish(down_one, b"t-0001 may not write its downlink")
            assert terminal.nothing_more()
        finally:
            for client in (gateway, terminal, other):
                client.close()
