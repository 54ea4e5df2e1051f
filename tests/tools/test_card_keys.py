"""`tilltap card keys new|for`: the master-key file is made 0600, never over another, never
printed, and handed out in the parts each user needs."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from tools.cards import load_master_keys
from tools.cli import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_new_writes_five_random_masters_0600_and_prints_none(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "masters.json"
    status, out, err = _run(capsys, "card", "keys", "new", "--out", str(path),
                            "--system-id", "chain-1")
    assert (status, err) == (0, "")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    keys = load_master_keys(path)
    assert keys.key_numbers() == [0, 1, 2, 3, 4] and keys.system_id == b"chain-1"
    masters = json.loads(path.read_text())["masters_hex"]
    assert len(set(masters.values())) == 5
    assert not any(master in out for master in masters.values())
    other = tmp_path / "other.json"
    assert _run(capsys, "card", "keys", "new", "--out", str(other))[0] == 0
    assert set(json.loads(other.read_text())["masters_hex"].values()).isdisjoint(
        masters.values())


def test_new_never_overwrites_a_file(tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "masters.json"
    path.write_text("precious")
    status, out, err = _run(capsys, "card", "keys", "new", "--out", str(path))
    assert status == 2 and out == "" and len(err.splitlines()) == 1
    assert "never overwritten" in err and path.read_text() == "precious"


def test_a_system_id_too_long_is_refused_and_nothing_written(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "masters.json"
    status, _, err = _run(capsys, "card", "keys", "new", "--out", str(path),
                          "--system-id", "x" * 24)
    assert status == 2 and "--system-id" in err and not path.exists()


def test_for_copies_only_the_masters_the_user_needs(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    full = tmp_path / "masters.json"
    assert _run(capsys, "card", "keys", "new", "--out", str(full))[0] == 0
    masters = json.loads(full.read_text())["masters_hex"]
    for user, numbers in (("gateway", ["1", "2", "3"]), ("verifier", ["1", "2"])):
        part = tmp_path / f"{user}.json"
        status, out, _ = _run(capsys, "card", "keys", "for", user, "--from", str(full),
                              "--out", str(part))
        assert status == 0 and stat.S_IMODE(part.stat().st_mode) == 0o600
        copied = json.loads(part.read_text())["masters_hex"]
        assert copied == {number: masters[number] for number in numbers}
        assert not any(master in out for master in masters.values())


@pytest.mark.parametrize(("content", "message"), [
    ("not json", "is not JSON"),
    ('{"system_id_hex": "74", "masters_hex": {"1": "' + "00" * 16 + '"}}', "no master 2"),
])
def test_for_from_a_bad_or_partial_file_is_refused(
        content: str, message: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    source = tmp_path / "source.json"
    source.write_text(content)
    part = tmp_path / "gateway.json"
    status, _, err = _run(capsys, "card", "keys", "for", "gateway", "--from", str(source),
                          "--out", str(part))
    assert status == 2 and message in err and not part.exists()
    assert "00" * 16 not in err
