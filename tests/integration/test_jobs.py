"""Jobs end to end on both executors: a real local Ray cluster and local processes.

Every test that takes `executor` runs twice: on the local executor and on a Ray
cluster started once for the session (loopback only). Tests assert what a user sees:
final states, reasons, log text, and that no job ever ran twice at once.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor import Workspace
from conveyor.compute.executor import Executor
from conveyor.compute.job import Job
from conveyor.compute.local import LocalExecutor
from conveyor.compute.machine import Capacity
from conveyor.compute.spec import JobSpec
from tests.integration.conftest import RayCluster

REPO = Path(__file__).resolve().parents[2]
FNS = "tests.integration.jobs_fns"
FAST = ("--lease", "5s", "--grace", "2s", "--poll", "0.1")


@pytest.fixture(scope="session")
def ray_address(ray_cluster: RayCluster) -> str:
    return ray_cluster.client


@pytest.fixture(scope="session")
def ray_executor(ray_address: str) -> Iterator[Executor]:
    """One Ray Client connection for the session's in-process schedulers."""
    from conveyor.compute.raycluster import RayExecutor

    connected = RayExecutor(ray_address)
    yield connected
    connected.close()


@pytest.fixture(params=["local", "ray"])
def executor(request: pytest.FixtureRequest) -> str | Executor:
    """The executor a test runs on: "local" or the session's Ray cluster."""
    if request.param == "local":
        return "local"
    return request.getfixturevalue("ray_executor")  # type: ignore[no-any-return]


@pytest.fixture(params=["local", "ray"])
def executor_address(request: pytest.FixtureRequest) -> str:
    """What `conveyor jobs worker --executor` is given: "local" or the Ray address."""
    if request.param == "local":
        return "local"
    return str(request.getfixturevalue("ray_address"))


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    workspace = Workspace.init(tmp_path / "ws")
    yield workspace
    workspace.close()


@contextlib.contextmanager
def running(
    ws: Workspace, executor: str | Executor, grace_s: float = 5.0, lease_s: float = 30.0
) -> Iterator[None]:
    """A scheduler on a thread for the duration of the block."""
    stop = threading.Event()
    failure: list[BaseException] = []

    def loop() -> None:
        try:
            ws.jobs.run_scheduler(executor, stop=stop, poll_s=0.1, grace_s=grace_s, lease_s=lease_s)
        except Exception as e:  # noqa: BLE001 - re-raised in the test's thread below
            failure.append(e)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(60)
    if failure:
        raise failure[0]


def _fn(function: str, **kwargs: object) -> JobSpec:
    return JobSpec(function=f"{FNS}:{function}", kwargs=kwargs, workdir=str(REPO))


def _until(ws: Workspace, job_id: str, state: str, timeout: float = 60) -> Job:
    deadline = time.monotonic() + timeout
    while (job := ws.jobs.get(job_id)).state != state:
        assert time.monotonic() < deadline, f"job never reached {state}: {job.state} {job.reason}"
        time.sleep(0.1)
    return job


def _logs(ws: Workspace, job_id: str) -> str:
    return "".join(ws.jobs.logs(job_id))


# -- running, output, limits -------------------------------------------------------------


def test_jobs_run_with_their_output_and_environment(
    ws: Workspace, executor: str | Executor
) -> None:
    command = ws.jobs.submit(
        command='echo "job $CONVEYOR_JOB_ID attempt $CONVEYOR_ATTEMPT home $CONVEYOR_HOME"; '
        "echo to-stderr >&2",
        cpus=0.5,
    )
    function = ws.jobs.submit(_fn("show", x=1, names=["a", "b"]))
    with running(ws, executor):
        done = [ws.jobs.wait(j.id, 90) for j in (command, function)]
    assert [j.state for j in done] == ["succeeded", "succeeded"]
    out = _logs(ws, command.id)
    assert f"job {command.id} attempt 1 home {ws.root}" in out
    assert "to-stderr" in out
    assert 'kwargs {"names": ["a", "b"], "x": 1}' in _logs(ws, function.id)
    assert done[0].cost_usd() is not None  # priced from the price table


def test_failure_time_limit_and_memory_limit_have_clear_reasons(
    ws: Workspace, executor: str | Executor
) -> None:
    failing = ws.jobs.submit(command="echo trying; exit 3", retries=1, backoff_s=0, cpus=0.5)
    slow = ws.jobs.submit(command="sleep 20", time_limit_s=0.5, cpus=0.5)
    greedy = ws.jobs.submit(_fn("hog", mb=300), memory_mb=100, cpus=0.5)
    with running(ws, executor):
        failed, timed_out, killed = (ws.jobs.wait(j.id, 90) for j in (failing, slow, greedy))
    assert (failed.state, failed.reason) == ("failed", "exit code 3 (after 2 attempts)")
    assert [a.state for a in failed.history] == ["failed", "failed"]
    assert _logs(ws, failing.id).count("trying") == 2
    assert (timed_out.state, timed_out.reason) == ("timed_out", "timed out after 0.5 s")
    assert killed.state == "killed"
    assert killed.reason is not None and "over its 100 MB memory limit" in killed.reason


