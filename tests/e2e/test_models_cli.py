"""`conveyor models ...` as a user drives it: train, list, inspect, gate, promote, export."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.conftest import Cli
from tests.trainingdata import band_images


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _ok(cli: Cli, cwd: Path, *args: str) -> str:
    result = cli(*args, cwd=cwd)
    assert result.returncode == 0, (args, result.stderr[-3000:])
    return result.stdout


def test_train_then_ls_show_lineage_used_by_gate_promote_export(cli: Cli, tmp_path: Path) -> None:
    band_images(tmp_path / "bands", 120)
    _ok(cli, tmp_path, "init", "proj")
    project = tmp_path / "proj"
    _ok(cli, project, "data", "ingest", "../bands", "--name", "bands")
    _ok(
        cli, project, "data", "split", "bands@v1", "--train", "0.6", "--val", "0.1", "--test", "0.3"
    )
    trained = _ok(cli, project, "train", "image-classifier", "--data", "bands@v2", "--epochs", "6")
    assert "registered bands-image-classifier@v1" in trained

    listing = _ok(cli, project, "models", "ls", "--json")
    [version] = json.loads(listing)
    assert version["ref"] == "bands-image-classifier@v1" and version["metrics"]["accuracy"] > 0.5
    run_id = version["run_id"]

    shown = _ok(cli, project, "models", "show", "bands-image-classifier@v1")
    assert "input: image float32 [None, 1, 8, 8]" in shown and "ONNX check" in shown
    lineage = json.loads(
        _ok(cli, project, "models", "lineage", "bands-image-classifier@v1", "--json")
    )
    assert lineage["run"]["id"] == run_id
    assert [s["ref"] for s in lineage["datasets"][0]["history"]] == ["bands@v2", "bands@v1"]
    assert "bands-image-classifier@v1" in _ok(cli, project, "data", "used-by", "bands@v2")

    gate = project / "gate.yaml"
    gate.write_text("checks:\n  - {kind: latency, p99_ms: 0.000001}\n")
    _ok(cli, project, "models", "gate", "set", "production", "--file", str(gate))
    refused = cli(
        "models", "promote", "bands-image-classifier@v1", "--to", "production", cwd=project
    )
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and "latency p99 <= 1e-06 ms" in refused.stderr
    gate.write_text(
        "checks:\n  - {kind: latency, p99_ms: 10000}\n"
        "  - {kind: metric, metric: accuracy, min: 0}\n"
    )
    _ok(cli, project, "models", "gate", "set", "production", "--file", str(gate))
    moved = _ok(
        cli, project, "models", "promote", "bands-image-classifier@v1", "--to", "production",
        "--reason", "first release",
    )  # fmt: skip
    assert "to v1 (passed gate production)" in moved
    history = _ok(cli, project, "models", "history", "bands-image-classifier")
    assert "first release" in history
    listed = cli("models", "ls", cwd=project, env={"COLUMNS": "80"}).stdout
    assert "production" in listed and "bands-image-classifier@v1" in listed  # never cut
    assert all(len(line.rstrip()) <= 80 for line in listed.splitlines()), listed
    assert "created" not in listed and "created" in _ok(cli, project, "models", "ls", "--wide")

    out = tmp_path / "edge"
    exported = _ok(
        cli, project, "models", "export", "bands-image-classifier@production",
        "--format", "onnx-int8", "--out", str(out),
    )  # fmt: skip
    assert "accuracy on bands@v2 (test)" in exported and "static int8" in exported
    assert (out / "model.onnx").is_file() and (out / "run.py").is_file()


def test_mistakes_are_one_line_errors_that_say_what_to_do(cli: Cli, tmp_path: Path) -> None:
    _ok(cli, tmp_path, "init", "proj")
    project = tmp_path / "proj"
    missing = cli("models", "show", "digits@v3", cwd=project)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1
    assert "register one with `conveyor train" in missing.stderr
    bad = cli("models", "promote", "digits@v1", "--to", "latest", cwd=project)
    assert bad.returncode == 2 and "cannot be an alias" in bad.stderr
    (project / "gate.yaml").write_text("checks: []\n")
    gate = cli("models", "gate", "set", "production", "--file", "gate.yaml", cwd=project)
    assert gate.returncode == 2 and "gate field checks" in gate.stderr
    assert "No models yet" in _ok(cli, project, "models", "ls")
