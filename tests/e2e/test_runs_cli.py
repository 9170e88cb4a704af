"""`conveyor runs ls/show/compare` as a user would run them after training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conveyor import Workspace
from tests.e2e.conftest import Cli
from tests.e2e.test_workspace_cli import assert_one_line_error


def _two_runs(root: Path) -> tuple[str, str]:
    ws = Workspace.open(root)
    ids = []
    for lr, acc in [(0.1, 0.91), (0.01, 0.97)]:
        with ws.runs.start(
            name=f"cnn-{lr}",
            experiment="digits",
            params={"lr": lr, "epochs": 3},
            tags={"team": "vision"},
            system_metrics=False,
        ) as run:
            for step in range(10):
                run.log_metrics({"loss": 1.0 / (step + 1), "acc": acc * step / 9}, step=step)
            run.record_usage(device="cpu", seconds=30.0, energy_kwh=0.001, cost_usd=0.002)
            run.log_artifact(b"weights", name="model.safetensors")
            run.note("baseline" if lr == 0.1 else "smaller lr")
        ids.append(run.id)
    ws.close()
    return ids[0], ids[1]


def test_ls_show_compare(cli: Cli, tmp_path: Path) -> None:
    assert cli("init", "ws").returncode == 0
    ws = tmp_path / "ws"
    first, second = _two_runs(ws)

    listed = cli("runs", "ls", "--json", cwd=ws)
    assert listed.returncode == 0, listed.stderr
    assert [r["id"] for r in json.loads(listed.stdout)] == [second, first]
    best = cli(
        "runs",
        "ls",
        "--filter",
        "metrics.acc >= 0.95",
        "--order-by",
        "metrics.acc desc",
        "--json",
        cwd=ws,
    )
    assert [r["name"] for r in json.loads(best.stdout)] == ["cnn-0.01"]
    table = cli("runs", "ls", "--experiment", "digits", cwd=ws)
    assert table.returncode == 0 and first[:8] in table.stdout and "finished" in table.stdout

    shown = cli("runs", "show", first[:8], cwd=ws)
    assert shown.returncode == 0, shown.stderr
    for text in (
        "cnn-0.1",
        "finished",
        "lr",
        "0.1",
        "loss",
        "model.safetensors",
        "baseline",
        "30.0 s of device time",
        "1 Wh",  # 0.001 kWh
        "$0.002",
    ):
        assert text in shown.stdout, text
    data = json.loads(cli("runs", "show", first, "--json", cwd=ws).stdout)
    assert data["metrics"]["loss"]["min"] == 0.1 and data["metrics"]["loss"]["count"] == 10
    assert data["total_usage"]["energy_kwh"] == 0.001 and data["status"] == "finished"

    compared = cli("runs", "compare", first, second, cwd=ws)
    assert compared.returncode == 0, compared.stderr
    lr_line = next(line for line in compared.stdout.splitlines() if " lr " in line)
    assert "≠" in lr_line and "0.01" in lr_line
    epochs_line = next(line for line in compared.stdout.splitlines() if "epochs" in line)
    assert "≠" not in epochs_line
    both = json.loads(cli("runs", "compare", first, second, "--json", cwd=ws).stdout)
    assert both["params"]["lr"]["differs"] and not both["params"]["epochs"]["differs"]
    assert both["metrics"]["acc"] == {"a": pytest.approx(0.91), "b": pytest.approx(0.97)}


def test_mistakes_are_one_line(cli: Cli, tmp_path: Path) -> None:
    assert cli("init", "ws").returncode == 0
    ws = tmp_path / "ws"
    assert_one_line_error(cli("runs", "show", "deadbeef", cwd=ws), "no run 'deadbeef'")
    assert_one_line_error(
        cli("runs", "ls", "--filter", "params.lr > 0.1 or x", cwd=ws), "'or' at position 16"
    )
    assert_one_line_error(cli("runs", "ls", "--order-by", "metrics.acc up", cwd=ws), "'up'")


def test_cost_sums_per_user_experiment_and_dataset(cli: Cli, tmp_path: Path) -> None:
    assert cli("init", "ws").returncode == 0
    ws_root = tmp_path / "ws"
    ws = Workspace.open(ws_root)
    for experiment, data, cost in [
        ("digits", "digits@v3", 0.25),
        ("digits", "digits@v3", 0.5),
        ("wine", "wine@v1", 2.0),
    ]:
        with ws.runs.start(
            experiment=experiment, params={"data": data}, system_metrics=False
        ) as run:
            run.record_usage(device="cpu", seconds=10.0, energy_kwh=0.001, cost_usd=cost)
            run.record_usage(device="gpu-l4", seconds=5.0, energy_kwh=0.01, cost_usd=cost)
    with ws.runs.start(experiment="scratch", system_metrics=False):
        pass  # a run that recorded no usage still counts, under its group
    ws.close()

    by_dataset = cli("runs", "cost", "--by", "dataset", "--json", cwd=ws_root)
    assert by_dataset.returncode == 0, by_dataset.stderr
    totals = {t["key"]: t for t in json.loads(by_dataset.stdout)}
    assert list(totals) == ["wine@v1", "digits@v3", "(none)"]  # most expensive first
    assert totals["digits@v3"]["runs"] == 2
    assert totals["digits@v3"]["cost_usd"] == pytest.approx(1.5)
    assert totals["digits@v3"]["device_seconds"] == {"cpu": 20.0, "gpu-l4": 10.0}
    assert totals["(none)"]["runs"] == 1 and totals["(none)"]["cost_usd"] == 0

    by_experiment = cli("runs", "cost", "--by", "experiment", cwd=ws_root)
    assert by_experiment.returncode == 0 and "wine" in by_experiment.stdout
    wine = next(line for line in by_experiment.stdout.splitlines() if "wine" in line)
    assert "cpu 10.0 s" in wine and "11 Wh" in wine and "$4.00" in wine  # units, not 1.1e-05
    by_user = json.loads(cli("runs", "cost", "--json", cwd=ws_root).stdout)
    assert len(by_user) == 1 and by_user[0]["runs"] == 4
    assert by_user[0]["cost_usd"] == pytest.approx(5.5)
    assert_one_line_error(cli("runs", "cost", "--by", "colour", cwd=ws_root), "user, experiment")
