"""Drift benchmark driver: Conveyor, Evidently and alibi-detect side by side in one run.

.venv/bin/python benchmarks/drift/run.py [--quick] [--only conveyor,alibi,evidently]
    [--part tabular,embedding]

Makes the rival environments (setup.sh) the first time, runs each contender as its own
process, one at a time (each loops over all its runs, so an environment's start-up is paid
once), on tables each builds from the same seeds (common.py), and writes results.md (or
results-quick.md with --quick) for the tabular part and results-embedding.md
(results-embedding-quick.md) for the embedding and image part (embedding_case.py).
Raw results and logs: benchmarks/.data/drift/runs/<time>/.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import embedding_case

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ENVS = HERE.parent / ".envs"
DATA = HERE.parent / ".data" / "drift"
CONTENDERS = {  # name: (python, script)
    "conveyor": (ROOT / ".venv/bin/python", "c_conveyor.py"),
    "alibi": (ENVS / "alibi-detect/bin/python", "c_alibi.py"),
    "evidently": (ENVS / "evidently/bin/python", "c_evidently.py"),
}
# Every dataset-level flag, in table order: (contender, flag, label).
FLAGS = [
    ("conveyor", "drift", "Conveyor `drift`"),
    ("evidently", "dataset", "Evidently dataset drift (>= 50% of columns)"),
    ("evidently", "any_column", "Evidently any column drifted"),
    ("alibi", "ks+chi2", "alibi KSDrift or ChiSquareDrift"),
    ("alibi", "ks", "alibi KSDrift (numeric columns)"),
    ("alibi", "chi2", "alibi ChiSquareDrift (categorical columns)"),
    ("alibi", "tabular", "alibi TabularDrift"),
]
ALPHA = 0.05
MEAN_GRID = [0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
# One planted shift of fixed size per scenario (see common.py for what each does).
SCENARIO_SIZES = {
    "variance": 1.25,
    "tail": 0.01,
    "catfreq": 0.05,
    "newcat": 0.02,
    "missing": 0.10,
    "corr": 0.0,
}
SCENARIO_LABELS = {
    "variance": "x0 SD x1.25",
    "tail": "1% of x0 from N(0, 5^2)",
    "catfreq": "5% of c0 moved between categories",
    "newcat": "2% of c0 a new category",
    "missing": "10% of x2 missing (was 0%)",
    "corr": "corr(x0, x1) 0.7 to 0",
}


# --- the plan ---------------------------------------------------------------------------


# Runs per statistics task: (Conveyor and alibi-detect, Evidently). Evidently's report
# takes 0.65-0.85 s on 200 rows x 10 columns, 4 s on 50,000, 7.5-14 s on 1,000 x 100 and
# about 70 s on 1M x 10: it gets fewer runs where its time would otherwise run past the
# whole benchmark's (0: not run).
FULL = {
    "fa": {200: (200, 200), 1000: (200, 200), 5000: (200, 200), 50_000: (200, 20)},
    "fa-1m": (10, 0),
    "fa-k100": (100, 5),
    "mean": {200: (50, 10), 1000: (50, 10), 5000: (50, 10), 50_000: (30, 5)},
    "mean-1m": {0.02: (10, 2), 0.05: (5, 0)},
    "scenario": {1000: (50, 10), 5000: (50, 10), 50_000: (20, 3)},
}
QUICK = {
    "fa": {200: (50, 10), 1000: (50, 10), 5000: (50, 10), 20_000: (50, 10)},
    "fa-k100": (20, 3),
    "mean": {200: (20, 5), 1000: (20, 5), 5000: (20, 5)},
    "mean-20k": {0.02: (20, 5), 0.05: (20, 5)},
    "scenario": {5000: (20, 5)},
}


def plan(quick: bool) -> list[dict[str, Any]]:
    """Every task, each with its runs per contender (`runs`: {contender: count})."""
    tasks: list[dict[str, Any]] = []

    def stat(group: str, k: int, n: int, scenario: str, size: float, runs: tuple[int, int]):
        tid = f"{group}-k{k}-n{n}-{scenario}-{size:g}"
        counts = {"conveyor": runs[0], "alibi": runs[0], "evidently": runs[1]}
        tasks.append(
            {"id": tid, "group": group, "kind": "stat", "k": k, "n": n, "scenario": scenario}
            | {"size": float(size), "runs": counts}
        )

    p = QUICK if quick else FULL
    for n, runs in p["fa"].items():
        stat("fa", 10, n, "none", 0.0, runs)
    if "fa-1m" in p:
        stat("fa", 10, 1_000_000, "none", 0.0, p["fa-1m"])
    stat("fa", 100, 1000, "none", 0.0, p["fa-k100"])
    for n, runs in p["mean"].items():
        for size in MEAN_GRID:
            stat("mean", 10, n, "mean", size, runs)
    for key, n in (("mean-1m", 1_000_000), ("mean-20k", 20_000)):
        for size, runs in p.get(key, {}).items():
            stat("mean", 10, n, "mean", size, runs)
    for n, runs in p["scenario"].items():
        for scenario, size in SCENARIO_SIZES.items():
            stat("scenario", 10, n, scenario, size, runs)
    k, n = (25, 20_000) if quick else (25, 100_000)
    tasks.append(
        {"id": f"speed-k{k}-n{n}", "group": "speed", "kind": "speed", "k": k, "n": n}
        | {"scenario": "none", "size": 0.0, "repeat": 3}
    )
    k, n = (100, 100_000) if quick else (100, 1_000_000)
    tasks.append(
        {"id": f"memory-k{k}-n{n}", "group": "memory", "kind": "memory", "k": k, "n": n}
        | {"scenario": "none", "size": 0.0, "repeat": 2}
    )
    return tasks


def contender_tasks(
    name: str, tasks: list[dict[str, Any]], evidently_big: bool
) -> list[dict[str, Any]]:
    """The tasks as contender `name` runs them."""
    out = []
    for task in tasks:
        t = dict(task)
        if "variants" in t:  # a vector speed task: the detectors each contender times
            mine = t.pop("variants").get(name, [])
            if name == "evidently":
                t["repeat"] = 1  # its report alone takes longer than the others' repeats
            out += [t | {"id": t["id"] + (f"-{v}" if v else ""), "variant": v} for v in mine]
            continue
        if t["kind"] == "stat":
            t["runs"] = task["runs"][name]
            if not t["runs"]:
                continue
        elif name == "evidently":
            t["repeat"] = 1  # one report takes as long as the others' repeats and more
            if t["kind"] == "memory" and t["n"] >= 1_000_000 and not evidently_big:
                continue
        elif name == "alibi" and t["kind"] == "memory":
            t["repeat"] = 1
        if name == "alibi" and t["kind"] != "stat":
            out += [t | {"id": t["id"] + "-" + v, "variant": v} for v in ("ks+chi2", "tabular")]
        else:
            out.append(t)
    return out


# --- running ----------------------------------------------------------------------------


def run_contender(
    name: str, tasks: list[dict[str, Any]], work: Path, label: str, timeout: float
) -> list[dict[str, Any]]:
    """One process of contender `name` over `tasks`; the records it wrote (all of them
    even when it failed or ran out of time part-way)."""
    python, script = CONTENDERS[name]
    plan_file = work / f"{label}-plan.json"
    out = work / f"{label}.jsonl"
    log = work / f"{label}.log"
    plan_file.write_text(json.dumps(tasks, indent=1))
    out.unlink(missing_ok=True)
    tmp = work / f"tmp-{label}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(HERE)}
    env.pop("VIRTUAL_ENV", None)
    command = [str(python), str(HERE / script), "--plan", str(plan_file), "--out", str(out)]
    started = time.perf_counter()
    load = os.getloadavg()[0]
    print(f"drift: {label}: {len(tasks)} tasks ...", flush=True)
    status = "ok"
    with log.open("w") as f:
        try:
            done = subprocess.run(
                command, stdout=f, stderr=subprocess.STDOUT, env=env, timeout=timeout
            )
            if done.returncode != 0:
                status = f"exit {done.returncode}"
        except subprocess.TimeoutExpired:
            status = f"timed out after {timeout:.0f} s"
    shutil.rmtree(tmp, ignore_errors=True)
    records = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    finished = {r["id"] for r in records}
    for task in tasks:
        if task["id"] not in finished:
            tail = log.read_text().strip().splitlines()[-3:]
            records.append({**task, "error": f"{status}: " + " | ".join(tail)[-300:]})
    for r in records:
        r["contender"] = name
        r["load1_start"] = load
    seconds = time.perf_counter() - started
    print(f"drift: {label}: {status} in {seconds:.0f} s (load1 {load:.2f})", flush=True)
    return records


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="fewer runs, smaller n: minutes")
    p.add_argument("--only", default=",".join(CONTENDERS), help="contenders, comma-separated")
    p.add_argument("--no-setup", action="store_true", help="skip setup.sh")
    p.add_argument("--no-memory", action="store_true", help="skip the memory checks")
    p.add_argument(
        "--evidently-1m",
        action="store_true",
        help="also run Evidently's 1M x 100 check (about 10 minutes and 6.5 GB on its own)",
    )
    p.add_argument("--timeout", type=float, default=0, help="per process, s (default: by size)")
    p.add_argument("--output", type=Path, default=None)
    p.add_argument("--render", type=Path, default=None, help="only redo the table of RUN_DIR")
    p.add_argument(
        "--part", default="tabular,embedding", help="tabular, embedding or both (comma-separated)"
    )
    a = p.parse_args()
    if a.render:
        saved = json.loads((a.render / "records.json").read_text())
        write_tables(saved["records"], saved["names"], saved["quick"], saved["started"],
                     saved["ended"], a.output)  # fmt: skip
        return
    parts = {x for x in a.part.split(",") if x}
    if not parts or parts - {"tabular", "embedding"}:
        raise SystemExit(f"--part: tabular, embedding or both, not {a.part!r}")
    names = [x for x in a.only.split(",") if x]
    for name in names:
        if name not in CONTENDERS:
            raise SystemExit(f"unknown contender {name!r}: one of {', '.join(CONTENDERS)}")
    if not a.no_setup:
        subprocess.run(["bash", str(HERE / "setup.sh")], check=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    work = DATA / "runs" / (stamp + ("-quick" if a.quick else ""))
    work.mkdir(parents=True, exist_ok=True)
    tasks = (plan(a.quick) if "tabular" in parts else []) + (
        embedding_case.plan(a.quick) if "embedding" in parts else []
    )
    timeout = a.timeout or (900 if a.quick else 3600)
    started = time.time()
    records: list[dict[str, Any]] = []
    for name in names:
        mine = contender_tasks(name, tasks, a.evidently_1m)
        main_tasks = [t for t in mine if t["kind"] != "memory"]
        records += run_contender(name, main_tasks, work, name, timeout)
        if a.no_memory:
            continue
        # Each memory check in a fresh process, so that nothing before it counts.
        for t in (t for t in mine if t["kind"] == "memory"):
            records += run_contender(name, [t], work, f"{name}-{t['id']}", timeout)
    ended = time.time()
    meta = {"quick": a.quick, "names": names, "started": started, "ended": ended}
    (work / "records.json").write_text(json.dumps({**meta, "records": records}))
    write_tables(records, names, a.quick, started, ended, a.output)
    print(f"drift: raw records in {work}", flush=True)


def write_tables(
    records: list[dict[str, Any]],
    names: list[str],
    quick: bool,
    started: float,
    ended: float,
    output: Path | None,
) -> None:
    """results.md from the tabular records (or `output`), results-embedding.md from the
    vector ones; each only when its part ran."""
    vector = [r for r in records if embedding_case.is_vector(r)]
    tabular = [r for r in records if not embedding_case.is_vector(r)]
    suffix = "-quick" if quick else ""
    if tabular:
        path = output or HERE / f"results{suffix}.md"
        path.write_text(render(tabular, names, quick, started, ended))
        print(f"drift: wrote {path}")
    if vector:
        path = HERE / f"results-embedding{suffix}.md"
        table = embedding_case.render(vector, names, quick, started, ended, sys.modules[__name__])
        path.write_text(table)
        print(table)
        print(f"drift: wrote {path}")


# --- the tables -------------------------------------------------------------------------


def wilson(hits: int, runs: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion."""
    if runs == 0:
        return 0.0, 1.0
    p = hits / runs
    centre = (p + z * z / (2 * runs)) / (1 + z * z / runs)
    half = z * math.sqrt(p * (1 - p) / runs + z * z / (4 * runs * runs)) / (1 + z * z / runs)
    return max(0.0, centre - half), min(1.0, centre + half)


