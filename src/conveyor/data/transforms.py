"""Pure table transforms behind the prepare operations (no storage, no processes).

Each works on one shard's Arrow table, or on small per-row arrays gathered from every
shard; data/prepare.py runs them shard-parallel and does the global steps between.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any, Literal

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from conveyor.core.errors import ConveyorError

_SEEDS = (0x5EEDC0FFEE, 0xD00DF00DCAFE)
Strategy = Literal["mean", "median", "mode", "constant"]


def row_keys(table: pa.Table) -> np.ndarray:
    """A 128-bit content key per row, as an (n, 2) uint64 array.

    Identical rows get identical keys wherever they are. Built from two polars row hashes
    with fixed seeds; polars does not promise the same hashes across its versions, so keys
    are compared within one run only, never stored.
    """
    if table.num_columns == 0 or table.num_rows == 0:
        return np.zeros((table.num_rows, 2), dtype=np.uint64)
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    halves = [frame.hash_rows(seed).to_numpy() for seed in _SEEDS]
    return np.stack(halves, axis=1).astype(np.uint64)


def first_occurrence_mask(keys_per_shard: list[np.ndarray]) -> list[np.ndarray]:
    """Keep the first row of each key, in version order; one boolean mask per shard."""
    sizes = [len(k) for k in keys_per_shard]
    if not sum(sizes):
        return [np.zeros(0, dtype=bool) for _ in sizes]
    keys = np.concatenate(keys_per_shard)
    frame = pl.DataFrame({"a": keys[:, 0], "b": keys[:, 1]})
    keep = frame.select(pl.struct("a", "b").is_first_distinct()).to_series().to_numpy()
    return np.split(keep, np.cumsum(sizes)[:-1])


def perceptual_hashes(images: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A 64-bit perceptual hash (pHash) per encoded image.

    An image that cannot be decoded gets a hash derived from its bytes with the top bit
    pattern of a random value, so it never lands near a real image by accident.
    """
    import hashlib

    import imagehash
    from PIL import Image

    out = np.zeros(len(images), dtype=np.uint64)
    for i, data in enumerate(images.to_pylist()):
        try:
            with Image.open(io.BytesIO(data)) as img:
                bits = imagehash.phash(img).hash.flatten()
            out[i] = np.uint64(int("".join("1" if b else "0" for b in bits), 2))
        except (OSError, ValueError, TypeError):
            out[i] = np.uint64(int.from_bytes(hashlib.sha256(data or b"").digest()[:8], "big"))
    return out


def near_duplicate_mask(
    hashes_per_shard: list[np.ndarray], max_distance: int = 4
) -> list[np.ndarray]:
    """Keep the first image of each group within `max_distance` bits, in version order.

    Pigeonhole: two hashes within d bits agree exactly on at least one of d+1 bands, so
    only pairs sharing a band are compared (no all-pairs scan).
    """
    if not 0 <= max_distance < 32:
        raise ConveyorError(f"max distance {max_distance} is out of range", "use 0 to 31")
    sizes = [len(h) for h in hashes_per_shard]
    hashes = np.concatenate(hashes_per_shard) if sizes else np.zeros(0, dtype=np.uint64)
    n = len(hashes)
    keep = np.ones(n, dtype=bool)
    bands = max_distance + 1
    width = 64 // bands
    buckets: list[dict[int, list[int]]] = [{} for _ in range(bands)]
    values = [int(h) for h in hashes]
    for i, h in enumerate(values):
        candidates: set[int] = set()
        band_values = []
        for b in range(bands):
            shift = b * width
            span = width if b < bands - 1 else 64 - shift
            v = (h >> shift) & ((1 << span) - 1)
            band_values.append(v)
            candidates.update(buckets[b].get(v, ()))
        if any((values[j] ^ h).bit_count() <= max_distance for j in candidates):
            keep[i] = False
            continue
        for b, v in enumerate(band_values):  # only kept images represent their group
            buckets[b].setdefault(v, []).append(i)
    return np.split(keep, np.cumsum(sizes)[:-1]) if sizes else []


def fill_values(
    table: pa.Table, columns: list[str], strategy: Strategy, value: Any = None
) -> dict[str, Any]:
    """The value to fill each column's gaps with, computed over all rows given."""
    if strategy not in ("mean", "median", "mode", "constant"):
        raise ConveyorError(
            f"unknown fill strategy '{strategy}'", "use mean, median, mode or constant"
        )
    out: dict[str, Any] = {}
    for name in columns:
        column = table.column(name)
        numeric = pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
        if strategy == "constant":
            if value is None:
                raise ConveyorError("fill with a constant needs a value", "pass --value")
            out[name] = _cast_scalar(value, column.type, name)
        elif strategy in ("mean", "median"):
            if not numeric:
                raise ConveyorError(
                    f"cannot take the {strategy} of column '{name}' ({column.type})",
                    "use mode or constant for non-numeric columns",
                )
            if strategy == "mean" and pa.types.is_integer(column.type):
                raise ConveyorError(
                    f"the mean of integer column '{name}' is not an integer",
                    "use median, mode or constant",
                )
            result = (
                pc.mean(column) if strategy == "mean" else pc.approximate_median(column)
            ).as_py()
            if result is None:
                raise ConveyorError(
                    f"column '{name}' has no values to compute a {strategy} from", "use a constant"
                )
            if pa.types.is_integer(column.type):
                result = round(result)
            out[name] = result
        else:
            counts = pc.value_counts(column.drop_null())
            if len(counts) == 0:
                raise ConveyorError(f"column '{name}' has no values", "use a constant")
            best = int(np.argmax(counts.field("counts").to_numpy()))
            out[name] = counts.field("values")[best].as_py()
    return out


