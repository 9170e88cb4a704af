"""The drift engine's statistics: calibrated false alarms, power, effect gating, verdicts."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from conveyor.core.errors import DriftInputError
from conveyor.monitoring.drift import Reference, _adjust, check


def table(rng: np.random.Generator, n: int, shift: float = 0.0, columns: int = 5) -> pa.Table:
    data = {f"x{i}": rng.normal(size=n) for i in range(columns)}
    data["x0"] = data["x0"] + shift
    data["colour"] = rng.choice(["red", "green", "blue"], size=n, p=[0.5, 0.3, 0.2])
    return pa.table(data)


def test_false_alarms_stay_below_alpha_on_unchanged_data() -> None:
    rng = np.random.default_rng(1)
    reference = Reference.from_table(table(rng, 2000))
    reports = [check(reference, table(rng, 500), seed=s) for s in range(200)]
    alarms = sum(r.drift for r in reports)
    assert alarms <= 10, alarms  # 5% of 200 runs, over 6 columns at once (Holm)
    # each test's own p-value is calibrated too: about 5% below 0.05, not far more
    p = [c.finding.p_value for r in reports for c in r.columns if c.finding.p_value is not None]
    assert len(p) == 1200 and np.mean(np.asarray(p) < 0.05) <= 0.075


def test_a_tenth_of_a_standard_deviation_is_found_at_five_thousand_rows() -> None:
    rng = np.random.default_rng(2)
    reference = Reference.from_table(table(rng, 20_000))
    found = [check(reference, table(rng, 5000, shift=0.1), seed=s) for s in range(40)]
    assert sum(r.columns[0].drift for r in found) >= 32  # 80%
    assert all(not c.drift for r in found for c in r.columns[1:])  # and only that column
    shifted = found[0].columns[0].finding
    assert shifted.effect_ci is not None and shifted.effect_ci[0] < 0.1 < shifted.effect_ci[1]


def test_a_negligible_shift_never_alarms_however_many_rows() -> None:
    rng = np.random.default_rng(3)
    reference = Reference.from_table(pa.table({"x": rng.normal(size=1_000_000)}))
    report = check(reference, pa.table({"x": rng.normal(size=1_000_000) + 0.02}))
    x = report.columns[0]
    assert x.p_adjusted is not None and x.p_adjusted < 1e-6  # statistically real...
    assert x.finding.effect == pytest.approx(0.02, abs=0.005)  # ...but below 0.05 sd
    assert not x.drift and not report.drift


def test_variance_tails_and_categories_move_the_effect_they_should() -> None:
    rng = np.random.default_rng(4)
    n = 5000
    reference = Reference.from_table(
        pa.table({"wide": rng.normal(size=n), "tail": rng.normal(size=n), "c": ["a"] * n})
    )
    tail = rng.normal(size=n)
    tail[: n // 20] += 10  # 5% of rows ten sd away
    category = rng.choice(["a", "new"], size=n, p=[0.9, 0.1])
    report = check(
        reference,
        pa.table(
            {
                "wide": rng.normal(scale=2.0, size=n),
                "tail": tail,
                "c": category,
            }
        ),
    )
    by_name = {c.name: c for c in report.columns}
    assert by_name["wide"].finding.effect == pytest.approx(0.8, abs=0.05)  # E|Z| for sd x2
    assert by_name["tail"].finding.effect == pytest.approx(0.5, abs=0.05)
    moved = {check["test"]: check for check in by_name["c"].to_dict()["checks"]}
    assert moved["chi2"]["drift"] and moved["new"]["drift"]
    assert moved["new"]["new_categories"] == {"new": int((category == "new").sum())}
    assert report.drift and report.share == 1.0


def test_missing_values_are_their_own_test() -> None:
    rng = np.random.default_rng(5)
    reference = Reference.from_table(pa.table({"x": rng.normal(size=4000)}))
    values = rng.normal(size=4000)
    values[:200] = np.nan  # 5% missing, none before
    column = check(reference, pa.table({"x": values})).columns[0]
    assert column.drift and column.finding.test == "missing"
    assert column.finding.detail == {"reference_share": 0.0, "current_share": 0.05}
    assert [f.test for f, _, _ in column.checks] == ["ks", "missing"]


def test_too_few_rows_is_not_enough_data_never_an_alarm() -> None:
    rng = np.random.default_rng(6)
    reference = Reference.from_table(table(rng, 1000))
    report = check(reference, table(rng, 10, shift=5.0))
    assert not report.drift and report.share == 0.0
    first = report.to_dict()["columns"][0]
    assert first["p_value"] is None and first["effect"] is None
    assert first["note"] == "not enough data: 1,000 reference and 10 current values"


def test_holm_and_benjamini_hochberg() -> None:
    assert _adjust([0.01, 0.04, 0.03], "holm") == pytest.approx([0.03, 0.06, 0.06])
    assert _adjust([0.01, 0.04, 0.03], "bh") == pytest.approx([0.03, 0.04, 0.04])
    rng = np.random.default_rng(7)
    data = {f"x{i}": rng.normal(size=3000) for i in range(20)}
    reference = Reference.from_table(pa.table(data))
    moved = pa.table(
        {k: rng.normal(size=3000) + (0.15 if i < 10 else 0) for i, k in enumerate(data)}
    )
    holm = check(reference, moved, correction="holm")
    bh = check(reference, moved, correction="bh")
    assert len(bh.drifted) >= len(holm.drifted) > 0


def test_the_reference_is_json_and_gives_the_same_report() -> None:
    rng = np.random.default_rng(8)
    reference = Reference.from_table(
        table(rng, 3000).append_column("image", pa.array([b"x"] * 3000))
    )
    assert reference.skipped == {"image": "binary values are not checked"}
    stored = Reference.from_dict(json.loads(json.dumps(reference.to_dict())))
    current = table(rng, 3000, shift=0.3)
    assert check(stored, current).to_dict() == check(reference, current).to_dict()
    assert json.loads(json.dumps(check(stored, current).to_dict()))["columns"][0]["drift"]


def test_bad_input_says_what_to_do() -> None:
    rng = np.random.default_rng(9)
    reference = Reference.from_table(table(rng, 100))
    with pytest.raises(DriftInputError, match="has no column 'nope'"):
        check(reference, table(rng, 100), columns=["nope"])
    with pytest.raises(DriftInputError, match="numeric in the reference but string now"):
        check(reference, pa.table({"x0": ["a"] * 100}))
    with pytest.raises(DriftInputError, match="alpha 2"):
        check(reference, table(rng, 100), alpha=2)
    with pytest.raises(DriftInputError, match="unknown correction"):
        check(reference, table(rng, 100), correction="bonferroni")  # type: ignore[arg-type]


def test_a_window_in_batches_gives_the_report_of_the_whole_table() -> None:
    rng = np.random.default_rng(10)
    reference = Reference.from_table(table(rng, 5000))
    current = table(rng, 6000, shift=0.2)
    values = current.column("x1").to_numpy().copy()
    values[:300] = np.nan  # missing values counted across batches too
    current = current.set_column(1, "x1", pa.array(values))
    whole = check(reference, current).to_dict()
    batches = [current.slice(i, 1000) for i in range(0, 6000, 1000)]
    batched = check(reference, iter(batches)).to_dict()
    assert batched["n_current"] == whole["n_current"] and batched["drift"] == whole["drift"]
    for a, b in zip(batched["columns"], whole["columns"], strict=True):
        assert (a["name"], a["test"], a["drift"]) == (b["name"], b["test"], b["drift"])
        assert (a["statistic"], a["effect"]) == pytest.approx((b["statistic"], b["effect"]))
    assert whole["n_current"] == 6000 and whole["columns"][0]["drift"]
    with pytest.raises(DriftInputError, match="no rows or columns"):
        check(reference, iter([]))
