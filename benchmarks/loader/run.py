"""Loader benchmark driver: every contender, side by side in one run; writes results.md.

.venv/bin/python benchmarks/loader/run.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
ENVS = HERE.parent / ".envs"
DATA = HERE.parent / ".data"
PY = {
    "folder": ROOT / ".venv/bin/python",
    "conveyor": ROOT / ".venv/bin/python",
    "mds": ENVS / "mds/bin/python",
    "wds": ENVS / "wds/bin/python",
    "litdata": ENVS / "litdata/bin/python",
    "ceilings": ROOT / ".venv/bin/python",
}
NAMES = {
    "folder": "DataLoader over files (Pillow)",
    "conveyor": "Conveyor",
    "mds": "MosaicML Streaming",
    "wds": "WebDataset",
    "litdata": "LitData",
}


def contender(
    name: str, data: Path, work: Path, workers: int, batch: int, s3: str | None = None
) -> dict[str, Any]:
    work.mkdir(parents=True, exist_ok=True)
    tmp = work / "tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    env = {
        **os.environ,
        "TMPDIR": str(tmp),
        "PYTHONPATH": str(HERE),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "OMP_NUM_THREADS": "1",
    }
    script = "ceilings.py" if name == "ceilings" else f"c_{name}.py"
    command = [
        str(PY[name]),
        str(HERE / script),
        "--data",
        str(data),
        "--work",
        str(work),
        "--workers",
        str(workers),
        "--batch",
        str(batch),
    ]
    if s3:
        command += ["--s3", s3]
    if name != "ceilings":
        prepared = subprocess.run(
            [*command, "--prepare"], env=env, capture_output=True, text=True, timeout=3600
        )
        if prepared.returncode != 0:
            return {"error": "prepare: " + prepared.stderr.strip()[-300:], "load1": 0.0}
        if s3 and name in UPLOADED:
            upload(s3, f"bench-{name}-{work.parent.name}", work / UPLOADED[name])
    load = os.getloadavg()[0]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"error": " | ".join(tail), "load1": load}
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "load1": load}


UPLOADED = {"mds": "mds", "wds": "wds", "litdata": "litdata"}  # their own output folders


def upload(endpoint: str, bucket: str, folder: Path) -> None:
    """Put a rival's shards into a bucket, readable without credentials (WebDataset reads
    them over plain HTTP)."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=bucket)
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        key = path.relative_to(folder).as_posix()
        client.upload_file(str(path), bucket, key, ExtraArgs={"ACL": "public-read"})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    a = p.parse_args()
    pngs, jpegs = (5000, 500) if a.quick else (50000, 5000)
    subprocess.run(["bash", str(HERE / "setup.sh")], check=True)
    gen = str(ENVS / "gen/bin/python")
    subprocess.run(
        [gen, str(HERE.parent / "ingest/generate.py"), "--images", str(pngs), "--csv-mb", "1"],
        check=True,
    )
    subprocess.run([gen, str(HERE / "generate.py"), "--jpegs", str(jpegs)], check=True)
    sets = {
        "png": (DATA / f"ingest/images-{pngs}/images", 256),
        "jpeg": (DATA / f"loader/jpeg-{jpegs}/images", 64),
    }
    port = free_port()
    moto = subprocess.Popen(
        [str(ROOT / ".venv/bin/moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(2)
    s3 = f"http://127.0.0.1:{port}"
    rows: list[tuple[str, str, str, int, dict[str, Any]]] = []
    ceilings: dict[str, dict[str, Any]] = {}
    try:
        for kind, (data, batch) in sets.items():
            work = DATA / "loader/work" / f"{kind}-{pngs if kind == 'png' else jpegs}"
            ceilings[kind] = contender("ceilings", data, work, 0, batch)
            for name in ("folder", "conveyor", "mds", "wds", "litdata"):
                for workers in (0, 2):
                    result = contender(name, data, work / name, workers, batch)
                    rows.append((kind, "warm local", name, workers, result))
                    print(kind, name, workers, result, flush=True)
            for name in ("folder", "conveyor", "mds", "wds", "litdata"):
                result = contender(name, data, work / name, 2, batch, s3)
                rows.append((kind, "cold S3", name, 2, result))
                print(kind, "s3", name, result, flush=True)
    finally:
        moto.terminate()
    table = render(rows, ceilings, a.quick)
    (HERE / ("results-quick.md" if a.quick else "results.md")).write_text(table)
    print(table)


def render(
    rows: list[tuple[str, str, str, int, dict[str, Any]]],
    ceilings: dict[str, dict[str, Any]],
    quick: bool,
) -> str:
    lines = [
        f"# Loader benchmark ({'quick' if quick else 'full'} size)",
        "",
        f"- Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"`.venv/bin/python benchmarks/loader/run.py{' --quick' if quick else ''}`",
        f"- Machine: {os.cpu_count()} cores; load1 per row below.",
        "",
    ]
    for kind, ceiling in ceilings.items():
        per_core = ceiling.get("decode_per_core", 0.0)
        lines += [
            f"## {kind}: {ceiling.get('images')} images, batch {256 if kind == 'png' else 64}",
            "",
            f"Ceilings: decode {per_core:,.0f} images/s per core (Pillow); "
            f"read {ceiling.get('read_mb_s', 0):,.0f} MB/s.",
            "",
            "| case | contender | workers | images/s | × decode ceiling | first batch s "
            "| CPU s / 1000 | peak RSS MB | shuffle quality | load1 |",
            "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for k, case, name, workers, r in rows:
            if k != kind:
                continue
            if "error" in r:
                lines.append(
                    f"| {case} | {NAMES[name]} | {workers} | failed: {r['error'][:120]} "
                    "| | | | | | |"
                )
                continue
            frac = r["images_per_s"] / (per_core * max(1, workers)) if per_core else 0.0
            lines.append(
                f"| {case} | {NAMES[name]} | {workers} | {r['images_per_s']:,.0f} | {frac:.2f} "
                f"| {r['first_batch_s']:.2f} | {r['cpu_s_per_1000']:.2f} "
                f"| {r['peak_rss_mb']:,.0f} | {r['shuffle_quality']:.3f} | {r['load1']:.2f} |"
            )
        lines.append("")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
