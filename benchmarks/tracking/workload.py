"""The workload both contenders run, with the same shapes and the same clock.

Each contender script imports this file (it has no dependencies) and hands it a small
adapter; timings are wall-clock `perf_counter` seconds.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from typing import Any

BATCH_KEYS = 100  # batched workload: 100 keys x 1,000 steps = 100,000 points


def value(i: int) -> float:
    return math.sin(i / 1000.0) + 1.0 / (i + 1)


def spin(seconds: float) -> None:
    """A dummy training step that holds the CPU (and the GIL) for `seconds`."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def step_metrics(i: int) -> dict[str, float]:
    """What a training step has to report: computed in plain and logged loops alike."""
    return {"loss": value(i), "acc": value(i + 1)}


def overhead(
    log_step: Callable[[int, dict[str, float]], None],
    steps: int,
    step: Callable[[], None],
    rounds: int = 20,
) -> dict[str, float]:
    """Time `steps` dummy steps without and with logging every step.

    Both loops compute the step's metrics (a loop has its loss whether or not it logs
    it); only the logged loop hands them to `log_step`. The steps are cut into `rounds`
    pairs of short loops (plain and logged, in alternating order) so machine noise hits
    both alike; the medians are compared. The same measurement with a no-op logger gives
    the noise floor.
    """
    per_round = max(1, steps // rounds)

    def measure(log: Callable[[int, dict[str, float]], None]) -> tuple[float, float]:
        plain, logged, i = [], [], 0
        for r in range(rounds):
            for kind in ("plain", "logged") if r % 2 == 0 else ("logged", "plain"):
                start = time.perf_counter()
                if kind == "plain":
                    for _ in range(per_round):
                        step()
                        step_metrics(i)
                    plain.append(time.perf_counter() - start)
                else:
                    for _ in range(per_round):
                        step()
                        log(i, step_metrics(i))
                        i += 1
                    logged.append(time.perf_counter() - start)
        return statistics.median(plain), statistics.median(logged)

    p, q = measure(log_step)
    p0, q0 = measure(lambda i, metrics: None)
    return {
        "steps": per_round * rounds,
        "rounds": rounds,
        "step_ms": 1000.0 * p / per_round,
        "overhead_pct": 100.0 * (q - p) / p,
        "noise_floor_pct": 100.0 * (q0 - p0) / p0,
    }


def native_step_factory(seconds: float = 0.001) -> Callable[[], None]:
    """A dummy step in native code that releases the GIL (as a GPU wait or a BLAS call
    does): sha256 of a buffer sized to take about `seconds`."""
    import hashlib

    size = 1 << 16
    while True:
        data = b"x" * size
        start = time.perf_counter()
        for _ in range(5):
            hashlib.sha256(data).digest()
        if (time.perf_counter() - start) / 5 >= seconds or size > 1 << 26:
            break
        size *= 2
    per = (time.perf_counter() - start) / 5
    data = b"x" * max(4096, int(size * seconds / per))
    return lambda: hashlib.sha256(data).digest() and None


def python_step(seconds: float = 0.001) -> Callable[[], None]:
    return lambda: spin(seconds)
