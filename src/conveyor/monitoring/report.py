"""One served model version over one time window: health, drift, accuracy, alerts.

`build_report` reads the window of the prediction log once, file by file: the light
columns for health and accuracy, and the model inputs turned into the watched columns
(registry/watched.py) for drift against the version's stored reference. The shape is
REPORT.md; `figures` flattens it for alert rules and /metrics.

    report = build_report(ws, "digits:production", Window.last("1h"))
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.spatial import distance

from conveyor.core.errors import DriftInputError
from conveyor.data.reference import Reference
from conveyor.data.sketch import CategoricalSketch, NumericSketch, numeric_values
from conveyor.monitoring import accuracy as accuracy_figures
from conveyor.monitoring.drift import check
from conveyor.monitoring.traffic import LIGHT, log_files, watched_rows
from conveyor.monitoring.window import Window, health

if TYPE_CHECKING:
    from conveyor.registry.version import ModelVersion

FORMAT = "conveyor.monitor-report/1"
_BINS = 30
_TOP_CATEGORIES = 20


def build_report(
    ws: Any,
    spec: str,
    window: Window,
    *,
    labels: pa.Table | None = None,
    alerts: list[dict[str, Any]] | None = None,
    drift: bool = True,
    **drift_options: Any,
) -> dict[str, Any]:
    """The REPORT.md object of version `spec` (NAME:ALIAS, NAME@vN) over `window`.

    `labels` replaces the labels sent to /feedback (a labelled dataset version's, from
    `accuracy.labels_from_dataset`); `drift=False` skips the drift check (health and
    accuracy only: what `monitor status` needs every few seconds).
    """
    mv = ws.models.get(spec)
    reference, why = ws.models.drift_reference(mv) if drift else (None, "")
    light: list[pa.Table] = []
    files = log_files(ws, mv, window, inputs=reference is not None)

    def batches() -> Iterator[pa.Table]:
        for table in files:
            light.append(table.select(LIGHT))
            if reference is not None:
                watched = watched_rows(mv, table)
                if watched.num_rows:
                    yield watched

    distributions = _Distributions(reference) if reference else None
    drift_part = _drift(reference, why, batches(), distributions, drift_options)
    if reference is None:
        for _ in batches():  # read the light columns all the same
            pass
    log = pa.concat_tables(light) if light else _empty_light()
    report: dict[str, Any] = {
        "format": FORMAT,
        "model": mv.name,
        "version": mv.number,
        "ref": spec,
        "window": window.to_dict(),
        "health": health(log, window),
        "predictions": _predictions(log, reference),
        "drift": drift_part,
        "distributions": distributions.to_dict() if distributions else {},
        "accuracy": _accuracy(ws, mv, log, labels, window),
        "alerts": alerts or [],
    }
    return report


def figures(report: dict[str, Any]) -> dict[str, float | None]:
    """The flat figures alert rules and /metrics read (REPORT.md's table)."""
    h, d, a, p = report["health"], report["drift"], report["accuracy"], report["predictions"]
    out: dict[str, float | None] = {
        "requests": h["requests"],
        "rows": h["rows"],
        "errors": h["errors"],
        "error_rate": h["error_rate"],
        **{f"latency.{k}": v for k, v in h["latency_ms"].items()},
        "batch_rows.mean": h["batch_rows"]["mean"],
        "predictions.shift": p.get("shift"),
        "confidence.mean": (p.get("confidence") or {}).get("mean"),
        "accuracy": a["accuracy"],
        "labelled": a["labelled"],
    }
    columns = d.get("columns")
    if columns is None:  # not enough data or no reference: drift is unknown, not zero
        out["drift.share"] = out["drift.columns"] = None
    else:
        out["drift.share"] = d["share"]
        out["drift.columns"] = sum(1 for c in columns if c["drift"])
        for c in columns:
            out[f"drift.{c['name']}"] = c["effect"]
    return out


def served_versions(meta: Any, window: Window) -> list[tuple[str, int]]:
    """(model, version) pairs with logged traffic in the window, by name then version."""
    from sqlalchemy import select

    from conveyor.serving.records import PredictionFileRecord as File

    query = (
        select(File.model, File.version)
        .where(File.last_at >= window.since, File.first_at < window.until)
        .distinct()
    )
    with meta.read() as s:
        return sorted((m, int(v)) for m, v in s.execute(query))


# -- drift ----------------------------------------------------------------------------------


def _drift(
    reference: Reference | None,
    why: str,
    batches: Iterator[pa.Table],
    distributions: _Distributions | None,
    options: dict[str, Any],
) -> dict[str, Any]:
    if reference is None:
        return {"drift": False, "note": f"no reference to compare with: {why}"}

    def counted() -> Iterator[pa.Table]:
        for batch in batches:
            assert distributions is not None
            distributions.add(batch)
            yield batch

    try:
        result: dict[str, Any] = check(reference, counted(), **options).to_dict()
    except DriftInputError as e:
        if "no rows" not in e.message:
            raise
        return {"drift": False, "note": "not enough data: no answered rows in the window"}
    return result


class _Distributions:
    """Reference and window shares over the same bins, per column, for the plots."""

    def __init__(self, reference: Reference) -> None:
        self.reference = reference
        self.bins: dict[str, np.ndarray] = {}
        self.counts: dict[str, np.ndarray] = {}
        self.categories: dict[str, dict[str, int]] = {}
        for name, sketch in reference.columns.items():
            if isinstance(sketch, NumericSketch) and len(sketch.edges) > 1:
                cdf, edges = np.asarray(sketch.cdf), np.asarray(sketch.edges)
                low, high = np.interp([0.01, 0.99], cdf, edges)
                if high <= low:
                    low, high = edges[0], edges[-1]
                self.bins[name] = np.linspace(low, high, _BINS + 1)
                self.counts[name] = np.zeros(_BINS + 2)  # and under / over the range
            elif isinstance(sketch, CategoricalSketch):
                self.categories[name] = {}

    def add(self, batch: pa.Table) -> None:
        for name, bins in self.bins.items():
            if name in batch.column_names:
                values = numeric_values(batch.column(name))
                values = values[~np.isnan(values)]
                inside = np.histogram(values, bins)[0]
                self.counts[name] += [(values < bins[0]).sum(), *inside, (values > bins[-1]).sum()]
        for name, seen in self.categories.items():
            if name in batch.column_names:
                for row in pc.value_counts(batch.column(name)).to_pylist():
                    key = str(row["values"])
                    seen[key] = seen.get(key, 0) + int(row["counts"])

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, bins in self.bins.items():
            sketch = self.reference.columns[name]
            assert isinstance(sketch, NumericSketch)
            ref_cdf = np.interp(bins, sketch.edges, sketch.cdf, left=0.0, right=1.0)
            total = self.counts[name].sum()
            current = self.counts[name][1:-1] / total if total else None
            out[name] = {
                "kind": "numeric",
                "edges": bins.tolist(),
                "reference": np.diff(ref_cdf).tolist(),
                "current": None if current is None else current.tolist(),
            }
        for name, seen in self.categories.items():
            sketch = self.reference.columns[name]
            assert isinstance(sketch, CategoricalSketch)
            ref_total, cur_total = sum(sketch.counts.values()), sum(seen.values())
            both = {**{k: 0 for k in seen}, **sketch.counts}
            top = sorted(both, key=lambda k: -(sketch.counts.get(k, 0) + seen.get(k, 0)))
            top = top[:_TOP_CATEGORIES]
            out[name] = {
                "kind": "categorical",
                "categories": top,
                "reference": [sketch.counts.get(k, 0) / ref_total for k in top],
                "current": [seen.get(k, 0) / cur_total for k in top] if cur_total else None,
            }
        return out


# -- predictions and accuracy ----------------------------------------------------------------


def _predictions(log: pa.Table, reference: Reference | None) -> dict[str, Any]:
    answered = log.filter(pc.equal(log["status"], 200))
    labels = [r for r in pc.value_counts(answered["label"].drop_null()).to_pylist()]
    total = sum(r["counts"] for r in labels)
    classes = {str(r["values"]): r["counts"] / total for r in labels} if total else {}
    out: dict[str, Any] = {"classes": classes, "reference_classes": {}, "shift": None}
    predicted = reference.columns.get("predicted") if reference else None
    if isinstance(predicted, CategoricalSketch) and predicted.rows:
        ref = {k: v / predicted.rows for k, v in predicted.counts.items()}
        out["reference_classes"] = ref
        if classes:
            keys = sorted(set(ref) | set(classes))
            out["shift"] = float(
                distance.jensenshannon([ref.get(k, 0) for k in keys],
                                       [classes.get(k, 0) for k in keys], base=2)
            )  # fmt: skip
    confidence = reference.columns.get("confidence") if reference else None
    scores = answered["score"].drop_null().to_numpy().astype(np.float64)
    out["confidence"] = {
        "mean": float(scores.mean()) if scores.size else None,
        "p50": float(np.median(scores)) if scores.size else None,
        "reference_mean": confidence.mean if isinstance(confidence, NumericSketch) else None,
    }
    return out


def _accuracy(
    ws: Any, mv: ModelVersion, log: pa.Table, labels: pa.Table | None, window: Window
) -> dict[str, Any]:
    answered = log.filter(pc.equal(log["status"], 200))
    if labels is None:
        ids = pc.unique(answered["request_id"]).to_pylist()
        labels = accuracy_figures.read_labels(ws.meta, mv.name, ids)
    return accuracy_figures.accuracy(
        answered.select(["request_id", "row", "label", "at", "role", "status"]),
        labels,
        bucket_s=window.bucket_seconds(),
    )


def _empty_light() -> pa.Table:
    from conveyor.serving.predictions import SCHEMA

    return pa.schema([SCHEMA.field(n) for n in LIGHT]).empty_table()
