"""A local folder of verified shards with a size limit, shared safely by many loaders.

Files are named by their sha256, written under a temporary name and renamed into place,
and a per-file lock makes concurrent loaders (threads or processes) download each shard
once. Row groups read by range before their shard arrives are kept the same way under
`parts/`, so the workers (and ranks) on a machine range-read each one once. Least
recently used files are evicted when the folder grows over its limit.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
import uuid
from pathlib import Path

from filelock import FileLock
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from conveyor.core.errors import ObjectCorruptedError, ObjectStoreUnreachableError
from conveyor.data.manifest import ByteRange
from conveyor.storage.objects import ObjectStore

_FETCH_ATTEMPTS = 5
PREFETCH_SHARDS = 4  # shards a loader downloads at once
WAIT_FOR_SHARD_BYTES = 64 * 1024 * 1024


def worth_waiting_for(shard_bytes: int) -> bool:
    """Whether a batch should wait for this shard to download rather than range-read it.

    A shard of up to 64 MiB lands in about the time a handful of range requests take, and
    each request costs the store a round trip (on the cold-S3 benchmark: a first batch in
    0.53-0.69 s waiting for 34 MB shards, 0.67-0.88 s reading their row groups by range).
    """
    return shard_bytes <= WAIT_FOR_SHARD_BYTES


# A flaky network or a torn read is retried with backoff, then raised: data is never skipped.
RETRY_TRANSIENT = retry(
    retry=retry_if_exception_type((ObjectStoreUnreachableError, ObjectCorruptedError)),
    stop=stop_after_attempt(_FETCH_ATTEMPTS),
    wait=wait_exponential(multiplier=0.2, max=5),
    reraise=True,
)


class ShardCache:
    """Hands out local paths of verified shards."""

    def __init__(
        self, objects: ObjectStore, folder: Path | None, limit_bytes: int | None = None
    ) -> None:
        self.objects = objects
        self.folder = folder
        self.limit_bytes = limit_bytes
        self._verified: set[str] = set()

    def path(self, digest: str) -> Path:
        """A local file holding the shard, its hash checked before it is first used."""
        if self.folder is None:  # a local store needs no copy: verify it in place, once
            if digest not in self._verified:
                self.objects.get_bytes(digest)
                self._verified.add(digest)
            return Path(self.objects.path_of(digest))
        target = self._shard_file(digest)
        if target.exists():
            with contextlib.suppress(FileNotFoundError):
                os.utime(target)  # mark as recently used
                return target
        target.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{target}.lock"):
            if not target.exists():
                self._fetch(digest, target)
                self._evict(keep=target)
        return target

    def has(self, digest: str) -> bool:
        """Whether the whole shard is already in the folder."""
        return self.folder is not None and self._shard_file(digest).exists()

    def _shard_file(self, digest: str) -> Path:
        assert self.folder is not None
        return self.folder / digest[:2] / digest

    def part(self, digest: str, part: ByteRange) -> bytes:
        """The verified bytes of one range of a shard, read from the store once per folder."""
        if self.folder is None:
            return fetch_verified(self.objects, digest, part)
        target = self.folder / "parts" / part.sha256
        kept = _verified_file(target, part)
        if kept is not None:
            return kept
        target.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{target}.lock"):
            kept = _verified_file(target, part)  # another loader may have just written it
            if kept is not None:
                return kept
            data = fetch_verified(self.objects, digest, part)
            tmp = target.with_name(f"{target.name}.{uuid.uuid4().hex}.part")
            tmp.write_bytes(data)
            tmp.replace(target)
        return data

    def forget_parts(self, parts: list[ByteRange]) -> None:
        """Drop a shard's kept row groups once the whole shard is here (at the end of an
        epoch, so no loader still counting on them reads them again by range)."""
        if self.folder is not None and (self.folder / "parts").exists():
            for part in parts:
                with contextlib.suppress(FileNotFoundError):
                    (self.folder / "parts" / part.sha256).unlink()

    @RETRY_TRANSIENT
    def _fetch(self, digest: str, target: Path) -> None:
        """Download and verify; transient failures (and torn reads) are retried, then raised."""
        self.objects.fetch_to(digest, target)

    def _evict(self, keep: Path) -> None:
        if self.limit_bytes is None or self.folder is None:
            return
        files = [p for p in self.folder.glob("*/*") if len(p.name) == 64]
        sizes = {p: _size(p) for p in files}
        total = sum(sizes.values())
        for path in sorted(files, key=_mtime):
            if total <= self.limit_bytes:
                break
            if path == keep:
                continue
            with contextlib.suppress(FileNotFoundError):
                path.unlink()  # readers that hold it open keep reading (POSIX)
                total -= sizes[path]


@RETRY_TRANSIENT
def fetch_verified(objects: ObjectStore, digest: str, part: ByteRange) -> bytes:
    data = objects.read_range(digest, part.offset, part.length)
    if not matches(data, part):
        raise corrupt(objects, digest, part)
    return data


def matches(data: bytes | memoryview, part: ByteRange) -> bool:
    """Whether these are exactly the bytes the manifest records for this range."""
    return len(data) == part.length and hashlib.sha256(data).hexdigest() == part.sha256


def corrupt(objects: ObjectStore, digest: str, part: ByteRange) -> ObjectCorruptedError:
    return ObjectCorruptedError(
        f"shard {digest[:12]}… in {objects.url} is corrupt "
        f"(bytes {part.offset}+{part.length} do not match the manifest)",
        "restore it from a backup or recreate the dataset version",
    )


def _verified_file(path: Path, part: ByteRange) -> bytes | None:
    """A kept part's bytes if they are whole and right; a damaged copy is removed."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    if matches(data, part):
        return data
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    return None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return time.time()
