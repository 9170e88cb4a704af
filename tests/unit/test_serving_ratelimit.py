"""Token buckets: the limit holds per key, refills with time, and is shared by processes."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from types import SimpleNamespace

import pytest

from conveyor.serving import ratelimit
from conveyor.serving.ratelimit import TokenBuckets


def test_a_key_gets_its_burst_then_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    # the buckets' clock, stepped by the test: how fast this machine runs the takes
    # must not decide whether a token refilled between them
    now = [1000.0]
    monkeypatch.setattr(ratelimit, "time", SimpleNamespace(monotonic=lambda: now[0]))
    buckets = TokenBuckets()
    allowed = [buckets.take("abc", 5.0) is None for _ in range(8)]
    assert allowed == [True] * 5 + [False] * 3
    now[0] += 0.05
    wait = buckets.take("abc", 5.0)
    assert wait == pytest.approx(0.15)  # a token every 0.2 s, a quarter of one back
    assert buckets.take("other", 5.0) is None  # limits are per key
    now[0] += 0.1
    assert buckets.take("abc", 5.0) is not None  # not yet
    now[0] += 0.1
    assert buckets.take("abc", 5.0) is None  # refilled
    assert buckets.take("abc", 5.0) is not None  # one token, not the burst


def _spend(folder: str, tries: int, out: multiprocessing.Queue[int]) -> None:
    buckets = TokenBuckets(folder)
    out.put(sum(buckets.take("shared", 0.01) is None for _ in range(tries)))
    buckets.close()


def test_processes_sharing_a_folder_share_the_limit(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[int] = ctx.Queue()
    procs = [ctx.Process(target=_spend, args=(str(tmp_path), 40, out)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    # a burst of one request and a refill of one per 100 s: one request in all, where
    # buckets of each process's own would allow one per process
    assert sum(out.get(timeout=10) for _ in procs) == 1
