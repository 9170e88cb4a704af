"""Reading the prediction log back (monitoring, tests, notebooks): the index, then Parquet.

The Arrow schema here is the one PREDICTIONS.md documents and `predlog.py` writes.
"""

from __future__ import annotations

import io
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
    ]
)


def prediction_files(
    meta: MetadataStore,
    model: str,
    version: int | None = None,
    since: datetime | None = None,
) -> list[PredictionFileRecord]:
    """Index rows of a model's log files, oldest first (files overlapping `since` on)."""
    query = select(PredictionFileRecord).where(PredictionFileRecord.model == model)
    if version is not None:
        query = query.where(PredictionFileRecord.version == version)
    if since is not None:
        query = query.where(PredictionFileRecord.last_at >= since)
    with meta.read() as s:
        return list(s.scalars(query.order_by(PredictionFileRecord.first_at)))


def read_predictions(
    meta: MetadataStore,
    objects: ObjectStore,
    model: str,
    version: int | None = None,
    since: datetime | None = None,
) -> Any:
    """Every logged row of a model (optionally one version, from `since`) as one table."""
    tables = [
        pq.read_table(io.BytesIO(objects.get_bytes(f.digest)))
        for f in prediction_files(meta, model, version, since)
    ]
    if not tables:
        return SCHEMA.empty_table()
    table = pa.concat_tables(tables)
    if since is not None:
        import pyarrow.compute as pc

        table = table.filter(
            pc.greater_equal(table["at"], pa.scalar(since, SCHEMA.field("at").type))
        )
    return table
