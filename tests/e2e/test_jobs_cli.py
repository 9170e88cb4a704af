"""`conveyor jobs submit | ls | show | logs [-f] | cancel | worker` as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.e2e.conftest import Cli
from tests.e2e.test_workspace_cli import assert_one_line_error

REPO = Path(__file__).resolve().parents[2]


def _submit(cli: Cli, ws: Path, *args: str) -> str:
    done = cli("jobs", "submit", "--json", *args, cwd=ws)
    assert done.returncode == 0, done.stderr
    job = json.loads(done.stdout)
    assert job["state"] == "queued"
    return str(job["id"])


def test_submit_run_show_and_read_logs(cli: Cli, tmp_path: Path) -> None:
    assert cli("init", "ws").returncode == 0
    ws = tmp_path / "ws"
    command = _submit(
        cli,
        ws,
        "--cmd",
        "echo hello from $CONVEYOR_JOB_ID; exit 3",
        "--cpus",
        "1",
        "--priority",
        "5",
        "--retries",
        "1",
        "--backoff",
        "0s",
        "--time-limit",
        "10m",
        "--env",
        "GREETING=hi",
    )
    # the function runs in the repository, where `tests` imports from
    function = cli(
        "-w", str(ws), "jobs", "submit", "--fn", "tests.integration.jobs_fns:tracked", cwd=REPO
    )
    assert function.returncode == 0, function.stderr
    fn_id = cli("jobs", "ls", "--json", cwd=ws)
    listed = json.loads(fn_id.stdout)
    assert [j["state"] for j in listed] == ["queued", "queued"]
    tracked = listed[0]["id"]
    recipe = _submit(cli, ws, "--recipe", "image-classifier", "--", "--data", "nothing@latest")
    # a command after --, as `ray job submit` takes one: each word stays one argument
    argv = "import sys; print('argv', sys.argv[1:])"
    words = _submit(cli, ws, "--cpus", "1", "--", sys.executable, "-c", argv, "--lr", "0.1 $HOME")

    worker = cli("jobs", "worker", "--until-idle", "--grace", "2s", cwd=ws)
    assert worker.returncode == 0, worker.stderr

    shown = cli("jobs", "show", command[:8], cwd=ws)
    assert shown.returncode == 0, shown.stderr
    for text in ("failed: exit code 3 (after 2 attempts)", "attempts 2", "of device time", "$"):
        assert text in shown.stdout, (text, shown.stdout)
    logs = cli("jobs", "logs", command, cwd=ws).stdout
    assert logs.count(f"hello from {command}") == 2

    run_shown = json.loads(cli("jobs", "show", tracked, "--json", cwd=ws).stdout)
    assert run_shown["state"] == "succeeded", cli("jobs", "logs", tracked, cwd=ws).stdout
    assert run_shown["tracked_run"] is not None
    assert f"run {run_shown['tracked_run']}" in cli("jobs", "logs", tracked, cwd=ws).stdout
    assert run_shown["tracked_run"][:8] in cli("jobs", "show", tracked, cwd=ws).stdout

    # a recipe job is `conveyor train RECIPE ARGS`: here it fails on the missing dataset
    recipe_job = json.loads(cli("jobs", "show", recipe, "--json", cwd=ws).stdout)
    assert recipe_job["state"] == "failed" and recipe_job["exit_code"] == 2
    assert "nothing" in cli("jobs", "logs", recipe, cwd=ws).stdout

    assert json.loads(cli("jobs", "show", words, "--json", cwd=ws).stdout)["state"] == "succeeded"
    assert "argv ['--lr', '0.1 $HOME']" in cli("jobs", "logs", words, cwd=ws).stdout

    table = cli("jobs", "ls", "--state", "failed", cwd=ws).stdout
    assert command[:8] in table and recipe[:8] in table and tracked[:8] not in table


def test_follow_a_running_job_and_cancel_another(cli: Cli, tmp_path: Path) -> None:
    assert cli("init", "ws").returncode == 0
    ws = tmp_path / "ws"
    talker = _submit(cli, ws, "--cmd", "echo one; sleep 1; echo two; sleep 1; echo three")
    sleeper = _submit(cli, ws, "--cmd", "sleep 60", "--priority", "-1")
    queued = _submit(cli, ws, "--cmd", "true", "--cpus", "64")
    cancelled = cli("jobs", "cancel", queued, cwd=ws)
    assert cancelled.returncode == 0 and "Cancelled" in cancelled.stdout
    worker = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "jobs", "worker", "--grace", "2s"],
        cwd=ws,
        env={**os.environ},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        followed = cli("jobs", "logs", "-f", talker, cwd=ws)
        assert followed.returncode == 0, followed.stderr
        assert [
            line for line in followed.stdout.splitlines() if not line.startswith("[conveyor]")
        ] == ["one", "two", "three"]
        assert "job succeeded" in followed.stdout
        # with one core the sleeper starts only once the talker is done: wait until it runs
        deadline = time.monotonic() + 120
        while json.loads(cli("jobs", "show", sleeper, "--json", cwd=ws).stdout)["state"] != (
            "running"
        ):
            assert time.monotonic() < deadline, "the sleeper never started"
            time.sleep(0.2)
        assert "cancelling" in cli("jobs", "cancel", sleeper, cwd=ws).stdout.lower()
        end = cli("jobs", "logs", "-f", sleeper, cwd=ws).stdout
        assert "job cancelled" in end
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(30)
    assert json.loads(cli("jobs", "show", sleeper, "--json", cwd=ws).stdout)["reason"] == (
        "cancelled by the user"
    )


def test_bad_input_is_one_clear_line(cli: Cli, tmp_path: Path) -> None:
    assert cli("init", "ws").returncode == 0
    ws = tmp_path / "ws"
    assert_one_line_error(
        cli("jobs", "submit", "--cmd", "true", "--fn", "a.b:c", cwd=ws), "exactly one entry point"
    )
    assert_one_line_error(
        cli("jobs", "submit", "--cmd", "true", "--time-limit", "soon", cwd=ws), "not a duration"
    )
    assert_one_line_error(
        cli("jobs", "submit", "--cmd", "true", "--", "echo", "hi", cwd=ws), "not both"
    )
    assert_one_line_error(
        cli("jobs", "submit", "--fn", "a.b:c", "--kwargs", "{x}", cwd=ws), "--kwargs is not JSON"
    )
    assert_one_line_error(cli("jobs", "show", "feedbeef", cwd=ws), "no job 'feedbeef'")
    assert_one_line_error(cli("jobs", "worker", "--executor", "mars", cwd=ws), "unknown executor")
