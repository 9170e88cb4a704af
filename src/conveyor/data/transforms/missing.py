"""Missing values: fill values per strategy, filling, dropping."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from conveyor.core.errors import ConveyorError
from conveyor.data.transforms.inputs import FILL_STRATEGIES, FillStrategy, _columns_exist

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
