"""User functions for `map` tests: importable by worker processes as tests.mapfns:NAME."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc


def double_label(batch: pa.RecordBatch) -> pa.RecordBatch:
    label2 = pc.multiply(batch.column("label"), 2)
    return pa.RecordBatch.from_arrays([*batch.columns, label2], [*batch.schema.names, "label2"])


def broken(batch: pa.RecordBatch) -> pa.RecordBatch:
    raise RuntimeError("this function is broken on purpose")
