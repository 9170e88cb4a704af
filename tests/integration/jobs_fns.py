"""Functions the jobs tests run as function jobs (`--fn tests.integration.jobs_fns:NAME`)."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import time
from pathlib import Path
from types import FrameType

EXIT_PREEMPTED = 75


def show(**kwargs: object) -> None:
    print("kwargs", json.dumps(kwargs, sort_keys=True))
    print("attempt", os.environ["CONVEYOR_ATTEMPT"], "job", os.environ["CONVEYOR_JOB_ID"])


def checkpointing(
    state: str,
    events: str,
    name: str,
    steps: int = 40,
    step_s: float = 0.05,
    gate: str | None = None,
) -> int:
    """A trainer in miniature: on SIGTERM it saves its step and exits EXIT_PREEMPTED.

    With `gate`, it does not finish its last step until that file exists, so a test that
    stops it is never racing it to the end."""
    saved = Path(state)
    start = int(saved.read_text()) if saved.exists() else 0
    stop = False

    def on_term(signum: int, frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    run_id = os.environ["CONVEYOR_RUN_ID"]
    print(f"run {run_id} attempt {os.environ['CONVEYOR_ATTEMPT']} from step {start}", flush=True)
    _event(events, f"start {name}")
    step = start
    while step < steps or (gate is not None and not _opened(gate)):
        if stop:
            saved.write_text(str(step))
            _event(events, f"preempted {name}")
            print(f"preempted at step {step}", flush=True)
            return EXIT_PREEMPTED
        time.sleep(step_s)
        step = min(step + 1, steps)
    _event(events, f"end {name}")
    print("finished", flush=True)
    return 0


def exclusive(lock: str, marker: str, seconds: float = 0.0, gate: str | None = None) -> None:
    """Fails loudly (in `marker`) if another attempt of the job is running at the same time.
    Holds the lock for `seconds`, and with `gate` until that file exists as well."""
    with Path(lock).open("a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _event(marker, "OVERLAP")
            raise SystemExit(9) from None
        _event(marker, f"start {os.environ['CONVEYOR_ATTEMPT']}")
        print("holding the lock", flush=True)
        time.sleep(seconds)
        while gate is not None and not _opened(gate):
            time.sleep(0.05)
        _event(marker, f"end {os.environ['CONVEYOR_ATTEMPT']}")


def hog(mb: int) -> None:
    block = bytearray(mb << 20)
    for i in range(0, len(block), 4096):  # touch every page so it is resident
        block[i] = 1
    print("allocated", mb, "MB", flush=True)
    time.sleep(30)


def ddp_sum() -> None:
    """Joins the torchrun-style group from the environment and all-reduces its rank."""
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo")
    value = torch.tensor([float(dist.get_rank() + 1)])
    dist.all_reduce(value)
    print(f"rank {dist.get_rank()} of {dist.get_world_size()} sum {value.item():g}", flush=True)
    dist.destroy_process_group()


def _event(path: str, text: str) -> None:
    with Path(path).open("a") as f:
        f.write(text + "\n")


def _opened(gate: str) -> bool:
    return Path(gate).exists()


def tracked() -> None:
    """Opens a run tagged with its job, as a training script would."""
    from conveyor import Workspace

    with (
        Workspace.open() as ws,
        ws.runs.start(
            name="from-a-job",
            tags={"conveyor.job_id": os.environ["CONVEYOR_JOB_ID"]},
            system_metrics=False,
        ) as run,
    ):
        run.log_metric("loss", 0.5, step=1)
        print("run", run.id, flush=True)
