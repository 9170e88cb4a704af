"""Keep the rows where a SQL condition holds."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa

from conveyor.core.errors import ConveyorError
from conveyor.data.transforms.inputs import _columns_exist, _first_line

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
