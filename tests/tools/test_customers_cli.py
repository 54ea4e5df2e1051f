"""`tilltap customer ...`, `tilltap card history` and `tilltap ledger customer-key new`
against a real `tilltap ledger serve` process with logins and a customer key: the whole
life of a customer, each mistake one line and exit 2, and nothing personal in the ledger's
log (its standard error)."""

from __future__ import annotations

import csv
import io
import json
import stat
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ledger import open_books
from ledger.auth import dump_logins, new_login
from ledger.client import LedgerClient
from tests.ledger.builders import at, batch, issue, purchase
from tests.support import REPO_ROOT
from tools.cli import main

STOP_TIMEOUT_S = 30.0
NAME = "Ottilie Fairweather"
PHONE = "+33 1 23 45 67 89"
EMAIL = "ottilie@example.net"
NOTES = "allergic to hazelnuts"


@dataclass
class Served:
    url: str
    admin: Path
    reader: Path
    key: Path
    stderr: Path
    process: subprocess.Popen[str]

    def stop(self) -> str:
        """Stop the ledger; its log (standard error)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.stderr.read_text()


@pytest.fixture
def served(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Served]:
    """Books with card C1 (issued at store gw1, a sale at gw2) and C2, served by `tilltap
    ledger serve` with a key made by `tilltap ledger customer-key new`."""
    dsn = f"sqlite://{tmp_path / 'ledger.db'}"
    books = open_books(dsn)
    books.post_batch(batch("gw1-1", issue("S1-1", "C1", 5000, time=at("2025-11-01")),
                           issue("S1-2", "C2", 1000, time=at("2025-11-01"))))
    second = batch("gw2-1", purchase("S2-1", "C1", 700, points=7, time=at("2025-11-02"),
                                     terminal="S2", merchant="M2"))
    second["gateway_id"] = "gw2"
    books.post_batch(second)
    books.close()
    key = tmp_path / "keys" / "customer.key"
    status, out, _ = tilltap(capsys, "ledger", "customer-key", "new", "--out", str(key))
    assert status == 0
    assert key.read_text().split(":")[1].strip() not in out  # the key is never printed
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    made = {"admin": new_login("admin", "admin"), "alice": new_login("alice", "reader")}
    logins = tmp_path / "logins.json"
    logins.write_text(dump_logins({name: login for name, (login, _) in made.items()}))
    for name, (_, token) in made.items():
        (tmp_path / f"{name}.token").write_text(token)
    stderr = tmp_path / "ledger.log"
    with stderr.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "tools.cli", "ledger", "serve", "--ledger-dsn", dsn,
             "--logins", str(logins), "--customer-key", str(key)],
            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=log_file, text=True)
    assert process.stdout is not None
    url = process.stdout.readline().strip()
    running = Served(url, tmp_path / "admin.token", tmp_path / "alice.token", key, stderr,
                     process)
    try:
        assert url.startswith("http://"), running.stop()
        yield running
    finally:
        running.stop()


def tilltap(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run the command: (exit status, stdout, stderr)."""
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def as_login(served: Served, token: Path) -> tuple[str, ...]:
    return ("--ledger-url", served.url, "--ledger-token-file", str(token))


