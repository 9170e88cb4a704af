"""Helpers shared by the ingest benchmark's scripts.

Standard library only: every contender imports this from its own virtual environment.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
BENCH_DIR = REPO / "benchmarks"
ENVS_DIR = BENCH_DIR / ".envs"
DATA_DIR = BENCH_DIR / ".data" / "ingest"

SEED = 20261122
NUM_CLASSES = 10

# The generated CSV's columns, in file order, with the type each value is parsed to.
CSV_COLUMNS: list[tuple[str, str]] = [
    ("id", "int"),
    ("ts", "int"),
    *[(f"f{i}", "float") for i in range(8)],
    ("qty", "int"),
    ("score", "int"),
    ("city", "str"),
    ("text", "str"),
    ("label", "int"),
]

_PARSERS: dict[str, type] = {"int": int, "float": float, "str": str}


def images_dir(count: int) -> Path:
    """The folder of class subfolders of the data set of `count` PNGs (nothing else in it)."""
    return DATA_DIR / f"images-{count}" / "images"


def manifest_path(source: Path) -> Path:
    """The manifest.json that generate.py writes beside a data set's source."""
    return source.parent / "manifest.json"


def csv_path(megabytes: int) -> Path:
    """Where the CSV of about `megabytes` MB (10**6 bytes) lives."""
    return DATA_DIR / f"csv-{megabytes}mb" / "data.csv"


def list_images(root: Path) -> list[tuple[Path, int]]:
    """Every file under root's class subfolders, sorted, with its class index."""
    classes = sorted(p for p in root.iterdir() if p.is_dir())
    items: list[tuple[Path, int]] = []
    for label, folder in enumerate(classes):
        items.extend((f, label) for f in sorted(folder.iterdir()) if f.is_file())
    return items


def parse_row(fields: list[str]) -> dict[str, Any]:
    """One CSV record (as csv.reader gives it) as typed values keyed by column name."""
    return {name: _PARSERS[kind](v) for (name, kind), v in zip(CSV_COLUMNS, fields, strict=True)}


def line_ranges(path: Path, parts: int) -> list[tuple[int, int]]:
    """Split the CSV body (after its header) into `parts` byte ranges on line boundaries."""
    size = path.stat().st_size
    with path.open("rb") as f:
        f.readline()
        start = f.tell()
        cuts = [start]
        for i in range(1, parts):
            f.seek(max(start + (size - start) * i // parts, cuts[-1]))
            f.readline()
            cuts.append(min(f.tell(), size))
    cuts.append(size)
    return [(a, b) for a, b in itertools.pairwise(cuts) if b > a]


def iter_lines(path: Path, start: int, end: int) -> Iterator[str]:
    """The text lines of path between byte offsets start and end (on line boundaries)."""
    with path.open("rb") as f:
        f.seek(start)
        remaining = end - start
        while remaining > 0:
            line = f.readline()
            if not line:
                break
            remaining -= len(line)
            yield line.decode("utf-8")


def tree_bytes(root: Path) -> int:
    """Total size of the regular files under root."""
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            p = Path(dirpath) / name
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_size
    return total


def tree_files(root: Path) -> int:
    """Number of regular files under root."""
    return sum(len(files) for _d, _s, files in os.walk(root))


def contender_args(description: str, modes: list[str] | None = None) -> argparse.Namespace:
    """The command line every contender script takes (plus --mode when modes are given)."""
    parser = argparse.ArgumentParser(description=description)
    if modes:
        parser.add_argument("--mode", choices=modes, default=modes[0])
    parser.add_argument("--kind", choices=["images", "csv"], required=True)
    parser.add_argument("--source", type=Path, required=True, help="image folder or CSV file")
    parser.add_argument("--out", type=Path, required=True, help="fresh, empty output folder")
    return parser.parse_args()


class Timer:
    """Wall-clock seconds of a `with` block."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.start


def emit(result: dict[str, Any]) -> None:
    """Print the contender's one JSON result line (the driver reads the last one)."""
    sys.stdout.flush()
    print(json.dumps(result, sort_keys=True), flush=True)
