"""`conveyor init` and `conveyor status`."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from conveyor.cli import output
from conveyor.cli.state import state

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def init(
    path: Annotated[Path, typer.Argument(help="Folder for the workspace.")] = Path(),
    meta: Annotated[
        str | None,
        typer.Option("--meta", help="Metadata URL: sqlite:///file.db or postgresql://..."),
    ] = None,
    objects: Annotated[
        str | None, typer.Option("--objects", help="Object store: a folder or s3://bucket/prefix")
    ] = None,
    endpoint_url: Annotated[
        str | None,
        typer.Option("--endpoint-url", help="S3-compatible endpoint (MinIO, moto, R2...)."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Create a workspace: conveyor.toml, a metadata database and an object store."""
    from conveyor.workspace import Workspace

    options = {"endpoint_url": endpoint_url} if endpoint_url else None
    with Workspace.init(path, meta=meta, objects=objects, objects_options=options) as ws:
        info = {"root": str(ws.root), "metadata": ws.meta.display_url, "objects": ws.objects.url}
    if as_json:
        output.print_json(info)
        return
    output.print_line(f"[green]Created workspace[/green] {info['root']}")
    output.print_line(f"  metadata  {info['metadata']}")
    output.print_line(f"  objects   {info['objects']}")
    output.print_line("Next: `conveyor status`")


def status(wide: output.WideOption = False, as_json: JsonOption = False) -> None:
    """Show what the workspace points at and whether each part is reachable."""
    with state.open_workspace(upgrade=False) as ws:
        parts = ws.status()
    if as_json:
        output.print_json({"ok": all(p.ok for p in parts), "parts": [asdict(p) for p in parts]})
    else:
        rows = [
            (
                p.part,
                p.location,
                "[green]ok[/green]" if p.ok else "[red]unreachable[/red]",
                p.detail,
            )
            for p in parts
        ]
        output.print_table(
            "Conveyor workspace",
            [
                "part",
                output.Column("location", key=True),
                "state",
                output.Column("detail", optional=True),
            ],
            rows,
            wide=wide,
        )
    if not all(p.ok for p in parts):
        raise typer.Exit(2)
