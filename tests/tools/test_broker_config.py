"""`tilltap store broker-config`: the store's Mosquitto configuration (the deployment test,
tests/e2e/test_deployment.py, runs a broker on it)."""

from __future__ import annotations

import grp
import os
from pathlib import Path

import pytest

from tools.cli import main


def _provisioned(tmp: Path) -> None:
    assert main(["terminal", "provision", "--merchant", "M1", "--terminal", "T1", "--out",
                 str(tmp / "T1"), "--registry", str(tmp / "terminals.json"),
                 "--mosquitto-dir", str(tmp / "mq")]) == 0
    assert main(["store", "tls", "--out", str(tmp / "tls"), "--host", "127.0.0.1"]) == 0


def test_the_configuration_has_no_anonymous_or_clear_listener(tmp_path: Path) -> None:
    _provisioned(tmp_path)
    out = tmp_path / "mosquitto.conf"
    assert main(["store", "broker-config", "--out", str(out), "--mosquitto-dir",
                 str(tmp_path / "mq"), "--tls-dir", str(tmp_path / "tls"), "--port", "8883",
                 "--bind", "10.0.0.2"]) == 0
    lines = out.read_text().splitlines()
    assert [line for line in lines if line.startswith("listener")] == ["listener 8883 10.0.0.2"]
    for required in ("allow_anonymous false", "use_username_as_clientid true",
                     "max_packet_size 16384", "set_tcp_nodelay true", "tls_version tlsv1.2",
                     f"password_file {(tmp_path / 'mq' / 'passwd').resolve()}",
                     f"acl_file {(tmp_path / 'mq' / 'acl').resolve()}",
                     f"certfile {(tmp_path / 'tls' / 'broker.pem').resolve()}"):
        assert required in lines
    assert not any(line.startswith("allow_anonymous true") for line in lines)


def test_the_group_mosquitto_runs_as_may_read_the_secret_files(tmp_path: Path) -> None:
    _provisioned(tmp_path)
    group = grp.getgrgid(os.getegid()).gr_name  # a group this test may hand files to
    assert main(["store", "broker-config", "--out", str(tmp_path / "m.conf"), "--mosquitto-dir",
                 str(tmp_path / "mq"), "--tls-dir", str(tmp_path / "tls"), "--group",
                 group]) == 0
    for path in (tmp_path / "mq" / "passwd", tmp_path / "mq" / "acl",
                 tmp_path / "tls" / "broker.key"):
        assert path.stat().st_mode & 0o777 == 0o640
        assert path.stat().st_gid == os.getegid()
    assert (tmp_path / "tls" / "ca.key").stat().st_mode & 0o777 == 0o600  # stays the operator's


@pytest.mark.parametrize("extra", [["--group", "no-such-group-tilltap"], ["--port", "0"]])
def test_mistakes_are_one_line_and_exit_2(tmp_path: Path, extra: list[str],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    _provisioned(tmp_path)
    capsys.readouterr()
    assert main(["store", "broker-config", "--out", str(tmp_path / "m.conf"), "--mosquitto-dir",
                 str(tmp_path / "mq"), "--tls-dir", str(tmp_path / "tls"), *extra]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert main(["store", "broker-config", "--out", str(tmp_path / "m.conf"), "--mosquitto-dir",
                 str(tmp_path / "nothing"), "--tls-dir", str(tmp_path / "tls")]) == 2
    assert not (tmp_path / "m.conf").exists()
