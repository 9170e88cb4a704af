"""Ingest: turn a folder of files or a table into a new dataset version.

Three things make it cheap to ingest again:
- rows are identified by content (files: path, label, sha256; tables: every column),
- a version made from a parent reuses every parent shard whose rows are all still there,
  rewrites only shards that lost rows, and writes new rows into new shards,
- shards are content-addressed, so a re-run after a crash re-uploads nothing it finished.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl
import pyarrow as pa

from conveyor.core.errors import ConveyorError
from conveyor.core.processes import spawn_pool
from conveyor.data.manifest import Manifest, Operation, Shard, encode_schema
from conveyor.data.refs import check_name
from conveyor.data.shards import DEFAULT_SHARD_BYTES, read_shard, read_stats, rebatch, write_shard
from conveyor.data.sources import Reject, Source, open_source, read_files, read_table
from conveyor.data.stats import merge_stats
from conveyor.data.transforms import match_rows, row_keys

if TYPE_CHECKING:
    from conveyor.data.catalog import Datasets, Progress
    from conveyor.data.dataset import DatasetVersion

FILES_PER_TASK = 256
REJECTS_MEDIA_TYPE = "application/x-ndjson"


@dataclass
class IngestResult:
    """What an ingest did; `created` is False when the data was already the latest version."""

    version: DatasetVersion
    created: bool
    rows: int
    new_rows: int
    reused_shards: int
    written_bytes: int
    duplicates: int
    rejects: list[Reject] = field(default_factory=list)


def ingest(
    catalog: Datasets,
    url: str,
    name: str,
    *,
    shard_bytes: int | None = None,
    workers: int | None = None,
    storage_options: dict[str, Any] | None = None,
    progress: Progress | None = None,
) -> IngestResult:
    check_name(name)
    source = open_source(url, storage_options)
    rejects: list[Reject] = []
    batches = _source_batches(source, rejects, workers, progress)
    first = next(batches, None)
    if first is None:
        raise ConveyorError(
            f"nothing to ingest from {url}: all {len(rejects)} inputs were rejected",
            f"first reject: {rejects[0].where}: {rejects[0].reason}" if rejects else "add data",
        )
    stream = _chain(first, batches)
    identity = _identity(source, first.schema)
    parent = _last_ingest(catalog, name)
    writer = _ShardWriter(catalog, shard_bytes or DEFAULT_SHARD_BYTES, identity)
    if (
        parent is not None
        and parent.schema.equals(first.schema)
        and (parent.manifest.identity == identity)
    ):
        unchanged = writer.write_from_parent(parent, stream)
        if unchanged:
            return IngestResult(
                parent,
                False,
                parent.rows,
                0,
                len(parent.manifest.shards),
                0,
                parent.manifest.duplicates.get("exact", 0),
                rejects,
            )
    else:
        writer.write_new(stream)
    params = {"source": source.url, "kind": source.kind}
    version = catalog.commit(
        writer.manifest(name, first.schema, Operation(name="ingest", params=params), rejects),
        [parent] if parent is not None and writer.reused else [],
    )
    return IngestResult(
        version,
        True,
        version.rows,
        writer.new_rows,
        writer.reused,
        writer.written_bytes,
        writer.duplicates(),
        rejects,
    )


def _last_ingest(catalog: Datasets, name: str) -> DatasetVersion | None:
    """The version a new ingest builds on: the newest one made by an ingest.

    Versions made by prepare ops (dedupe, split...) are derived data, not raw data.
    """
    if not catalog.exists(name):
        return None
    for summary in catalog.log(name):
        if summary.operation == "ingest":
            return catalog.get(summary.ref)
    return None


def _identity(source: Source, schema: pa.Schema) -> list[str]:
    if source.kind in ("images", "files"):
        return [c for c in ("path", "label", "sha256") if c in schema.names]
    return list(schema.names)


def _content_columns(identity: list[str]) -> list[str]:
    """What makes two rows exact duplicates: file bytes for files, every column for tables."""
    return ["sha256"] if "sha256" in identity and "path" in identity else identity


def _chain(first: pa.RecordBatch, rest: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    yield first
    yield from rest


# -- reading the source in parallel ----------------------------------------------------------


def _source_batches(
    source: Source, rejects: list[Reject], workers: int | None, progress: Progress | None
) -> Iterator[pa.RecordBatch]:
    if source.kind not in ("images", "files"):
        done = 0
        for batch in read_table(source, rejects):
            done += batch.num_rows
            if progress:
                progress(done, None)
            yield batch
        return
    chunks = [
        source.files[i : i + FILES_PER_TASK] for i in range(0, len(source.files), FILES_PER_TASK)
    ]
    args = (source.fs, source.path, source.kind, source.labelled)
    workers = workers or os.cpu_count() or 1
    if workers <= 1 or len(chunks) <= 1:
        results: Iterable[tuple[pa.RecordBatch, list[Reject]]] = (
            read_files(*args, chunk) for chunk in chunks
        )
        yield from _collect(results, rejects, progress, len(source.files))
        return
    with spawn_pool(workers) as pool:
        futures = [pool.submit(read_files, *args, chunk) for chunk in chunks]
        results = (f.result() for f in futures)
        yield from _collect(results, rejects, progress, len(source.files))


def _collect(
    results: Iterable[tuple[pa.RecordBatch, list[Reject]]],
    rejects: list[Reject],
    progress: Progress | None,
    total: int,
) -> Iterator[pa.RecordBatch]:
    done = 0
    for batch, bad in results:
        rejects.extend(bad)
        done += batch.num_rows + len(bad)
        if progress:
            progress(done, total)
        yield batch


# -- writing shards ---------------------------------------------------------------------------


class _ShardWriter:
    """Collects the shards of the version being made and their content keys."""

    def __init__(self, catalog: Datasets, shard_bytes: int, identity: list[str]) -> None:
        self.catalog = catalog
        self.shard_bytes = shard_bytes
        self.identity = identity
        self.content = _content_columns(identity)
        self.shards: list[Shard] = []
        self.content_keys: list[np.ndarray] = []
        self.reused = 0
        self.new_rows = 0
        self.written_bytes = 0

    def _write(self, table: pa.Table) -> None:
        shard = write_shard(self.catalog.objects, table)
        self.shards.append(shard)
        self.content_keys.append(row_keys(table.select(self.content)))
        self.written_bytes += shard.bytes

    def write_new(self, batches: Iterable[pa.RecordBatch]) -> None:
        for table in rebatch(batches, self.shard_bytes):
            self.new_rows += table.num_rows
            self._write(table)

    def write_from_parent(self, parent: DatasetVersion, batches: Iterable[pa.RecordBatch]) -> bool:
        """Reuse what the parent has; returns True when the source equals the parent."""
        objects = self.catalog.objects
        with tempfile.TemporaryDirectory(prefix="conveyor-ingest-") as tmp:
            spill = str(Path(tmp) / "source.arrow")
            source_keys = _spill(batches, spill, self.identity)
            parent_tables = [
                read_shard(objects, s.digest, self.identity) for s in parent.manifest.shards
            ]
            parent_keys = [row_keys(t) for t in parent_tables]
            is_new, retained = match_rows(parent_keys, source_keys)
            if not is_new.any() and all(r.all() for r in retained):
                return True
            for shard, table, keep in zip(
                parent.manifest.shards, parent_tables, retained, strict=True
            ):
                if keep.all():
                    self.shards.append(shard)
                    self.content_keys.append(row_keys(table.select(self.content)))
                    self.reused += 1
                elif keep.any():  # rewrite only the shards that lost rows
                    full = read_shard(objects, shard.digest)
                    self._write(full.filter(pa.array(keep)))
            with pa.memory_map(spill) as f:
                spilled = pa.ipc.open_file(f).read_all()
                self.write_new(spilled.filter(pa.array(is_new)).to_batches())
        return False

    def duplicates(self) -> int:
        if not self.content_keys:
            return 0
        keys = np.concatenate(self.content_keys)
        unique = pl.DataFrame({"a": keys[:, 0], "b": keys[:, 1]}).n_unique()
        return int(len(keys) - unique)

    def manifest(
        self, name: str, schema: pa.Schema, operation: Operation, rejects: list[Reject]
    ) -> Manifest:
        fields, arrow_schema = encode_schema(schema)
        stats = [read_stats(self.catalog.objects, s) for s in self.shards]
        report = None
        if rejects:
            lines = "".join(
                json.dumps({"where": r.where, "reason": r.reason}) + "\n" for r in rejects
            )
            report = self.catalog.objects.put_bytes(lines.encode()).digest
        return Manifest(
            name=name,
            version=0,
            fields=fields,
            arrow_schema=arrow_schema,
            rows=sum(s.rows for s in self.shards),
            bytes=sum(s.bytes for s in self.shards),
            columns=merge_stats(stats),
            identity=self.identity,
            shards=self.shards,
            operation=operation,
            duplicates={"exact": self.duplicates(), "by": self.content},
            rejects={"count": len(rejects), "report": report},
        )


def _spill(batches: Iterable[pa.RecordBatch], path: str, identity: list[str]) -> np.ndarray:
    """Write the source to a local Arrow file (read back memory-mapped); return its keys."""
    keys = []
    writer = None
    for batch in batches:
        if writer is None:
            writer = pa.ipc.new_file(path, batch.schema)
        writer.write_batch(batch)
        keys.append(row_keys(pa.Table.from_batches([batch]).select(identity)))
    if writer is not None:
        writer.close()
    return np.concatenate(keys) if keys else np.zeros((0, 2), dtype=np.uint64)
