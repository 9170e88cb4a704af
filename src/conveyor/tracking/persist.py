"""Writing a batch of run events to the metadata store in one transaction.

Every write is idempotent, so the same batch delivered twice (a retry after a lost
commit acknowledgement, a spool delivered by two processes) changes nothing the second
time: point blocks, notes and usage are `INSERT ... ON CONFLICT DO NOTHING` on their
identity, params, tags and artifacts are upserts, summaries take min/max and the newest
(step, seq). A batch's points become one packed block per metric (blocks.py).
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple
from typing import cast as typed

import numpy as np
import numpy.typing as npt
from sqlalchemy import (
    BigInteger,
    Float,
    Integer,
    Table,
    and_,
    bindparam,
    case,
    cast,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from conveyor.storage.metadata import MetadataStore
from conveyor.storage.tables import index_objects
from conveyor.tracking.blocks import Block, pack
from conveyor.tracking.records import (
    RunArtifactRecord,
    RunMetricRecord,
    RunNoteRecord,
    RunParamRecord,
    RunRecord,
    RunTagRecord,
    RunUsageRecord,
)
from conveyor.tracking.spool import Event

_METRICS = typed(Table, RunMetricRecord.__table__)
_KEY = operator.itemgetter(1)  # an event's metric key


def write_events(
    meta: MetadataStore, run_id: str, events: Sequence[Event], metric_ids: dict[str, int]
) -> None:
    """Apply `events` of one run in one transaction; `metric_ids` caches key -> series id."""
    points = [e for e in events if e[0] == "m"]
    others = [e for e in events if e[0] != "m"] if len(points) < len(events) else []
    with meta.write() as session:
        ids = _metric_ids(session, run_id, set(map(_KEY, points)), metric_ids)
        if points:
            columns = point_columns(points, ids)
            _insert_blocks(session, pack(*columns))
            session.execute(_summary_update(), summary_rows(columns))
        if others:
            _apply_others(session, run_id, others)
    metric_ids.update(ids)  # only after the commit: ids from a rolled-back insert are void


class PointColumns(NamedTuple):
    """A batch's points as columns, in the order they were logged (pack's argument order)."""

    metric_ids: npt.NDArray[np.int64]
    steps: npt.NDArray[np.int64]
    seqs: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    times: npt.NDArray[np.float64]


def point_columns(points: Sequence[Event], ids: dict[str, int]) -> PointColumns:
    """Turn ("m", key, step, seq, value, wall_time) events into columns in bulk (one
    C-level pass per column: half the time of transposing the tuples with zip)."""
    n = len(points)

    def column(field: int, dtype: type) -> Any:
        return np.fromiter(map(operator.itemgetter(field), points), dtype, n)

    return PointColumns(
        np.fromiter(map(ids.__getitem__, map(_KEY, points)), np.int64, n),
        column(2, np.int64),
        column(3, np.int64),
        column(4, np.float64),
        column(5, np.float64),
    )


def summary_rows(columns: PointColumns) -> list[dict[str, Any]]:
    """Per metric of the batch: its latest point by (step, seq), first step and extremes.

    NaN values are left out of the extremes; a metric with only NaN gets None for them.
    """
    order = np.lexsort((columns.seqs, columns.steps, columns.metric_ids))
    ids, steps = columns.metric_ids[order], columns.steps[order]
    seqs, values = columns.seqs[order], columns.values[order]
    change = np.empty(len(ids), dtype=bool)
    change[0] = True
    np.not_equal(ids[1:], ids[:-1], out=change[1:])
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], len(ids)) - 1
    nan = np.isnan(values)
    counted = np.add.reduceat(~nan, starts) > 0
    low = np.minimum.reduceat(np.where(nan, np.inf, values), starts)
    high = np.maximum.reduceat(np.where(nan, -np.inf, values), starts)
    return [
        {
            "b_id": i,
            "b_step": s,
            "b_seq": q,
            "b_value": v,
            "b_first": f,
            "b_low": lo if ok else None,
            "b_high": hi if ok else None,
        }
        for i, s, q, v, f, lo, hi, ok in zip(
            ids[ends].tolist(),
            steps[ends].tolist(),
            seqs[ends].tolist(),
            values[ends].tolist(),
            steps[starts].tolist(),
            low.tolist(),
            high.tolist(),
            counted.tolist(),
            strict=True,
        )
    ]


def _insert(session: Session) -> Any:
    """The dialect's INSERT, which knows ON CONFLICT."""
    dialect = session.get_bind().dialect.name
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


def _metric_ids(
    session: Session, run_id: str, keys: set[str], known: dict[str, int]
) -> dict[str, int]:
    ids = {k: known[k] for k in keys if k in known}
    missing = sorted(keys - ids.keys())
    if missing:
        rows = [{"run_id": run_id, "key": k} for k in missing]
        session.execute(_insert(session)(RunMetricRecord).values(rows).on_conflict_do_nothing())
        found = session.execute(
            select(_METRICS.c.key, _METRICS.c.id).where(
                _METRICS.c.run_id == run_id, _METRICS.c.key.in_(missing)
            )
        )
        ids.update({key: id_ for key, id_ in found})
    return ids


