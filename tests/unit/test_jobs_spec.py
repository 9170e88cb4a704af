"""Job specs are checked when made; durations and sizes read as users write them."""

from __future__ import annotations

import pytest

from conveyor.compute.entry import Launch
from conveyor.compute.lifecycle import settlement
from conveyor.compute.process import Outcome
from conveyor.compute.records import JobRecord
from conveyor.compute.spec import JobSpec, parse_duration, parse_memory_mb
from conveyor.core.errors import JobSpecError


def test_exactly_one_entry_point() -> None:
    with pytest.raises(JobSpecError, match="exactly one entry point"):
        JobSpec()
    with pytest.raises(JobSpecError, match="exactly one entry point"):
        JobSpec(command="true", function="a.b:c")
    with pytest.raises(JobSpecError, match=r"package\.module:function"):
        JobSpec(function="not a function")
    with pytest.raises(JobSpecError, match="not JSON"):
        JobSpec(function="a.b:c", kwargs={"x": object()})


@pytest.mark.parametrize(
    ("field", "value", "hint"),
    [
        ("cpus", 0, "more than 0 cpus"),
        ("gpus", -1, "0 or more GPUs"),
        ("workers", 0, "at least 1 worker"),
        ("retries", -1, "0 or more retries"),
        ("memory_mb", 0, "512MB"),
        ("time_limit_s", 0, "30s or 10m"),
    ],
)
def test_bad_resources_say_what_to_fix(field: str, value: float, hint: str) -> None:
    with pytest.raises(JobSpecError, match=hint):
        JobSpec(command="true", **{field: value})  # type: ignore[arg-type]


def test_spec_round_trips_through_json() -> None:
    spec = JobSpec(function="pkg.mod:fit", kwargs={"lr": 0.1}, gpus=2, workers=2, env={"A": "1"})
    assert JobSpec.from_json(spec.to_json()) == spec
    assert spec.devices == ("gpu", 4.0) and spec.kind == "function"


def test_durations_and_sizes() -> None:
    assert parse_duration("30s") == 30 and parse_duration("10m") == 600
    assert parse_duration("1.5h") == 5400 and parse_duration("2") == 2
    assert parse_memory_mb("512MB") == 512 and parse_memory_mb("2G") == 2048
    assert parse_memory_mb("1.5GiB") == 1536 and parse_memory_mb("64") == 64
    with pytest.raises(JobSpecError, match="30s, 10m"):
        parse_duration("ten minutes")
    with pytest.raises(JobSpecError, match="512MB"):
        parse_memory_mb("lots")


def test_entry_points_become_command_lines() -> None:
    def argv(spec: JobSpec) -> list[str]:
        return Launch("j", 1, spec).argv(python="py")

    assert argv(JobSpec(command="python train.py")) == ["/bin/sh", "-c", "python train.py"]
    assert argv(JobSpec(function="a.b:c", kwargs={"x": 1})) == [
        "py",
        "-m",
        "conveyor.compute.call",
        "a.b:c",
        '{"x": 1}',
    ]
    assert argv(JobSpec(recipe="image-classifier", args=["--data", "digits@latest"])) == [
        "py",
        "-m",
        "conveyor",
        "train",
        "image-classifier",
        "--data",
        "digits@latest",
    ]


def _record(failures: int = 0, cancel: bool = False) -> JobRecord:
    return JobRecord(id="j", failures=failures, cancel_requested=cancel)


def test_failures_retry_with_doubling_backoff_then_fail() -> None:
    spec = JobSpec(command="false", retries=2, backoff_s=5)
    failed = Outcome("failed", 3, "exit code 3")
    state, values, note = settlement(_record(0), spec, 1, failed, None)
    assert (state, values["state"], values["reason"]) == (
        "failed",
        "queued",
        "exit code 3; retry 1 of 2",
    )
    assert "retry in 5 s" in note
    _, values, note = settlement(_record(1), spec, 2, failed, None)
    assert "retry in 10 s" in note
    _, values, _ = settlement(_record(2), spec, 3, failed, None)
    assert (values["state"], values["reason"]) == ("failed", "exit code 3 (after 3 attempts)")


def test_preemption_and_limits() -> None:
    spec = JobSpec(command="train", retries=0)
    stopped = Outcome("stopped", 75, "preempted by a higher-priority job")
    state, values, _ = settlement(_record(), spec, 1, stopped, "preempt")
    assert (state, values["state"], values["failures"]) == ("preempted", "queued", 0)
    timed = Outcome("timed_out", -15, "timed out after 30 s")
    assert settlement(_record(), spec, 1, timed, None)[1]["state"] == "timed_out"
    lost = Outcome("lost", None, "lost: its worker w stopped answering")
    assert settlement(_record(), spec, 1, lost, None)[1]["state"] == "failed"
    assert settlement(_record(cancel=True), JobSpec(command="x", retries=1), 1, lost, None)[1][
        "state"
    ] == ("cancelled")
