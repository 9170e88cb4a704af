"""The vector part of the drift benchmark: its plan and its table (results-embedding.md).

One column of 384-d embeddings (or 256-pixel images) per window, built by common.py's
`make_vectors`; Conveyor's `mmd` detector against alibi-detect's MMDDrift and Evidently's
EmbeddingsDrift methods. run.py runs the tasks with the tabular ones (`--part`).
"""

from __future__ import annotations

import time
from typing import Any

from common import VECTOR_SCENARIOS

# Every flag a vector task gives, in table order: (contender, flag, label).
FLAGS = [
    ("conveyor", "drift", "Conveyor `drift` (mmd)"),
    ("alibi", "mmd", "alibi MMDDrift (PyTorch, 100 permutations)"),
    ("evidently", "model", "Evidently EmbeddingsDrift default (classifier)"),
    ("evidently", "mmd", "Evidently EmbeddingsDrift mmd (MMD^2 > 0.015)"),
]
MEAN_GRID = [0.1, 0.2, 0.3, 0.5]
SMALL = [0.02, 0.05]
IMAGE_CASES = [("img-none", 0.0), ("img-rotate", 10.0), ("img-noise", 0.05), ("img-noise", 0.1)]
IMAGE_LABELS = {
    ("img-none", 0.0): "unchanged (false alarms)",
    ("img-rotate", 10.0): "turned 10 degrees",
    ("img-noise", 0.05): "pixel noise + N(0, 0.05^2) (its variance x2)",
    ("img-noise", 0.1): "pixel noise + N(0, 0.1^2) (x5)",
}

# Runs per task: (Conveyor, alibi-detect, Evidently); 0 = not run. alibi's MMDDrift
# computes the kernel of all n + m rows and permutes it 100 times: 0.3 to 1.2 s at
# 500 + 500 rows, 4 s at 1,000 + 1,000, 8 to 15 s at 2,000 + 2,000 and 104 s at
# 5,000 + 5,000 on this machine (2 shared cores); it is not run above 2,000 rows.
# Evidently's mmd method holds an (n + m)^2 float64 kernel: not run above 5,000 rows.
FULL: dict[str, Any] = {
    "fa": {500: (200, 200, 200), 2000: (100, 10, 50), 20_000: (30, 0, 5)},
    "mean": {1000: (50, 10, 20)},
    "small": {20_000: (20, 0, 5)},
    "img": {1000: [(100, 10, 20), (30, 10, 10), (30, 10, 10), (30, 10, 10)]},
    "speed": [(2000, 3), (100_000, 2)],
}
QUICK: dict[str, Any] = {
    "fa": {500: (50, 50, 50), 2000: (20, 5, 10)},
    "mean": {1000: (10, 5, 5)},
    "small": {20_000: (5, 0, 2)},
    "img": {1000: [(20, 5, 5), (10, 5, 5), (10, 5, 5), (10, 5, 5)]},
    "speed": [(2000, 2)],
}
SPEED_VARIANTS = {  # per current-window size: the detectors timed
    2000: {"conveyor": [""], "alibi": ["mmd"], "evidently": ["model", "mmd", "report"]},
    100_000: {"conveyor": [""], "alibi": [], "evidently": ["model"]},
}


def plan(quick: bool) -> list[dict[str, Any]]:
    p = QUICK if quick else FULL
    tasks: list[dict[str, Any]] = []

    def stat(group: str, n: int, scenario: str, size: float, runs: tuple[int, int, int]) -> None:
        tasks.append(
            {"id": f"vec-{group}-n{n}-{scenario}-{size:g}", "group": f"vec-{group}"}
            | {"kind": "stat", "k": 1, "n": n, "scenario": scenario, "size": float(size)}
            | {"runs": dict(zip(("conveyor", "alibi", "evidently"), runs, strict=True))}
        )

    for n, runs in p["fa"].items():
        stat("fa", n, "emb-none", 0.0, runs)
    for n, runs in p["mean"].items():
        for size in MEAN_GRID:
            stat("mean", n, "emb-mean", size, runs)
    for n, runs in p["small"].items():
        for size in SMALL:
            stat("small", n, "emb-mean", size, runs)
    for n, runs_per_case in p["img"].items():  # in IMAGE_CASES' order
        for (scenario, size), runs in zip(IMAGE_CASES, runs_per_case, strict=True):
            stat("img", n, scenario, size, runs)
    for n, repeat in p["speed"]:
        tasks.append(
            {"id": f"vec-speed-n{n}", "group": "vec-speed", "kind": "speed", "k": 1, "n": n}
            | {"scenario": "emb-none", "size": 0.0, "repeat": repeat}
            | {"variants": SPEED_VARIANTS[n]}
        )
    return tasks


def is_vector(task: dict[str, Any]) -> bool:
    return task.get("scenario") in VECTOR_SCENARIOS


# --- the table --------------------------------------------------------------------------


