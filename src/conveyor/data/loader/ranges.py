"""Read one row group of a shard from its verified bytes alone, before the shard is cached.

The manifest records the byte range and sha256 of every row group and of the footer, so
the bytes are verified exactly as a whole shard would be, just in smaller pieces.
"""

from __future__ import annotations

import io
import mmap
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from conveyor.data.loader.cache import corrupt, matches
from conveyor.data.manifest import ByteRange
from conveyor.storage.objects import ObjectStore


class MappedShard:
    """A shard in a local store, memory-mapped: a row group's bytes are hashed and parsed
    where they sit in the page cache, with no copy (reading them into memory first cost
    two copies of every byte, a fifth of a worker's time on small PNGs)."""

    def __init__(self, objects: ObjectStore, digest: str, footer: ByteRange) -> None:
        self.objects, self.digest = objects, digest
        try:
            with Path(objects.path_of(digest)).open("rb") as f:
                self.map = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except FileNotFoundError as e:
            raise objects._missing(digest) from e
        except ValueError:  # an empty file cannot be mapped
            self.map = mmap.mmap(-1, 1)
        self.metadata = pq.read_metadata(pa.BufferReader(self._verified(footer)))

    def group(self, group: int, part: ByteRange, columns: list[str]) -> pa.Table:
        self._verified(part)
        source = pa.BufferReader(pa.py_buffer(self.map))
        return pq.ParquetFile(source, metadata=self.metadata).read_row_group(
            group, columns=columns, use_threads=False
        )

    def _verified(self, part: ByteRange) -> memoryview:
        view = memoryview(self.map)[part.offset : part.offset + part.length]
        if not matches(view, part):
            raise corrupt(self.objects, self.digest, part)
        return view


def read_footer(data: bytes) -> pq.FileMetaData:
    return pq.read_metadata(io.BytesIO(data))


def read_group(
    data: bytes,
    metadata: pq.FileMetaData,
    group: int,
    part: ByteRange,
    size: int,
    columns: list[str],
) -> pa.Table:
    """Row group `group` of a shard `size` bytes long, from the group's verified bytes.

    The bytes sit at their offset in an anonymous memory map the size of the shard: the
    kernel maps pages only where they are written, so this costs the group's bytes, and
    Arrow parses from memory at native speed.
    """
    whole = mmap.mmap(-1, size)  # freed with the last Arrow buffer that refers to it
    whole[part.offset : part.offset + part.length] = data
    source = pa.BufferReader(pa.py_buffer(whole))
    return pq.ParquetFile(source, metadata=metadata).read_row_group(
        group, columns=columns, use_threads=False
    )
