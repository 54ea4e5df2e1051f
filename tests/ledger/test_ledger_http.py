"""The HTTP intake and its client, end to end over loopback, on SQLite and PostgreSQL."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger import BatchConflict, BatchInvalid, BatchTooLarge, LedgerUnavailable, NotFound
from ledger.client import LedgerClient
from ledger.limits import BATCH_BYTES_MAX
from ledger.server import LedgerServer, serve
from tests.ledger.builders import batch, issue, purchase, topup

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER_START_TIMEOUT_S = 30


@pytest.fixture
def server(dsn: str) -> Iterator[LedgerServer]:
    """A ledger server on a free loopback port over fresh books."""
    running = serve(dsn)
    yield running
    running.stop()


@pytest.fixture
def client(server: LedgerServer) -> LedgerClient:
    """A client of the `server` fixture."""
    return LedgerClient(server.url, timeout_s=30)


def raw_request(
    server: LedgerServer,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str]]:
    """One request with exact bytes and headers; the status and the decoded JSON answer."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    answer = json.loads(response.read())
    connection.close()
    return response.status, answer


def test_round_trip_posts_reads_and_recognises_duplicates(client: LedgerClient) -> None:
    """A batch posted over HTTP shows in every report, and resent it is answered "duplicate"."""
    document = batch("gw1-1", issue("T1-1"), purchase("T1-2", card_value_minor=1200, points=12))
    assert client.post_batch(document) == {
        "status": "posted",
        "batch_id": "gw1-1",
        "posted": 2,
        "already_posted": 0,
        "refused": [],
    }
    assert client.post_batch(document)["status"] == "duplicate"
    expected = {
        "card": "C1",
        "currency": "EUR",
        "value_minor": 3800,
        "points": 12,
        "program": "gift",
        "held_minor": 0,
        "available_minor": 3800,
        "held_points": 0,
        "available_points": 12,
    }
    card = client.card("C1")
    assert card == expected | {
        "blocked": False,
        "block": None,
        "last_stores": [
            {"gateway": "gw1", "terminal": "T1", "merchant": "M1",
             "last_time": card["last_stores"][0]["last_time"]},
        ],
        "feed": card["feed"],  # which changes of the card feed it holds (test_ledger_feed.py)
        "sun_counter": None,  # the highest SUN read counter: no tap proved (test_ledger_sun.py)
        # for a gateway taking the card on to replay (protocol/engine_replay.py)
        "transactions": card["transactions"],
        # a ledger started without --programs has no engine state (test_card_engine.py)
        "engine": None, "engine_reason": "no_programs", "engine_version": None,
    }
    assert set(card["feed"]) == {"horizon", "through", "known"}
    assert [(t["kind"], t["card_value_minor"]) for t in card["transactions"]] == [
        ("issue", 5000), ("purchase", 1200)]
    assert client.balances() == [expected]
    assert client.terminal_totals()["T1"]["count"] == 2
    assert client.trial_balance() == {"EUR": 0, "PTS": 0}
    assert client.alarms() == []
    assert client.health()["status"] == "ok"


def test_conflicting_batch_is_409_with_an_alarm(client: LedgerClient) -> None:
    """Other content under a posted batch_id raises BatchConflict (409) and shows in the alarms."""
    client.post_batch(batch("gw1-1", issue("T1-1")))
    with pytest.raises(BatchConflict) as caught:
        client.post_batch(batch("gw1-1", issue("T1-1", amount_minor=1)))
    assert (caught.value.reason, caught.value.http_status) == ("batch_conflict", 409)
    assert [alarm["reason"] for alarm in client.alarms()] == ["batch_conflict"]
    assert client.card("C1")["value_minor"] == 5000


