"""Checks and messages shared by the transforms: columns, errors, function names."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from conveyor.core.errors import ConveyorError

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
