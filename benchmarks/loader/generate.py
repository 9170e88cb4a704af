"""ImageNet-like JPEGs for the loader benchmark: 256x256 RGB in 10 class folders.

    benchmarks/.envs/gen/bin/python benchmarks/loader/generate.py --jpegs 5000
(The CIFAR-like PNGs come from benchmarks/ingest/generate.py.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

DATA = Path(__file__).parents[1] / ".data" / "loader"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--jpegs", type=int, default=5000)
    n = p.parse_args().jpegs
    out = DATA / f"jpeg-{n}" / "images"
    if (out.parent / "done").exists():
        return
    rng = np.random.default_rng(0)
    for i in range(n):
        label = i % 10
        pixels = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
        image = Image.fromarray(pixels).resize((256, 256), Image.Resampling.BILINEAR)
        draw = ImageDraw.Draw(image)
        x, y = (int(v) for v in rng.integers(20, 180, size=2))
        draw.ellipse((x, y, x + 40 + 5 * label, y + 40), fill=(25 * label, 255 - 25 * label, 90))
        folder = out / f"class_{label:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{i:06d}.jpg", quality=90)
    (out.parent / "done").touch()


if __name__ == "__main__":
    main()
