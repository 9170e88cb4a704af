"""Compare current data with a reference, column by column: did the world move?

A column drifts when a test says the change is real (its p-value, corrected for testing
every column at once, is below alpha) and an effect size says it is large enough to
matter (the lower end of its 90% confidence interval, a one-sided 95% bound, is above
the column's practical threshold). A huge window never alarms on a negligible shift,
and a tiny one never alarms on noise. The rules are in DRIFT.md.

    reference = Reference.from_table(training_table)    # once; stored as JSON
    report = check(reference, window_table)
    report.to_dict()                                    # the `monitor drift --json` shape
"""

from __future__ import annotations

import collections
import os
import zlib
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pyarrow as pa
from scipy import stats

from conveyor.core.errors import DriftInputError
from conveyor.data import sketch as sketches
from conveyor.data.reference import Reference, pick_columns
from conveyor.monitoring.detector import Finding, detectors_for

Correction = Literal["holm", "bh"]


@dataclass(frozen=True)
class ColumnDrift:
    """The verdict on one column: the finding that decides it, and every test run."""

    name: str
    kind: str
    drift: bool
    finding: Finding
    p_adjusted: float | None
    checks: list[tuple[Finding, float | None, bool]]  # (finding, adjusted p, drifted)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            **_finding(self.finding, self.p_adjusted, self.drift),
            "checks": [_finding(f, p, d) for f, p, d in self.checks],
        }


@dataclass(frozen=True)
class DriftReport:
    drift: bool
    share: float
    n_reference: int
    n_current: int
    alpha: float
    correction: Correction
    columns: list[ColumnDrift]
    only_reference: list[str]
    only_current: list[str]
    skipped: dict[str, str]

    @property
    def drifted(self) -> list[ColumnDrift]:
        return [c for c in self.columns if c.drift]

    def to_dict(self) -> dict[str, Any]:
        return {
            "drift": self.drift,
            "share": self.share,
            "n_reference": self.n_reference,
            "n_current": self.n_current,
            "alpha": self.alpha,
            "correction": self.correction,
            "columns": [c.to_dict() for c in self.columns],
            "schema": {"only_reference": self.only_reference, "only_current": self.only_current},
            "skipped": self.skipped,
        }


def check(
    reference: Reference,
    current: pa.Table | Iterable[pa.Table],
    *,
    columns: Sequence[str] | None = None,
    alpha: float = 0.05,
    correction: Correction = "holm",
    thresholds: dict[str, float] | None = None,
    seed: int = 0,
) -> DriftReport:
    """Test every column the reference and the current data share (or `columns`).

    `current` is a table, or batches of one (a dataset's shards, a window's log files):
    each batch is counted and let go, so a window of any size costs a batch of memory.
    `thresholds` sets a column's practical threshold (its detectors' effect units);
    `seed` makes the bootstrap intervals repeatable.
    """
    if not 0 < alpha < 1:
        raise DriftInputError(f"alpha {alpha} is not between 0 and 1", "use e.g. 0.05")
    if correction not in ("holm", "bh"):
        raise DriftInputError(f"unknown correction {correction!r}", "use holm or bh")
    batches = iter([current] if isinstance(current, pa.Table) else current)
    first = next(batches, None)
    if first is None:
        raise DriftInputError("the current data has no rows or columns", "give it a window")
    names = _names(reference, first, columns)
    window = _Window(reference, names, seed)

    def test(name: str) -> list[tuple[str, str, Finding]]:
        counted = window.columns[name]
        return [(name, k, f) for k, f in _test_column(name, reference, counted, thresholds, seed)]

    # columns in parallel: sorting and counting release the GIL; results keep their order
    with ThreadPoolExecutor(max_workers=max(1, min(len(names), os.cpu_count() or 1))) as pool:
        window.add(first, pool)
        for batch in batches:
            window.add(batch, pool)
        findings = [f for column in pool.map(test, names) for f in column]
    tested = [i for i, (_, _, f) in enumerate(findings) if f.tested]
    adjusted = dict(
        zip(tested, _adjust([_p(findings[i][2]) for i in tested], correction), strict=True)
    )
    verdicts = _verdicts(findings, adjusted, alpha)
    checked = [v for v in verdicts if v.finding.tested]
    present = first.column_names
    return DriftReport(
        drift=any(v.drift for v in verdicts),
        share=sum(v.drift for v in checked) / len(checked) if checked else 0.0,
        n_reference=reference.rows,
        n_current=window.rows,
        alpha=alpha,
        correction=correction,
        columns=verdicts,
        only_reference=[c for c in reference.columns if c not in present],
        only_current=[
            c for c in present if c not in reference.columns and c not in reference.skipped
        ],
        skipped=reference.skipped,
    )


