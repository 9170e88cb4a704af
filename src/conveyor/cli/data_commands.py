"""`conveyor data ...`: ingest, inspect, compare, prepare, check and export datasets."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from conveyor.cli import output
from conveyor.cli.state import state

if TYPE_CHECKING:
    from conveyor.data.catalog import VersionSummary
    from conveyor.data.dataset import DatasetVersion

app = typer.Typer(
    help="Versioned datasets: ingest, inspect, prepare, check, export.", no_args_is_help=True
)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
IntoOption = Annotated[
    str | None, typer.Option("--into", help="Write the result as a version of this dataset.")
]
Spec = Annotated[str, typer.Argument(help="NAME, NAME@latest or NAME@vN.")]


def _announce(version: DatasetVersion, what: str, as_json: bool) -> None:
    if as_json:
        output.print_json(_summary(version))
    else:
        output.print_line(
            f"[green]{what}[/green] {version.ref}: {version.rows:,} rows in "
            f"{_plural(len(version.manifest.shards), 'shard')} "
            f"({output.human_bytes(version.manifest.bytes)})"
        )


def _plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def _summary(version: DatasetVersion) -> dict[str, Any]:
    m = version.manifest
    return {
        "ref": version.ref,
        "rows": m.rows,
        "bytes": m.bytes,
        "shards": len(m.shards),
        "manifest": version.digest,
        "operation": m.operation.model_dump(),
        "parents": [f"{p.name}@v{p.version}" for p in m.parents],
        "splits": m.splits(),
        "duplicates": m.duplicates,
        "rejects": m.rejects,
    }


@app.command()
def ingest(
    source: Annotated[
        str,
        typer.Argument(
            help="A folder of files, or a CSV/JSONL/Parquet file; a local path or any fsspec URL."
        ),
    ],
    name: Annotated[str, typer.Option("--name", "-n", help="Dataset name.")],
    shard_mb: Annotated[int, typer.Option(help="Target shard size in MB (in memory).")] = 32,
    workers: Annotated[int | None, typer.Option(help="Worker processes (default: cores).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Ingest files or a table as a new immutable version (no version if nothing changed)."""
    with state.open_workspace() as ws, output.progress_bar(f"ingesting {source}") as update:
        result = ws.datasets.ingest(
            source, name, shard_bytes=shard_mb << 20, workers=workers, progress=update
        )
    if as_json:
        output.print_json(
            {
                **_summary(result.version),
                "created": result.created,
                "new_rows": result.new_rows,
                "reused_shards": result.reused_shards,
                "written_bytes": result.written_bytes,
                "rejected": [asdict(r) for r in result.rejects],
            }
        )
        return
    if not result.created:
        output.print_line(
            f"Unchanged: {result.version.ref} already holds exactly this data; no new version"
        )
    else:
        _announce(result.version, "Created", False)
        output.print_line(
            f"  {result.new_rows:,} new rows, {result.reused_shards} shards reused, "
            f"{output.human_bytes(result.written_bytes)} written"
        )
    if result.duplicates:
        output.print_line(
            f"  {result.duplicates:,} exact duplicates (remove them with "
            f"`conveyor data dedupe {result.version.ref}`)"
        )
    if result.rejects:
        output.print_line(f"  [yellow]{len(result.rejects)} rejected[/yellow]:")
        for r in result.rejects[:10]:
            output.print_line(f"    {r.where}: {r.reason}")
        if len(result.rejects) > 10:
            output.print_line(f"    ... see `conveyor data show {result.version.ref} --rejects`")


def _versions_table(title: str, first: str, rows: list[VersionSummary]) -> None:
    output.print_table(
        title,
        [first, "rows", "size", "made by", "created"],
        [
            (
                r.ref,
                f"{r.rows:,}",
                output.human_bytes(r.bytes),
                r.operation,
                r.created_at.strftime("%Y-%m-%d %H:%M"),
            )
            for r in rows
        ],
    )


@app.command("ls")
def list_datasets(as_json: JsonOption = False) -> None:
    """List datasets with their latest version."""
    with state.open_workspace() as ws:
        rows = ws.datasets.list()
    if as_json:
        output.print_json([asdict(r) for r in rows])
        return
    _versions_table("Datasets", "latest", rows)


@app.command()
def log(
    name: Annotated[str, typer.Argument(help="Dataset name.")], as_json: JsonOption = False
) -> None:
    """Every version of a dataset, newest first."""
    with state.open_workspace() as ws:
        rows = ws.datasets.log(name)
    if as_json:
        output.print_json([asdict(r) for r in rows])
        return
    _versions_table(f"Versions of {name}", "version", rows)


