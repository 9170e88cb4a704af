"""Gathering a batch's rows from row groups held as numpy columns."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from conveyor.core.errors import ConveyorError
from conveyor.data.loader.columns import gather, group_columns


def groups() -> list[pa.Table]:
    table = pa.table(
        {
            "image": pa.array([bytes([i]) * (i + 1) for i in range(10)], pa.binary()),
            "big": pa.array([bytes([i]) for i in range(10)], pa.large_binary()),
            "label": ["b", "a"] * 5,
            "x": np.arange(10, dtype=np.float64) / 2,
            "city": [f"c{i}" for i in range(10)],
        }
    )
    return [table.slice(0, 4), table.slice(4, 6)]  # slices: non-zero array offsets


def test_rows_come_back_in_the_order_asked_across_groups() -> None:
    a, b = (group_columns(t, "label", ("a", "b")) for t in groups())
    wanted = [(b, np.array([5, 0])), (a, np.array([3])), (b, np.array([1]))]
    images = gather([(g["image"], i) for g, i in wanted])
    assert [bytes(r) for r in images] == [
        bytes([9]) * 10,
        bytes([4]) * 5,
        bytes([3]) * 4,
        bytes([5]) * 6,
    ]
    big = gather([(g["big"], i) for g, i in wanted])
    assert [bytes(r) for r in big] == [bytes([9]), bytes([4]), bytes([3]), bytes([5])]
    assert gather([(g["label"], i) for g, i in wanted]).tolist() == [0, 1, 0, 0]  # type: ignore[union-attr]
    assert gather([(g["x"], i) for g, i in wanted]).tolist() == [4.5, 2.0, 1.5, 2.5]  # type: ignore[union-attr]
    assert gather([(g["city"], i) for g, i in wanted]) == ["c9", "c4", "c3", "c5"]


def test_missing_numbers_and_unknown_labels_are_clear_errors() -> None:
    with pytest.raises(ConveyorError, match="missing values"):
        group_columns(pa.table({"x": [1.0, None]}), None, ())
    with pytest.raises(ConveyorError, match="not one of the version's classes"):
        group_columns(pa.table({"label": ["a", "zebra"]}), "label", ("a",))
