"""Tracking benchmark driver: Conveyor vs MLflow (direct SQLite, and through `mlflow server`).

.venv/bin/python benchmarks/tracking/run.py [--quick]

Makes benchmarks/.envs/mlflow the first time, runs each contender as its own process,
one after the other, and writes results.md (or results-quick.md with --quick).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
ENV = HERE.parent / ".envs" / "mlflow"
DATA = HERE.parent / ".data" / "tracking"
MLFLOW_SPEC = "mlflow==3.17.*"


def ensure_mlflow() -> Path:
    python = ENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(ENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", MLFLOW_SPEC], check=True)
    return python


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def contender(command: list[str], log: Path, timeout: float) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(HERE), "OMP_NUM_THREADS": "1"}
    started = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    log.write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"{command[1]} failed (exit {proc.returncode}); see {log}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - started
    return result


class MlflowServer:
    """`mlflow server` on 127.0.0.1 with a SQLite backend, pinned to CPU 1 if possible."""

    def __init__(self, python: Path, work: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        command = [
            str(python.parent / "mlflow"),
            "server",
            "--backend-store-uri",
            f"sqlite:///{work / 'server.db'}",
            "--default-artifact-root",
            str(work / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--workers",
            "1",
        ]
        if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
            command = ["taskset", "-c", "1", *command]
        self.log = (work / "server.log").open("w")
        self.proc = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT)
        for _ in range(300):
            try:
                urllib.request.urlopen(f"{self.url}/health", timeout=1)
                return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise SystemExit(f"mlflow server did not start; see {work / 'server.log'}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="20,000 points; seconds, not minutes")
    ap.add_argument("--timeout", type=float, default=1800)
    args = ap.parse_args()
    points = 20_000 if args.quick else 100_000
    mlflow_calls = 300 if args.quick else 2_000  # one-per-call sample for MLflow
    steps = 2_000 if args.quick else 10_000
    mlflow_steps = 200 if args.quick else 1_000
    python = ensure_mlflow()
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    work = DATA / "runs" / stamp
    work.mkdir(parents=True)
    facts: dict[str, Any] = {"started": datetime.now(UTC), "load_start": load(), "loads": {}}
    results: dict[str, dict[str, Any]] = {}

    print(f"tracking benchmark: {points:,} points, logs in {work}", file=sys.stderr)
    facts["loads"]["conveyor"] = load()
    results["conveyor"] = contender(
        [
            str(ROOT / ".venv/bin/python"),
            str(HERE / "c_conveyor.py"),
            "--work",
            str(work / "conveyor"),
            "--points",
            str(points),
            "--overhead-steps",
            str(steps),
        ],
        work / "conveyor.log",
        args.timeout,
    )
    mlflow_common = [
        "--single-calls",
        str(mlflow_calls),
        "--points",
        str(points),
        "--overhead-steps",
        str(mlflow_steps),
    ]
    facts["loads"]["mlflow-sqlite"] = load()
    results["mlflow-sqlite"] = contender(
        [
            str(python),
            str(HERE / "c_mlflow.py"),
            "--uri",
            f"sqlite:///{work / 'mlflow-direct.db'}",
            *mlflow_common,
        ],
        work / "mlflow-sqlite.log",
        args.timeout,
    )
    server = MlflowServer(python, work)
    try:
        facts["loads"]["mlflow-server"] = load()
        client = ["taskset", "-c", "0"] if shutil.which("taskset") else []
        results["mlflow-server"] = contender(
            [*client, str(python), str(HERE / "c_mlflow.py"), "--uri", server.url, *mlflow_common],
            work / "mlflow-server.log",
            args.timeout,
        )
    finally:
        server.stop()
    facts["load_end"] = load()
    facts["finished"] = datetime.now(UTC)
    (work / "results.json").write_text(json.dumps(results, indent=2))
    from report import write_report

    output = HERE / ("results-quick.md" if args.quick else "results.md")
    write_report(output, results, facts, quick=args.quick, command=" ".join(["python", *sys.argv]))
    print(output.read_text())


if __name__ == "__main__":
    main()
