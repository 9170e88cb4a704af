"""`conveyor models ...`: list, inspect, compare, gate, promote and export model versions.

Thin over `ws.models`; torch and onnx are imported only by the commands that need them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from conveyor.cli import output
from conveyor.cli.state import state

if TYPE_CHECKING:
    from conveyor.registry.version import ModelVersion

app = typer.Typer(
    help="Model registry: versions, lineage, gates, promotion, export.", no_args_is_help=True
)
gate_app = typer.Typer(help="Gates: named checks a version must pass before an alias moves.")
app.add_typer(gate_app, name="gate")

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
Ref = Annotated[str, typer.Argument(help="NAME@vN, NAME@ALIAS (e.g. @production) or NAME.")]


def _figures(metrics: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items())) or "-"


@app.command("ls")
def list_models(
    name: Annotated[str | None, typer.Argument(help="Only this model's versions.")] = None,
    wide: output.WideOption = False,
    as_json: JsonOption = False,
) -> None:
    """List model versions, newest first, with their metrics and aliases."""
    with state.open_workspace() as ws:
        versions = ws.models.list(name)
    if as_json:
        output.print_json([v.__dict__ for v in versions])
        return
    if not versions:
        output.print_line("No models yet: `conveyor train ...` registers what it trains.")
        return
    output.print_table(
        "Models",
        [
            output.Column("version", key=True), "status", "aliases", "metrics",
            output.Column("run", optional=True), output.Column("created", optional=True),
        ],
        [
            (
                v.ref, v.status, ", ".join(v.aliases) or "-",
                [f"{k} {x:.4g}" for k, x in sorted(v.metrics.items())],
                (v.run_id or "-")[:12], f"{v.created_at:%Y-%m-%d %H:%M} by {v.created_by}",
            )
            for v in versions
        ],
        wide=wide,
    )  # fmt: skip


@app.command()
def show(ref: Ref, as_json: JsonOption = False) -> None:
    """A version: signature, preprocessing, metrics, lineage, gate results, aliases."""
    with state.open_workspace() as ws:
        mv = ws.models.get(ref)
        results = ws.models.gate_results(mv.ref)
        aliases = [a for a, n in ws.models.aliases(mv.name).items() if n == mv.number]
    if as_json:
        data = mv.manifest.model_dump(mode="json")
        data.update(
            ref=mv.ref, status=mv.status, aliases=aliases, gates=[r.to_dict() for r in results]
        )
        output.print_json(data)
        return
    m = mv.manifest
    output.print_line(f"[bold]{mv.ref}[/bold] ({mv.status}) {m.description}")
    output.print_line(f"  aliases: {', '.join(aliases) or '-'}")
    output.print_line(f"  metrics: {_figures(mv.metrics)}")
    sig = mv.signature
    for kind, specs in (("input", sig.inputs), ("output", sig.outputs)):
        for t in specs:
            output.print_line(f"  {kind}: {t.name} {t.dtype} {t.shape}")
    if sig.labels:
        output.print_line(f"  labels: {', '.join(sig.labels)}")
    output.print_line(f"  preprocessing: {mv.preprocessing.to_dict()}")
    output.print_line(f"  data: {', '.join(mv.datasets) or '-'}; run: {mv.run_id or '-'}")
    if m.export_check:
        c = m.export_check
        output.print_line(
            f"  ONNX check: max |ONNX - PyTorch| = {c.max_abs_diff:.2g} on {c.samples} "
            f"held-out rows (tolerance {c.tolerance:g}, {c.exporter})"
        )
    output.print_line(
        "  artifacts: "
        + ", ".join(f"{k} ({output.human_bytes(v)})" for k, v in mv.artifacts.items())
    )
    for r in results:
        verdict = "[green]passed[/green]" if r.passed else "[red]FAILED[/red]"
        output.print_line(
            f"  gate {r.gate}: {verdict} ({r.evaluated_at:%Y-%m-%d %H:%M} by {r.evaluated_by})"
        )
        for check in r.checks:
            mark = "[green]ok[/green]" if check["passed"] else "[red]FAIL[/red]"
            output.print_line(f"    {mark} {check['check']}: {check['message']}")


@app.command()
def compare(
    a: Annotated[str, typer.Argument(help="A version (NAME@vN or NAME@ALIAS).")],
    b: Annotated[str, typer.Argument(help="Another version.")],
    as_json: JsonOption = False,
) -> None:
    """Two versions side by side: metrics (with the change), data, run, size."""
    with state.open_workspace() as ws:
        first, second = ws.models.get(a), ws.models.get(b)
    rows = _comparison(first, second)
    if as_json:
        output.print_json({"a": first.ref, "b": second.ref, "rows": rows})
        return
    output.print_table(
        f"{first.ref} vs {second.ref}", ["", first.ref, second.ref, "change"],
        [(r["field"], r["a"], r["b"], r.get("change", "")) for r in rows],
    )  # fmt: skip


def _comparison(a: ModelVersion, b: ModelVersion) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for key in sorted(set(a.metrics) | set(b.metrics)):
        x, y = a.metrics.get(key), b.metrics.get(key)
        change = f"{y - x:+.4g}" if x is not None and y is not None else ""
        rows.append({"field": key, "a": _num(x), "b": _num(y), "change": change})
    for field, p, q in (
        ("data", ", ".join(a.datasets), ", ".join(b.datasets)),
        ("run", a.run_id or "-", b.run_id or "-"),
        (
            "size",
            output.human_bytes(sum(a.artifacts.values())),
            output.human_bytes(sum(b.artifacts.values())),
        ),
        ("same preprocessing", "", "yes" if a.preprocessing == b.preprocessing else "no"),
        ("same signature", "", "yes" if a.signature == b.signature else "no"),
    ):
        rows.append({"field": field, "a": p, "b": q})
    return rows


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4g}"


@app.command()
def promote(
    ref: Ref,
    to: Annotated[str, typer.Option("--to", help="The alias to move (production, staging...).")],
    reason: Annotated[str, typer.Option("--reason", "-m", help="Why (kept in the history).")] = "",
    gate: Annotated[
        str | None, typer.Option(help="Gate to pass (default: the gate named like the alias).")
    ] = None,
) -> None:
    """Point an alias at a version, once it passes the alias's gate."""
    with state.open_workspace() as ws:
        move = ws.models.promote(ref, to=to, reason=reason, gate=gate)
    before = f"from v{move.from_number} " if move.from_number else ""
    gated = f" (passed gate {move.gate})" if move.gate else ""
    output.print_line(f"Moved {move.model}@{move.alias} {before}to v{move.to_number}{gated}")


