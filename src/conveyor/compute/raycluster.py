"""The Ray executor: each attempt is a Ray actor holding the job's resources.

The actor (`AttemptActor`) reserves `num_cpus`, `num_gpus` and `memory` and runs the
job through the same JobProcess as the local executor, so limits, signals and output
behave alike; Ray sets `CUDA_VISIBLE_DEVICES` for the GPUs it gives the actor. The
scheduler polls the actor for output and the outcome. A job with `workers > 1` runs
as a Ray Train TorchTrainer (raytrain.py) coordinated by the same actor.

Actors are named `conveyor-job-<job>-<attempt>` in the "conveyor" namespace, so a
worker that takes over a lost job can find and kill a previous attempt that is still
alive (a Ray Client driver's actors outlive it for the reconnect grace period), and no
job runs twice at once. Only this module and raytrain.py import ray.
"""

from __future__ import annotations

import contextlib
import logging
import platform
import time
from typing import Any

import ray
from tenacity import retry, retry_if_exception_type, stop_after_attempt, wait_fixed

from conveyor.compute.cost import device_kind
from conveyor.compute.entry import Launch
from conveyor.compute.machine import Capacity
from conveyor.compute.process import JobProcess, Outcome, kill_process_group, process_alive
from conveyor.core.errors import ExecutorError

NAMESPACE = "conveyor"
_CALL_TIMEOUT_S = 30.0


def actor_name(job_id: str, attempt: int) -> str:
    return f"conveyor-job-{job_id}-{attempt}"


class AttemptActor:
    """Runs one attempt inside the Ray cluster (threaded: `step` and `stop` answer while
    a multi-worker job trains in the background)."""

    def __init__(self, launch: Launch, grace_s: float) -> None:
        self.launch = launch
        self.grace_s = grace_s
        self.host = platform.node()
        self.process: JobProcess | None = None
        self.group: Any = None  # raytrain.WorkerGroupRun for multi-worker jobs

    def start(self) -> tuple[str, int | None, float | None]:
        """Start the job here; returns (host, pid, pid start time)."""
        if self.launch.spec.workers > 1:
            from conveyor.compute.raytrain import WorkerGroupRun

            me = ray.get_runtime_context().current_actor
            self.group = WorkerGroupRun(self.launch, me, self.grace_s)
            self.group.start()
            return self.host, None, None
        self.process = JobProcess(self.launch, grace_s=self.grace_s)
        return self.host, self.process.pid, self.process.pid_started

    def step(self) -> tuple[bytes, Outcome | None]:
        if self.group is not None:
            return self.group.step()  # type: ignore[no-any-return]
        assert self.process is not None, "start() runs first"
        outcome = self.process.poll()
        output = self.process.read()
        if outcome is not None:
            while more := self.process.read():
                output += more
            self.process.close()
        return output, outcome

    def stop(self, reason: str, grace_s: float) -> None:
        if self.group is not None:
            self.group.stop(reason, grace_s)
        elif self.process is not None:
            self.process.stop(reason, grace_s)

    def kill(self) -> None:
        if self.group is not None:
            self.group.kill()
        elif self.process is not None:
            self.process.kill()

    # -- called back by the workers of a multi-worker job (raytrain.py) --------------------

    def push(self, rank: int, data: bytes) -> None:
        self.group.push(rank, data)

    def wanted(self) -> tuple[str, str, float] | None:
        return self.group.wanted()  # type: ignore[no-any-return]

    def done(self, rank: int, outcome: Outcome) -> None:
        self.group.done(rank, outcome)


_RemoteAttempt: Any = ray.remote(max_concurrency=8)(AttemptActor)  # type: ignore[call-overload]


