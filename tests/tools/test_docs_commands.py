"""The commands README.md and every page under docs/ show work as written.

A shell block is a fenced block marked ` ```sh `. Its commands are its lines (a line ending in
`\\` goes on on the next; `# ...` after two spaces is a comment), or, when some lines start
with `$ `, those lines (and the lines a `\\` carries on), each followed by the output it
prints, where a line `...` stands for lines left out. Each block runs in a fresh copy of the
repository (the files git tracks or would track, with `.venv/` and `node_modules/` linked,
`.venv/bin` first on PATH, as with the venv activated), its commands in order in one bash
(`-e -o pipefail`, so a variable one sets is there for the next, as for a reader typing
them); each must exit 0 and print every output line the page shows. A file a command needs
that its page says where to get (programs.md's `ops.jsonl`: section 5's example) is made first
(BEFORE). A block that names `$LEDGER` (docs/ledger.md's reports and customers) gets a real
`tilltap ledger serve` on this machine, as the page describes it: SQLite at `ledger.db` in the
copy, a customer key, no logins, its printed URL in LEDGER.

Blocks marked otherwise (` ```toml `, ` ```python `, ` ```json `, ...) are not commands, and a
block with no mark must not hold one. A ` ```text ` block may: a synopsis (NAME, [--option X])
or a command this machine cannot run; each such command is in NOT_RUN with its reason.
programs.md's program file example and the fault it shows are run by their own test below,
and the README's operator login line is checked for what it leaves in logins.json.

Not run here, each for its reason (NOT_RUN; a test checks this list against the pages, so a
new command is either run or listed): `make demo` and `make test` (the business day and the
whole suite run elsewhere), a board on a serial port, a reader with factory cards, a password
asked at the terminal, services that run until stopped (`ledger serve`; this module starts
the one `$LEDGER` names itself), and synopses, whose examples beside them run.

Also covered elsewhere, not repeated here: programs.md section 5's operations file
(tests/tools/test_programs_cli.py runs it and checks no line is declined).
"""

from __future__ import annotations

import argparse
import os
import re
import select
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import REPO_ROOT
from tools.cli import build_parser

PAGES = ("README.md", *sorted(f"docs/{page.name}" for page in (REPO_ROOT / "docs").glob("*.md")))
COMMAND_TIMEOUT_S = 300
LEDGER_START_TIMEOUT_S = 60  # until `ledger serve` prints its URL
LEDGER_STOP_TIMEOUT_S = 30
PASSWORD = "tilltap-docs-test-password-42"  # what the README's login line reads as $PASSWORD
FENCE = re.compile(r"^```(\S*)(?:\s.*)?$")
COMMENT = re.compile(r"\s{2,}#\s.*$")


def _tilltap_commands() -> str:
    """`tilltap`'s own commands (demo, card, ledger, ...), as a regular expression."""
    parser = build_parser()
    (commands,) = [action for action in parser._actions
                   if isinstance(action, argparse._SubParsersAction)]
    return "|".join(map(re.escape, commands.choices))


# A line that runs something: what a page must show in a ```sh or ```text block, never in an
# unmarked one (where it would be neither run nor listed). "tilltap field 18" is a title.
COMMAND_LINE = re.compile(r"^(?:\$ )?(?:[A-Z][A-Z0-9_]*=\S*\s+)*"
                          rf"(?:(?:\.venv/bin/)?tilltap (?:{_tilltap_commands()})\b"
                          r"|make\s|\.venv/bin/\S+\s)")
ELIDED = "..."  # an output line standing for lines the page leaves out
LINKED = (".venv", "node_modules")  # too big to copy, and what a checkout has anyway
MARK = "@@tilltap-docs-command-{}@@"  # printed before each command of a block, to split output

CUSTOMER_SYNOPSIS = ("a synopsis; the example below it runs add, update, export and erase, and "
                     "tests/tools/test_customers_cli.py runs every one (link, history too, "
                     "with cards) against a served ledger")
FIND_SYNOPSIS = ("a synopsis; the example below it runs find and a dry run of retention, and "
                 "tests/tools/test_customer_find_cli.py runs both against a ledger on a set "
                 "clock")