def test_a_job_that_can_never_fit_fails_at_once(ws: Workspace, executor: str | Executor) -> None:
    # without GPUs whatever this machine has (the Ray cluster is started with none)
    target: str | Executor = executor
    if executor == "local":
        target = LocalExecutor(Capacity(cpus=2, memory_mb=4096))
    job = ws.jobs.submit(command="true", gpus=1)
    with running(ws, target):
        done = ws.jobs.wait(job.id, 30)
    assert done.state == "failed" and done.attempts == 0
    assert "it needs 1 GPUs and the executor has 0" in (done.reason or "")


def test_cancel_a_queued_and_a_running_job(ws: Workspace, executor: str | Executor) -> None:
    queued = ws.jobs.submit(command="true")
    assert ws.jobs.cancel(queued.id).state == "cancelled"
    job = ws.jobs.submit(command="echo started; sleep 30", cpus=0.5)
    with running(ws, executor):
        _until(ws, job.id, "running")
        deadline = time.monotonic() + 60
        while "started" not in _logs(ws, job.id):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        ws.jobs.cancel(job.id[:8])
        done = ws.jobs.wait(job.id, 60)
    assert (done.state, done.reason) == ("cancelled", "cancelled by the user")
    assert ws.jobs.get(queued.id).reason == "cancelled before it started"
    assert ws.jobs.list(state="cancelled")[0].id == job.id


def test_preempted_job_is_requeued_and_resumes_from_its_checkpoint(
    ws: Workspace, executor: str | Executor, tmp_path: Path
) -> None:
    # Both executors offer 2 cores: the low-priority job takes both.
    target: str | Executor = executor
    if executor == "local":
        target = LocalExecutor(Capacity(cpus=2, memory_mb=4096))
    events = tmp_path / "events"
    gate = tmp_path / "low.may-end"  # low cannot run out of steps before it is preempted
    low = ws.jobs.submit(
        _fn(
            "checkpointing",
            state=str(tmp_path / "low.step"),
            events=str(events),
            name="low",
            gate=str(gate),
        ),
        cpus=2,
        priority=0,
    )
    with running(ws, target):
        _until(ws, low.id, "running")
        while "start low" not in (events.read_text() if events.exists() else ""):
            time.sleep(0.05)
        high = ws.jobs.submit(
            _fn(
                "checkpointing", state=str(tmp_path / "high.step"), events=str(events), name="high"
            ),
            cpus=1,
            priority=5,
        )
        high_done = ws.jobs.wait(high.id, 120)
        gate.touch()
        low_done = ws.jobs.wait(low.id, 120)
    assert (low_done.state, high_done.state) == ("succeeded", "succeeded")
    assert [a.state for a in low_done.history] == ["preempted", "succeeded"]
    assert low_done.history[0].reason == "preempted by a higher-priority job"
    assert events.read_text().split("\n")[:-1] == [
        "start low",
        "preempted low",
        "start high",
        "end high",
        "start low",
        "end low",
    ]
    out = _logs(ws, low.id)
    saved = int((tmp_path / "low.step").read_text())
    assert f"run {low.run_id} attempt 1 from step 0" in out
    assert f"run {low.run_id} attempt 2 from step {saved}" in out and saved > 0


def test_gpus_are_handed_out_by_index(ws: Workspace) -> None:
    machine = LocalExecutor(Capacity(cpus=4, gpus={0: "NVIDIA L4", 1: "NVIDIA L4"}, memory_mb=4096))
    jobs = [
        ws.jobs.submit(command='echo "gpus=[$CUDA_VISIBLE_DEVICES]"; sleep 0.5', gpus=1)
        for _ in range(2)
    ]
    cpu_only = ws.jobs.submit(command='echo "gpus=[$CUDA_VISIBLE_DEVICES]"')
    with running(ws, machine):
        done = [ws.jobs.wait(j.id, 60) for j in (*jobs, cpu_only)]
    assert [j.state for j in done] == ["succeeded"] * 3
    seen = sorted(_logs(ws, j.id).split("gpus=")[1].split("]")[0] + "]" for j in jobs)
    assert seen == ["[0]", "[1]"]
    assert "gpus=[]" in _logs(ws, cpu_only.id)
    assert done[0].history[0].device == "l4" and (done[0].cost_usd() or 0) > 0


def test_follow_streams_output_while_the_job_runs(workspace: Workspace, tmp_path: Path) -> None:
    # the job prints "second" only once the test has read "first" (or after 120 s)
    go = tmp_path / "go"
    job = workspace.jobs.submit(
        command=f"echo first; for i in $(seq 2400); do [ -e '{go}' ] && break; sleep 0.05; done; "
        "echo second"
    )
    with running(workspace, "local"):
        stream = workspace.jobs.logs(job.id, follow=True)
        first = next(text for text in stream if "first" in text)
        state_when_first = workspace.jobs.get(job.id).state
        go.touch()
        rest = "".join(stream)
    assert "second" not in first and state_when_first == "running"
    assert "second" in rest and "job succeeded" in rest


