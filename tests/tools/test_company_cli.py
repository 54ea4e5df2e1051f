"""`tilltap company create|add-card|remove-card|show` against a ledger served with logins:
an admin sets up a company and its cards, a reader shows it, and every refusal of the ledger
is one line and exit 2 that changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ledger.auth import dump_logins, new_login
from ledger.server import LedgerServer, serve
from tests.ledger.builders import batch, hold_request, issue
from tools.cli import main


@dataclass
class Ledger:
    server: LedgerServer
    admin: list[str]
    reader: list[str]


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    """Cards A1, A2 (EUR, 100.00 each) and G1 (GBP), served with an admin and a reader."""
    made = {"root": new_login("root", "admin"), "alice": new_login("alice", "reader")}
    logins = tmp_path / "logins.json"
    logins.write_text(dump_logins({name: login for name, (login, _) in made.items()}))
    options = {}
    for name, (_, token) in made.items():
        (tmp_path / f"{name}.token").write_text(token + "\n")
    server = serve(f"sqlite://{tmp_path / 'ledger.db'}", logins_file=logins)
    server.books.post_batch(batch("gw1-0", issue("T1-1", "A1", 10_000),
                                  issue("T1-2", "A2", 10_000),
                                  issue("T1-3", "G1", 1000, currency="GBP")))
    for name in made:
        options[name] = ["--ledger-url", server.url, "--ledger-token-file",
                         str(tmp_path / f"{name}.token")]
    yield Ledger(server, options["root"], options["alice"])
    server.stop()


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_a_company_is_set_up_and_shown_with_spent_held_and_available_adding_up(
        ledger: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    """Create (50.00 a day), add A1 and A2, hold 30.00 on A1: show says held 3000,
    available 2000, and 0 + 3000 + 2000 = 5000."""
    status, out, _ = run(["company", "create", "ACME", "--name", "Acme Ltd", "--currency",
                          "EUR", "--budget-minor", "5000", "--period", "day", *ledger.admin],
                         capsys)
    assert status == 0 and json.loads(out)["outcome"] == "created"
    for card in ("A1", "A2"):
        status, out, _ = run(["company", "add-card", "ACME", card, *ledger.admin], capsys)
        assert status == 0 and json.loads(out) == {"company": "ACME", "card": card,
                                                   "changed": True}
    ledger.server.books.place_hold(hold_request("H1", "A1", 3000))
    status, out, _ = run(["company", "show", "ACME", *ledger.reader], capsys)
    shown = json.loads(out)
    assert status == 0
    assert (shown["spent_minor"], shown["held_minor"], shown["available_minor"]) == (
        0, 3000, 2000)
    assert shown["spent_minor"] + shown["held_minor"] + shown["available_minor"] == 5000
    assert [card["card"] for card in shown["cards"]] == ["A1", "A2"]
    status, out, _ = run(["company", "remove-card", "ACME", "A2", *ledger.admin], capsys)
    assert status == 0 and json.loads(out) == {"company": "ACME", "card": "A2"}


@pytest.mark.parametrize(("argv", "fragment"), [
    (["company", "show", "NOPE"], "company_unknown"),
    (["company", "add-card", "ACME", "C9"], "card_unknown"),
    (["company", "add-card", "ACME", "G1"], "currency_mismatch"),
    (["company", "remove-card", "ACME", "A2"], "card_not_in_company"),
    (["company", "create", "ACME", "--name", "Acme", "--currency", "GBP", "--budget-minor",
      "5000", "--period", "day"], "company_currency"),
])
def test_a_refusal_of_the_ledger_is_one_line_exit_2_and_changes_nothing(
        ledger: Ledger, capsys: pytest.CaptureFixture[str], argv: list[str],
        fragment: str) -> None:
    run(["company", "create", "ACME", "--name", "Acme", "--currency", "EUR", "--budget-minor",
         "5000", "--period", "day", *ledger.admin], capsys)
    before = ledger.server.books.company("ACME")
    status, out, err = run([*argv, *ledger.admin], capsys)
    assert (status, out) == (2, "")
    assert fragment in err and err.count("\n") == 1
    assert ledger.server.books.company("ACME") == before


def test_a_reader_may_show_but_not_change_a_company(
        ledger: Ledger, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(["company", "create", "ACME", "--name", "Acme", "--currency", "EUR",
                          "--budget-minor", "5000", "--period", "day", *ledger.reader], capsys)
    assert status == 2 and "not_permitted" in err
    assert ledger.server.books.company("ACME") is None