def test_a_refused_transaction_is_listed_in_a_200_answer(client: LedgerClient) -> None:
    """A txn_id reused with other content, and a float amount, refuse their transactions
    alone: the answer is 200 "partial" and names each, the rest posts; sent again, the batch
    answers "duplicate" with the same refusals."""
    client.post_batch(batch("gw1-1", issue("T1-1")))
    document = batch(
        "gw1-2",
        issue("T1-1", amount_minor=1),
        purchase("T1-2", card_value_minor=100) | {"amount_minor": 50.0},
        purchase("T1-3", card_value_minor=100),
    )
    answer = client.post_batch(document)
    assert (answer["status"], answer["posted"], answer["already_posted"]) == ("partial", 1, 0)
    assert [(item["txn_id"], item["reason"]) for item in answer["refused"]] == [
        ("T1-1", "txn_conflict"),
        ("T1-2", "field_type"),
    ]
    assert "amount_minor" in answer["refused"][1]["detail"]
    again = client.post_batch(document)
    assert (again["status"], again["refused"]) == ("duplicate", answer["refused"])
    assert client.card("C1")["value_minor"] == 4900
    assert [alarm["reason"] for alarm in client.alarms()] == ["txn_conflict", "field_type"]
    report = client.report("refused")
    assert [row["txn_id"] for row in report["rows"]] == ["T1-1", "T1-2"]


def test_an_invalid_envelope_is_400_with_reason(client: LedgerClient) -> None:
    """A batch whose own keys are wrong (created a float) is refused whole: 400 BatchInvalid."""
    with pytest.raises(BatchInvalid) as caught:
        client.post_batch(batch("gw1-1", issue("T1-1")) | {"created": 50.0})
    assert (caught.value.reason, caught.value.http_status) == ("field_type", 400)
    assert "created" in caught.value.detail


def test_unknown_card_is_404(client: LedgerClient) -> None:
    """GET of a card the ledger never saw raises NotFound card_unknown (404)."""
    with pytest.raises(NotFound) as caught:
        client.card("no/such card")
    assert (caught.value.reason, caught.value.http_status) == ("card_unknown", 404)


def test_unknown_path_and_wrong_method_are_json_errors(server: LedgerServer) -> None:
    """Unknown paths answer 404 not_found and wrong methods 405, both as JSON."""
    assert raw_request(server, "GET", "/v2/anything") == (
        404,
        {"error": "not_found", "detail": "no such path: /v2/anything"},
    )
    assert raw_request(server, "GET", "/v1/batches")[1]["error"] == "method_not_allowed"
    assert raw_request(server, "DELETE", "/v1/balances")[0] == 405
    assert raw_request(server, "PATCH", "/v1/balances")[0] == 405


def test_declared_oversize_body_is_413_before_it_is_read(server: LedgerServer) -> None:
    """A Content-Length over BATCH_BYTES_MAX is answered 413 batch_too_large before any body."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as connection:
        connection.sendall(
            b"POST /v1/batches HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {BATCH_BYTES_MAX + 1}\r\n\r\n".encode()
        )
        answer = connection.makefile("rb").read()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert json.loads(body)["error"] == "batch_too_large"


def test_oversize_body_is_413_after_upload(
    server: LedgerServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body over the (lowered) byte limit sent in full is answered 413 batch_too_large."""
    monkeypatch.setattr("ledger.server.BATCH_BYTES_MAX", 1000)
    body = json.dumps(batch("gw1-1", *[topup(f"T1-{n}") for n in range(1, 10)])).encode()
    assert len(body) > 1000
    status, answer = raw_request(
        server, "POST", "/v1/batches", body, {"Content-Type": "application/json"}
    )
    assert (status, answer["error"]) == (413, "batch_too_large")


