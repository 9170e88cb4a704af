"""Serving benchmark: Conveyor vs LitServe, Ray Serve, PyTriton, BentoML and plain FastAPI.

    bash benchmarks/serving/setup.sh           # rival venvs (once)
    .venv/bin/python benchmarks/serving/run.py [--quick] [--only conveyor,fastapi]

Every server runs pinned to core 0 (taskset; one intra-op thread), wrk runs pinned to
core 1, both on 127.0.0.1. For each model (an MLP on 64 floats, the digits CNN) and
payload (1 and 32 rows per request) wrk drives 1, 8, 32 and 128 connections in a closed
loop for a whole number of seconds. Each contender gets a fresh server per model
(BentoML: per concurrency, since its adaptive batcher remembers what it learned);
concurrency goes up in order. Results: benchmarks/serving/results.md (or
results-quick.md) and the JSON beside it in benchmarks/.data/serving/.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
ENVS = REPO / "benchmarks" / ".envs"
DATA = REPO / "benchmarks" / ".data" / "serving"
PY = sys.executable
MODELS = ("mlp", "cnn")
ROWS = (1, 32)
CONNECTIONS = (1, 8, 32, 128)
SERVER_CORE, LOAD_CORE = "0", "1"
SOAK_REQUESTS = 100_000


@dataclass
class Contender:
    name: str
    command: Callable[[str, int], list[str]]
    path: str = "/predict/{model}"
    protocol: str = "rows"  # or "v2"
    env: Callable[[str], dict[str, str]] = lambda model: {}
    cwd: Path = HERE / "servers"
    fresh_per_concurrency: bool = False
    batches_from_metrics: bool = False
    note: str = ""


def env_python(name: str) -> str:
    return str(ENVS / name / "bin" / "python")


def weights(model: str) -> str:
    return str(DATA / f"{model}.safetensors")


def triton_env(model: str) -> dict[str, str]:
    """Triton's bundled server needs the running Python's own lib folder on its path."""
    libdir = subprocess.run(
        [
            env_python("sv-triton"),
            "-c",
            "import sysconfig; print(sysconfig.get_config_var('LIBDIR'))",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "LD_LIBRARY_PATH": f"{libdir}:{os.environ.get('LD_LIBRARY_PATH', '')}",
        "TRITON_PORTS": f"{free_port()},{free_port()}",
    }


def conveyor_serve(model: str, port: int, *options: str) -> list[str]:
    """`conveyor serve MODEL@v1` on the benchmark's workspace."""
    workspace = str(DATA / "ws")
    return [PY, "-m", "conveyor", "--workspace", workspace, "serve", f"{model}@v1",
            "--port", str(port), *options]  # fmt: skip


CONTENDERS = [
    Contender(
        "conveyor",
        lambda m, port: conveyor_serve(m, port),
        batches_from_metrics=True,
        note="defaults: max batch 64 rows, max wait 2 ms (adaptive), sheds past 1 s of "
        "queued work, ONNX Runtime, prediction log on (every request)",
    ),
    Contender(
        "conveyor-nolog",
        lambda m, port: conveyor_serve(m, port, "--log-sample", "0"),
        batches_from_metrics=True,
        note="as conveyor, with the prediction log off (--log-sample 0): what logging costs",
    ),
    Contender(
        "litserve",
        lambda m, port: [env_python("sv-litserve"), "litserve_server.py", m, weights(m), str(port)],
        note="max_batch_size=64, batch_timeout=2 ms, PyTorch",
    ),
    Contender(
        "ray-serve",
        lambda m, port: [env_python("sv-ray"), "ray_server.py", m, weights(m), str(port)],
        note="@serve.batch(max_batch_size=64, batch_wait_timeout_s=0.002), 1 replica, PyTorch",
    ),
    Contender(
        "pytriton",
        lambda m, port: [env_python("sv-triton"), "triton_server.py", m, weights(m), str(port)],
        path="/v2/models/{model}/infer",
        protocol="v2",
        env=triton_env,
        note="Triton dynamic batcher, max_queue_delay 2 ms, Python backend, PyTorch; v2 JSON",
    ),
    Contender(
        "bentoml",
        lambda m, port: [
            str(ENVS / "sv-bentoml" / "bin" / "bentoml"),
            "serve",
            "bentoml_server:Model",
            "--port",
            str(port),
            "--host",
            "127.0.0.1",
        ],
        env=lambda m: {"BENCH_MODEL": m, "BENCH_WEIGHTS": weights(m)},
        fresh_per_concurrency=True,
        note="batchable API, max_batch_size=64, adaptive batching (max_latency_ms=10000), "
        "access log off, PyTorch; fresh server per concurrency",
    ),
    Contender(
        "fastapi",
        lambda m, port: [env_python("sv-fastapi"), "fastapi_server.py", m, weights(m), str(port)],
        note="no batching: one forward pass per request, pydantic body, PyTorch",
    ),
    Contender(
        "noop",
        lambda m, port: [PY, "conveyor_noop.py", m, str(port)],
        note="ceiling: Conveyor's HTTP stack answering without a model",
    ),
]