def rate(record: dict[str, Any] | None, flag: str, planted: bool = False) -> tuple[int, int] | None:
    if not record or "error" in record:
        return None
    results = record.get("results") or []
    key = "planted" if planted else "flags"
    values = [r[key][flag] for r in results if flag in r[key]]
    if not values:
        return None
    return sum(bool(v) for v in values), len(values)


def fmt_rate(hr: tuple[int, int] | None, interval: bool = False) -> str:
    if hr is None:
        return "—"
    hits, runs = hr
    text = f"{hits / runs:.2f}"
    if interval:
        lo, hi = wilson(hits, runs)
        text += f" [{lo:.2f}, {hi:.2f}]"
    return f"{text} ({runs})"


def fmt_num(x: float | None, digits: int = 0) -> str:
    return "—" if x is None else f"{x:,.{digits}f}"


def render(
    records: list[dict[str, Any]], names: list[str], quick: bool, started: float, ended: float
) -> str:
    by: dict[tuple[str, str], dict[str, Any]] = {}
    for r in records:
        by[(r["contender"], r["id"])] = r
    flags = [f for f in FLAGS if f[0] in names]
    engines = sorted({f"{r['contender']}: {r['engine']}" for r in records if r.get("engine")})
    loads = sorted({round(r.get("load1_start", 0.0), 2) for r in records})
    lines = [
        f"# Drift benchmark ({'quick' if quick else 'full'} size)",
        "",
        f"- Run: {time.strftime('%Y-%m-%d %H:%M', time.gmtime(started))} to "
        f"{time.strftime('%H:%M UTC', time.gmtime(ended))} ({(ended - started) / 60:.1f} min), "
        f"`.venv/bin/python benchmarks/drift/run.py{' --quick' if quick else ''}`",
        f"- Machine: {os.cpu_count()} cores; load average at each contender's start "
        f"{min(loads, default=0):.2f} to {max(loads, default=0):.2f}.",
        "- Engines: " + "; ".join(engines) + ".",
    ]
    if any("file " in e for e in engines):
        lines.append(
            "- **Conveyor's rows come from a stand-in file, not conveyor.monitoring.drift: "
            "they say nothing about Conveyor.**"
        )
    lines += [
        "- A cell is the share of runs whose dataset-level flag was raised, (runs); false "
        "alarms also give the 95% Wilson interval. alpha = 0.05 everywhere.",
        "",
    ]
    lines += _mismatches(records)
    # False alarms.
    for k in sorted({by_id["k"] for by_id in records if by_id.get("group") == "fa"}):
        ns = sorted({r["n"] for r in records if r.get("group") == "fa" and r["k"] == k})
        lines += [
            f"## False alarms: no shift, {k} columns",
            "",
            "| flag | " + " | ".join(f"n = {n:,}" for n in ns) + " |",
            "|---|" + "--:|" * len(ns),
        ]
        for c, flag, label in flags:
            cells = [fmt_rate(rate(by.get((c, f"fa-k{k}-n{n}-none-0")), flag), True) for n in ns]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    # Mean shift: detection per size, smallest found >= 80%.
    mean = [r for r in records if r.get("group") == "mean"]
    ns = sorted({r["n"] for r in mean})
    if mean:
        lines += [
            "## Mean shift of x0 (in reference SDs), 10 columns",
            "",
            "Smallest shift of the grid "
            + ", ".join(f"{s:g}" for s in MEAN_GRID)
            + " flagged in at least 80% of its runs (— : none of the shifts run at that n was):",
            "",
            "| flag | " + " | ".join(f"n = {n:,}" for n in ns) + " |",
            "|---|" + "--:|" * len(ns),
        ]
        noisy = False
        for c, flag, label in flags:
            cells = []
            for n in ns:
                found = "—"
                for size in MEAN_GRID:
                    hr = rate(by.get((c, f"mean-k10-n{n}-mean-{size:g}")), flag)
                    if hr and hr[0] / hr[1] >= 0.8:
                        found = f"{size:g} ({hr[1]})"
                        break
                fa = rate(by.get((c, f"fa-k10-n{n}-none-0")), flag)
                if found != "—" and fa and fa[0] / fa[1] > 0.1:
                    found += " *"
                    noisy = True
                cells.append(found)
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        if noisy:
            lines += [
                "",
                "\\* this flag was also raised on more than 10% of the unshifted tables at this "
                "n: its alarms there are not evidence of the shift.",
            ]
        lines += ["", "Share of runs flagged, per shift:", ""]
        for n in ns:
            sizes = [s for s in MEAN_GRID if any(r["n"] == n and r["size"] == s for r in mean)]
            lines += [
                f"n = {n:,}:",
                "",
                "| flag | " + " | ".join(f"{s:g} sd" for s in sizes) + " |",
                "|---|" + "--:|" * len(sizes),
            ]
            for c, flag, label in flags:
                cells = [
                    fmt_rate(rate(by.get((c, f"mean-k10-n{n}-mean-{s:g}")), flag)) for s in sizes
                ]
                lines.append(f"| {label} | " + " | ".join(cells) + " |")
            lines.append("")
    # Negligible shifts.
    small = [r for r in mean if r["size"] <= 0.05]
    if small:
        keys = sorted({(r["n"], r["size"]) for r in small}, key=lambda x: (x[1], x[0]))
        keys = [x for x in keys if x[0] >= 5000]
        lines += [
            "## Negligible shifts: alarm rate (ideally near the false-alarm rate)",
            "",
            "| flag | " + " | ".join(f"{s:g} sd, n = {n:,}" for n, s in keys) + " |",
            "|---|" + "--:|" * len(keys),
        ]
        for c, flag, label in flags:
            cells = [
                fmt_rate(rate(by.get((c, f"mean-k10-n{n}-mean-{s:g}")), flag), True)
                for n, s in keys
            ]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    # Other scenarios.
    scen = [r for r in records if r.get("group") == "scenario"]
    if scen:
        ns = sorted({r["n"] for r in scen})
        cols = [(s, n) for s in SCENARIO_SIZES for n in ns]
        lines += [
            "## Other planted shifts, 10 columns",
            "",
            "Cell: share of runs flagged / share flagged with a changed column among the "
            "flagged ones (runs).",
            "",
        ]
        for scenario in SCENARIO_SIZES:
            lines.append(f"- {scenario}: {SCENARIO_LABELS[scenario]}")
        lines += [
            "",
            "| flag | " + " | ".join(f"{s} n={n:,}" for s, n in cols) + " |",
            "|---|" + "--:|" * len(cols),
        ]
        for c, flag, label in flags:
            cells = []
            for s, n in cols:
                rec = by.get((c, f"scenario-k10-n{n}-{s}-{SCENARIO_SIZES[s]:g}"))
                hr, hp = rate(rec, flag), rate(rec, flag, planted=True)
                cells.append(
                    "—"
                    if not hr or not hp
                    else f"{hr[0] / hr[1]:.2f} / {hp[0] / hp[1]:.2f} ({hr[1]})"
                )
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += _speed(records, names)
    lines += _goals(by, records)
    lines += _cost(records, names)
    return "\n".join(lines) + "\n"


