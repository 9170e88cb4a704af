"""A job's attempts log to one tracked run: CONVEYOR_RUN_ID is the run's id."""

from __future__ import annotations

import uuid

import pytest

from conveyor import Workspace
from conveyor.core.errors import InvalidRunInputError


def test_every_attempt_of_a_job_logs_to_the_same_run(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_id, job_id = uuid.uuid4().hex, uuid.uuid4().hex
    monkeypatch.setenv("CONVEYOR_RUN_ID", run_id)
    monkeypatch.setenv("CONVEYOR_JOB_ID", job_id)
    first = workspace.runs.start(name="train", params={"lr": 0.1}, system_metrics=False)
    first.log_metric("loss", 1.0, step=0)
    first.end(status="preempted")
    second = workspace.runs.start(name="train", params={"lr": 0.1}, system_metrics=False)
    second.log_metric("loss", 0.5)
    second.end()
    assert first.id == second.id == run_id
    info = workspace.runs.get(run_id)
    assert info.status == "finished"
    assert info.tags["conveyor.job_id"] == job_id
    assert workspace.runs.metric_history(run_id, "loss", max_points=None).values.tolist() == [
        1.0,
        0.5,
    ]


def test_an_explicit_run_id_must_be_a_uuid_hex(workspace: Workspace) -> None:
    with pytest.raises(InvalidRunInputError, match="32 lowercase hex"):
        workspace.runs.start(run_id="../etc", system_metrics=False)