@dataclass
class Point:
    model: str
    rows: int
    connections: int
    rows_per_s: float
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    mean_batch: float | None


@dataclass
class Result:
    name: str
    note: str
    cold_start_s: dict[str, float] = field(default_factory=dict)
    points: list[Point] = field(default_factory=list)
    memory: dict[str, Any] = field(default_factory=dict)
    failure: str | None = None


# -- data -----------------------------------------------------------------------------------


def prepare() -> None:
    """Weights (safetensors) for the rivals; the same modules registered for Conveyor."""
    if (DATA / "ready").exists():
        return
    import shutil

    import torch
    from safetensors.torch import save_file

    sys.path.insert(0, str(HERE))
    import nets

    from conveyor import Workspace
    from conveyor.registry.preprocessing import Preprocessing
    from conveyor.registry.signature import Signature, TensorSpec

    shutil.rmtree(DATA, ignore_errors=True)
    DATA.mkdir(parents=True)
    ws = Workspace.init(DATA / "ws")
    for name in MODELS:
        module = nets.build(name)
        save_file(
            {k: v.contiguous() for k, v in module.state_dict().items()},
            str(DATA / f"{name}.safetensors"),
        )
        signature = Signature(
            [TensorSpec("features", "float32", [None, nets.FEATURES])],
            [TensorSpec("logits", "float32", [None, nets.CLASSES])],
            [str(i) for i in range(nets.CLASSES)],
        )
        mv = ws.models.register(
            name,
            signature=signature,
            preprocessing=Preprocessing("none"),
            model=module,
            example_inputs=torch.rand(16, nets.FEATURES),
        )
        (DATA / f"{name}.onnx").write_bytes(mv.onnx_bytes())
    ws.close()
    rng = np.random.default_rng(0)
    for rows in ROWS:
        batch = rng.random((rows, 64)).round(4).tolist()
        (DATA / f"rows-{rows}.json").write_text(json.dumps({"rows": batch}))
        v2 = {
            "inputs": [
                {
                    "name": "features",
                    "shape": [rows, 64],
                    "datatype": "FP32",
                    "data": [v for row in batch for v in row],
                }
            ]
        }
        (DATA / f"v2-{rows}.json").write_text(json.dumps(v2))
    (DATA / "ready").touch()


