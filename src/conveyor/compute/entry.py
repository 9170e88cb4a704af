"""How a job's process is started, and the contract between it and the scheduler.

Environment every attempt gets (spec: JOBS.md):

    CONVEYOR_JOB_ID     the job's id (tag your run with it: tags={"conveyor.job_id": ...})
    CONVEYOR_RUN_ID     the job's run/checkpoint identity, the same on every attempt,
                        so a requeued job resumes from its own latest checkpoint
    CONVEYOR_ATTEMPT    1 for the first try, 2 after a retry, preemption or lost worker
    CONVEYOR_HOME       the workspace, so `Workspace.open()` in the job finds it
    CUDA_VISIBLE_DEVICES the GPUs assigned to the job ("" when it asked for none)

Exit codes: 0 succeeded; EXIT_PREEMPTED (75, EX_TEMPFAIL) means "I saved my state on
SIGTERM, run me again" (Conveyor's trainer exits with it); anything else failed.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field

from conveyor.compute.spec import JobSpec

EXIT_PREEMPTED = 75
JOB_ID_ENV = "CONVEYOR_JOB_ID"
RUN_ID_ENV = "CONVEYOR_RUN_ID"
ATTEMPT_ENV = "CONVEYOR_ATTEMPT"
HOME_ENV = "CONVEYOR_HOME"
RUN_TAG = "conveyor.job_id"  # the run tag that ties a tracked run to its job


@dataclass(frozen=True)
class Launch:
    """Everything an executor needs to start one attempt of a job, anywhere."""

    job_id: str
    attempt: int
    spec: JobSpec
    env: dict[str, str] = field(default_factory=dict)
    gpu_indices: tuple[int, ...] = ()

    def argv(self, python: str | None = None) -> list[str]:
        """The command line, built where it runs (its own Python interpreter)."""
        python = python or sys.executable
        spec = self.spec
        if spec.command is not None:
            return ["/bin/sh", "-c", spec.command]
        if spec.function is not None:
            return [python, "-m", "conveyor.compute.call", spec.function, json.dumps(spec.kwargs)]
        return [python, "-m", "conveyor", "train", str(spec.recipe), *spec.args]


def job_environment(
    job_id: str, run_id: str, attempt: int, home: str | None, spec: JobSpec
) -> dict[str, str]:
    """The variables of the contract above, on top of the spec's own `env`."""
    env = dict(spec.env)
    env.update({JOB_ID_ENV: job_id, RUN_ID_ENV: run_id, ATTEMPT_ENV: str(attempt)})
    if home is not None:
        env[HOME_ENV] = home
    env.setdefault("PYTHONUNBUFFERED", "1")  # output reaches the log as it is printed
    return env
