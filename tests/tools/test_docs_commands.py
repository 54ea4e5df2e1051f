"""The commands README.md, docs/development.md and docs/programs.md show work as written.

A shell block in those pages is a fenced block marked ` ```sh `. Its commands are its lines
(a line ending in `\\` goes on on the next; `# ...` after two spaces is a comment), or, when
some lines start with `$ `, those lines, each followed by the output it prints. Each block
runs in a fresh copy of the repository (the files git tracks or would track, with `.venv/` and
`node_modules/` linked, `.venv/bin` first on PATH, as with the venv activated), its commands
in order, each with bash `-e -o pipefail`; each must exit 0 and print every output line the
page shows. A file a command needs that its page says where to get (programs.md's
`ops.jsonl`: section 5's example) is made first (BEFORE). Blocks marked otherwise
(` ```text `, ` ```toml `, ` ```python `) are not commands; programs.md's program file
example and the fault it shows are run by their own test below, and the README's operator
login line is checked for what it leaves in logins.json.

Not run here, each for its reason (NOT_RUN; a test checks this list against the pages, so a
new command is either run or listed):

- `make demo` (README, development.md): bootstrap, then `tilltap demo`; the same day runs in
  tests/e2e/test_business_day.py.
- `make test`, `make test PYTEST_ARGS="-k cbor"`: lint and the whole suite, this module among
  it; the selection itself is the pytest lines beside it, which run.
- `.venv/bin/tilltap firmware deploy --port /dev/ttyUSB0`: needs a board on a serial port;
  tests/tools/test_firmware_build.py checks its mpremote lines and `--dry-run` without one.
- `.venv/bin/tilltap ledger login add mia --role manager ...`: asks for the password at the
  terminal; the next line, the same command reading standard input, runs.
- `.venv/bin/tilltap ledger serve ... --tls-cert ledger.pem --tls-key ledger.key`: a service
  that runs until stopped, with a certificate the page does not make; tests/e2e/
  test_back_office.py runs the ledger so, with logins and TLS.

Also covered elsewhere, not repeated here: programs.md section 5's operations file
(tests/tools/test_programs_cli.py runs it and checks no line is declined).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import REPO_ROOT

PAGES = ("README.md", "docs/development.md", "docs/programs.md")
COMMAND_TIMEOUT_S = 300
PASSWORD = "tilltap-docs-test-password-42"  # what the README's login line reads as $PASSWORD
FENCE = re.compile(r"^```(\S*)\s*$")
COMMENT = re.compile(r"\s{2,}#\s.*$")
LINKED = (".venv", "node_modules")  # too big to copy, and what a checkout has anyway

NOT_RUN = {
    "make demo": "bootstrap, then `tilltap demo`: tests/e2e/test_business_day.py runs that day",
    "make test": "lint and the whole suite, this test among it",
    'make test PYTEST_ARGS="-k cbor"': "lint first (minutes); the pytest lines beside it run",
    ".venv/bin/tilltap firmware deploy --port /dev/ttyUSB0":
        "needs a board on a serial port (tests/tools/test_firmware_build.py: its command lines)",
    ".venv/bin/tilltap ledger login add mia --role manager --logins logins.json":
        "asks for the password at the terminal; the stdin form beside it runs",
    ".venv/bin/tilltap ledger serve --ledger-dsn sqlite:///$PWD/ledger.db --port 8443 "
    "--logins logins.json --tls-cert ledger.pem --tls-key ledger.key":
        "runs until stopped (tests/e2e/test_back_office.py runs it with logins and TLS)",
}


def section_5_operations(copy: Path) -> None:
    """programs.md: "ops.jsonl holds one operation per line, as in section 5's example"."""
    page = (copy / "docs" / "programs.md").read_text(encoding="utf-8")
    section = page[page.index("## 5. `tilltap programs simulate`"):]
    example = section[section.index("```\n") + len("```\n"):]
    (copy / "ops.jsonl").write_text(example[:example.index("```")], encoding="utf-8")


# Files a command needs that its page says where to get, made before it runs.
BEFORE = {
    "tilltap programs simulate --config examples/programs.toml --ops ops.jsonl":
        section_5_operations,
}


@dataclass
class Command:
    text: str
    output: list[str] = field(default_factory=list)  # lines the page shows it printing


@dataclass
class Block:
    page: str
    line: int  # of the opening fence, counting from 1
    commands: list[Command]

    @property
    def name(self) -> str:
        return f"{self.page}:{self.line}"


def shell_blocks(page: str, text: str) -> list[Block]:
    """The ` ```sh ` blocks of a page, with their commands."""
    blocks, body, start = [], None, 0
    for number, line in enumerate(text.splitlines(), 1):
        fence = FENCE.match(line)
        if body is None and fence:
            body, start = ([] if fence.group(1) == "sh" else None), number
            if body is None:
                body = False  # inside a block of another kind
            continue
        if body is False:
            if fence:
                body = None
            continue
        if body is not None:
            if fence:
                blocks.append(Block(page, start, commands(body)))
                body = None
            else:
                body.append(line)
    return blocks


def commands(lines: list[str]) -> list[Command]:
    if any(line.startswith("$ ") for line in lines):
        found: list[Command] = []
        for line in lines:
            if line.startswith("$ "):
                found.append(Command(line[2:].strip()))
            elif line.strip() and found:
                found[-1].output.append(line.rstrip())
        return found
    logical, pending = [], ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    texts = [" ".join(COMMENT.sub("", line).split()) for line in logical]
    return [Command(text) for text in texts if text and not text.startswith("#")]


def all_blocks() -> list[Block]:
    return [block for page in PAGES
            for block in shell_blocks(page, (REPO_ROOT / page).read_text(encoding="utf-8"))]


def runnable_blocks() -> list[Block]:
    return [block for block in all_blocks()
            if any(command.text not in NOT_RUN for command in block.commands)]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the repository as a clone would have it (plus files not yet committed)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT, capture_output=True, check=True).stdout.decode().split("\0")
    copy = tmp_path / "tilltap"
    for name in filter(None, listed):
        source = REPO_ROOT / name
        if source.is_file() and not name.startswith(LINKED):
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    for name in LINKED:
        (copy / name).symlink_to(REPO_ROOT / name)
    return copy


def environment(copy: Path) -> dict[str, str]:
    kept = {name: value for name, value in os.environ.items()
            if not name.startswith(("TILLTAP_", "PYTEST_"))}
    return kept | {"PATH": f"{copy / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
                   "PASSWORD": PASSWORD}


def run(copy: Path, command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", command], cwd=copy,
                          env=environment(copy), capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT_S)


def test_every_shell_command_in_the_pages_is_run_or_listed_with_its_reason() -> None:
    found = {command.text for block in all_blocks() for command in block.commands}
    assert set(NOT_RUN) <= found, f"listed but no longer in the pages: {set(NOT_RUN) - found}"
    assert set(BEFORE) <= found - set(NOT_RUN)
    assert runnable_blocks(), "no shell block to run"


@pytest.mark.parametrize("block", runnable_blocks(), ids=lambda block: block.name)
def test_the_shell_block_works_as_written(block: Block, checkout: Path) -> None:
    for command in block.commands:
        if command.text in NOT_RUN:
            continue
        if command.text in BEFORE:
            BEFORE[command.text](checkout)
        result = run(checkout, command.text)
        assert result.returncode == 0, (command.text, result.stdout[-2000:],
                                        result.stderr[-2000:])
        printed = result.stdout.splitlines()
        missing = [line for line in command.output if line not in printed]
        assert missing == [], (command.text, result.stdout[-2000:])


def test_the_readme_login_line_adds_a_clerk_with_the_password_from_stdin(
        checkout: Path) -> None:
    """What the README's block leaves behind: carl in logins.json, a clerk, with a scrypt
    record of the password and never the password itself."""
    (block,) = [block for block in all_blocks()
                if any("login add carl" in command.text for command in block.commands)]
    (line,) = [command.text for command in block.commands if "login add carl" in command.text]
    assert run(checkout, line).returncode == 0
    logins = (checkout / "logins.json").read_text()
    assert '"carl"' in logins and '"clerk"' in logins and "password_scrypt" in logins
    assert PASSWORD not in logins


def test_the_program_file_example_checks_and_its_fault_reads_as_documented(
        tmp_path: Path) -> None:
    page = (REPO_ROOT / "docs" / "programs.md").read_text(encoding="utf-8")
    section = page[page.index("## 1. The file"):]
    example = section[section.index("```toml\n") + len("```toml\n"):]
    example = example[:example.index("```")]
    fault = section[section.index("```text\n") + len("```text\n"):]
    fault = fault[:fault.index("```")].strip()
    (tmp_path / "coffee.toml").write_text(example, encoding="utf-8")
    checked = tilltap(tmp_path, "programs", "check", "coffee.toml")
    assert (checked.returncode, checked.stdout) == (0, "coffee v3 EUR: points\n")
    # "the example above as p.toml, with the id p and earn_bp = 2.5"
    faulty = example.replace("coffee", "p").replace("earn_bp = 500", "earn_bp = 2.5")
    (tmp_path / "p.toml").write_text(faulty, encoding="utf-8")
    refused = tilltap(tmp_path, "programs", "check", "p.toml")
    assert refused.returncode == 2
    assert refused.stderr == f"tilltap programs check: {fault}\n"


def tilltap(cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tools.cli", *argv], cwd=cwd,
                          env=os.environ | {"PYTHONPATH": str(REPO_ROOT)},
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
