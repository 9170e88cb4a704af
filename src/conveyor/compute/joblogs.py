"""Job output in the object store: chunks written while a job runs, read back in order.

The scheduler buffers each job's output and writes a chunk every second (or every
256 KB), so `conveyor jobs logs -f` shows a running job's output within about a
second. A chunk is a content-addressed object plus one `job_log_chunks` row; the row
is written after the object, as everywhere in Conveyor.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import func, select

from conveyor.compute.records import JobLogChunkRecord
from conveyor.storage.metadata import MetadataStore
from conveyor.storage.objects import ObjectStore
from conveyor.storage.tables import index_objects

FLUSH_EVERY_S = 1.0
FLUSH_BYTES = 256 << 10


@dataclass
class _Pending:
    attempt: int
    data: bytearray = field(default_factory=bytearray)
    since: float = field(default_factory=time.monotonic)


class LogWriter:
    """Collects output per job and stores it in chunks; used by the scheduler only."""

    def __init__(self, meta: MetadataStore, objects: ObjectStore) -> None:
        self.meta = meta
        self.objects = objects
        self._pending: dict[str, _Pending] = {}
        self._next_seq: dict[str, int] = {}

    def append(self, job_id: str, attempt: int, data: bytes) -> None:
        if not data:
            return
        pending = self._pending.get(job_id)
        if pending is not None and pending.attempt != attempt:
            self.flush(job_id)
            pending = None
        if pending is None:
            pending = self._pending[job_id] = _Pending(attempt)
        pending.data += data

    def note(self, job_id: str, attempt: int, text: str) -> None:
        """A line from Conveyor itself in the job's log (attempt started, preempted...)."""
        self.append(job_id, attempt, f"[conveyor] {text}\n".encode())

    def flush_due(self) -> None:
        now = time.monotonic()
        for job_id, pending in list(self._pending.items()):
            if now - pending.since >= FLUSH_EVERY_S or len(pending.data) >= FLUSH_BYTES:
                self.flush(job_id)

    def flush(self, job_id: str) -> None:
        pending = self._pending.pop(job_id, None)
        if pending is None or not pending.data:
            return
        stored = self.objects.put_bytes(bytes(pending.data))
        with self.meta.write() as s:
            seq = self._next_seq.get(job_id)
            if seq is None:
                last = s.scalar(
                    select(func.max(JobLogChunkRecord.seq)).where(
                        JobLogChunkRecord.job_id == job_id
                    )
                )
                seq = 0 if last is None else last + 1
            index_objects(s, [(stored.digest, stored.size)], "text/plain")
            s.add(
                JobLogChunkRecord(
                    job_id=job_id,
                    seq=seq,
                    attempt=pending.attempt,
                    digest=stored.digest,
                    size=stored.size,
                    logged_at=time.time(),
                )
            )
        self._next_seq[job_id] = seq + 1

    def flush_all(self) -> None:
        for job_id in list(self._pending):
            self.flush(job_id)

    def forget(self, job_id: str) -> None:
        self.flush(job_id)
        self._next_seq.pop(job_id, None)


def read_chunks(
    meta: MetadataStore, objects: ObjectStore, job_id: str, after: int = -1
) -> Iterator[tuple[int, bytes]]:
    """(seq, bytes) of the chunks after `after`, in order, each verified."""
    with meta.read() as s:
        rows = s.execute(
            select(JobLogChunkRecord.seq, JobLogChunkRecord.digest)
            .where(JobLogChunkRecord.job_id == job_id, JobLogChunkRecord.seq > after)
            .order_by(JobLogChunkRecord.seq)
        ).all()
    for seq, digest in rows:
        yield seq, objects.get_bytes(digest)
