"""`conveyor monitor ...`: drift between datasets, reports on served versions, alerts.

Thin over `conveyor.monitoring`; scipy and matplotlib are imported only by the commands
that need them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from conveyor.cli import output
from conveyor.cli.state import state

if TYPE_CHECKING:
    from conveyor.monitoring.drift import DriftReport

app = typer.Typer(
    help="Monitoring: served versions' health, drift, accuracy and alerts.",
    no_args_is_help=True,
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
WindowOption = Annotated[
    str | None, typer.Option("--window", "-w", help="How far back from now: 5m, 1h, 24h.")
]
SinceOption = Annotated[
    str | None, typer.Option("--since", help="Window start, ISO 8601 (UTC if no zone).")
]
UntilOption = Annotated[str | None, typer.Option("--until", help="Window end (default now).")]


@app.command()
def drift(
    reference: Annotated[
        str, typer.Option("--reference", "-r", help="The reference: a dataset version, iris@v1.")
    ],
    current: Annotated[
        str, typer.Option("--current", "-c", help="What to compare with it: iris@v2.")
    ],
    columns: Annotated[
        list[str] | None,
        typer.Option("--columns", help="Only these columns (repeatable, or comma-separated)."),
    ] = None,
    alpha: Annotated[float, typer.Option(help="False-alarm rate of the whole check.")] = 0.05,
    correction: Annotated[
        str, typer.Option(help="holm (any false alarm) or bh (share of false alarms).")
    ] = "holm",
    threshold: Annotated[
        list[str] | None,
        typer.Option(
            "--threshold", help="COLUMN=EFFECT: the smallest effect that matters (repeatable)."
        ),
    ] = None,
    window: WindowOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    reference_window: Annotated[
        str | None, typer.Option(help="The reference traffic's window, when it is a model.")
    ] = None,
    reference_since: Annotated[
        str | None, typer.Option(help="The reference traffic's start (ISO 8601).")
    ] = None,
    reference_until: Annotated[
        str | None, typer.Option(help="The reference traffic's end (ISO 8601).")
    ] = None,
    wide: output.WideOption = False,
    as_json: JsonOption = False,
) -> None:
    """Which columns moved, by how much, and how sure: between two dataset versions, a
    dataset version and a served model's traffic (digits:production), or two windows of
    traffic (the current one from --window/--since/--until, the reference's from
    --reference-window/--reference-since/--reference-until; default the last hour).

    Exit code 0 whether or not drift is found; 2 on bad input.
    """
    from conveyor.monitoring.compare import compare, resolve

    names = [c.strip() for spec in columns or [] for c in spec.split(",") if c.strip()]
    with state.open_workspace() as ws:
        ref_side = resolve(
            ws, reference, _window(reference_window, reference_since, reference_until)
        )
        cur_side = resolve(ws, current, _window(window, since, until))
        report = compare(
            ws,
            ref_side,
            cur_side,
            columns=names or None,
            alpha=alpha,
            correction=correction,  # checked by check()
            thresholds=_thresholds(threshold or []),
        )
    if as_json:
        output.print_json(report.to_dict())
        return
    _print(report, ref_side.label(), cur_side.label(), wide)


def _window(length: str | None, since: str | None, until: str | None) -> Any:
    from conveyor.monitoring.window import Window

    return Window.pick(length, since, until) if (length or since or until) else None


@app.command()
def report(
    model: Annotated[str, typer.Argument(help="The served version: NAME:ALIAS or NAME@vN.")],
    window: WindowOption = None,
    since: SinceOption = None,
    until: UntilOption = None,
    labels: Annotated[
        str | None,
        typer.Option(
            "--labels", help="A labelled dataset version (request_id, label) instead of feedback."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write a self-contained HTML page here.")
    ] = None,
    wide: output.WideOption = False,
    as_json: JsonOption = False,
) -> None:
    """Health, drift against the training data, live accuracy and alerts over a window.

    The JSON shape is monitoring/REPORT.md; exit code 0 whatever it finds, 2 on bad input.
    """
    from conveyor.monitoring.accuracy import labels_from_dataset
    from conveyor.monitoring.alerts import open_alerts
    from conveyor.monitoring.report import build_report
    from conveyor.monitoring.window import Window

    span = Window.pick(window, since, until)
    with state.open_workspace() as ws:
        given = labels_from_dataset(ws.datasets.get(labels)) if labels else None
        mv = ws.models.get(model)
        opened = [a for a in open_alerts(ws.meta, mv.name) if a.get("version") in (None, mv.number)]
        facts = build_report(ws, model, span, labels=given, alerts=opened)
    if out is not None:
        from conveyor.monitoring.html import render_html

        out.write_text(render_html(facts), encoding="utf-8")
    if as_json:
        output.print_json(facts)
        return
    _print_report(facts, wide)
    if out is not None:
        output.print_line(f"  wrote {out}")


ConfigArgument = Annotated[
    Path, typer.Argument(help="The deployment's monitor config (YAML; monitoring/ALERTS.md).")
]


@app.command("check")
def check_once(
    config: ConfigArgument,
    at: Annotated[
        str | None,
        typer.Option("--at", help="Check as of this time (ISO 8601), e.g. to replay a day."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Check the config's rules once now: fire or resolve alerts, post webhooks."""
    from conveyor.monitoring.monitor import Monitor
    from conveyor.monitoring.rules import load_config
    from conveyor.monitoring.window import parse_time

    settings = load_config(config)
    moment = parse_time(at) if at else None
    with state.open_workspace() as ws:
        monitor = (
            Monitor(ws, settings) if moment is None else Monitor(ws, settings, clock=lambda: moment)
        )
        result = monitor.check()
    if as_json:
        output.print_json(
            {
                "report": result.report,
                "events": [e.to_dict() for e in result.events],
                "open": result.open,
            }
        )
        return
    _print_check(result)


