"""Parquet shards in the object store: how a table becomes shards and shards become tables.

Shards are zstd-compressed Parquet with row groups of about 1 MB so a loader can read
one row group with a range request. Each shard has a small JSON statistics object next
to it (also content-addressed), reused whenever the shard is reused.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from conveyor.data.manifest import ByteRange, Shard
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
        compression=_compression(table),
        row_group_size=max(1, ROW_GROUP_BYTES // per_row),
        write_statistics=True,
    )
    data = buffer.getvalue()
    footer = pq.ParquetFile(io.BytesIO(data)).metadata
    row_groups = [footer.row_group(i).num_rows for i in range(footer.num_row_groups)]
    group_bytes = [
        _byte_range(data, *_group_span(footer.row_group(i))) for i in range(len(row_groups))
    ]
    footer_length = int.from_bytes(data[-8:-4], "little")
    footer_range = _byte_range(data, len(data) - 8 - footer_length, len(data))
    stored = objects.put_bytes(data)
    stats = objects.put_bytes(json.dumps(shard_stats(table), sort_keys=True).encode())
    return Shard(
        digest=stored.digest,
        rows=table.num_rows,
        bytes=stored.size,
        stats=stats.digest,
        split=split,
        row_groups=row_groups,
        row_group_bytes=group_bytes,
        footer=footer_range,
    )


def _compression(table: pa.Table) -> dict[str, str]:
    """zstd everywhere but on file bytes (PNG, JPEG...), which are compressed already:
    squeezing them again saves ~nothing and costs every reader a decompression."""
    file_bytes = {"image", "data"}
    return {
        f.name: "none" if f.name in file_bytes and pa.types.is_binary(f.type) else "zstd"
        for f in table.schema
    }


def _group_span(group: Any) -> tuple[int, int]:
    """Where a row group's column chunks start and end in the file."""
    starts, ends = [], []
    for c in range(group.num_columns):
        chunk = group.column(c)
        start = chunk.data_page_offset
        if chunk.has_dictionary_page and chunk.dictionary_page_offset:
            start = min(start, chunk.dictionary_page_offset)
        starts.append(start)
        ends.append(start + chunk.total_compressed_size)
    return min(starts), max(ends)


def _byte_range(data: bytes, start: int, end: int) -> ByteRange:
    return ByteRange(
        offset=start, length=end - start, sha256=hashlib.sha256(data[start:end]).hexdigest()
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