def _cast_scalar(value: Any, type_: pa.DataType, name: str) -> Any:
    try:
        return (
            pa.scalar(value).cast(type_).as_py()
            if not isinstance(value, str)
            else (pc.cast(pa.array([value]), type_)[0].as_py())
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as e:
        raise ConveyorError(
            f"cannot fill column '{name}' ({type_}) with {value!r}",
            "give a value of the column's type",
        ) from e


def apply_fill(table: pa.Table, values: dict[str, Any]) -> pa.Table:
    """Replace nulls in each named column by its fill value, keeping the column type."""
    for name, value in values.items():
        i = table.schema.get_field_index(name)
        column = table.column(i)
        table = table.set_column(
            i, table.field(i), pc.fill_null(column, pa.scalar(value, column.type))
        )
    return table


def drop_missing(table: pa.Table, columns: list[str] | None = None) -> pa.Table:
    """Drop rows with a null in any of `columns` (None: any column)."""
    mask = None
    for name in columns or table.column_names:
        valid = pc.is_valid(table.column(name))
        mask = valid if mask is None else pc.and_(mask, valid)
    return table if mask is None else table.filter(mask)


def filter_table(table: pa.Table, expression: str) -> pa.Table:
    """Keep rows where a SQL boolean expression holds, e.g. `label != '3' AND width >= 8`."""
    try:
        condition = pl.sql_expr(expression)
        frame = pl.from_arrow(table)
        assert isinstance(frame, pl.DataFrame)
        mask = frame.select(condition.fill_null(False)).to_series()
    except (pl.exceptions.PolarsError, ValueError) as e:
        raise ConveyorError(
            f"cannot filter with '{expression}': {str(e).splitlines()[0]}",
            f"write a SQL condition over the columns: {', '.join(table.column_names)}",
        ) from e
    if mask.dtype != pl.Boolean:
        raise ConveyorError(
            f"'{expression}' is not a true/false condition",
            "compare columns, e.g. \"label != '3'\"",
        )
    return table.filter(mask.to_arrow())


def assign_splits(
    keys: np.ndarray, fractions: dict[str, float], seed: int, strata: np.ndarray | None = None
) -> np.ndarray:
    """The split of every row: deterministic from (seed, row content), whatever the order.

    Within each stratum (or over all rows) rows are ordered by a seeded hash of their key
    and cut at the cumulative fractions, so each split gets each class's exact share.
    """
    if not fractions or any(f < 0 for f in fractions.values()):
        raise ConveyorError("split fractions must be positive", "e.g. train 0.8, val 0.1, test 0.1")
    if abs(sum(fractions.values()) - 1.0) > 1e-6:
        raise ConveyorError(
            f"split fractions add up to {sum(fractions.values()):g}, not 1",
            "adjust them so they sum to 1",
        )
    n = len(keys)
    frame = pl.DataFrame({"a": keys[:, 0], "b": keys[:, 1], "i": np.arange(n)})
    order = frame.select(pl.struct("a", "b").hash(seed).alias("h"), "i")
    order = order.with_columns(
        stratum=pl.Series(strata.astype(str)) if strata is not None else pl.lit("")
    )
    ranked = order.sort(["stratum", "h", "i"]).with_columns(
        rank=pl.int_range(pl.len()).over("stratum"), size=pl.len().over("stratum")
    )
    names = list(fractions)
    bounds = np.cumsum([fractions[k] for k in names])
    position = (ranked["rank"].to_numpy() + 0.5) / ranked["size"].to_numpy()
    codes = np.minimum(np.searchsorted(bounds, position, side="right"), len(names) - 1)
    out = np.empty(n, dtype=object)
    out[ranked["i"].to_numpy()] = np.array(names, dtype=object)[codes]
    return out


def apply_map(
    table: pa.Table,
    fn: Callable[[pa.RecordBatch], pa.Table | pa.RecordBatch | dict[str, Any]],
    batch_size: int = 1024,
) -> pa.Table:
    """Run a user function over batches of rows and stitch the results together."""
    name = getattr(fn, "__qualname__", repr(fn))
    results: list[pa.Table] = []
    for index, batch in enumerate(table.to_batches(max_chunksize=batch_size)):
        try:
            result = fn(batch)
        except Exception as e:
            raise ConveyorError(
                f"map function {name} failed on batch {index}: {e!r}",
                "fix the function; the dataset was not changed",
            ) from e
        if isinstance(result, pa.RecordBatch):
            result = pa.Table.from_batches([result])
        elif isinstance(result, dict):
            result = pa.table(result)
        if not isinstance(result, pa.Table):
            raise ConveyorError(
                f"map function {name} returned {type(result).__name__}",
                "return a pyarrow Table, RecordBatch or dict of columns",
            )
        if results and not result.schema.equals(results[0].schema):
            raise ConveyorError(
                f"map function {name} changed its output columns at batch {index}",
                "return the same columns and types for every batch",
            )
        results.append(result)
    if not results:
        return table.slice(0, 0)
    return pa.concat_tables(results)
