"""`GET /metrics` (Prometheus text) and `GET /health` of a running gateway.

`tilltap gateway run --metrics-port PORT [--metrics-host 127.0.0.1]` serves both on their
own thread (gateway/stage.py's `thread`: if it dies the gateway stops). Nothing is counted
here: one collector reads, at each scrape, what the gateway already keeps.

From `Stats` (gateway/stats.py), as counters:

    tilltap_gateway_records_received_total           records taken from the broker
    tilltap_gateway_records_accepted_total           records stored as accepted
    tilltap_gateway_records_duplicate_total          resent records already stored
    tilltap_gateway_refused_total{reason}            records, requests, statuses refused
    tilltap_gateway_acks_sent_total                  acks published
    tilltap_gateway_dropped_total{queue}             messages dropped at a full queue
    tilltap_gateway_authorizations_total{outcome}    approved, declined, store_unavailable
    tilltap_gateway_stand_ins_total                  approved while the ledger was away
    tilltap_gateway_ledger_holds_total{event}        placed, voided, declined.<reason>, ...
    tilltap_gateway_events_total{event}              every other counter, by its Stats name
    tilltap_gateway_auth_seconds                     histogram: a request taken to answered

Read from the gateway itself, as gauges:

    tilltap_gateway_queue_depth{queue}, tilltap_gateway_queue_capacity{queue}
    tilltap_gateway_holds_open                       local holds (approvals not yet used)
    tilltap_gateway_terminals_registered, tilltap_gateway_terminals{state}
    tilltap_gateway_terminals_online                 last status online or heartbeat
    tilltap_gateway_store_up                         0 while the store cannot commit
    tilltap_gateway_settlement_lag_seconds           age of the oldest unsettled record
    tilltap_gateway_batches{status}                  settlement batches by status

`/health` answers 200 {"status": "ok", "store": {...}} while the store commits, 503 with
"status": "store_unavailable" while it does not (gateway/store_health.py).

`POST /diag/<terminal>` asks a terminal for its diag answer (gateway/diag.py).
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import time
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from gateway import diag, store_reports
from gateway.stage import OnDeath, thread
from gateway.stats import LATENCY_BUCKETS_S
from gateway.store_health import STATUS_OK, StoreUnavailable

if TYPE_CHECKING:
    from gateway.service import Gateway

METRICS_PATH = "/metrics"
HEALTH_PATH = "/health"
SHUTDOWN_POLL_S = 0.5
PREFIX = "tilltap_gateway_"
ONLINE_STATES = ("online", "heartbeat")

log = logging.getLogger(__name__)

# Stats names with a family of their own: exact name -> (family, help).
_COUNTERS = {
    "received": ("records_received", "Records taken from the broker"),
    "accepted": ("records_accepted", "Records stored as accepted"),
    "duplicates": ("records_duplicate", "Resent records already stored"),
    "acks_sent": ("acks_sent", "Acks published to terminals"),
    "auth_stand_in": ("stand_ins", "Authorizations approved while the ledger was away"),
}
# Stats names by prefix: prefix -> (family, label, help); the rest of the name is the label.
_LABELLED = {
    "rejected.": ("refused", "reason", "Records, requests and statuses refused, by reason"),
    "dropped.": ("dropped", "queue", "Messages dropped at a full queue, by queue"),
    "auth_": ("authorizations", "outcome", "Authorization answers, by outcome"),
    "ledger_hold.": ("ledger_holds", "event", "Ledger hold calls, by event"),
}
_OTHER = ("events", "event", "Every other gateway counter, by its name")


class GatewayCollector(Collector):
    """What the gateway keeps (Stats, queues, holds, presence, store), read at each scrape."""

    def __init__(self, gateway: Gateway, clock: Callable[[], float] = time.time) -> None:
        self.gateway = gateway
        self.clock = clock

    def collect(self) -> Iterable[Metric]:
        yield from self._counters()
        yield from self._histograms()
        yield from self._queues()
        yield from self._fleet()
        yield from self._store()

    def _counters(self) -> Iterable[Metric]:
        counts = self.gateway.stats.snapshot()
        singles = {name: CounterMetricFamily(PREFIX + family, text)
                   for name, (family, text) in _COUNTERS.items()}
        labelled = {prefix: CounterMetricFamily(PREFIX + family, text, labels=(label,))
                    for prefix, (family, label, text) in _LABELLED.items()}
        other = CounterMetricFamily(PREFIX + _OTHER[0], _OTHER[2], labels=(_OTHER[1],))
        for name in _COUNTERS:
            singles[name].add_metric([], counts.get(name, 0))
        for name, value in sorted(counts.items()):
            if name in _COUNTERS:
                continue
            prefix = next((p for p in _LABELLED if name.startswith(p)), None)
            if prefix is None:
                other.add_metric([name], value)
            else:
                labelled[prefix].add_metric([name[len(prefix) :]], value)
        yield from singles.values()
        yield from labelled.values()
        yield other

    def _histograms(self) -> Iterable[Metric]:
        for name, histogram in sorted(self.gateway.stats.histograms().items()):
            buckets = [(f"{bound:g}", count)
                       for bound, count in zip(LATENCY_BUCKETS_S, histogram.cumulative,
                                               strict=True)]
            buckets.append(("+Inf", histogram.count))
            yield HistogramMetricFamily(PREFIX + name, f"Latency of {name}",
                                        buckets=buckets, sum_value=histogram.sum_s)

    def _queues(self) -> Iterable[Metric]:
        gateway = self.gateway
        queues: dict[str, queue.Queue[Any]] = {
            "txn": gateway.txn_queue, "auth": gateway.auth_queue,
            "ingest": gateway.ingest_queue, "ack": gateway.ack_queue}
        depth = GaugeMetricFamily(PREFIX + "queue_depth", "Items waiting in a stage's queue",
                                  labels=("queue",))
        capacity = GaugeMetricFamily(PREFIX + "queue_capacity", "Most items a queue holds",
                                     labels=("queue",))
        for name, waiting in queues.items():
            depth.add_metric([name], waiting.qsize())
            capacity.add_metric([name], waiting.maxsize)
        yield depth
        yield capacity

    def _fleet(self) -> Iterable[Metric]:
        gateway = self.gateway
        with gateway.cards.lock:
            holds_open = len(gateway.cards.holds)
        yield GaugeMetricFamily(PREFIX + "holds_open", "Local holds of approvals not yet used",
                                value=holds_open)
        yield GaugeMetricFamily(PREFIX + "terminals_registered", "Terminals in the registry",
                                value=len(gateway.registry.ids()))
        states: dict[str, int] = {}
        for fields in list(gateway.presence.values()):
            states[fields["state"]] = states.get(fields["state"], 0) + 1
        by_state = GaugeMetricFamily(PREFIX + "terminals", "Terminals by their last status",
                                     labels=("state",))
        for state, count in sorted(states.items()):
            by_state.add_metric([state], count)
        yield by_state
        yield GaugeMetricFamily(PREFIX + "terminals_online",
                                "Terminals whose last status was online or a heartbeat",
                                value=sum(states.get(state, 0) for state in ONLINE_STATES))

    def _store(self) -> Iterable[Metric]:
        store = self.gateway.store
        yield GaugeMetricFamily(PREFIX + "store_up", "1 while the store can commit",
                                value=1 if store.health.available() else 0)
        try:
            oldest_s = store_reports.unsettled_since(store)
            batches = store_reports.batch_summary(store)
        except (sqlite3.Error, StoreUnavailable) as error:
            log.warning("metrics: the store could not be read: %s", error)
            return
        lag_s = 0.0 if oldest_s is None else max(0.0, self.clock() - oldest_s)
        yield GaugeMetricFamily(PREFIX + "settlement_lag_seconds",
                                "Age of the oldest accepted record the ledger has not confirmed",
                                value=lag_s)
        by_status = GaugeMetricFamily(PREFIX + "batches", "Settlement batches by status",
                                      labels=("status",))
        for status, count in sorted(batches.items()):
            by_status.add_metric([status], count)
        yield by_status


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scraper never holds the gateway's stop


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes go to the logging module at debug, not to stderr."""
        log.debug("%s " + format, self.address_string(), *args)


