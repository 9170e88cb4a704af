"""Embedding columns: the MMD test's false alarms, power, effect gating, sketch and window."""

from __future__ import annotations

import json
import math

import numpy as np
import pyarrow as pa
import pytest

from conveyor.core.errors import DriftInputError
from conveyor.data.sketch import EmbeddingSample, kind_of
from conveyor.monitoring.detector import Finding
from conveyor.monitoring.drift import ColumnDrift, Reference, check

DIMS, RANK = 384, 16
_BASIS = np.linalg.qr(np.random.default_rng(0).standard_normal((DIMS, RANK)))[0].T
_SDS = 1 / np.sqrt(np.arange(1, RANK + 1))  # the latent axes' sds, the first the largest
_NOISE = 0.1
MAIN_SD = math.sqrt(_SDS[0] ** 2 + _NOISE**2)  # the sd along the first principal axis


def embeddings(rng: np.random.Generator, n: int, shift: float = 0.0) -> np.ndarray:
    """Sentence-embedding-like vectors: 16 latent axes of falling variance in 384
    dimensions plus noise; `shift` moves the mean along the first axis, in its sds."""
    x = (rng.standard_normal((n, RANK)) * _SDS) @ _BASIS
    x += _NOISE * rng.standard_normal((n, DIMS))
    return (x + shift * MAIN_SD * _BASIS[0]).astype(np.float32)


def column(x: np.ndarray) -> pa.Array:
    return pa.FixedSizeListArray.from_arrays(pa.array(x.ravel()), x.shape[1])


def table(x: np.ndarray) -> pa.Table:
    return pa.table({"emb": column(x)})


def wilson(hits: int, runs: int, z: float = 1.959964) -> tuple[float, float]:
    p = hits / runs
    centre = (p + z * z / (2 * runs)) / (1 + z * z / runs)
    half = z * math.sqrt(p * (1 - p) / runs + z * z / (4 * runs * runs)) / (1 + z * z / runs)
    return max(0.0, centre - half), min(1.0, centre + half)


def test_vector_columns_are_the_embedding_kind() -> None:
    for t in (pa.list_(pa.float32()), pa.list_(pa.float64()), pa.large_list(pa.float32())):
        assert kind_of(t) == "embedding"
    assert kind_of(pa.list_(pa.float32(), 8)) == "embedding"  # fixed_size_list
    assert kind_of(pa.list_(pa.int64())) is None  # token ids are not an embedding
    assert kind_of(pa.float64()) == "numeric" and kind_of(pa.string()) == "categorical"


def test_false_alarms_stay_at_or_below_alpha_on_unchanged_embeddings() -> None:
    rng = np.random.default_rng(1)
    runs, n = 200, 60
    findings = []
    for run in range(runs):
        reference = Reference.from_table(table(embeddings(rng, n)))
        findings.append(check(reference, table(embeddings(rng, n)), seed=run).columns[0])
    alarms = sum(c.drift for c in findings)
    low, high = wilson(alarms, runs)
    assert alarms / runs <= 0.05, f"{alarms}/{runs} = {alarms / runs:.3f} [{low:.3f}, {high:.3f}]"
    # the permutation p-value alone is calibrated: about 5% below 0.05, not demonstrably more
    small = sum(c.finding.p_value is not None and c.finding.p_value < 0.05 for c in findings)
    low, high = wilson(small, runs)
    assert low <= 0.05, f"p < 0.05 in {small}/{runs} = {small / runs:.3f} [{low:.3f}, {high:.3f}]"
    assert all(c.finding.test == "mmd" and c.kind == "embedding" for c in findings)


def test_a_clear_shift_in_384_dimensions_is_found_and_read_in_sds() -> None:
    rng = np.random.default_rng(2)
    reference = Reference.from_table(table(embeddings(rng, 5000)))
    report = check(reference, table(embeddings(rng, 5000, shift=0.5)))
    mmd = report.columns[0]
    assert report.drift and mmd.drift and mmd.p_adjusted is not None
    assert mmd.p_adjusted < 0.05 / 100  # would pass Holm over 100 columns
    assert mmd.finding.effect_ci is not None
    low, high = mmd.finding.effect_ci
    assert low < 0.5 < high and low > mmd.finding.threshold  # a 0.5 sd shift reads 0.5
    assert mmd.finding.detail["sample_reference"] == 1000
    assert mmd.finding.detail["sample_current"] == 2000


def test_a_clear_shift_passes_holm_among_100_other_columns() -> None:
    rng = np.random.default_rng(10)

    def with_numbers(x: np.ndarray) -> pa.Table:
        numbers = {f"x{i}": rng.normal(size=x.shape[0]) for i in range(100)}
        return pa.table({"emb": column(x), **numbers})

    reference = Reference.from_table(with_numbers(embeddings(rng, 2000)))
    report = check(reference, with_numbers(embeddings(rng, 2000, shift=0.5)))
    mmd = report.columns[0]
    assert mmd.name == "emb" and mmd.drift  # beyond all 2,000 permutations: the fitted tail
    assert mmd.finding.p_value is not None and mmd.finding.p_value < 1 / 2001 / 101
    assert [c.name for c in report.drifted] == ["emb"]