@app.command()
def archive(ref: Ref) -> None:
    """Archive a version: kept, but no longer latest or promotable."""
    with state.open_workspace() as ws:
        mv = ws.models.archive(ref)
    output.print_line(f"Archived {mv.ref}")


@app.command()
def approve(
    ref: Ref, note: Annotated[str, typer.Option("--note", "-m", help="What you checked.")] = ""
) -> None:
    """Sign off a version (satisfies a gate's approval check)."""
    with state.open_workspace() as ws:
        mv = ws.models.get(ref)
        count = ws.models.approve(mv.ref, note)
    output.print_line(f"Approved {mv.ref} ({count} approval(s))")


@app.command()
def history(
    name: Annotated[str, typer.Argument(help="Model name.")], as_json: JsonOption = False
) -> None:
    """Every alias move of a model: who, when, why, from which version to which."""
    with state.open_workspace() as ws:
        moves = ws.models.alias_history(name)
    if as_json:
        output.print_json([m.__dict__ for m in moves])
        return
    output.print_table(
        f"Alias history of {name}",
        ["when", "alias", "from", output.Column("to", key=True), "by", "gate", "reason"],
        [
            (f"{m.moved_at:%Y-%m-%d %H:%M:%S}", m.alias,
             f"v{m.from_number}" if m.from_number else "-",
             f"v{m.to_number}", m.moved_by, m.gate or "-", m.reason)
            for m in moves
        ],
    )  # fmt: skip


@app.command()
def lineage(ref: Ref, as_json: JsonOption = False) -> None:
    """Where a version came from: run, dataset versions, shards, code commit, environment."""
    with state.open_workspace() as ws:
        info = ws.models.lineage(ref)
    if as_json:
        output.print_json(info)
        return
    output.print_line(f"[bold]{info['model']}[/bold]")
    run = info["run"] or {}
    output.print_line(
        f"  run: {run.get('id', '-')} ({run.get('experiment') or '-'}, "
        f"by {run.get('user') or '-'} on {run.get('host') or '-'})"
    )
    output.print_line(f"  code commit: {info['code_commit'] or '-'}")
    for d in info["datasets"]:
        output.print_line(
            f"  data: {d['ref']} ({d['role']}), {len(d['shards'])} shard(s), "
            f"manifest {d['manifest'][:12]}…"
        )
        for shard in d["shards"]:
            output.print_line(f"    shard {shard[:16]}…")
        for step in d.get("history", []):
            parents = ", ".join(step["parents"]) or "raw files"
            output.print_line(
                f"    {step['ref']}: {step['operation']} of {parents} ({step['rows']} rows)"
            )
    env = info["environment"]
    output.print_line("  environment: " + ", ".join(f"{k} {v}" for k, v in env.items()))