def render(
    records: list[dict[str, Any]],
    names: list[str],
    quick: bool,
    started: float,
    ended: float,
    helpers: Any,
) -> str:
    """`helpers`: run.py's module (wilson, rate, fmt_rate, _mismatches, _cost)."""
    by = {(r["contender"], r["id"]): r for r in records}
    flags = [f for f in FLAGS if f[0] in names]
    engines = sorted({f"{r['contender']}: {r['engine']}" for r in records if r.get("engine")})
    loads = sorted({round(r.get("load1_start", 0.0), 2) for r in records})
    command = "run.py --part embedding" + (" --quick" if quick else "")
    lines = [
        f"# Drift benchmark, embeddings and images ({'quick' if quick else 'full'} size)",
        "",
        f"- Run: {time.strftime('%Y-%m-%d %H:%M', time.gmtime(started))} to "
        f"{time.strftime('%H:%M UTC', time.gmtime(ended))} ({(ended - started) / 60:.1f} min), "
        f"`.venv/bin/python benchmarks/drift/{command}`",
        f"- Machine: 2 cores shared; load average at each contender's start "
        f"{min(loads, default=0):.2f} to {max(loads, default=0):.2f}.",
        "- Engines: " + "; ".join(engines) + ".",
        "- One column per window: 384-d embeddings (16 latent axes, sds 1 to 1/4, in noise) or "
        "16 x 16 images (256-d); reference and current windows of n rows each; alpha 0.05. "
        "A cell is the share of runs flagged (runs); false alarms also give the 95% Wilson "
        "interval; — = not run at that size (see README).",
        "",
        *helpers._mismatches(records),
    ]

    def cell(task_id: str, flag: str, c: str, interval: bool = False) -> str:
        return helpers.fmt_rate(helpers.rate(by.get((c, task_id)), flag), interval)

    def table(title: str, columns: list[tuple[str, str]], interval: bool, note: str = "") -> None:
        present = [(tid, label) for tid, label in columns if any(k[1] == tid for k in by)]
        if not present:
            return
        lines.extend([f"## {title}", ""] + ([note, ""] if note else []))
        lines.append("| flag | " + " | ".join(label for _, label in present) + " |")
        lines.append("|---|" + "--:|" * len(present))
        for c, flag, label in flags:
            cells = [cell(tid, flag, c, interval) for tid, _ in present]
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")

    ns = sorted({r["n"] for r in records if r.get("group") == "vec-fa"})
    table(
        "False alarms: unchanged embeddings (384-d)",
        [(f"vec-fa-n{n}-emb-none-0", f"n = {n:,}") for n in ns],
        True,
    )
    ns = sorted({r["n"] for r in records if r.get("group") == "vec-mean"})
    for n in ns:
        table(
            f"Mean shift along the main axis (in its sds), n = {n:,}",
            [(f"vec-mean-n{n}-emb-mean-{s:g}", f"{s:g} sd") for s in MEAN_GRID],
            False,
        )
    small = sorted({(r["n"], r["size"]) for r in records if r.get("group") == "vec-small"})
    table(
        "Negligible shifts at many rows (ideally near the false-alarm rate)",
        [(f"vec-small-n{n}-emb-mean-{s:g}", f"{s:g} sd, n = {n:,}") for n, s in small],
        True,
    )
    ns = sorted({r["n"] for r in records if r.get("group") == "vec-img"})
    for n in ns:
        table(
            f"Images (16 x 16, 256-d), n = {n:,}",
            [(f"vec-img-n{n}-{s}-{size:g}", IMAGE_LABELS[(s, size)]) for s, size in IMAGE_CASES],
            False,
        )
    lines += _speed(records, names)
    lines += helpers._cost(records, names)
    return "\n".join(lines) + "\n"


SPEED_LABELS = {
    ("conveyor", ""): "Conveyor `check` (Reference prebuilt)",
    ("alibi", "mmd"): "alibi MMDDrift `predict` (detector prebuilt)",
    ("evidently", "model"): "Evidently classifier method (as the metric calls it)",
    ("evidently", "mmd"): "Evidently mmd method",
    ("evidently", "report"): "Evidently Report([EmbeddingsDrift]) whole, with its t-SNE",
}


def _speed(records: list[dict[str, Any]], names: list[str]) -> list[str]:
    lines: list[str] = []
    for n in sorted({r["n"] for r in records if r.get("group") == "vec-speed"}):
        recs = {
            (r["contender"], r.get("variant", "")): r
            for r in records
            if r.get("group") == "vec-speed" and r["n"] == n
        }
        conveyor = recs.get(("conveyor", ""))
        lines += [
            f"## Speed: {n:,} reference + {n:,} current 384-d vectors",
            "",
            "rows/s = current rows / check seconds (median of the repeats); build = the "
            "reference side made once (Conveyor's Reference, alibi's detector); × Conveyor "
            "= its time / Conveyor's.",
            "",
            "| contender | build s | check s | rows/s | CPU s | × Conveyor's time "
            "| peak in check MB |",
            "|---|--:|--:|--:|--:|--:|--:|",
        ]
        for key, label in SPEED_LABELS.items():
            r = recs.get(key)
            if key[0] not in names or r is None:
                continue
            if "error" in r:
                lines.append(f"| {label} | failed: {r['error'][:150]} |" + " |" * 5)
                continue
            mine = conveyor if conveyor and "error" not in conveyor else None
            ratio = r["check_s"] / mine["check_s"] if mine else None
            lines.append(
                f"| {label} | {r['build_s']:.3f} | {r['check_s']:.3f} | {r['rows_per_s']:,.0f} "
                f"| {r['cpu_s']:.2f} | {'—' if ratio is None else f'{ratio:,.1f}'} "
                f"| {r['peak_check_mb']:,.0f} |"
            )
        lines.append("")
    return lines
