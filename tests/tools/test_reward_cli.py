"""`tilltap reward stock|list` against a ledger served with logins and the example programs:
an admin counts a store's mugs, a reader lists them, a gateway's hold of the last one held
shows as held, and every refusal of the ledger is one line and exit 2 that changes nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.auth import dump_logins, new_login
from ledger.server import LedgerServer, serve
from tests.ledger.builders import EngineShop
from tests.ledger.test_reward_stock import COFFEE, NOW_S, START_S, mug_hold
from tools.cli import main


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[tuple[LedgerServer, dict[str, list[str]]]]:
    """Card R1 of coffee with 100 points; logins root (admin) and alice (reader)."""
    made = {"root": new_login("root", "admin"), "alice": new_login("alice", "reader")}
    logins = tmp_path / "logins.json"
    logins.write_text(dump_logins({name: login for name, (login, _) in made.items()}))
    # The books' clock on the day after the sales (the coffee's points live 90 days).
    server = serve(f"sqlite://{tmp_path / 'ledger.db'}", clock=lambda: NOW_S,
                   logins_file=logins, programs={"coffee": COFFEE})
    shop = EngineShop(server.books, COFFEE, START_S)
    shop.post("R1", {"op": "issue", "id": "i1", "card": "R1"})
    shop.post("R1", {"op": "purchase", "id": "p1", "amount_minor": 20_000})
    options = {}
    for name, (_, token) in made.items():
        (tmp_path / f"{name}.token").write_text(token + "\n")
        options[name] = ["--ledger-url", server.url, "--ledger-token-file",
                         str(tmp_path / f"{name}.token")]
    yield server, options
    server.stop()


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


MUG = ["--program", "coffee", "--item", "mug", "--merchant", "M1"]


def test_a_store_counts_its_mugs_and_a_reader_sees_them_held_and_available(
        ledger: tuple[LedgerServer, dict[str, list[str]]],
        capsys: pytest.CaptureFixture[str]) -> None:
    server, login = ledger
    status, out, _ = run(["reward", "stock", *MUG, "--set", "3", *login["root"]], capsys)
    assert status == 0
    assert json.loads(out) == {"program": "coffee", "item": "mug", "merchant": "M1",
                                    "quantity": 3, "before": None, "held": 0, "available": 3}
    status, out, _ = run(["reward", "stock", *MUG, "--add", "-1", *login["root"]], capsys)
    assert (status, json.loads(out)["quantity"]) == (0, 2)
    server.books.place_hold(mug_hold("H1", "R1"))
    status, out, _ = run(["reward", "list", "--program", "coffee", *login["alice"]], capsys)
    assert status == 0
    assert [(row["item"], row["merchant"], row["quantity"], row["held"], row["available"])
            for row in json.loads(out)["items"]] == [("mug", "M1", 2, 1, 1)]


def test_a_reader_may_not_change_a_count(
        ledger: tuple[LedgerServer, dict[str, list[str]]],
        capsys: pytest.CaptureFixture[str]) -> None:
    server, login = ledger
    status, out, err = run(["reward", "stock", *MUG, "--set", "2", *login["alice"]], capsys)
    assert (status, out) == (2, "")
    assert "not_permitted" in err and len(err.strip().splitlines()) == 1
    assert server.books.reward_stock(None)["items"] == []


@pytest.mark.parametrize(("argv", "reason"), [
    (["--program", "coffee", "--item", "teapot", "--merchant", "M1", "--set", "1"],
     "reward_unknown"),
    ([*MUG, "--add", "2"], "stock_not_counted"),
    (["--program", "nope", "--item", "mug", "--merchant", "M1", "--set", "1"],
     "program_unknown"),
])
def test_a_refusal_is_one_line_exit_2_and_changes_nothing(
        ledger: tuple[LedgerServer, dict[str, list[str]]], capsys: pytest.CaptureFixture[str],
        argv: list[str], reason: str) -> None:
    server, login = ledger
    status, out, err = run(["reward", "stock", *argv, *login["root"]], capsys)
    assert (status, out) == (2, "")
    assert reason in err and len(err.strip().splitlines()) == 1
    assert server.books.reward_stock(None) == {"items": [], "truncated": False}
