"""A user function over batches of rows."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

import pyarrow as pa

from conveyor.core.errors import ConveyorError
from conveyor.data.transforms.inputs import _function_name

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
