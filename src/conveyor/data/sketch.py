"""What a drift check keeps of each column, on both sides.

The reference is sketched once, so a check never rereads it: per numeric column the
exact cumulative share at up to 1,001 quantile edges (every distinct value when there are
fewer), which is enough for a binned Kolmogorov-Smirnov test and the Wasserstein
distance; per categorical column the count of every category; per embedding column (a
list of floats of one width) a fixed random sample of 1,000 vectors with the per-dimension
mean and sd. All are JSON.

The current window is counted batch by batch (`NumericCounts` against the edges,
category counts, `EmbeddingSample`: a reservoir of 2,000 vectors), and counts add up, so
a window is read once, a batch at a time, and never held whole.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

EDGES = 1001  # quantile edges kept per numeric column: the KS statistic is exact to 1/1000
MAX_CATEGORIES = 1000  # beyond this a string column is an identifier, not a category
MISSING = "(missing)"
SAMPLE_REFERENCE = 1000  # reference vectors an embedding sketch keeps
SAMPLE_CURRENT = 2000  # current vectors a window keeps (a reservoir)
AXES = 8  # principal axes an embedding sketch projects every reference vector onto
MAX_DIMS = 4096  # wider vectors are skipped: reduce them first


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


@dataclass(frozen=True)
class EmbeddingSketch:
    """A column of vectors of one width: a seeded random sample of up to 1,000 of them,
    centred on the reference mean and divided by `scale` (the root mean square of the
    per-dimension sds, one number, so distances keep their geometry), stored as
    little-endian float16 in base64 (spec: monitoring/DRIFT.md). `bandwidth` (the
    Gaussian kernel's sigma, median heuristic) and `axis_variance` (the variance along the
    sample's first principal axis) are in those scaled units, fixed once here.

    `axes`: the sample's top 8 principal axes (unit rows, float32 little-endian, base64,
    len(projections) x dims), `axis_shares` their shares of the sample's variance, and
    `projections` a NumericSketch per axis of the scaled reference vectors projected on
    it: every present vector outside the sample (the axes are fitted on the sample, whose
    own spread along them is inflated). Empty when the reference has no vector outside
    the sample, and in sketches made before them."""

    kind = "embedding"
    rows: int
    missing: int  # null vectors, and vectors with a NaN or a null inside
    dims: int
    mean: list[float]  # per dimension, over every present reference vector
    std: list[float]
    sample_rows: int
    sample: str  # base64 of float16 little-endian, row-major (sample_rows x dims)
    bandwidth: float
    axis_variance: float
    axes: str = ""
    axis_shares: list[float] = field(default_factory=list)
    projections: list[NumericSketch] = field(default_factory=list)

    @property
    def present(self) -> int:
        return self.rows - self.missing

    @cached_property
    def axis_vectors(self) -> np.ndarray:
        """The principal axes as stored (float64, len(projections) x dims)."""
        raw = np.frombuffer(base64.b64decode(self.axes), dtype="<f4")
        return raw.astype(np.float64).reshape(len(self.projections), self.dims)

    def project(self, values: np.ndarray) -> np.ndarray:
        """Vectors (k x dims, unscaled) on the axes: k x len(projections), float64."""
        return self.scaled(values).astype(np.float64) @ self.axis_vectors.T  # type: ignore[no-any-return]

    @property
    def scale(self) -> float:
        return _scale(np.asarray(self.std))

    @cached_property
    def vectors(self) -> np.ndarray:
        """The sample, scaled (float32, sample_rows x dims)."""
        raw = np.frombuffer(base64.b64decode(self.sample), dtype="<f2")
        return raw.astype(np.float32).reshape(self.sample_rows, self.dims)

    def scaled(self, values: np.ndarray) -> np.ndarray:
        """Current vectors in the sample's units: centred on the reference mean, / scale."""
        centre = np.asarray(self.mean, dtype=np.float32)
        return ((values - centre) / np.float32(self.scale)).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        out = {"kind": self.kind, **asdict(self)}
        out["projections"] = [p.to_dict() for p in self.projections]
        return out


