"""Live accuracy: served answers joined with labels sent back, with a Wilson interval."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pytest

from conveyor import Workspace
from conveyor.core.errors import MonitorInputError
from conveyor.monitoring.accuracy import (
    LABELS_SCHEMA,
    accuracy,
    labels_from_dataset,
    latest_labels,
    wilson,
)

T0 = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
AT = pa.timestamp("us", tz="UTC")


def served(
    answers: Sequence[str], ids: Sequence[str] | None = None, seconds: Sequence[float] | None = None
) -> pa.Table:
    """One served row per answer: request r<i>, row 0, at T0 (+ seconds)."""
    n = len(answers)
    return pa.table(
        {
            "request_id": list(ids or [f"r{i}" for i in range(n)]),
            "row": pa.array([0] * n, pa.int32()),
            "label": list(answers),
            "at": pa.array([T0 + timedelta(seconds=s) for s in (seconds or [0.0] * n)], AT),
        }
    )


def labelled(
    truths: Sequence[str], ids: Sequence[str] | None = None, days: Sequence[int] | None = None
) -> pa.Table:
    n = len(truths)
    return pa.table(
        {
            "request_id": list(ids or [f"r{i}" for i in range(n)]),
            "row": pa.array([0] * n, pa.int32()),
            "label": list(truths),
            "received_at": pa.array([T0 + timedelta(days=d) for d in (days or [1] * n)], AT),
        },
        schema=LABELS_SCHEMA,
    )


def test_a_known_confusion_matrix() -> None:
    # true:      cat cat cat dog dog bird
    # predicted: cat cat dog dog cat bird
    report = accuracy(
        served(["cat", "cat", "dog", "dog", "cat", "bird"]),
        labelled(["cat", "cat", "cat", "dog", "dog", "bird"]),
    )
    assert report["labelled"] == 6 and report["correct"] == 4
    assert report["accuracy"] == pytest.approx(4 / 6)
    assert report["confidence"] == 0.95
    assert report["confusion"] == {
        "labels": ["bird", "cat", "dog"],
        "matrix": [[1, 0, 0], [0, 2, 1], [0, 1, 1]],  # rows: true, columns: predicted
    }
    cat = report["per_class"]["cat"]
    assert cat == {"precision": pytest.approx(2 / 3), "recall": pytest.approx(2 / 3), "support": 3}
    assert report["per_class"]["dog"]["precision"] == pytest.approx(0.5)
    assert report["per_class"]["bird"] == {"precision": 1.0, "recall": 1.0, "support": 1}


def test_the_wilson_interval_matches_the_formula_by_hand() -> None:
    k, n, z = 37, 40, 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low, high = wilson(k, n) or [0.0, 0.0]
    assert low == pytest.approx(centre - half, abs=1e-9)
    assert high == pytest.approx(centre + half, abs=1e-9)
    assert (round(low, 2), round(high, 2)) == (0.80, 0.97)  # REPORT.md's example
    assert wilson(0, 0) is None
    assert wilson(0, 10)[0] == 0.0  # type: ignore[index]


def test_few_labels_give_a_much_wider_interval_than_many() -> None:
    def ci_width(n: int) -> float:
        right = round(0.93 * n)
        answers = ["a"] * n
        truths = ["a"] * right + ["b"] * (n - right)
        report = accuracy(served(answers), labelled(truths))
        assert report["labelled"] == n
        low, high = report["ci"]
        assert low < report["accuracy"] < high
        return float(high - low)

    few, many = ci_width(40), ci_width(40_000)
    assert few > 10 * many
    assert few > 0.15 and many < 0.01


def test_the_latest_label_of_a_row_wins() -> None:
    predicted = served(["cat", "dog"])
    labels = labelled(
        ["dog", "cat", "dog", "dog"],  # r0: dog (day 1) then cat (day 3); r1: dog twice
        ids=["r0", "r0", "r1", "r1"],
        days=[1, 3, 1, 2],
    )
    report = accuracy(predicted, labels)
    assert (report["labelled"], report["correct"]) == (2, 2)
    # the stored order does not matter, only the time
    assert accuracy(predicted, labels.take([1, 0, 3, 2]))["correct"] == 2
    latest = latest_labels(labels).sort_by("request_id").to_pylist()
    assert latest == [
        {"request_id": "r0", "row": 0, "truth": "cat"},
        {"request_id": "r1", "row": 0, "truth": "dog"},
    ]


def test_unlabelled_rows_and_labels_of_other_rows_are_not_counted() -> None:
    predicted = served(["cat", "dog", "dog", "cat"])
    labels = labelled(["cat", "cat", "dog"], ids=["r0", "r1", "nobody-predicted-this"])
    report = accuracy(predicted, labels)
    assert (report["labelled"], report["correct"], report["accuracy"]) == (2, 1, 0.5)
    # a label for another row of a known request does not join either
    other_row = labelled(["cat"], ids=["r0"]).set_column(1, "row", pa.array([3], pa.int32()))
    assert accuracy(predicted, other_row)["labelled"] == 0


def test_no_labels_gives_null_not_zero() -> None:
    report = accuracy(served(["cat", "dog"]), LABELS_SCHEMA.empty_table(), bucket_s=60)
    assert report["labelled"] == 0 and report["correct"] == 0
    assert report["accuracy"] is None and report["ci"] is None
    assert report["per_class"] == {} and report["confusion"] == {"labels": [], "matrix": []}
    assert report["timeline"] == [{"at": T0.isoformat(), "labelled": 0, "accuracy": None}]
    empty = accuracy(served([]), LABELS_SCHEMA.empty_table())
    assert empty["accuracy"] is None and empty["timeline"] == []


def test_a_class_never_predicted_has_null_precision() -> None:
    report = accuracy(served(["cat", "cat", "cat"]), labelled(["cat", "dog", "dog"]))
    assert report["per_class"]["dog"] == {"precision": None, "recall": 0.0, "support": 2}
    assert report["per_class"]["cat"] == {
        "precision": pytest.approx(1 / 3),
        "recall": 1.0,
        "support": 1,
    }
    # a class only ever predicted, never true: precision 0, recall null, support 0
    only_predicted = accuracy(served(["cat", "dog"]), labelled(["cat", "cat"]))
    assert only_predicted["per_class"]["dog"] == {"precision": 0.0, "recall": None, "support": 0}


def test_the_timeline_buckets_served_rows_by_time() -> None:
    predicted = served(["a", "a", "a", "b", "a"], seconds=[0, 10, 70, 75, 250])
    labels = labelled(["a", "b", "a", "b"], ids=["r0", "r1", "r2", "r3"])
    timeline = accuracy(predicted, labels, bucket_s=60)["timeline"]
    at = [T0 + timedelta(minutes=m) for m in (0, 1, 4)]
    assert timeline == [
        {"at": at[0].isoformat(), "labelled": 2, "accuracy": 0.5},
        {"at": at[1].isoformat(), "labelled": 2, "accuracy": 1.0},
        {"at": at[2].isoformat(), "labelled": 0, "accuracy": None},  # served, not labelled
    ]
    assert accuracy(predicted, labels)["timeline"] == []
    with pytest.raises(MonitorInputError, match="positive"):
        accuracy(predicted, labels, bucket_s=0)


def test_shadow_answers_and_rows_without_a_label_are_left_out() -> None:
    predicted = served(["cat", "dog", "cat"], ids=["r0", "r0", "r1"]).append_column(
        "role", pa.array(["primary", "shadow", "primary"])
    )
    predicted = predicted.set_column(
        2, "label", pa.array(["cat", "dog", None], pa.string())
    )  # r1: a model with no class answer
    report = accuracy(predicted, labelled(["cat", "cat"], ids=["r0", "r1"]))
    assert (report["labelled"], report["correct"]) == (1, 1)


def test_missing_columns_are_named() -> None:
    with pytest.raises(MonitorInputError, match=r"the predictions lack the column.*at"):
        accuracy(served(["a"]).drop_columns(["at"]), labelled(["a"]))
    with pytest.raises(MonitorInputError, match=r"the labels lack.*received_at"):
        accuracy(served(["a"]), labelled(["a"]).drop_columns(["received_at"]))


def _dataset(tmp_path: Path, table: pa.Table, name: str) -> Workspace:
    ws = Workspace.init(tmp_path / "ws")
    path = tmp_path / f"{name}.csv"
    pcsv.write_csv(table, path)
    ws.datasets.ingest(path, name, workers=1)
    return ws


def test_labels_from_a_labelled_dataset_version(tmp_path: Path) -> None:
    table = pa.table(
        {"rid": ["r0", "r1", "r2"], "truth": ["cat", "dog", "cat"], "note": ["", "", ""]}
    )
    ws = _dataset(tmp_path, table, "truths")
    try:
        version = ws.datasets.get("truths")
        labels = labels_from_dataset(version, request_id="rid", label="truth")
        assert labels.schema == LABELS_SCHEMA
        assert labels.select(["request_id", "row", "label"]).to_pylist() == [
            {"request_id": "r0", "row": 0, "label": "cat"},
            {"request_id": "r1", "row": 0, "label": "dog"},
            {"request_id": "r2", "row": 0, "label": "cat"},
        ]
        created = version.manifest.created_at.astimezone(UTC)
        assert set(labels["received_at"].to_pylist()) == {created}
        report = accuracy(served(["cat", "cat", "cat"]), labels)
        assert (report["labelled"], report["correct"]) == (3, 2)
        with pytest.raises(MonitorInputError, match=r"no column.*'label'.*rid, truth, note"):
            labels_from_dataset(version)
    finally:
        ws.close()


def test_a_dataset_row_column_is_used_when_there_is_one(tmp_path: Path) -> None:
    table = pa.table({"request_id": ["r0", "r0"], "row": [0, 1], "label": ["cat", "dog"]})
    ws = _dataset(tmp_path, table, "rows")
    try:
        labels = labels_from_dataset(ws.datasets.get("rows"))
        assert labels.select(["request_id", "row"]).to_pylist() == [
            {"request_id": "r0", "row": 0},
            {"request_id": "r0", "row": 1},
        ]
    finally:
        ws.close()
