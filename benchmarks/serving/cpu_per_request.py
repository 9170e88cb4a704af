"""Server CPU time per request: Conveyor (MLP, one row a request) against the no-op ceiling.

    .venv/bin/python benchmarks/serving/cpu_per_request.py [--seconds 10] [--connections 32]
        [--only conveyor,noop] [--repeat 1] [--profile DIR]

Throughput on a shared two-core machine moves with whatever else runs; the CPU time the
server process spends per answered request moves much less, so that is the number to
compare. Each server is started the way benchmarks/serving/run.py starts it (pinned to
core 0, prediction log on for `conveyor`), wrk drives it from core 1 with one-row bodies,
and the server's user+system CPU time over the measured run is divided by the requests
wrk saw answered. With `--profile DIR`, a second run of the same load is sampled with
py-spy (raw collapsed stacks in DIR, top functions printed); its numbers are not the
measurement, since py-spy itself takes CPU.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import run  # noqa: E402 - the benchmark's own helpers, importable once HERE is on the path

MODEL = "mlp"


def cpu_seconds(proc: Any) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


def measure(name: str, seconds: int, connections: int, profile: Path | None) -> dict[str, Any]:
    contender = next(c for c in run.CONTENDERS if c.name == name)
    body = run.DATA / "rows-1.json"
    with run.server(contender, MODEL) as (url, _, proc):
        target = url + contender.path.format(model=MODEL)
        run.wrk(target, body, connections, 2)  # warm-up: the batcher learns, caches fill
        counted = contender.batches_from_metrics
        before_batches = run.batch_totals(contender, url, proc) if counted else None
        cpu0 = cpu_seconds(proc)
        w = run.wrk(target, body, connections, seconds)
        cpu1 = cpu_seconds(proc)
        after_batches = run.batch_totals(contender, url, proc) if counted else None
        ok = max(w["requests"] - w["status"], 0)
        errors = w["connect"] + w["read"] + w["write"] + w["status"] + w["timeout"]
        result: dict[str, Any] = {
            "name": name,
            "requests_per_s": ok / (w["duration_us"] / 1e6),
            "cpu_us_per_request": (cpu1 - cpu0) / max(ok, 1) * 1e6,
            "cpu_share": (cpu1 - cpu0) / (w["duration_us"] / 1e6),
            "p50_ms": w["p50_us"] / 1000,
            "p99_ms": w["p99_us"] / 1000,
            "errors": errors,
            "mean_batch": None,
        }
        if before_batches and after_batches and after_batches[0] > before_batches[0]:
            result["mean_batch"] = (after_batches[1] - before_batches[1]) / (
                after_batches[0] - before_batches[0]
            )
        if profile is not None:
            result["profile"] = sample(name, proc.pid, target, body, connections, seconds, profile)
    return result


def sample(
    name: str, pid: int, target: str, body: Path, connections: int, seconds: int, folder: Path
) -> Path:
    """py-spy on the server (from core 1, beside wrk) while wrk drives the same load."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{name}.txt"
    command = [
        "taskset", "-c", run.LOAD_CORE, spy, "record", "--format", "raw", "--rate", "250",
        "--nonblocking", "--duration", str(seconds + 1), "--pid", str(pid), "--output", str(out),
    ]  # fmt: skip
    spy_proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)
    run.wrk(target, body, connections, seconds)
    _, err = spy_proc.communicate(timeout=120)
    if spy_proc.returncode != 0:
        raise RuntimeError(f"py-spy failed: {err.decode()[-1000:]}")
    return out


def top(path: Path, n: int = 25) -> str:
    """Self and inclusive sample shares per function, from py-spy's collapsed stacks
    (only the event-loop thread's stacks: the ones through the asyncio run loop)."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        k = int(count)
        frames = stack.split(";")
        total += k
        own[_short(frames[-1])] += k
        for f in {_short(f) for f in frames}:
            inclusive[f] += k
    lines = [f"{total} samples; self:"]
    lines += [f"  {100 * k / total:5.1f}%  {f}" for f, k in own.most_common(n)]
    lines.append("inclusive:")
    lines += [f"  {100 * k / total:5.1f}%  {f}" for f, k in inclusive.most_common(n)]
    return "\n".join(lines)


def _short(frame: str) -> str:
    # "function (path/to/file.py:123)" -> "function (file.py)"
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0].rsplit("/", 1)[-1]
    return f"{name} ({file})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--only", default="conveyor,noop")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--profile", type=Path, help="also sample each server with py-spy")
    args = parser.parse_args()
    run.prepare()
    print(f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
    rows = []
    for _ in range(args.repeat):
        for name in args.only.split(","):
            r = measure(name, args.seconds, args.connections, args.profile)
            rows.append(r)
            batch = f"{r['mean_batch']:.1f}" if r["mean_batch"] else "-"
            print(
                f"{name:14} {r['requests_per_s']:>9,.0f} req/s  "
                f"{r['cpu_us_per_request']:6.1f} µs CPU/req  "
                f"(core {100 * r['cpu_share']:.0f}% busy)"
                f"  p50={r['p50_ms']:.2f} ms p99={r['p99_ms']:.2f} ms err={r['errors']}"
                f" batch={batch}  load={os.getloadavg()[0]:.2f}",
                flush=True,
            )
            if "profile" in r:
                print(top(r["profile"]), flush=True)
    by_name: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for r in rows:
        by_name[r["name"]].append(r)
    if "conveyor" in by_name and "noop" in by_name:
        conv = min(r["cpu_us_per_request"] for r in by_name["conveyor"])
        noop = min(r["cpu_us_per_request"] for r in by_name["noop"])
        rate_c = max(r["requests_per_s"] for r in by_name["conveyor"])
        rate_n = max(r["requests_per_s"] for r in by_name["noop"])
        print(
            f"best of {args.repeat}: conveyor {conv:.1f} µs/req vs noop {noop:.1f} µs/req "
            f"(CPU ratio noop/conveyor {noop / conv:.0%}); request rate {rate_c / rate_n:.0%}"
        )


if __name__ == "__main__":
    main()
