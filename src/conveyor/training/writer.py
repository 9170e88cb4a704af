"""Asynchronous checkpoints: the step waits only for a CPU copy; a thread does the I/O.

One background thread serialises and uploads one checkpoint at a time. When a new
checkpoint is due while the previous one is still uploading, the step waits for it
(so memory holds at most two snapshots); that wait is counted with the copy time.
An upload that failed is raised on the next submit or at close, never lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from conveyor.core.errors import CheckpointError, ConveyorError
from conveyor.core.logs import get_logger
from conveyor.training.checkpoint import CheckpointInfo, CheckpointStore
from conveyor.training.snapshot import Snapshot

log = get_logger(__name__)


class CheckpointWriter:
    """Saves snapshots of one run in the background; records how long steps waited."""

    def __init__(
        self,
        store: CheckpointStore,
        run_id: str,
        metadata: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.metadata = metadata or dict
        self.waits: list[float] = []  # seconds each checkpoint held up training
        self.last: CheckpointInfo | None = None
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="conveyor-checkpoint")
        self._pending: Future[CheckpointInfo] | None = None

    def save(self, capture: Callable[[], Snapshot], wait: bool = False) -> None:
        """Snapshot now (timed), upload in the background; `wait=True` also waits for it."""
        started = time.perf_counter()
        self._finish_pending()
        snapshot = capture()
        self._pending = self._pool.submit(self._write, snapshot, self.metadata())
        if wait:
            self._finish_pending()
        self.waits.append(time.perf_counter() - started)

    def _write(self, snapshot: Snapshot, metadata: dict[str, Any]) -> CheckpointInfo:
        started = time.perf_counter()
        info = self.store.save(self.run_id, snapshot, metadata)
        log.info(
            "train.checkpoint",
            run_id=self.run_id,
            step=info.step,
            manifest=info.manifest,
            seconds=round(time.perf_counter() - started, 4),
        )
        return info

    def _finish_pending(self) -> None:
        if self._pending is None:
            return
        future, self._pending = self._pending, None
        try:
            self.last = future.result()
        except ConveyorError:
            raise
        except Exception as e:  # any writer failure is a checkpoint error
            raise CheckpointError(
                f"writing a checkpoint of run {self.run_id} failed ({type(e).__name__}: {e})",
                "check the object store is reachable and has space; training stopped",
            ) from e

    def close(self) -> CheckpointInfo | None:
        """Wait for the last upload; returns the newest checkpoint written."""
        try:
            self._finish_pending()
        finally:
            self._pool.shutdown(wait=True)
        return self.last
