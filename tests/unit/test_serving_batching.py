"""The batcher with a fake runtime: batches form, bad requests fail alone, nobody stalls."""

from __future__ import annotations

import asyncio
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from conveyor.core.errors import InferenceError, ServerBusyError, ServingError
from conveyor.serving import batching
from conveyor.serving.batching import Batcher, BatchPolicy, Retired


class Doubler:
    """Doubles its input; remembers every batch size; raises on any row holding -1."""

    name = "fake"

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.sizes: list[int] = []
        self.gate = gate

    def run(self, batch: np.ndarray) -> np.ndarray:
        if self.gate is not None:
            self.gate.wait(10)
        self.sizes.append(len(batch))
        if (batch == -1).any():
            raise ValueError("poisoned row")
        return batch * 2


def rows(*values: float) -> np.ndarray:
    return np.array([[v] for v in values], np.float32)


async def started(runtime: Doubler, **policy: float) -> Batcher:
    batcher = Batcher(runtime, BatchPolicy(**policy))  # type: ignore[arg-type]
    batcher.start()
    return batcher


def test_requests_that_arrive_together_run_as_one_batch() -> None:
    async def main() -> list[np.ndarray]:
        runtime = Doubler()
        batcher = await started(runtime, max_batch_size=64)
        outs = await asyncio.gather(*(batcher.infer(rows(i)) for i in range(10)))
        await batcher.stop()
        assert runtime.sizes == [10]
        assert [batch_rows for _, _, batch_rows in outs] == [10] * 10  # what the log keeps
        return [out for out, _, _ in outs]

    outs = asyncio.run(main())
    assert [float(o[0, 0]) for o in outs] == [2.0 * i for i in range(10)]


def test_batches_stay_under_max_batch_size_but_a_big_request_runs_whole() -> None:
    async def main() -> Doubler:
        runtime = Doubler()
        batcher = await started(runtime, max_batch_size=4, max_queue=64)
        await asyncio.gather(*(batcher.infer(rows(i)) for i in range(9)))
        big, _, _ = await batcher.infer(rows(*range(10)))
        assert len(big) == 10
        await batcher.stop()
        return runtime

    runtime = asyncio.run(main())
    assert runtime.sizes[:3] == [4, 4, 1] and runtime.sizes[3] == 10


def test_a_lone_request_is_not_held_for_max_wait() -> None:
    async def main() -> None:
        batcher = await started(Doubler(), max_wait_ms=60_000)
        out, _, _ = await asyncio.wait_for(batcher.infer(rows(1)), timeout=10)
        assert float(out[0, 0]) == 2.0
        await batcher.stop()

    asyncio.run(main())


def test_one_bad_request_fails_alone() -> None:
    async def main() -> list[object]:
        batcher = await started(Doubler())
        results = await asyncio.gather(
            batcher.infer(rows(1)),
            batcher.infer(rows(-1)),
            batcher.infer(rows(3)),
            return_exceptions=True,
        )
        await batcher.stop()
        return results

    good, bad, other = asyncio.run(main())
    assert isinstance(bad, InferenceError) and "poisoned" in str(bad)
    assert float(good[0][0, 0]) == 2.0 and float(other[0][0, 0]) == 6.0  # type: ignore[index]


def test_cancelled_and_timed_out_requests_do_not_stall_the_queue() -> None:
    async def main() -> Doubler:
        gate = threading.Event()
        runtime = Doubler(gate)
        batcher = await started(runtime, max_batch_size=1, max_queue=16)
        first = batcher.submit(rows(1))  # runs (in the thread) and blocks on the gate
        await asyncio.sleep(0.05)
        left = batcher.submit(rows(2))
        left.cancel()  # the client went away
        timed_out = batcher.submit(rows(3))
        timed_out.set_exception(ServerBusyError("too slow", status=504))
        last = batcher.submit(rows(4))
        gate.set()
        assert float((await first)[0][0, 0]) == 2.0
        assert float((await last)[0][0, 0]) == 8.0
        await batcher.stop()
        with pytest.raises(ServerBusyError):
            timed_out.result()
        return runtime

    runtime = asyncio.run(main())
    assert runtime.sizes == [1, 1]  # the two abandoned requests never ran


def test_a_full_queue_sheds_with_a_retry_time() -> None:
    async def main() -> None:
        gate = threading.Event()
        batcher = await started(Doubler(gate), max_batch_size=2, max_queue=4)
        running = batcher.submit(rows(1, 2))
        await asyncio.sleep(0.05)
        queued = batcher.submit(rows(1, 2, 3, 4))
        with pytest.raises(ServerBusyError) as shed:
            batcher.submit(rows(5))
        assert shed.value.status == 503 and shed.value.retry_after >= 1
        gate.set()
        await asyncio.gather(running, queued)
        await batcher.stop()

    asyncio.run(main())


def test_stop_answers_what_was_queued_then_refuses() -> None:
    async def main() -> None:
        batcher = await started(Doubler(), max_batch_size=2)
        pending = [batcher.submit(rows(i)) for i in range(5)]
        await batcher.stop()
        assert [float((await p)[0][0, 0]) for p in pending] == [0.0, 2.0, 4.0, 6.0, 8.0]
        with pytest.raises(Retired):
            batcher.submit(rows(1))

    asyncio.run(main())


def test_finish_builds_answers_once_per_batch() -> None:
    calls: list[int] = []

    def finish(out: np.ndarray) -> list[object]:
        calls.append(len(out))
        return [f"answer-{float(v)}" for v in out[:, 0]]

    async def main() -> list[object]:
        batcher = Batcher(Doubler(), BatchPolicy(), finish=finish)
        batcher.start()
        results = await asyncio.gather(*(batcher.infer(rows(i)) for i in range(3)))
        await batcher.stop()
        return [answers for _, answers, _ in results]

    assert asyncio.run(main()) == [["answer-0.0"], ["answer-2.0"], ["answer-4.0"]]
    assert calls == [3]


@pytest.mark.parametrize(
    "policy",
    [{"max_batch_size": 0}, {"max_wait_ms": -1}, {"max_batch_size": 8, "max_queue": 4}],
)
def test_bad_policies_say_what_to_fix(policy: dict[str, float]) -> None:
    with pytest.raises(ServingError):
        BatchPolicy(**policy)  # type: ignore[arg-type]


def test_the_queue_is_shed_by_the_time_it_would_take_to_drain(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the batcher's clock, advanced by the model: it takes exactly 50 ms a row, however
    # long a real sleep would take on this machine
    now = [1000.0]
    monkeypatch.setattr(batching, "time", SimpleNamespace(perf_counter=lambda: now[0]))

    class Slow(Doubler):
        def run(self, batch: np.ndarray) -> np.ndarray:
            now[0] += 0.05 * len(batch)  # 50 ms a row
            return batch * 2

    async def main() -> None:
        batcher = await started(Slow(), max_batch_size=4, max_queue_ms=130)
        await batcher.infer(rows(1))  # measures the model: 50 ms a row
        await batcher.infer(rows(1, 2))  # 100 ms of work: still taken
        with pytest.raises(ServerBusyError) as shed:
            batcher.submit(rows(1, 2, 3))  # 150 ms of work > 130 ms
        assert shed.value.status == 503
        await batcher.stop()

    asyncio.run(main())
