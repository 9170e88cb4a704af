"""Learnable test data for the trainer: class k lights up band k of an 8x8 image."""

from __future__ import annotations

import random
from pathlib import Path

from PIL import Image


def band_images(root: Path, count: int, classes: int = 4, seed: int = 0, size: int = 8) -> Path:
    """`count` noisy grayscale PNGs in class subfolders; a small CNN learns them quickly."""
    rng = random.Random(seed)
    rows = size // classes
    for i in range(count):
        label = i % classes
        pixels = bytearray(rng.randrange(0, 90) for _ in range(size * size))
        for r in range(label * rows, (label + 1) * rows):
            for c in range(size):
                pixels[r * size + c] = rng.randrange(160, 256)
        folder = root / f"c{label}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.frombytes("L", (size, size), bytes(pixels)).save(folder / f"{i:05d}.png")
    return root
