"""MLflow contender: PY c_mlflow.py --uri URI --single-calls N --points P --overhead-steps S.

`--uri` is `sqlite:///...` (MLflow writes the database itself) or `http://127.0.0.1:PORT`
(through `mlflow server`). Every MLflow call returns once the point is stored, so its
write time is also its durable time. `--async` uses MLflow's asynchronous logging
(`synchronous=False`) for the one-per-call and overhead workloads, and its durable time
includes `mlflow.flush_async_logging()`. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import logging
import time

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Metric
from workload import BATCH_KEYS, native_step_factory, overhead, python_step, timed, value

logging.getLogger("mlflow").setLevel(logging.ERROR)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--uri", required=True)
    ap.add_argument("--single-calls", type=int, default=2000)
    ap.add_argument("--points", type=int, default=100_000)
    ap.add_argument("--overhead-steps", type=int, default=200)
    ap.add_argument("--async", dest="use_async", action="store_true")
    args = ap.parse_args()
    mlflow.set_tracking_uri(args.uri)
    client = MlflowClient(args.uri)
    mlflow.set_experiment(f"bench-{time.time_ns()}")
    sync = not args.use_async
    out: dict[str, object] = {
        "contender": "mlflow",
        "uri": args.uri,
        "async": args.use_async,
        "mlflow": mlflow.__version__,
        "points": args.points,
    }

    # 1. one call per point (a sample of calls when the full count would take too long)
    with mlflow.start_run(run_name="single"):
        n1 = args.single_calls

        def single() -> None:
            for i in range(n1):
                mlflow.log_metric("loss", value(i), step=i, synchronous=sync)

        calls_s, _ = timed(single)
        flush_s, _ = timed(mlflow.flush_async_logging) if args.use_async else (0.0, None)
    out["single"] = {"calls": n1, "points": n1, "calls_s": calls_s, "durable_s": calls_s + flush_s}

    # 2. batched: log_batch of 1,000 metrics (10 steps x 100 keys) per call
    keys = [f"m{k:03d}" for k in range(BATCH_KEYS)]
    steps = args.points // BATCH_KEYS
    with mlflow.start_run(run_name="batched") as batched:
        rid = batched.info.run_id
        now = int(time.time() * 1000)

        def log_batched() -> int:
            calls = 0
            for first in range(0, steps, 10):
                metrics = [
                    Metric(k, value(s + j), now, s)
                    for s in range(first, min(first + 10, steps))
                    for j, k in enumerate(keys)
                ]
                client.log_batch(rid, metrics=metrics)
                calls += 1
            return calls

        calls_s, calls = timed(log_batched)
    out["batched"] = {
        "calls": calls,
        "points": steps * BATCH_KEYS,
        "calls_s": calls_s,
        "durable_s": calls_s,
    }

    # 3. a 100,000-point metric (written with log_batch), read back
    with mlflow.start_run(run_name="history") as history:
        rid = history.info.run_id
        now = int(time.time() * 1000)
        write_s, _ = timed(
            lambda: [
                client.log_batch(
                    rid,
                    metrics=[
                        Metric("loss", value(i), now, i)
                        for i in range(first, min(first + 1000, args.points))
                    ],
                )
                for first in range(0, args.points, 1000)
            ]
        )
    read_s, points = timed(lambda: client.get_metric_history(rid, "loss"))
    assert len(points) == args.points, len(points)
    out["read"] = {"points": len(points), "full_s": read_s, "write_s": write_s}

    # 4. overhead of logging every step of a 1 ms step
    for name, step in (("python", python_step()), ("native", native_step_factory())):
        with mlflow.start_run(run_name=f"loop-{name}"):
            result = overhead(
                lambda i, metrics: mlflow.log_metrics(metrics, step=i, synchronous=sync),
                args.overhead_steps,
                step,
            )
            result["end_s"], _ = timed(mlflow.flush_async_logging) if not sync else (0.0, None)
        out[f"overhead_{name}"] = result
    out["finished_at"] = time.time()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