class MetricsServer:
    """/metrics and /health of `gateway` on host:port (port 0: any free one, see `port`).

    Bound at construction (a port in use fails before the gateway starts); served from
    `start()` on a guarded thread, so an exception that kills it stops the gateway."""

    def __init__(self, gateway: Gateway, host: str, port: int, on_death: OnDeath) -> None:
        self.gateway = gateway
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(GatewayCollector(gateway))
        self._server = make_server(host, port, self._app, _ThreadingWSGIServer, _QuietHandler)
        self.port: int = self._server.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"http://{shown}:{self.port}"
        self._thread = thread("gateway-metrics", self._serve, on_death)

    def _serve(self) -> None:
        self._server.serve_forever(poll_interval=SHUTDOWN_POLL_S)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]
             ) -> list[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(diag.DIAG_PATH):  # a technician's diag request (gateway/diag.py)
            return diag.serve(self.gateway.diag, environ, start_response)
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return _answer(start_response, "405 Method Not Allowed", b"use GET\n")
        if path == METRICS_PATH:
            return _answer(start_response, "200 OK", generate_latest(self.registry),
                           CONTENT_TYPE_LATEST)
        if path == HEALTH_PATH:
            store = self.gateway.health()["store"]
            status = "200 OK" if store["status"] == STATUS_OK else "503 Service Unavailable"
            body = json.dumps({"status": store["status"], "store": store}).encode() + b"\n"
            return _answer(start_response, status, body, "application/json")
        return _answer(start_response, "404 Not Found", b"GET /metrics or /health\n")


def _answer(start_response: Callable[..., Any], status: str, body: bytes,
            content_type: str = "text/plain; charset=utf-8") -> list[bytes]:
    start_response(status, [("Content-Type", content_type),
                            ("Content-Length", str(len(body)))])
    return [body]
