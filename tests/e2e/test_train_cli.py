"""`conveyor train ...` as a user runs it: digits images, wine table, a small text corpus."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Cli

ROOT = Path(__file__).parents[2]

DIGITS_SETUP = [
    "conveyor init my-project",
    "conveyor data ingest ../digits --name digits",
    "conveyor data dedupe digits@v1",
    "conveyor data split digits@latest --train 0.8 --val 0.1 --test 0.1 --stratify label --seed 0",
]


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tiny models on a shared machine: one intra-op thread each, or threads spin for cores."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def train_json(cli: Cli, cwd: Path, *args: str) -> dict[str, Any]:
    result = cli("train", *args, "--json", cwd=cwd)
    assert result.returncode == 0, result.stderr[-3000:]
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_image_classifier_on_digits_reports_val_accuracy(cli: Cli, tmp_path: Path) -> None:
    write = [sys.executable, str(ROOT / "examples" / "digits.py"), "digits"]
    subprocess.run(write, cwd=tmp_path, check=True, capture_output=True)
    project = tmp_path / "my-project"
    for line in DIGITS_SETUP:
        result = cli(
            *line.split()[1:], cwd=tmp_path if line.startswith("conveyor init") else project
        )
        assert result.returncode == 0, (line, result.stderr)
    result = cli(
        "train", "image-classifier", "--data", "digits@latest", "--epochs", "2", cwd=project
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Trained image-classifier on digits@v3" in result.stdout
    assert "val: accuracy" in result.stdout


def test_tabular_on_wine_with_a_split_then_preempt_and_resume(cli: Cli, tmp_path: Path) -> None:
    from sklearn.datasets import load_wine

    wine = load_wine()
    names = [n.replace("/", "_") for n in wine.feature_names]
    lines = [",".join([*names, "label"])]
    for row, target in zip(wine.data, wine.target, strict=True):
        lines.append(",".join([*(f"{v:g}" for v in row), str(wine.target_names[target])]))
    (tmp_path / "wine.csv").write_text("\n".join(lines) + "\n")
    assert cli("init", "ws").returncode == 0
    ws = tmp_path / "ws"
    assert cli("data", "ingest", "../wine.csv", "--name", "wine", cwd=ws).returncode == 0
    split = ("data", "split", "wine@latest", "--train", "0.7", "--val", "0.3", "--test", "0")
    assert cli(*split, "--stratify", "label", cwd=ws).returncode == 0

    report = train_json(cli, ws, "tabular", "--data", "wine@latest", "--target", "label",
                        "--epochs", "30")  # fmt: skip
    assert report["status"] == "finished" and report["eval_split"] == "val"
    assert report["metrics"]["accuracy"] > 0.8  # chance is about 0.4
    assert [c["class"] for c in report["per_class"]] == ["class_0", "class_1", "class_2"]
    assert report["tracked"] and report["checkpoint"]

    # a spot preemption: SIGTERM -> checkpoint -> exit 75; --resume carries on to the end
    args = ["tabular", "--data", "wine@latest", "--target", "label", "--epochs", "100000",
            "--max-steps", "800", "--batch-size", "8", "--checkpoint-every", "25"]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "train", *args, "--json"],
        cwd=ws, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    refs = ws / ".conveyor" / "objects" / "checkpoints"
    deadline = time.monotonic() + 120
    while not list(refs.glob("*/*.json"))[1:] and time.monotonic() < deadline:  # past the 1st
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 75, err[-3000:]
    preempted = json.loads(out)
    assert preempted["status"] == "preempted" and preempted["step"] < 800
    status = json.loads(cli("runs", "show", preempted["run_id"], "--json", cwd=ws).stdout)
    assert status["status"] == "preempted"
    resumed = train_json(cli, ws, *args, "--resume", preempted["run_id"])
    assert resumed["status"] == "finished" and resumed["step"] == 800
    assert resumed["run_id"] == preempted["run_id"]


TOPICS = {
    "sport": ["the striker scored a late goal", "the team won the championship final",
              "a record sprint at the olympic stadium", "the coach praised the defenders"],
    "food": ["slow roasted tomatoes with garlic", "a recipe for fresh pasta and basil",
             "the chef baked sourdough bread", "spicy noodle soup with ginger"],
    "weather": ["heavy rain and strong winds tonight", "a sunny morning with a light breeze",
                "snow is expected in the mountains", "thunderstorms will clear by evening"],
}  # fmt: skip


def test_text_classifier_on_offline_minilm(cli: Cli, tmp_path: Path) -> None:
    rng = random.Random(0)
    rows = []
    for label, sentences in TOPICS.items():
        for i in range(30):
            words = rng.choice(sentences).split()
            rng.shuffle(words)  # varied texts that keep their topic words
            rows.append({"text": " ".join(words[: rng.randint(3, len(words))]) + f" {i}",
                         "topic": label})  # fmt: skip
    (tmp_path / "texts.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert cli("init", "ws").returncode == 0
    ws = tmp_path / "ws"
    assert cli("data", "ingest", "../texts.jsonl", "--name", "texts", cwd=ws).returncode == 0
    report = train_json(cli, ws, "text-classifier", "--data", "texts@v1", "--text-column", "text",
                        "--target", "topic", "--epochs", "15", "--lr", "3e-3")  # fmt: skip
    assert report["eval_split"] == "all rows" and report["classes"] == ["food", "sport", "weather"]
    assert report["metrics"]["accuracy"] > 0.7  # chance is a third


def test_mistakes_get_one_line(cli: Cli, tmp_path: Path) -> None:
    assert cli("init", "ws").returncode == 0
    ws = tmp_path / "ws"
    result = cli("train", "tabular", "--data", "nothing@v1", "--target", "y", cwd=ws)
    assert result.returncode == 2 and result.stderr.startswith("error: ")
    result = cli("train", "image-classifier", "--data", "x", "--batch-size", "0", cwd=ws)
    assert result.returncode == 2 and "batch size must be >= 1" in result.stderr
