"""Pure transforms behind the prepare operations: one shard, or small arrays from all shards.

Nothing here reads or writes storage. `prepare.py` runs the per-shard functions in worker
processes and the global ones (which duplicate comes first, fill values, splits) in between,
on small per-row arrays gathered from every shard in version order. Every mistake a user can
make (unknown column, bad fraction, bad expression, failing map function) raises a
`ConveyorError` that says what is wrong and what to do.
"""

from __future__ import annotations

import difflib
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeAlias, cast

import imagehash
import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image

from conveyor.core.errors import ConveyorError

__all__ = [
    "INVALID_HASH",
    "apply_fill",
    "apply_map",
    "assign_splits",
    "drop_missing",
    "fill_values",
    "filter_table",
    "first_occurrence_mask",
    "near_duplicate_mask",
    "perceptual_hashes",
    "row_keys",
]

FillStrategy = Literal["mean", "median", "mode", "constant"]
FILL_STRATEGIES: tuple[str, ...] = ("mean", "median", "mode", "constant")

Keys = npt.NDArray[np.uint64]
Mask = npt.NDArray[np.bool_]

_U64 = (1 << 64) - 1


# -- helpers ---------------------------------------------------------------------------------


def _columns_exist(table: pa.Table, columns: Sequence[str], what: str) -> None:
    """Name the first unknown column and the closest known one, like the rules file does."""
    names = table.column_names
    for column in columns:
        if column not in names:
            close = difflib.get_close_matches(column, names, n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"columns: {', '.join(names)}"
            raise ConveyorError(f"{what}: no column '{column}'", hint)


def _first_line(error: BaseException) -> str:
    """Polars errors span lines (the expression tree); a CLI error is one line."""
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _function_name(fn: object) -> str:
    module = getattr(fn, "__module__", None)
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    return f"{module}:{name}" if module else str(name)


# -- content keys and exact duplicates ---------------------------------------------------------

# Two fixed seeds: one 64-bit polars row hash each, together a 128-bit key.
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
    keys to compare with keys from another version of polars. Collisions are possible in
    principle (two different rows, same 128 bits) but negligible at any dataset size.
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


# -- near-duplicate images --------------------------------------------------------------------

INVALID_HASH = np.uint64(_U64)
"""The hash of an image that cannot be decoded (or a null): all 64 bits set.

A pHash has at most 32 bits set (bits are "above the median" of 64 coefficients), so this
value is at least 32 bits away from every real hash, and `near_duplicate_mask` keeps every
image carrying it rather than grouping them: an unreadable image is never a duplicate.
"""

# What decoding a bad image raises in Pillow (truncated, unknown format, bomb, bad header).
_IMAGE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def _phash(data: bytes) -> int:
    with Image.open(io.BytesIO(data)) as image:
        bits = imagehash.phash(image).hash.reshape(-1)  # 8 x 8 booleans
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def perceptual_hashes(images: pa.Array | pa.ChunkedArray) -> Keys:
    """A 64-bit perceptual hash (imagehash pHash) per encoded image, as uint64.

    pHash survives re-encoding (PNG to JPEG), resizing and small brightness changes, so a
    copy of an image lands within a few bits of the original while unrelated images differ
    in about half of the bits. An image that is null or cannot be decoded gets
    `INVALID_HASH`, which never matches anything.
    """
    out = np.empty(len(images), dtype=np.uint64)
    for i, data in enumerate(images.to_pylist()):
        if data is None:
            out[i] = INVALID_HASH
            continue
        try:
            out[i] = _phash(bytes(data))
        except _IMAGE_ERRORS:
            out[i] = INVALID_HASH
    return out


_BYTE_BITS = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _popcount(values: Keys) -> npt.NDArray[np.uint8]:
    """Set bits per uint64 (numpy >= 2 has it built in; a byte table for numpy 1.26)."""
    if hasattr(np, "bitwise_count"):
        return cast(npt.NDArray[np.uint8], np.bitwise_count(values))
    return _popcount_table(values)


def _popcount_table(values: Keys) -> npt.NDArray[np.uint8]:
    as_bytes = np.ascontiguousarray(values, dtype=np.uint64).view(np.uint8).reshape(-1, 8)
    counts: npt.NDArray[np.uint8] = _BYTE_BITS[as_bytes].sum(axis=1, dtype=np.uint8)
    return counts


def _bands(max_distance: int) -> list[tuple[int, int]]:
    """(shift, width) of max_distance + 1 bands covering the 64 bits, as even as possible."""
    count = max_distance + 1
    widths = [64 // count + (1 if i < 64 % count else 0) for i in range(count)]
    shifts = np.cumsum([0, *widths[:-1]]).tolist()
    return list(zip(shifts, widths, strict=True))


def _near_pairs(hashes: Keys, max_distance: int) -> tuple[npt.NDArray[np.intp], ...]:
    """All pairs (i < j) of distinct hashes within max_distance bits.

    Pigeonhole: when max_distance + 1 bands cover the bits, two hashes at most max_distance
    apart agree exactly on at least one band. So only hashes sharing a band value are
    compared (then verified by popcount), never all pairs. Within a band, hashes are sorted
    by band value then index; the k-th pass compares every hash with the one k places later
    in its group, so the work is the number of candidate pairs, not n².
    """
    count = len(hashes)
    firsts: list[npt.NDArray[np.intp]] = []
    seconds: list[npt.NDArray[np.intp]] = []
    position = np.arange(count)
    for shift, width in _bands(max_distance):
        band = (hashes >> np.uint64(shift)) & np.uint64((1 << width) - 1)
        order = np.argsort(band, kind="stable")  # stable: index order within a group
        ordered = band[order]
        starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
        sizes = np.diff(np.r_[starts, count])
        group_end = np.repeat(starts + sizes, sizes)
        step = 1
        active = position[group_end - position > step]
        while active.size:
            a, b = order[active], order[active + step]
            close = _popcount(hashes[a] ^ hashes[b]) <= max_distance
            firsts.append(a[close])
            seconds.append(b[close])
            step += 1
            active = active[group_end[active] - active > step]
    if not firsts:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty
    return np.concatenate(firsts), np.concatenate(seconds)


def near_duplicate_mask(
    hashes_per_shard: Sequence[npt.NDArray[Any]], max_distance: int = 4
) -> list[Mask]:
    """Keep-masks per shard dropping images within `max_distance` bits of an earlier kept one.

    Images are visited in version order; an image is dropped when an image kept before it
    is within `max_distance` bits (Hamming distance). So the kept images are pairwise more
    than `max_distance` apart, and every dropped image has a kept one that close. (Chains
    do not propagate: A~B, B~C with A far from C keeps A and C.) Identical hashes are
    collapsed first, candidate pairs come from band bucketing, so 50,000+ images take well
    under a second unless huge clusters of near-identical images make many true pairs.
    Images hashed as `INVALID_HASH` are always kept.
    """
    if isinstance(max_distance, bool) or not isinstance(max_distance, int):
        raise ConveyorError(
            f"max distance must be a whole number of bits, not {max_distance!r}", "use 0 to 31"
        )
    if not 0 <= max_distance <= 31:
        raise ConveyorError(
            f"max distance {max_distance} is outside 0..31 bits",
            "use a small distance such as 4 to 10: at 32 bits apart images are unrelated",
        )
    shards = [np.asarray(h, dtype=np.uint64).reshape(-1) for h in hashes_per_shard]
    sizes = [len(h) for h in shards]
    if sum(sizes) == 0:
        return [np.ones(0, dtype=np.bool_) for _ in shards]
    flat = np.concatenate(shards)
    keep = np.ones(len(flat), dtype=np.bool_)
    valid = np.flatnonzero(flat != INVALID_HASH)
    if valid.size:
        hashes = flat[valid]
        distinct, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
        by_first = np.argsort(first, kind="stable")  # distinct hashes in version order
        rank = np.empty_like(by_first)
        rank[by_first] = np.arange(len(by_first))
        kept_rank = _greedy_keep(distinct[by_first], max_distance)
        is_first = np.zeros(len(hashes), dtype=np.bool_)
        is_first[first] = True  # a later copy of an identical hash is always dropped
        keep[valid] = is_first & kept_rank[rank[inverse.reshape(-1)]]
    return _split_by_sizes(keep, sizes)


def _greedy_keep(hashes: Keys, max_distance: int) -> Mask:
    """For distinct hashes in version order: keep one unless an earlier kept one is close."""
    first, second = _near_pairs(hashes, max_distance)
    keep = bytearray(b"\x01") * len(hashes)
    order = np.lexsort((first, second))  # by later image, then earlier
    # When pair (i, j) is seen, every pair ending at i < j was seen, so keep[i] is final.
    for i, j in zip(first[order].tolist(), second[order].tolist(), strict=True):
        if keep[i] and keep[j]:
            keep[j] = 0
    return np.frombuffer(bytes(keep), dtype=np.uint8).astype(np.bool_)


# -- missing values ---------------------------------------------------------------------------


def _present(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Non-null values; NaN also left out of floats (a value, but not one to average).

    Kept chunked: a string column gathered from every shard may pass 2 GB, the limit of
    one Arrow string array.
    """
    values = pc.drop_null(column)
    if pa.types.is_floating(values.type):
        values = pc.filter(values, pc.invert(pc.is_nan(values)))
    return values


def _mode(name: str, values: pa.ChunkedArray) -> Any:
    try:
        counts = pc.value_counts(values)
    except pa.ArrowNotImplementedError as e:
        raise ConveyorError(
            f"cannot take the mode of column '{name}' of type {values.type}",
            "use strategy 'constant'",
        ) from e
    top = pc.max(counts.field("counts"))
    tied = pc.filter(counts.field("values"), pc.equal(counts.field("counts"), top))
    try:  # the smallest of the most frequent values: the same answer whatever the row order
        return pc.min(tied).as_py() if len(tied) > 1 else tied[0].as_py()
    except pa.ArrowNotImplementedError:
        return tied[0].as_py()  # values with no order: the first in version order


def _median(name: str, values: pa.ChunkedArray) -> Any:
    ordered = pc.take(values, pc.sort_indices(values))
    low, high = ordered[(len(ordered) - 1) // 2].as_py(), ordered[len(ordered) // 2].as_py()
    if pa.types.is_floating(values.type):
        return (low + high) / 2
    return low  # integers and decimals: the lower median, a value of the column, never rounded


def fill_values(
    table: pa.Table, columns: Sequence[str], strategy: FillStrategy, value: Any = None
) -> dict[str, Any]:
    """The value to fill each column's nulls with, from that column in every shard.

    The statistic needs all rows, so prepare gathers the named columns once, calls this,
    and hands the result (plain Python values) to `apply_fill` on every shard.

    - `mean`: floating-point columns only. An integer or decimal mean is rarely a value the
      column can hold and rounding it would invent data: use `median`, `mode` or `constant`.
    - `median`: numeric columns; for floats the usual median, for integers and decimals the
      lower median (the middle value of the column, so never rounded).
    - `mode`: any type; the most frequent value, ties going to the smallest.
    - `constant`: `value`, converted to each column's type.

    Missing means null. NaN is a value: it is not filled, and mean, median and mode leave it
    out. A column with no value to compute from is an error (use `constant`).
    """
    if strategy not in FILL_STRATEGIES:
        raise ConveyorError(
            f"unknown fill strategy '{strategy}'", f"use one of: {', '.join(FILL_STRATEGIES)}"
        )
    if not columns:
        raise ConveyorError("no column to fill", "name the columns whose missing values to fill")
    _columns_exist(table, columns, "fill")
    if strategy == "constant" and value is None:
        raise ConveyorError("strategy 'constant' needs a value", "give the value to fill with")
    if strategy != "constant" and value is not None:
        raise ConveyorError(
            f"a value is only used with strategy 'constant', not '{strategy}'",
            "leave the value out, or use strategy 'constant'",
        )
    out: dict[str, Any] = {}
    for name in dict.fromkeys(columns):
        column = table.column(name)
        kind = column.type
        if strategy == "constant":
            out[name] = _fill_scalar(name, kind, value).as_py()
            continue
        numeric = (
            pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
        )
        if strategy == "mean" and not pa.types.is_floating(kind):
            hint = (
                "the mean of an integer column is rarely a whole number: use median, mode "
                "or constant"
                if numeric
                else "mean is for floating-point columns: use mode or constant"
            )
            raise ConveyorError(f"cannot fill column '{name}' of type {kind} with the mean", hint)
        if strategy == "median" and not numeric:
            raise ConveyorError(
                f"cannot fill column '{name}' of type {kind} with the median",
                "median is for numeric columns: use mode or constant",
            )
        values = _present(column)
        if len(values) == 0:
            raise ConveyorError(
                f"column '{name}' has no values to take the {strategy} of",
                "use strategy 'constant' with a value",
            )
        if strategy == "mean":
            out[name] = pc.mean(pc.cast(values, pa.float64())).as_py()
        elif strategy == "median":
            out[name] = _median(name, values)
        else:
            out[name] = _mode(name, values)
    return out


def _fill_scalar(name: str, kind: pa.DataType, value: Any) -> pa.Scalar:
    """`value` as a scalar of the column's type, by a safe cast: never a lossy conversion.

    "3" fills an integer column with 3 (a CLI gives strings) and 2.0 with 2, but 2.5 or a
    number out of the type's range is an error, never truncated.
    """
    try:
        return pa.scalar(value).cast(kind)
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as e:
        hint = (
            f"an {kind} column takes whole numbers in its range: use median, mode or such a "
            "constant"
            if pa.types.is_integer(kind)
            else f"give a value that converts to {kind}"
        )
        raise ConveyorError(
            f"cannot fill column '{name}' of type {kind} with {value!r}", hint
        ) from e


def apply_fill(table: pa.Table, values: Mapping[str, Any]) -> pa.Table:
    """Replace the nulls of each named column with its value; column types are unchanged."""
    _columns_exist(table, list(values), "fill")
    for name, value in values.items():
        index = table.column_names.index(name)
        column = table.column(name)
        if value is None:
            raise ConveyorError(f"no fill value for column '{name}'", "give a value to fill with")
        filled = pc.fill_null(column, _fill_scalar(name, column.type, value))
        table = table.set_column(index, table.field(index), filled)
    return table


def drop_missing(table: pa.Table, columns: Sequence[str] | None = None) -> pa.Table:
    """Drop rows with a null in any of `columns` (None: in any column). NaN is not missing."""
    if columns is None:
        return table.drop_null()
    if not columns:
        raise ConveyorError(
            "no column to look for missing values in",
            "name the columns, or leave them out to drop rows missing any value",
        )
    _columns_exist(table, columns, "drop missing")
    keep = None
    for name in dict.fromkeys(columns):
        valid = pc.is_valid(table.column(name))
        keep = valid if keep is None else pc.and_(keep, valid)
    return table.filter(keep)


# -- filter -----------------------------------------------------------------------------------

# Expression nodes whose value depends on other rows: per shard they would give a different
# answer than over the whole version (aggregates, windows, row numbers, sub-queries...).
_ACROSS_ROWS = frozenset(
    {
        "Agg", "Over", "Window", "Rolling", "SubPlan", "Len", "Range", "Rank", "Shift",
        "Diff", "CumSum", "CumCount", "CumProd", "CumMin", "CumMax", "CumReduce",
        "CumFold", "Sort", "SortBy", "Gather", "Slice", "Filter", "Explode", "Implode",
        "Unique", "Reverse", "Random", "Sample", "Shuffle",
    }
)  # fmt: skip


def _across_rows(node: Any) -> str | None:
    """The first node of a serialized polars expression that looks at other rows."""
    if isinstance(node, dict):
        for key, child in node.items():
            if key in _ACROSS_ROWS:
                return str(key)
            found = _across_rows(child)
            if found:
                return found
    elif isinstance(node, list):
        for child in node:
            found = _across_rows(child)
            if found:
                return found
    elif isinstance(node, str) and node in _ACROSS_ROWS:
        return node
    return None


def _check_row_local(expr: pl.Expr, expression: str) -> None:
    try:
        tree = json.loads(expr.meta.serialize(format="json"))
    except (pl.exceptions.PolarsError, ValueError, TypeError):
        return  # cannot inspect it: the length check after evaluation still applies
    found = _across_rows(tree)
    if found:
        raise ConveyorError(
            f"filter expression '{expression}' looks at other rows "
            "(an aggregate, window function, row number or sub-query)",
            "filters run shard by shard: compare each row's values with constants",
        )


_KEEP = "__conveyor_keep__"


def filter_table(table: pa.Table, expression: str) -> pa.Table:
    """Keep the rows where a SQL boolean expression is true, e.g. `label != '3' AND width >= 8`.

    The expression is parsed by polars SQL (`pl.sql_expr`): comparisons, AND/OR/NOT, IN,
    BETWEEN, LIKE, IS NULL, CASE, casts and row-wise functions. Quote column names with
    capitals or spaces in double quotes and strings in single quotes. A row where the
    expression is null (e.g. a comparison with a missing value) is dropped, as in SQL WHERE.
    Only the referenced columns go through polars; the rows are then taken from the
    original table, so every column (binary images included) keeps its exact type.
    """
    if not isinstance(expression, str) or not expression.strip():
        raise ConveyorError("empty filter expression", "write a condition such as width >= 8")
    try:
        parsed = pl.sql_expr(expression)
        assert isinstance(parsed, pl.Expr)
        roots = list(dict.fromkeys(parsed.meta.root_names()))
    except pl.exceptions.PolarsError as e:
        raise ConveyorError(
            f"cannot read filter expression '{expression}': {_first_line(e)}",
            "write a SQL condition such as label != '3' AND width >= 8",
        ) from e
    _columns_exist(table, roots, f"filter expression '{expression}'")
    _check_row_local(parsed, expression)
    rows = table.num_rows
    if roots:
        frame = pl.from_arrow(table.select(roots), rechunk=False)
        assert isinstance(frame, pl.DataFrame)
    else:  # only constants: evaluate on a frame of the right height
        frame = pl.DataFrame({_KEEP: np.zeros(rows, dtype=np.bool_)})
    try:
        result = frame.with_columns(parsed.alias(_KEEP)).get_column(_KEEP)
    except pl.exceptions.PolarsError as e:
        raise ConveyorError(
            f"cannot evaluate filter expression '{expression}': {_first_line(e)}",
            "check the column types: compare strings with 'quoted' values, numbers with numbers",
        ) from e
    if result.dtype not in (pl.Boolean, pl.Null):
        raise ConveyorError(
            f"filter expression '{expression}' gives {result.dtype} values, not true/false",
            "make it a condition, e.g. width >= 8",
        )
    if len(result) != rows:  # a construct the node check did not know about
        raise ConveyorError(
            f"filter expression '{expression}' does not give one answer per row",
            "compare each row with constants; aggregates are not supported",
        )
    keep = result.cast(pl.Boolean).fill_null(False).to_numpy()
    return table.filter(pa.array(keep, type=pa.bool_()))


# -- splits -----------------------------------------------------------------------------------

_MIX1, _MIX2, _GOLDEN = 0xBF58476D1CE4E5B9, 0x94D049BB133111EB, 0x9E3779B97F4A7C15


def _mix(values: Keys) -> Keys:
    """SplitMix64's finaliser: a bijection on 64 bits that spreads every input bit."""
    values = values ^ (values >> np.uint64(30))
    values = values * np.uint64(_MIX1)  # uint64 arrays wrap around, as intended
    values = values ^ (values >> np.uint64(27))
    values = values * np.uint64(_MIX2)
    return values ^ (values >> np.uint64(31))


def _check_fractions(fractions: Mapping[str, float]) -> list[tuple[str, float]]:
    if not fractions:
        raise ConveyorError("no splits given", "give fractions such as train=0.8 test=0.2")
    for name, fraction in fractions.items():
        if not isinstance(name, str) or not name:
            raise ConveyorError(f"split name {name!r} is not a name", "use names like train, test")
        if (
            isinstance(fraction, bool)
            or not isinstance(fraction, int | float)
            or not math.isfinite(fraction)
            or not 0 < fraction <= 1
        ):
            raise ConveyorError(
                f"fraction of split '{name}' is {fraction!r}", "each fraction is a number in (0, 1]"
            )
    total = math.fsum(fractions.values())
    if abs(total - 1) > 1e-6:
        listed = ", ".join(f"{n}={f:g}" for n, f in fractions.items())
        raise ConveyorError(f"split fractions sum to {total:g}, not 1 ({listed})",
                            "make the fractions add up to 1")  # fmt: skip
    return sorted((str(n), float(f)) for n, f in fractions.items())


def _stratum_codes(strata: npt.NDArray[Any]) -> npt.NDArray[np.intp]:
    """Integer codes for stratum values; null (None or NaN) is a stratum of its own."""
    if strata.dtype != object:
        return np.unique(strata, return_inverse=True)[1].reshape(-1).astype(np.intp)
    codes: dict[Any, int] = {}
    null = object()
    out = np.empty(len(strata), dtype=np.intp)
    for i, value in enumerate(strata.tolist()):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            value = null
        out[i] = codes.setdefault(value, len(codes))
    return out


def assign_splits(
    keys: npt.NDArray[Any],
    fractions: Mapping[str, float],
    seed: int,
    strata: npt.NDArray[Any] | None = None,
) -> npt.NDArray[np.str_]:
    """The split name of every row: exact proportions, deterministic from seed and content.

    `keys` are the `row_keys` of all rows (any order, any sharding); `fractions` maps split
    names to fractions summing to 1. Within each stratum (each distinct `strata` value,
    null included; the whole dataset without strata), rows are ordered by a seeded mix of
    their key and cut at the cumulative fractions, splits taken in name order. So each
    split holds its fraction of every stratum to within one row, and the same rows with the
    same seed get the same splits whatever their order or shards. Rows with the same key
    (exact duplicates) sit next to each other and are told apart by position, so a
    duplicate may land on either side of a cut.

    A row's split also depends on the other rows of its stratum (the cut is global): adding
    rows moves a few rows across the cuts, it does not reshuffle the rest.
    """
    array = _check_keys(keys, "split")
    named = _check_fractions(fractions)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise ConveyorError(f"split seed must be a whole number, not {seed!r}", "use e.g. 0 or 42")
    rows = len(array)
    if strata is None:
        codes = np.zeros(rows, dtype=np.intp)
    else:
        strata = np.asarray(strata)
        if strata.ndim != 1 or len(strata) != rows:
            raise ConveyorError(
                f"split: {len(strata)} stratum values for {rows} rows",
                "give one stratum value (e.g. the label) per row",
            )
        codes = _stratum_codes(strata)
    state = int(seed) & _U64
    salt = int(_mix(np.array([(state + _GOLDEN) & _U64], dtype=np.uint64))[0])
    score = _mix(_mix(array[:, 0] ^ np.uint64(salt)) ^ array[:, 1])
    order = np.lexsort((np.arange(rows), array[:, 1], array[:, 0], score, codes))
    sorted_codes = codes[order]
    counts = np.bincount(codes) if rows else np.zeros(0, dtype=np.intp)
    starts = np.r_[0, np.cumsum(counts)[:-1]].astype(np.intp) if rows else counts
    position = np.arange(rows) - starts[sorted_codes]
    size = counts[sorted_codes].astype(np.float64)
    which = np.zeros(rows, dtype=np.intp)
    cumulative = 0.0
    for _, fraction in named[:-1]:
        cumulative += fraction
        cut = np.floor(cumulative * size + 0.5)  # round half up: no banker's rounding
        which += position >= cut
    assigned = np.empty(rows, dtype=np.intp)
    assigned[order] = which
    names = np.array([n for n, _ in named], dtype=np.str_)
    return names[assigned]


# -- map --------------------------------------------------------------------------------------

MapResult: TypeAlias = pa.Table | pa.RecordBatch | Mapping[str, Any]


def apply_map(
    table: pa.Table,
    fn: Callable[[pa.RecordBatch], MapResult],
    batch_size: int = 1024,
) -> pa.Table:
    """Call a user function on each batch of rows and concatenate what it returns.

    `fn` gets a `pyarrow.RecordBatch` of up to `batch_size` rows and returns a Table, a
    RecordBatch or a dict of columns; it may change the columns and the number of rows.
    Every batch must give the same schema (dict results are converted to the schema of the
    first batch). A function that raises, returns anything else, or changes schema between
    batches is an error naming the function and the batch, with the cause chained. An
    empty table is returned as is, without calling the function.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConveyorError(f"batch size must be a positive whole number, not {batch_size!r}",
                            "use e.g. 1024")  # fmt: skip
    if table.num_rows == 0:
        return table
    name = _function_name(fn)
    results: list[pa.Table] = []
    schema: pa.Schema | None = None
    for index, start in enumerate(range(0, table.num_rows, batch_size)):
        batch = table.slice(start, batch_size).combine_chunks().to_batches()[0]
        where = f"map function {name} on batch {index} (rows {start}..{start + batch.num_rows - 1})"
        try:
            result = fn(batch)
        except Exception as e:
            raise ConveyorError(
                f"map function {name} failed on batch {index} "
                f"(rows {start}..{start + batch.num_rows - 1}): {type(e).__name__}: {e}",
                "fix the function (the original error is chained); the dataset was not changed",
            ) from e
        out = _as_table(result, schema, where)
        if schema is None:
            schema = out.schema
        elif not out.schema.equals(schema, check_metadata=False):
            raise ConveyorError(
                f"{where} returned columns ({_schema_text(out.schema)}), "
                f"but the first batch returned ({_schema_text(schema)})",
                "return the same columns with the same types for every batch",
            )
        results.append(out)
    assert schema is not None
    return pa.concat_tables([r.replace_schema_metadata(schema.metadata) for r in results])


def _schema_text(schema: pa.Schema) -> str:
    return ", ".join(f"{f.name}: {f.type}" for f in schema)


def _as_table(result: object, schema: pa.Schema | None, where: str) -> pa.Table:
    if isinstance(result, pa.Table):
        return result
    if isinstance(result, pa.RecordBatch):
        return pa.Table.from_batches([result])
    if isinstance(result, Mapping):
        try:
            if schema is not None and list(result) == schema.names:
                return pa.table(dict(result), schema=schema)
            return pa.table(dict(result))
        except (pa.ArrowException, TypeError, ValueError) as e:
            raise ConveyorError(
                f"{where} returned a dict that is not a table of columns: {e}",
                "return equal-length columns (lists or arrays) with one type each",
            ) from e
    raise ConveyorError(
        f"{where} returned {type(result).__name__}, not a table",
        "return a pyarrow Table, a RecordBatch or a dict of columns",
    )
