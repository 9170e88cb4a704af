"""Run a version's ONNX model over a dataset version: accuracy, F1, loss, per class and
per slice. Used by gates (on this machine, with ONNX Runtime) and by int8 export."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from conveyor.core.errors import ConveyorError
from conveyor.registry import onnx_export
from conveyor.registry.preprocessing import Preprocessing

if TYPE_CHECKING:
    from conveyor.data.dataset import DatasetVersion
    from conveyor.registry.version import ModelVersion

_BATCH = 256


class EvaluationError(ConveyorError):
    """A version cannot be evaluated on that data (missing columns, unknown labels)."""


@dataclass
class Evaluation:
    """Classification figures of one model on one dataset version (or split)."""

    data: str
    rows: int
    metrics: dict[str, float]
    per_class: dict[str, dict[str, float]] = field(default_factory=dict)
    per_slice: dict[str, dict[str, float]] = field(default_factory=dict)


def input_columns(pre: Preprocessing) -> list[str]:
    if pre.kind == "tabular":
        return list(pre.columns)
    if pre.column is None:
        raise EvaluationError(
            f"a model with {pre.kind!r} preprocessing names no input column",
            "give the preprocessing a column (e.g. column='image')",
        )
    return [pre.column]


def batches(
    version: DatasetVersion, pre: Preprocessing, split: str | None, extra: list[str]
) -> Iterator[tuple[np.ndarray, dict[str, list[Any]]]]:
    """(model inputs, the other columns as lists) per batch of rows."""
    columns = input_columns(pre)
    wanted = list(dict.fromkeys([*columns, *extra]))
    for table in version.iter_tables(columns=wanted, split=split):
        for start in range(0, table.num_rows, _BATCH):
            chunk = table.slice(start, _BATCH)
            if pre.kind == "tabular":
                raw: Any = {c: chunk.column(c).to_pylist() for c in columns}
            else:
                raw = chunk.column(columns[0]).to_pylist()
            yield pre.apply(raw), {c: chunk.column(c).to_pylist() for c in extra}


def evaluate(
    mv: ModelVersion,
    version: DatasetVersion,
    split: str | None,
    *,
    onnx: bytes | None = None,
    slice_column: str | None = None,
) -> Evaluation:
    """Evaluate `onnx` (default: the version's own model) on `version` (one split)."""
    target = mv.manifest.target or "label"
    labels = mv.signature.labels
    if not labels:
        raise EvaluationError(f"{mv.ref} has no class labels", "register it with signature labels")
    if target not in version.schema.names:
        raise EvaluationError(f"{version.ref} has no target column {target!r}", "pick other data")
    index = {label: i for i, label in enumerate(labels)}
    sess = onnx_export.session(onnx if onnx is not None else mv.onnx_bytes())
    extra = [target] + ([slice_column] if slice_column else [])
    truth: list[int] = []
    predicted: list[int] = []
    losses: list[float] = []
    slices: list[Any] = []
    for inputs, other in batches(version, mv.preprocessing, split, extra):
        logits = onnx_export.run(sess, inputs).astype(np.float64)
        ids = _ids(other[target], index, version.ref)
        truth.extend(ids)
        predicted.extend(logits.argmax(axis=1).tolist())
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        losses.extend((-log_probs[np.arange(len(ids)), ids]).tolist())
        if slice_column:
            slices.extend(other[slice_column])
    where = f"{version.ref}" + (f" ({split})" if split else "")
    if not truth:
        raise EvaluationError(f"{where} has no rows to evaluate on", "pick another split")
    t, p = np.array(truth), np.array(predicted)
    per_class = _per_class(t, p, labels)
    f1s = [c["f1"] for c in per_class.values()]
    metrics = {
        "accuracy": float((t == p).mean()),
        "f1_macro": float(np.mean(f1s)),
        "loss": float(np.mean(losses)),
    }
    per_slice: dict[str, dict[str, float]] = {}
    if slice_column:
        values = np.array([str(v) for v in slices])
        for value in sorted(set(values.tolist())):
            mask = values == value
            per_slice[value] = {
                "accuracy": float((t[mask] == p[mask]).mean()),
                "rows": float(mask.sum()),
            }
    return Evaluation(where, len(t), metrics, per_class, per_slice)


def _ids(values: list[Any], index: dict[str, int], ref: str) -> list[int]:
    try:
        return [index[str(v)] for v in values]
    except KeyError as e:
        raise EvaluationError(
            f"{ref} has target value {e} that the model has no class for",
            f"the model's classes are: {', '.join(index)}",
        ) from None


def _per_class(t: np.ndarray, p: np.ndarray, labels: list[str]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for i, label in enumerate(labels):
        support = int((t == i).sum())
        hits = int(((t == i) & (p == i)).sum())
        predicted = int((p == i).sum())
        recall = hits / support if support else 0.0
        precision = hits / predicted if predicted else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        out[label] = {"accuracy": recall, "f1": f1, "rows": float(support)}
    return out
