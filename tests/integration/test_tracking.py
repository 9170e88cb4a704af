"""Experiment tracking against real stores: SQLite + folder and PostgreSQL + S3.

Includes a run that lives through a PostgreSQL outage, on a throwaway server of its own.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from alembic import command
from sqlalchemy import text

from conveyor import Workspace
from conveyor.core.errors import InvalidFilterError, InvalidRunInputError, RunNotFoundError
from conveyor.storage.metadata import _alembic_config
from conveyor.tracking.persist import write_events
from conveyor.tracking.spool import Spool, read_events

CHILD = Path(__file__).with_name("tracking_child.py")


def test_start_log_end_round_trip(workspace: Workspace, tmp_path: Path) -> None:
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(os.urandom(50_000))
    with workspace.runs.start(
        name="cnn", experiment="digits", params={"lr": 0.1, "layers": [64, 10]}, tags={"team": "v"}
    ) as run:
        run.log_params({"batch_size": 64, "optimizer": "sgd"})
        for step in range(100):
            run.log_metric("loss", 1.0 / (step + 1), step=step)
        run.log_metrics({"acc": 0.91, "val/loss": float("nan")}, step=100)
        run.log_metric("lr_now", 0.1)  # no step: 0, then 1
        run.log_metric("lr_now", 0.05)
        run.set_tags({"team": "vision", "stage": 2})
        run.note("first try")
        run.record_usage(device="cpu", seconds=12.5, energy_kwh=0.0004, cost_usd=0.0002)
        run.record_usage(device="cpu", seconds=2.5, energy_kwh=0.0001, cost_usd=0.0001)
        run.record_usage(device="gpu", seconds=10.0, energy_kwh=0.002, cost_usd=0.01)
        digest = run.log_artifact(weights)
        run.log_artifact(b'{"classes": 10}', name="config.json", media_type="application/json")

    info = workspace.runs.get(run.id)
    assert info.status == "finished" and info.ended_at is not None
    assert info.name == "cnn" and info.experiment == "digits" and info.sessions == 1
    assert info.params == {
        "lr": "0.1",
        "layers": "[64, 10]",
        "batch_size": "64",
        "optimizer": "sgd",
    }
    assert info.tags == {"team": "vision", "stage": "2"}
    loss = info.metrics["loss"]
    assert (loss.last, loss.step, loss.min, loss.max, loss.count) == (0.01, 99, 0.01, 1.0, 100)
    assert info.metrics["acc"].last == 0.91
    assert np.isnan(info.metrics["val/loss"].last)
    assert info.metrics["lr_now"].step == 1 and info.metrics["lr_now"].last == 0.05
    assert info.usage["cpu"].seconds == 15.0
    assert info.usage["cpu"].cost_usd == pytest.approx(0.0003)
    assert info.total_usage.seconds == 25.0
    assert info.notes == ["first try"]
    assert [a.name for a in info.artifacts] == ["config.json", "model.safetensors"]
    stored = workspace.runs.artifact(run.id, "model.safetensors")
    assert hashlib.sha256(stored).hexdigest() == digest == info.artifacts[1].digest
    assert stored == weights.read_bytes()

    history = workspace.runs.metric_history(run.id[:8], "loss", max_points=None)
    assert history.steps.tolist() == list(range(100))
    assert history.values[0] == 1.0 and history.total == 100
    with pytest.raises(InvalidRunInputError, match="has ended"):
        run.log_metric("loss", 1.0)
    with pytest.raises(RunNotFoundError, match="acc, loss"):
        workspace.runs.metric_history(run.id, "accuracy")
    with pytest.raises(RunNotFoundError, match="conveyor runs ls"):
        workspace.runs.get("0000aaaa")


def test_search_and_order(workspace: Workspace) -> None:
    made = {}
    for name, lr, acc, team in [
        ("a", 0.001, 0.95, "vision"),
        ("b", 0.1, 0.91, "vision"),
        ("c", 0.5, 0.97, "vision"),
        ("d", 0.2, 0.99, "nlp"),
        ("e", 0.3, 0.50, "vision"),
    ]:
        with workspace.runs.start(
            name=name,
            experiment="digits" if name != "e" else "other",
            params={"lr": lr},
            tags={"team": team},
            system_metrics=False,
        ) as run:
            run.log_metric("acc", acc - 0.2, step=0)
            run.log_metric("acc", acc, step=1)  # search compares the latest value
        made[name] = run.id

    found = workspace.runs.search(
        "params.lr > 0.01 and metrics.acc >= 0.9 and tags.team = 'vision'",
        order_by=["metrics.acc desc"],
    )
    assert [r.name for r in found] == ["c", "b"]
    assert [r.name for r in workspace.runs.search(order_by=["params.lr"])] == list("abdec")
    assert [r.name for r in workspace.runs.search(experiment="other")] == ["e"]
    assert {r.name for r in workspace.runs.search("tags.team != 'vision'")} == {"d"}
    assert {r.name for r in workspace.runs.search("name like 'a%' and status = 'finished'")} == {
        "a"
    }
    assert [r.name for r in workspace.runs.search(limit=2)] == ["e", "d"]  # newest first
    with pytest.raises(InvalidFilterError, match="'or'"):
        workspace.runs.search("params.lr > 0.01 or metrics.acc > 0.9")


def test_a_million_points_downsampled_keep_their_extremes(workspace: Workspace) -> None:
    run = workspace.runs.start(name="long", system_metrics=False)
    run.end()
    n = 1_000_000
    rng = np.random.default_rng(3)
    values = np.cumsum(rng.normal(size=n)) * 1e-3 + 5.0
    values[424_242], values[777_777] = 1_000.0, -1_000.0  # a spike and a dip
    events = [("m", "loss", i, i, v, 1.7e9 + i) for i, v in enumerate(values.tolist())]
    ids: dict[str, int] = {}
    for start in range(0, n, 100_000):  # what the writer does, in its batch sizes
        write_events(workspace.meta, run.id, events[start : start + 100_000], ids)

    chart = workspace.runs.metric_history(run.id, "loss", max_points=1000)
    assert chart.total == n
    assert 900 <= len(chart) <= 1000
    assert chart.values.max() == 1_000.0 and chart.values.min() == -1_000.0
    assert chart.steps[np.argmax(chart.values)] == 424_242
    assert chart.steps[0] == 0 and chart.steps[-1] == n - 1
    assert chart.values[-1] == values[-1]
    assert np.all(np.diff(chart.steps) > 0)
    assert workspace.runs.get(run.id).metrics["loss"].count == n


def test_points_survive_the_move_to_packed_blocks(workspace: Workspace) -> None:
    """Migration 0007 folds points stored a row each (0006) into blocks, and back."""
    with workspace.runs.start(name="old", system_metrics=False) as run:
        for step in range(3_000):
            run.log_metric("loss", float("nan") if step == 7 else 1.0 / (step + 1), step=step)
        run.log_metric("acc", 0.5, step=1)
    before = workspace.runs.metric_history(run.id, "loss", max_points=None)
    config = _alembic_config()
    for target in ("0006", "head"):
        with workspace.meta.engine.begin() as conn:
            config.attributes["connection"] = conn
            (command.downgrade if target == "0006" else command.upgrade)(config, target)
        if target == "0006":
            with workspace.meta.engine.connect() as conn:
                rows = conn.execute(text("SELECT count(*) FROM run_metric_points")).scalar()
            assert rows == 3_001
    after = workspace.runs.metric_history(run.id, "loss", max_points=None)
    assert after.steps.tolist() == before.steps.tolist() == list(range(3_000))
    assert np.array_equal(after.values, before.values, equal_nan=True)
    assert after.wall_times.tolist() == before.wall_times.tolist()
    assert workspace.runs.get(run.id).metrics["loss"].count == 3_000
    assert workspace.runs.metric_history(run.id, "acc").values.tolist() == [0.5]


def _child(workspace: Workspace, mode: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(CHILD), str(workspace.root), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_kill_9_keeps_what_was_flushed_and_the_run_resumes(workspace: Workspace) -> None:
    proc = _child(workspace, "flushed-then-hang")
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read() if proc.stderr else ""
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    info = workspace.runs.get(run_id)
    assert info.status == "running"  # nothing ran after the kill
    assert info.metrics["loss"].count == 1000

    with workspace.runs.resume(run_id, system_metrics=False) as run:
        run.log_metric("loss", 0.0001)  # no step given: continues after the last one
    info = workspace.runs.get(run_id)
    assert (info.status, info.sessions) == ("finished", 2)
    assert info.metrics["loss"].step == 1000 and info.metrics["loss"].count == 1001


def test_an_exception_fails_the_run_with_every_point(workspace: Workspace) -> None:
    proc = _child(workspace, "raise")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "the model diverged" in err
    info = workspace.runs.get(out.split()[0])
    assert info.status == "failed"
    assert info.metrics["loss"].count == 500 and info.metrics["acc"].count == 500


def test_sigterm_marks_the_run_killed(workspace: Workspace) -> None:
    proc = _child(workspace, "with-then-hang")
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    info = workspace.runs.get(run_id)
    assert info.status == "killed" and info.metrics["loss"].count == 200


def test_spool_format_survives_a_torn_last_line(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "ab" * 16)
    spool.append([("m", "loss", 0, 0, 0.5, 1.0), ("p", {"lr": ["0.1", 0.1]})])
    spool.release()
    with spool.path.open("ab") as f:
        f.write(b'["m","loss",1,1,0.')  # a crash mid-line
    header, events = read_events(spool.path)
    assert header["run"] == "ab" * 16 and header["version"] == 1
    assert events == [("m", "loss", 0, 0, 0.5, 1.0), ("p", {"lr": ["0.1", 0.1]})]


# -- a PostgreSQL outage, on a server of this test's own ---------------------------------------


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if not found:
        pytest.fail("PostgreSQL binaries not found: run the tests with `make test`")
    return found[-1]


def _as_postgres(*command: str) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.getuid() == 0 else list(command)


class ThrowawayPostgres:
    """A PostgreSQL server in a temporary folder, stopped and started at will."""

    def __init__(self) -> None:
        self.bin = _pg_bin()
        self.data = Path(tempfile.mkdtemp(prefix="conveyor-trk-pg-"))
        if os.getuid() == 0:
            shutil.chown(self.data, "postgres")
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        subprocess.run(
            _as_postgres(
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
            ),
            check=True,
            capture_output=True,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run(
            _as_postgres(
                str(self.bin / "pg_ctl"),
                "-D",
                str(self.data),
                "-l",
                str(self.data / "server.log"),
                "-w",
                "-o",
                options,
                "start",
            ),
            check=True,
            capture_output=True,
        )

    def stop(self) -> None:
        subprocess.run(
            _as_postgres(
                str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"
            ),
            check=False,
            capture_output=True,
        )


@pytest.fixture
def own_postgres() -> Iterator[ThrowawayPostgres]:
    server = ThrowawayPostgres()
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.data, ignore_errors=True)


def test_postgres_outage_loses_and_duplicates_nothing(
    own_postgres: ThrowawayPostgres, tmp_path: Path
) -> None:
    ws = Workspace.init(tmp_path / "ws", meta=own_postgres.url)
    run = ws.runs.start(name="through-outage", system_metrics=False, flush_every_s=0.1)
    other = ws.runs.start(name="ends-during-outage", system_metrics=False, flush_every_s=0.1)
    for step in range(300):
        run.log_metrics({"loss": 1.0 / (step + 1), "acc": step / 900}, step=step)
    assert run.flush(timeout=30)

    own_postgres.stop()
    for step in range(300, 600):
        run.log_metrics({"loss": 1.0 / (step + 1), "acc": step / 900}, step=step)
        other.log_metric("loss", float(step), step=step)
    run.log_params({"after": "outage"})
    assert not run.flush(timeout=30)  # not stored: on the local spool instead
    assert other.end(wait_s=5) is False  # ended while the store is down: left spooled
    assert list((tmp_path / "ws" / ".conveyor" / "spool").glob("*.spool"))

    own_postgres.start()
    for step in range(600, 900):
        run.log_metrics({"loss": 1.0 / (step + 1), "acc": step / 900}, step=step)
    assert run.end(wait_s=30) is True

    later = Workspace.open(tmp_path / "ws")  # a later process: delivers the leftover spool
    for key in ("loss", "acc"):
        history = later.runs.metric_history(run.id, key, max_points=None)
        assert history.steps.tolist() == list(range(900))  # every point, exactly once
    info = later.runs.get(run.id)
    assert info.status == "finished" and info.params == {"after": "outage"}
    assert info.metrics["acc"].count == 900
    ended = later.runs.get(other.id)
    assert ended.status == "finished" and ended.metrics["loss"].count == 300
    assert not list((tmp_path / "ws" / ".conveyor" / "spool").glob("*.spool"))
    later.close()
    ws.close()
