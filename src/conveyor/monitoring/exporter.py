"""The monitor's Prometheus metrics: the latest window report of each served version.

The monitor checks each served version once per interval and hands the report
(REPORT.md, `conveyor.monitor-report/1`) to `MonitorMetrics.update`; the alerts open
now go to `set_alerts`, and each check's outcome to `checked`. Nothing is computed at
scrape time: a collector reads the latest values under a lock and renders them, as
`serving/metrics.py` does for the server. A figure the report holds as `null` (no
traffic, no labels, not enough data for a drift test) is left out, so its series is
absent rather than a misleading 0.

Families (labels `model`, `version` unless noted; shares and ratios as fractions, times
in seconds), each from the report unless noted:

- `conveyor_monitor_window_requests`: `health.requests`
- `conveyor_monitor_error_ratio`: `health.error_rate`
- `conveyor_monitor_latency_seconds{quantile}`: a summary of quantiles only (no `_sum`,
  `_count`): `health.latency_ms` p50, p95, p99 and max (quantile 1), in seconds
- `conveyor_monitor_drift_share`: `drift.share`
- `conveyor_monitor_drift_detected{column}`: 0 or 1, `drift.columns[].drift`, for the
  columns a test had data for (the others are not counted, DRIFT.md)
- `conveyor_monitor_drift_effect{column,test}`: `drift.columns[].checks[].effect`
- `conveyor_monitor_prediction_shift`: `predictions.shift`
- `conveyor_monitor_accuracy_ratio`: `accuracy.accuracy`
- `conveyor_monitor_labelled_rows`: `accuracy.labelled`
- `conveyor_monitor_last_check_timestamp_seconds`: when `update` took the report
- `conveyor_monitor_alerts_open{rule}`: 1 per alert open now (`set_alerts`)
- `conveyor_monitor_checks_total`, `conveyor_monitor_check_errors_total`: counters
  without labels (`checked`)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from conveyor.core.errors import ConveyorError

REPORT_FORMAT = "conveyor.monitor-report/1"
LABELS = ["model", "version"]
# health.latency_ms keys -> the summary's quantile label (max is the 1-quantile)
QUANTILES = {"p50": "0.5", "p95": "0.95", "p99": "0.99", "max": "1"}

Key = tuple[str, str]


@dataclass
class _Figures:
    """One version's exported figures, taken from its latest report."""

    at: float
    gauges: dict[str, float] = field(default_factory=dict)
    latency: dict[str, float] = field(default_factory=dict)  # quantile -> seconds
    detected: dict[str, float] = field(default_factory=dict)  # column -> 0/1
    effects: dict[tuple[str, str], float] = field(default_factory=dict)  # (column, test)


# the plain gauges: family name, help, where in the report
_GAUGES: list[tuple[str, str, tuple[str, str]]] = [
    ("window_requests", "Requests in the monitor's latest window", ("health", "requests")),
    ("error_ratio", "Failed requests / requests in the latest window", ("health", "error_rate")),
    ("drift_share", "Drifted columns / checked columns in the latest window", ("drift", "share")),
    (
        "prediction_shift",
        "Jensen-Shannon distance of predicted class shares from the reference",
        ("predictions", "shift"),
    ),
    (
        "accuracy_ratio",
        "Accuracy of labelled predictions in the latest window",
        ("accuracy", "accuracy"),
    ),
    ("labelled_rows", "Predicted rows with a label in the latest window", ("accuracy", "labelled")),
]


class MonitorMetrics:
    """The latest report per served version and the open alerts, as Prometheus families.

    `update` may be called from the monitor's loop while a scrape reads: every
    method takes one lock, and a scrape renders a consistent snapshot.
    """

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._versions: dict[Key, _Figures] = {}
        self._alerts: set[tuple[str, str, str]] = set()
        self._checks = 0
        self._check_errors = 0
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self))

    def update(self, report: Mapping[str, Any], *, checked_at: float | None = None) -> None:
        """Take a version's latest window report (REPORT.md); it replaces the previous one."""
        key = _key(report)
        figures = _figures(report, time.time() if checked_at is None else checked_at)
        with self._lock:
            self._versions[key] = figures

    def forget(self, model: str, version: int | str) -> None:
        """Drop a version that is no longer served: its series disappear."""
        with self._lock:
            self._versions.pop((model, str(version)), None)

    def set_alerts(self, alerts: Iterable[Mapping[str, Any]]) -> None:
        """Replace the open alerts: each a mapping with `model`, `version` and `rule`."""
        open_now: set[tuple[str, str, str]] = set()
        for alert in alerts:
            missing = [k for k in ("model", "version", "rule") if alert.get(k) is None]
            if missing:
                raise ConveyorError(
                    f"an alert lacks {', '.join(missing)}: {dict(alert)!r}",
                    "pass each open alert as {'model': ..., 'version': ..., 'rule': ...}",
                )
            open_now.add((str(alert["model"]), str(alert["version"]), str(alert["rule"])))
        with self._lock:
            self._alerts = open_now

    def checked(self, ok: bool) -> None:
        """Count one check of one version; `ok=False` when it raised."""
        with self._lock:
            self._checks += 1
            if not ok:
                self._check_errors += 1

    def render(self) -> bytes:
        """The Prometheus text exposition of the latest values."""
        return generate_latest(self.registry)

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> tuple[WSGIServer, int]:
        """Serve `/metrics` from a daemon thread; `port=0` picks a free one.

        Returns the server and its port; `server.shutdown(); server.server_close()`
        stops it.
        """
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server, int(server.server_port)

    def _snapshot(self) -> tuple[dict[Key, _Figures], set[tuple[str, str, str]], int, int]:
        with self._lock:
            return dict(self._versions), set(self._alerts), self._checks, self._check_errors


