"""Contender: LitData's optimize() (run with benchmarks/.envs/litdata/bin/python).

    python contender_litdata.py --kind images|csv --source PATH --out DIR

LitData's recommended settings: chunk_bytes="64MB", num_workers = the machine's CPU
count (2 here), no compression (its default). Images: one input per file, giving
{"image": the PNG's bytes as they are, "label": int}. CSV: the file is cut into byte
ranges on line boundaries, one input per range, and each yields one sample per row,
parsed with the csv module into typed values. The timed part lists the inputs and
runs optimize() to the end (it writes chunks under TMPDIR, then moves them to DIR).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import litdata
from _common import (
    CSV_COLUMNS,
    Timer,
    contender_args,
    emit,
    iter_lines,
    line_ranges,
    list_images,
    parse_row,
    tree_bytes,
    tree_files,
)

CHUNK_BYTES = "64MB"
RANGE_BYTES = 16 << 20


def image_sample(item: tuple[str, int]) -> dict[str, Any]:
    path, label = item
    return {"image": Path(path).read_bytes(), "label": label}


def csv_rows(item: tuple[str, int, int]) -> Iterator[dict[str, Any]]:
    path, start, end = item
    for fields in csv.reader(iter_lines(Path(path), start, end)):
        yield parse_row(fields)


def count_items(out: Path) -> int:
    index = json.loads((out / "index.json").read_text())
    return sum(int(chunk["chunk_size"]) for chunk in index["chunks"])


def main() -> None:
    args = contender_args(__doc__.splitlines()[0])
    workers = os.cpu_count() or 1
    with Timer() as timer:
        if args.kind == "images":
            inputs: list[Any] = [(str(p), label) for p, label in list_images(args.source)]
            fn: Any = image_sample
        else:
            with args.source.open(encoding="utf-8") as f:
                header = f.readline().rstrip("\n").split(",")
            if header != [name for name, _ in CSV_COLUMNS]:
                raise SystemExit(f"contender_litdata: unexpected CSV header {header}")
            parts = max(4 * workers, args.source.stat().st_size // RANGE_BYTES)
            inputs = [(str(args.source), a, b) for a, b in line_ranges(args.source, parts)]
            fn = csv_rows
        litdata.optimize(
            fn=fn,
            inputs=inputs,
            output_dir=str(args.out),
            chunk_bytes=CHUNK_BYTES,
            num_workers=workers,
        )
    emit(
        {
            "contender": "litdata",
            "kind": args.kind,
            "seconds": timer.seconds,
            "items": count_items(args.out),
            "output_bytes": tree_bytes(args.out),
            "output_files": tree_files(args.out),
            "version": litdata.__version__,
            "workers": workers,
        }
    )


if __name__ == "__main__":
    main()