@app.command("run")
def run_monitor(
    config: ConfigArgument,
    metrics_port: Annotated[
        int | None,
        typer.Option("--metrics-port", help="Serve Prometheus /metrics on this port (0: any)."),
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Address for /metrics.")] = "127.0.0.1",
    checks: Annotated[
        int | None, typer.Option(help="Stop after this many checks (default: run until stopped).")
    ] = None,
) -> None:
    """Check the rules every `every` of the config until stopped (Ctrl-C, SIGTERM)."""
    import signal

    from conveyor.monitoring.monitor import Monitor
    from conveyor.monitoring.rules import load_config

    settings = load_config(config)
    with state.open_workspace() as ws:
        monitor = Monitor(ws, settings)
        server = None
        if metrics_port is not None:
            server, port = monitor.metrics.serve(metrics_host, metrics_port)
            output.print_line(f"metrics on http://{metrics_host}:{port}/metrics")
        signal.signal(signal.SIGTERM, lambda *_: monitor.stop())
        output.print_line(
            f"monitoring {settings.model}: {len(settings.rules)} rules, a {settings.window:g} s "
            f"window every {settings.every:g} s"
        )
        try:
            monitor.run(checks, on_check=_print_check)
        except KeyboardInterrupt:
            monitor.stop()
        finally:
            if server is not None:
                server.shutdown()
                server.server_close()


@app.command()
def status(
    window: Annotated[
        str, typer.Option("--window", "-w", help="How far back: 5m, 1h, 24h.")
    ] = "1h",
    wide: output.WideOption = False,
    as_json: JsonOption = False,
) -> None:
    """Every version that served traffic in the window: traffic, latency, drift,
    accuracy and open alerts."""
    from conveyor.monitoring.alerts import open_alerts
    from conveyor.monitoring.report import build_report, served_versions
    from conveyor.monitoring.window import Window

    span = Window.last(window)
    with state.open_workspace() as ws:
        opened = open_alerts(ws.meta)
        reports = []
        for name, number in served_versions(ws.meta, span):
            mine = [a for a in opened if a["model"] == name and a.get("version") in (None, number)]
            reports.append(build_report(ws, f"{name}@v{number}", span, alerts=mine))
    if as_json:
        output.print_json({"window": span.to_dict(), "versions": reports})
        return
    if not reports:
        output.print_line(f"no served traffic in the last {window}")
        return
    rows = []
    for r in reports:
        h, a, d = r["health"], r["accuracy"], r["drift"]
        drift = (
            d.get("note", "-")[:40]
            if "columns" not in d
            else f"{sum(c['drift'] for c in d['columns'])} of {len(d['columns'])} columns"
        )
        acc = "-" if a["accuracy"] is None else f"{a['accuracy']:.1%} on {a['labelled']:,}"
        rows.append(
            [
                f"{r['model']}@v{r['version']}",
                f"{h['requests']:,}",
                "-" if h["error_rate"] is None else f"{h['error_rate']:.1%}",
                _ms(h["latency_ms"]["p99"]),
                drift,
                acc,
                ", ".join(x["rule"] for x in r["alerts"]) or "-",
            ]
        )
    output.print_table(
        f"Served in the last {window}",
        ["version", "requests", "errors", "p99", "drift", "accuracy", "open alerts"],
        rows,
        wide=wide,
    )


def _print_check(result: Any) -> None:
    r = result.report
    f = figures_of(r)
    output.print_line(
        f"{r['window']['until'][:19].replace('T', ' ')} {r['model']}@v{r['version']}: "
        f"{r['health']['requests']:,} requests, drift share "
        f"{'-' if f['drift.share'] is None else format(f['drift.share'], '.0%')}, "
        f"accuracy {'-' if f['accuracy'] is None else format(f['accuracy'], '.1%')}"
    )
    for e in result.events:
        colour = "red" if e.kind == "firing" else "green"
        output.print_line(f"  [{colour}]{e.kind}[/{colour}]: {e.rule} (value {e.value})")
    for alert in result.open:
        output.print_line(f"  open: {alert['rule']} since {alert['since'][:19]}")


def figures_of(report: dict[str, Any]) -> dict[str, Any]:
    from conveyor.monitoring.report import figures

    return figures(report)


def _print_report(facts: dict[str, Any], wide: bool) -> None:
    h, a, d = facts["health"], facts["accuracy"], facts["drift"]
    w = facts["window"]
    output.print_line(
        f"{facts['model']}@v{facts['version']} ({facts['ref']}), "
        f"{w['since'][:19].replace('T', ' ')} to {w['until'][:19].replace('T', ' ')} UTC"
    )
    lat = h["latency_ms"]
    rate = "-" if h["error_rate"] is None else f"{h['error_rate']:.1%}"
    output.print_line(
        f"  traffic: {h['requests']:,} requests, {h['rows']:,} rows, {h['errors']:,} errors "
        f"({rate}); latency p50 {_ms(lat['p50'])}, p95 {_ms(lat['p95'])}, p99 {_ms(lat['p99'])}"
    )
    if a["accuracy"] is None:
        output.print_line("  accuracy: no labels yet")
    else:
        low, high = a["ci"]
        output.print_line(
            f"  accuracy: {a['accuracy']:.1%} on {a['labelled']:,} labels "
            f"(95% CI {low:.1%} to {high:.1%})"
        )
    for alert in facts["alerts"]:
        output.print_line(f"  [red]alert[/red]: {alert['rule']} (since {alert.get('since', '?')})")
    if "columns" not in d:
        output.print_line(f"  drift: {d.get('note', 'not checked')}")
        return
    _print_columns(d, wide)


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f} ms" if value < 1000 else output.human_seconds(value / 1000.0)


