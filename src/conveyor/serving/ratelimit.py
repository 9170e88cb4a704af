"""Per-key token buckets shared by every worker process of one server.

With `--workers N`, buckets kept in each process would give a key N times its limit
(uvicorn hands connections to whichever worker accepts first). So the buckets live in a
small file in the server's shared folder, mapped into every worker; a take runs under a
thread lock and an exclusive `flock` on the file, a few microseconds. CLOCK_MONOTONIC is
the same clock in every process of the machine, so refills agree. One process alone
uses the same table in memory. Ray replicas may sit on other machines: each keeps its
own buckets (a key gets its limit per replica).
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import threading
import time
import zlib
from pathlib import Path

_RECORD = struct.Struct("<16sdd")  # key id, tokens left, monotonic time of the last take
_SLOTS = 4096  # keys with a limit that one server can track (128 KiB)
_FREE = b"\0" * 16
FILE_NAME = "rate-limits.bin"


class TokenBuckets:
    """Burst = one second's worth of requests (at least one); refills at `rate` per s."""

    def __init__(self, folder: str | Path | None = None) -> None:
        size = _RECORD.size * _SLOTS
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._table: bytearray | mmap.mmap
        if folder is None:
            self._table = bytearray(size)
            return
        self._fd = os.open(Path(folder) / FILE_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            if os.fstat(self._fd).st_size < size:  # the first worker sizes it (zeros)
                os.ftruncate(self._fd, size)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._table = mmap.mmap(self._fd, size)

    def take(self, key_id: str, rate: float) -> float | None:
        """Spend one request of `key_id`'s bucket: None if allowed, else seconds to wait."""
        name = key_id.encode()[:16].ljust(16, b"\0")
        burst = max(rate, 1.0)
        with self._lock:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                now = time.monotonic()
                offset = self._slot(name)
                stored, tokens, last = _RECORD.unpack_from(self._table, offset)
                if stored == _FREE:  # a key's first request: a full bucket
                    tokens, last = burst, now
                tokens = min(burst, tokens + (now - last) * rate)
                wait = None if tokens >= 1.0 else (1.0 - tokens) / rate
                if wait is None:
                    tokens -= 1.0
                _RECORD.pack_into(self._table, offset, name, tokens, now)
                return wait
            finally:
                if self._fd is not None:
                    fcntl.flock(self._fd, fcntl.LOCK_UN)

    def _slot(self, name: bytes) -> int:
        """The key's record (open addressing): its own, else the first free one."""
        start = zlib.crc32(name) % _SLOTS
        for i in range(_SLOTS):
            offset = ((start + i) % _SLOTS) * _RECORD.size
            stored = self._table[offset : offset + 16]
            if stored in (name, _FREE):
                return offset
        return start * _RECORD.size  # full: keys share a bucket (stricter, never looser)

    def close(self) -> None:
        if isinstance(self._table, mmap.mmap):
            self._table.close()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