@app.command()
def show(
    spec: Spec,
    rejects: Annotated[bool, typer.Option("--rejects", help="List rejected inputs.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Schema, statistics, splits, lineage and rejects of a version."""
    import json

    with state.open_workspace() as ws:
        version = ws.datasets.get(spec)
        lineage = version.lineage()
        report = version.manifest.rejects.get("report")
        rejected = (
            [json.loads(line) for line in ws.objects.get_bytes(report).splitlines()]
            if (report and rejects)
            else []
        )
    if as_json:
        output.print_json(
            {
                **_summary(version),
                "columns": version.manifest.columns,
                "lineage": [asdict(s) for s in lineage],
                "rejected": rejected,
            }
        )
        return
    _announce(version, "Dataset", False)
    m = version.manifest
    output.print_table(
        "Columns",
        ["column", "type", "nulls", "min", "max", "mean", "distinct"],
        [
            (
                name,
                st["type"],
                st["nulls"],
                _fmt(st.get("min", st.get("bytes_min"))),
                _fmt(st.get("max", st.get("bytes_max"))),
                _fmt(st.get("mean", st.get("bytes_mean"))),
                _distinct(st),
            )
            for name, st in m.columns.items()
        ],
    )
    if m.splits():
        output.print_line("Splits: " + ", ".join(f"{k} {v:,}" for k, v in m.splits().items()))
    exact = m.duplicates.get("exact")
    output.print_line(
        f"Exact duplicates: {'not counted' if exact is None else exact}; "
        f"rejected at ingest: {m.rejects.get('count', 0)}"
    )
    output.print_table(
        "Lineage",
        ["version", "made by", "parameters", "from"],
        [
            (
                s.ref,
                s.operation,
                ", ".join(f"{k}={v}" for k, v in s.params.items()),
                ", ".join(s.parents),
            )
            for s in lineage
        ],
    )
    for r in rejected:
        output.print_line(f"  rejected {r['where']}: {r['reason']}")


def _distinct(stats: dict[str, Any]) -> str:
    if "values" not in stats:
        return "-"
    return str(stats["distinct"]) if stats.get("distinct") is not None else "> 1000"


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@app.command()
def diff(
    a: Annotated[str, typer.Argument(help="Older version.")],
    b: Annotated[str, typer.Argument(help="Newer version.")],
    as_json: JsonOption = False,
) -> None:
    """What changed between two versions: columns, rows, shared storage."""
    with state.open_workspace() as ws:
        d = ws.datasets.diff(a, b)
    if as_json:
        output.print_json(d.to_dict())
        return
    output.print_line(
        f"{d.a} → {d.b}: {d.rows_a:,} → {d.rows_b:,} rows (+{d.rows_added:,} / -{d.rows_removed:,})"
    )
    for label, cols in (
        ("added", d.columns_added),
        ("removed", d.columns_removed),
        ("retyped", d.columns_retyped),
    ):
        if cols:
            output.print_line(f"  columns {label}: {', '.join(cols)}")
    output.print_line(
        f"  {d.shards_shared} shards shared ({output.human_bytes(d.bytes_shared)}), "
        f"{output.human_bytes(d.bytes_new)} new"
    )


@app.command()
def export(
    spec: Spec,
    out: Annotated[Path, typer.Option("--out", "-o", help="An empty or new folder.")],
    fmt: Annotated[str, typer.Option("--format", help="parquet, csv, jsonl or files.")] = "parquet",
    split: Annotated[str | None, typer.Option(help="Only this split.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Write a version out as Parquet, CSV, JSONL, or its original files."""
    with state.open_workspace() as ws:
        written = ws.datasets.export(spec, out, fmt, split)
    if as_json:
        output.print_json([str(p) for p in written])
    else:
        output.print_line(f"Wrote {len(written):,} files to {out}")


@app.command()
def dedupe(
    spec: Spec,
    near: Annotated[bool, typer.Option("--near", help="Also drop near-duplicate images.")] = False,
    max_distance: Annotated[int, typer.Option(help="Hamming distance for --near.")] = 4,
    into: IntoOption = None,
    as_json: JsonOption = False,
) -> None:
    """Drop exact duplicates (and near-duplicate images with --near) into a new version."""
    with state.open_workspace() as ws:
        version = ws.datasets.dedupe(spec, near, max_distance, into)
    _announce(version, "Created", as_json)


@app.command()
def fill(
    spec: Spec,
    columns: Annotated[str, typer.Option(help="Comma-separated columns to fill.")],
    strategy: Annotated[str, typer.Option(help="mean, median, mode or constant.")] = "median",
    value: Annotated[str | None, typer.Option(help="The constant for --strategy constant.")] = None,
    into: IntoOption = None,
    as_json: JsonOption = False,
) -> None:
    """Fill missing values into a new version."""
    with state.open_workspace() as ws:
        version = ws.datasets.fill(spec, columns.split(","), strategy, value, into)
    _announce(version, "Created", as_json)


@app.command("drop-missing")
def drop_missing(
    spec: Spec,
    columns: Annotated[str | None, typer.Option(help="Comma-separated; default: any.")] = None,
    into: IntoOption = None,
    as_json: JsonOption = False,
) -> None:
    """Drop rows with missing values into a new version."""
    with state.open_workspace() as ws:
        version = ws.datasets.drop_missing(spec, columns.split(",") if columns else None, into)
    _announce(version, "Created", as_json)


@app.command("filter")
def filter_rows(
    spec: Spec,
    expression: Annotated[str, typer.Argument(help="SQL condition, e.g. \"label != '3'\".")],
    into: IntoOption = None,
    as_json: JsonOption = False,
) -> None:
    """Keep the rows where a condition holds, as a new version."""
    with state.open_workspace() as ws:
        version = ws.datasets.filter(spec, expression, into)
    _announce(version, "Created", as_json)


@app.command()
def split(
    spec: Spec,
    train: Annotated[float, typer.Option(help="Fraction for train.")] = 0.8,
    val: Annotated[float, typer.Option(help="Fraction for val.")] = 0.1,
    test: Annotated[float, typer.Option(help="Fraction for test.")] = 0.1,
    stratify: Annotated[str | None, typer.Option(help="Keep this column's proportions.")] = None,
    seed: Annotated[int, typer.Option(help="Same seed, same split.")] = 0,
    into: IntoOption = None,
    as_json: JsonOption = False,
) -> None:
    """Split rows into train/val/test, deterministically from the seed."""
    fractions = {k: v for k, v in (("train", train), ("val", val), ("test", test)) if v > 0}
    with state.open_workspace() as ws:
        version = ws.datasets.split(spec, fractions, seed, stratify, into)
    _announce(version, "Created", as_json)
    if not as_json:
        output.print_line(
            "  " + ", ".join(f"{k} {v:,}" for k, v in version.manifest.splits().items())
        )


@app.command("map")
def map_rows(
    spec: Spec,
    fn: Annotated[str, typer.Option("--fn", help="package.module:function over Arrow batches.")],
    batch_size: Annotated[int, typer.Option(help="Rows per call.")] = 1024,
    into: IntoOption = None,
    as_json: JsonOption = False,
) -> None:
    """Apply your function to every batch of rows, as a new version."""
    import sys

    sys.path.insert(0, str(Path.cwd()))
    with state.open_workspace() as ws:
        version = ws.datasets.map(spec, fn, batch_size, into)
    _announce(version, "Created", as_json)


@app.command()
def check(
    spec: Spec,
    rules: Annotated[Path, typer.Option("--rules", "-r", help="A rules YAML file.")],
    as_json: JsonOption = False,
) -> None:
    """Check a version against quality rules; exit 1 when any check fails."""
    with state.open_workspace() as ws:
        report = ws.datasets.check(spec, rules)
    if as_json:
        output.print_json(report.to_dict())
    else:
        output.print_table(
            f"Checks on {report.dataset}@v{report.version}",
            ["check", "subject", "result", "expected", "actual"],
            [
                (
                    r.check,
                    r.subject,
                    "[green]pass[/green]" if r.passed else "[red]FAIL[/red]",
                    r.expected,
                    r.actual,
                )
                for r in report.results
            ],
        )
        for failure in report.failures:
            output.print_line(f"[red]FAIL[/red] {failure.message}")
        verdict = "[green]passed[/green]" if report.passed else "[red]failed[/red]"
        output.print_line(f"{len(report.results)} checks, {len(report.failures)} failed: {verdict}")
    if not report.passed:
        raise typer.Exit(1)


@app.command("used-by")
def used_by(
    spec: Annotated[str, typer.Argument(help="NAME@vN (or NAME for every version).")],
    as_json: JsonOption = False,
) -> None:
    """The model versions built on a dataset version (from the model registry)."""
    with state.open_workspace() as ws:
        ws.datasets.get(spec)  # an unknown dataset is an error, not an empty list
        uses = ws.models.used_by(spec)
    if as_json:
        output.print_json([u.__dict__ for u in uses])
        return
    if not uses:
        output.print_line(f"No registered model is built on {spec}.")
        return
    output.print_table(
        f"Models built on {spec}",
        ["model", "data", "role", "status", "aliases"],
        [(u.model, u.dataset, u.role, u.status, ", ".join(u.aliases) or "-") for u in uses],
    )
