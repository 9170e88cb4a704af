"""A row group held as plain numpy columns, so a batch is gathered without Arrow calls.

A shuffled batch takes a few rows from each of ~64 row groups. Gathering them with
Arrow (`take` per group, concatenate, reorder) costs more than decoding small images;
here each group is converted once (binary columns to offsets + one byte buffer, labels
to class ids, numbers to arrays) and a batch is a handful of numpy indexing operations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import pyarrow as pa

from conveyor.core.errors import ConveyorError


@dataclass(frozen=True)
class Bytes:
    """A binary column: row i is data[offsets[i]:offsets[i+1]] (no copy of the bytes)."""

    offsets: np.ndarray
    data: np.ndarray

    def row(self, i: int) -> np.ndarray:
        return self.data[self.offsets[i] : self.offsets[i + 1]]


Column = Bytes | np.ndarray | list[Any]  # one row group's column
Values = np.ndarray | list[Any]  # a batch's column: numbers as an array, the rest a list


def group_columns(
    table: pa.Table, label_column: str | None, classes: tuple[str, ...]
) -> dict[str, Column]:
    """Convert one row group: binary -> Bytes, labels -> int64 class ids, numbers -> arrays.

    Every other type stays a Python list.
    """
    out: dict[str, Column] = {}
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        kind = column.type
        if name == label_column and classes:
            out[name] = _class_ids(column, name, classes)
        elif (pa.types.is_binary(kind) or pa.types.is_large_binary(kind)) and not column.null_count:
            out[name] = _bytes(column)
        elif _is_number(kind):
            out[name] = _numbers(column, name)
        else:
            out[name] = column.to_pylist()
    return out


def gather(parts: list[tuple[Column, np.ndarray]]) -> Values:
    """Rows of one column from several groups, in order: [(column, row numbers), ...].

    Binary rows come out as uint8 arrays that view the group's bytes.
    """
    if all(isinstance(c, np.ndarray) for c, _ in parts):
        return np.concatenate([cast(np.ndarray, c)[i] for c, i in parts])
    values: list[Any] = []
    for column, index in parts:
        if isinstance(column, Bytes):
            values += [column.row(int(i)) for i in index]
        else:
            values += [column[int(i)] for i in index]
    return values


def _is_number(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
    )


def _numbers(column: pa.Array, name: str) -> np.ndarray:
    if column.null_count:
        raise ConveyorError(
            f"column '{name}' has missing values, which tensors cannot hold",
            "fill or drop them first: `conveyor data fill` or `conveyor data drop-missing`",
        )
    return cast(np.ndarray, column.to_numpy(zero_copy_only=False))


def _bytes(column: pa.Array) -> Bytes:
    wide = pa.types.is_large_binary(column.type)
    _, offsets_buffer, data_buffer = column.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64 if wide else np.int32)
    offsets = offsets[column.offset : column.offset + len(column) + 1]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer else np.zeros(0, np.uint8)
    return Bytes(offsets, data)


def _class_ids(column: pa.Array, name: str, classes: tuple[str, ...]) -> np.ndarray:
    lookup = {c: i for i, c in enumerate(classes)}
    try:
        return np.array([lookup[v] for v in column.to_pylist()], dtype=np.int64)
    except KeyError as e:
        raise ConveyorError(
            f"column '{name}' holds {e.args[0]!r}, which is not one of the version's classes",
            "the manifest's statistics disagree with the shards; recreate the version",
        ) from None
