"""Turn the contenders' JSON into results.md: per-call µs, points/s, read seconds, ratios."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

NAMES = {
    "conveyor": "Conveyor (SQLite workspace)",
    "mlflow-sqlite": "MLflow, direct `sqlite:///`",
    "mlflow-server": "MLflow through `mlflow server` (SQLite)",
}


def _us(seconds: float, calls: int) -> float:
    return 1e6 * seconds / calls


def _fmt(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def _ratio(x: float) -> str:
    return f"{x:,.0f}×" if x >= 10 else f"{x:.1f}×"


def _git() -> str:
    root = Path(__file__).parents[2]
    rev = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "src"], cwd=root, capture_output=True, text=True
    ).stdout.strip()
    return rev + (" + uncommitted changes in src/" if dirty else "")


def write_report(
    path: Path, results: dict[str, dict[str, Any]], facts: dict[str, Any], quick: bool, command: str
) -> None:
    c = results["conveyor"]
    ml = {k: v for k, v in results.items() if k != "conveyor"}
    lines = [
        "# Tracking benchmark: results",
        "",
        f"- Run: {facts['started']:%Y-%m-%d %H:%M} UTC, {'quick' if quick else 'full'} size; "
        f"command: `{command}`",
        f"- Machine: {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}",
        f"- Load average (1/5/15 min): at start {facts['load_start']}, before each contender "
        + ", ".join(f"{k} {v}" for k, v in facts["loads"].items())
        + f", at end {facts['load_end']}",
        f"- Versions: conveyor (git {_git()}), mlflow {next(iter(ml.values()))['mlflow']} in "
        "its own venv",
        f"- Points: {c['points']:,}. Conveyor logs all of them one call per point; MLflow's "
        f"one-per-call figures are from a sample of {next(iter(ml.values()))['single']['calls']:,}"
        " calls (each call is a synchronous write, so the per-call cost does not depend on how"
        " many follow).",
        "- Conveyor's calls return before the point is stored; *durable* adds the wait for "
        "its background writer to commit everything (`run.flush()`). MLflow's calls return "
        "once stored, so its call time is its durable time.",
        "",
        "## Writes",
        "",
        "| contender | one per call: µs/call | points/s (durable) | batched: µs/point "
        "| points/s (durable) |",
        "|---|--:|--:|--:|--:|",
    ]
    for key, r in results.items():
        s, b = r["single"], r["batched"]
        lines.append(
            f"| {NAMES[key]} | {_fmt(_us(s['calls_s'], s['calls']))} | "
            f"{s['points'] / s['durable_s']:,.0f} | {_fmt(_us(b['calls_s'], b['points']))} | "
            f"{b['points'] / b['durable_s']:,.0f} |"
        )
    lines += [
        "",
        "Batched: Conveyor `log_metrics` of 100 keys per call (one call per step); MLflow "
        "`log_batch` of 1,000 metrics (10 steps × 100 keys) per call.",
        "",
        "## Reads of a 100,000-point metric" if not quick else "## Reads of the whole metric",
        "",
        "| contender | every point, s | for a chart (≤ 1,000 points), s |",
        "|---|--:|--:|",
    ]
    for key, r in results.items():
        chart = f"{r['read']['chart_s']:.3f}" if "chart_s" in r["read"] else "– (no such call)"
        lines.append(f"| {NAMES[key]} | {r['read']['full_s']:.3f} | {chart} |")
    lines += [
        "",
        "## Overhead of logging every step (2 metrics per step, 1 ms dummy step)",
        "",
        "| contender | Python step (holds the GIL) | noise floor | native step (releases "
        "the GIL) | noise floor | steps |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for key, r in results.items():
        p, n = r["overhead_python"], r["overhead_native"]
        lines.append(
            f"| {NAMES[key]} | {p['overhead_pct']:+.2f}% | {p['noise_floor_pct']:+.2f}% | "
            f"{n['overhead_pct']:+.2f}% | {n['noise_floor_pct']:+.2f}% | {p['steps']:,} |"
        )
    lines += [
        "",
        "Noise floor: the same measurement with a logger that does nothing; an overhead "
        "within it is not measurable on this machine.",
        "",
        "## Ratios (how many times faster Conveyor is)",
        "",
        "| vs | one-per-call µs/call | one-per-call durable | batched µs/point | batched "
        "durable | read every point | read for a chart vs MLflow's full read |",
        "|---|--:|--:|--:|--:|--:|--:|",
    ]
    cs, cb, cr = c["single"], c["batched"], c["read"]
    for key, r in ml.items():
        s, b, rd = r["single"], r["batched"], r["read"]
        lines.append(
            f"| {NAMES[key]} | "
            f"{_ratio(_us(s['calls_s'], s['calls']) / _us(cs['calls_s'], cs['calls']))} | "
            f"{_ratio((s['durable_s'] / s['points']) / (cs['durable_s'] / cs['points']))} | "
            f"{_ratio((b['calls_s'] / b['points']) / (cb['calls_s'] / cb['points']))} | "
            f"{_ratio((b['durable_s'] / b['points']) / (cb['durable_s'] / cb['points']))} | "
            f"{_ratio(rd['full_s'] / cr['full_s'])} | {_ratio(rd['full_s'] / cr['chart_s'])} |"
        )
    path.write_text("\n".join(lines) + "\n")