class RayAttempt:
    """The scheduler's side of an AttemptActor."""

    def __init__(self, actor: Any, started: Any) -> None:
        self.actor = actor
        self._started: Any = started
        self.pid: int | None = None
        self.pid_started: float | None = None
        self.host = "ray (waiting for resources)"
        self._stopped: Outcome | None = None

    def step(self) -> tuple[bytes, Outcome | None]:
        if self._started is not None:
            if self._stopped is not None:
                return b"", self._stopped
            ready, _ = ray.wait([self._started], timeout=0)
            if not ready:
                return b"", None  # Ray is still finding room for it
            self.host, self.pid, self.pid_started = ray.get(self._started)
            self._started = None
        output, outcome = ray.get(self.actor.step.remote(), timeout=_CALL_TIMEOUT_S)
        if outcome is not None:
            with contextlib.suppress(Exception):
                ray.kill(self.actor)
        return output, outcome

    def stop(self, reason: str, grace_s: float) -> None:
        if self._started is not None:  # never started: nothing to save, just let go
            ray.kill(self.actor)
            self._stopped = Outcome("stopped", None, reason)
            return
        self.actor.stop.remote(reason, grace_s)

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            ray.kill(self.actor)


class RayExecutor:
    """Jobs on a Ray cluster: "ray://HOST:PORT" (Ray Client) or "auto"."""

    def __init__(self, address: str = "auto", grace_s: float = 10.0) -> None:
        self.name = address
        self.grace_s = grace_s
        self._owned = not ray.is_initialized()
        try:
            if self._owned:
                _connect(address)
            resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise ExecutorError(
                f"cannot reach the Ray cluster at {address} ({str(e).splitlines()[0][:200]})",
                "start one with `ray start --head`, or check the address (ray://HOST:10001)",
            ) from e
        kinds = [k.split(":", 1)[1] for k in resources if k.startswith("accelerator_type:")]
        self._gpu_kind = device_kind(kinds[0]) if len(kinds) == 1 else "gpu"
        self._capacity = Capacity(
            cpus=float(resources.get("CPU", 0.0)),
            gpus={i: self._gpu_kind for i in range(int(resources.get("GPU", 0)))},
            memory_mb=int(resources.get("memory", 0) // 2**20),
        )

    def capacity(self) -> Capacity:
        return self._capacity

    def device_name(self, gpu_indices: tuple[int, ...]) -> str:
        return self._gpu_kind if gpu_indices else "cpu"

    def launch(self, launch: Launch) -> RayAttempt:
        spec = launch.spec
        self.reap(launch.job_id, launch.attempt - 1, "", None, None)
        options: dict[str, Any] = {
            "name": actor_name(launch.job_id, launch.attempt),
            "namespace": NAMESPACE,
            "num_cpus": spec.cpus if spec.workers == 1 else 0,
            "num_gpus": spec.gpus if spec.workers == 1 else 0,
        }
        if spec.memory_mb and spec.workers == 1:
            options["memory"] = spec.memory_mb * 2**20
        # Ray hands out GPUs itself (and sets CUDA_VISIBLE_DEVICES in the actor)
        actor = _RemoteAttempt.options(**options).remote(
            Launch(launch.job_id, launch.attempt, spec, launch.env, ()), self.grace_s
        )
        return RayAttempt(actor, actor.start.remote())

    def reap(
        self, job_id: str, attempt: int, host: str, pid: int | None, pid_started: float | None
    ) -> None:
        """Kill any actor left from attempts up to `attempt` of this job, and wait until
        Ray has taken it down (ray.kill only asks)."""
        for number in range(1, attempt + 1):
            name = actor_name(job_id, number)
            deadline = time.monotonic() + _CALL_TIMEOUT_S
            while time.monotonic() < deadline:
                try:
                    ray.kill(ray.get_actor(name, namespace=NAMESPACE))
                except ValueError:
                    break  # no such actor (any more)
                time.sleep(0.2)
        if host == platform.node() and pid is not None and process_alive(pid, pid_started):
            kill_process_group(pid)

    def close(self) -> None:
        if self._owned and ray.is_initialized():
            ray.shutdown()


@retry(
    retry=retry_if_exception_type(ConnectionError),
    stop=stop_after_attempt(3),
    wait=wait_fixed(2),
    reraise=True,
)
def _connect(address: str) -> None:
    """Connect this process to the cluster; a busy head node may miss the first try."""
    ray.init(
        address=address, namespace=NAMESPACE, log_to_driver=False, logging_level=logging.WARNING
    )
