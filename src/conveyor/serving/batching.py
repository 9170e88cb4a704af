"""Dynamic batching: one queue per served model version, one task that runs it in batches.

Requests put their rows (already validated and preprocessed) on the queue and await a
future. The batch task takes up to `max_batch_size` rows and waits for more only while
more are arriving: it first lets the handlers already running on the event loop reach
the queue (a few zero-length sleeps, nearly free), then waits on a timer only if the
arrival rate says another request should come within the time left, so a lone request
runs at once. A latency target shrinks that wait by the time a batch takes to run.

Batches faster than `inline_below_ms` run on the event loop itself: on a pinned core a
hand-off to a thread costs more than such a batch. Slower ones (a CNN, a GPU) run in
one thread per model version, so the loop keeps reading requests meanwhile.

Load shedding looks at the queue in time, not only in rows: a request is refused (503,
with Retry-After the estimated drain time) when the rows already queued would take the
model longer than `max_queue_ms` to work through, or pass the hard `max_queue` cap.

How long to wait also learns from the previous batch: clients in a closed loop send
their next request once answered, so about as many requests as the last batch held are
on their way. The timed wait ends as soon as that many are queued, and a lone client
(last batch: one request) never waits at all.

`finish` turns a whole batch's output into per-row answers once (softmax, labels), so
each request only slices the result. A request whose client went away or timed out has
its future failed or cancelled; the batch task skips it. If a batch raises, each request
in it runs alone, so one bad request fails alone.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from conveyor.core.errors import InferenceError, ServerBusyError, ServingError
from conveyor.serving.runtime import Runtime

_FREE_SPINS = 4  # zero-length sleeps that let ready handlers enqueue before a batch
_EWMA = 0.2  # weight of the newest sample in the arrival-gap and run-time averages


@dataclass(frozen=True)
class BatchPolicy:
    """How a model version batches. Rows, not requests, are what `max_*` count."""

    max_batch_size: int = 64
    max_wait_ms: float = 2.0
    max_queue: int = 65_536  # queued rows past which requests are shed (503): memory
    max_queue_ms: float | None = 1000.0  # shed when the queue would take longer to drain
    latency_target_ms: float | None = None
    inline_below_ms: float = 1.0
    timeout_s: float = 30.0  # a request not answered by then fails with 504

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ServingError("max_batch_size must be at least 1", "e.g. --max-batch-size 64")
        if self.max_wait_ms < 0:
            raise ServingError("max_wait_ms cannot be negative", "e.g. --max-wait-ms 2")
        if self.max_queue < self.max_batch_size:
            raise ServingError(
                f"max_queue ({self.max_queue}) is below max_batch_size ({self.max_batch_size})",
                "allow at least one full batch to queue",
            )


class Retired(Exception):
    """The version stopped taking requests (a swap); the router sends it to the new one."""


Result = tuple[np.ndarray, list[Any], int]  # output rows, their answers, rows in the batch
Finish = Callable[[np.ndarray], list[Any]]


class _Item:
    __slots__ = ("deadline", "future", "rows", "x")

    def __init__(self, x: np.ndarray, future: asyncio.Future[Result], deadline: float) -> None:
        self.x = x
        self.rows = len(x)
        self.future = future
        self.deadline = deadline


BatchHook = Callable[[int, float, int], None]  # rows, seconds, rows still queued


class Batcher:
    """The queue and batch task of one model version."""

    def __init__(
        self,
        runtime: Runtime,
        policy: BatchPolicy,
        on_batch: BatchHook | None = None,
        finish: Finish | None = None,
    ) -> None:
        self.runtime = runtime
        self.policy = policy
        self.queued_rows = 0
        self._queued_items = 0
        self._last_items = 1  # requests in the previous batch: how many to expect
        self._on_batch = on_batch
        self._finish = finish or _no_answers
        self._queue: deque[_Item] = deque()
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._running: list[_Item] = []
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="conveyor-infer")
        self._closed = False
        self._gap_s = 1.0  # average time between arrivals; starts "idle"
        self._last_arrival = 0.0
        self._run_s = 0.0  # average time a batch takes to run
        self._per_row_s = 0.0
        self._recent: deque[float] = deque(maxlen=16)  # wall times of the last batches
        self.batches = 0

    # -- life -------------------------------------------------------------------------------

    def start(self) -> None:
        self._wake = asyncio.Event()
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._loop(), name="batcher")
        self._sweeper = loop.create_task(self._sweep(), name="batcher-timeouts")

    async def stop(self) -> None:
        """Take no new requests, answer every queued one, then end the task."""
        self._closed = True
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            await self._task
        if self._sweeper is not None:
            self._sweeper.cancel()
        self._thread.shutdown(wait=True)

    # -- requests ---------------------------------------------------------------------------

    async def infer(self, x: np.ndarray) -> Result:
        """Queue `x` (rows on axis 0) and await the model's output for those rows."""
        return await self.submit(x)

    def submit(self, x: np.ndarray) -> asyncio.Future[Result]:
        """Queue `x` and return the future of its output. Cancelling the future (or
        failing it, as a timeout does) takes the request out: the batch task skips it."""
        if self._closed:
            raise Retired
        rows = len(x)
        policy = self.policy
        depth = self.queued_rows + rows
        if depth > policy.max_queue or (
            policy.max_queue_ms is not None and depth * self._per_row_s * 1000 > policy.max_queue_ms
        ):
            raise ServerBusyError(
                f"the queue is full ({self.queued_rows} rows waiting)",
                "retry after the time in Retry-After, or add workers",
                retry_after=self.retry_after(),
            )
        now = time.perf_counter()
        gap = now - self._last_arrival
        self._last_arrival = now
        self._gap_s += _EWMA * (min(gap, 1.0) - self._gap_s)
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append(_Item(x, future, now + self.policy.timeout_s))
        self.queued_rows += rows
        self._queued_items += 1
        assert self._wake is not None
        self._wake.set()
        return future

    def retry_after(self) -> float:
        """Seconds the queue would take to drain at the measured speed (at least 1)."""
        return max(1.0, self.queued_rows * self._per_row_s)

    # -- timeouts ---------------------------------------------------------------------------

    async def _sweep(self) -> None:
        """Fail requests past their deadline, queued or in a batch that hangs. One task
        for all requests instead of a timer each: the queue is in arrival order, so the
        expired ones are at its head."""
        period = min(0.25, self.policy.timeout_s / 4)
        while True:
            await asyncio.sleep(period)
            now = time.perf_counter()
            for item in self._running:
                if item.deadline <= now and not item.future.done():
                    item.future.set_exception(self._timed_out())
            for item in self._queue:
                if item.deadline > now:
                    break
                if not item.future.done():
                    item.future.set_exception(self._timed_out())

    def _timed_out(self) -> ServerBusyError:
        return ServerBusyError(
            f"no answer within {self.policy.timeout_s:g} s",
            "retry later or raise --timeout",
            retry_after=self.retry_after(),
            status=504,
        )

    # -- the batch task ---------------------------------------------------------------------

    async def _loop(self) -> None:
        wake = self._wake
        assert wake is not None
        while True:
            if not self._queue:
                if self._closed:
                    return
                wake.clear()
                await wake.wait()
                continue
            await self._gather()
            batch = self._take()
            if batch:
                await self._run(batch)

    async def _gather(self) -> None:
        """Let more rows arrive while that is likely to pay, within the wait budget."""
        policy = self.policy
        for _ in range(_FREE_SPINS):
            before = self.queued_rows
            await asyncio.sleep(0)
            if self.queued_rows >= policy.max_batch_size or self.queued_rows == before:
                break
        budget = policy.max_wait_ms / 1000.0
        if policy.latency_target_ms is not None:
            budget = min(budget, policy.latency_target_ms / 1000.0 - self._run_s)
        deadline = time.perf_counter() + budget
        wake = self._wake
        assert wake is not None
        loop = asyncio.get_running_loop()
        while (
            self.queued_rows < policy.max_batch_size
            and self._queued_items < self._last_items
            and not self._closed
        ):
            left = deadline - time.perf_counter()
            if left <= 0 or self._gap_s > left:
                return  # nobody is expected in time: run what is here
            wake.clear()
            before = self.queued_rows
            # a timer that sets the same event: wait_for would build a Task per batch
            timer = loop.call_later(min(left, 2.0 * self._gap_s), wake.set)
            try:
                await wake.wait()
            finally:
                timer.cancel()
            if self.queued_rows == before:
                return  # the expected arrival did not come

    def _take(self) -> list[_Item]:
        """Up to max_batch_size rows of live requests (a bigger request runs alone)."""
        batch: list[_Item] = []
        rows = 0
        limit = self.policy.max_batch_size
        queue = self._queue
        while queue:
            item = queue[0]
            if item.future.done():  # cancelled: the client left or timed out
                queue.popleft()
                self.queued_rows -= item.rows
                self._queued_items -= 1
                continue
            if batch and rows + item.rows > limit:
                break
            queue.popleft()
            self.queued_rows -= item.rows
            self._queued_items -= 1
            batch.append(item)
            rows += item.rows
            if rows >= limit:
                break
        return batch

    async def _run(self, batch: list[_Item]) -> None:
        start = time.perf_counter()
        self._running = batch
        try:
            x = batch[0].x if len(batch) == 1 else np.concatenate([item.x for item in batch])
            out = await self._call(x)
        except Exception:  # noqa: BLE001 - one bad request must not fail its batch
            await self._run_alone(batch)
            return
        seconds = time.perf_counter() - start
        self._last_items = len(batch)
        self._record(len(x), seconds)
        if len(out) != len(x):
            error = InferenceError(f"the model gave {len(out)} rows for {len(x)}")
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        answers = self._finish(out)
        if len(batch) == 1:
            if not batch[0].future.done():
                batch[0].future.set_result((out, answers, len(x)))
            return
        offset = 0
        for item in batch:
            end = offset + item.rows
            if not item.future.done():
                item.future.set_result((out[offset:end], answers[offset:end], len(x)))
            offset = end

    async def _run_alone(self, batch: list[_Item]) -> None:
        for item in batch:
            if item.future.done():
                continue
            try:
                out = await self._call(item.x)
                answers = self._finish(out)
            except Exception as e:  # noqa: BLE001 - reported to that request only
                if not item.future.done():
                    item.future.set_exception(
                        InferenceError(f"the model failed on this request ({e})")
                    )
                continue
            if not item.future.done():
                item.future.set_result((out, answers, item.rows))

    async def _call(self, x: np.ndarray) -> np.ndarray:
        # the fastest of the recent batches is what the model costs; slower ones were
        # slowed by other work on the core, which must not send us to the thread
        if self._recent and min(self._recent) * 1000.0 < self.policy.inline_below_ms:
            return self.runtime.run(x)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._thread, self.runtime.run, x)

    def _record(self, rows: int, seconds: float) -> None:
        self.batches += 1
        self._recent.append(seconds)
        self._run_s += _EWMA * (seconds - self._run_s) if self.batches > 1 else seconds
        per_row = seconds / max(rows, 1)
        self._per_row_s += _EWMA * (per_row - self._per_row_s) if self.batches > 1 else per_row
        if self._on_batch is not None:
            self._on_batch(rows, seconds, self.queued_rows)


def _no_answers(out: np.ndarray) -> list[Any]:
    return [None] * len(out)
