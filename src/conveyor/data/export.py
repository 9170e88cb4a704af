"""Export a version out of Conveyor: Parquet, CSV, JSONL, or the original files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import pyarrow as pa

from conveyor.core.errors import ConveyorError
from conveyor.data.dataset import DatasetVersion

ExportFormat = Literal["parquet", "csv", "jsonl", "files"]


def export_version(
    version: DatasetVersion, out: Path, fmt: ExportFormat = "parquet", split: str | None = None
) -> list[Path]:
    """Write the version (or one split) into folder `out`; returns the files written."""
    if out.exists() and any(out.iterdir()):
        raise ConveyorError(f"{out} is not empty", "export into a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for i, table in enumerate(version.iter_tables(split=split)):
        if fmt == "files":
            written += _export_files(table, out)
            continue
        path = out / f"part-{i:05d}.{fmt}"
        if fmt == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(table, path, compression="zstd")
        elif fmt == "csv":
            import pyarrow.csv as pcsv

            pcsv.write_csv(_without_binary(table, fmt), path)
        elif fmt == "jsonl":
            rows = _without_binary(table, fmt).to_pylist()
            path.write_text("".join(json.dumps(r, default=str) + "\n" for r in rows))
        else:
            raise ConveyorError(
                f"unknown export format '{fmt}'", "use parquet, csv, jsonl or files"
            )
        written.append(path)
    return written


def _without_binary(table: pa.Table, fmt: str) -> pa.Table:
    binary = [f.name for f in table.schema if pa.types.is_binary(f.type)]
    if binary:
        raise ConveyorError(
            f"column(s) {', '.join(binary)} hold bytes, which {fmt} cannot carry",
            "export as parquet, or as files to get the original files back",
        )
    return table


def _export_files(table: pa.Table, out: Path) -> list[Path]:
    """Write each row's bytes back to its original relative path."""
    column = "image" if "image" in table.column_names else "data"
    if column not in table.column_names or "path" not in table.column_names:
        raise ConveyorError(
            "only datasets ingested from files can be exported as files", "export as parquet"
        )
    written = []
    root = out.resolve()
    for rel, data in zip(
        table.column("path").to_pylist(), table.column(column).to_pylist(), strict=True
    ):
        target = (out / rel).resolve()
        if not target.is_relative_to(root):
            raise ConveyorError(f"refusing to write outside {out}: {rel}", "check the dataset")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        written.append(target)
    return written