class _Window:
    """The current data as the tests need it, counted batch by batch (sketch.py)."""

    def __init__(self, reference: Reference, names: list[str], seed: int) -> None:
        self.reference = reference
        self.rows = 0
        self.columns: dict[str, Any] = {}
        self.edges: dict[str, np.ndarray] = {}  # numeric columns' edges, as arrays once
        self.axis_edges: dict[str, list[np.ndarray]] = {}  # embedding columns' projections'
        for n in names:
            sketch = reference.columns[n]
            if isinstance(sketch, sketches.NumericSketch):
                self.columns[n] = sketches.NumericCounts()
                self.edges[n] = np.asarray(sketch.edges, dtype=np.float64)
            elif isinstance(sketch, sketches.EmbeddingSketch):  # a seeded reservoir
                sample = sketches.EmbeddingSample(sketch.dims, (seed, _code(n)))
                sample.projected = [sketches.NumericCounts() for _ in sketch.projections]
                self.axis_edges[n] = [np.asarray(p.edges) for p in sketch.projections]
                self.columns[n] = sample
            else:
                self.columns[n] = collections.Counter()

    def add(self, batch: pa.Table, pool: ThreadPoolExecutor) -> None:
        self.rows += batch.num_rows

        def count(name: str) -> None:
            if name not in batch.column_names:
                raise DriftInputError(
                    f"a batch of the current data has no column {name!r}",
                    "give batches with the same columns",
                )
            sketch, column = self.reference.columns[name], batch.column(name)
            if sketches.kind_of(column.type) != sketch.kind:
                raise DriftInputError(
                    f"column {name!r} is {sketch.kind} in the reference but {column.type} now",
                    "compare data with the same schema",
                )
            if name in self.edges:
                self.columns[name].add(sketches.numeric_values(column), self.edges[name])
            elif isinstance(sketch, sketches.EmbeddingSketch):
                vectors, missing = _vectors(name, sketch, column)
                self.columns[name].add(vectors, missing)
                if sketch.projections and vectors.shape[0]:  # every vector, on each axis
                    projected = sketch.project(vectors)
                    for j, edges in enumerate(self.axis_edges[name]):
                        self.columns[name].projected[j].add(projected[:, j], edges)
            else:
                self.columns[name].update(sketches.category_counts(column))

        list(pool.map(count, self.columns))


def _vectors(
    name: str, sketch: sketches.EmbeddingSketch, column: pa.ChunkedArray
) -> tuple[np.ndarray, int]:
    """A batch's present vectors and its missing count, checked against the reference's width."""
    try:
        vectors, missing = sketches.embedding_vectors(column)
    except sketches.Unsketchable as why:
        raise DriftInputError(
            f"column {name!r} has {why}", f"give vectors of {sketch.dims:,} values"
        ) from None
    if vectors.shape[0] and vectors.shape[1] != sketch.dims:
        raise DriftInputError(
            f"column {name!r} has vectors of {vectors.shape[1]:,} values, "
            f"the reference's have {sketch.dims:,}",
            "compare embeddings made by the same model",
        )
    return vectors, missing


def _code(name: str) -> int:
    return zlib.crc32(name.encode())


def _names(reference: Reference, first: pa.Table, columns: Sequence[str] | None) -> list[str]:
    wanted = pick_columns(first, columns, "current") if columns else None
    if wanted is None:
        return [c for c in reference.columns if c in first.column_names]
    missing = [c for c in wanted if c not in reference.columns]
    if missing:
        why = [reference.skipped.get(c, "not in the reference") for c in missing]
        raise DriftInputError(
            f"cannot check {', '.join(missing)}: {'; '.join(why)}",
            f"check only columns both sides have: {', '.join(reference.columns) or 'none'}",
        )
    return wanted


def _p(finding: Finding) -> float:
    return 1.0 if finding.p_value is None else finding.p_value


def _test_column(
    name: str,
    reference: Reference,
    counted: Any,
    thresholds: dict[str, float] | None,
    seed: int,
) -> Iterable[tuple[str, Finding]]:
    sketch = reference.columns[name]
    current = dict(counted) if isinstance(counted, collections.Counter) else counted
    rng = np.random.default_rng([seed, _code(name)])  # repeatable per column
    for detector in detectors_for(sketch.kind):
        limit = (thresholds or {}).get(name, detector.threshold)
        finding = detector.test(sketch, current, limit, rng)
        if finding is not None:
            yield sketch.kind, finding


def _adjust(p_values: list[float], correction: Correction) -> list[float]:
    """Adjusted p-values: Holm (family-wise error) or Benjamini-Hochberg (false discoveries)."""
    if not p_values:
        return []
    p = np.asarray(p_values, dtype=np.float64)
    if correction == "bh":
        return stats.false_discovery_control(p, method="bh").tolist()  # type: ignore[no-any-return]
    order = np.argsort(p)
    stepped = np.maximum.accumulate(p[order] * (len(p) - np.arange(len(p))))
    out = np.empty_like(p)
    out[order] = np.minimum(stepped, 1.0)
    return out.tolist()  # type: ignore[no-any-return]


def _verdicts(
    findings: list[tuple[str, str, Finding]], adjusted: dict[int, float], alpha: float
) -> list[ColumnDrift]:
    by_column: dict[str, list[tuple[Finding, float | None, bool]]] = {}
    kinds: dict[str, str] = {}
    for i, (name, kind, f) in enumerate(findings):
        p = adjusted.get(i)
        low = f.effect_ci[0] if f.effect_ci else 0.0  # large enough with 95% confidence
        drifted = p is not None and p < alpha and low > f.threshold
        by_column.setdefault(name, []).append((f, p, drifted))
        kinds[name] = kind
    out = []
    for name, checks in by_column.items():
        alarms = [c for c in checks if c[2]]
        # the deciding finding: the alarm furthest past its threshold, else the first test
        first = (
            max(alarms, key=lambda c: (c[0].effect or 0) / c[0].threshold) if alarms else checks[0]
        )
        out.append(ColumnDrift(name, kinds[name], bool(alarms), first[0], first[1], checks))
    return out


def _finding(f: Finding, p_adjusted: float | None, drift: bool) -> dict[str, Any]:
    return {
        "test": f.test,
        "statistic": f.statistic,
        "p_value": f.p_value,
        "p_adjusted": p_adjusted,
        "effect": f.effect,
        "effect_ci": list(f.effect_ci) if f.effect_ci else None,
        "threshold": f.threshold,
        "drift": drift,
        "n_reference": f.n_reference,
        "n_current": f.n_current,
        **({"note": f.note} if f.note else {}),
        **f.detail,
    }