# -- many workers, crashes ------------------------------------------------------------------


def test_two_workers_never_take_the_same_job(workspace: Workspace) -> None:
    jobs = [workspace.jobs.submit(command=f"echo {i}", cpus=0.5) for i in range(8)]
    with running(workspace, "local"), running(workspace, "local"):
        done = [workspace.jobs.wait(j.id, 120) for j in jobs]
    assert [j.state for j in done] == ["succeeded"] * 8
    assert [j.attempts for j in done] == [1] * 8
    assert len({j.history[0].executor for j in done}) == 1


def _worker(root: Path, executor: str) -> subprocess.Popen[bytes]:
    """A `conveyor jobs worker` in its own session; on SIGABRT it prints every thread's
    stack (faulthandler), which `_stop` collects when a worker will not stop."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "conveyor",
            "-w",
            str(root),
            "jobs",
            "worker",
            "-x",
            executor,
            *FAST,
        ],
        cwd=REPO,
        env={**os.environ, "PYTHONFAULTHANDLER": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _stop(worker: subprocess.Popen[bytes], within_s: float = 60) -> int:
    """SIGTERM a worker and wait for it; if it hangs, fail with where it hangs."""
    worker.send_signal(signal.SIGTERM)
    try:
        _, err = worker.communicate(timeout=within_s)  # reads stderr so a full pipe cannot block it
    except subprocess.TimeoutExpired:
        worker.send_signal(signal.SIGABRT)
        _, err = worker.communicate(timeout=30)
        raise AssertionError(
            f"the worker did not stop within {within_s:g} s of SIGTERM:\n{err.decode()[-8000:]}"
        ) from None
    return worker.returncode


def test_kill_9_worker_mid_job_requeues_it_and_it_never_runs_twice(
    ws: Workspace, executor_address: str, tmp_path: Path
) -> None:
    assert ws.root is not None
    marker = tmp_path / "marker"
    gate = tmp_path / "may-end"  # attempt 1 cannot end before its worker is killed
    job = ws.jobs.submit(
        _fn(
            "exclusive",
            lock=str(tmp_path / "lock"),
            marker=str(marker),
            seconds=2.0,
            gate=str(gate),
        ),
        retries=1,
        backoff_s=0,
        cpus=0.5,
    )
    first = _worker(ws.root, executor_address)
    try:
        deadline = time.monotonic() + 90
        while "start 1" not in (marker.read_text() if marker.exists() else ""):
            assert first.poll() is None, first.stderr.read() if first.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.05)
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
        gate.touch()
        second = _worker(ws.root, executor_address)
        try:
            done = ws.jobs.wait(job.id, 120)
        finally:
            _stop(second)
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    assert done.state == "succeeded", done.reason
    assert [a.state for a in done.history] == ["lost", "succeeded"]
    assert "stopped answering" in (done.history[0].reason or "")
    assert "OVERLAP" not in marker.read_text()
    assert "end 2" in marker.read_text()


def test_stopping_a_worker_requeues_its_jobs(ws: Workspace, tmp_path: Path) -> None:
    assert ws.root is not None
    events = tmp_path / "events"
    gate = tmp_path / "may-end"  # the job cannot run out of steps before its worker stops
    job = ws.jobs.submit(
        _fn(
            "checkpointing", state=str(tmp_path / "s"), events=str(events), name="j", gate=str(gate)
        ),
    )
    worker = _worker(ws.root, "local")
    try:
        while "start j" not in (events.read_text() if events.exists() else ""):
            assert worker.poll() is None
            time.sleep(0.05)
        assert _stop(worker) == 0
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
    stopped = ws.jobs.get(job.id)
    assert stopped.state == "queued"
    assert [(a.state, a.reason) for a in stopped.history] == [
        ("preempted", "its worker was stopped")
    ]
    gate.touch()
    with running(ws, "local"):
        assert ws.jobs.wait(job.id, 60).state == "succeeded"


# -- multi-node DDP through Ray Train ------------------------------------------------------


def test_two_worker_ddp_job_runs_through_ray_train(ws: Workspace, ray_executor: Executor) -> None:
    job = ws.jobs.submit(_fn("ddp_sum"), workers=2, cpus=1)
    with running(ws, ray_executor):
        done = ws.jobs.wait(job.id, 240)
    out = _logs(ws, job.id)
    assert done.state == "succeeded", f"{done.reason}\n{out}"
    assert "[rank 0] rank 0 of 2 sum 3" in out
    assert "[rank 1] rank 1 of 2 sum 3" in out
    assert done.history[0].devices == 2
    _assert_cluster_cpus_released()


def _assert_cluster_cpus_released() -> None:
    """A finished DDP job gives its workers' CPUs back to the cluster (its placement
    group is removed), or the next job or Serve replica could never be placed."""
    import ray

    deadline = time.monotonic() + 60
    while ray.available_resources().get("CPU", 0) < ray.cluster_resources()["CPU"]:
        assert time.monotonic() < deadline, f"CPUs still held: {ray.available_resources()}"
        time.sleep(0.5)
