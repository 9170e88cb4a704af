"""Generate the ingest benchmark's input data, deterministically from a fixed seed.

    benchmarks/.envs/gen/bin/python benchmarks/ingest/generate.py [--images N] [--csv-mb M]

Needs numpy and Pillow (the `gen` environment made by setup.sh). Writes under
benchmarks/.data/ingest/ (git-ignored):

- images-N/images/class_00 .. class_09/img_NNNNNN.png: N 32x32 RGB PNGs, noise plus a
  shape whose kind and colour depend on the class;
- csv-Mmb/data.csv: a CSV of at least M MB (10**6 bytes) with integer, float and
  string columns and a label column.

Each data set gets a manifest.json beside its source (images-N/manifest.json,
csv-Mmb/manifest.json), written last; a data set whose manifest matches the request is
left alone, so running this again costs nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import PIL
from _common import (
    CSV_COLUMNS,
    NUM_CLASSES,
    SEED,
    csv_path,
    images_dir,
    manifest_path,
    tree_bytes,
)
from PIL import Image, ImageDraw

CSV_CHUNK_ROWS = 10_000


def _read_manifest(source: Path) -> dict[str, Any] | None:
    path = manifest_path(source)
    if not (path.is_file() and source.exists()):
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _draw_shape(draw: ImageDraw.ImageDraw, label: int, rng: np.random.Generator) -> None:
    """A shape whose kind depends on label % 5 and whose colour family on label // 5."""
    x0, y0 = (int(v) for v in rng.integers(0, 14, size=2))
    x1, y1 = (int(v) for v in rng.integers(18, 32, size=2))
    base = np.array([220, 40, 40]) if label // 5 == 0 else np.array([40, 60, 220])
    colour = tuple(int(c) for c in np.clip(base + rng.integers(-30, 31, size=3), 0, 255))
    kind = label % 5
    if kind == 0:
        draw.rectangle((x0, y0, x1, y1), fill=colour)
    elif kind == 1:
        draw.ellipse((x0, y0, x1, y1), fill=colour)
    elif kind == 2:
        draw.polygon([(x0, y1), ((x0 + x1) // 2, y0), (x1, y1)], fill=colour)
    elif kind == 3:
        draw.line((x0, y0, x1, y1), fill=colour, width=3)
        draw.line((x0, y1, x1, y0), fill=colour, width=3)
    else:
        draw.rectangle((x0, y0, x1, y1), outline=colour, width=2)


def generate_images(count: int) -> Path:
    """N PNGs spread evenly over NUM_CLASSES class folders."""
    target = images_dir(count)
    wanted = {"kind": "images", "files": count, "seed": SEED, "classes": NUM_CLASSES}
    manifest = _read_manifest(target)
    if manifest is not None and all(manifest.get(k) == v for k, v in wanted.items()):
        print(f"generate: {target} present ({manifest['bytes'] / 1e6:.1f} MB), skipped")
        return target
    started = time.perf_counter()
    root = target.parent
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    for label in range(NUM_CLASSES):
        (partial / target.name / f"class_{label:02d}").mkdir(parents=True)
    rng = np.random.default_rng(SEED)
    for i in range(count):
        label = i % NUM_CLASSES
        tint = rng.integers(0, 160, size=3)
        noise = rng.integers(0, 96, size=(32, 32, 3))
        pixels = np.clip(noise + tint, 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels)
        _draw_shape(ImageDraw.Draw(image), label, rng)
        image.save(partial / target.name / f"class_{label:02d}" / f"img_{i:06d}.png", format="PNG")
    partial.rename(root)
    manifest = {
        **wanted,
        "bytes": tree_bytes(target),
        "numpy": np.__version__,
        "pillow": PIL.__version__,
    }
    manifest_path(target).write_text(json.dumps(manifest, indent=2) + "\n")
    took = time.perf_counter() - started
    print(f"generate: {count} PNGs, {manifest['bytes'] / 1e6:.1f} MB in {took:.1f} s -> {target}")
    return target


def _vocabulary(rng: np.random.Generator, size: int) -> list[str]:
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    lengths = rng.integers(3, 10, size=size)
    return ["".join(rng.choice(letters, size=int(n))) for n in lengths]


def generate_csv(megabytes: int) -> Path:
    """A CSV of at least `megabytes` MB, in whole chunks of CSV_CHUNK_ROWS rows."""
    target = csv_path(megabytes)
    folder = target.parent
    wanted = {"kind": "csv", "megabytes": megabytes, "seed": SEED, "files": 1}
    manifest = _read_manifest(target)
    if manifest is not None and all(manifest.get(k) == v for k, v in wanted.items()):
        print(f"generate: {target} present ({manifest['bytes'] / 1e6:.1f} MB), skipped")
        return target
    started = time.perf_counter()
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    partial = target.with_name(target.name + ".partial")
    rng = np.random.default_rng(SEED + 1)
    cities = _vocabulary(rng, 500)
    words = _vocabulary(rng, 5000)
    phrases = [
        " ".join(words[int(j)] for j in rng.integers(0, len(words), size=int(n)))
        for n in rng.integers(2, 7, size=20_000)
    ]
    row_format = ",".join(["{}"] * 2 + ["{:.6f}"] * 8 + ["{}"] * 5) + "\n"
    goal = megabytes * 1_000_000
    written = 0
    rows = 0
    with partial.open("w", encoding="utf-8", newline="") as f:
        f.write(",".join(name for name, _ in CSV_COLUMNS) + "\n")
        written += f.tell()
        while written < goal:
            n = CSV_CHUNK_ROWS
            ids = range(rows, rows + n)
            ts = (1_700_000_000 + rng.integers(0, 86_400 * 365, size=n)).tolist()
            floats = rng.normal(0.0, 100.0, size=(8, n)).tolist()
            qty = rng.integers(0, 1000, size=n).tolist()
            score = rng.integers(-50_000, 50_000, size=n).tolist()
            city = [cities[j] for j in rng.integers(0, len(cities), size=n).tolist()]
            text = [phrases[j] for j in rng.integers(0, len(phrases), size=n).tolist()]
            label = rng.integers(0, NUM_CLASSES, size=n).tolist()
            chunk = "".join(map(row_format.format, ids, ts, *floats, qty, score, city, text, label))
            f.write(chunk)
            written += len(chunk.encode("utf-8"))
            rows += n
    partial.rename(target)
    manifest = {
        **wanted,
        "rows": rows,
        "bytes": target.stat().st_size,
        "columns": [name for name, _ in CSV_COLUMNS],
        "numpy": np.__version__,
    }
    manifest_path(target).write_text(json.dumps(manifest, indent=2) + "\n")
    took = time.perf_counter() - started
    print(
        f"generate: CSV {rows} rows, {manifest['bytes'] / 1e6:.1f} MB in {took:.1f} s -> {target}"
    )
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50_000, help="number of PNGs")
    parser.add_argument("--csv-mb", type=int, default=1000, help="CSV size in MB (10**6 bytes)")
    args = parser.parse_args()
    if args.images > 0:
        generate_images(args.images)
    if args.csv_mb > 0:
        generate_csv(args.csv_mb)


if __name__ == "__main__":
    main()