def _key(report: Mapping[str, Any]) -> Key:
    if not isinstance(report, Mapping) or report.get("format") != REPORT_FORMAT:
        got = report.get("format") if isinstance(report, Mapping) else type(report).__name__
        raise ConveyorError(
            f"not a monitor report (format {got!r}, expected {REPORT_FORMAT!r})",
            "pass the object monitoring/report.py builds (REPORT.md)",
        )
    if report.get("model") is None or report.get("version") is None:
        raise ConveyorError(
            "a monitor report without its model or version cannot be exported",
            "build the report for one served version (REPORT.md: model, version)",
        )
    return str(report["model"]), str(report["version"])


def _number(value: Any) -> float | None:
    """A figure as a float, or None when the report holds null (or not a number)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _section(report: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = report.get(name)
    return value if isinstance(value, Mapping) else {}


def _figures(report: Mapping[str, Any], at: float) -> _Figures:
    out = _Figures(at=at)
    for name, _help, (section, key) in _GAUGES:
        value = _number(_section(report, section).get(key))
        if value is not None:
            out.gauges[name] = value
    latency = _section(_section(report, "health"), "latency_ms")
    for key, quantile in QUANTILES.items():
        ms = _number(latency.get(key))
        if ms is not None:
            out.latency[quantile] = ms / 1000.0
    for column in _section(report, "drift").get("columns") or []:
        _drift_column(column, out)
    return out


def _drift_column(column: Mapping[str, Any], out: _Figures) -> None:
    name = str(column.get("name"))
    checks = column.get("checks") or [column]
    for check in checks:
        effect = _number(check.get("effect"))
        if effect is not None and check.get("test") is not None:
            out.effects[(name, str(check["test"]))] = effect
    # a column whose tests all lacked data is not counted (DRIFT.md): no 0/1 either
    if _number(column.get("effect")) is not None or any(k[0] == name for k in out.effects):
        out.detected[name] = 1.0 if column.get("drift") else 0.0


class _Collector:
    def __init__(self, metrics: MonitorMetrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        versions, alerts, checks, check_errors = self.metrics._snapshot()
        gauges = {
            name: GaugeMetricFamily(f"conveyor_monitor_{name}", text, labels=LABELS)
            for name, text, _where in _GAUGES
        }
        latency = Metric(
            "conveyor_monitor_latency_seconds",
            "Request latency quantiles over the latest window (quantile 1 is the max)",
            "summary",
        )
        detected = GaugeMetricFamily(
            "conveyor_monitor_drift_detected",
            "1 when the column drifted in the latest window, else 0",
            labels=[*LABELS, "column"],
        )
        effects = GaugeMetricFamily(
            "conveyor_monitor_drift_effect",
            "A drift test's effect size on a column in the latest window (DRIFT.md)",
            labels=[*LABELS, "column", "test"],
        )
        last = GaugeMetricFamily(
            "conveyor_monitor_last_check_timestamp_seconds",
            "Unix time of the version's latest report",
            labels=LABELS,
        )
        for (model, version), figures in sorted(versions.items()):
            labels = [model, version]
            for name, value in figures.gauges.items():
                gauges[name].add_metric(labels, value)
            for quantile, seconds in figures.latency.items():
                latency.add_sample(
                    "conveyor_monitor_latency_seconds",
                    {"model": model, "version": version, "quantile": quantile},
                    seconds,
                )
            for column, flag in sorted(figures.detected.items()):
                detected.add_metric([*labels, column], flag)
            for (column, test), effect in sorted(figures.effects.items()):
                effects.add_metric([*labels, column, test], effect)
            last.add_metric(labels, figures.at)
        open_alerts = GaugeMetricFamily(
            "conveyor_monitor_alerts_open",
            "1 for each alert rule open on a version",
            labels=[*LABELS, "rule"],
        )
        for model, version, rule in sorted(alerts):
            open_alerts.add_metric([model, version, rule], 1.0)
        yield from gauges.values()
        yield from (latency, detected, effects, last, open_alerts)
        yield CounterMetricFamily(
            "conveyor_monitor_checks", "Version checks the monitor ran", value=checks
        )
        yield CounterMetricFamily(
            "conveyor_monitor_check_errors",
            "Version checks that failed with an error",
            value=check_errors,
        )
