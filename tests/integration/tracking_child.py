"""A training process for the tracking crash tests: python tracking_child.py WS MODE.

Prints the run id first, then "ready" once its points had time to be flushed.
  flushed-then-hang   log 1,000 points, wait past a few flush intervals, then sleep
  raise               log 500 points and raise (no `with`: the atexit hook ends the run)
  with-then-hang      inside `with`, log 200 points, then sleep until signalled
"""

from __future__ import annotations

import sys
import time

from conveyor import Workspace

root, mode = sys.argv[1], sys.argv[2]
ws = Workspace.open(root)
run = ws.runs.start(name=mode, params={"mode": mode}, system_metrics=False, flush_every_s=0.1)
print(run.id, flush=True)

if mode == "flushed-then-hang":
    for step in range(1000):
        run.log_metric("loss", 1.0 / (step + 1), step=step)
    time.sleep(1.0)
    print("ready", flush=True)
    time.sleep(600)
elif mode == "raise":
    for step in range(500):
        run.log_metrics({"loss": 1.0 / (step + 1), "acc": step / 500}, step=step)
    raise RuntimeError("the model diverged")
elif mode == "with-then-hang":
    with run:
        for step in range(200):
            run.log_metric("loss", float(step), step=step)
        time.sleep(0.5)
        print("ready", flush=True)
        time.sleep(600)