Sketch = NumericSketch | CategoricalSketch | EmbeddingSketch


class Unsketchable(ValueError):
    """A column of a checkable type whose values cannot be sketched (ragged vectors)."""


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


@dataclass
class EmbeddingSample:
    """A window of one embedding column: a seeded reservoir of at most `capacity` vectors
    (Algorithm R: after it fills, the t-th vector replaces a random slot with probability
    capacity / t, so every vector seen is kept with the same chance), per-dimension sums,
    and the counts. Memory is capacity x dims floats whatever the window's size; batches
    give the same sample as the whole window (one uniform draw per vector, in order).
    `projected`: every present vector of the window on the reference's principal axes,
    counted against each axis's edges (drift.py fills it)."""

    dims: int
    seed: Sequence[int] = (0,)
    capacity: int = SAMPLE_CURRENT
    rows: int = 0
    missing: int = 0
    present: int = 0
    sums: np.ndarray | None = None
    kept: np.ndarray | None = None
    projected: list[NumericCounts] = field(default_factory=list)  # per axis, when sketched
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(list(self.seed))

    @property
    def vectors(self) -> np.ndarray:
        if self.kept is None:
            return np.empty((0, self.dims), dtype=np.float32)
        return self.kept[: min(self.present, self.capacity)]

    def add(self, vectors: np.ndarray, missing: int) -> None:
        """`vectors`: the present rows of a batch (k x dims); `missing`: its other rows."""
        self.rows += int(vectors.shape[0]) + missing
        self.missing += missing
        if not vectors.shape[0]:
            return
        if self.kept is None:
            self.kept = np.empty((self.capacity, self.dims), dtype=np.float32)
            self.sums = np.zeros(self.dims, dtype=np.float64)
        assert self.sums is not None
        self.sums += vectors.sum(axis=0, dtype=np.float64)
        t = self.present + np.arange(vectors.shape[0])  # each vector's place in the window
        self.present += int(vectors.shape[0])
        fill = t < self.capacity
        self.kept[t[fill]] = vectors[fill]
        later = np.flatnonzero(~fill)
        if not later.size:
            return
        slot = np.floor(self._rng.random(later.size) * (t[later] + 1)).astype(np.int64)
        hit = slot < self.capacity
        slot, later = slot[hit], later[hit]
        # a slot hit twice in one batch keeps the later vector, as one at a time would
        last = slot.size - 1 - np.unique(slot[::-1], return_index=True)[1]
        self.kept[slot[last]] = vectors[later[last]]


def kind_of(t: pa.DataType) -> str | None:
    """The kind of column a type holds: numeric, categorical, embedding (a list of
    floats), or None (not checked)."""
    if _is_vector(t):
        return "embedding"
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


def _is_vector(t: pa.DataType) -> bool:
    lists = pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
    return bool(lists and pa.types.is_floating(t.value_type))


