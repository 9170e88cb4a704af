"""Parquet shards in the object store: how a table becomes shards and shards become tables.

Shards are zstd-compressed Parquet with row groups of about 1 MB so a loader can read
one row group with a range request. Each shard has a small JSON statistics object next
to it (also content-addressed), reused whenever the shard is reused.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from conveyor.data.manifest import Shard
from conveyor.data.stats import shard_stats
from conveyor.storage.objects import ObjectStore

SHARD_MEDIA_TYPE = "application/vnd.apache.parquet"
STATS_MEDIA_TYPE = "application/vnd.conveyor.shard-stats+json"
DEFAULT_SHARD_BYTES = 32 * 1024 * 1024
ROW_GROUP_BYTES = 1024 * 1024


def write_shard(objects: ObjectStore, table: pa.Table, split: str | None = None) -> Shard:
    """Store one table as a shard plus its statistics; returns the manifest entry."""
    per_row = max(1, table.nbytes // max(1, table.num_rows))
    buffer = io.BytesIO()
    pq.write_table(
        table,
        buffer,
        compression="zstd",
        row_group_size=max(1, ROW_GROUP_BYTES // per_row),
        write_statistics=True,
    )
    data = buffer.getvalue()
    footer = pq.ParquetFile(io.BytesIO(data)).metadata
    row_groups = [footer.row_group(i).num_rows for i in range(footer.num_row_groups)]
    stored = objects.put_bytes(data)
    stats = objects.put_bytes(json.dumps(shard_stats(table), sort_keys=True).encode())
    return Shard(
        digest=stored.digest,
        rows=table.num_rows,
        bytes=stored.size,
        stats=stats.digest,
        split=split,
        row_groups=row_groups,
    )


def read_shard(objects: ObjectStore, digest: str, columns: list[str] | None = None) -> pa.Table:
    """Read a shard (hash verified) as a table, optionally only some columns."""
    return pq.read_table(io.BytesIO(objects.get_bytes(digest)), columns=columns)


def read_stats(objects: ObjectStore, shard: Shard) -> dict[str, dict[str, Any]]:
    stats: dict[str, dict[str, Any]] = json.loads(objects.get_bytes(shard.stats))
    return stats


def rebatch(batches: Iterable[pa.RecordBatch], shard_bytes: int) -> Iterator[pa.Table]:
    """Group a stream of batches into tables of about `shard_bytes` (in memory) each."""
    pending: list[pa.RecordBatch] = []
    size = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        size += batch.nbytes
        if size >= shard_bytes:
            yield pa.Table.from_batches(pending)
            pending, size = [], 0
    if pending:
        yield pa.Table.from_batches(pending)