def _thresholds(pairs: list[str]) -> dict[str, float]:
    from conveyor.core.errors import DriftInputError

    out = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        try:
            out[name] = float(value)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise DriftInputError(
                f"--threshold {pair!r} is not COLUMN=NUMBER", "write it like --threshold age=0.1"
            )
    return out


def _print(report: DriftReport, reference: str, current: str, wide: bool) -> None:
    output.print_line(
        f"{reference} ({report.n_reference:,} rows) vs {current} ({report.n_current:,} rows)"
    )
    _print_columns(report.to_dict(), wide)
    schema = report.to_dict()["schema"]
    for side, label in (("only_reference", reference), ("only_current", current)):
        if schema[side]:
            output.print_line(f"  only in {label}: {', '.join(schema[side])}")
    for name, why in report.skipped.items():
        output.print_line(f"  not checked: {name} ({why})")


def _print_columns(drift: dict[str, Any], wide: bool) -> None:
    """The verdict line and one row per column of a drift object (DRIFT.md's JSON)."""
    columns = drift["columns"]
    checked = [c for c in columns if c["p_value"] is not None]
    moved = sum(1 for c in columns if c["drift"])
    verdict = "[red]drift[/red]" if drift["drift"] else "[green]no drift[/green]"
    output.print_line(
        f"{verdict}: {moved} of {len(checked)} columns moved ({drift['share']:.0%}); "
        f"{'Holm' if drift['correction'] == 'holm' else 'Benjamini-Hochberg'}, "
        f"alpha {drift['alpha']:g}"
    )
    rows: list[list[Any]] = []
    for c in columns:
        if c["p_value"] is None:
            rows.append(
                [c["name"], c["kind"], c["test"], "-", f"{c['threshold']:g}", "-", c.get("note")]
            )
            continue
        low, high = c["effect_ci"] or (0.0, 0.0)
        rows.append(
            [
                c["name"],
                c["kind"],
                c["test"],
                f"{c['effect']:.3g} [{low:.3g}, {high:.3g}]",
                f"{c['threshold']:g}",
                _p(c["p_adjusted"]),
                "[red]drift[/red]" if c["drift"] else "ok",
            ]
        )
    output.print_table(
        "Columns",
        [
            "column",
            output.Column("kind", optional=True),
            "test",
            "effect [90% CI]",
            "threshold",
            "p (adjusted)",
            "verdict",
        ],
        rows,
        wide=wide,
    )


def _p(value: float | None) -> str:
    if value is None:
        return "-"
    return "< 0.0001" if value < 1e-4 else f"{value:.2g}"