def test_a_customers_life_through_the_command(served: Served, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    """Add, link, show, history (CSV and JSON), export to a private file, erase: the books'
    trial balance and balances are the same after, and the ledger's log names no value."""
    admin = as_login(served, served.admin)
    status, out, err = tilltap(capsys, "customer", "add", "--name", NAME, "--phone", PHONE,
                               "--email", EMAIL, "--birthday", "1979-07-14", "--language",
                               "fr", "--notes", NOTES, "--marketing-consent", "yes",
                               "--consent-source", "counter", *admin)
    assert status == 0, err
    created = json.loads(out)
    customer_id = created["customer_id"]
    assert created["phone"] == "+33123456789" and created["marketing_consent"]["granted"]
    for card in ("C1", "C2"):
        status, out, err = tilltap(capsys, "customer", "link", customer_id, card, *admin)
        assert status == 0 and json.loads(out)["changed"] is True, err
    status, out, _ = tilltap(capsys, "customer", "update", customer_id, "--clear", "notes",
                             "--language", "fr-CA", *admin)
    assert status == 0 and json.loads(out)["notes"] is None
    assert json.loads(out)["language"] == "fr-CA"
    status, out, _ = tilltap(capsys, "customer", "show", customer_id, *admin)
    assert status == 0 and [c["card"] for c in json.loads(out)["cards"]] == ["C1", "C2"]

    status, out, _ = tilltap(capsys, "customer", "history", customer_id, "--format", "csv",
                             *admin)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert status == 0
    assert [(r["card"], r["store"], r["kind"], r["value_balance_minor"], r["points_balance"])
            for r in rows] == [("C1", "gw1", "issue", "5000", "0"),
                               ("C2", "gw1", "issue", "1000", "0"),
                               ("C1", "gw2", "purchase", "4300", "7")]
    status, out, _ = tilltap(capsys, "card", "history", "C1", *as_login(served, served.reader))
    history = json.loads(out)
    assert status == 0 and history["customer_id"] == customer_id
    assert [r["terminal"] for r in history["transactions"]] == ["S1", "S2"]

    admin_client = LedgerClient(served.url, token=served.admin.read_text().strip())
    before = admin_client.trial_balance(), admin_client.balances()
    export = tmp_path / "exports" / "customer.json"
    status, out, _ = tilltap(capsys, "customer", "export", customer_id, "--out", str(export),
                             *admin)
    assert status == 0 and stat.S_IMODE(export.stat().st_mode) == 0o600
    document = json.loads(export.read_text())
    assert document["customer"]["name"] == NAME
    assert len(document["history"]["transactions"]) == 3
    assert NAME not in out
    status, out, _ = tilltap(capsys, "customer", "erase", customer_id, "--yes", *admin)
    assert status == 0 and json.loads(out)["erased_at"] is not None
    status, out, _ = tilltap(capsys, "customer", "show", customer_id, *admin)
    shown = json.loads(out)
    assert shown["name"] is None and shown["phone"] is None and shown["erased_at"]
    assert (admin_client.trial_balance(), admin_client.balances()) == before

    log = served.stop()
    assert f"AUDIT customer {customer_id} erased by admin" in log
    for value in (NAME, "Fairweather", "+33123456789", "23 45 67", EMAIL, NOTES, "1979-07-14"):
        assert value not in log, value


def test_each_mistake_is_one_line_and_exit_2(served: Served, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Invalid phone, e-mail or birthday, a duplicate, a card linked elsewhere, an unknown
    customer or card, erasing twice, a reader's change, an erase unconfirmed, a key file that
    exists: exit 2 with one line naming the reason; a ledger not listening: exit 1."""
    admin = as_login(served, served.admin)
    status, out, _ = tilltap(capsys, "customer", "add", "--name", NAME, "--email", EMAIL,
                             *admin)
    first = json.loads(out)["customer_id"]
    status, out, _ = tilltap(capsys, "customer", "add", "--name", "Other", *admin)
    second = json.loads(out)["customer_id"]
    assert tilltap(capsys, "customer", "link", first, "C1", *admin)[0] == 0
    assert tilltap(capsys, "customer", "erase", second, "--yes", *admin)[0] == 0
    mistakes = [
        (("customer", "add", "--name", "X", "--phone", "01 23 45 67 89", *admin),
         "phone_invalid"),
        (("customer", "add", "--name", "X", "--email", "x@localhost", *admin), "email_invalid"),
        (("customer", "add", "--name", "X", "--birthday", "1979-02-30", *admin),
         "birthday_invalid"),
        (("customer", "add", "--name", "X", "--email", EMAIL.upper(), *admin), "email_taken"),
        (("customer", "add", "--name", "X", "--marketing-consent", "yes", *admin),
         "--consent-source"),
        (("customer", "link", second, "C1", *admin), "customer_erased"),
        (("customer", "erase", second, "--yes", *admin), "customer_erased"),
        (("customer", "link", first, "C9", *admin), "card_unknown"),
        (("customer", "show", "cust-nobody", *admin), "customer_unknown"),
        (("card", "history", "C9", *admin), "card_unknown"),
        (("customer", "add", "--name", "X", *as_login(served, served.reader)),
         "not_permitted"),
        (("customer", "erase", first, *admin), "--yes"),
        (("ledger", "customer-key", "new", "--out", str(served.key)), "never overwritten"),
    ]
    status, out, _ = tilltap(capsys, "customer", "add", "--name", "Third", *admin)
    third = json.loads(out)["customer_id"]
    mistakes.append((("customer", "link", third, "C1", *admin), "card_linked"))
    for argv, reason in mistakes:
        status, _, err = tilltap(capsys, *argv)
        assert status == 2 and reason in err and len(err.splitlines()) == 1, (argv, err)
    status, out, _ = tilltap(capsys, "customer", "show", first, *admin)
    assert [c["card"] for c in json.loads(out)["cards"]] == ["C1"]
    status, _, err = tilltap(capsys, "customer", "show", first, "--ledger-url",
                             "http://127.0.0.1:9", "--ledger-token-file", str(served.admin))
    assert status == 1 and "unavailable" in err and len(err.splitlines()) == 1
