"""Reading the prediction log back (monitoring, tests, notebooks): the index, then Parquet.

The Arrow schema here is the one PREDICTIONS.md documents and `predlog.py` writes.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import select

from conveyor.serving.records import PredictionFileRecord
from conveyor.storage.metadata import MetadataStore
from conveyor.storage.objects import ObjectStore

SCHEMA = pa.schema(
    [
        pa.field("at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("request_id", pa.string(), nullable=False),
        pa.field("row", pa.int32(), nullable=False),
        pa.field("model", pa.string(), nullable=False),
        pa.field("version", pa.int32(), nullable=False),
        pa.field("role", pa.string(), nullable=False),
        pa.field("latency_ms", pa.float32(), nullable=False),
        pa.field("input", pa.string()),
        pa.field("features", pa.list_(pa.float32())),
        pa.field("label", pa.string()),
        pa.field("score", pa.float32()),
        pa.field("value", pa.list_(pa.float32())),
        pa.field("status", pa.int16()),
        pa.field("error", pa.string()),
        pa.field("batch_rows", pa.int32()),
    ]
)
# what a file written before a column existed reads as (older servers logged answers only)
_DEFAULTS = {"status": 200}


def prediction_files(
    meta: MetadataStore,
    model: str,
    version: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[PredictionFileRecord]:
    """Index rows of a model's log files, oldest first (those overlapping since..until)."""
    query = select(PredictionFileRecord).where(PredictionFileRecord.model == model)
    if version is not None:
        query = query.where(PredictionFileRecord.version == version)
    if since is not None:
        query = query.where(PredictionFileRecord.last_at >= since)
    if until is not None:
        query = query.where(PredictionFileRecord.first_at < until)
    with meta.read() as s:
        return list(s.scalars(query.order_by(PredictionFileRecord.first_at)))


def iter_predictions(
    meta: MetadataStore,
    objects: ObjectStore,
    model: str,
    version: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    columns: Sequence[str] | None = None,
) -> Iterator[pa.Table]:
    """A model's logged rows file by file (rows with since <= at < until), so a long
    window is read a file at a time; only `columns` are read (all when None)."""
    wanted = list(columns) if columns is not None else SCHEMA.names
    unknown = [c for c in wanted if c not in SCHEMA.names]
    if unknown:
        raise ValueError(f"the prediction log has no column {', '.join(unknown)}")
    read = list(dict.fromkeys([*wanted, "at"]))
    for record in prediction_files(meta, model, version, since, until):
        source = pq.ParquetFile(io.BytesIO(objects.get_bytes(record.digest)))
        present = [c for c in read if c in source.schema_arrow.names]
        table = _conform(source.read(columns=present), read)
        keep = _in_window(table, since, until)
        if keep is not None:
            table = table.filter(keep)
        if table.num_rows:
            yield table.select(wanted)


def read_predictions(
    meta: MetadataStore,
    objects: ObjectStore,
    model: str,
    version: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    columns: Sequence[str] | None = None,
) -> Any:
    """Every logged row of a model (optionally one version, in since..until) as one table."""
    tables = list(iter_predictions(meta, objects, model, version, since, until, columns))
    if not tables:
        names = list(columns) if columns is not None else SCHEMA.names
        return pa.schema([SCHEMA.field(n) for n in names]).empty_table()
    return pa.concat_tables(tables)


def _conform(table: pa.Table, names: list[str]) -> pa.Table:
    """Columns in `names` order with SCHEMA's types; a column an older file lacks is
    filled with its default (`status` 200: old servers logged answered requests only)."""
    arrays = []
    for name in names:
        field = SCHEMA.field(name)
        if name in table.column_names:
            arrays.append(table.column(name).cast(field.type))
        else:
            arrays.append(pa.array([_DEFAULTS.get(name)] * table.num_rows, field.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema([SCHEMA.field(n) for n in names]))


def _in_window(table: pa.Table, since: datetime | None, until: datetime | None) -> Any:
    import pyarrow.compute as pc

    kind = SCHEMA.field("at").type
    masks = []
    if since is not None:
        masks.append(pc.greater_equal(table["at"], pa.scalar(since, kind)))
    if until is not None:
        masks.append(pc.less(table["at"], pa.scalar(until, kind)))
    if not masks:
        return None
    return masks[0] if len(masks) == 1 else pc.and_(masks[0], masks[1])
