"""A local folder of verified shards with a size limit, shared safely by many loaders.

Files are named by their sha256, written under a temporary name and renamed into place,
and a per-shard file lock makes concurrent loaders (threads or processes) download each
shard once. Least recently used shards are evicted when the folder grows over its limit.
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

from filelock import FileLock
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_exponential

from conveyor.core.errors import ObjectCorruptedError, ObjectStoreUnreachableError
from conveyor.storage.objects import ObjectStore

_FETCH_ATTEMPTS = 5

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
        target = self.folder / digest[:2] / digest
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
