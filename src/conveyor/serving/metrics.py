"""Prometheus metrics, per model and version, at `/metrics`.

One process: a private registry. N worker processes (`--workers N`): prometheus_client's
multiprocess mode. The supervisor points `PROMETHEUS_MULTIPROC_DIR` at a fresh folder
before the workers start (the client reads it at import), each worker writes its values
to memory-mapped files there, and `/metrics` on any worker sums them all. The queue-depth
gauge uses the "livesum" mode: the sum over live workers.

Label children are looked up once per model version, not per request. Rows predicted
are `conveyor_batch_rows_sum`; requests by answer code are `conveyor_requests_total`.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ServerMetrics:
    """The server's metric families; `for_version` hands out the children one version uses."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        self.registry = CollectorRegistry(auto_describe=True)
        labels = ("model", "version")
        kw: dict[str, Any] = {"registry": None if self.multiprocess else self.registry}
        self.requests = Counter(
            "conveyor_requests", "Prediction requests answered", (*labels, "code"), **kw
        )
        self.errors = Counter(
            "conveyor_errors", "Failed prediction requests", (*labels, "kind"), **kw
        )
        self.latency = Histogram(
            "conveyor_request_seconds",
            "Time from request to answer",
            labels,
            buckets=_LATENCY_BUCKETS,
            **kw,
        )
        self.batch_rows = Histogram(
            "conveyor_batch_rows", "Rows per model batch", labels, buckets=_BATCH_BUCKETS, **kw
        )
        gauge_kw = dict(kw, multiprocess_mode="livesum") if self.multiprocess else kw
        self.queue_rows = Gauge(
            "conveyor_queue_rows", "Rows waiting in the batch queue", labels, **gauge_kw
        )
        self.shed = Counter(
            "conveyor_shed_requests", "Requests refused (429/503)", ("model", "reason"), **kw
        )

    def for_version(self, model: str, version: int) -> VersionMetrics:
        return VersionMetrics(self, model, str(version))

    def render(self) -> bytes:
        if not self.multiprocess:
            return generate_latest(self.registry)
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)


class VersionMetrics:
    """The children of one model version, resolved once."""

    def __init__(self, metrics: ServerMetrics, model: str, version: str) -> None:
        self._metrics = metrics
        self._labels = (model, version)
        self._codes: dict[int, Any] = {}
        self.latency = metrics.latency.labels(model, version)
        self.batch_rows = metrics.batch_rows.labels(model, version)
        self.queue_rows = metrics.queue_rows.labels(model, version)

    def answered(self, code: int, rows: int, seconds: float) -> None:
        child = self._codes.get(code)
        if child is None:
            child = self._codes[code] = self._metrics.requests.labels(*self._labels, str(code))
        child.inc()
        self.latency.observe(seconds)

    def failed(self, kind: str) -> None:
        self._metrics.errors.labels(*self._labels, kind).inc()

    def batch(self, rows: int, seconds: float, queued: int) -> None:
        self.batch_rows.observe(rows)
        self.queue_rows.set(queued)
