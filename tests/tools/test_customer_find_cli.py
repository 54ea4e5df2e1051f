"""`tilltap customer find` and `tilltap customer retention` against a ledger with logins and
a customer key, on the test's clock (an in-process `serve`: days pass by setting the clock).
Each mistake is one line and exit 2, an unreachable ledger one line and exit 1."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.auth import dump_logins, new_login
from ledger.client import LedgerClient
from ledger.personal_crypto import load_key_file, new_key_file
from ledger.reports import DAY_S
from ledger.server import LedgerServer, serve
from tests.ledger.builders import at, batch, issue
from tools.cli import main

PHONE, PHONE_E164 = "+49 30 1234 5678", "+493012345678"
EMAIL = "wenzeslaus@example.de"
DAY_0 = at("2025-03-01")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[LedgerServer, list[int], tuple[str, ...]]]:
    """(the ledger, its clock [Unix seconds], the admin's command-line options)."""
    new_key_file(tmp_path / "customer.key")
    login, token = new_login("admin", "admin")
    (tmp_path / "logins.json").write_text(dump_logins({"admin": login}))
    (tmp_path / "admin.token").write_text(token)
    now = [DAY_0]
    server = serve(f"sqlite://{tmp_path / 'ledger.db'}", clock=lambda: now[0],
                   logins_file=tmp_path / "logins.json",
                   customer_key=load_key_file(tmp_path / "customer.key"))
    assert server.books.post_batch(batch("gw1-1", issue("T1-1", "C1", time=DAY_0))).status == (
        "posted")
    yield server, now, ("--ledger-url", server.url, "--ledger-token-file",
                        str(tmp_path / "admin.token"))
    server.stop()


def tilltap(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_find_prints_the_id_or_the_answer(
        served: tuple[LedgerServer, list[int], tuple[str, ...]],
        capsys: pytest.CaptureFixture[str]) -> None:
    """By the phone as keyed (any spacing) the id alone, by e-mail with --json the answer;
    an invalid phone (even with the ledger away), nobody's number, both options at once:
    exit 2, one line; the ledger away: exit 1, one line."""
    server, _, admin = served
    client = LedgerClient(server.url, token=Path(admin[-1]).read_text())
    customer_id = client._request("POST", "/v1/customers", json.dumps(  # noqa: SLF001
        {"name": "Wenzeslaus", "phone": PHONE, "email": EMAIL}).encode())["customer_id"]
    assert tilltap(capsys, "customer", "find", "--phone", "+4930 12345678", *admin) == (
        0, customer_id + "\n", "")
    status, out, _ = tilltap(capsys, "customer", "find", "--email", EMAIL.upper(), "--json",
                             *admin)
    assert status == 0 and json.loads(out) == {"customer_id": customer_id}
    away = ("--ledger-url", "http://127.0.0.1:9", "--ledger-token-file", admin[-1])
    for argv, reason in ((("--phone", "030 1234 5678", *away), "phone_invalid"),
                         (("--email", "wenzeslaus@", *admin), "email_invalid"),
                         (("--phone", "+49 30 1234 0000", *admin), "customer_unknown"),
                         (("--email", "nobody@example.de", *admin), "customer_unknown")):
        status, out, err = tilltap(capsys, "customer", "find", *argv)
        assert (status, out) == (2, "") and reason in err and len(err.splitlines()) == 1, err
    status, _, err = tilltap(capsys, "customer", "find", "--phone", PHONE, "--email", EMAIL,
                             *admin)
    assert status == 2 and "not allowed with" in err
    status, _, err = tilltap(capsys, "customer", "find", "--phone", PHONE, *away)
    assert status == 1 and "unavailable" in err and len(err.splitlines()) == 1
    assert PHONE_E164 not in err


def test_retention_lists_then_erases_the_inactive(
        served: tuple[LedgerServer, list[int], tuple[str, ...]],
        capsys: pytest.CaptureFixture[str]) -> None:
    """On day 100, --inactive-days 90 --dry-run lists the customer untouched since day 0 and
    not the one changed on day 20; without --dry-run it is erased; fewer days than the
    least allowed is exit 2, one line."""
    server, now, admin = served
    client = LedgerClient(server.url, token=Path(admin[-1]).read_text())

    def create(name: str) -> str:
        return str(client._request("POST", "/v1/customers", json.dumps(  # noqa: SLF001
            {"name": name}).encode())["customer_id"])

    idle, recent = create("Idle"), create("Recent")
    now[0] = DAY_0 + 20 * DAY_S
    client._request("PATCH", f"/v1/customers/{recent}",  # noqa: SLF001
                    json.dumps({"language": "de"}).encode())
    now[0] = DAY_0 + 100 * DAY_S
    status, out, err = tilltap(capsys, "customer", "retention", "--inactive-days", "90",
                               "--dry-run", *admin)
    assert status == 0, err
    listed = json.loads(out)
    assert (listed["dry_run"], listed["erased"]) == (True, 0)
    assert [row["customer_id"] for row in listed["customers"]] == [idle]
    status, out, err = tilltap(capsys, "customer", "retention", "--inactive-days", "90",
                               *admin)
    assert status == 0 and json.loads(out)["erased"] == 1, err
    shown = client._request("GET", f"/v1/customers/{idle}")  # noqa: SLF001
    assert shown["erased_at"] == now[0] and shown["name"] is None
    assert client._request("GET", f"/v1/customers/{recent}")["name"] == "Recent"  # noqa: SLF001
    status, out, err = tilltap(capsys, "customer", "retention", "--inactive-days", "7", *admin)
    assert (status, out) == (2, "") and "--inactive-days" in err
    assert len(err.splitlines()) == 1
