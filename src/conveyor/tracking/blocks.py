"""Metric points stored as packed blocks: one row per metric per delivered batch.

A row per point made the database the bottleneck: 2 µs a point to insert through
Python's sqlite3 and 1 µs a point to read back. A block holds every point one batch
logged for one metric as a single blob of little-endian records (step int64, seq int64,
value float64, wall time float64), sorted by (step, seq). Writing 100,000 points is a
handful of rows; reading a million is a few hundred blobs and a `np.frombuffer`.

A block is keyed by (metric id, its smallest seq). Seqs are unique within a run, so
the same batch delivered twice conflicts on that key and is stored once. A spool cut
into batches differently on a second delivery could store a point twice; reads notice
the overlapping seq ranges and drop the repeats, so no reader ever sees them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

POINT = np.dtype([("step", "<i8"), ("seq", "<i8"), ("value", "<f8"), ("time", "<f8")])

MAX_POINTS = 65_536  # 2 MiB a block: a huge batch becomes several rows, not one giant blob

Arrays = tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]
Block = tuple[int, int, int, int, bytes]  # metric_id, first_seq, last_seq, count, points


def pack(
    metric_ids: npt.NDArray[np.int64],
    steps: npt.NDArray[np.int64],
    seqs: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
    times: npt.NDArray[np.float64],
) -> list[Block]:
    """One block per metric in the batch (more past MAX_POINTS), points in (step, seq)
    order."""
    if len(steps) == 0:
        return []
    order = np.lexsort((seqs, steps, metric_ids))
    records = np.empty(len(order), POINT)
    records["step"], records["seq"] = steps[order], seqs[order]
    records["value"], records["time"] = values[order], times[order]
    ids = metric_ids[order]
    cuts = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    blocks = []
    starts = np.append(0, cuts)
    for metric, whole in zip(ids[starts].tolist(), np.split(records, cuts), strict=True):
        for start in range(0, len(whole), MAX_POINTS):
            part = whole[start : start + MAX_POINTS]
            seqs_in = part["seq"]
            blocks.append(
                (metric, int(seqs_in.min()), int(seqs_in.max()), len(part), part.tobytes())
            )
    return blocks


def unpack(blocks: Iterable[tuple[int, int, Any]]) -> Arrays:
    """Steps, values and wall times of one metric's blocks (first_seq, last_seq, points)
    in (step, seq) order, each point once."""
    ranges, parts = [], []
    for first, last, data in blocks:
        ranges.append((first, last))
        parts.append(np.frombuffer(data, POINT))
    if not parts:
        return np.empty(0, np.int64), np.empty(0, np.float64), np.empty(0, np.float64)
    points = parts[0] if len(parts) == 1 else np.concatenate(parts)
    if overlapping(ranges):
        points = points[np.unique(points["seq"], return_index=True)[1]]
    steps = points["step"]
    if len(parts) > 1 and not _in_order(steps, points["seq"]):
        points = points[np.lexsort((points["seq"], steps))]
        steps = points["step"]
    return steps.copy(), points["value"].copy(), points["time"].copy()


def overlapping(ranges: Sequence[tuple[int, int]]) -> bool:
    """Whether any two (first_seq, last_seq) ranges share seqs: a batch stored twice."""
    highest = None
    for first, last in sorted(ranges):
        if highest is not None and first <= highest:
            return True
        highest = last if highest is None else max(highest, last)
    return False


def _in_order(steps: npt.NDArray[np.int64], seqs: npt.NDArray[np.int64]) -> bool:
    """Whether (step, seq) never goes down: then concatenated blocks need no sort."""
    if len(steps) < 2:
        return True
    step_up = steps[1:] - steps[:-1]
    if (step_up < 0).any():
        return False
    ties = step_up == 0
    return not (ties & (seqs[1:] < seqs[:-1])).any()
