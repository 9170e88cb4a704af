"""A training process for the tracking crash tests: python tracking_child.py WS MODE.

Prints the run id first, then "ready" once the writer's own flushes stored its points
(read back from the store, however long that takes on this machine).
  flushed-then-hang   log 1,000 points, wait until they are stored, then sleep
  raise               log 500 points and raise (no `with`: the atexit hook ends the run)
  with-then-hang      inside `with`, log 200 points, wait until stored, sleep until signalled
"""

from __future__ import annotations

import sys
import time

from conveyor import Workspace

root, mode = sys.argv[1], sys.argv[2]
ws = Workspace.open(root)
run = ws.runs.start(name=mode, params={"mode": mode}, system_metrics=False, flush_every_s=0.1)
print(run.id, flush=True)


def ready_once_stored(points: int) -> None:
    """Print "ready" once the background writer stored every point (not `run.flush()`:
    the points must have gone out on the writer's own schedule)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        summary = ws.runs.get(run.id).metrics.get("loss")
        if summary is not None and summary.count == points:
            print("ready", flush=True)
            return
        time.sleep(0.05)
    sys.exit(f"{points} points not stored in 120 s")


if mode == "flushed-then-hang":
    for step in range(1000):
        run.log_metric("loss", 1.0 / (step + 1), step=step)
    ready_once_stored(1000)
    time.sleep(600)
elif mode == "raise":
    for step in range(500):
        run.log_metrics({"loss": 1.0 / (step + 1), "acc": step / 500}, step=step)
    raise RuntimeError("the model diverged")
elif mode == "with-then-hang":
    with run:
        for step in range(200):
            run.log_metric("loss", float(step), step=step)
        ready_once_stored(200)
        time.sleep(600)
