"""Write scikit-learn's digits (1,797 8x8 images) as PNG files in one folder per class.

    python examples/digits.py OUT [--duplicates 20] [--corrupt 1]

A few exact copies and a truncated file are added on purpose, so `make demo` can show
what ingest reports and what `dedupe` removes.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def write_digits(out: Path, duplicates: int = 20, corrupt: int = 1, seed: int = 0) -> int:
    digits = load_digits()
    written: list[Path] = []
    for i, (pixels, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        folder = out / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray((pixels * (255 / 16)).astype(np.uint8), mode="L")
        path = folder / f"{i:04d}.png"
        image.save(path)
        written.append(path)
    rng = random.Random(seed)
    for n, original in enumerate(rng.sample(written, duplicates)):
        (original.parent / f"copy-{n:02d}.png").write_bytes(original.read_bytes())
    for n in range(corrupt):
        good = written[n].read_bytes()
        (written[n].parent / f"truncated-{n}.png").write_bytes(good[: len(good) // 2])
    return len(written) + duplicates + corrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--duplicates", type=int, default=20)
    parser.add_argument("--corrupt", type=int, default=1)
    args = parser.parse_args()
    count = write_digits(args.out, args.duplicates, args.corrupt)
    print(f"wrote {count} files to {args.out}")


if __name__ == "__main__":
    main()