def test_added_noise_is_found_too() -> None:
    rng = np.random.default_rng(3)
    reference = Reference.from_table(table(embeddings(rng, 3000)))
    noisy = embeddings(rng, 3000) + 0.1 * rng.standard_normal((3000, DIMS)).astype(np.float32)
    assert check(reference, table(noisy)).columns[0].drift  # the noise's variance doubled


def test_a_negligible_shift_is_not_alarmed_however_many_rows() -> None:
    rng = np.random.default_rng(4)
    reference = Reference.from_table(table(embeddings(rng, 20_000)))
    batches = (table(embeddings(rng, 10_000, shift=0.02)) for _ in range(5))
    report = check(reference, batches)
    mmd = report.columns[0]
    assert report.n_current == 50_000 and mmd.finding.n_current == 50_000
    assert mmd.finding.detail["sample_current"] == 2000  # memory bounded by the reservoir
    assert mmd.finding.effect_ci is not None and mmd.finding.effect_ci[0] <= 0.05
    assert not mmd.drift and not report.drift


def test_the_reference_is_json_and_gives_the_same_report() -> None:
    rng = np.random.default_rng(5)
    reference = Reference.from_table(
        table(embeddings(rng, 3000)).append_column("x", pa.array(rng.normal(size=3000)))
    )
    text = json.dumps(reference.to_dict())
    stored = Reference.from_dict(json.loads(text))
    assert stored == reference  # exact: floats as JSON numbers, the sample as its bytes
    sketch = stored.columns["emb"]
    assert np.array_equal(sketch.vectors, reference.columns["emb"].vectors)
    # float16 sample in base64 (1.0 MB) + 8 projections (edges + cdf, 0.2 MB) + axes (16 KB)
    assert sketch.vectors.shape == (1000, DIMS) and len(text) < 1.35e6
    current = table(embeddings(rng, 3000, shift=0.3)).append_column(
        "x", pa.array(rng.normal(size=3000))
    )
    assert check(stored, current).to_dict() == check(reference, current).to_dict()
    assert json.loads(json.dumps(check(stored, current).to_dict()))["columns"][0]["drift"]


def test_vectors_of_another_width_say_what_to_do() -> None:
    rng = np.random.default_rng(6)
    reference = Reference.from_table(table(embeddings(rng, 200)))
    with pytest.raises(DriftInputError, match="vectors of 8 values, the reference's have 384"):
        check(reference, table(rng.normal(size=(200, 8)).astype(np.float32)))
    ragged = pa.table({"emb": pa.array([[0.1] * DIMS, [0.2] * 8] * 50, pa.list_(pa.float32()))})
    with pytest.raises(DriftInputError, match="not one width"):
        check(reference, ragged)
    skipped = Reference.from_table(ragged.append_column("x", pa.array(np.ones(100))))
    assert skipped.skipped == {"emb": "vectors of 8 to 384 values, not one width"}


def test_missing_vectors_are_left_out_and_counted() -> None:
    rng = np.random.default_rng(7)
    reference = Reference.from_table(table(embeddings(rng, 2000)))
    x = embeddings(rng, 2000)
    x[5, 3] = np.nan  # a vector with a NaN inside counts as missing
    rows: list[list[float] | None] = [list(map(float, v)) for v in x]
    for i in range(0, 2000, 4):
        rows[i] = None  # a quarter of the vectors are null
    current = pa.table({"emb": pa.array(rows, pa.list_(pa.float32()))})
    column = check(reference, current).columns[0]
    tests = {f.test: (f, drifted) for f, _, drifted in column.checks}
    mmd, missing = tests["mmd"][0], tests["missing"]
    assert mmd.n_current == 1499 and not tests["mmd"][1]  # the present ones are unchanged
    assert missing[0].detail["current_share"] == pytest.approx(501 / 2000) and missing[1]
    assert column.drift and column.finding.test == "missing"


def test_too_few_vectors_is_not_enough_data() -> None:
    rng = np.random.default_rng(8)
    reference = Reference.from_table(table(embeddings(rng, 500)))
    mmd = check(reference, table(embeddings(rng, 10, shift=3.0))).columns[0]
    assert not mmd.drift and mmd.finding.note.startswith("not enough data")


def test_a_window_in_batches_gives_the_report_of_the_whole_table() -> None:
    rng = np.random.default_rng(9)
    reference = Reference.from_table(table(embeddings(rng, 4000)))
    current = table(embeddings(rng, 6000, shift=0.3))
    whole = check(reference, current, seed=3).to_dict()
    batched = check(reference, (current.slice(i, 700) for i in range(0, 6000, 700)), seed=3)
    a, b = batched.to_dict()["columns"][0], whole["columns"][0]
    shifts_a, shifts_b = a.pop("largest_mean_shifts"), b.pop("largest_mean_shifts")
    assert a == b and a["drift"]  # the same reservoir, so the same statistic and p-value
    assert [s["dimension"] for s in shifts_a] == [s["dimension"] for s in shifts_b]


