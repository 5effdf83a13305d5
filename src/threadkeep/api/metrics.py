"""Prometheus metrics of one app.

Each app gets its own registry, so two apps in one process (tests, or an
embedding program) do not clash on metric names. Routes are labelled by their
template (``/v1/sessions/{session_id}``), never by the raw path, so the number
of series stays bounded whatever ids clients send.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "threadkeep_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "threadkeep_http_request_duration_seconds",
            "Time to answer an HTTP request, by method, route template and status.",
            ["method", "route", "status"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.in_progress = Gauge(
            "threadkeep_http_requests_in_progress",
            "HTTP requests being served now.",
            registry=self.registry,
        )
        self.writes = Counter(
            "threadkeep_writes",
            "Writes committed through the API (successful POST/PATCH/PUT/DELETE), by route.",
            ["route"],
            registry=self.registry,
        )

        self.sync_held = Gauge(
            "threadkeep_sync_live_requests",
            "Live shape requests held now, waiting for a change (sync subscribers).",
            registry=self.registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        labels = (method, route, str(status))
        self.requests.labels(*labels).inc()
        self.latency.labels(*labels).observe(seconds)
        if method in ("POST", "PATCH", "PUT", "DELETE") and 200 <= status < 300:
            self.writes.labels(route).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