SPEED_ROWS = [
    ("conveyor", "", "Conveyor `check` (Reference prebuilt)"),
    ("alibi", "ks+chi2", "alibi KSDrift + ChiSquareDrift `predict`"),
    ("alibi", "tabular", "alibi TabularDrift `predict`"),
    ("evidently", "", "Evidently DataDriftPreset, whole report"),
]


def _speed(records: list[dict[str, Any]], names: list[str]) -> list[str]:
    lines: list[str] = []
    for kind in ("speed", "memory"):
        recs = [r for r in records if r.get("kind") == kind]
        if not recs:
            continue
        k, n = recs[0]["k"], recs[0]["n"]
        title = "Speed" if kind == "speed" else "Speed and memory"
        lines += [
            f"## {title}: {n:,} reference + {n:,} current rows, {k} columns",
            "",
            "rows/s = current rows / check seconds (median of the repeats). Evidently has no "
            "precomputed reference: its time is the whole report over both windows. "
            "start = RSS when the task began (the interpreter and libraries); window = the "
            "current window's own size in the tool's form; RSS before = the process with the "
            "window and the detector (for Evidently both frames) held; peak = the most "
            "during the check.",
            "",
            "| contender | build s | check s | rows/s | CPU s | × Evidently | × alibi tabular "
            "| start MB | window MB | RSS before MB | peak in check MB | check adds MB "
            "| process peak MB |",
            "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
        ]
        rows = {(r["contender"], r.get("variant", "")): r for r in recs}
        ev = rows.get(("evidently", ""))
        tab = rows.get(("alibi", "tabular"))

        def rps(r: dict[str, Any] | None) -> float | None:
            return r.get("rows_per_s") if r and "error" not in r else None

        for c, variant, label in SPEED_ROWS:
            if c not in names:
                continue
            r = rows.get((c, variant))
            if r is None:
                continue
            if "error" in r:
                lines.append(f"| {label} | failed: {r['error'][:150]} |" + " |" * 11)
                continue
            ratio_ev = rps(r) / rps(ev) if rps(ev) else None
            ratio_tab = rps(r) / rps(tab) if rps(tab) else None
            lines.append(
                f"| {label} | {r['build_s']:.3f} | {r['check_s']:.3f} | {r['rows_per_s']:,.0f} "
                f"| {r['cpu_s']:.2f} | {fmt_num(ratio_ev, 1)} | {fmt_num(ratio_tab, 2)} "
                f"| {r['start_mb']:,.0f} | {r['window_mb']:,.0f} "
                f"| {r['rss_before_mb']:,.0f} | {r['peak_check_mb']:,.0f} "
                f"| {r['check_extra_mb']:,.0f} | {r['process_peak_mb']:,.0f} |"
            )
        if kind == "memory" and "evidently" in names and ev is None:
            lines += [
                "",
                "Evidently was not run at this size (`--evidently-1m` adds it). Run once on "
                "2026-12-04 on this 2-core machine, its 1M x 100 report took 613 s "
                "(1,632 rows/s) and peaked at 6,492 MB (1,809 MB with both frames held).",
            ]
        lines.append("")
    return lines


