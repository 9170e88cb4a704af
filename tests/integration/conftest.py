"""One real local Ray cluster (127.0.0.1 only) for the whole session, shared by the jobs
and the serving suites: starting one costs ~10 s and stopping it as much again."""

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
from dataclasses import dataclass
from pathlib import Path

import psutil  # type: ignore[import-untyped]
import pytest

REPO = Path(__file__).resolve().parents[2]
RAY = REPO / ".venv" / "bin" / "ray"


@dataclass(frozen=True)
class RayCluster:
    gcs: str  # HOST:PORT, for drivers (RAY_ADDRESS)
    client: str  # ray://HOST:PORT, for Ray Client connections


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """A single-node Ray cluster with 2 CPUs and no GPUs; replicas and tasks can import
    `tests`."""
    gcs, client = _free_port(), _free_port()
    temp = tempfile.mkdtemp(prefix="cr", dir="/tmp")  # short: Ray's socket paths are long
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
        f"--ray-client-server-port={client}",
        f"--dashboard-agent-listen-port={_free_port()}",
        "--num-cpus=2",
        "--num-gpus=0",  # the same cluster on a machine with GPUs
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
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", client), 1):
                break
            if head.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"ray start failed:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield RayCluster(gcs=f"127.0.0.1:{gcs}", client=f"ray://127.0.0.1:{client}")
    finally:
        _stop_group(head)
        shutil.rmtree(temp, ignore_errors=True)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Stop `ray start --block` and everything it started (some actors leave its group)."""
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
