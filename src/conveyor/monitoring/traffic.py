"""What a model version saw, as the watched columns (registry/watched.py), batch by batch.

Served traffic comes from the prediction log, a file at a time; a dataset version is
read a shard at a time and put through the version's preprocessing and ONNX model,
so a dataset and a window of traffic are compared on the same columns.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from conveyor.core.errors import DriftInputError
from conveyor.monitoring.window import HEALTH_COLUMNS, Window
from conveyor.registry.evaluate import input_columns
from conveyor.registry.watched import embedder, model_input, watched_from_model, watched_table
from conveyor.serving.predictions import iter_predictions

if TYPE_CHECKING:
    from conveyor.data.dataset import DatasetVersion
    from conveyor.registry.version import ModelVersion

LIGHT = [*HEALTH_COLUMNS, "label", "score"]  # what health, predictions and accuracy read


def log_files(ws: Any, mv: ModelVersion, window: Window, *, inputs: bool) -> Iterator[pa.Table]:
    """The window's log rows of `mv`, a file at a time: LIGHT, plus `features` if asked."""
    columns = [*LIGHT, *(["features"] if inputs else [])]
    return iter_predictions(
        ws.meta, ws.objects, mv.name, mv.number, window.since, window.until, columns=columns
    )


def watched_rows(mv: ModelVersion, table: pa.Table) -> pa.Table:
    """A log file's answered rows as the watched columns (rows without features dropped)."""
    table = table.filter(pc.and_(pc.equal(table["status"], 200), pc.is_valid(table["features"])))
    if not table.num_rows:
        return pa.table({})
    flat = table["features"].combine_chunks()
    width = len(flat.values) // len(flat)
    x = model_input(mv.signature, flat.values.to_numpy().reshape(len(flat), width))
    _, embeddings = embedder(mv.onnx_bytes()).run(x)
    return watched_table(
        mv.preprocessing, mv.signature, x, embeddings=embeddings,
        predicted=table["label"].to_pylist(),
        confidence=table["score"].to_numpy(zero_copy_only=False),
    )  # fmt: skip


def watched_traffic(ws: Any, mv: ModelVersion, window: Window) -> Iterator[pa.Table]:
    for table in log_files(ws, mv, window, inputs=True):
        watched = watched_rows(mv, table)
        if watched.num_rows:
            yield watched


def watched_dataset(mv: ModelVersion, version: DatasetVersion) -> Iterator[pa.Table]:
    """A dataset version's rows as `mv` would watch them had it served them."""
    pre = mv.preprocessing
    if pre.kind in ("text", "none"):
        raise DriftInputError(
            f"{mv.ref} takes {pre.kind} inputs, which a dataset cannot be turned into here",
            "compare two windows of its traffic instead",
        )
    columns = input_columns(pre)
    missing = [c for c in columns if c not in version.schema.names]
    if missing:
        raise DriftInputError(
            f"{version.ref} has no column {', '.join(missing)} that {mv.ref} reads",
            f"its columns: {', '.join(version.schema.names)}",
        )
    for table in version.iter_tables(columns=columns):
        raw = table.to_pydict() if pre.kind == "tabular" else table.column(columns[0]).to_pylist()
        yield watched_from_model(pre, mv.signature, mv.onnx_bytes(), pre.apply(raw))
