"""Latency of an ONNX model on this machine: ONNX Runtime, a batch of one, a few hundred
runs after a warm-up; p50 and p99 in milliseconds."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from conveyor.registry import onnx_export


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p99_ms: float
    runs: int
    threads: int


def measure(onnx: bytes, example: np.ndarray, runs: int = 300, threads: int = 1) -> Latency:
    """Time `runs` single-row predictions of `example[:1]` (warm-up not counted)."""
    sess = onnx_export.session(onnx, threads=threads)
    one = np.ascontiguousarray(example[:1], dtype=np.float32)
    for _ in range(10):
        onnx_export.run(sess, one)
    times = np.empty(runs)
    for i in range(runs):
        start = time.perf_counter()
        onnx_export.run(sess, one)
        times[i] = time.perf_counter() - start
    p50, p99 = np.percentile(times * 1000, [50, 99])
    return Latency(float(p50), float(p99), runs, threads)


def example_input(shape: list[int | None]) -> np.ndarray:
    """Zeros of the signature's shape, any-size axes as 1 (when no real data is at hand)."""
    return np.zeros([s or 1 for s in shape], dtype=np.float32)