def _goals(by: dict[tuple[str, str], dict[str, Any]], records: list[dict[str, Any]]) -> list[str]:
    """Conveyor against the goals of its issue, as far as this run measured them."""
    if not any(r["contender"] == "conveyor" for r in records):
        return []
    conv = [r for r in records if r["contender"] == "conveyor" and r.get("kind") == "stat"]
    lines = [
        "## Conveyor against its goals",
        "",
        "A rate goal is met when the measured rate meets it, missed when its whole 95% "
        "interval misses it, and not settled otherwise (too few runs).",
        "",
        "| goal | measured | met |",
        "|---|---|---|",
    ]

    def row(goal: str, measured: str, met: bool | None, unsure: str = "not settled") -> None:
        lines.append(
            f"| {goal} | {measured} | {'yes' if met else 'no' if met is not None else unsure} |"
        )

    def at_most_alpha(hrs: list[tuple[int, int]]) -> bool | None:
        """yes: every rate <= alpha; no: some rate's whole 95% interval above alpha."""
        if all(h / m <= ALPHA for h, m in hrs):
            return True
        if any(wilson(h, m)[0] > ALPHA for h, m in hrs):
            return False
        return None

    fa = [(r, rate(r, "drift")) for r in conv if r["group"] == "fa"]
    fa = [(r, hr) for r, hr in fa if hr]
    worst = max(fa, key=lambda x: x[1][0] / x[1][1], default=None)
    if worst:
        r, (h, m) = worst
        lo, hi = wilson(h, m)
        row(
            "false alarms <= 0.05 at every n",
            f"worst {h / m:.3f} [{lo:.3f}, {hi:.3f}] of {m} runs "
            f"(n = {r['n']:,}, {r['k']} columns)",
            at_most_alpha([hr for _, hr in fa]),
        )
    found = [(r, rate(r, "drift")) for r in conv if r["group"] == "mean" and r["size"] == 0.1]
    found = [(r, hr) for r, hr in found if hr and r["n"] >= 5000]
    if found:
        row(
            "a 0.1 sd shift found at n >= 5,000",
            ", ".join(f"n = {r['n']:,}: {h / m:.2f}" for r, (h, m) in found),
            all(h / m >= 0.8 for _, (h, m) in found),
        )
    tiny = [(r, rate(r, "drift")) for r in conv if r["group"] == "mean" and r["size"] < 0.05]
    tiny = [(r, hr) for r, hr in tiny if hr]
    if tiny:
        row(
            "no alarm on a shift below 0.05 sd at any n (rate <= 0.05)",
            ", ".join(f"{r['size']:g} sd, n = {r['n']:,}: {h / m:.2f}" for r, (h, m) in tiny),
            at_most_alpha([hr for _, hr in tiny]),
        )
    speed = {(r["contender"], r.get("variant", "")): r for r in records if r.get("kind") == "speed"}
    mine = speed.get(("conveyor", ""))
    if mine and "error" not in mine:
        others = {key: r["rows_per_s"] for key, r in speed.items() if "error" not in r}
        alibi = max((v for (c, _), v in others.items() if c == "alibi"), default=None)
        ev = others.get(("evidently", ""))
        if alibi:
            row(
                "rows/s >= alibi-detect's (its faster detector)",
                f"{mine['rows_per_s']:,.0f} vs {alibi:,.0f}",
                mine["rows_per_s"] >= alibi,
            )
        if ev:
            row(
                "rows/s >= 20x Evidently's",
                f"{mine['rows_per_s'] / ev:.1f}x",
                mine["rows_per_s"] >= 20 * ev,
            )
    memory = [r for r in records if r.get("kind") == "memory" and r["contender"] == "conveyor"]
    if memory and "error" not in memory[0]:
        r = memory[0]
        row(
            f"{r['n']:,} rows x {r['k']} columns checked in under a gigabyte",
            f"peak {r['peak_check_mb']:,.0f} MB in the process during the check, of which "
            f"{r['start_mb']:,.0f} MB interpreter and libraries and {r['window_mb']:,.0f} MB "
            f"the current window itself; the check added {r['check_extra_mb']:,.0f} MB",
            r["peak_check_mb"] < 1024 if r["n"] >= 1_000_000 else None,
            unsure="not measured at 1M rows",
        )
    lines.append("")
    return lines


