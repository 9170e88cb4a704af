"""Read one row group of a remote shard with two range requests, before the shard is cached.

The manifest records the byte range and sha256 of every row group and of the footer, so
the bytes are verified exactly as a whole shard would be, just in smaller pieces.
"""

from __future__ import annotations

import hashlib
import io

import pyarrow as pa
import pyarrow.parquet as pq

from conveyor.core.errors import ObjectCorruptedError
from conveyor.data.loader.cache import RETRY_TRANSIENT
from conveyor.data.manifest import ByteRange
from conveyor.storage.objects import ObjectStore


class _KnownBytes(io.RawIOBase):
    """A file of which only some verified ranges are known; reading elsewhere is a bug."""

    def __init__(self, start: int, data: bytes, size: int) -> None:
        self.start, self.data, self.size, self.pos = start, data, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = base + offset
        return self.pos

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        begin = self.pos - self.start
        if begin < 0 or begin + len(buffer) > len(self.data):
            raise OSError(f"read at {self.pos} (+{len(buffer)}) is outside the fetched row group")
        buffer[: len(buffer)] = self.data[begin : begin + len(buffer)]
        self.pos += len(buffer)
        return len(buffer)


@RETRY_TRANSIENT
def fetch_verified(objects: ObjectStore, digest: str, part: ByteRange) -> bytes:
    data = objects.read_range(digest, part.offset, part.length)
    if hashlib.sha256(data).hexdigest() != part.sha256:
        raise ObjectCorruptedError(
            f"shard {digest[:12]}… in {objects.url} is corrupt "
            f"(bytes {part.offset}+{part.length} do not match the manifest)",
            "restore it from a backup or recreate the dataset version",
        )
    return data


def read_footer(objects: ObjectStore, digest: str, footer: ByteRange) -> pq.FileMetaData:
    return pq.read_metadata(io.BytesIO(fetch_verified(objects, digest, footer)))


def read_group(
    objects: ObjectStore,
    digest: str,
    metadata: pq.FileMetaData,
    group: int,
    part: ByteRange,
    size: int,
    columns: list[str],
) -> pa.Table:
    """Row group `group` of the shard (`size` bytes long), read from its verified bytes."""
    source = _KnownBytes(part.offset, fetch_verified(objects, digest, part), size)
    return pq.ParquetFile(source, metadata=metadata).read_row_group(group, columns=columns)