def embedding_vectors(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, int]:
    """The present vectors (float32, rows x width) and how many rows are missing: a null
    vector, or one with a NaN or a null value inside. Raises Unsketchable when the
    present vectors are not all of one width."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    valid = np.asarray(column.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
    widths = np.unique(lengths[valid].astype(np.int64))
    if widths.size > 1:
        raise Unsketchable(f"vectors of {widths[0]:,} to {widths[-1]:,} values, not one width")
    width = int(widths[0]) if widths.size else 0
    flat = pc.cast(pc.list_flatten(column), pa.float32())  # null vectors give nothing
    values = np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.float32)
    values = values.reshape(-1, width) if width else np.empty((int(valid.sum()), 0), np.float32)
    whole = ~np.isnan(values).any(axis=1)
    vectors = values if whole.all() else values[whole]
    return vectors, len(column) - int(vectors.shape[0])


def sketch_embedding(column: pa.ChunkedArray | pa.Array) -> EmbeddingSketch:
    """A seeded sample of 1,000 present vectors, scaled, as float16 (see EmbeddingSketch).

    Read a slice at a time: the sample is a reservoir (seed 0) and the mean and sd are
    merged slice by slice (Chan's update), so a large reference costs a slice of memory
    beyond its Arrow column."""
    sample: EmbeddingSample | None = None
    places = EmbeddingSample(2, (0,), SAMPLE_REFERENCE)  # the same draws: which are kept
    count, missing, mean, m2 = 0, 0, np.zeros(0), np.zeros(0)
    for start in range(0, len(column), _SLICE):
        vectors, gone = embedding_vectors(column.slice(start, _SLICE))
        missing += gone
        k, dims = vectors.shape
        if k == 0:
            continue
        if sample is None:
            sample = EmbeddingSample(dims, (0,), SAMPLE_REFERENCE)
            mean, m2 = np.zeros(dims), np.zeros(dims)
        elif dims != sample.dims:
            raise Unsketchable(f"vectors of {sample.dims:,} and of {dims:,} values, not one width")
        sample.add(vectors, 0)
        places.add(_places(count, k), 0)
        part = vectors.mean(axis=0, dtype=np.float64)
        part_m2 = np.square(vectors - part.astype(np.float32), dtype=np.float64).sum(axis=0)
        delta = part - mean
        mean = mean + delta * (k / (count + k))
        m2 = m2 + part_m2 + np.square(delta) * (count * k / (count + k))
        count += k
    if sample is None or sample.dims == 0:
        raise Unsketchable("no vectors to sketch" if sample is None else "empty vectors")
    if sample.dims > MAX_DIMS:
        raise Unsketchable(f"vectors of {sample.dims:,} values, wider than {MAX_DIMS:,}")
    std = np.sqrt(m2 / count)
    scaled = (sample.vectors - mean) / _scale(std)
    stored = np.clip(scaled, -60000, 60000).astype("<f2")  # float16 tops out at 65,504
    kept = stored.astype(np.float32)
    sketch = EmbeddingSketch(
        rows=len(column),
        missing=missing,
        dims=sample.dims,
        mean=mean.tolist(),
        std=std.tolist(),
        sample_rows=int(kept.shape[0]),
        sample=base64.b64encode(stored.tobytes()).decode("ascii"),
        bandwidth=median_bandwidth(kept),
        axis_variance=_axis_variance(kept),
    )
    if count <= kept.shape[0]:
        return sketch  # every vector is in the sample: none left to project out of it
    axes, shares = principal_axes(kept, AXES)
    stored_axes = axes.astype("<f4")
    in_sample = places.vectors.astype(np.int64) @ np.array([_HIGH, 1])
    projected = _project_outside(column, sketch, stored_axes.astype(np.float64), in_sample)
    return replace(
        sketch,
        axes=base64.b64encode(stored_axes.tobytes()).decode("ascii"),
        axis_shares=shares.tolist(),
        projections=[sketch_numeric(projected[:, j]) for j in range(axes.shape[0])],
    )


_HIGH = 1 << 16  # a vector's place, as two float32s that hold it exactly: place // _HIGH, rest


def _places(start: int, k: int) -> np.ndarray:
    """Places start..start + k - 1 as rows of two exact float32s (high, low)."""
    t = np.arange(start, start + k, dtype=np.int64)
    return np.stack([t // _HIGH, t % _HIGH], axis=1).astype(np.float32)


def _project_outside(
    column: pa.ChunkedArray | pa.Array,
    sketch: EmbeddingSketch,
    axes: np.ndarray,
    in_sample: np.ndarray,
) -> np.ndarray:
    """Every present vector not in the sample, scaled, on the axes (a second read)."""
    parts, seen = [], 0
    for start in range(0, len(column), _SLICE):
        vectors, _ = embedding_vectors(column.slice(start, _SLICE))
        place = np.arange(seen, seen + vectors.shape[0])
        seen += vectors.shape[0]
        outside = ~np.isin(place, in_sample)
        parts.append(sketch.scaled(vectors[outside]).astype(np.float64) @ axes.T)
    return np.concatenate(parts)


def principal_axes(vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top k principal axes of a sample (unit rows, sign fixed so that each one's
    largest coordinate is positive) and their shares of its total variance."""
    centred = (vectors - vectors.mean(axis=0)).astype(np.float64)
    n, dims = centred.shape
    small = dims <= n  # the eigenvectors of the smaller Gram matrix
    variance, vectors_ = np.linalg.eigh(centred.T @ centred if small else centred @ centred.T)
    variance, vectors_ = np.clip(variance[::-1], 0, None), vectors_[:, ::-1]
    k = min(k, int(np.sum(variance > 1e-12 * max(float(variance[0]), 1e-300))))
    if small:
        axes = vectors_[:, :k].T
    else:  # u_i = X v_i / s_i, so v_i = X' u_i / s_i
        axes = (centred.T @ vectors_[:, :k] / np.sqrt(variance[:k])).T
        axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    signs = np.sign(axes[np.arange(k), np.argmax(np.abs(axes), axis=1)])
    return axes * signs[:, None], variance[:k] / max(float(variance.sum()), 1e-300)


_SLICE = 16_384  # reference rows converted at once when sketching an embedding column


def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """||a_i - b_j||^2 for every pair (float32, >= 0)."""
    sq_a = np.einsum("ij,ij->i", a, a)
    sq_b = np.einsum("ij,ij->i", b, b)
    out = sq_a[:, None] + sq_b[None, :] - 2 * (a @ b.T)
    return np.maximum(out, 0, out=out)  # type: ignore[no-any-return]


def median_bandwidth(vectors: np.ndarray) -> float:
    """The Gaussian kernel's sigma by the median heuristic: sigma^2 = half the median
    squared distance between two different vectors of the sample (alibi-detect's rule),
    so that the kernel is exp(-1) at the median distance."""
    if vectors.shape[0] < 2:
        return 1.0
    d2 = squared_distances(vectors, vectors)[np.triu_indices(vectors.shape[0], 1)]
    median = float(np.median(d2))
    return float(np.sqrt(median / 2)) if median > 0 else 1.0


def _axis_variance(vectors: np.ndarray) -> float:
    """The variance along the sample's first principal axis (the largest eigenvalue of its
    covariance, from the smaller of the two Gram matrices)."""
    centred = (vectors - vectors.mean(axis=0)).astype(np.float64)
    n, dims = centred.shape
    gram = centred.T @ centred if dims <= n else centred @ centred.T
    top = float(np.linalg.eigvalsh(gram)[-1]) / max(n - 1, 1)
    return top if top > 0 else 1.0


def _scale(std: np.ndarray) -> float:
    """One scale for every dimension: the root mean square of their sds (1 when all 0)."""
    rms = float(np.sqrt(np.mean(np.square(std)))) if std.size else 0.0
    return rms if rms > 0 else 1.0


def sketch_column(column: pa.ChunkedArray | pa.Array) -> Sketch | None:
    """None for a column of a kind not checked; Unsketchable for one whose values are not."""
    kind = kind_of(column.type)
    if kind == "numeric":
        return sketch_numeric(numeric_values(column))
    if kind == "categorical":
        return CategoricalSketch(rows=len(column), counts=category_counts(column))
    if kind == "embedding":
        return sketch_embedding(column)
    return None


def sketch_from_dict(data: dict[str, Any]) -> Sketch:
    fields = {k: v for k, v in data.items() if k != "kind"}
    if data["kind"] == "numeric":
        return NumericSketch(**fields)
    if data["kind"] == "embedding":
        projections = [NumericSketch(**_without_kind(p)) for p in fields.pop("projections", [])]
        return EmbeddingSketch(**fields, projections=projections)
    return CategoricalSketch(**fields)


def _without_kind(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != "kind"}
