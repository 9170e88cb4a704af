"""The writer's vectorised batch functions agree with straightforward per-point code."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from conveyor.tracking.blocks import MAX_POINTS, overlapping, pack, unpack
from conveyor.tracking.persist import point_columns, summary_rows

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


def test_point_columns_keep_every_point_in_logged_order() -> None:
    points = _random_points(3, n=500)
    columns = point_columns(points, IDS)
    assert columns.metric_ids.tolist() == [IDS[p[1]] for p in points]
    assert columns.steps.tolist() == [p[2] for p in points]
    assert columns.seqs.tolist() == [p[3] for p in points]
    assert np.array_equal(columns.values, [p[4] for p in points], equal_nan=True)
    assert columns.times.tolist() == [p[5] for p in points]


def _reference_history(points: list[Point], key: str) -> list[tuple[int, int, float, float]]:
    return sorted((p[2], p[3], p[4], p[5]) for p in points if p[1] == key)


@pytest.mark.parametrize("seed", [0, 1])
def test_blocks_give_back_every_point_in_step_order(seed: int) -> None:
    points = _random_points(seed)
    # three batches, as three deliveries of the writer would store them
    blocks = [
        b
        for part in np.array_split(np.arange(len(points)), 3)
        for b in pack(*point_columns([points[i] for i in part], IDS))
    ]
    for key, metric_id in IDS.items():
        mine = [(first, last, data) for m, first, last, _, data in blocks if m == metric_id]
        steps, values, times = unpack(mine)
        expected = _reference_history(points, key)
        assert steps.dtype == np.int64 and steps.tolist() == [e[0] for e in expected]
        assert np.array_equal(values, [e[2] for e in expected], equal_nan=True)
        assert times.tolist() == [e[3] for e in expected]
    assert sum(count for *_, count, _ in blocks) == len(points)


def test_a_batch_stored_twice_cut_differently_reads_once() -> None:
    points = _random_points(4, n=1_000)
    once = pack(*point_columns(points, IDS))
    again = [b for part in (points[:300], points[300:]) for b in pack(*point_columns(part, IDS))]
    loss = IDS["loss"]
    stored = [(first, last, data) for m, first, last, _, data in once + again if m == loss]
    assert overlapping([(first, last) for first, last, _ in stored])
    steps, values, _ = unpack(stored)
    expected = _reference_history(points, "loss")
    assert steps.tolist() == [e[0] for e in expected]
    assert np.array_equal(values, [e[2] for e in expected], equal_nan=True)


def test_a_huge_batch_becomes_several_blocks() -> None:
    n = MAX_POINTS * 2 + 5
    ids = np.zeros(n, np.int64)
    steps = np.arange(n, dtype=np.int64)
    blocks = pack(ids, steps, steps + (1 << 40), steps * 0.5, steps * 1.0)
    assert [b[3] for b in blocks] == [MAX_POINTS, MAX_POINTS, 5]
    assert not overlapping([(b[1], b[2]) for b in blocks])
    assert unpack([(b[1], b[2], b[4]) for b in blocks])[0].tolist() == steps.tolist()
    assert pack(ids[:0], steps[:0], steps[:0], steps[:0] * 0.5, steps[:0] * 1.0) == []
