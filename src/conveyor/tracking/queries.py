"""Reading runs back: details in bulk, filtered search, and metric histories.

A search is one SQL query (each clause an EXISTS on params, tags or the metric summary
table), then a handful of `IN` queries load the details of the runs it found. A metric
history is its packed point blocks (blocks.py), joined and downsampled in numpy.
"""

from __future__ import annotations

import operator
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import ColumnElement, exists, select
from sqlalchemy.orm import Session

from conveyor.core.errors import InvalidFilterError
from conveyor.tracking.blocks import Arrays, overlapping, unpack
from conveyor.tracking.downsample import minmax_indices
from conveyor.tracking.filters import Clause, Order
from conveyor.tracking.records import (
    MetricBlockRecord,
    RunArtifactRecord,
    RunMetricRecord,
    RunNoteRecord,
    RunParamRecord,
    RunRecord,
    RunTagRecord,
)
from conveyor.tracking.spend import usage_rows

_IN_CHUNK = 500
_VALUE = operator.itemgetter(1)


@dataclass(frozen=True)
class MetricSummary:
    """A metric's latest value (at its highest step) and its extremes."""

    last: float
    step: int
    min: float
    max: float
    count: int | None = None  # filled in by `get`, which counts the points


@dataclass(frozen=True)
class Usage:
    seconds: float = 0.0
    energy_kwh: float = 0.0
    cost_usd: float = 0.0


@dataclass(frozen=True)
class Artifact:
    name: str
    digest: str
    size: int
    logged_at: datetime


@dataclass(frozen=True)
class RunInfo:
    """A stored run as it is now. Params are the text they were logged as."""

    id: str
    name: str
    experiment: str
    status: str
    user: str
    host: str
    git_commit: str | None
    started_at: datetime
    ended_at: datetime | None
    sessions: int
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, MetricSummary] = field(default_factory=dict)
    usage: dict[str, Usage] = field(default_factory=dict)
    artifacts: list[Artifact] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        """Seconds from start to end (to now while running)."""
        end = self.ended_at or datetime.now(UTC)
        return max(0.0, (end - self.started_at).total_seconds())

    @property
    def total_usage(self) -> Usage:
        return Usage(
            sum(u.seconds for u in self.usage.values()),
            sum(u.energy_kwh for u in self.usage.values()),
            sum(u.cost_usd for u in self.usage.values()),
        )


@dataclass(frozen=True)
class MetricHistory:
    """A metric's points in step order (downsampled unless `len(self) == total`)."""

    key: str
    steps: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    wall_times: npt.NDArray[np.float64]
    total: int

    def __len__(self) -> int:
        return len(self.steps)


# -- search ----------------------------------------------------------------------------------


def search_ids(
    session: Session,
    clauses: Sequence[Clause],
    orders: Sequence[Order],
    experiment: str | None,
    limit: int | None,
) -> list[str]:
    query = select(RunRecord.id)
    if experiment is not None:
        query = query.where(RunRecord.experiment == experiment)
    for clause in clauses:
        query = query.where(_condition(clause))
    for order in orders:
        for column in _order_columns(order):
            query = query.order_by(
                column.desc().nulls_last() if order.descending else column.asc().nulls_last()
            )
    query = query.order_by(RunRecord.started_at.desc(), RunRecord.id)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))


def _compare(column: Any, op: str, value: Any) -> ColumnElement[bool]:
    if op == "like":
        return column.like(value)  # type: ignore[no-any-return]
    comparisons = {
        "=": column.__eq__,
        "!=": column.__ne__,
        "<": column.__lt__,
        "<=": column.__le__,
        ">": column.__gt__,
        ">=": column.__ge__,
    }
    return comparisons[op](value)  # type: ignore[no-any-return]


def _text(value: float | str) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _condition(clause: Clause) -> ColumnElement[bool]:
    f, op, value = clause.field, clause.op, clause.value
    if f.kind == "attribute":
        column = getattr(RunRecord, f.key)
        if f.key in ("started_at", "ended_at"):
            return _compare(column, op, _when(str(value)))
        return _compare(column, op, _text(value))
    if f.kind == "param":
        column = RunParamRecord.number if isinstance(value, float) else RunParamRecord.value
        return exists().where(
            RunParamRecord.run_id == RunRecord.id,
            RunParamRecord.key == f.key,
            _compare(column, op, value),
        )
    if f.kind == "tag":
        return exists().where(
            RunTagRecord.run_id == RunRecord.id,
            RunTagRecord.key == f.key,
            _compare(RunTagRecord.value, op, _text(value)),
        )
    return exists().where(
        RunMetricRecord.run_id == RunRecord.id,
        RunMetricRecord.key == f.key,
        _compare(RunMetricRecord.last_value, op, value),
    )


