"""The gateway's /metrics and /health (gateway/metrics.py) and the latency histogram Stats
keeps for them, on a gateway that is built but not started (no broker needed)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import MetricsServer
from gateway.registry import TerminalRegistry
from gateway.service import Gateway
from gateway.stats import LATENCY_BUCKETS_S, Stats
from ledger.metrics import route_of
from tools.demo import DEMO_PROGRAMS

UNUSED_BROKER_PORT = 1  # the gateway is never started: its MQTT link never connects


def _died(name: str, error: BaseException) -> None:
    raise AssertionError(f"{name} died: {error!r}")


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Gateway, str]]:
    registry = TerminalRegistry()
    registry.add("T1", "M1", bytes(32))
    gateway = Gateway("gw1", "127.0.0.1", UNUSED_BROKER_PORT, str(tmp_path / "gw.db"),
                      registry, DEMO_PROGRAMS, on_thread_death=_died)
    server = MetricsServer(gateway, "127.0.0.1", 0, _died)
    server.start()
    try:
        yield gateway, server.url
    finally:
        server.stop()
        gateway.store.close()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_a_histogram_counts_each_observation_in_every_bucket_at_or_above_it() -> None:
    stats = Stats()
    for seconds in (0.001, 0.2, 99.0):
        stats.observe("auth_seconds", seconds)
    histogram = stats.histograms()["auth_seconds"]
    assert histogram.count == 3 and histogram.sum_s == pytest.approx(99.201)
    assert histogram.cumulative[0] == 1  # 0.001 <= 5 ms
    assert histogram.cumulative[LATENCY_BUCKETS_S.index(0.25)] == 2
    assert histogram.cumulative[-1] == 2  # 99 s is only in +Inf


def test_the_stats_counters_are_exported_by_name_and_by_reason(
        served: tuple[Gateway, str]) -> None:
    gateway, url = served
    gateway.stats.add("received", 3)
    gateway.stats.add("accepted", 2)
    gateway.stats.rejected("sig_invalid")
    gateway.stats.add("dropped.txn")
    gateway.stats.add("auth_approved")
    gateway.stats.add("mqtt_connects")
    gateway.stats.observe("auth_seconds", 0.02)
    status, text = _get(url + "/metrics")
    assert status == 200
    samples = _samples(text)
    assert samples[("tilltap_gateway_records_received_total", frozenset())] == 3
    assert samples[("tilltap_gateway_records_accepted_total", frozenset())] == 2
    assert samples[("tilltap_gateway_refused_total",
                    frozenset({("reason", "sig_invalid")}))] == 1
    assert samples[("tilltap_gateway_dropped_total", frozenset({("queue", "txn")}))] == 1
    assert samples[("tilltap_gateway_authorizations_total",
                    frozenset({("outcome", "approved")}))] == 1
    assert samples[("tilltap_gateway_events_total",
                    frozenset({("event", "mqtt_connects")}))] == 1
    assert samples[("tilltap_gateway_auth_seconds_bucket", frozenset({("le", "0.025")}))] == 1
    assert samples[("tilltap_gateway_queue_depth", frozenset({("queue", "ingest")}))] == 0
    assert samples[("tilltap_gateway_terminals_registered", frozenset())] == 1
    assert samples[("tilltap_gateway_settlement_lag_seconds", frozenset())] == 0


def test_health_is_503_while_the_store_cannot_commit(served: tuple[Gateway, str]) -> None:
    gateway, url = served
    status, body = _get(url + "/health")
    assert status == 200 and json.loads(body)["status"] == "ok"
    gateway.store.health.failed("disk I/O error")
    status, body = _get(url + "/health")
    assert status == 503 and json.loads(body)["status"] == "store_unavailable"
    assert _samples(_get(url + "/metrics")[1])[("tilltap_gateway_store_up", frozenset())] == 0


def test_any_other_path_is_404(served: tuple[Gateway, str]) -> None:
    assert _get(served[1] + "/v1/health")[0] == 404


@pytest.mark.parametrize(("path", "route"), [
    ("/v1/cards/04a1/block", "/v1/cards/{card}/block"),
    ("/v1/cards/04a1", "/v1/cards/{card}"),
    ("/v1/holds/gw1-7", "/v1/holds/{hold}"),
    ("/v1/reports/liability", "/v1/reports/{name}"),
    ("/v1/batches", "/v1/batches"),
    ("/v1/fleet", "/v1/fleet"),
    ("/v1/cards/04a1/history", "/v1/cards/{card}/history"),
    ("/v1/customers/cust-1f/export", "/v1/customers/{customer}/export"),
    ("/v1/customers/cust-1f", "/v1/customers/{customer}"),
    ("/v1/companies", "/v1/companies"),
    ("/v1/companies/ACME", "/v1/companies/{company}"),
    ("/v1/companies/ACME/cards", "/v1/companies/{company}/cards"),
    ("/v1/cards/", "other"),
    ("/anything/a/caller/makes/up", "other"),
])
def test_the_ledger_labels_a_request_by_its_route_never_its_raw_path(
        path: str, route: str) -> None:
    assert route_of(path) == route
