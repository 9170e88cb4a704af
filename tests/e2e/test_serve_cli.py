"""`conveyor serve`, `conveyor predict` and `conveyor keys` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import Cli
from tests.integration.serving_models import ServerProcess

ROOT = Path(__file__).parents[2]
MODEL = "digits-image-classifier"
SETUP = [
    "conveyor init my-project",
    "conveyor data ingest ../digits --name digits",
    "conveyor data split digits@latest --train 0.8 --val 0.1 --test 0.1 --stratify label --seed 0",
    "conveyor train image-classifier --data digits@latest --epochs 1",
    f"conveyor models promote {MODEL}@v1 --to production --reason first",
]


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def test_serve_the_trained_digits_model_and_predict_from_the_cli(cli: Cli, tmp_path: Path) -> None:
    write = [sys.executable, str(ROOT / "examples" / "digits.py"), "digits", "--corrupt", "0"]
    subprocess.run(write, cwd=tmp_path, check=True, capture_output=True)
    project = tmp_path / "my-project"
    for line in SETUP:
        cwd = tmp_path if line.startswith("conveyor init") else project
        result = cli(*line.split()[1:], cwd=cwd)
        assert result.returncode == 0, (line, result.stderr[-2000:])
    created = cli("keys", "create", "--name", "demo", "--scope", "predict", "--json", cwd=project)
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)["key"]
    images = [
        str(tmp_path / "digits" / "3" / "0003.png"),
        str(tmp_path / "digits" / "7" / "0007.png"),
    ]
    with ServerProcess([f"{MODEL}:production"], workspace=project) as server:
        env = {"CONVEYOR_URL": server.url, "CONVEYOR_API_KEY": key}
        table = cli("predict", MODEL, *images, env=env, cwd=project)
        assert table.returncode == 0, table.stderr
        assert f"{MODEL}@v1" in table.stdout and "0003.png" in table.stdout
        answer = cli("predict", MODEL, images[0], "--json", env=env, cwd=project)
        prediction = json.loads(answer.stdout)["predictions"][0]
        assert prediction["label"] in [str(i) for i in range(10)] and 0 < prediction["score"] <= 1
        refused = cli("predict", MODEL, images[0], env={"CONVEYOR_URL": server.url}, cwd=project)
        assert refused.returncode == 2 and "API key" in refused.stderr
        assert refused.stderr.count("\n") == 1
        bad = tmp_path / "not-an-image.png"
        bad.write_bytes(b"nope")
        unreadable = cli("predict", MODEL, str(bad), env=env, cwd=project)
        assert unreadable.returncode == 2 and "not a readable image" in unreadable.stderr


def test_keys_are_listed_without_secrets_and_revoked(cli: Cli, tmp_path: Path) -> None:
    assert cli("init", "ws").returncode == 0
    ws = tmp_path / "ws"
    made = cli("keys", "create", "--name", "ci", "--scope", "admin", "--rate-limit", "5", cwd=ws)
    assert made.returncode == 0 and made.stdout.startswith("cvk_")
    assert "not shown again" in made.stderr
    secret = made.stdout.strip()
    listed = cli("keys", "ls", "--json", cwd=ws)
    [row] = json.loads(listed.stdout)
    assert row["name"] == "ci" and row["scope"] == "admin" and row["state"] == "active"
    assert secret.split("_")[-1] not in listed.stdout
    revoked = cli("keys", "revoke", row["id"], cwd=ws)
    assert revoked.returncode == 0
    assert json.loads(cli("keys", "ls", "--json", cwd=ws).stdout)[0]["state"] == "revoked"


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["serve", "nope:production"], "no alias 'production'"),
        (["serve", "nope@v1", "--max-batch-size", "0"], "max_batch_size"),
        (["serve", "nope", "--auth", "maybe"], "auth"),
        (["keys", "revoke", "zzz"], "no API key"),
        (["keys", "create", "--scope", "root"], "unknown scope"),
        (["predict", "m", "--row", "[1, 2]", "--url", "http://127.0.0.1:9"], "cannot reach"),
        (["predict", "m", "--row", "{oops"], "not JSON"),
    ],
)
def test_mistakes_get_one_line(cli: Cli, tmp_path: Path, args: list[str], words: str) -> None:
    assert cli("init", "ws").returncode == 0
    result = cli(*args, cwd=tmp_path / "ws")
    assert result.returncode == 2, result.stderr
    assert words in result.stderr and result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1
