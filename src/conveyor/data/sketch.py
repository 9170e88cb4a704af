"""What a drift check keeps of each column, on both sides.

The reference is sketched once, so a check never rereads it: per numeric column the
exact cumulative share at up to 1,001 quantile edges (every distinct value when there are
fewer), which is enough for a binned Kolmogorov-Smirnov test and the Wasserstein
distance; per categorical column the count of every category. Both are small JSON.

The current window is counted against those edges batch by batch (`NumericCounts`,
category counts), and counts add up, so a window is read once, a batch at a time, and
never held whole.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

EDGES = 1001  # quantile edges kept per numeric column: the KS statistic is exact to 1/1000
MAX_CATEGORIES = 1000  # beyond this a string column is an identifier, not a category
MISSING = "(missing)"


@dataclass(frozen=True)
class NumericSketch:
    kind = "numeric"
    rows: int  # values including missing ones
    missing: int
    mean: float
    std: float
    edges: list[float]  # increasing, distinct; edges[0] is the minimum, edges[-1] the maximum
    cdf: list[float]  # share of present values <= each edge (cdf[-1] == 1)

    @property
    def present(self) -> int:
        return self.rows - self.missing

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True)
class CategoricalSketch:
    kind = "categorical"
    rows: int
    counts: dict[str, int]  # every category, missing values as "(missing)"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **asdict(self)}


Sketch = NumericSketch | CategoricalSketch


@dataclass
class NumericCounts:
    """A window of one numeric column, counted against the reference's edges."""

    rows: int = 0
    missing: int = 0
    at_or_below: np.ndarray | None = None  # values <= each reference edge
    below: int = 0  # values under the reference's minimum...
    below_excess: float = 0.0  # ...and how far under, summed
    above: int = 0
    above_excess: float = 0.0

    @property
    def present(self) -> int:
        return self.rows - self.missing

    def add(self, values: np.ndarray, edges: np.ndarray) -> None:
        x = np.sort(values[~np.isnan(values)])  # sorted: counting below each edge is cheap
        self.rows += int(values.size)
        self.missing += int(values.size - x.size)
        if not edges.size:
            return
        at_or_below = np.searchsorted(x, edges, side="right")
        self.at_or_below = (
            at_or_below if self.at_or_below is None else self.at_or_below + at_or_below
        )
        under = int(np.searchsorted(x, edges[0], side="left"))
        self.below += under
        self.below_excess += float((edges[0] - x[:under]).sum())
        self.above += int(x.size - at_or_below[-1])
        self.above_excess += float((x[at_or_below[-1] :] - edges[-1]).sum())


def kind_of(t: pa.DataType) -> str | None:
    """The kind of column a type holds: numeric, categorical, or None (not checked)."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "numeric"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_boolean(t):
        return "categorical"
    return None


def numeric_values(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """float64 values, missing (null or NaN) as NaN."""
    values = pc.cast(column, pa.float64())
    return np.asarray(values.to_numpy(zero_copy_only=False), dtype=np.float64)


def category_counts(column: pa.ChunkedArray | pa.Array) -> dict[str, int]:
    if pa.types.is_dictionary(column.type):
        column = pc.cast(column, column.type.value_type)
    if not pa.types.is_string(column.type):
        column = pc.cast(column, pa.string())
    counts = pc.value_counts(column)
    out = {
        (MISSING if v is None else str(v)): int(n)
        for v, n in zip(
            counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True
        )
    }
    return out


def sketch_numeric(values: np.ndarray) -> NumericSketch:
    present = np.sort(values[~np.isnan(values)])
    if present.size == 0:
        return NumericSketch(int(values.size), int(values.size), 0.0, 0.0, [], [])
    distinct = np.unique(present)
    if distinct.size <= EDGES:
        edges = distinct
    else:
        edges = np.unique(np.quantile(present, np.linspace(0, 1, EDGES)))
    cdf = np.searchsorted(present, edges, side="right") / present.size
    return NumericSketch(
        rows=int(values.size),
        missing=int(values.size - present.size),
        mean=float(present.mean()),
        std=float(present.std()),
        edges=edges.tolist(),
        cdf=cdf.tolist(),
    )


def sketch_column(column: pa.ChunkedArray | pa.Array) -> Sketch | None:
    kind = kind_of(column.type)
    if kind == "numeric":
        return sketch_numeric(numeric_values(column))
    if kind == "categorical":
        return CategoricalSketch(rows=len(column), counts=category_counts(column))
    return None


def sketch_from_dict(data: dict[str, Any]) -> Sketch:
    fields = {k: v for k, v in data.items() if k != "kind"}
    if data["kind"] == "numeric":
        return NumericSketch(**fields)
    return CategoricalSketch(**fields)
