"""Drift between any two things a user has, by name: two dataset versions, a dataset
version and a served version's traffic, or two windows of traffic.

Two dataset versions are compared column by column as stored: only the columns a check
reads are loaded (never the image bytes); the current version is counted shard by
shard, the reference sketched a group of columns at a time. Once a served version is
on either side, both sides are its watched columns (traffic.py): the dataset's rows go
through that version's preprocessing and model, as if it had served them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from conveyor.core.errors import ConveyorError, DriftInputError
from conveyor.data.reference import Reference
from conveyor.data.sketch import kind_of
from conveyor.monitoring.drift import DriftReport, check
from conveyor.monitoring.traffic import watched_dataset, watched_traffic
from conveyor.monitoring.window import Window

if TYPE_CHECKING:
    from conveyor.data.catalog import Datasets
    from conveyor.data.dataset import DatasetVersion
    from conveyor.registry.version import ModelVersion

MAX_REFERENCE_ROWS = 200_000  # a reference is sketched whole; beyond this, its first rows


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a dataset version, or a version's traffic in a window."""

    spec: str
    dataset: DatasetVersion | None = None
    model: ModelVersion | None = None
    window: Window | None = None

    def label(self) -> str:
        if self.window is None:
            return self.spec
        w = self.window
        return f"{self.spec} traffic {w.since.isoformat()} to {w.until.isoformat()}"


def resolve(ws: Any, spec: str, window: Window | None) -> Side:
    """A dataset version when a dataset has that name, else a registered model version."""
    name = spec.replace(":", "@").partition("@")[0]
    if ws.datasets.exists(name):
        return Side(spec, dataset=ws.datasets.get(spec))
    try:
        mv = ws.models.get(spec)
    except ConveyorError:
        raise DriftInputError(
            f"no dataset or model named {name!r}",
            "give a dataset version (iris@v2) or a served model (digits:production)",
        ) from None
    return Side(spec, model=mv, window=window or Window.last("1h"))


def compare(
    ws: Any, reference: Side, current: Side, columns: Sequence[str] | None = None, **options: Any
) -> DriftReport:
    """Drift of `current` from `reference`; options go to `check`."""
    if reference.dataset is not None and current.dataset is not None:
        return compare_datasets(ws.datasets, reference.spec, current.spec, columns, **options)
    mv = current.model or reference.model
    assert mv is not None
    table = _whole(_watched(ws, reference, mv))
    if table is None:
        raise DriftInputError(f"{reference.label()} has no rows", "pick a window with traffic")
    sketch = Reference.from_table(table, columns, source=reference.label())
    return check(sketch, _watched(ws, current, mv), columns=columns or None, **options)


def _watched(ws: Any, side: Side, mv: ModelVersion) -> Iterator[pa.Table]:
    if side.dataset is not None:
        return watched_dataset(mv, side.dataset)
    assert side.model is not None and side.window is not None
    return watched_traffic(ws, side.model, side.window)


def _whole(batches: Iterator[pa.Table]) -> pa.Table | None:
    kept: list[pa.Table] = []
    rows = 0
    for batch in batches:
        kept.append(batch.slice(0, MAX_REFERENCE_ROWS - rows))
        rows += kept[-1].num_rows
        if rows >= MAX_REFERENCE_ROWS:
            break
    return pa.concat_tables(kept, promote_options="permissive") if kept else None


def compare_datasets(
    datasets: Datasets,
    reference: str,
    current: str,
    columns: Sequence[str] | None = None,
    **options: Any,
) -> DriftReport:
    """`reference` and `current` are dataset versions (`iris@v1`); options go to `check`."""
    ref_version, cur_version = datasets.get(reference), datasets.get(current)
    known = set(ref_version.schema.names) | set(cur_version.schema.names)
    unknown = [c for c in columns or [] if c not in known]
    if unknown:
        raise DriftInputError(
            f"neither {reference} nor {current} has column {', '.join(map(repr, unknown))}",
            f"columns: {', '.join(sorted(known))}",
        )

    def readable(schema: pa.Schema) -> list[str]:  # what a check reads, or was asked for
        return [f.name for f in schema if (f.name in columns if columns else kind_of(f.type))]

    sketch = _sketch(ref_version, readable(ref_version.schema), reference)
    shards = cur_version.iter_tables(columns=readable(cur_version.schema))
    return check(sketch, shards, columns=columns or None, **options)


_GROUP = 16  # reference columns read at once: exact quantiles need a column whole


def _sketch(version: DatasetVersion, names: list[str], source: str) -> Reference:
    """The reference, read a group of columns at a time, so memory is bounded by a group."""
    parts = [
        Reference.from_table(version.to_arrow(columns=names[i : i + _GROUP]))
        for i in range(0, len(names), _GROUP)
    ] or [Reference.from_table(version.to_arrow(columns=[]))]
    return Reference(
        rows=version.rows,
        columns={k: v for p in parts for k, v in p.columns.items()},
        skipped={k: v for p in parts for k, v in p.skipped.items()},
        source=source,
    )