def _insert_blocks(session: Session, blocks: list[Block]) -> None:
    """Insert packed blocks; one already stored (the same batch again) is left as it is."""
    postgres = session.get_bind().dialect.name == "postgresql"
    sql = _POSTGRES_BLOCK_INSERT if postgres else _SQLITE_BLOCK_INSERT
    driver: Any = session.connection().connection.dbapi_connection
    cursor = driver.cursor()  # the driver's own cursor, in the session's transaction
    try:
        cursor.executemany(sql, blocks)
    finally:
        cursor.close()


_COLUMNS = "run_metric_blocks (metric_id, first_seq, last_seq, count, points)"
_SQLITE_BLOCK_INSERT = f"INSERT OR IGNORE INTO {_COLUMNS} VALUES (?, ?, ?, ?, ?)"
# %b: the blob goes over the wire as binary, not as hex text the server decodes
_POSTGRES_BLOCK_INSERT = (
    f"INSERT INTO {_COLUMNS} VALUES (%s, %s, %s, %s, %b) ON CONFLICT DO NOTHING"
)


@functools.cache
def _summary_update() -> Any:
    """One UPDATE for every metric of every batch (compiled once, run as executemany).

    A NULL `b_low`/`b_high` (only NaN in the batch) leaves min and max as they are.
    """
    c = _METRICS.c
    step, seq = bindparam("b_step", type_=BigInteger), bindparam("b_seq", type_=BigInteger)
    first = bindparam("b_first", type_=BigInteger)
    # typed casts: PostgreSQL cannot infer the type of a bare `$n IS NOT NULL`
    low = cast(bindparam("b_low", type_=Float), Float)
    high = cast(bindparam("b_high", type_=Float), Float)
    newer = or_(
        c.last_step.is_(None),
        c.last_step < step,
        and_(c.last_step == step, c.last_seq <= seq),
    )
    return (
        update(_METRICS)
        .where(c.id == bindparam("b_id", type_=Integer))
        .values(
            last_value=case((newer, bindparam("b_value", type_=Float)), else_=c.last_value),
            last_step=case((newer, step), else_=c.last_step),
            last_seq=case((newer, seq), else_=c.last_seq),
            first_step=case(
                (or_(c.first_step.is_(None), c.first_step > first), first), else_=c.first_step
            ),
            min_value=case(
                (and_(low.is_not(None), or_(c.min_value.is_(None), c.min_value > low)), low),
                else_=c.min_value,
            ),
            max_value=case(
                (and_(high.is_not(None), or_(c.max_value.is_(None), c.max_value < high)), high),
                else_=c.max_value,
            ),
        )
    )


def _apply_others(session: Session, run_id: str, events: Iterable[Event]) -> None:
    params: dict[str, tuple[str, float | None]] = {}
    tags: dict[str, str] = {}
    notes, usage, artifacts, status = [], [], {}, None
    for event in events:
        kind = event[0]
        if kind == "p":
            params.update({k: (v[0], v[1]) for k, v in event[1].items()})
        elif kind == "t":
            tags.update(event[1])
        elif kind == "n":
            _, seq, at, text = event
            notes.append({"run_id": run_id, "seq": seq, "logged_at": at, "text": text})
        elif kind == "u":
            _, seq, at, device, seconds, energy, cost = event
            usage.append(
                {
                    "run_id": run_id,
                    "seq": seq,
                    "logged_at": at,
                    "device": device,
                    "seconds": seconds,
                    "energy_kwh": energy,
                    "cost_usd": cost,
                }
            )
        elif kind == "a":
            _, name, digest, size, media_type, at = event
            artifacts[name] = (digest, size, media_type, at)
        elif kind == "s":
            status = (event[1], event[2])
    insert = _insert(session)
    if params:
        rows = [
            {"run_id": run_id, "key": k, "value": v, "number": n} for k, (v, n) in params.items()
        ]
        stmt = insert(RunParamRecord).values(rows)
        session.execute(
            stmt.on_conflict_do_update(
                index_elements=["run_id", "key"],
                set_={"value": stmt.excluded.value, "number": stmt.excluded.number},
            )
        )
    if tags:
        stmt = insert(RunTagRecord).values(
            [{"run_id": run_id, "key": k, "value": v} for k, v in tags.items()]
        )
        session.execute(
            stmt.on_conflict_do_update(
                index_elements=["run_id", "key"], set_={"value": stmt.excluded.value}
            )
        )
    if notes:
        session.execute(insert(RunNoteRecord).values(notes).on_conflict_do_nothing())
    if usage:
        session.execute(insert(RunUsageRecord).values(usage).on_conflict_do_nothing())
    for name, (digest, size, media_type, at) in artifacts.items():
        index_objects(session, [(digest, size)], media_type)
        stmt = insert(RunArtifactRecord).values(
            run_id=run_id, name=name, digest=digest, size=size, logged_at=at
        )
        session.execute(
            stmt.on_conflict_do_update(
                index_elements=["run_id", "name"],
                set_={"digest": digest, "size": size, "logged_at": at},
            )
        )
    if status is not None:
        ended = datetime.fromtimestamp(status[1], UTC) if status[1] is not None else None
        session.execute(
            update(RunRecord).where(RunRecord.id == run_id).values(status=status[0], ended_at=ended)
        )
