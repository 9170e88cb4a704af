"""The Ray Serve backend on a real local Ray cluster (127.0.0.1): replicas answer."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.integration.serving_models import (
    REPO,
    SOURCE,
    ServerProcess,
    free_port,
    random_rows,
    tabular_model,
    write_model,
)

RAY = REPO / ".venv" / "bin" / "ray"


@pytest.fixture(scope="module")
def ray_head() -> Iterator[str]:
    """A single-node Ray cluster with 2 CPUs; yields its GCS address for drivers."""
    gcs = free_port()
    temp = tempfile.mkdtemp(prefix="crs", dir="/tmp")  # short: Ray's socket paths are long
    env = {
        **os.environ,
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONPATH": str(REPO),
    }
    command = [
        str(RAY if RAY.exists() else Path(sys.executable).with_name("ray")),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={gcs}",
        f"--dashboard-agent-listen-port={free_port()}",
        "--num-cpus=2",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--temp-dir={temp}",
    ]
    log = Path(temp) / "start.log"
    with log.open("w") as out:
        head = subprocess.Popen(
            command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", gcs), 1):
                break
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start failed:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield f"127.0.0.1:{gcs}"
    finally:
        _stop_group(head)
        shutil.rmtree(temp, ignore_errors=True)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        started = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        started = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for child in started:
        with contextlib.suppress(psutil.Error):
            child.kill()
    proc.wait(timeout=10)


def test_two_ray_replicas_serve_the_same_app(ray_head: str, tmp_path: Path) -> None:
    root = tmp_path / "models"
    write_model(root, tabular_model("iris", 1))
    args = [
        "iris:production",
        "--source",
        SOURCE,
        "--backend",
        "ray",
        "--replicas",
        "2",
        "--max-replicas",
        "3",
    ]
    env = {"RAY_ADDRESS": ray_head, "CONVEYOR_RAY_CPUS": "0.25"}
    with ServerProcess(args, models_root=root, env=env, ready_timeout=180) as proc:
        replicas = set()
        for _ in range(60):
            with httpx.Client(base_url=proc.url, timeout=30) as c:
                r = c.post("/predict/iris", json={"rows": random_rows(2)})
            assert r.status_code == 200, r.text
            assert r.json()["version"] == 1 and len(r.json()["predictions"]) == 2
            replicas.add(r.headers["x-served-by"])
            if len(replicas) == 2:
                break
        assert len(replicas) == 2
        bad = httpx.post(f"{proc.url}/predict/iris", json={"rows": [[1, 2]]})
        assert bad.status_code == 422 and bad.json()["field"] == "rows[0]"
        meta = httpx.get(f"{proc.url}/v2/models/iris").json()
        assert meta["inputs"][0]["shape"] == [-1, 4]
