"""The background writer of one run: the training loop never waits for the database.

`add` appends an event to a deque: no lock, since a deque's append and popleft are
atomic, and the fewer instructions a log call runs the less it costs a training step
whose caches it finds cold. A daemon thread drains the deque every `flush_every_s`
seconds (1 s), or as soon as `max_pending` events wait, and writes it in one
transaction. `flush` queues a marker behind the caller's events and waits for the
thread to pass it. If the store does not
answer, the batch goes to the run's spool file instead and the writer retries every
`retry_every_s`, delivering the spool (in order, before anything newer) once the
store is back. `close` waits a bounded time; what is still in flight then is written
to a fresh spool file that this or a later process delivers (see SPOOL.md).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path

from conveyor.core.logs import get_logger
from conveyor.storage.metadata import MetadataStore
from conveyor.tracking.persist import write_events
from conveyor.tracking.spool import Event, Spool

log = get_logger(__name__)
_DELIVERY_CHUNK = 100_000


class RunWriter:
    """Buffers one run's events and delivers them from a background thread."""

    def __init__(
        self,
        meta: MetadataStore,
        run_id: str,
        spool_dir: Path,
        *,
        flush_every_s: float = 1.0,
        max_pending: int = 20_000,
        retry_every_s: float = 1.0,
    ) -> None:
        self.meta = meta
        self.run_id = run_id
        self.spool_dir = spool_dir
        self.flush_every_s = flush_every_s
        self.max_pending = max_pending
        self.retry_every_s = retry_every_s
        self._tick: Callable[[], None] | None = None
        self._tick_every_s: float | None = None
        self._queue: deque[Event | _Marker] = deque()
        self._inflight: list[Event] = []
        self._wake = threading.Event()
        self._stopping = False
        self._spool = Spool(spool_dir, run_id)
        self._last_retry = 0.0
        self._metric_ids: dict[str, int] = {}
        self._thread = threading.Thread(
            target=self._run, name=f"conveyor-run-{run_id[:8]}", daemon=True
        )

    def start(self, tick: Callable[[], None] | None = None, every_s: float | None = None) -> None:
        """Start the thread; `tick` (system metrics) is called every `every_s` seconds."""
        self._tick, self._tick_every_s = tick, every_s
        self._thread.start()

    # -- the caller's side -------------------------------------------------------------------

    def add(self, event: Event) -> None:
        queue = self._queue
        queue.append(event)
        if len(queue) >= self.max_pending:
            self._wake.set()

    def add_many(self, events: Sequence[Event]) -> None:
        queue = self._queue
        queue.extend(events)
        if len(queue) >= self.max_pending:
            self._wake.set()

    @property
    def spooling(self) -> bool:
        """True while the store is unreachable and events go to the spool file."""
        return self._spool.exists

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything added so far is in the store (True) or spooled (False)."""
        if not self._thread.is_alive():
            return not self._queue and not self._spool.exists
        marker = _Marker()
        self._queue.append(marker)
        self._wake.set()
        return marker.wait(timeout) and marker.stored

    def close(self, timeout: float) -> bool:
        """Stop the thread; wait at most `timeout` s. True if every event reached the store."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        hanging = self._thread.is_alive()  # the store is slow or hanging
        left, markers = _drain(self._queue)  # and anything added while the thread stopped
        for marker in markers:
            marker.set()
        if hanging or left:  # leave the rest on disk, for this or a later process
            left = [*self._inflight, *left] if hanging else left
            abandoned = Spool(self.spool_dir, self.run_id)
            abandoned.append(left)
            abandoned.release()
            log.warning("run_events_spooled", run=self.run_id, events=len(left))
            return False
        delivered = not self._spool.exists
        self._spool.release()  # an undelivered spool stays for a later process
        return delivered

    # -- the thread's side -------------------------------------------------------------------

    def _run(self) -> None:
        next_tick = time.monotonic() + (self._tick_every_s or 0.0)
        while True:
            self._wake.wait(self.flush_every_s)
            self._wake.clear()
            if self._tick is not None and self._tick_every_s and time.monotonic() >= next_tick:
                next_tick = time.monotonic() + self._tick_every_s
                self._safe_tick()
            stopping = self._stopping
            batch, markers = _drain(self._queue)
            self._inflight = batch
            self._deliver(batch, final=stopping)
            self._inflight = []
            stored = not self._spool.exists
            for marker in markers:
                marker.stored = stored
                marker.set()
            if stopping and not self._queue:
                return

    def _safe_tick(self) -> None:
        assert self._tick is not None
        try:
            self._tick()
        except Exception as e:  # noqa: BLE001 - a failing sampler must not stop the writer
            log.warning("system_metrics_failed", run=self.run_id, error=str(e))

    def _deliver(self, batch: list[Event], final: bool) -> None:
        if self._spool.exists and not self._deliver_spool(force=final):
            self._spool.append(batch)
            return
        if not batch:
            return
        try:
            write_events(self.meta, self.run_id, batch, self._metric_ids)
        except Exception as e:  # noqa: BLE001 - store down or failing: keep the events on disk
            log.warning("metadata_unreachable_spooling", run=self.run_id, error=str(e)[:300])
            self._spool.append(batch)
            self._last_retry = time.monotonic()

    def _deliver_spool(self, force: bool) -> bool:
        """Try to deliver the spool file; True once it is delivered and removed."""
        if not force and time.monotonic() - self._last_retry < self.retry_every_s:
            return False
        self._last_retry = time.monotonic()
        events = self._spool.events()
        try:
            for start in range(0, len(events), _DELIVERY_CHUNK):
                write_events(
                    self.meta,
                    self.run_id,
                    events[start : start + _DELIVERY_CHUNK],
                    self._metric_ids,
                )
        except Exception as e:  # noqa: BLE001
            log.info("metadata_still_unreachable", run=self.run_id, error=str(e)[:300])
            return False
        self._spool.remove()
        log.info("spool_delivered", run=self.run_id, events=len(events))
        return True


class _Marker(threading.Event):
    """A place in the queue that `flush` waits for; `stored`: nothing went to the spool."""

    stored = False


def _drain(queue: deque[Event | _Marker]) -> tuple[list[Event], list[_Marker]]:
    """Take what is in the queue now: its events, in order, and the flush markers."""
    items = [queue.popleft() for _ in range(len(queue))]
    events = [e for e in items if not isinstance(e, _Marker)]
    markers = [m for m in items if isinstance(m, _Marker)] if len(events) < len(items) else []
    return events, markers
