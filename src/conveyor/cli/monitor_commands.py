"""`conveyor monitor ...`: drift between datasets (more of monitoring to come).

Thin over `conveyor.monitoring`; scipy is imported only by the commands that test.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from conveyor.cli import output
from conveyor.cli.state import state

if TYPE_CHECKING:
    from conveyor.monitoring.drift import DriftReport

app = typer.Typer(
    help="Monitoring: has the data moved away from the reference?", no_args_is_help=True
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


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
    wide: output.WideOption = False,
    as_json: JsonOption = False,
) -> None:
    """Which columns moved between two dataset versions, by how much, and how sure.

    Exit code 0 whether or not drift is found; 2 on bad input.
    """
    from conveyor.monitoring.compare import compare_datasets

    names = [c.strip() for spec in columns or [] for c in spec.split(",") if c.strip()]
    with state.open_workspace() as ws:
        report = compare_datasets(
            ws.datasets,
            reference,
            current,
            columns=names or None,
            alpha=alpha,
            correction=correction,  # checked by check()
            thresholds=_thresholds(threshold or []),
        )
    if as_json:
        output.print_json(report.to_dict())
        return
    _print(report, reference, current, wide)


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
    checked = [c for c in report.columns if c.finding.tested]
    moved = len(report.drifted)
    verdict = "[red]drift[/red]" if report.drift else "[green]no drift[/green]"
    output.print_line(
        f"{verdict}: {moved} of {len(checked)} columns moved ({report.share:.0%}); "
        f"{reference} ({report.n_reference:,} rows) vs {current} ({report.n_current:,} rows); "
        f"{'Holm' if report.correction == 'holm' else 'Benjamini-Hochberg'}, "
        f"alpha {report.alpha:g}"
    )
    rows: list[list[Any]] = []
    for c in report.columns:
        f = c.finding
        if not f.tested:
            rows.append([c.name, c.kind, f.test, "-", f"{f.threshold:g}", "-", f.note])
            continue
        low, high = f.effect_ci or (0.0, 0.0)
        rows.append(
            [
                c.name,
                c.kind,
                f.test,
                f"{f.effect:.3g} [{low:.3g}, {high:.3g}]",
                f"{f.threshold:g}",
                _p(c.p_adjusted),
                "[red]drift[/red]" if c.drift else "ok",
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
    schema = report.to_dict()["schema"]
    for side, label in (("only_reference", reference), ("only_current", current)):
        if schema[side]:
            output.print_line(f"  only in {label}: {', '.join(schema[side])}")
    for name, why in report.skipped.items():
        output.print_line(f"  not checked: {name} ({why})")


def _p(value: float | None) -> str:
    if value is None:
        return "-"
    return "< 0.0001" if value < 1e-4 else f"{value:.2g}"
