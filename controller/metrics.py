"""Prometheus metrics of one controller instance, in its own registry (so several
instances, e.g. in tests, never collide).

    metrics = ControllerMetrics()
    metrics.render()              # (body bytes, content type) for GET /metrics
    metrics.asgi_app()            # or mount this ASGI app at /metrics
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    make_asgi_app,
)

__all__ = ["CONTENT_TYPE_LATEST", "ControllerMetrics"]

_LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class ControllerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages = Counter(
            "cctv_ingest_messages", "Messages stored, by kind", ["kind"], registry=r
        )
        self.quarantined = Counter(
            "cctv_ingest_quarantined", "Messages quarantined, by reason", ["reason"], registry=r
        )
        self.duplicates = Counter(
            "cctv_ingest_duplicates", "Redelivered messages dropped (same unit and seq)", registry=r
        )
        self.gaps = Counter(
            "cctv_ingest_missing_seqs", "Seqs found missing when a later one arrived", registry=r
        )
        self.late = Counter(
            "cctv_ingest_late_seqs", "Missing seqs that arrived later (gap filled)", registry=r
        )
        self.lag = Histogram(
            "cctv_ingest_lag_seconds",
            "From the sender's sent_at to the database commit",
            buckets=_LAG_BUCKETS,
            registry=r,
        )
        self.batch_size = Histogram(
            "cctv_ingest_batch_messages",
            "Messages per database commit",
            buckets=(1, 5, 20, 50, 100, 250, 500, 1000, 2500),
            registry=r,
        )
        self.queue_depth = Gauge(
            "cctv_ingest_queue_depth", "Received messages waiting to be stored", registry=r
        )
        self.unacknowledged = Gauge(
            "cctv_ingest_unacknowledged",
            "Messages received on the broker connection and not yet acknowledged (they are "
            "acknowledged once committed)",
            registry=r,
        )
        self.database_up = Gauge(
            "cctv_ingest_database_up",
            "0 while ingest waits for the database to come back, else 1",
            registry=r,
        )
        self.database_up.set(1)
        self.units = Gauge("cctv_units", "Units by roll-up state", ["state"], registry=r)
        self.open_callouts = Gauge(
            "cctv_open_callouts", "Open maintenance callouts by priority", ["priority"], registry=r
        )
        self.notifications = Counter(
            "cctv_notifications", "Notifications by channel and result", ["channel", "result"],
            registry=r,
        )  # fmt: skip
        self.broker_connected = Gauge(
            "cctv_broker_connected", "1 while connected to the broker", registry=r
        )

    def set_units(self, counts: Mapping[str, int]) -> None:
        for state in ("ok", "degraded", "fault"):
            self.units.labels(state).set(counts.get(state, 0))

    def set_open_callouts(self, counts: Mapping[str, int]) -> None:
        for priority in ("P1", "P2", "P3"):
            self.open_callouts.labels(priority).set(counts.get(priority, 0))

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def asgi_app(self) -> Callable[..., Any]:
        return make_asgi_app(self.registry)
