"""Rollups: each metric's extremes per bucket of steps, kept at four bucket widths.

A chart of a metric with a million points needs ~1,000 points that keep its shape.
Reading every point costs a second or more through any Python database driver, so the
writer also keeps, for every bucket `step // width` (width 128, 1024, 8192, 65536),
the minimum and maximum value and the step and time where each occurred. A chart read
takes the widest width that still gives enough buckets (at most 4 x max_points rows),
and min/max-downsamples those candidates: the true minimum and maximum of every region
are among them, so no spike is lost. Merging is idempotent (min of mins, earliest step
on ties), so a batch delivered twice leaves the same rows.
"""

from __future__ import annotations

import functools
from typing import Any, cast

import numpy as np
import numpy.typing as npt
from sqlalchemy import Table, and_, case, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from conveyor.tracking.downsample import minmax_indices
from conveyor.tracking.records import MetricRollupRecord

WIDTHS = (128, 1024, 8192, 65536)
_TABLE = cast(Table, MetricRollupRecord.__table__)

Arrays = tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]


def rollup_rows(
    metric_ids: npt.NDArray[np.int64],
    steps: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
    times: npt.NDArray[np.float64],
) -> list[dict[str, Any]]:
    """The rollup rows a batch's points (of any number of metrics) fold into, at every
    width: per (metric, bucket) the lowest and highest value with their step and time.
    NaN values are left out; ties go to the earliest step, then the first given.

    The points are sorted once, for the narrowest width; each wider bucket is a whole
    number of narrower ones, so its extremes are found among theirs.
    """
    keep = ~np.isnan(values)
    if not keep.all():
        metric_ids, steps, values, times = metric_ids[keep], steps[keep], values[keep], times[keep]
    if len(steps) == 0:
        return []
    ids, buckets = metric_ids, steps // WIDTHS[0]
    low, high, ids, buckets = _extremes(ids, buckets, steps, values, steps, values)
    lv, ls, lt = values[low], steps[low], times[low]
    hv, hs, ht = values[high], steps[high], times[high]
    rows = _rows(WIDTHS[0], ids, buckets, lv, ls, lt, hv, hs, ht)
    for width in WIDTHS[1:]:
        coarse = buckets // (width // WIDTHS[0])
        lo, hi, wide_ids, wide = _extremes(ids, coarse, ls, lv, hs, hv)
        rows.extend(_rows(width, wide_ids, wide, lv[lo], ls[lo], lt[lo], hv[hi], hs[hi], ht[hi]))
    return rows


def _extremes(
    ids: npt.NDArray[np.int64],
    buckets: npt.NDArray[np.int64],
    low_steps: npt.NDArray[np.int64],
    low_values: npt.NDArray[np.float64],
    high_steps: npt.NDArray[np.int64],
    high_values: npt.NDArray[np.float64],
) -> tuple[
    npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.int64], npt.NDArray[np.int64]
]:
    """Per (id, bucket), in that order: the index of the lowest value (earliest step on
    ties, then the first given) and of the highest; and the groups' ids and buckets."""
    low = np.lexsort((low_steps, low_values, buckets, ids))
    high = np.lexsort((high_steps, -high_values, buckets, ids))
    grouped_ids, grouped = ids[low], buckets[low]
    first = np.empty(len(low), dtype=bool)
    first[0] = True
    np.not_equal(grouped[1:], grouped[:-1], out=first[1:])
    first[1:] |= grouped_ids[1:] != grouped_ids[:-1]
    at = np.flatnonzero(first)
    return low[at], high[at], grouped_ids[at], grouped[at]


def _rows(width: int, ids: Any, buckets: Any, *extremes: Any) -> list[dict[str, Any]]:
    return [
        {
            "metric_id": m,
            "width": width,
            "bucket": b,
            "min_value": mn,
            "min_step": mns,
            "min_time": mnt,
            "max_value": mx,
            "max_step": mxs,
            "max_time": mxt,
        }
        for m, b, mn, mns, mnt, mx, mxs, mxt in zip(
            ids.tolist(), buckets.tolist(), *(e.tolist() for e in extremes), strict=True
        )
    ]


def write_rollups(session: Session, rows: list[dict[str, Any]]) -> None:
    """Merge rollup rows into the table (min of mins, max of maxes)."""
    if rows:
        session.execute(_upsert(session.get_bind().dialect.name), rows)


@functools.cache
def _upsert(dialect: str) -> Any:
    """One statement for every batch (compiled once, run as executemany)."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(_TABLE)
    new, c = stmt.excluded, _TABLE.c
    lower = or_(
        new.min_value < c.min_value,
        and_(new.min_value == c.min_value, new.min_step < c.min_step),
    )
    higher = or_(
        new.max_value > c.max_value,
        and_(new.max_value == c.max_value, new.max_step < c.max_step),
    )
    return stmt.on_conflict_do_update(
        index_elements=["metric_id", "width", "bucket"],
        set_={
            "min_value": case((lower, new.min_value), else_=c.min_value),
            "min_step": case((lower, new.min_step), else_=c.min_step),
            "min_time": case((lower, new.min_time), else_=c.min_time),
            "max_value": case((higher, new.max_value), else_=c.max_value),
            "max_step": case((higher, new.max_step), else_=c.max_step),
            "max_time": case((higher, new.max_time), else_=c.max_time),
        },
    )


def pick_width(first_step: int, last_step: int, max_points: int) -> int | None:
    """The widest width giving at least max_points/2 buckets; None: read the points."""
    span = last_step - first_step + 1
    if max_points < 8:
        return None
    for width in reversed(WIDTHS):
        if span // width >= max_points // 2:
            return width
    return None


def chart_candidates(cursor: Any, metric_id: int, width: int, param: str) -> Arrays:
    """Every bucket's min and max point at `width`, in step order."""
    cursor.execute(
        "SELECT min_step, min_value, min_time, max_step, max_value, max_time "
        f"FROM run_metric_rollups WHERE metric_id = {param} AND width = {param} ORDER BY bucket",
        (metric_id, width),
    )
    table = np.array(cursor.fetchall(), dtype=np.float64).reshape(-1, 6)
    steps = np.concatenate((table[:, 0], table[:, 3])).astype(np.int64)
    values = np.concatenate((table[:, 1], table[:, 4]))
    times = np.concatenate((table[:, 2], table[:, 5]))
    order = np.argsort(steps, kind="stable")
    return steps[order], values[order], times[order]


def downsample_candidates(
    candidates: Arrays,
    first: tuple[int, float, float],
    last: tuple[int, float, float],
    max_points: int,
) -> Arrays:
    """Min/max-downsample the candidates to max_points - 2, then add the true end points."""
    steps, values, times = candidates
    inside = (steps > first[0]) & (steps < last[0])
    steps, values, times = steps[inside], values[inside], times[inside]
    keep = minmax_indices(values, max_points - 2)
    steps, values, times = steps[keep], values[keep], times[keep]
    return (
        np.concatenate(([first[0]], steps, [last[0]])).astype(np.int64),
        np.concatenate(([first[1]], values, [last[1]])),
        np.concatenate(([first[2]], times, [last[2]])),
    )
