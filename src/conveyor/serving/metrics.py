"""Prometheus metrics, per model and version, at `/metrics`.

The request path only adds to plain integers (a dict entry, a bisect into the latency
buckets): prometheus_client's own metric objects take a lock per update, which cost a
few percent of a one-core server's throughput. At scrape time a collector turns the
totals into Prometheus families and prometheus_client renders them.

N worker processes (`--workers N`) are per-worker registries aggregated: the supervisor
points `PROMETHEUS_MULTIPROC_DIR` at a fresh folder, each worker writes its totals there
as JSON once a second, and `/metrics` on any worker sums every worker's file (its own
totals fresh from memory). Counters and histograms keep the totals of workers that
exited; the queue-depth gauge sums live workers only.

Families: `conveyor_requests_total{model,version,code}`, `conveyor_request_seconds`
(histogram), `conveyor_batch_rows` (histogram: rows per model batch; its `_sum` is rows
predicted), `conveyor_queue_rows` (gauge), `conveyor_errors_total{model,version,kind}`.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class VersionMetrics:
    """The running totals of one model version in this process."""

    def __init__(self, model: str, version: str) -> None:
        self.model = model
        self.version = version
        self.codes: dict[int, int] = {}
        self.errors: dict[str, int] = {}
        self.latency = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self.batches = [0] * (len(BATCH_BUCKETS) + 1)
        self.batch_rows_sum = 0
        self.queue_rows = 0

    def answered(self, code: int, rows: int, seconds: float) -> None:
        codes = self.codes
        codes[code] = codes.get(code, 0) + 1
        self.latency[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        self.latency_sum += seconds

    def failed(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1

    def batch(self, rows: int, seconds: float, queued: int) -> None:
        self.batches[bisect.bisect_left(BATCH_BUCKETS, rows)] += 1
        self.batch_rows_sum += rows
        self.queue_rows = queued

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "version": self.version,
            "codes": dict(self.codes),
            "errors": dict(self.errors),
            "latency": list(self.latency),
            "latency_sum": self.latency_sum,
            "batches": list(self.batches),
            "batch_rows_sum": self.batch_rows_sum,
            "queue_rows": self.queue_rows,
        }


class ServerMetrics:
    """Every version's totals in this process, and the /metrics rendering of all workers."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        folder = os.environ.get(MULTIPROC_ENV)
        self.folder = Path(folder) if folder else None
        self.versions: dict[tuple[str, str], VersionMetrics] = {}
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))

    def for_version(self, model: str, version: int) -> VersionMetrics:
        key = (model, str(version))
        if key not in self.versions:
            self.versions[key] = VersionMetrics(*key)
        return self.versions[key]

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def dump(self) -> None:
        """Write this worker's totals for the others' /metrics (multiprocess mode)."""
        if self.folder is None:
            return
        data = json.dumps({"pid": os.getpid(), "versions": self._own()})
        tmp = self.folder / f".{os.getpid()}.tmp"
        tmp.write_text(data)
        tmp.replace(self.folder / f"worker-{os.getpid()}.json")

    def _own(self) -> list[dict[str, Any]]:
        return [v.to_dict() for v in list(self.versions.values())]

    def snapshots(self) -> list[tuple[bool, list[dict[str, Any]]]]:
        """(alive, totals) of every worker: this one from memory, others from files."""
        out = [(True, self._own())]
        if self.folder is None:
            return out
        for path in self.folder.glob("worker-*.json"):
            with contextlib.suppress(OSError, ValueError):
                data = json.loads(path.read_text())
                if data["pid"] != os.getpid():
                    out.append((_alive(int(data["pid"])), data["versions"]))
        return out


class _Collector:
    def __init__(self, metrics: ServerMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        merged: dict[tuple[str, str], dict[str, Any]] = {}
        for alive, versions in self.metrics.snapshots():
            for v in versions:
                total = merged.setdefault((v["model"], v["version"]), _empty())
                for code, n in v["codes"].items():
                    total["codes"][str(code)] = total["codes"].get(str(code), 0) + n
                for kind, n in v["errors"].items():
                    total["errors"][kind] = total["errors"].get(kind, 0) + n
                total["latency"] = [
                    a + b for a, b in zip(total["latency"], v["latency"], strict=True)
                ]
                total["latency_sum"] += v["latency_sum"]
                total["batches"] = [
                    a + b for a, b in zip(total["batches"], v["batches"], strict=True)
                ]
                total["batch_rows_sum"] += v["batch_rows_sum"]
                if alive:
                    total["queue_rows"] += v["queue_rows"]
        labels = ["model", "version"]
        requests = CounterMetricFamily(
            "conveyor_requests", "Prediction requests answered", labels=[*labels, "code"]
        )
        errors = CounterMetricFamily(
            "conveyor_errors", "Failed prediction requests", labels=[*labels, "kind"]
        )
        latency = HistogramMetricFamily(
            "conveyor_request_seconds", "Time from request to answer", labels=labels
        )
        batches = HistogramMetricFamily(
            "conveyor_batch_rows", "Rows per model batch", labels=labels
        )
        queue = GaugeMetricFamily(
            "conveyor_queue_rows", "Rows waiting in the batch queue", labels=labels
        )
        for (model, version), t in sorted(merged.items()):
            for code, n in sorted(t["codes"].items()):
                requests.add_metric([model, version, code], n)
            for kind, n in sorted(t["errors"].items()):
                errors.add_metric([model, version, kind], n)
            latency.add_metric(
                [model, version], _cumulative(LATENCY_BUCKETS, t["latency"]), t["latency_sum"]
            )
            batches.add_metric(
                [model, version], _cumulative(BATCH_BUCKETS, t["batches"]), t["batch_rows_sum"]
            )
            queue.add_metric([model, version], t["queue_rows"])
        yield from (requests, errors, latency, batches, queue)


def _empty() -> dict[str, Any]:
    return {
        "codes": {},
        "errors": {},
        "latency": [0] * (len(LATENCY_BUCKETS) + 1),
        "latency_sum": 0.0,
        "batches": [0] * (len(BATCH_BUCKETS) + 1),
        "batch_rows_sum": 0,
        "queue_rows": 0,
    }


def _cumulative(bounds: tuple[float, ...], counts: list[int]) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    running = 0
    for bound, n in zip([*bounds, float("inf")], counts, strict=True):
        running += n
        out.append(("+Inf" if bound == float("inf") else f"{bound:g}", running))
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
