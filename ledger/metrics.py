"""The ledger's `GET /metrics`: Prometheus text exposition (prometheus-client).

Two kinds of figures, each read where it is kept:

    tilltap_ledger_http_requests_total{route,method,status}   counted by the server
    tilltap_ledger_http_request_seconds{route}                histogram, the same requests
    tilltap_ledger_holds{status}                              read from the books at scrape
    tilltap_ledger_holds_posted_late                          (open, posted, voided, expired)
    tilltap_ledger_batches_posted                             rows of `batches`
    tilltap_ledger_transactions_posted                        rows of `transactions`
    tilltap_ledger_refused_transactions                       rows of `refused_txns`
    tilltap_ledger_alarms                                     rows of `alarms`
    tilltap_ledger_up                                         1 if the database answered

Routes are labelled by their template (`/v1/cards/{card}`), never by the raw path, so a
caller cannot grow the label set; anything unknown is `other`. Each server has its own
registry: two ledgers in one process (tests) never share a counter.

`/metrics` is a read of the books as a whole: it needs a login whose role may READ_BOOKS
(`reader` or `admin`), as the reports do; on an open ledger (loopback, no logins) anyone.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from ledger.books import Books
from ledger.errors import LedgerUnavailable
from ledger.openapi import ROUTES

METRICS_PATH = "/metrics"
CONTENT_TYPE = CONTENT_TYPE_LATEST
REQUEST_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Every path of the API without a parameter (ledger/openapi.py lists them all).
_FIXED_ROUTES = frozenset(route.path for route in ROUTES if "{" not in route.path)
_PREFIX_ROUTES = (
    ("/v1/cards/", "/block", "/v1/cards/{card}/block"),
    ("/v1/cards/", "/history", "/v1/cards/{card}/history"),
    ("/v1/cards/", "/replace", "/v1/cards/{card}/replace"),
    ("/v1/customers/", "/history", "/v1/customers/{customer}/history"),
    ("/v1/customers/", "/export", "/v1/customers/{customer}/export"),
    ("/v1/customers/", "", "/v1/customers/{customer}"),
    ("/v1/companies/", "/cards", "/v1/companies/{company}/cards"),
    ("/v1/companies/", "", "/v1/companies/{company}"),  # and DELETE .../cards/{card}
    ("/v1/cards/", "", "/v1/cards/{card}"),
    ("/v1/holds/", "", "/v1/holds/{hold}"),
    ("/v1/reports/", "", "/v1/reports/{name}"),
)  # fmt: skip
_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})


def route_of(path: str) -> str:
    """The route template a request path falls under ("other" if none)."""
    if path in _FIXED_ROUTES:
        return path
    for prefix, suffix, template in _PREFIX_ROUTES:
        if path.startswith(prefix) and path.endswith(suffix) and len(path) > len(prefix + suffix):
            return template
    return "other"


class LedgerMetrics:
    """The request counters of one server, and the books' figures read at each scrape."""

    def __init__(self, books: Books) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter("tilltap_ledger_http_requests", "HTTP requests answered",
                                ("route", "method", "status"), registry=self.registry)
        self.latency = Histogram("tilltap_ledger_http_request_seconds",
                                 "Time from a request's headers to its answer", ("route",),
                                 buckets=REQUEST_SECONDS_BUCKETS, registry=self.registry)
        self.registry.register(_BooksCollector(books))

    @contextmanager
    def request(self, method: str, path: str) -> Iterator[dict[str, int]]:
        """Time one request; the caller sets `["status"]` in the yielded dict before leaving."""
        route = route_of(path)
        outcome = {"status": 0}
        started = time.perf_counter()
        try:
            yield outcome
        finally:
            self.latency.labels(route).observe(time.perf_counter() - started)
            self.requests.labels(route, method if method in _METHODS else "other",
                                 str(outcome["status"])).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _BooksCollector(Collector):
    """Figures the books keep, read at scrape time (never counted twice)."""

    def __init__(self, books: Books) -> None:
        self.books = books

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("tilltap_ledger_up", "1 if the ledger's database answered")
        try:
            holds = self.books.hold_totals()
            counts = self.books.counts()
        except LedgerUnavailable:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        by_status = GaugeMetricFamily("tilltap_ledger_holds", "Holds by status",
                                      labels=("status",))
        for status, count in sorted(holds.items()):
            if status != "posted_late":
                by_status.add_metric([status], count)
        yield by_status
        yield GaugeMetricFamily("tilltap_ledger_holds_posted_late",
                                "Holds posted after they had expired",
                                value=holds.get("posted_late", 0))
        for name, table, text in (
            ("batches_posted", "batches", "Settlement batches posted"),
            ("transactions_posted", "transactions", "Transactions posted"),
            ("refused_transactions", "refused_txns", "Transactions batches refused"),
            ("alarms", "alarms", "Alarms recorded"),
        ):
            yield GaugeMetricFamily(f"tilltap_ledger_{name}", text, value=counts.get(table, 0))
