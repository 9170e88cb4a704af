"""Drift between two things a user has, by name: two dataset versions (for now).

Only the columns a drift check reads are loaded (never the image bytes); the current
version is counted shard by shard, the reference sketched a group of columns at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from conveyor.core.errors import DriftInputError
from conveyor.data.reference import Reference
from conveyor.data.sketch import kind_of
from conveyor.monitoring.drift import DriftReport, check

if TYPE_CHECKING:
    from conveyor.data.catalog import Datasets
    from conveyor.data.dataset import DatasetVersion


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
