"""The Ray Serve backend on a real local Ray cluster (127.0.0.1): replicas answer, and
more start under load."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import RayCluster
from tests.integration.serving_models import (
    REPO,
    ROOT_ENV,
    SOURCE,
    ServerProcess,
    free_port,
    random_rows,
    tabular_model,
    write_model,
)


@pytest.fixture
def ray_head(ray_cluster: RayCluster) -> str:
    return ray_cluster.gcs


def test_ray_autoscales_up_on_queue_depth(ray_head: str, tmp_path: Path) -> None:
    """One replica, room for two: sustained load past the queue target adds the second,
    and both answer the same app. (One Serve app per test session: Ray Serve keeps the
    HTTP port of the first one started on a cluster.)"""
    root = tmp_path / "models"
    write_model(root, tabular_model("iris", 1))
    args = ["iris:production", "--source", SOURCE, "--backend", "ray"]
    args += ["--replicas", "1", "--max-replicas", "2", "--target-queue", "1"]
    env = {"RAY_ADDRESS": ray_head, "CONVEYOR_RAY_CPUS": "0.25"}
    with ServerProcess(args, models_root=root, env=env, ready_timeout=180) as proc:
        served_by: set[str] = set()
        stop = threading.Event()

        def client() -> None:
            with httpx.Client(base_url=proc.url, timeout=30) as c:
                while not stop.is_set():
                    r = c.post("/predict/iris", json={"rows": random_rows(64)})
                    assert r.status_code == 200, r.text
                    served_by.add(r.headers["x-served-by"])

        with ThreadPoolExecutor(8) as pool:
            clients = [pool.submit(client) for _ in range(8)]
            deadline = time.monotonic() + 150
            while len(served_by) < 2 and time.monotonic() < deadline:
                if any(c.done() for c in clients):
                    break  # a client failed: its error is raised below
                time.sleep(0.5)
            stop.set()
            for c in clients:
                c.result()
        assert len(served_by) == 2, f"still one replica after the load: {served_by}"
        bad = httpx.post(f"{proc.url}/predict/iris", json={"rows": [[1, 2]]})
        assert bad.status_code == 422 and bad.json()["field"] == "rows[0]"
        meta = httpx.get(f"{proc.url}/v2/models/iris").json()
        assert meta["inputs"][0]["shape"] == [-1, 4]
        # a second server asking for another port is told where Serve listens
        other = subprocess.run(
            [sys.executable, "-m", "conveyor", "serve", *args, "--port", str(free_port())],
            env={**os.environ, "PYTHONPATH": str(REPO), ROOT_ENV: str(root), **env},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert other.returncode == 2, other.stderr[-2000:]
        assert f"already listens on 127.0.0.1:{proc.port}" in other.stderr
        assert "Traceback" not in other.stderr
