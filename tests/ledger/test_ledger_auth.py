"""Who may call the ledger: logins, roles, a gateway bound to its own ids, TLS, slow clients.

The attacks are the ones a hostile-input campaign ran against an open ledger: reads by
anyone, a forged batch paying merchant EVIL from a customer's card, a card registered with
ten billion, holds on a customer's whole balance, another gateway's batch, txn and hold ids
taken first, and slow connections taking every request slot."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ledger import auth
from ledger.auth import LoginsInvalid, dump_logins, new_login, parse_logins
from ledger.client import LedgerClient, read_token
from ledger.errors import ConfigInvalid, Forbidden, LedgerUnavailable, LoginRefused
from ledger.server import LedgerServer, ServerRefused, serve, tls_context
from tests.ledger.builders import batch, hold_request, issue, purchase
from tests.support import REPO_ROOT
from tools.tls import make_server_tls

SLOW_WAIT_S = 10.0


class Deployment:
    """A ledger over TLS with four logins, and a client for each."""

    def __init__(self, dsn: str, workdir: Path) -> None:
        self.tls = make_server_tls(workdir / "tls", "127.0.0.1", "tilltap ledger CA", "ledger")
        self.logins_file = workdir / "logins.json"
        made = {
            "gw1": new_login("gw1", "gateway", "gw1", ("T1", "T2"), ("M1",)),
            "gw2": new_login("gw2", "gateway", "gw2", ("U*",), ("M2",)),
            "alice": new_login("alice", "reader"),
            "tech": new_login("tech", "cards", register_value_minor_max=10_000),
        }
        self.tokens = {name: token for name, (_, token) in made.items()}
        self.logins_file.write_text(dump_logins({name: login for name, (login, _) in
                                                 made.items()}))
        self.server = serve(dsn, logins_file=self.logins_file,
                            tls=tls_context(self.tls["ledger.pem"], self.tls["ledger.key"]))

    def client(self, login: str | None) -> LedgerClient:
        token = self.tokens[login] if login else None
        return LedgerClient(self.server.url, 30, token=token, ca_file=self.tls["ca.pem"])

    def raw(self, method: str, path: str, token: str | None = None,
            body: Any = None) -> tuple[int, dict[str, Any]]:
        """One request with exact headers over TLS; the status and decoded answer."""
        context = ssl.create_default_context(cafile=self.tls["ca.pem"])
        connection = http.client.HTTPSConnection("127.0.0.1", self.server.port, timeout=30,
                                                 context=context)
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        payload = None if body is None else json.dumps(body).encode()
        connection.request(method, path, body=payload, headers=headers)
        response = connection.getresponse()
        answer = json.loads(response.read())
        connection.close()
        return response.status, answer


@pytest.fixture
def deployed(dsn: str, tmp_path: Path) -> Iterator[Deployment]:
    deployment = Deployment(dsn, tmp_path)
    yield deployment
    deployment.server.stop()


def test_nobody_reads_or_writes_without_a_login(deployed: Deployment) -> None:
    """Every path but the health check answers 401, the same words whether the login is
    missing, unknown or its secret wrong (a caller cannot learn which logins exist)."""
    assert deployed.raw("GET", "/v1/health")[0] == 200
    answers = []
    for token in (None, "alice:wrong", "nobody:x", "alice", "Basic abc"):
        for method, path in (("GET", "/v1/balances"), ("GET", "/v1/cards/C1"),
                             ("GET", "/v1/reports/liability"), ("GET", "/v1/alarms"),
                             ("GET", "/v1/refused"), ("GET", "/v1/holds/gw1-1"),
                             ("DELETE", "/v1/holds/gw1-1"), ("GET", "/v1/trial-balance")):
            answers.append(deployed.raw(method, path, token))
        answers.append(deployed.raw("POST", "/v1/batches", token,
                                    batch("gw1-1", issue("T1-1"))))
        answers.append(deployed.raw("POST", "/v1/holds", token, hold_request("gw1-1")))
    assert {status for status, _ in answers} == {401}
    assert {json.dumps(answer) for _, answer in answers} == {json.dumps(answers[0][1])}
    assert answers[0][1]["error"] == "login_required"
    with pytest.raises(LoginRefused):
        deployed.client(None).balances()
    assert deployed.client("alice").balances() == []  # nothing was posted


def test_a_gateway_posts_only_its_own_batches_terminals_and_merchants(
    deployed: Deployment,
) -> None:
    gw1 = deployed.client("gw1")
    assert gw1.post_batch(batch("gw1-000001", issue("T1-1", "C1", 5000)))["posted"] == 1
    token = deployed.tokens["gw1"]
    forged = {
        # gw1's login posting as gw2, or under gw2's batch ids
        "gateway": dict(batch("gw2-000001", purchase("T1-2", "C1", 100)), gateway_id="gw2"),
        "batch id": batch("gw2-000009", purchase("T1-2", "C1", 100)),
        # a customer's value to merchant EVIL, or through another store's terminal
        "merchant": batch("gw1-000002", purchase("T1-2", "C1", 2500, merchant="EVIL")),
        "terminal": batch("gw1-000003", purchase("U1-7", "C1", 100)),
        # taking a terminal's next txn id first, or another gateway's hold
        "txn id": batch("gw1-000004", dict(purchase("T1-3", "C1", 100), txn_id="U1-3")),
        "hold": batch("gw1-000005", purchase("T1-3", "C1", 100, hold_id="gw2-1")),
    }
    for name, document in forged.items():
        status, answer = deployed.raw("POST", "/v1/batches", token, document)
        assert (name, status, answer["error"]) == (name, 403, "not_permitted")
    with pytest.raises(Forbidden):
        gw1.post_batch(forged["merchant"])
    # Nothing of it reached the books; a reader may not post at all.
    assert deployed.client("alice").card("C1")["value_minor"] == 5000
    assert deployed.raw("POST", "/v1/batches", deployed.tokens["alice"],
                        batch("gw1-000006", purchase("T1-2", "C1", 1)))[0] == 403
    assert deployed.client("alice").refused_transactions() == []


def test_a_gateway_holds_reads_and_voids_only_its_own_holds(deployed: Deployment) -> None:
    gw1, gw2 = deployed.client("gw1"), deployed.client("gw2")
    gw1.post_batch(batch("gw1-000001", issue("T1-1", "C1", 5000)))
    assert gw1.place_hold("gw1-a", "C1", "EUR", 700, 600, "T1", "M1")["status"] == "open"
    token2 = deployed.tokens["gw2"]
    # gw2 may not hold a card's whole balance through gw1's terminal, nor under gw1's ids,
    # nor read or void gw1's hold; gw2 on its own terminal and ids may hold.
    assert deployed.raw("POST", "/v1/holds", token2,
                        hold_request("gw2-a", amount_minor=4300))[0] == 403
    assert deployed.raw("POST", "/v1/holds", token2,
                        hold_request("gw1-b", terminal="U1", merchant="M2"))[0] == 403
    assert deployed.raw("GET", "/v1/holds/gw1-a", token2)[0] == 403
    assert deployed.raw("DELETE", "/v1/holds/gw1-a", token2)[0] == 403
    assert gw2.place_hold("gw2-a", "C1", "EUR", 300, 600, "U1", "M2")["status"] == "open"
    assert gw1.hold("gw1-a")["status"] == "open"
    assert gw1.void_hold("gw1-a")["status"] == "voided"
    assert deployed.client("alice").card("C1")["available_minor"] == 4700


def test_cards_are_registered_by_a_cards_login_within_its_value(deployed: Deployment) -> None:
    tech = deployed.client("tech")
    assert tech.register_card("C9", "gift", "EUR", "M1", 10_000)["status"] == "posted"
    for login, value in (("tech", 1_000_000_000_000), ("gw1", 0), ("alice", 0)):
        status, answer = deployed.raw(
            "PUT", "/v1/cards/C10", deployed.tokens[login],
            {"program": "gift", "currency": "EUR", "merchant": "M1", "value_minor": value})
        assert (login, status, answer["error"]) == (login, 403, "not_permitted")
    assert deployed.client("alice").card("C9")["value_minor"] == 10_000
    assert deployed.raw("GET", "/v1/cards/C10", deployed.tokens["alice"])[0] == 404
    # A cards login reads cards, not the books as a whole.
    assert deployed.raw("GET", "/v1/balances", deployed.tokens["tech"])[0] == 403


def test_a_client_checks_the_ledgers_certificate(deployed: Deployment, tmp_path: Path) -> None:
    """A client pinning another CA, or speaking clear text to the TLS port, gets nothing."""
    other = make_server_tls(tmp_path / "other", "127.0.0.1", "another CA", "ledger")
    stranger = LedgerClient(deployed.server.url, 5, token=deployed.tokens["alice"],
                            ca_file=other["ca.pem"])
    with pytest.raises(LedgerUnavailable):
        stranger.balances()
    clear = LedgerClient(deployed.server.url.replace("https://", "http://"), 5,
                         token=deployed.tokens["alice"])
    with pytest.raises(LedgerUnavailable):
        clear.balances()
    assert deployed.client("alice").health()["status"] == "ok"


def test_the_logins_file_is_reread_and_a_broken_one_keeps_the_last(
    deployed: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ledger.server.LOGINS_RELOAD_INTERVAL_S", 0.0)
    logins = parse_logins(json.loads(deployed.logins_file.read_text()))
    bob, bob_token = new_login("bob", "reader")
    del logins["alice"]
    logins["bob"] = bob
    deployed.logins_file.write_text(dump_logins(logins))
    bob_client = LedgerClient(deployed.server.url, 5, token=bob_token,
                              ca_file=deployed.tls["ca.pem"])
    assert bob_client.balances() == []
    with pytest.raises(LoginRefused):
        deployed.client("alice").balances()
    deployed.logins_file.write_text("{not json")
    time.sleep(0.01)
    assert bob_client.balances() == []


def test_an_open_or_clear_ledger_does_not_listen_beyond_loopback(tmp_path: Path) -> None:
    dsn = f"sqlite://{tmp_path / 'ledger.db'}"
    logins = tmp_path / "logins.json"
    logins.write_text(dump_logins({}))
    with pytest.raises(ServerRefused, match="loopback only"):
        serve(dsn, host="0.0.0.0")
    with pytest.raises(ServerRefused, match="TLS only"):
        serve(dsn, host="0.0.0.0", logins_file=logins)
    command = [sys.executable, "-m", "tools.cli", "ledger", "serve", "--dsn", dsn, "--host",
               "0.0.0.0", "--logins", str(logins)]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "TLS only" in result.stderr
    with pytest.raises(ConfigInvalid):
        LedgerClient("http://ledger.example:8080", token="gw1:secret")


def test_the_token_file_and_logins_file_are_checked(tmp_path: Path) -> None:
    bad = tmp_path / "token"
    bad.write_text("no colon here\n")
    with pytest.raises(ConfigInvalid):
        read_token(str(bad))
    with pytest.raises(ConfigInvalid):
        read_token(str(tmp_path / "missing"))
    cases: list[Any] = [
        [], {"version": 2, "logins": {}}, {"version": 1, "logins": {}, "extra": 1},
        {"version": 1, "logins": {"a b": {"role": "reader", "secret_sha256": "0" * 64}}},
        {"version": 1, "logins": {"a": {"role": "root", "secret_sha256": "0" * 64}}},
        {"version": 1, "logins": {"a": {"role": "reader", "secret_sha256": "xyz"}}},
        {"version": 1, "logins": {"a": {"role": "gateway", "secret_sha256": "0" * 64}}},
        {"version": 1, "logins": {"a": {"role": "reader", "secret_sha256": "0" * 64,
                                        "terminals": ["T1"]}}},
        {"version": 1, "logins": {"a": {"role": "cards", "secret_sha256": "0" * 64,
                                        "register_value_minor_max": -1}}},
    ]
    for case in cases:
        with pytest.raises(LoginsInvalid):
            parse_logins(case)
    login, token = new_login("gw", "gateway", "gw", ("S1-*",), ("M",))
    assert auth.authenticate({"gw": login}, f"Bearer {token}") == login
    assert auth.covers(login.terminals, "S1-T9") and not auth.covers(login.terminals, "S2-T1")
    assert auth.covers(("T1",), "T1") and not auth.covers(("T1",), "T10")


def test_the_command_adds_lists_and_removes_logins(tmp_path: Path) -> None:
    from tools.cli import main

    logins, token_file = tmp_path / "logins.json", tmp_path / "gw.token"
    assert main(["ledger", "login", "add", "gw1", "--role", "gateway", "--gateway", "gw1",
                 "--terminal", "T*", "--merchant", "M1", "--logins", str(logins),
                 "--token-out", str(token_file)]) == 0
    assert token_file.stat().st_mode & 0o777 == 0o600
    token = read_token(str(token_file))
    assert token.startswith("gw1:") and token.split(":")[1] not in logins.read_text()
    assert main(["ledger", "login", "add", "x", "--role", "gateway", "--logins", str(logins),
                 "--token-out", str(tmp_path / "x")]) == 2
    assert main(["ledger", "login", "remove", "nobody", "--logins", str(logins)]) == 2
    assert main(["ledger", "login", "remove", "gw1", "--logins", str(logins)]) == 0
    assert parse_logins(json.loads(logins.read_text())) == {}


# ---------------------------------------------------------------------------------------------
# Slow clients


@pytest.fixture
def open_server(tmp_path: Path) -> Iterator[LedgerServer]:
    running = serve(f"sqlite://{tmp_path / 'ledger.db'}")
    yield running
    running.stop()


def _stalled_body(server: LedgerServer) -> socket.socket:
    """A connection that sent its headers and the first bytes of a body, then stalls."""
    stalled = socket.create_connection(("127.0.0.1", server.port), timeout=SLOW_WAIT_S)
    stalled.sendall(b"POST /v1/batches HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                    b"\r\nContent-Length: 1000\r\n\r\n{\"batch")
    return stalled


def test_clients_stalling_their_bodies_take_no_request_slot(open_server: LedgerServer) -> None:
    """More stalled uploads than request slots: an honest request is still served."""
    stalled = [_stalled_body(open_server) for _ in range(40)]
    try:
        time.sleep(0.2)
        client = LedgerClient(open_server.url, 10)
        assert client.post_batch(batch("gw1-1", issue("T1-1")))["posted"] == 1
    finally:
        for connection in stalled:
            connection.close()


def test_a_body_that_trickles_is_cut_off(open_server: LedgerServer,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ledger.server.HTTP_BODY_BASE_S", 0.3)
    trickle = _stalled_body(open_server)
    try:
        # Two bytes within the 0.3 s, then one after it: the server reads it, sees the
        # time is up, and answers (nothing is left unread, so the answer is not reset).
        for pause_s in (0.1, 0.1, 0.3):
            time.sleep(pause_s)
            trickle.sendall(b" ")
        received = b""
        while chunk := trickle.recv(4096):  # the server closes after its answer
            received += chunk
        answer = received.decode()
        assert answer.startswith("HTTP/1.1 408") and "request_timeout" in answer
    finally:
        trickle.close()


def test_one_address_holds_a_bounded_number_of_connections(
    open_server: LedgerServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ledger.server.HTTP_CONNECTIONS_PER_CLIENT_MAX", 3)
    held = [_stalled_body(open_server) for _ in range(3)]
    try:
        time.sleep(0.2)
        extra = socket.create_connection(("127.0.0.1", open_server.port), timeout=SLOW_WAIT_S)
        extra.sendall(b"GET /v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert extra.recv(4096) == b""  # closed unanswered
        extra.close()
    finally:
        for connection in held:
            connection.close()
    time.sleep(0.2)  # their places are given back
    assert LedgerClient(open_server.url, 10).health()["status"] == "ok"
