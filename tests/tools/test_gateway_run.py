"""`tilltap gateway run` (tools/gateway_run.py): arguments and files become a gateway."""

from __future__ import annotations

from typing import Any

from tools.gateway_run import main as gateway_main


def main(argv: list[str]) -> int:
    """The exit status, whether the command returned it or argparse exited with it."""
    try:
        return gateway_main(argv)
    except SystemExit as stop:
        assert isinstance(stop.code, int)
        return stop.code


def test_an_invalid_program_file_stops_the_gateway_before_anything_is_published(
        tmp_path: Any, capsys: Any) -> None:
    bad = tmp_path / "programs.toml"
    bad.write_text('[programs.p]\nversion = 1\ncurrency = "EUR"\n\n'
                   '[programs.p.points]\nearn_bp = 2.5\n')
    code = main(["--db", str(tmp_path / "gw.db"), "--terminals", str(tmp_path / "none.json"),
                 "--programs", str(bad), "--broker-port", "1"])
    assert code == 2
    assert "programs.toml:6: programs.p.points.earn_bp" in capsys.readouterr().err
    assert not (tmp_path / "gw.db").exists()  # nothing was started


def test_a_broken_login_file_is_one_line_and_exit_2(tmp_path: Any, capsys: Any) -> None:
    import json

    from tools.demo import DEMO_PROGRAMS

    programs = tmp_path / "programs.json"
    programs.write_text(json.dumps(DEMO_PROGRAMS))
    login = tmp_path / "login.json"
    for text in ("not json", '{"user": "gateway-gw1"}', '{"user": 1, "password": 2}'):
        login.write_text(text)
        code = main(["--db", str(tmp_path / "gw.db"), "--terminals", str(tmp_path / "t.json"),
                     "--programs", str(programs), "--broker-login", str(login)])
        assert code == 2
        err = capsys.readouterr().err
        assert err.startswith("tilltap gateway run:") and len(err.strip().splitlines()) == 1
        assert "program" not in err  # the programs were fine: the login is what failed
    assert not (tmp_path / "gw.db").exists()


def test_a_metrics_port_in_use_is_one_line_and_exit_2_and_leaves_no_store(
        tmp_path: Any, capsys: Any, mosquitto: Any) -> None:
    import json
    import socket

    from gateway.registry import TerminalRegistry
    from tools.demo import DEMO_PROGRAMS

    (tmp_path / "programs.json").write_text(json.dumps(DEMO_PROGRAMS))
    TerminalRegistry().save(tmp_path / "t.json")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        code = main(["--db", str(tmp_path / "gw.db"), "--terminals", str(tmp_path / "t.json"),
                     "--programs", str(tmp_path / "programs.json"), "--broker-port",
                     str(mosquitto.port), "--metrics-port", str(taken.getsockname()[1])])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("tilltap gateway run: --metrics-host 127.0.0.1 --metrics-port")
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "gw.db").exists()


def test_a_ledger_hold_url_needs_a_ledger_url_and_is_checked_like_it(
        tmp_path: Any, capsys: Any) -> None:
    import json

    from gateway.registry import TerminalRegistry
    from tools.demo import DEMO_PROGRAMS

    (tmp_path / "programs.json").write_text(json.dumps(DEMO_PROGRAMS))
    TerminalRegistry().save(tmp_path / "t.json")
    files = ["--db", str(tmp_path / "gw.db"), "--terminals", str(tmp_path / "t.json"),
             "--programs", str(tmp_path / "programs.json"), "--broker-port", "1"]
    for ledger, hold_url, expected in (
            ([], "http://127.0.0.1:2", "--ledger-hold-url needs --ledger-url"),
            (["--ledger-url", "http://127.0.0.1:1"], "ftp://ledger", "ftp://ledger")):
        code = main([*files, *ledger, "--ledger-hold-url", hold_url])
        assert code == 2
        err = capsys.readouterr().err
        assert err.startswith("tilltap gateway run:") and len(err.strip().splitlines()) == 1
        assert expected in err
    assert not (tmp_path / "gw.db").exists()
