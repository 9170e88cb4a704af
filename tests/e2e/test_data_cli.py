"""`conveyor data ...` driven as a user would, including kill -9 in the middle of an ingest."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from conveyor import Workspace
from tests.datagen import csv_file, image_folder
from tests.e2e.conftest import Cli
from tests.e2e.test_workspace_cli import assert_one_line_error

EXAMPLES = Path(__file__).parents[2] / "examples"


def kill_9_after(command: list[str], cwd: Path, seconds: float) -> None:
    """Start a command, and kill -9 it and its worker processes after `seconds`."""
    proc = subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    time.sleep(seconds)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_digits_walkthrough(cli: Cli, tmp_path: Path) -> None:
    """The bundled example: ingest, dedupe, split, check, show, export."""
    subprocess.run(
        [sys.executable, str(EXAMPLES / "digits.py"), str(tmp_path / "digits")],
        check=True,
        capture_output=True,
    )
    assert cli("init", "ws").returncode == 0
    ws = tmp_path / "ws"

    made = cli("data", "ingest", str(tmp_path / "digits"), "--name", "digits", "--json", cwd=ws)
    assert made.returncode == 0, made.stderr
    report = json.loads(made.stdout)
    assert report["ref"] == "digits@v1" and report["rows"] == 1797 + 20
    assert report["duplicates"]["exact"] == 20
    assert [r["where"] for r in report["rejected"]] == ["0/truncated-0.png"]

    again = cli("data", "ingest", str(tmp_path / "digits"), "--name", "digits", cwd=ws)
    assert "Unchanged" in again.stdout and "digits@v1" in again.stdout

    assert cli("data", "dedupe", "digits@v1", cwd=ws).returncode == 0
    split = cli(
        "data", "split", "digits@latest", "--stratify", "label", "--seed", "7", "--json", cwd=ws
    )
    assert json.loads(split.stdout)["splits"]["train"] > 1400

    rules = EXAMPLES / "digits-rules.yaml"
    check = cli("data", "check", "digits@latest", "--rules", str(rules), cwd=ws)
    assert check.returncode == 0, check.stdout + check.stderr

    shown = json.loads(cli("data", "show", "digits@v3", "--json", cwd=ws).stdout)
    assert [s["operation"] for s in shown["lineage"]] == ["split", "dedupe", "ingest"]
    listing = json.loads(cli("data", "ls", "--json", cwd=ws).stdout)
    assert [d["ref"] for d in listing] == ["digits@v3"]
    log = json.loads(cli("data", "log", "digits", "--json", cwd=ws).stdout)
    assert [v["version"] for v in log] == [3, 2, 1]
    diff = json.loads(cli("data", "diff", "digits@v1", "digits@v2", "--json", cwd=ws).stdout)
    assert diff["rows_removed"] == 20
    exported = cli(
        "data", "export", "digits@v3", "--split", "test", "--out", str(tmp_path / "t"), cwd=ws
    )
    assert exported.returncode == 0, exported.stderr


def test_a_failing_check_exits_1(cli: Cli, tmp_path: Path) -> None:
    cli("init", "ws")
    ws = tmp_path / "ws"
    cli("data", "ingest", str(csv_file(tmp_path / "t.csv", 50)), "--name", "t", cwd=ws)
    rules = tmp_path / "rules.yaml"
    rules.write_text("rows: {min: 1000}\n")
    result = cli("data", "check", "t", "--rules", str(rules), cwd=ws)
    assert result.returncode == 1
    assert "rows" in result.stdout


def test_bad_input_exits_2_with_one_line(cli: Cli, tmp_path: Path) -> None:
    cli("init", "ws")
    ws = tmp_path / "ws"
    assert_one_line_error(cli("data", "ingest", "nope", "--name", "x", cwd=ws), "does not exist")
    (tmp_path / "a.xyz").write_text("?")
    assert_one_line_error(
        cli("data", "ingest", str(tmp_path / "a.xyz"), "--name", "x", cwd=ws), "unknown format"
    )
    csv = str(csv_file(tmp_path / "t.csv", 5))
    assert_one_line_error(cli("data", "ingest", csv, "--name", "../x", cwd=ws), "dataset name")
    cli("data", "ingest", csv, "--name", "t", cwd=ws)
    assert_one_line_error(cli("data", "show", "t@version3", cwd=ws), "bad version")
    assert_one_line_error(cli("data", "show", "t@v7", cwd=ws), "no dataset version t@v7")
    assert_one_line_error(cli("data", "filter", "t", "nosuchcolumn > 1", cwd=ws))


def test_kill_9_during_ingest_then_rerun_finishes(cli: Cli, tmp_path: Path) -> None:
    source = image_folder(tmp_path / "imgs", 6000, classes=5, size=48)  # ~3 s, ~8 shards
    cli("init", "ws")
    ws = tmp_path / "ws"
    command = [
        sys.executable,
        "-m",
        "conveyor",
        "data",
        "ingest",
        str(source),
        "--name",
        "pics",
        "--shard-mb",
        "1",
    ]
    rng = random.Random(3)
    for _ in range(3):
        kill_9_after(command, ws, rng.uniform(0.5, 2.5))
        listing = json.loads(cli("data", "ls", "--json", cwd=ws).stdout)
        if listing:  # it finished before the kill: a whole version, never half of one
            assert listing[0]["rows"] == 6000
    finished = cli(
        "data", "ingest", str(source), "--name", "pics", "--shard-mb", "1", "--json", cwd=ws
    )
    assert finished.returncode == 0, finished.stderr
    report = json.loads(finished.stdout)
    assert report["rows"] == 6000 and report["ref"] == "pics@v1"

    clean = tmp_path / "clean"
    cli("init", str(clean))
    reference = cli(
        "data", "ingest", str(source), "--name", "pics", "--shard-mb", "1", "--json", cwd=clean
    )
    assert reference.returncode == 0, reference.stderr
    with Workspace.open(ws) as recovered, Workspace.open(clean) as fresh:
        digests = [s.digest for s in recovered.datasets.get("pics@v1").shards()]
        assert digests == [s.digest for s in fresh.datasets.get("pics@v1").shards()]


def test_kill_9_during_a_prepare_step_then_rerun_finishes(cli: Cli, tmp_path: Path) -> None:
    source = image_folder(tmp_path / "imgs", 4000, classes=4, size=32)
    cli("init", "ws")
    ws = tmp_path / "ws"
    made = cli("data", "ingest", str(source), "--name", "pics", "--shard-mb", "1", cwd=ws)
    assert made.returncode == 0, made.stderr
    command = [sys.executable, "-m", "conveyor", "data", "dedupe", "pics@v1", "--near"]
    rng = random.Random(5)
    for _ in range(3):
        kill_9_after(command, ws, rng.uniform(0.5, 3.0))
        log = json.loads(cli("data", "log", "pics", "--json", cwd=ws).stdout)
        assert [v["version"] for v in log] in ([1], [2, 1])  # nothing half-made
    finished = cli("data", "dedupe", "pics@v1", "--near", "--json", cwd=ws)
    assert finished.returncode == 0, finished.stderr
    assert json.loads(finished.stdout)["ref"] == "pics@v2"  # run again: the same version
    with Workspace.open(ws) as w:
        assert [v.ref for v in w.datasets.log("pics")] == ["pics@v2", "pics@v1"]