def test_the_reservoir_is_uniform_and_bounded() -> None:
    sample = EmbeddingSample(dims=1, seed=(0,), capacity=500)
    for start in range(0, 100_000, 7_000):
        stop = min(start + 7_000, 100_000)
        sample.add(np.arange(start, stop, dtype=np.float32)[:, None], 0)
    kept = sample.vectors[:, 0]
    assert kept.shape == (500,) and np.unique(kept).size == 500 and sample.present == 100_000
    # a uniform sample of 0..99,999: its mean within 4 standard errors of 49,999.5
    assert abs(kept.mean() - 49_999.5) < 4 * 28_867.5 / math.sqrt(500)


def _projections(column: ColumnDrift) -> tuple[Finding, bool]:
    found = [(f, drifted) for f, _, drifted in column.checks if f.test == "projections"]
    assert len(found) == 1, [f.test for f, _, _ in column.checks]
    return found[0]


def test_projections_find_a_small_shift_the_sample_cannot() -> None:
    rng = np.random.default_rng(11)
    reference = Reference.from_table(table(embeddings(rng, 6000)))  # 5,000 outside the sample
    sketch = reference.columns["emb"]
    assert len(sketch.projections) == 8 and sketch.projections[0].present == 5000
    column = check(reference, table(embeddings(rng, 5000, shift=0.1))).columns[0]
    projections, drifted = _projections(column)
    assert drifted and column.drift and column.finding.test == "projections"
    assert projections.detail["axis"] == 0 and projections.detail["axis_share"] > 0.1
    assert projections.effect_ci is not None
    low, high = projections.effect_ci
    assert 0.05 < low < 0.1 < high  # a 0.1-sd shift reads 0.1, in the axis's sds
    assert projections.n_reference == 5000 and projections.n_current == 5000


def test_projections_false_alarms_stay_at_or_below_alpha() -> None:
    rng = np.random.default_rng(12)
    runs, n = 100, 100
    alarms, small, columns = 0, 0, 0
    for run in range(runs):
        reference = Reference.from_table(table(embeddings(rng, 1000 + n)))  # n outside
        column = check(reference, table(embeddings(rng, n)), seed=run).columns[0]
        projections, drifted = _projections(column)
        assert projections.n_reference == n and projections.p_value is not None
        alarms += drifted
        small += projections.p_value < 0.05
        columns += column.drift
    for name, hits in (("alarms", alarms), ("p < 0.05", small), ("column alarms", columns)):
        low, high = wilson(hits, runs)
        message = f"{name}: {hits}/{runs} = {hits / runs:.3f} [{low:.3f}, {high:.3f}]"
        # alarms at or below alpha; the p-value calibrated: not demonstrably above alpha
        assert (low if name == "p < 0.05" else hits / runs) <= 0.05, message


def test_projections_do_not_alarm_on_a_negligible_shift_in_20_000_rows() -> None:
    rng = np.random.default_rng(13)
    reference = Reference.from_table(table(embeddings(rng, 20_000)))
    batches = (table(embeddings(rng, 10_000, shift=0.02)) for _ in range(2))
    projections, drifted = _projections(check(reference, batches).columns[0])
    assert projections.n_reference == 19_000 and projections.n_current == 20_000
    assert projections.effect_ci is not None and projections.effect_ci[0] <= 0.05
    assert not drifted


def test_projections_round_trip_and_older_sketches_skip_them() -> None:
    rng = np.random.default_rng(14)
    reference = Reference.from_table(table(embeddings(rng, 2000)))
    stored = Reference.from_dict(json.loads(json.dumps(reference.to_dict())))
    assert stored == reference
    sketch = stored.columns["emb"]
    assert np.array_equal(sketch.axis_vectors, reference.columns["emb"].axis_vectors)
    assert sketch.axis_vectors.shape == (8, DIMS)
    assert np.allclose(np.linalg.norm(sketch.axis_vectors, axis=1), 1, atol=1e-6)
    current = table(embeddings(rng, 2000, shift=0.3))
    assert check(stored, current).to_dict() == check(reference, current).to_dict()
    older = reference.to_dict()
    for key in ("axes", "axis_shares", "projections"):
        del older["columns"]["emb"][key]  # a sketch made before projections
    old = Reference.from_dict(older)
    assert old.columns["emb"].projections == []
    column = check(old, current).columns[0]
    assert [f.test for f, _, _ in column.checks] == ["mmd"] and column.drift
    new = check(reference, current).columns[0].checks[0][0]
    assert column.checks[0][0] == new  # the MMD reads the same
    # a reference no larger than its sample has nothing outside it to project
    small = Reference.from_table(table(embeddings(rng, 1000)))
    assert small.columns["emb"].projections == []
