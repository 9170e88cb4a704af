"""The trainer against real stores: learning, checkpoints, kill -9, SIGTERM, DDP, hooks."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load, load_file

from conveyor import Workspace
from conveyor.core.errors import CallbackError, CheckpointError, TrainingError
from conveyor.training import EXIT_PREEMPTED, CheckpointStore, EarlyStopping, fit, seed_everything
from tests.integration.train_worker import make_model
from tests.trainingdata import band_images

WORKER = Path(__file__).with_name("train_worker.py")
ROOT = Path(__file__).parents[2]


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tiny models on a shared machine: one intra-op thread each, or threads spin for cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class Recorder:
    """A stand-in for a tracked run: keeps what the trainer reports."""

    def __init__(self, run_id: str = "recorded-run") -> None:
        self.id = run_id
        self.params: dict[str, Any] = {}
        self.metrics: list[tuple[str, float, int | None]] = []
        self.usage: list[dict[str, Any]] = []
        self.statuses: list[str] = []

    def log_params(self, params: Mapping[str, Any]) -> None:
        self.params.update(params)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.metrics += [(k, v, step) for k, v in metrics.items()]

    def log_artifact(self, data: str | Path | bytes, name: str | None = None) -> None:
        raise AssertionError("the trainer logs no artifacts")

    def record_usage(self, device: str, seconds: float, energy_kwh: float, cost_usd: float) -> None:
        self.usage.append(
            {"device": device, "seconds": seconds, "kwh": energy_kwh, "usd": cost_usd}
        )

    def set_status(self, status: str) -> None:
        self.statuses.append(status)

    def end(self, status: str = "finished") -> None:
        self.statuses.append(f"end:{status}")


@pytest.fixture(scope="module")
def bands(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local workspace with `bands`: 192 learnable 8x8 images in 4 classes."""
    root = tmp_path_factory.mktemp("train")
    band_images(root / "imgs", 192)
    with Workspace.init(root / "ws") as ws:
        ws.datasets.ingest(root / "imgs", "bands")
    return root / "ws"


def loaders(ws: Workspace, batch: int = 16, **extra: Any) -> tuple[Any, Any]:
    version = ws.datasets.get("bands")
    kwargs: dict[str, Any] = {"columns": ["image", "label"], "image_layout": "CHW"}
    train = version.loader(batch_size=batch, seed=1, **kwargs, **extra)
    evaluation = version.loader(batch_size=64, shuffle=False, **kwargs)
    return train, evaluation


def test_fit_learns_reports_and_checkpoints(workspace: Workspace, tmp_path: Path) -> None:
    band_images(tmp_path / "imgs", 96)
    workspace.datasets.ingest(tmp_path / "imgs", "bands")
    train, evaluation = loaders(workspace)
    seed_everything(0)
    model = make_model(dropout=0.0)
    run = Recorder()
    result = fit(
        model,
        train,
        optimizer=torch.optim.AdamW(model.parameters(), lr=1e-2),
        eval=evaluation,
        run=run,
        workspace=workspace,
        epochs=6,
        checkpoint_every=10,
        log_every=5,
    )
    assert result.status == "finished" and result.exit_code == 0
    assert result.metrics["accuracy"] > 0.6  # chance is 0.25
    assert len(result.per_class["f1"]) == 4
    assert {k for k, _, _ in run.metrics} >= {"loss", "val_loss", "val_accuracy"}
    assert run.params["trainer.epochs"] == 6 and run.statuses == ["end:finished"]
    assert run.usage[0]["device"] == "cpu"  # usage is recorded; its size is a measurement
    # checkpoints every 10 steps and at the end, found by run id; each wait was measured
    store = CheckpointStore.of(workspace)
    assert store.steps(run.id) == [10, 20, 30, result.step]
    assert len(result.checkpoint_waits) == 4
    latest = store.latest(run.id)
    assert latest is not None and latest.manifest == result.checkpoint
    weights = store.load_weights(latest)
    for name, tensor in model.state_dict().items():
        assert torch.equal(weights[name], tensor)


def test_checkpoints_are_safetensors_and_json(bands: Path) -> None:
    with Workspace.open(bands) as ws:
        train, _ = loaders(ws)
        model = make_model()
        fit(model, train, optimizer=torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
            workspace=ws, run_id="formats", max_steps=3)  # fmt: skip
        info = CheckpointStore.of(ws).latest("formats")
        assert info is not None and info.step == 3
        state = load(ws.get_object(info.objects["state"]["digest"]))  # no pickle anywhere
        assert "rng/torch" in state and any(k.endswith("momentum_buffer") for k in state)
        trainer = json.loads(ws.get_object(info.objects["trainer"]["digest"]))
        assert trainer["loader"]["next_global_batch"] == 3 and trainer["step"] == 3


