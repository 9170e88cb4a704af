"""Row content keys and exact duplicates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from conveyor.core.errors import ConveyorError
from conveyor.data.transforms.inputs import Keys, Mask

_KEY_SEEDS = (0x636F6E7665796F72, 0x6B65797332303234)


def row_keys(table: pa.Table) -> Keys:
    """A 128-bit content key per row: shape `(rows, 2)`, dtype uint64 (two 64-bit halves).

    Identical rows get identical keys whatever shard or position they are in, so keys from
    all shards can be compared to find duplicates and to place rows in splits. The key is
    two polars `hash_rows` passes with different fixed seeds; it covers every column and
    type polars reads, binary and string included. Dictionary-encoded columns are decoded
    first so they key like their plain values.

    Polars only promises the same hashes within one polars version, so compare keys
    computed by the same installation (worker processes of one run are fine); never store
    keys to compare with keys from another version of polars. Collision odds are no worse
    than one 64-bit hash (about 1 in 3,000 for a collision among 100 million rows), and
    128-bit odds if the two seeded hashes are independent.
    """
    rows = table.num_rows
    if table.num_columns == 0:  # nothing tells rows apart: they are all the same content
        return np.zeros((rows, 2), dtype=np.uint64)
    decoded = [
        pc.cast(column, column.type.value_type) if pa.types.is_dictionary(column.type) else column
        for column in table.columns
    ]
    plain = pa.table(decoded, names=table.column_names)
    try:
        frame = pl.from_arrow(plain, rechunk=False)
        assert isinstance(frame, pl.DataFrame)
        keys = np.empty((rows, 2), dtype=np.uint64)
        for half, seed in enumerate(_KEY_SEEDS):
            keys[:, half] = frame.hash_rows(seed=seed).to_numpy()
    except (pl.exceptions.PolarsError, pa.ArrowException, TypeError) as e:
        types = ", ".join(f"{f.name}: {f.type}" for f in table.schema)
        raise ConveyorError(
            f"cannot compute content keys of columns ({types}): {e}",
            "leave columns of this type out of the identity columns",
        ) from e
    return keys


def _check_keys(keys: npt.NDArray[Any], what: str) -> Keys:
    array = np.asarray(keys)
    if array.ndim != 2 or array.shape[1] != 2:
        raise ConveyorError(
            f"{what}: keys must have shape (rows, 2), not {array.shape}",
            "compute them with conveyor.data.transforms.row_keys",
        )
    return array.astype(np.uint64, copy=False)


def _split_by_sizes(flat: Mask, sizes: Sequence[int]) -> list[Mask]:
    if not sizes:
        return []
    return [part.copy() for part in np.split(flat, np.cumsum(sizes)[:-1])]


def first_occurrence_mask(keys_per_shard: Sequence[npt.NDArray[Any]]) -> list[Mask]:
    """Keep-masks per shard that keep the first occurrence of every key, in version order.

    Exact dedupe needs all keys at once (the first copy may be in another shard); the result
    is one boolean mask per shard, True for rows to keep.
    """
    shards = [_check_keys(k, "exact duplicates") for k in keys_per_shard]
    sizes = [len(k) for k in shards]
    if sum(sizes) == 0:
        return [np.ones(0, dtype=np.bool_) for _ in shards]
    keys = np.concatenate(shards)
    frame = pl.DataFrame({"a": keys[:, 0], "b": keys[:, 1]})
    first = frame.select(pl.struct("a", "b").is_first_distinct()).to_series().to_numpy()
    return _split_by_sizes(np.asarray(first, dtype=np.bool_), sizes)


def match_rows(
    parent_keys: Sequence[npt.NDArray[Any]], source_keys: npt.NDArray[Any]
) -> tuple[np.ndarray, Sequence[npt.NDArray[Any]]]:
    """Pair source rows with parent rows of the same content (the n-th copy with the n-th).

    Returns which source rows are new, and per parent shard which rows are still present.
    """
    sizes = [len(k) for k in parent_keys]
    pk = np.concatenate(parent_keys) if parent_keys else np.zeros((0, 2), dtype=np.uint64)
    rank = pl.int_range(pl.len()).over("a", "b").alias("rank")
    parent = pl.DataFrame({"a": pk[:, 0], "b": pk[:, 1], "p": np.arange(len(pk))}).with_columns(
        rank
    )
    source = pl.DataFrame(
        {"a": source_keys[:, 0], "b": source_keys[:, 1], "s": np.arange(len(source_keys))}
    ).with_columns(rank)
    matched = source.join(parent, on=["a", "b", "rank"], how="inner")
    is_new = np.ones(len(source_keys), dtype=bool)
    is_new[matched["s"].to_numpy()] = False
    kept = np.zeros(len(pk), dtype=bool)
    kept[matched["p"].to_numpy()] = True
    return is_new, np.split(kept, np.cumsum(sizes)[:-1]) if sizes else []