@app.command()
def export(
    ref: Ref,
    fmt: Annotated[str, typer.Option("--format", "-f", help="onnx or onnx-int8.")] = "onnx",
    out: Annotated[Path, typer.Option("--out", "-o", help="A new or empty folder.")] = Path(
        "export"
    ),
    data: Annotated[
        str | None, typer.Option(help="Evaluate/calibrate int8 on this dataset version.")
    ] = None,
    split: Annotated[
        str | None, typer.Option(help="Split of --data (default test or val).")
    ] = None,
    quantize: Annotated[
        str | None, typer.Option(help="int8 mode: static (calibrated) or dynamic.")
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """A folder with the model, signature, preprocessing and a runner (onnxruntime only)."""
    from conveyor.core.errors import ConveyorError

    if quantize not in (None, "static", "dynamic"):
        raise ConveyorError(f"unknown --quantize {quantize!r}", "use static or dynamic")
    with state.open_workspace() as ws:
        report = ws.models.export(ref, fmt, out, data, split, quantize)  # type: ignore[arg-type]
    if as_json:
        output.print_json(report.to_dict())
        return
    output.print_line(
        f"Exported {report.ref} as {report.format} to {report.folder} "
        f"({output.human_bytes(report.size_bytes)})"
    )
    if report.quantization:
        f, q = report.fp32, report.int8
        if report.accuracy_change is not None:
            output.print_line(
                f"  accuracy on {f['data']}: {f['accuracy']:.4f} -> {q['accuracy']:.4f} "
                f"({report.accuracy_change:+.4f})"
            )
        output.print_line(
            f"  p50 latency (batch of 1): {f['p50_ms']:.3f} -> {q['p50_ms']:.3f} ms "
            f"(speedup {report.speedup or 0:.2f}x)"
        )
        output.print_line(
            f"  size: {output.human_bytes(f['size_bytes'])} -> "
            f"{output.human_bytes(q['size_bytes'])} ({report.size_ratio or 0:.2f}x), "
            f"{report.quantization} int8"
        )
    output.print_line(f"  run it: cd {report.folder} && python run.py ...  (see README.md there)")


@gate_app.command("set")
def gate_set(
    name: Annotated[str, typer.Argument(help="Gate name; a gate named like an alias guards it.")],
    file: Annotated[Path, typer.Option("--file", "-f", help="The gate's YAML file.")],
) -> None:
    """Define or replace a gate from YAML (`checks:` list; see registry/gates.py)."""
    with state.open_workspace() as ws:
        gate = ws.models.set_gate(name, file)
    output.print_line(f"Gate {name}: {len(gate.checks)} check(s)")


@gate_app.command("show")
def gate_show(name: Annotated[str | None, typer.Argument(help="One gate.")] = None) -> None:
    """Print gates as JSON."""
    with state.open_workspace() as ws:
        gates = ws.models.gates()
    chosen = {k: v for k, v in gates.items() if name is None or k == name}
    output.print_json({k: v.model_dump(exclude_none=True) for k, v in chosen.items()})


@gate_app.command("check")
def gate_check(
    ref: Ref,
    gate: Annotated[str, typer.Option("--gate", "-g", help="The gate to evaluate.")],
    as_json: JsonOption = False,
) -> None:
    """Evaluate a gate on a version without moving anything; exit 1 when it fails."""
    with state.open_workspace() as ws:
        result = ws.models.check_gate(ref, gate)
    if as_json:
        output.print_json(result.to_dict())
    else:
        for c in result.checks:
            mark = "[green]ok[/green]" if c["passed"] else "[red]FAIL[/red]"
            output.print_line(f"{mark} {c['check']}: {c['message']}")
        output.print_line(f"gate {gate}: {'passed' if result.passed else 'failed'}")
    if not result.passed:
        raise typer.Exit(1)
