"""Run the ingest benchmark: Conveyor against MDS, LitData and two ceilings, in one run.

    .venv/bin/python benchmarks/ingest/run.py [--quick] [--repeat N] [--only a,b] ...

Makes the rival environments (setup.sh, idempotent), generates the data (generate.py,
idempotent), warms the page cache by reading the inputs once, then runs every contender
on every data set one after the other, each as its own process with its own TMPDIR and a
fresh output folder, calling sync between them. Prints a Markdown table with ratios and
writes it to benchmarks/ingest/results.md (results-quick.md with --quick).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from _common import (
    DATA_DIR,
    ENVS_DIR,
    HERE,
    REPO,
    csv_path,
    images_dir,
    list_images,
    manifest_path,
)

QUICK_IMAGES = 2_000
QUICK_CSV_MB = 20
CONVEYOR = "conveyor"
BUSY_CORES = 0.2  # CPU used by other processes during a contender above which we warn


@dataclass(frozen=True)
class Contender:
    name: str
    label: str
    python: Path
    script: str
    extra: tuple[str, ...] = ()

    @property
    def is_ceiling(self) -> bool:
        return self.name.startswith("ceiling")


@dataclass
class Outcome:
    """Every run of one contender on one data set."""

    contender: Contender
    kind: str
    results: list[dict[str, Any]] = field(default_factory=list)
    process_seconds: list[float] = field(default_factory=list)
    loads: list[float] = field(default_factory=list)
    others: list[float] = field(default_factory=list)
    problem: str | None = None

    @property
    def seconds(self) -> float | None:
        times = [float(r["seconds"]) for r in self.results]
        return statistics.median(times) if times and self.problem is None else None


def project_python() -> Path:
    venv = REPO / ".venv" / "bin" / "python"
    return venv if venv.exists() else Path(sys.executable)


def contenders() -> list[Contender]:
    main = project_python()
    return [
        Contender("ceiling-read", "ceiling: read", main, "ceilings.py", ("--mode", "read")),
        Contender(
            "ceiling-sha256", "ceiling: read + sha256", main, "ceilings.py", ("--mode", "sha256")
        ),
        Contender(CONVEYOR, "Conveyor", main, "contender_conveyor.py"),
        Contender(
            "mds", "MDS (mosaicml-streaming)", ENVS_DIR / "mds/bin/python", "contender_mds.py"
        ),
        Contender(
            "litdata", "LitData optimize", ENVS_DIR / "litdata/bin/python", "contender_litdata.py"
        ),
    ]


def load1() -> float:
    return os.getloadavg()[0]


def machine_cpu_seconds() -> float:
    """CPU seconds every process on the machine has used since boot (from /proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    # user nice system idle iowait irq softirq steal: all but idle and iowait are busy.
    busy = sum(int(v) for i, v in enumerate(fields[:8]) if i not in (3, 4))
    return busy / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """CPU seconds used by this process's finished children (and theirs, once reaped)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def sh(cmd: list[str]) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else ""


def child_env(tmpdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    env.update({"TMPDIR": str(tmpdir), "PYTHONHASHSEED": "0", "PYTHONUNBUFFERED": "1"})
    return env


def warm_cache(sources: dict[str, Path]) -> None:
    """Read every input once so that no contender pays for the first read from disk."""
    for kind, source in sources.items():
        paths = [p for p, _ in list_images(source)] if kind == "images" else [source]
        for p in paths:
            with p.open("rb", buffering=0) as f:
                while f.read(8 << 20):
                    pass


def last_json(text: str) -> dict[str, Any] | None:
    for line in reversed(text.splitlines()):
        if line.startswith("{"):
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(data, dict) and "contender" in data:
                return data
    return None


@dataclass
class Run:
    """One run of a contender: its JSON result or the problem, and what it cost."""

    result: dict[str, Any] | None = None
    problem: str | None = None
    seconds: float = 0.0
    others: float = 0.0  # CPUs kept busy meanwhile by other processes (and the kernel)


def run_one(
    c: Contender, kind: str, source: Path, run_dir: Path, timeout: float, keep: bool
) -> Run:
    """Run one contender once, as its own process with its own TMPDIR and output folder."""
    if not c.python.exists():
        return Run(problem=f"no environment ({c.python} missing: run benchmarks/ingest/setup.sh)")
    work = run_dir / f"{c.name}-{kind}"
    shutil.rmtree(work, ignore_errors=True)
    out, tmp = work / "out", work / "tmp"
    tmp.mkdir(parents=True)
    cmd = [str(c.python), str(HERE / c.script), *c.extra]
    cmd += ["--kind", kind, "--source", str(source), "--out", str(out)]
    log = work / "stderr.txt"
    machine_before, ours_before = machine_cpu_seconds(), children_cpu_seconds()
    started = time.perf_counter()
    with log.open("w") as log_file:
        proc = subprocess.Popen(
            cmd,
            cwd=work,
            env=child_env(tmp),
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
            start_new_session=True,
        )
        timed_out = False
        try:
            stdout, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the contender and its workers
            stdout, _ = proc.communicate()
            timed_out = True
    run = Run(seconds=time.perf_counter() - started)
    ours = children_cpu_seconds() - ours_before
    run.others = max(0.0, (machine_cpu_seconds() - machine_before - ours) / run.seconds)
    (work / "stdout.txt").write_text(stdout)
    os.sync()
    result = last_json(stdout)
    if not keep:
        shutil.rmtree(out, ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    if timed_out:
        run.problem = f"timed out after {timeout:.0f} s (log: {log})"
    elif proc.returncode != 0 or result is None:
        tail = log.read_text().strip().splitlines()[-3:]
        run.problem = f"failed (exit {proc.returncode}): {' | '.join(tail)} (log: {log})"
    elif "unavailable" in result:
        run.problem = f"not available: {result['unavailable']}"
    else:
        run.result = result
    return run


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def fmt_ratio(value: float | None) -> str:
    if value is None:
        return "n/a"
    digits = 0 if value >= 100 else 1 if value >= 10 else 2
    return f"{value:,.{digits}f}×"


def table(kind: str, manifest: dict[str, Any], outcomes: list[Outcome]) -> list[str]:
    """The Markdown table of one data set, then notes on contenders that gave no number."""
    by_name = {o.contender.name: o.seconds for o in outcomes}
    items = int(manifest["files"] if kind == "images" else manifest["rows"])
    in_bytes = int(manifest["bytes"])
    unit = "files/s" if kind == "images" else "rows/s"
    conveyor, read, sha = (by_name.get(n) for n in (CONVEYOR, "ceiling-read", "ceiling-sha256"))
    lines = [
        f"| contender | seconds | {unit} | MB/s | output MB | output ÷ input "
        "| time ÷ Conveyor's | time ÷ read ceiling's | time ÷ read+sha256 ceiling's "
        "| process s | others' CPU |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    notes: list[str] = []
    for o in outcomes:
        s = o.seconds
        if s is None:
            notes.append(f"- {o.contender.name}: {o.problem}")
            lines.append(f"| {o.contender.label} | – | – | – | – | – | – | – | – | – | – |")
            continue
        out_bytes = statistics.median(int(r["output_bytes"]) for r in o.results)
        written = sorted({r.get("items") for r in o.results}, key=str)
        if not o.contender.is_ceiling and written != [items]:
            notes.append(f"- {o.contender.name}: wrote {written} items, the input has {items}")
        out_cell = "–" if o.contender.is_ceiling else f"{out_bytes / 1e6:,.1f}"
        ratio_cell = "–" if o.contender.is_ceiling else f"{out_bytes / in_bytes:.2f}"
        lines.append(
            f"| {o.contender.label} | {s:.{3 if s < 1 else 2}f} | {fmt_rate(items / s)} "
            f"| {in_bytes / 1e6 / s:,.1f} "
            f"| {out_cell} | {ratio_cell} "
            f"| {fmt_ratio(s / conveyor if conveyor else None)} "
            f"| {fmt_ratio(s / read if read else None)} | {fmt_ratio(s / sha if sha else None)} "
            f"| {statistics.median(o.process_seconds):.1f} | {max(o.others):.2f} |"
        )
    return lines + (["", *notes] if notes else [])


def machine_line() -> str:
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs ({cpu}), "
        f"{memory:.1f} GiB RAM, Python {platform.python_version()}"
    )


def git_line() -> str:
    head = sh(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]) or "no commit yet"
    dirty = sh(["git", "-C", str(REPO), "status", "--porcelain", "--", "src"])
    return head + (" + uncommitted changes in src/" if dirty else "")


def report(
    args: argparse.Namespace,
    manifests: dict[str, dict[str, Any]],
    outcomes: list[Outcome],
    loads: tuple[tuple[float, ...], tuple[float, ...]],
    started: datetime,
) -> str:
    versions = {
        o.contender.name: str(o.results[0]["version"])
        for o in outcomes
        if o.results and "version" in o.results[0]
    }
    size = "quick" if args.quick else "full"
    lines = [
        "# Ingest benchmark: results",
        "",
        f"- Run: {started:%Y-%m-%d %H:%M} UTC, {size} size, {args.repeat} repeat(s) "
        "(median seconds); command: `.venv/bin/python benchmarks/ingest/run.py"
        + (" --quick" if args.quick else "")
        + "`",
        f"- Machine: {machine_line()}",
        "- Load average (1/5/15 min): at start "
        + "/".join(f"{v:.2f}" for v in loads[0])
        + ", at end "
        + "/".join(f"{v:.2f}" for v in loads[1]),
        f"- Versions: conveyor {versions.get(CONVEYOR, 'n/a')} (git {git_line()}), "
        f"mosaicml-streaming {versions.get('mds', 'n/a')}, litdata {versions.get('litdata', 'n/a')}"
        ", torch 2.13.0 (CPU) in the rivals' environments",
    ]
    if "images" in manifests:
        m = manifests["images"]
        lines.append(
            f"- Images: {m['files']:,} PNG files (32×32 RGB) in {m['classes']} class folders, "
            f"{m['bytes'] / 1e6:,.1f} MB"
        )
    if "csv" in manifests:
        m = manifests["csv"]
        lines.append(
            f"- CSV: one file, {m['rows']:,} rows × {len(m['columns'])} columns, "
            f"{m['bytes'] / 1e6:,.1f} MB"
        )
    lines += [
        "- Inputs are in the page cache (read once before the first contender); `sync` runs "
        "after each contender, outside its time. MB = 10⁶ bytes.",
        "- Ratios are of seconds: time ÷ Conveyor's above 1 means slower than Conveyor; "
        "time ÷ a ceiling's says how many times longer than merely reading (and hashing) the "
        "input the contender takes. process s: the whole process, with interpreter start "
        "and imports. others' CPU: how many CPUs other processes (and the kernel, writing "
        "back files) kept busy meanwhile, on average; near 0 on an idle machine.",
    ]
    busiest = max((v for o in outcomes for v in o.others), default=0.0)
    if busiest >= BUSY_CORES:
        lines.append(
            f"- **The machine was not idle**: other processes kept up to {busiest:.2f} of its "
            f"{os.cpu_count()} CPUs busy while a contender ran, so these times are noisy. "
            "Re-run on an idle machine."
        )
    titles = {"images": "Images (files/s)", "csv": "CSV (rows/s)"}
    for kind in manifests:
        lines += ["", f"## {titles[kind]}", ""]
        lines += table(kind, manifests[kind], [o for o in outcomes if o.kind == kind])
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"small data: {QUICK_IMAGES} images and a {QUICK_CSV_MB} MB CSV",
    )
    parser.add_argument("--images", type=int, help="number of PNGs (default 50000)")
    parser.add_argument("--csv-mb", type=int, help="CSV size in MB (default 1000)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each contender (median)")
    parser.add_argument("--only", help="comma-separated contenders, e.g. conveyor,mds")
    parser.add_argument("--datasets", default="images,csv", help="images, csv or both")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per contender")
    parser.add_argument("--keep", action="store_true", help="keep the contenders' outputs")
    parser.add_argument("--no-setup", action="store_true", help="do not run setup.sh first")
    parser.add_argument("--output", type=Path, help="Markdown file to write")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    kinds = [k.strip() for k in args.datasets.split(",") if k.strip()]
    if not kinds or set(kinds) - {"images", "csv"}:
        raise SystemExit(f"run: --datasets takes images, csv or both, not {args.datasets!r}")
    n_images = args.images or (QUICK_IMAGES if args.quick else 50_000)
    csv_mb = args.csv_mb or (QUICK_CSV_MB if args.quick else 1000)
    selected = contenders()
    if args.only:
        names = {n.strip() for n in args.only.split(",")}
        unknown = names - {c.name for c in selected}
        if unknown:
            raise SystemExit(f"run: unknown contenders {sorted(unknown)}")
        selected = [c for c in selected if c.name in names]

    if not args.no_setup:
        setup = subprocess.run(["bash", str(HERE / "setup.sh")], check=False)
        if setup.returncode != 0:
            print(f"run: setup.sh failed (exit {setup.returncode}); going on with what exists")
    gen = ENVS_DIR / "gen" / "bin" / "python"
    if not gen.exists():
        raise SystemExit(f"run: {gen} missing: run `bash benchmarks/ingest/setup.sh` first")
    subprocess.run(
        [
            str(gen),
            str(HERE / "generate.py"),
            "--images",
            str(n_images if "images" in kinds else 0),
            "--csv-mb",
            str(csv_mb if "csv" in kinds else 0),
        ],
        check=True,
    )
    sources = {"images": images_dir(n_images), "csv": csv_path(csv_mb)}
    sources = {k: v for k, v in sources.items() if k in kinds}
    manifests = {k: json.loads(manifest_path(v).read_text()) for k, v in sources.items()}

    started = datetime.now(UTC)
    run_dir = DATA_DIR / "runs" / f"{started:%Y%m%dT%H%M%SZ}"
    load_start = os.getloadavg()
    print(f"run: load average {load_start}; warming the page cache")
    warm_cache(sources)
    outcomes = {(c.name, k): Outcome(c, k) for k in kinds for c in selected}
    for rep in range(args.repeat):
        for kind in kinds:
            for c in selected:
                outcome = outcomes[(c.name, kind)]
                if outcome.problem is not None:
                    continue
                before = load1()
                run = run_one(c, kind, sources[kind], run_dir / f"r{rep}", args.timeout, args.keep)
                if run.result is None:
                    outcome.problem = run.problem
                    print(f"{c.name}: {run.problem}")
                    continue
                result = {**run.result, "load1_before": before, "others_cpu": run.others}
                outcome.results.append(result)
                outcome.loads.append(before)
                outcome.others.append(run.others)
                outcome.process_seconds.append(run.seconds)
                print(
                    f"run [{rep + 1}/{args.repeat}] {kind:6} {c.name:15} "
                    f"{result['seconds']:8.2f} s  "
                    f"output {int(result['output_bytes']) / 1e6:9.1f} MB"
                    f"  (process {run.seconds:.1f} s, load1 before {before:.2f}, "
                    f"others' CPU {outcome.others[-1]:.2f})",
                    flush=True,
                )
    load_end = os.getloadavg()

    ordered = [outcomes[(c.name, k)] for k in kinds for c in selected]
    text = report(args, manifests, ordered, (load_start, load_end), started)
    output = args.output or HERE / ("results-quick.md" if args.quick else "results.md")
    output.write_text(text)
    raw = [
        {"contender": o.contender.name, "kind": o.kind, "problem": o.problem, "runs": o.results}
        for o in ordered
    ]
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "results.json").write_text(json.dumps(raw, indent=2) + "\n")
    print()
    print(text)
    print(f"run: wrote {output} (logs and raw results in {run_dir})")


if __name__ == "__main__":
    main()