def _mismatches(records: list[dict[str, Any]]) -> list[str]:
    """Tasks whose first run's tables differed between contenders (should be none)."""
    prints: dict[str, set[str]] = defaultdict(set)
    for r in records:
        if r.get("fingerprint"):
            prints[r["id"]].add(r["fingerprint"])
    bad = sorted(tid for tid, fp in prints.items() if len(fp) > 1)
    failed = sorted(
        {f"{r['contender']} {r['id']}: {r['error'][:160]}" for r in records if "error" in r}
    )
    lines: list[str] = []
    if bad:
        lines += ["**Tables differed between contenders in: " + ", ".join(bad) + "**", ""]
    else:
        lines += [
            "Every contender checked the same tables (the fingerprints of each task's "
            "first run agree).",
            "",
        ]
    if failed:
        lines += ["Failed tasks:", ""] + [f"- {f}" for f in failed] + [""]
    return lines


def _cost(records: list[dict[str, Any]], names: list[str]) -> list[str]:
    """How long each contender took, to plan runs."""
    lines = [
        "## Time per contender",
        "",
        "| contender | statistics runs | tool s | wall s |",
        "|---|--:|--:|--:|",
    ]
    for name in names:
        mine = [r for r in records if r["contender"] == name]
        runs = sum(len(r.get("results") or []) for r in mine)
        tool = sum(r.get("tool_s", 0.0) for r in mine)
        wall = sum(r.get("wall_s", 0.0) for r in mine)
        lines.append(f"| {name} | {runs:,} | {tool:,.0f} | {wall:,.0f} |")
    return [*lines, ""]


if __name__ == "__main__":
    sys.exit(main())
