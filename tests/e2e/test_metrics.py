"""`/metrics` and `/health` (issue 16, item 2) on a real ledger process (`tilltap ledger
serve`, TLS and logins) and a real gateway process (`tilltap gateway run --metrics-port`),
scraped over HTTP as Prometheus would: the documented names are there, and the counters
move when a terminal sells and the gateway settles."""

from __future__ import annotations

import json
import os
import ssl
import time
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from gateway.registry import TerminalRegistry
from tests.support.gateway_process import start_gateway_with_metrics
from tests.support.ledger_process import LedgerProcess, LoginSpec, running_ledger
from tests.support.stack import wait_until
from tools.demo import DEMO_PROGRAMS
from tools.mosquitto import MosquittoBroker
from tools.simulator.terminal import SimulatedTerminal

GIFT = "04e0e1e2e3e4e5"
LOGINS = {
    "gw1": LoginSpec("gateway", gateway="gw1", terminals=("T1",), merchants=("M1",)),
    "office": LoginSpec("reader"),
}
SCRAPE_TIMEOUT_S = 10.0
SETTLED_WAIT_S = 30.0
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _get(url: str, token: str | None = None, ca: str | None = None) -> tuple[int, str, str]:
    """(status, content type, body) of a GET, errors included."""
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    context = ssl.create_default_context(cafile=ca) if ca else None
    try:
        with urllib.request.urlopen(request, timeout=SCRAPE_TIMEOUT_S, context=context) as answer:
            return answer.status, answer.headers["Content-Type"], answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def _samples(text: str) -> Samples:
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def _value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _scrape_ledger(ledger: LedgerProcess) -> Samples:
    status, content_type, body = _get(ledger.url + "/metrics", ledger.tokens["office"],
                                      ledger.ca)
    assert status == 200 and content_type.startswith("text/plain"), (status, body)
    return _samples(body)


def _scrape_gateway(base: str) -> Samples:
    status, content_type, body = _get(base + "/metrics")
    assert status == 200 and content_type.startswith("text/plain"), (status, body)
    return _samples(body)


def _files(workdir: Path, ledger: LedgerProcess) -> tuple[bytes, Path]:
    """The registry with T1, the programs and the gateway's ledger token; T1's key."""
    registry = TerminalRegistry()
    key = os.urandom(32)
    registry.add("T1", "M1", key)
    registry.save(workdir / "terminals.json")
    (workdir / "programs.json").write_text(json.dumps(DEMO_PROGRAMS))
    token = workdir / "gw1.token"
    token.write_text(ledger.tokens["gw1"] + "\n")
    return key, token


def test_ledger_and_gateway_answer_health_and_metrics_that_move_with_a_sale(
    private_mosquitto: MosquittoBroker, tmp_path: Path
) -> None:
    with running_ledger(tmp_path, LOGINS) as ledger:
        key, token = _files(tmp_path, ledger)
        gateway, base = start_gateway_with_metrics(
            private_mosquitto, tmp_path, "--ledger-url", ledger.url, "--ledger-token-file",
            str(token), "--ledger-ca", ledger.ca, "--settle-every-s", "1")
        config = {"terminal": "T1", "merchant": "M1", "key": key, "currency": "EUR",
                  "programs": DEMO_PROGRAMS}
        sim = SimulatedTerminal(config, tmp_path, private_mosquitto.host,
                                private_mosquitto.port)
        try:
            # Health: anyone may ask, both answer ok.
            status, _, body = _get(base + "/health")
            assert status == 200 and json.loads(body)["status"] == "ok"
            for path in ("/health", "/v1/health"):
                status, _, body = _get(ledger.url + path, ca=ledger.ca)
                assert status == 200 and json.loads(body)["status"] == "ok", (path, body)

            # The ledger's /metrics is a read of the books: a reader, not a gateway, not a
            # stranger.
            assert _get(ledger.url + "/metrics", ca=ledger.ca)[0] == 401
            assert _get(ledger.url + "/metrics", ledger.tokens["gw1"], ledger.ca)[0] == 403

            before = _scrape_gateway(base)
            for name in ("tilltap_gateway_records_received_total",
                         "tilltap_gateway_records_accepted_total",
                         "tilltap_gateway_acks_sent_total",
                         "tilltap_gateway_stand_ins_total",
                         "tilltap_gateway_holds_open", "tilltap_gateway_terminals_online",
                         "tilltap_gateway_store_up", "tilltap_gateway_settlement_lag_seconds"):
                assert any(sample == name for sample, _ in before), name
            assert _value(before, "tilltap_gateway_records_accepted_total") == 0
            assert _value(before, "tilltap_gateway_terminals_registered") == 1
            assert _value(before, "tilltap_gateway_store_up") == 1
            assert _value(before, "tilltap_gateway_queue_capacity", queue="auth") > 0
            ledger_before = _scrape_ledger(ledger)
            assert _value(ledger_before, "tilltap_ledger_up") == 1
            assert _value(ledger_before, "tilltap_ledger_batches_posted") == 0

            sim.service(0)
            sim.tap(GIFT)
            assert sim.terminal.issue("gift", 10_000)["approved"]
            assert sim.drain(time.monotonic() + 10)

            def settled() -> bool:
                return _value(_scrape_ledger(ledger), "tilltap_ledger_batches_posted") >= 1

            assert wait_until(settled, SETTLED_WAIT_S)
            after = _scrape_gateway(base)
            assert _value(after, "tilltap_gateway_records_received_total") >= 1
            assert _value(after, "tilltap_gateway_records_accepted_total") >= 1
            assert _value(after, "tilltap_gateway_acks_sent_total") >= 1
            assert _value(after, "tilltap_gateway_authorizations_total",
                          outcome="approved") >= 1
            assert _value(after, "tilltap_gateway_auth_seconds_count") >= 1
            assert _value(after, "tilltap_gateway_auth_seconds_bucket", le="+Inf") >= 1
            assert _value(after, "tilltap_gateway_batches", status="settled") >= 1
            assert _value(after, "tilltap_gateway_queue_depth", queue="txn") == 0

            ledger_after = _scrape_ledger(ledger)
            assert _value(ledger_after, "tilltap_ledger_http_requests_total",
                          route="/v1/batches", method="POST", status="200") >= 1
            assert _value(ledger_after, "tilltap_ledger_http_request_seconds_count",
                          route="/v1/batches") >= 1
            assert _value(ledger_after, "tilltap_ledger_http_requests_total",
                          route="/metrics", method="GET", status="403") == 1
            assert _value(ledger_after, "tilltap_ledger_transactions_posted") >= 1
            assert ("tilltap_ledger_refused_transactions", frozenset()) in ledger_after
            assert any(name == "tilltap_ledger_holds" for name, _ in ledger_after)
        finally:
            sim.close()
            gateway.terminate()
            gateway.wait(timeout=30)
