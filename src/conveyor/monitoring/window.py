"""A time window of served traffic, and its health: requests, errors, latency, batches.

Windows are given as a length back from now (`5m`, `1h`, `24h`, `7d`) or as two ISO
8601 times (`--since/--until`); naive times are UTC. Health is computed from the light
columns of the prediction log (serving/PREDICTIONS.md): one request is its row 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from conveyor.compute.spec import parse_duration as job_duration
from conveyor.core.errors import JobSpecError, MonitorInputError
from conveyor.monitoring.accuracy import wilson

HEALTH_COLUMNS = ["at", "request_id", "row", "role", "latency_ms", "status", "batch_rows"]
_BUCKETS = (1, 5, 10, 30, 60, 300, 600, 1800, 3600, 10800, 21600, 86400)  # seconds


def parse_duration(text: str) -> timedelta:
    """`30s`, `5m`, `1h`, `24h`, `7d` -> a timedelta (the jobs' duration syntax)."""
    try:
        seconds = job_duration(text) or 0.0
    except JobSpecError as e:
        raise MonitorInputError(e.message, e.hint) from None
    if seconds <= 0:
        raise MonitorInputError(f"a window of {text} is empty", "use e.g. 5m, 1h or 24h")
    return timedelta(seconds=seconds)


def parse_time(text: str) -> datetime:
    """An ISO 8601 time; a time without a zone is UTC."""
    try:
        at = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise MonitorInputError(
            f"'{text}' is not an ISO 8601 time", "e.g. 2026-12-04T10:00 or 2026-12-04T10:00Z"
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Window:
    since: datetime
    until: datetime

    @classmethod
    def last(cls, length: str | timedelta, now: datetime | None = None) -> Window:
        span = parse_duration(length) if isinstance(length, str) else length
        end = now or datetime.now(UTC)
        return cls(end - span, end)

    @classmethod
    def between(cls, since: str | datetime, until: str | datetime | None = None) -> Window:
        start = parse_time(since) if isinstance(since, str) else since
        end = (parse_time(until) if isinstance(until, str) else until) or datetime.now(UTC)
        if end <= start:
            raise MonitorInputError(
                f"the window ends ({end.isoformat()}) before it starts ({start.isoformat()})",
                "give --since earlier than --until",
            )
        return cls(start, end)

    @classmethod
    def pick(
        cls, length: str | None, since: str | None, until: str | None, now: datetime | None = None
    ) -> Window:
        """The CLI's choice: --window W, or --since T [--until T]; not both."""
        if length and (since or until):
            raise MonitorInputError("give --window or --since/--until, not both", None)
        if since:
            return cls.between(since, until)
        if until:
            raise MonitorInputError("--until needs --since", "e.g. --since 2026-12-04T10:00")
        return cls.last(length or "1h", now)

    @property
    def seconds(self) -> float:
        return (self.until - self.since).total_seconds()

    def before(self, n: int = 1) -> Window:
        """The window of the same length `n` lengths earlier (rules with `for N windows`)."""
        span = self.until - self.since
        return Window(self.since - n * span, self.until - n * span)

    def bucket_seconds(self) -> int:
        """A round bucket giving about 60 points over the window, for timelines."""
        want = self.seconds / 60
        return next((b for b in _BUCKETS if b >= want), _BUCKETS[-1])

    def to_dict(self) -> dict[str, str]:
        return {"since": self.since.isoformat(), "until": self.until.isoformat()}


def health(log: pa.Table, window: Window) -> dict[str, Any]:
    """The REPORT.md `health` object of a window's log rows (HEALTH_COLUMNS)."""
    first = log.filter(pc.equal(log["row"], 0))  # one row per request
    status = first["status"].to_numpy(zero_copy_only=False)
    answered = np.asarray(status == 200)
    latency = first["latency_ms"].to_numpy(zero_copy_only=False).astype(np.float64)
    batches = first["batch_rows"].to_numpy(zero_copy_only=False)[answered].astype(np.float64)
    requests, errors = int(first.num_rows), int((~answered).sum())
    ok_rows = log.filter(pc.equal(log["status"], 200))
    codes, counts = np.unique(status[~answered], return_counts=True)
    roles = pc.value_counts(ok_rows["role"]).to_pylist()
    return {
        "requests": requests,
        "rows": int(ok_rows.num_rows),
        "errors": errors,
        "error_rate": errors / requests if requests else None,
        "error_rate_ci": wilson(errors, requests),
        "errors_by_status": {str(c): int(n) for c, n in zip(codes, counts, strict=True)},
        "latency_ms": _quantiles(latency, {"p50": 0.5, "p95": 0.95, "p99": 0.99, "max": 1.0}),
        "batch_rows": {
            "mean": float(batches.mean()) if batches.size else None,
            **_quantiles(batches, {"p50": 0.5, "p95": 0.95, "max": 1.0}),
        },
        "roles": {r["values"]: int(r["counts"]) for r in roles},
        "timeline": _timeline(first, window),
    }


def _timeline(first: pa.Table, window: Window) -> list[dict[str, Any]]:
    if not first.num_rows:
        return []
    size = window.bucket_seconds()
    at = first["at"].cast(pa.int64()).to_numpy() / 1e6
    bucket = np.floor(at / size).astype(np.int64)
    status = first["status"].to_numpy(zero_copy_only=False)
    latency = first["latency_ms"].to_numpy(zero_copy_only=False).astype(np.float64)
    out = []
    for b in np.unique(bucket):
        mine = bucket == b
        ok = mine & (status == 200)
        q = _quantiles(latency[ok], {"p50_ms": 0.5, "p99_ms": 0.99})
        out.append(
            {
                "at": datetime.fromtimestamp(int(b) * size, UTC).isoformat(),
                "requests": int(mine.sum()),
                "errors": int((mine & (status != 200)).sum()),
                **q,
            }
        )
    return out


def _quantiles(values: np.ndarray, points: dict[str, float]) -> dict[str, float | None]:
    if not values.size:
        return dict.fromkeys(points)
    found = np.quantile(values, list(points.values()))
    return {k: float(v) for k, v in zip(points, found, strict=True)}
