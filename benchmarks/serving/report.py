"""results.json -> results.md: the tables benchmarks/serving/README.md explains."""

from __future__ import annotations

from typing import Any

ORDER = [
    "conveyor",
    "conveyor-nolog",
    "litserve",
    "ray-serve",
    "pytriton",
    "bentoml",
    "fastapi",
    "noop",
]


def _points(raw: dict[str, Any]) -> dict[tuple[str, str, int, int], dict[str, Any]]:
    out = {}
    for r in raw["results"]:
        for p in r["points"]:
            out[(r["name"], p["model"], p["rows"], p["connections"])] = p
    return out


def write_report(raw: dict[str, Any]) -> str:
    meta, ceilings = raw["meta"], raw["ceilings"]
    results = sorted(raw["results"], key=lambda r: ORDER.index(r["name"]))
    points = _points(raw)
    conns = sorted({p["connections"] for r in results for p in r["points"]})
    lines = [
        f"# Serving benchmark results ({'quick' if meta['quick'] else 'full'})",
        "",
        f"Run {meta['started']}, {meta['seconds']} s per point after a 1 s warm-up, "
        f"Python {meta['python']}, {meta['cpus']} cores; load average before "
        f"{meta['load_before']:.2f}, after each contender "
        f"{', '.join(f'{x:.2f}' for x in meta['load_during'])}. Servers pinned to core 0, "
        "wrk to core 1. Command: `.venv/bin/python benchmarks/serving/run.py"
        + (" --quick" if meta["quick"] else "")
        + "`.",
        "",
        "## Ceilings (in-process, one thread, core 0)",
        "",
        "| model | runtime | best batch | rows/s at best batch | rows/s at 32 "
        "| single-row call p50 |",
        "|---|---|--:|--:|--:|--:|",
    ]
    for model, runtimes in ceilings.items():
        for runtime, c in runtimes.items():
            lines.append(
                f"| {model} | {runtime} | {c['best_batch']} | {c['best_rows_per_s']:,} | "
                f"{c['rows_per_s']['32']:,} | {c['single_row_p50_us']} µs |"
            )
    for model in ("mlp", "cnn"):
        for rows in (1, 32):
            lines += [
                "",
                f"## {model.upper()}, {rows} row{'s' if rows > 1 else ''} per request",
                "",
            ]
            head = " | ".join(f"rows/s @{n}" for n in conns)
            lines.append(
                f"| contender | {head} | p50 / p99 @1 (ms) | p50 / p99 @32 (ms) | "
                "errors | mean batch @32 |"
            )
            lines.append("|---|" + "--:|" * (len(conns) + 4))
            for r in results:
                cells = []
                for n in conns:
                    p = points.get((r["name"], model, rows, n))
                    cells.append(f"{p['rows_per_s']:,.0f}" if p else "–")
                one = points.get((r["name"], model, rows, 1))
                mid = points.get((r["name"], model, rows, 32))
                errors = sum(
                    points[(r["name"], model, rows, n)]["errors"]
                    for n in conns
                    if (r["name"], model, rows, n) in points
                )
                lat1 = f"{one['p50_ms']:.2f} / {one['p99_ms']:.2f}" if one else "–"
                lat32 = f"{mid['p50_ms']:.2f} / {mid['p99_ms']:.2f}" if mid else "–"
                batch = f"{mid['mean_batch']:.1f}" if mid and mid["mean_batch"] else "–"
                name = f"**{r['name']}**" if r["name"] == "conveyor" else r["name"]
                if r["failure"] and not r["points"]:
                    lines.append(f"| {name} | failed: {r['failure'][:80]} |")
                    continue
                lines.append(
                    f"| {name} | {' | '.join(cells)} | {lat1} | {lat32} | {errors} | {batch} |"
                )
    lines += ["", *summary(raw, points)]
    lines += [
        "",
        "## Cold start and memory",
        "",
        "| contender | cold start mlp / cnn (s) | RSS after warm-up (MB) "
        "| RSS after soak (MB) | soak requests |",
        "|---|--:|--:|--:|--:|",
    ]
    for r in results:
        cold = " / ".join(f"{r['cold_start_s'].get(m, float('nan')):.1f}" for m in ("mlp", "cnn"))
        mem = r["memory"]
        lines.append(
            f"| {r['name']} | {cold} | {mem.get('rss_start_mb', '–')} "
            f"| {mem.get('rss_end_mb', '–')} "
            f"| {mem.get('requests', '–'):,} |"
            if mem
            else f"| {r['name']} | {cold} | – | – | – |"
        )
    lines += ["", "## Settings", ""]
    for r in results:
        extra = f" **Failed:** {r['failure']}" if r["failure"] else ""
        lines.append(f"- **{r['name']}**: {r['note']}.{extra}")
    return "\n".join(lines) + "\n"


RIVALS = ("litserve", "ray-serve", "pytriton", "bentoml", "fastapi")


def summary(
    raw: dict[str, Any], points: dict[tuple[str, str, int, int], dict[str, Any]]
) -> list[str]:
    """Conveyor against the goals, at 32 connections.

    The bound: one core must at least parse and answer each request (the no-op's time)
    and run the model on its rows (the raw ceiling's time per row), so no server can
    pass 1 / (1/no-op + 1/raw) rows/s; a goal above it cannot be met on this hardware.
    """
    ceilings = raw["ceilings"]
    out = [
        "## Against the goals (32 connections)",
        "",
        "| model, rows/request | Conveyor rows/s | best rival | Conveyor ÷ best rival "
        "| % of no-op ceiling | % of raw ceiling | bound (% of no-op / of raw) "
        "| p50 @1 − raw single-row call |",
        "|---|--:|---|--:|--:|--:|--:|--:|",
    ]
    for model in ("mlp", "cnn"):
        raw_best = max(c["best_rows_per_s"] for c in ceilings[model].values())
        single = min(c["single_row_p50_us"] for c in ceilings[model].values()) / 1000
        for rows in (1, 32):
            ours = points.get(("conveyor", model, rows, 32))
            if ours is None:
                continue
            rivals = [
                (n, points[(n, model, rows, 32)]["rows_per_s"])
                for n in RIVALS
                if (n, model, rows, 32) in points
            ]
            best = max(rivals, key=lambda r: r[1]) if rivals else ("–", float("nan"))
            noop = points.get(("noop", model, rows, 32))
            one = points.get(("conveyor", model, rows, 1))
            ratio = ours["rows_per_s"] / best[1] if rivals else float("nan")
            of_noop = f"{100 * ours['rows_per_s'] / noop['rows_per_s']:.0f}%" if noop else "–"
            gap = f"{one['p50_ms'] - single:.2f} ms" if one and rows == 1 else "–"
            bound = "–"
            if noop:
                limit = 1 / (1 / noop["rows_per_s"] + 1 / raw_best)
                bound = f"{100 * limit / noop['rows_per_s']:.0f}% / {100 * limit / raw_best:.0f}%"
            out.append(
                f"| {model}, {rows} | {ours['rows_per_s']:,.0f} | {best[0]} ({best[1]:,.0f}) "
                f"| {ratio:.1f}× | {of_noop} | {100 * ours['rows_per_s'] / raw_best:.0f}% "
                f"| {bound} | {gap} |"
            )
    return out