# -- servers and load -----------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def server(c: Contender, model: str) -> Iterator[tuple[str, float, psutil.Process]]:
    port = free_port()
    tmp = tempfile.mkdtemp(prefix=f"sv-{c.name}-")
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TMPDIR": tmp,
        "BENCH_STATS": f"{tmp}/stats.json",
        # the caller's PYTHONPATH kept behind HERE: a worktree's src, not the editable install
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
        "RAY_USAGE_STATS_ENABLED": "0",
        "BENTOML_DO_NOT_TRACK": "True",
        **c.env(model),
    }
    log = Path(f"{tmp}/server.log").open("w")  # noqa: SIM115 - closed in finally
    start = time.perf_counter()
    proc = subprocess.Popen(
        ["taskset", "-c", SERVER_CORE, *c.command(model, port)],
        cwd=c.cwd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        cold = wait_ready(c, model, url, proc, start, Path(f"{tmp}/server.log"))
        yield url, cold, psutil.Process(proc.pid)
    finally:
        stop(proc)
        log.close()
        stats = Path(f"{tmp}/server.log").read_text()[-1500:]
        if os.environ.get("BENCH_VERBOSE"):
            print(stats)


def wait_ready(
    c: Contender,
    model: str,
    url: str,
    proc: subprocess.Popen[bytes],
    start: float,
    log: Path,
    timeout: float = 180,
) -> float:
    """Seconds from spawn to the first answered prediction (the cold start)."""
    body = (DATA / f"{'v2' if c.protocol == 'v2' else 'rows'}-1.json").read_bytes()
    target = url + c.path.format(model=model)
    while time.perf_counter() - start < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{c.name} exited {proc.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            r = httpx.post(
                target, content=body, headers={"content-type": "application/json"}, timeout=5
            )
            if r.status_code == 200:
                return time.perf_counter() - start
        time.sleep(0.05)
    raise RuntimeError(f"{c.name} not ready in {timeout} s: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        tree = psutil.Process(proc.pid).children(recursive=True)
    except psutil.Error:
        tree = []
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    for child in tree:  # Ray and Triton leave helpers outside the group
        with contextlib.suppress(psutil.Error):
            child.kill()


def wrk(url: str, body: Path, connections: int, seconds: int) -> dict[str, Any]:
    out = Path(tempfile.mkstemp(prefix="wrk-", suffix=".json")[1])
    env = {**os.environ, "BODY": str(body), "WRK_OUT": str(out)}
    command = [
        "taskset",
        "-c",
        LOAD_CORE,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(HERE / "bench.lua"),
        url,
    ]
    subprocess.run(command, env=env, check=True, capture_output=True, timeout=seconds + 60)
    result: dict[str, Any] = json.loads(out.read_text())
    out.unlink()
    return result


def batch_totals(c: Contender, url: str, proc: psutil.Process) -> tuple[float, float] | None:
    """(batches, rows) the server has run so far, from its metrics or its stats file."""
    if c.batches_from_metrics:
        text = httpx.get(f"{url}/metrics", timeout=10).text
        count = sum(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("conveyor_batch_rows_count")
        )
        total = sum(
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("conveyor_batch_rows_sum")
        )
        return count, total
    stats = Path(proc.environ().get("BENCH_STATS", ""))
    time.sleep(0.6)  # the stats thread writes twice a second
    if not stats.is_file():
        return None
    data = json.loads(stats.read_text())
    return float(data["batches"]), float(data["rows"])


def tree_rss_mb(proc: psutil.Process) -> float:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
    return total / 2**20


def measure(
    c: Contender, model: str, rows: int, conns: int, url: str, proc: psutil.Process, seconds: int
) -> Point:
    body = DATA / f"{'v2' if c.protocol == 'v2' else 'rows'}-{rows}.json"
    target = url + c.path.format(model=model)
    wrk(target, body, min(conns, 8), 1)  # warm-up, not measured
    before = batch_totals(c, url, proc)
    w = wrk(target, body, conns, seconds)
    after = batch_totals(c, url, proc)
    errors = w["connect"] + w["read"] + w["write"] + w["status"] + w["timeout"]
    ok = max(w["requests"] - w["status"], 0)
    duration = w["duration_us"] / 1e6
    mean_batch = None
    if before and after and after[0] > before[0]:
        mean_batch = (after[1] - before[1]) / (after[0] - before[0])
    return Point(
        model,
        rows,
        conns,
        ok * rows / duration,
        ok / duration,
        w["p50_us"] / 1000,
        w["p99_us"] / 1000,
        errors,
        mean_batch,
    )


def run_contender(c: Contender, seconds: int, conns: tuple[int, ...], soak: bool) -> Result:
    result = Result(c.name, c.note)
    try:
        for model in MODELS:
            if c.fresh_per_concurrency:
                for rows in ROWS:
                    for n in conns:
                        with server(c, model) as (url, cold, proc):
                            result.cold_start_s.setdefault(model, round(cold, 2))
                            result.points.append(measure(c, model, rows, n, url, proc, seconds))
                            print_point(c.name, result.points[-1])
            else:
                with server(c, model) as (url, cold, proc):
                    result.cold_start_s[model] = round(cold, 2)
                    for rows in ROWS:
                        for n in conns:
                            result.points.append(measure(c, model, rows, n, url, proc, seconds))
                            print_point(c.name, result.points[-1])
        if soak:
            result.memory = soak_memory(c)
    except Exception as e:  # noqa: BLE001 - one rival failing must not end the run
        result.failure = f"{type(e).__name__}: {str(e)[:500]}"
        print(f"{c.name}: FAILED {result.failure}", flush=True)
    return result


def soak_memory(c: Contender) -> dict[str, Any]:
    """RSS of the server's process tree after warm-up and after 100,000 requests (one row,
    32 connections), or as many as fit in 120 s for the slow ones."""
    with server(c, "mlp") as (url, _, proc):
        body = DATA / f"{'v2' if c.protocol == 'v2' else 'rows'}-1.json"
        target = url + c.path.format(model="mlp")
        probe = wrk(target, body, 32, 2)
        rss_start = tree_rss_mb(proc)
        rate = max(probe["requests"] / (probe["duration_us"] / 1e6), 1.0)
        seconds = int(min(120, max(2, SOAK_REQUESTS / rate + 1)))
        done = wrk(target, body, 32, seconds)
        rss_end = tree_rss_mb(proc)
    return {
        "requests": done["requests"] + probe["requests"],
        "rss_start_mb": round(rss_start),
        "rss_end_mb": round(rss_end),
        "seconds": seconds,
    }


def print_point(name: str, p: Point) -> None:
    batch = f"{p.mean_batch:.1f}" if p.mean_batch else "-"
    print(
        f"{name:10} {p.model} rows={p.rows:<3} c={p.connections:<4} {p.rows_per_s:>10,.0f} rows/s "
        f"p50={p.p50_ms:.2f} ms p99={p.p99_ms:.2f} ms err={p.errors} batch={batch}",
        flush=True,
    )


# -- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 s points, 1 and 32 connections")
    parser.add_argument("--only", help="comma-separated contenders")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the current server too
    seconds = 1 if args.quick else 5
    conns = (1, 32) if args.quick else CONNECTIONS
    prepare()
    chosen = [c for c in CONTENDERS if not args.only or c.name in args.only.split(",")]
    load_before = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    ceilings = json.loads(
        subprocess.run(
            ["taskset", "-c", SERVER_CORE, PY, str(HERE / "ceilings.py"), str(DATA)],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        ).stdout
    )
    print(json.dumps(ceilings), flush=True)
    results = []
    loads = []
    for c in chosen:
        results.append(run_contender(c, seconds, conns, soak=not args.quick))
        loads.append(os.getloadavg()[0])
    from report import write_report

    meta = {
        "started": started,
        "quick": args.quick,
        "seconds": seconds,
        "load_before": load_before[0],
        "load_during": loads,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    raw = {
        "meta": meta,
        "ceilings": ceilings,
        "results": [r.__dict__ | {"points": [p.__dict__ for p in r.points]} for r in results],
    }
    name = "results-quick" if args.quick else "results"
    (DATA / f"{name}.json").write_text(json.dumps(raw, indent=1))
    if not args.only:
        (HERE / f"{name}.md").write_text(write_report(raw))
    print(f"wrote {DATA / (name + '.json')}")


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
