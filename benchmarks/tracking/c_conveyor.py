"""Conveyor contender: PY c_conveyor.py --work DIR --points N --overhead-steps S.

Prints one JSON line. Write times are what the training loop pays (calls return at
once); `durable_s` adds the wait until every point is in the SQLite store.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from workload import BATCH_KEYS, native_step_factory, overhead, python_step, timed, value

from conveyor import Workspace


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--overhead-steps", type=int, default=1000)
    args = ap.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    ws = Workspace.init(args.work / "ws")
    n = args.points
    out: dict[str, object] = {"contender": "conveyor", "points": n}

    # 1. one call per point
    run = ws.runs.start(name="single", system_metrics=False)
    calls_s, _ = timed(lambda: [run.log_metric("loss", value(i), step=i) for i in range(n)])
    flush_s, _ = timed(lambda: run.flush(timeout=600))
    run.end()
    out["single"] = {"calls": n, "points": n, "calls_s": calls_s, "durable_s": calls_s + flush_s}

    # 2. batched: log_metrics with 100 keys per call, one call per step
    keys = [f"m{k:03d}" for k in range(BATCH_KEYS)]
    steps = n // BATCH_KEYS
    batched = ws.runs.start(name="batched", system_metrics=False)

    def log_batched() -> None:
        for s in range(steps):
            batched.log_metrics({k: value(s + j) for j, k in enumerate(keys)}, step=s)

    calls_s, _ = timed(log_batched)
    flush_s, _ = timed(lambda: batched.flush(timeout=600))
    batched.end()
    out["batched"] = {
        "calls": steps,
        "points": steps * BATCH_KEYS,
        "calls_s": calls_s,
        "durable_s": calls_s + flush_s,
    }

    # 3. read back the one-per-call metric: every point, and downsampled for a chart
    full_s, full = timed(lambda: ws.runs.metric_history(run.id, "loss", max_points=None))
    chart_s, chart = timed(lambda: ws.runs.metric_history(run.id, "loss", max_points=1000))
    assert len(full) == n and chart.total == n
    out["read"] = {
        "points": len(full),
        "full_s": full_s,
        "chart_s": chart_s,
        "chart_points": len(chart),
    }

    # 4. overhead of logging every step of a 1 ms step
    for name, step in (("python", python_step()), ("native", native_step_factory())):
        loop = ws.runs.start(name=f"loop-{name}", system_metrics=False)
        result = overhead(
            lambda i, metrics: loop.log_metrics(metrics, step=i),  # noqa: B023
            args.overhead_steps,
            step,
        )
        result["end_s"], _ = timed(loop.end)
        out[f"overhead_{name}"] = result
    ws.close()
    out["finished_at"] = time.time()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
