"""The writer's vectorised batch functions agree with straightforward per-point code."""

from __future__ import annotations

import math
import sqlite3
import struct
from typing import Any

import numpy as np
import pytest

from conveyor.tracking.persist import copy_binary, point_columns, summary_rows
from conveyor.tracking.queries import _all_points
from conveyor.tracking.rollups import WIDTHS, rollup_rows

Point = tuple[str, str, int, int, float, float]


def _random_points(seed: int, n: int = 3_000) -> list[Point]:
    """Several keys, repeated and out-of-order steps, NaN, ties and infinities."""
    rng = np.random.default_rng(seed)
    keys = rng.choice(["loss", "acc", "lr", "all_nan"], size=n)
    steps = rng.integers(0, 70_000, size=n)
    steps[: n // 4] = rng.integers(0, 50, size=n // 4)  # many duplicate steps
    values = rng.choice([0.0, 1.0, -1.0, 2.5], size=n)  # many ties
    values[n // 2 :] = rng.normal(size=n - n // 2)
    values[rng.random(n) < 0.1] = np.nan
    values[7], values[11] = np.inf, -np.inf
    values[keys == "all_nan"] = np.nan
    order = rng.permutation(n)
    return [
        ("m", str(keys[i]), int(steps[i]), int(order[i]) + (1 << 40), float(values[i]), 1e9 + i)
        for i in range(n)
    ]


IDS = {"loss": 1, "acc": 2, "lr": 7, "all_nan": 3}


def _reference_summaries(points: list[Point]) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for key, metric_id in IDS.items():
        mine = [p for p in points if p[1] == key]
        if not mine:
            continue
        last = max(mine, key=lambda p: (p[2], p[3]))
        numbers = [p[4] for p in mine if not math.isnan(p[4])]
        out[metric_id] = {
            "b_id": metric_id,
            "b_step": last[2],
            "b_seq": last[3],
            "b_value": last[4],
            "b_first": min(p[2] for p in mine),
            "b_low": min(numbers) if numbers else None,
            "b_high": max(numbers) if numbers else None,
        }
    return out


def _reference_rollups(points: list[Point]) -> list[dict[str, Any]]:
    groups: dict[tuple[int, int, int], list[Point]] = {}
    for p in points:  # in logged order: ties go to the first logged
        if not math.isnan(p[4]):
            for width in WIDTHS:
                groups.setdefault((IDS[p[1]], width, p[2] // width), []).append(p)
    rows = []
    for (metric_id, width, bucket), mine in groups.items():
        low = min(mine, key=lambda p: (p[4], p[2]))
        high = min(mine, key=lambda p: (-p[4], p[2]))
        rows.append(
            {
                "metric_id": metric_id,
                "width": width,
                "bucket": bucket,
                "min_value": low[4],
                "min_step": low[2],
                "min_time": low[5],
                "max_value": high[4],
                "max_step": high[2],
                "max_time": high[5],
            }
        )
    return rows


def _same(a: Any, b: Any) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_summary_rows_match_a_per_point_reference(seed: int) -> None:
    points = _random_points(seed)
    got = {row["b_id"]: row for row in summary_rows(point_columns(points, IDS))}
    expected = _reference_summaries(points)
    assert got.keys() == expected.keys()
    for metric_id, row in expected.items():
        assert row.keys() == got[metric_id].keys()
        for name, value in row.items():
            assert _same(got[metric_id][name], value), (metric_id, name)
    assert expected[3]["b_low"] is None and got[3]["b_high"] is None  # only NaN


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_rollup_rows_match_a_per_point_reference(seed: int) -> None:
    points = _random_points(seed)
    columns = point_columns(points, IDS)
    got = rollup_rows(columns.metric_ids, columns.steps, columns.values, columns.times)

    def by_bucket(rows: list[dict[str, Any]]) -> dict[tuple[int, int, int], dict[str, Any]]:
        return {(r["metric_id"], r["width"], r["bucket"]): r for r in rows}

    assert len(got) == len(by_bucket(got))  # one row per (metric, width, bucket)
    assert by_bucket(got) == by_bucket(_reference_rollups(points))


def test_rollup_rows_of_nothing_but_nan() -> None:
    columns = point_columns([("m", "all_nan", 1, 1, math.nan, 0.0)], IDS)
    assert rollup_rows(columns.metric_ids, columns.steps, columns.values, columns.times) == []


def test_point_columns_keep_every_point_in_logged_order() -> None:
    points = _random_points(3, n=500)
    columns = point_columns(points, IDS)
    assert columns.metric_ids.tolist() == [IDS[p[1]] for p in points]
    assert columns.steps.tolist() == [p[2] for p in points]
    assert columns.seqs.tolist() == [p[3] for p in points]
    assert np.array_equal(columns.values, [p[4] for p in points], equal_nan=True)
    assert columns.times.tolist() == [p[5] for p in points]
    assert columns.rows == [(IDS[p[1]], p[2], p[3], p[4], p[5]) for p in points]


def test_copy_binary_is_postgres_binary_copy_format() -> None:
    points = _random_points(4, n=200)
    columns = point_columns(points, IDS)
    expected = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8
    for p in points[50:150]:
        expected += struct.pack(">hiiiqiqidid", 5, 4, IDS[p[1]], 8, p[2], 8, p[3], 8, p[4], 8, p[5])
    expected += b"\xff\xff"
    assert copy_binary(columns, 50, 150) == expected


def test_all_points_read_null_as_nan_in_step_order() -> None:
    db = sqlite3.connect(":memory:")
    db.execute(
        "CREATE TABLE run_metric_points (metric_id INTEGER, step BIGINT, seq BIGINT, "
        "value FLOAT, wall_time FLOAT, PRIMARY KEY (metric_id, step, seq))"
    )
    points = _random_points(5, n=1_000)
    rows = {(IDS[p[1]], p[2], p[3]): p for p in points}
    db.executemany(
        "INSERT INTO run_metric_points VALUES (?, ?, ?, ?, ?)",
        [(*k, p[4], p[5]) for k, p in rows.items()],
    )
    expected = sorted((k[1], k[2], p[4], p[5]) for k, p in rows.items() if k[0] == IDS["loss"])
    steps, values, times = _all_points(db.cursor(), IDS["loss"], "?")
    assert steps.dtype == np.int64 and steps.tolist() == [e[0] for e in expected]
    assert np.array_equal(values, [e[2] for e in expected], equal_nan=True)
    assert times.tolist() == [e[3] for e in expected]
    assert np.isnan(values).any()
    empty = _all_points(db.cursor(), 99, "?")
    assert [len(a) for a in empty] == [0, 0, 0]
