"""What happens to a job when one of its attempts ends: the rules, apart from the loop.

attempt ended     attempt state  job goes to
exit 0            succeeded      succeeded
exit != 0         failed         queued after backoff x 2^(n-1) while retries last, else failed
worker lost       lost           like a failure (counts against retries)
over time limit   timed_out      timed_out (final: a retry would time out again)
over memory       killed         killed (final)
SIGTERM by us     preempted      queued at once, not counted (preemption, worker stop)
exit 75 itself    preempted      queued at once, not counted
cancelled         cancelled      cancelled
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from conveyor.compute.process import Outcome
from conveyor.compute.records import JobRecord
from conveyor.compute.spec import JobSpec

StopWhy = Literal["cancel", "preempt", "shutdown"]
STOP_REASONS: dict[StopWhy, str] = {
    "cancel": "cancelled by the user",
    "preempt": "preempted by a higher-priority job",
    "shutdown": "its worker was stopped",
}


def settlement(
    job: JobRecord, spec: JobSpec, number: int, outcome: Outcome, stopping: StopWhy | None
) -> tuple[str, dict[str, object], str]:
    """(attempt state, the job row's new values, the log line) for an ended attempt."""
    attempt_state, job_state, reason, delay = _next_state(outcome, stopping)
    now = datetime.now(UTC)
    failures = job.failures + (1 if attempt_state in ("failed", "lost") else 0)
    if job_state == "queued" and attempt_state in ("failed", "lost"):
        if failures > spec.retries:
            job_state = "failed"
            reason = f"{reason} (after {number} attempts)" if number > 1 else reason
        else:
            delay = spec.backoff_s * 2 ** (failures - 1)
            reason = f"{reason}; retry {failures} of {spec.retries}"
    if job.cancel_requested and job_state == "queued":
        job_state, reason, delay = "cancelled", "cancelled by the user", 0.0
    values: dict[str, object] = {
        "state": job_state,
        "reason": reason,
        "exit_code": outcome.exit_code,
        "failures": failures,
        "worker_id": None,
        "not_before": now + timedelta(seconds=delay) if delay else None,
        "ended_at": now if job_state != "queued" else None,
    }
    then = f"requeued (retry in {delay:g} s)" if delay else "requeued"
    note = f"attempt {number} {attempt_state.replace('_', ' ')}: {outcome.reason}; " + (
        then if job_state == "queued" else f"job {job_state.replace('_', ' ')}"
    )
    return attempt_state, values, note


def _next_state(outcome: Outcome, stopping: StopWhy | None) -> tuple[str, str, str, float]:
    """(attempt state, job state, reason, retry delay) before retries are counted."""
    ending = outcome.ending
    if stopping == "cancel" and ending not in ("succeeded",):
        return "cancelled", "cancelled", "cancelled by the user", 0.0
    if ending == "stopped" or (ending == "preempted" and stopping is not None):
        return "preempted", "queued", STOP_REASONS[stopping or "preempt"], 0.0
    if ending == "preempted":
        return "preempted", "queued", outcome.reason, 0.0
    if ending == "succeeded":
        return "succeeded", "succeeded", "exit code 0", 0.0
    if ending in ("timed_out", "killed"):
        return ending, ending, outcome.reason, 0.0
    state = "lost" if ending == "lost" else "failed"
    return state, "queued", outcome.reason, 0.0
