"""Small, deterministic test data: folders of PNGs in class subfolders, and tables."""

from __future__ import annotations

import io
import random
from pathlib import Path

from PIL import Image


def png_bytes(rng: random.Random, size: int = 16) -> bytes:
    image = Image.frombytes("L", (size, size), rng.randbytes(size * size))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def image_folder(
    root: Path, count: int, classes: int = 4, seed: int = 0, start: int = 0, size: int = 16
) -> Path:
    """`count` distinct random PNGs spread over `classes` subfolders."""
    rng = random.Random(seed)
    for i in range(start, start + count):
        folder = root / f"class{i % classes}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"img{i:06d}.png").write_bytes(png_bytes(rng, size))
    return root


def csv_file(path: Path, rows: int, seed: int = 0, missing_every: int = 0) -> Path:
    """Columns: id (int), x (float, some missing), city (string), label (int)."""
    rng = random.Random(seed)
    cities = ["paris", "lyon", "nice", "lille"]
    lines = ["id,x,city,label"]
    for i in range(rows):
        x = "" if missing_every and i % missing_every == 0 else f"{rng.gauss(0, 1):.6f}"
        lines.append(f"{i},{x},{rng.choice(cities)},{i % 3}")
    path.write_text("\n".join(lines) + "\n")
    return path
