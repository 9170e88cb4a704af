"""Multi-worker (DDP) jobs on Ray: a Ray Train TorchTrainer whose workers each run the
job's entry point as a torchrun-style process.

Ray Train places the N workers (a placement group, `resources_per_worker`), picks the
backend (NCCL with GPUs, gloo without) and joins them in a process group. Each worker
then starts the job's own process with RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
MASTER_ADDR and a fresh MASTER_PORT (rank 0 picks it and broadcasts it over Ray's
group), so Conveyor's trainer (training/distributed.py), or any torchrun script, joins
its own group exactly as under torchrun. Limits, SIGTERM on preemption and output
capture are the single-process ones (JobProcess) on every rank.

The AttemptActor that owns the attempt runs `TorchTrainer.fit()` on a thread; workers
send it their output (`push`), ask it whether to stop (`wanted`) and report how their
process ended (`done`). The job's outcome is the worst rank's.
"""

from __future__ import annotations

import socket
import tempfile
import threading
import time
from typing import Any

from conveyor.compute.entry import Launch
from conveyor.compute.process import JobProcess, Outcome

_TEARDOWN_S = 60.0  # how long a finished attempt waits for Ray Train to release its workers
_SEVERITY = ("succeeded", "preempted", "stopped", "failed", "lost", "timed_out", "killed")


class WorkerGroupRun:
    """The coordinator of one multi-worker attempt, inside its AttemptActor."""

    def __init__(self, launch: Launch, actor: Any, grace_s: float) -> None:
        self.launch = launch
        self.actor = actor
        self.grace_s = grace_s
        self._lock = threading.Lock()
        self._output = bytearray()
        self._partial: dict[int, bytes] = {}
        self._outcomes: dict[int, Outcome] = {}
        self._wanted: tuple[str, str, float] | None = None
        self._error: str | None = None
        self._finished = threading.Event()
        self._all_done_at: float | None = None
        self._thread = threading.Thread(target=self._fit, name="conveyor-ray-train", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _fit(self) -> None:
        from ray.train import FailureConfig, RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer

        spec = self.launch.spec
        per_worker: dict[str, float] = {"CPU": spec.cpus}
        if spec.gpus:
            per_worker["GPU"] = float(spec.gpus)
        if spec.memory_mb:
            per_worker["memory"] = float(spec.memory_mb * 2**20)
        trainer = TorchTrainer(
            _worker,
            train_loop_config={"launch": self.launch, "actor": self.actor, "grace": self.grace_s},
            torch_config=TorchConfig(backend="nccl" if spec.gpus else "gloo"),
            scaling_config=ScalingConfig(
                num_workers=spec.workers, use_gpu=spec.gpus > 0, resources_per_worker=per_worker
            ),
            run_config=RunConfig(
                name=f"conveyor-{self.launch.job_id}-{self.launch.attempt}",
                storage_path=tempfile.gettempdir() + "/conveyor-ray-train",
                failure_config=FailureConfig(max_failures=0),
            ),
        )
        try:
            trainer.fit()
        except Exception as e:  # noqa: BLE001 - Ray Train's own failure, reported as the outcome
            self._error = str(e).strip().splitlines()[0][:300] if str(e).strip() else repr(e)
        finally:
            self._finished.set()

    # -- the scheduler's calls (through the actor) ------------------------------------------

    def step(self) -> tuple[bytes, Outcome | None]:
        with self._lock:
            output, self._output = bytes(self._output), bytearray()
            all_done = len(self._outcomes) == self.launch.spec.workers
            if all_done and self._all_done_at is None:
                self._all_done_at = time.monotonic()
            if not self._finished.is_set() and not self._teardown_overdue():
                # Wait for Ray Train's own teardown: it removes the workers' placement
                # group, which killing this actor does not (the group belongs to the
                # scheduler's Ray job and would hold its CPUs until that job ends).
                return output, None
            for rank, rest in sorted(self._partial.items()):
                output += _prefixed(rank, rest + b"\n")
            self._partial.clear()
            return output, self._outcome()

    def _teardown_overdue(self) -> bool:
        started = self._all_done_at
        return started is not None and time.monotonic() - started > _TEARDOWN_S

    def _outcome(self) -> Outcome:
        workers = self.launch.spec.workers
        if len(self._outcomes) < workers:
            why = self._error or "a worker ended without reporting"
            return Outcome("failed", None, f"Ray Train: {why}")
        rank, worst = max(self._outcomes.items(), key=lambda kv: _SEVERITY.index(kv[1].ending))
        if worst.ending == "succeeded":
            return Outcome("succeeded", 0, f"exit code 0 on all {workers} workers")
        return Outcome(worst.ending, worst.exit_code, f"rank {rank}: {worst.reason}")

    def stop(self, reason: str, grace_s: float) -> None:
        with self._lock:
            self._wanted = self._wanted or ("stop", reason, grace_s)

    def kill(self) -> None:
        with self._lock:
            self._wanted = ("kill", "killed", 0.0)

    # -- the workers' calls ------------------------------------------------------------------

    def push(self, rank: int, data: bytes) -> None:
        with self._lock:
            text = self._partial.pop(rank, b"") + data
            whole, _, rest = text.rpartition(b"\n")
            if whole or text.endswith(b"\n"):
                self._output += _prefixed(rank, whole + b"\n")
            if rest:
                self._partial[rank] = rest

    def wanted(self) -> tuple[str, str, float] | None:
        with self._lock:
            return self._wanted

    def done(self, rank: int, outcome: Outcome) -> None:
        with self._lock:
            self._outcomes[rank] = outcome


def _prefixed(rank: int, data: bytes) -> bytes:
    lines = data.split(b"\n")[:-1]
    return b"".join(f"[rank {rank}] ".encode() + line + b"\n" for line in lines)


def _worker(config: dict[str, Any]) -> None:
    """One Ray Train worker: run the job's process as rank N of a torchrun-style group."""
    import os

    import ray
    import ray.train
    import torch.distributed as dist

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    port = [_free_port() if rank == 0 else 0]
    dist.broadcast_object_list(port, src=0)  # over the group Ray Train made
    env = {
        "RANK": str(rank),
        "WORLD_SIZE": str(world),
        "LOCAL_RANK": str(context.get_local_rank()),
        "LOCAL_WORLD_SIZE": str(context.get_local_world_size()),
        "MASTER_ADDR": os.environ.get("MASTER_ADDR", "127.0.0.1"),
        "MASTER_PORT": str(port[0]),
    }
    launch: Launch = config["launch"]
    actor = config["actor"]
    process = JobProcess(launch, extra_env=env, grace_s=config["grace"])
    acted: set[str] = set()
    while True:
        outcome = process.poll()
        data = process.read()
        if outcome is not None:
            while more := process.read():
                data += more
            process.close()
        if data:  # waited for, so a threaded actor keeps each rank's output in order
            ray.get(actor.push.remote(rank, data))
        if outcome is not None:
            ray.get(actor.done.remote(rank, outcome))
            return
        wanted = ray.get(actor.wanted.remote())
        if wanted is not None and wanted[0] not in acted:
            acted.add(wanted[0])
            if wanted[0] == "kill":
                process.kill()
            else:
                process.stop(wanted[1], wanted[2])
        time.sleep(0.2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])
