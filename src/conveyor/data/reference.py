"""A reference: what each column of a table looked like, sketched once (sketch.py).

The drift engine (monitoring/drift.py) compares current data with one; the registry
stores one with each model version, so checking a window never rereads training data.
Plain JSON with `to_dict` (format `conveyor.drift-reference/1`, spec: monitoring/DRIFT.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from conveyor.core.errors import DriftInputError
from conveyor.data import sketch as sketches
from conveyor.data.sketch import MAX_CATEGORIES, CategoricalSketch, Sketch

FORMAT = "conveyor.drift-reference/1"


@dataclass(frozen=True)
class Reference:
    """What each column of the reference looked like (sketch.py); JSON with `to_dict`."""

    rows: int
    columns: dict[str, Sketch]
    skipped: dict[str, str] = field(default_factory=dict)  # column -> why it is not checked
    source: str = ""

    @classmethod
    def from_table(
        cls, table: pa.Table, columns: Sequence[str] | None = None, source: str = ""
    ) -> Reference:
        names = pick_columns(table, columns, "reference")
        kept: dict[str, Sketch] = {}
        skipped: dict[str, str] = {}
        for name in names:
            try:
                made = sketches.sketch_column(table.column(name))
            except sketches.Unsketchable as why:  # vectors of no single width, or none
                skipped[name] = str(why)
                continue
            if made is None:
                skipped[name] = f"{table.schema.field(name).type} values are not checked"
            elif isinstance(made, CategoricalSketch) and len(made.counts) > MAX_CATEGORIES:
                skipped[name] = f"{len(made.counts):,} distinct values: an identifier"
            else:
                kept[name] = made
        return cls(rows=table.num_rows, columns=kept, skipped=skipped, source=source)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "rows": self.rows,
            "source": self.source,
            "columns": {k: s.to_dict() for k, s in self.columns.items()},
            "skipped": self.skipped,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Reference:
        if data.get("format") != FORMAT:
            raise DriftInputError(
                f"not a drift reference ({data.get('format')!r})", f"expected {FORMAT}"
            )
        return cls(
            rows=int(data["rows"]),
            columns={k: sketches.sketch_from_dict(v) for k, v in data["columns"].items()},
            skipped=dict(data.get("skipped", {})),
            source=str(data.get("source", "")),
        )


def pick_columns(table: pa.Table, columns: Sequence[str] | None, side: str) -> list[str]:
    """`columns` (all when None), each checked to be in the table."""
    if columns is None:
        return list(table.column_names)
    unknown = [c for c in columns if c not in table.column_names]
    if unknown:
        raise DriftInputError(
            f"the {side} data has no column {', '.join(map(repr, unknown))}",
            f"its columns: {', '.join(table.column_names)}",
        )
    return list(columns)