def _when(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidFilterError(
            f"{text!r} is not a date", "write dates as '2026-11-23' or '2026-11-23T10:00'"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _order_columns(order: Order) -> list[Any]:
    f = order.field
    if f.kind == "attribute":
        return [getattr(RunRecord, f.key)]
    if f.kind == "param":
        base = select(RunParamRecord).where(
            RunParamRecord.run_id == RunRecord.id, RunParamRecord.key == f.key
        )
        return [
            base.with_only_columns(RunParamRecord.number).scalar_subquery(),
            base.with_only_columns(RunParamRecord.value).scalar_subquery(),
        ]
    table = RunTagRecord if f.kind == "tag" else RunMetricRecord
    column = RunTagRecord.value if f.kind == "tag" else RunMetricRecord.last_value
    return [
        select(column).where(table.run_id == RunRecord.id, table.key == f.key).scalar_subquery()
    ]


# -- details ---------------------------------------------------------------------------------


def load_runs(session: Session, ids: Sequence[str], count_points: bool = False) -> list[RunInfo]:
    """Full details of the runs `ids`, in that order."""
    found: dict[str, RunInfo] = {}
    for start in range(0, len(ids), _IN_CHUNK):
        found.update(_load_chunk(session, list(ids[start : start + _IN_CHUNK]), count_points))
    return [found[i] for i in ids if i in found]


def _load_chunk(session: Session, ids: list[str], count_points: bool) -> dict[str, RunInfo]:
    params: dict[str, dict[str, str]] = defaultdict(dict)
    for p in session.scalars(select(RunParamRecord).where(RunParamRecord.run_id.in_(ids))):
        params[p.run_id][p.key] = p.value
    tags: dict[str, dict[str, str]] = defaultdict(dict)
    for t in session.scalars(select(RunTagRecord).where(RunTagRecord.run_id.in_(ids))):
        tags[t.run_id][t.key] = t.value
    metric_rows = list(
        session.scalars(select(RunMetricRecord).where(RunMetricRecord.run_id.in_(ids)))
    )
    counts = _point_counts(session, [m.id for m in metric_rows]) if count_points else {}
    metrics: dict[str, dict[str, MetricSummary]] = defaultdict(dict)
    for m in sorted(metric_rows, key=lambda m: m.key):
        metrics[m.run_id][m.key] = MetricSummary(
            last=_float(m.last_value),
            step=m.last_step or 0,
            min=_float(m.min_value),
            max=_float(m.max_value),
            count=counts.get(m.id) if count_points else None,
        )
    usage: dict[str, dict[str, Usage]] = defaultdict(dict)
    for run_id, device, seconds, energy, cost in usage_rows(session, ids):
        usage[run_id][device] = Usage(seconds, energy, cost)
    artifacts: dict[str, list[Artifact]] = defaultdict(list)
    for a in session.scalars(
        select(RunArtifactRecord)
        .where(RunArtifactRecord.run_id.in_(ids))
        .order_by(RunArtifactRecord.name)
    ):
        at = datetime.fromtimestamp(a.logged_at, UTC)
        artifacts[a.run_id].append(Artifact(a.name, a.digest, a.size, at))
    notes: dict[str, list[str]] = defaultdict(list)
    for n in session.scalars(
        select(RunNoteRecord).where(RunNoteRecord.run_id.in_(ids)).order_by(RunNoteRecord.seq)
    ):
        notes[n.run_id].append(n.text)
    out = {}
    for r in session.scalars(select(RunRecord).where(RunRecord.id.in_(ids))):
        out[r.id] = RunInfo(
            id=r.id,
            name=r.name,
            experiment=r.experiment,
            status=r.status,
            user=r.user,
            host=r.host,
            git_commit=r.git_commit,
            started_at=_aware(r.started_at),
            ended_at=_aware(r.ended_at) if r.ended_at else None,
            sessions=r.sessions,
            params=params[r.id],
            tags=tags[r.id],
            metrics=metrics[r.id],
            usage=usage[r.id],
            artifacts=artifacts[r.id],
            notes=notes[r.id],
        )
    return out


def _float(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; they were written in UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# -- histories -------------------------------------------------------------------------------


def _point_counts(session: Session, metric_ids: list[int]) -> dict[int, int]:
    """Points per metric, from the blocks' counts (read exactly where blocks overlap)."""
    ranges: dict[int, list[tuple[int, int, int]]] = defaultdict(list)
    for metric_id, first, last, count in session.execute(
        select(
            MetricBlockRecord.metric_id,
            MetricBlockRecord.first_seq,
            MetricBlockRecord.last_seq,
            MetricBlockRecord.count,
        ).where(MetricBlockRecord.metric_id.in_(metric_ids))
    ):
        ranges[metric_id].append((first, last, count))
    counts = {}
    for metric_id, blocks in ranges.items():
        if overlapping([(first, last) for first, last, _ in blocks]):
            counts[metric_id] = len(_read_points(session, metric_id)[0])
        else:
            counts[metric_id] = sum(count for _, _, count in blocks)
    return counts


def read_history(
    session: Session, metric: RunMetricRecord, max_points: int | None
) -> MetricHistory:
    """A metric's points in (step, seq) order; min/max-downsampled past `max_points`."""
    steps, values, times = _read_points(session, metric.id)
    total = len(steps)
    if max_points is not None and total > max_points:
        keep = minmax_indices(values, max_points)
        steps, values, times = steps[keep], values[keep], times[keep]
    return MetricHistory(metric.key, steps, values, times, total)


def _read_points(session: Session, metric_id: int) -> Arrays:
    """Every point of a metric. Straight from the driver's cursor: the blobs are the
    bulk of the read, and SQLAlchemy's result processing would copy them again."""
    conn = session.connection()
    p = "%s" if conn.dialect.name == "postgresql" else "?"
    driver: Any = conn.connection.dbapi_connection
    cursor = driver.cursor()
    try:
        sql = (
            "SELECT first_seq, last_seq, points FROM run_metric_blocks "
            f"WHERE metric_id = {p} ORDER BY first_seq"
        )
        if p == "%s":  # PostgreSQL: binary results, not the blobs as hex text to decode
            cursor.execute(sql, (metric_id,), binary=True)
        else:
            cursor.execute(sql, (metric_id,))
        return unpack(cursor.fetchall())
    finally:
        cursor.close()
