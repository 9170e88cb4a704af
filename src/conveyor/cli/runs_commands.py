"""`conveyor runs ...`: list, inspect and compare tracked runs."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any

import typer

from conveyor.cli import output
from conveyor.cli.state import state

if TYPE_CHECKING:
    from conveyor.tracking.queries import RunInfo

app = typer.Typer(help="Experiment runs: list, show, compare, cost.", no_args_is_help=True)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
RunId = Annotated[
    str, typer.Argument(help="A run id, or a unique prefix of at least 4 characters.")
]


def _number(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.6g}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _as_json(run: RunInfo) -> dict[str, Any]:
    data = asdict(run)
    data["duration_s"] = run.duration_s
    data["total_usage"] = asdict(run.total_usage)
    return _no_nan(data)  # type: ignore[no-any-return]


def _no_nan(value: Any) -> Any:
    """JSON has no NaN: a metric that is NaN prints as null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value


def _user_metrics(run: RunInfo) -> list[str]:
    return [k for k in run.metrics if not k.startswith("system/")]


@app.command("ls")
def list_runs(
    experiment: Annotated[
        str | None, typer.Option("--experiment", "-e", help="Only this experiment.")
    ] = None,
    filter_: Annotated[
        str | None,
        typer.Option(
            "--filter",
            "-f",
            help="e.g. \"params.lr > 0.01 and metrics.acc >= 0.9 and tags.team = 'vision'\"",
        ),
    ] = None,
    order_by: Annotated[
        list[str] | None,
        typer.Option("--order-by", "-o", help="e.g. 'metrics.acc desc' (repeatable)."),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="At most this many runs.")] = None,
    wide: output.WideOption = False,
    as_json: JsonOption = False,
) -> None:
    """List runs, newest first (or as --order-by says)."""
    with state.open_workspace() as ws:
        runs = ws.runs.search(filter_, order_by=order_by, experiment=experiment, limit=limit)
    if as_json:
        output.print_json([_as_json(r) for r in runs])
        return
    output.print_table(
        "Runs",
        [
            output.Column("id", key=True),
            "name",
            "experiment",
            "status",
            output.Column("started", optional=True),
            output.Column("duration", optional=True),
            "metrics",
        ],
        [
            (
                r.id[:8],
                r.name,
                r.experiment,
                r.status,
                r.started_at.strftime("%Y-%m-%d %H:%M"),
                _duration(r.duration_s),
                [f"{k}={r.metrics[k].last:.4g}" for k in _user_metrics(r)[:4]],
            )
            for r in runs
        ],
        wide=wide,
    )


@app.command()
def show(run_id: RunId, as_json: JsonOption = False) -> None:
    """Everything about one run: params, tags, metrics, usage, artifacts, notes."""
    with state.open_workspace() as ws:
        run = ws.runs.get(run_id)
    if as_json:
        output.print_json(_as_json(run))
        return
    ended = run.ended_at.strftime("%Y-%m-%d %H:%M:%S") if run.ended_at else "-"
    output.print_line(f"[bold]{run.name}[/bold] ({run.id}) in experiment {run.experiment}")
    output.print_line(
        f"  status {run.status}, started {run.started_at:%Y-%m-%d %H:%M:%S}, ended {ended}, "
        f"duration {_duration(run.duration_s)}"
    )
    output.print_line(
        f"  by {run.user} on {run.host}, git {run.git_commit or '-'}, sessions {run.sessions}"
    )
    total = run.total_usage
    output.print_line(
        f"  usage {output.human_seconds(total.seconds)} of device time, "
        f"{output.human_energy(total.energy_kwh)}, {output.human_cost(total.cost_usd)}"
    )
    if run.params:
        output.print_table("Params", ["param", "value"], sorted(run.params.items()))
    if run.tags:
        output.print_table("Tags", ["tag", "value"], sorted(run.tags.items()))
    if run.metrics:
        output.print_table(
            "Metrics",
            ["metric", "latest", "step", "min", "max", "points"],
            [
                (k, _number(m.last), m.step, _number(m.min), _number(m.max), m.count or 0)
                for k, m in run.metrics.items()
            ],
        )
    if run.usage:
        output.print_table(
            "Usage",
            ["device", "time", "energy", "cost"],
            [
                (
                    d,
                    output.human_seconds(u.seconds),
                    output.human_energy(u.energy_kwh),
                    output.human_cost(u.cost_usd),
                )
                for d, u in sorted(run.usage.items())
            ],
        )
    if run.artifacts:
        output.print_table(
            "Artifacts",
            ["name", "size", "sha256"],
            [(a.name, output.human_bytes(a.size), a.digest[:16]) for a in run.artifacts],
        )
    for note in run.notes:
        output.print_line(f"  note: {note}")


@app.command()
def compare(first: RunId, second: RunId, as_json: JsonOption = False) -> None:
    """Two runs side by side: params (differences marked) and metrics."""
    with state.open_workspace() as ws:
        a, b = ws.runs.get(first), ws.runs.get(second)
    params = sorted(a.params.keys() | b.params.keys())
    metrics = sorted(set(_user_metrics(a)) | set(_user_metrics(b)))
    if as_json:
        output.print_json(
            {
                "runs": [a.id, b.id],
                "params": {
                    k: {"a": a.params.get(k), "b": b.params.get(k), "differs": _differs(a, b, k)}
                    for k in params
                },
                "metrics": {k: {"a": _latest(a, k), "b": _latest(b, k)} for k in metrics},
            }
        )
        return
    output.print_table(
        f"Params: {a.name} ({a.id[:8]}) vs {b.name} ({b.id[:8]})",
        ["param", "", a.id[:8], b.id[:8]],
        [
            (k, "≠" if _differs(a, b, k) else "", a.params.get(k, "-"), b.params.get(k, "-"))
            for k in params
        ],
    )
    rows = []
    for k in metrics:
        x, y = _latest(a, k), _latest(b, k)
        delta = _number(y - x) if x is not None and y is not None else "-"
        rows.append((k, _number(x), _number(y), delta))
    output.print_table("Metrics (latest)", ["metric", a.id[:8], b.id[:8], "b - a"], rows)


def _differs(a: RunInfo, b: RunInfo, key: str) -> bool:
    return a.params.get(key) != b.params.get(key)


def _latest(run: RunInfo, key: str) -> float | None:
    m = run.metrics.get(key)
    return None if m is None or math.isnan(m.last) else m.last


SpendBy = Annotated[str, typer.Option("--by", help="Sum per user, experiment, dataset or model.")]


@app.command()
def cost(by: SpendBy = "user", as_json: JsonOption = False) -> None:
    """What training cost: device-seconds, energy and estimated USD, summed per group."""
    with state.open_workspace() as ws:
        if by == "model":  # a model's runs are the runs its registered versions came from
            groups: dict[str, list[str]] = {}
            for version in ws.models.list():
                if version.run_id:
                    groups.setdefault(version.name, []).append(version.run_id)
            totals = ws.runs.spend_of(groups)
        else:
            totals = ws.runs.spend(by)  # type: ignore[arg-type]  # checked by spend()
    if as_json:
        output.print_json([asdict(t) for t in totals])
        return
    output.print_table(
        f"Spend by {by}",
        [by, "runs", "device time", "energy", "cost"],
        [
            (
                t.key,
                t.runs,
                ", ".join(
                    f"{d} {output.human_seconds(s)}" for d, s in sorted(t.device_seconds.items())
                )
                or "-",
                output.human_energy(t.energy_kwh),
                output.human_cost(t.cost_usd),
            )
            for t in totals
        ],
    )