VERIFY_SUN_SYNOPSIS = "a synopsis; the example below it runs, tests/tools/test_card_cli.py "

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
    # docs/ledger.md
    "tilltap ledger serve --ledger-dsn sqlite:///$PWD/ledger.db --port 8080 --logins logins.json":
        "runs until stopped, with a logins file the page does not make; this module runs the "
        "same command without logins for the `$LEDGER` blocks",
    "tilltap ledger serve --ledger-dsn postgresql://ledger@db.example/ledger --host 0.0.0.0 "
    "--port 8443 --logins logins.json --tls-cert ledger-tls/ledger.pem "
    "--tls-key ledger-tls/ledger.key":
        "runs until stopped, on a PostgreSQL server elsewhere (tests/e2e/test_back_office.py "
        "serves the ledger on PostgreSQL with logins and TLS)",
    "tilltap ledger serve --ledger-dsn sqlite:///$PWD/ledger.db --port 8080 "
    "--customer-key customer.key":
        "runs until stopped; this module starts it (--port 0) for the `$LEDGER` blocks",
    "tilltap report NAME (--ledger-url URL | --ledger-dsn DSN) [--format csv|json] "
    "[--as-of YYYY-MM-DD] [--window-days N] [--days N] [--min-purchases N]":
        "a synopsis; the example below it runs (tests/tools/ has a test of each report)",
    "tilltap customer add [--name N] [--phone P] [--email E] [--birthday D] [--language L] "
    "[--notes T] [--marketing-consent yes|no --consent-source S [--consent-date D]] "
    "--ledger-url ...": CUSTOMER_SYNOPSIS,
    "tilltap customer update ID [the same options] [--clear FIELD ...]": CUSTOMER_SYNOPSIS,
    "tilltap customer show|history|export|erase ID [--format csv|json] [--out FILE] [--yes]":
        CUSTOMER_SYNOPSIS,
    "tilltap customer link|unlink ID CARD": CUSTOMER_SYNOPSIS,
    "tilltap customer find (--phone P | --email E) [--json]": FIND_SYNOPSIS,
    "tilltap customer retention [--inactive-days N] [--dry-run]": FIND_SYNOPSIS,
    "tilltap card history CARD [--format csv|json]": CUSTOMER_SYNOPSIS,
    # run by tests/e2e/test_company_cards.py against a real ledger
    "tilltap card statement CARD --from YYYY-MM-DD --until YYYY-MM-DD": CUSTOMER_SYNOPSIS,
    # docs/cards.md
    "tilltap card personalize --count 50 --reader pcsc --master-key masters.json "
    "--url-prefix https://tap.example/c --program gift --value-minor 5000 --currency EUR "
    "--merchant M1 --ledger-url https://ledger.example:8443 --ledger-token-file tech.token "
    "[--programs programs.toml]":
        "needs a reader, factory cards and a ledger login: tests/tools/test_personalize.py "
        "runs it at emulated cards through pcscd/vpcd and nfcpy, "
        "tests/e2e/test_card_lifecycle.py from personalization to a refused clone",
    "tilltap card verify-sun URL --master-key sun-keys.json":
        VERIFY_SUN_SYNOPSIS + "verifies a card personalized with a master-key file",
    "tilltap card verify-sun URL --key 00000000000000000000000000000000":
        VERIFY_SUN_SYNOPSIS + "checks the factory key on AN12196's URLs",
    "tilltap card verify-sun URL --meta-key K1 --file-key K2":
        VERIFY_SUN_SYNOPSIS + "checks both keys and --file-key alone",
    "TILLTAP_WIFI_PASSWORD=... tilltap terminal provision --merchant m-01 --terminal t-0001 "
    "--wifi-ssid shop --broker-host 192.0.2.10 [--out DIR] [--registry FILE] "
    "[--mosquitto-dir DIR]":
        "a synopsis; the example below it runs (tests/tools/test_provision.py: each option)",
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
    kind: str  # what the fence is marked: "sh", "text", "" (unmarked), ...
    lines: list[str]

    @property
    def name(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def commands(self) -> list[Command]:
        if self.kind == "sh":
            return shell_commands(self.lines)
        if self.kind == "text":
            return synopses(self.lines)
        return []


def fenced_blocks(page: str, text: str) -> list[Block]:
    blocks: list[Block] = []
    body: list[str] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        fence = FENCE.match(line)
        if body is None:
            if fence:
                body = []
                blocks.append(Block(page, number, fence.group(1), body))
        elif line.startswith("```"):
            body = None
        else:
            body.append(line)
    return blocks


def joined(lines: list[str]) -> list[str]:
    """Lines with those a trailing `\\` carries on joined to them."""
    logical, pending = [], ""
    for line in lines:
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    return logical


def normal(line: str) -> str:
    return " ".join(COMMENT.sub("", line).split())


def shell_commands(lines: list[str]) -> list[Command]:
    if not any(line.startswith("$ ") for line in lines):
        texts = [normal(line) for line in joined(lines)]
        return [Command(text) for text in texts if text and not text.startswith("#")]
    found: list[Command] = []
    going_on = False  # the command above ends in `\`: this line carries it on
    for line in lines:
        if going_on or line.startswith("$ "):
            text = line.rstrip() if going_on else line[2:].rstrip()
            if going_on:
                found[-1].text = normal(found[-1].text + " " + text.removesuffix("\\"))
            else:
                found.append(Command(normal(text.removesuffix("\\"))))
            going_on = text.endswith("\\")
        elif line.strip() and found:
            found[-1].output.append(line.rstrip())
    return found


def synopses(lines: list[str]) -> list[Command]:
    """The commands of a ```text block: a line that runs something, with the indented lines
    under it (a synopsis goes on so) or those a `\\` carries on."""
    found: list[str] = []
    going_on = False  # the line above belongs to a command: an indented line carries it on
    for line in joined(lines):
        if COMMAND_LINE.match(line):
            found.append(normal(line))
            going_on = True
        elif going_on and line.startswith(" ") and line.strip():
            found[-1] = normal(found[-1] + " " + line)
        else:
            going_on = False
    return [Command(text) for text in found if text]


def all_blocks() -> list[Block]:
    return [block for page in PAGES
            for block in fenced_blocks(page, (REPO_ROOT / page).read_text(encoding="utf-8"))]


def runnable_blocks() -> list[Block]:
    return [block for block in all_blocks() if block.kind == "sh"
            and any(command.text not in NOT_RUN for command in block.commands)]


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


def environment(copy: Path, **more: str) -> dict[str, str]:
    kept = {name: value for name, value in os.environ.items()
            if not name.startswith(("TILLTAP_", "PYTEST_"))}
    return kept | {"PATH": f"{copy / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
                   "PASSWORD": PASSWORD} | more


def run(copy: Path, command: str, **more: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", command], cwd=copy,
                          env=environment(copy, **more), capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT_S)


@contextmanager
def ledger_serving(copy: Path, key_folder: Path) -> Iterator[str]:
    """`tilltap ledger serve` as docs/ledger.md starts it for its `$LEDGER` examples (SQLite
    at ledger.db in the copy, a customer key, no logins); its URL. The key lives outside the
    copy, so the page's own `customer-key new --out customer.key` still finds no file."""
    key = key_folder / "customer.key"
    made = run(copy, f"tilltap ledger customer-key new --out {key}")
    assert made.returncode == 0, made.stderr
    process = subprocess.Popen(
        ["tilltap", "ledger", "serve", "--ledger-dsn", f"sqlite:///{copy / 'ledger.db'}",
         "--port", "0", "--customer-key", str(key)],
        cwd=copy, env=environment(copy), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        text=True)
    try:
        assert process.stdout is not None
        started, _, _ = select.select([process.stdout], [], [], LEDGER_START_TIMEOUT_S)
        assert started, f"the ledger printed no URL within {LEDGER_START_TIMEOUT_S} s"
        url = process.stdout.readline().strip()  # empty if it exited
        assert url.startswith("http://127.0.0.1:"), f"the ledger did not start: {url!r}"
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=LEDGER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_every_command_in_the_pages_is_run_or_listed_with_its_reason() -> None:
    blocks = all_blocks()
    found = {command.text for block in blocks for command in block.commands}
    assert set(NOT_RUN) <= found, f"listed but no longer in the pages: {set(NOT_RUN) - found}"
    assert set(BEFORE) <= found - set(NOT_RUN)
    synopsis = {(block.name, command.text) for block in blocks if block.kind == "text"
                for command in block.commands}
    assert {(name, text) for name, text in synopsis if text not in NOT_RUN} == set(), \
        "a command in a ```text block without its reason in NOT_RUN"
    unmarked = [(block.name, line) for block in blocks if block.kind == ""
                for line in block.lines if COMMAND_LINE.match(line)]
    assert unmarked == [], "a command in an unmarked block: mark it ```sh (run) or ```text"
    assert runnable_blocks(), "no shell block to run"


def test_a_dollar_block_reads_as_its_commands_and_their_output() -> None:
    """The parser itself, on a block like those of the pages: a `\\` carries a command on,
    output lines belong to the command above them."""
    commands = shell_commands(["$ tilltap a \\", "    --b c", "x", "$ tilltap d", "y", "z"])
    assert [(c.text, c.output) for c in commands] == [
        ("tilltap a --b c", ["x"]), ("tilltap d", ["y", "z"])]


@pytest.mark.parametrize("block", runnable_blocks(), ids=lambda block: block.name)
def test_the_shell_block_works_as_written(block: Block, checkout: Path,
                                          tmp_path: Path) -> None:
    commands = [command for command in block.commands if command.text not in NOT_RUN]
    for command in commands:
        if command.text in BEFORE:
            BEFORE[command.text](checkout)
    script = "\n".join(f"printf '\\n%s\\n' '{MARK.format(index)}'\n{command.text}"
                       for index, command in enumerate(commands))
    with ExitStack() as stack:
        more = {}
        if "$LEDGER" in script:
            more["LEDGER"] = stack.enter_context(ledger_serving(checkout, tmp_path))
        result = run(checkout, script, **more)
    printed = printed_by_each(result.stdout, len(commands))
    ran = len(printed)  # the commands that started; a failure is the last of them
    assert result.returncode == 0, (commands[ran - 1].text, result.stdout[-2000:],
                                    result.stderr[-2000:])
    assert ran == len(commands)
    for command, lines in zip(commands, printed, strict=True):
        missing = [line for line in command.output if line != ELIDED and line not in lines]
        assert missing == [], (command.text, "\n".join(lines)[-2000:])


def printed_by_each(stdout: str, count: int) -> list[list[str]]:
    """Standard output split at the marks: what each command printed, for those that ran."""
    printed: list[list[str]] = []
    for line in stdout.splitlines():
        if len(printed) < count and line == MARK.format(len(printed)):
            printed.append([])
        elif printed:
            printed[-1].append(line)
    return printed


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