def run_worker(
    ws: Path, run_id: str, out: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(ws), run_id, str(out), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        # one thread: bit-identical results need the same thread count in every process
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
    )


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=180)
    return proc.returncode, out


def assert_same_weights(a: Path, b: Path) -> None:
    first, second = load_file(a), load_file(b)
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name


COMMON = ("--steps", "36", "--checkpoint-every", "5")


@pytest.fixture(scope="module")
def uninterrupted(bands: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Final weights of the worker's run when nothing stops it."""
    out = tmp_path_factory.mktemp("straight") / "weights"
    code, _ = finish(run_worker(bands, "straight", out, *COMMON))
    assert code == 0
    return out


@pytest.mark.parametrize("workers", [0, 2])
def test_kill_9_at_a_random_step_then_resume_is_bit_identical(
    bands: Path, uninterrupted: Path, tmp_path: Path, workers: int
) -> None:
    run_id, out, args = (
        f"killed-{workers}",
        tmp_path / "resumed",
        (*COMMON, "--workers", str(workers)),
    )
    at = random.Random(workers).randint(7, 30)  # somewhere in the run
    proc = run_worker(bands, run_id, out, *args, "--pause-at", str(at))
    assert proc.stdout is not None
    for _ in range(at):  # the last one is printed by the step that is held
        proc.stdout.readline()
    # checkpoints are written in the background: kill it once the last one due before
    # this step is stored (how long that takes is the machine's), so it resumes from it
    due = 5 * ((at - 1) // 5)
    with Workspace.open(bands) as ws:
        deadline = time.monotonic() + 60
        while due not in CheckpointStore.of(ws).steps(run_id):
            assert proc.poll() is None and time.monotonic() < deadline, f"no checkpoint {due}"
            time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with Workspace.open(bands) as ws:
        assert CheckpointStore.of(ws).steps(run_id)[-1] == due  # it died before the end
    code, out_text = finish(run_worker(bands, run_id, out, *args))
    assert code == 0 and "status finished 36" in out_text
    assert_same_weights(uninterrupted, out)


def test_sigterm_finishes_the_step_checkpoints_and_exits_preempted(
    bands: Path, uninterrupted: Path, tmp_path: Path
) -> None:
    # step 13 is held until the signal was sent: the notice arrives during that step
    go = tmp_path / "go"
    args = ("--pause-at", "13", "--resume-when", str(go))
    proc = run_worker(bands, "spot", tmp_path / "w", *COMMON, *args)
    assert proc.stdout is not None
    for _ in range(13):
        proc.stdout.readline()
    proc.send_signal(signal.SIGTERM)
    go.touch()
    code, out = finish(proc)
    assert code == EXIT_PREEMPTED and "status preempted 13" in out
    with Workspace.open(bands) as ws:
        steps = CheckpointStore.of(ws).steps("spot")
    assert steps == [5, 10, 13]  # on schedule, then the preemption checkpoint, off it
    code, out = finish(run_worker(bands, "spot", tmp_path / "w", *COMMON))
    assert code == 0 and "status finished 36" in out
    assert_same_weights(uninterrupted, tmp_path / "w")


def test_two_ddp_ranks_give_the_weights_of_one_process(bands: Path, tmp_path: Path) -> None:
    common = ("--steps", "15", "--dropout", "0", "--checkpoint-every", "100")
    code, _ = finish(run_worker(bands, "one", tmp_path / "one", *common, "--batch", "16"))
    assert code == 0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = str(s.getsockname()[1])
    procs = [
        run_worker(
            bands,
            "two",
            tmp_path / "two",
            *common,
            "--batch",
            "8",  # per rank: the same global batch of 16
            env={
                "RANK": str(r),
                "LOCAL_RANK": str(r),
                "WORLD_SIZE": "2",
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": port,
            },
        )
        for r in range(2)
    ]
    assert [finish(p)[0] for p in procs] == [0, 0]
    one, two = load_file(tmp_path / "one"), load_file(tmp_path / "two")
    for name in one:
        assert torch.allclose(one[name], two[name], atol=1e-6, rtol=1e-5), name
    with Workspace.open(bands) as ws:
        assert CheckpointStore.of(ws).steps("two") == [15]  # written once, by rank 0


def test_gradient_accumulation_matches_the_bigger_batch(bands: Path) -> None:
    weights = []
    with Workspace.open(bands) as ws:
        for batch, accumulate in ((32, 1), (16, 2)):
            train, _ = loaders(ws, batch=batch)
            seed_everything(0)
            model = make_model(dropout=0.0)
            opt = torch.optim.SGD(model.parameters(), lr=0.1)
            fit(model, train, optimizer=opt, accumulate=accumulate, max_steps=8, epochs=None)
            weights.append(model.state_dict())
    for name in weights[0]:
        assert torch.allclose(weights[0][name], weights[1][name], atol=1e-6), name


def test_early_stopping_stops_when_the_metric_stalls(bands: Path) -> None:
    with Workspace.open(bands) as ws:
        train, evaluation = loaders(ws)
        model = make_model()
        result = fit(
            model,
            train,
            optimizer=torch.optim.SGD(model.parameters(), lr=0.0),  # never improves
            eval=evaluation,
            eval_every=2,
            early_stopping=EarlyStopping(metric="accuracy", patience=2),
            max_steps=100,
            epochs=None,
        )
    assert result.status == "stopped_early" and result.step == 6  # best at 2, stalls at 4, 6


def test_a_failing_hook_is_named_in_the_error(bands: Path) -> None:
    def broken(model: torch.nn.Module, batch: Any) -> torch.Tensor:
        raise KeyError("pixels")

    run = Recorder()
    with Workspace.open(bands) as ws:
        train, _ = loaders(ws)
        model = make_model()
        with pytest.raises(CallbackError, match=r"step_fn raised KeyError at step 1: 'pixels'"):
            fit(
                model, train, optimizer=torch.optim.SGD(model.parameters()), step_fn=broken, run=run
            )
    assert run.statuses == ["end:failed"]


def test_bad_arguments_say_what_to_fix(bands: Path) -> None:
    model = make_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TrainingError, match="nowhere to write"):
        fit(model, [], optimizer=opt, checkpoint_every=5)
    with pytest.raises(TrainingError, match="accumulate must be"):
        fit(model, [], optimizer=opt, accumulate=0)
    with pytest.raises(TrainingError, match="unknown argument"):
        fit(model, [], optimizer=opt, max_step=3)


def test_a_tracked_run_is_preempted_then_resumed_with_ws_runs(
    workspace: Workspace, tmp_path: Path
) -> None:
    band_images(tmp_path / "imgs", 64)
    workspace.datasets.ingest(tmp_path / "imgs", "bands")
    train, evaluation = loaders(workspace)
    seed_everything(0)
    model = make_model(dropout=0.0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)

    def preempt_at_step_6(model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        if steps[0] == 5:
            os.kill(os.getpid(), signal.SIGTERM)  # the spot notice arrives during step 6
        steps[0] += 1
        logits = model(batch["image"].float() / 255)
        return torch.nn.functional.cross_entropy(logits, batch["label"])

    steps = [0]
    run = workspace.runs.start(name="bands-cnn", experiment="training-tests")
    result = fit(model, train, optimizer=optimizer, step_fn=preempt_at_step_6, run=run,
                 workspace=workspace, max_steps=12, epochs=None, log_every=2)  # fmt: skip
    assert result.status == "preempted" and result.step == 6
    assert workspace.runs.get(run.id).status == "preempted"

    resumed = workspace.runs.resume(run.id)
    result = fit(model, train, optimizer=optimizer, eval=evaluation, run=resumed,
                 workspace=workspace, max_steps=12, epochs=None, log_every=2)  # fmt: skip
    assert result.status == "finished" and result.step == 12 and result.steps_run == 6
    info = workspace.runs.get(run.id)
    assert info.status == "finished" and info.sessions == 2
    history = workspace.runs.metric_history(run.id, "loss")
    assert history.steps.tolist() == [2, 4, 6, 8, 10, 12]
    assert "val_accuracy" in info.metrics and info.params["trainer.max_steps"] == "12"
    assert set(info.usage) == {"cpu"}  # recorded per device type; amounts are measurements
    assert CheckpointStore.of(workspace).steps(run.id) == [6, 12]


def test_time_based_checkpoints_and_a_failed_upload(bands: Path) -> None:
    class FullDisk(CheckpointStore):
        def save(self, run_id: str, snapshot: Any, metadata: Any = None) -> Any:
            raise OSError(28, "No space left on device")

    with Workspace.open(bands) as ws:
        train, _ = loaders(ws)
        model = make_model()
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        fit(model, train, optimizer=opt, workspace=ws, run_id="timed", max_steps=3,
            epochs=None, checkpoint_minutes=1e-9)  # fmt: skip
        assert CheckpointStore.of(ws).steps("timed") == [1, 2, 3]
        run = Recorder()
        with pytest.raises(CheckpointError, match="No space left on device"):
            fit(model, train, optimizer=opt, checkpoints=FullDisk(ws.objects), run=run,
                max_steps=5, epochs=None, checkpoint_every=1)  # fmt: skip
        assert run.statuses == ["end:failed"]
