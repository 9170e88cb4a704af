"""The local executor: each attempt is a process group on this machine.

The scheduler has already placed the attempt (cores, memory, GPU indices); this only
starts the process with `CUDA_VISIBLE_DEVICES` set to the GPUs it was given.
"""

from __future__ import annotations

import platform

from conveyor.compute.cost import device_kind
from conveyor.compute.entry import Launch
from conveyor.compute.machine import Capacity, local_capacity
from conveyor.compute.process import JobProcess, Outcome, kill_process_group, process_alive
from conveyor.core.errors import ExecutorError


class LocalAttempt:
    """A JobProcess seen through the `Attempt` protocol."""

    def __init__(self, process: JobProcess) -> None:
        self.process = process
        self.pid: int | None = process.pid
        self.pid_started = process.pid_started
        self.host = platform.node()

    def step(self) -> tuple[bytes, Outcome | None]:
        outcome = self.process.poll()
        output = self.process.read()
        if outcome is not None:
            while more := self.process.read():
                output += more
            self.process.close()
        return output, outcome

    def stop(self, reason: str, grace_s: float) -> None:
        self.process.stop(reason, grace_s)

    def kill(self) -> None:
        self.process.kill()


class LocalExecutor:
    """Runs attempts as local processes; `capacity` may be narrowed (or faked in tests)."""

    name = "local"

    def __init__(self, capacity: Capacity | None = None, grace_s: float = 10.0) -> None:
        self._capacity = capacity or local_capacity()
        self.grace_s = grace_s

    def capacity(self) -> Capacity:
        return self._capacity

    def device_name(self, gpu_indices: tuple[int, ...]) -> str:
        if not gpu_indices:
            return "cpu"
        return device_kind(self._capacity.gpus.get(gpu_indices[0], "gpu"))

    def launch(self, launch: Launch) -> LocalAttempt:
        if launch.spec.workers > 1:
            raise ExecutorError(
                f"job {launch.job_id} asks for {launch.spec.workers} workers, and the local "
                "executor runs one process per job",
                "run it on Ray (--executor ray://HOST:PORT), or launch torchrun as its --cmd",
            )
        return LocalAttempt(JobProcess(launch, grace_s=self.grace_s))

    def reap(
        self, job_id: str, attempt: int, host: str, pid: int | None, pid_started: float | None
    ) -> None:
        if host == platform.node() and pid is not None and process_alive(pid, pid_started):
            kill_process_group(pid)

    def close(self) -> None:
        return None
