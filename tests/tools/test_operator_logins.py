"""`tilltap ledger login add NAME --role clerk|manager`: a back-office operator with a password
read from standard input, kept only as a salted scrypt record; mistakes exit 2 and change
nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ledger import auth, passwords

TILLTAP = [sys.executable, "-c", "import sys; from tools.cli import main; sys.exit(main())"]
PASSWORD = "the shop's long password"


def tilltap(*argv: str, stdin: str = "", cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TILLTAP, *argv], input=stdin, capture_output=True, text=True,
                          cwd=cwd, timeout=60, check=False)


def test_an_operator_is_added_with_its_password_from_stdin_kept_only_as_scrypt(
        tmp_path: Path) -> None:
    done = tilltap("ledger", "login", "add", "mia", "--role", "manager", "--logins",
                   "logins.json", stdin=PASSWORD + "\n", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"login": "mia", "role": "manager"}
    text = (tmp_path / "logins.json").read_text()
    assert PASSWORD not in text
    assert (tmp_path / "logins.json").stat().st_mode & 0o077 == 0
    login = auth.load_logins(tmp_path / "logins.json")["mia"]
    assert login.role == "manager" and auth.BLOCK_CARD in login.actions
    assert passwords.verify(login.password_scrypt, PASSWORD)
    assert not passwords.verify(login.password_scrypt, PASSWORD + "x")
    listed = tilltap("ledger", "login", "list", "--logins", "logins.json", cwd=tmp_path)
    assert json.loads(listed.stdout) == [{"login": "mia", "role": "manager"}]


@pytest.mark.parametrize(("argv", "stdin", "words"), [
    (["--role", "clerk"], "", "a password has 10 to 200 characters"),
    (["--role", "clerk"], "short\n", "a password has 10 to 200 characters"),
    (["--role", "clerk", "--token-out", "t.token"], PASSWORD + "\n", "leave out --token-out"),
    (["--role", "reader"], "", "needs --token-out"),
])
def test_operator_mistakes_exit_2_with_one_line_and_change_nothing(
        tmp_path: Path, argv: list[str], stdin: str, words: str) -> None:
    logins = tmp_path / "logins.json"
    logins.write_text('{"version": 1, "logins": {}}\n')
    before = logins.read_text()
    done = tilltap("ledger", "login", "add", "carl", "--logins", "logins.json", *argv,
                   stdin=stdin, cwd=tmp_path)
    assert done.returncode == 2
    assert words in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert logins.read_text() == before
    assert not (tmp_path / "t.token").exists()


def test_a_logins_file_with_a_broken_password_record_is_refused() -> None:
    with pytest.raises(auth.LoginsInvalid, match="password_scrypt"):
        auth.parse_logins({"version": 1, "logins": {
            "mia": {"role": "manager", "password_scrypt": "scrypt$16384$8$1$00$11"}}})
    with pytest.raises(auth.LoginsInvalid, match="password_scrypt"):
        auth.parse_logins({"version": 1, "logins": {
            "mia": {"role": "clerk", "secret_sha256": "0" * 64}}})