def test_client_refuses_an_oversize_batch_without_sending_it(
    client: LedgerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client raises BatchTooLarge itself for a body over BATCH_BYTES_MAX."""
    monkeypatch.setattr("ledger.client.BATCH_BYTES_MAX", 100)
    with pytest.raises(BatchTooLarge):
        client.post_batch(batch("gw1-1", issue("T1-1")))
    assert client.balances() == []


@pytest.mark.parametrize(
    "body, reason",
    [
        (b"{not json", "batch_malformed"),
        (b"\xff\xfe", "batch_malformed"),
        (b'{"batch_id": NaN}', "batch_malformed"),
        (b'{"batch_id": "a", "batch_id": "b"}', "batch_malformed"),
        (b"[" * 100_000 + b"]" * 100_000, "batch_malformed"),
        (b"1" * 5000, "batch_malformed"),
        (b"[]", "batch_malformed"),
        (b"{}", "field_missing"),
    ],
    ids=[
        "broken",
        "not-utf8",
        "nan",
        "duplicate-key",
        "deep-nesting",
        "giant-integer",
        "array",
        "empty-object",
    ],
)
def test_bad_json_bodies_are_400(server: LedgerServer, body: bytes, reason: str) -> None:
    """Bodies that are not a strict JSON batch are answered 400 with their reason."""
    status, answer = raw_request(
        server, "POST", "/v1/batches", body, {"Content-Type": "application/json"}
    )
    assert (status, answer["error"]) == (400, reason)


def test_wrong_content_type_and_missing_length_are_refused(server: LedgerServer) -> None:
    """A non-JSON content type is 415 and a body without Content-Length is 411."""
    status, answer = raw_request(
        server, "POST", "/v1/batches", b"{}", {"Content-Type": "text/plain"}
    )
    assert (status, answer["error"]) == (415, "content_type_unsupported")
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.putrequest("POST", "/v1/batches")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Transfer-Encoding", "chunked")
    connection.endheaders()
    connection.send(b"2\r\n{}\r\n0\r\n\r\n")
    response = connection.getresponse()
    assert (response.status, json.loads(response.read())["error"]) == (411, "length_required")
    connection.close()


def test_garbage_request_line_gets_a_json_answer(server: LedgerServer) -> None:
    """A request line that is not HTTP is answered with a JSON error, not a crash."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as connection:
        connection.sendall(b"HELLO THERE WORLD\r\n\r\n")
        answer = connection.makefile("rb").read()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b" 400 " in head.split(b"\r\n")[0]
    assert json.loads(body)["error"] == "request_malformed"


def test_server_keeps_serving_on_one_connection_after_bad_input(server: LedgerServer) -> None:
    """After refused requests on a kept-alive connection, the next request is answered correctly."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    for body in (b"{broken", json.dumps(batch("gw 1", issue("T1-1"))).encode()):
        connection.request(
            "POST", "/v1/batches", body=body, headers={"Content-Type": "application/json"}
        )
        response = connection.getresponse()
        assert response.status == 400
        response.read()
    connection.request("POST", "/v1/batches", body=b"{}", headers={"Content-Type": "text/plain"})
    assert connection.getresponse().status == 415
    connection.close()
    good = json.dumps(batch("gw1-1", issue("T1-1"))).encode()
    status, answer = raw_request(
        server, "POST", "/v1/batches", good, {"Content-Type": "application/json"}
    )
    assert (status, answer["status"]) == (200, "posted")
    assert raw_request(server, "GET", "/v1/health")[0] == 200


def test_database_failure_is_503_and_client_unavailable(
    server: LedgerServer, client: LedgerClient
) -> None:
    """When the books cannot be used the server answers 503 ledger_unavailable and keeps running."""
    server.books.close()
    with pytest.raises(LedgerUnavailable) as caught:
        client.post_batch(batch("gw1-1", issue("T1-1")))
    assert caught.value.reason == "ledger_unavailable"
    assert raw_request(server, "GET", "/v1/health")[0] == 503


def test_client_to_a_closed_port_is_unavailable() -> None:
    """A client whose ledger does not listen raises LedgerUnavailable (the gateway retries)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(LedgerUnavailable):
        LedgerClient(f"http://127.0.0.1:{port}", timeout_s=5).trial_balance()


def test_concurrent_posts_all_land_and_balance(client: LedgerClient) -> None:
    """Eight clients posting different batches at once all succeed and the books balance."""
    errors: list[BaseException] = []

    def post(number: int) -> None:
        try:
            client.post_batch(batch(f"gw1-{number}", issue(f"T{number}-1", card=f"C{number}")))
        except BaseException as error:  # collected and asserted below
            errors.append(error)

    threads = [threading.Thread(target=post, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(client.balances()) == 8
    assert client.trial_balance() == {"EUR": 0}


def test_module_main_serves_until_sigterm(dsn: str) -> None:
    """`python -m ledger.server` prints its URL, serves, and exits 0 on SIGTERM."""
    process = subprocess.Popen(
        [sys.executable, "-m", "ledger.server", "--dsn", dsn, "--port", "0"],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(f"{url}/v1/health", timeout=SERVER_START_TIMEOUT_S) as response:
            assert json.loads(response.read())["status"] == "ok"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=SERVER_START_TIMEOUT_S) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
